//! Alerts, the groups they fall into, and the chat threads and summaries of each group.

use super::*;

impl<DB> Sql<DB>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    i64: Bind<DB> + for<'r> Decode<'r, DB>,
    Option<i64>: Bind<DB>,
    String: Bind<DB> + for<'r> Decode<'r, DB>,
    Option<String>: Bind<DB>,
    &'static str: Bind<DB>,
    DeployRow: for<'r> FromRow<'r, DB::Row>,
    GroupRow: for<'r> FromRow<'r, DB::Row>,
    AlertRow: for<'r> FromRow<'r, DB::Row>,
    ThreadRow: for<'r> FromRow<'r, DB::Row>,
    PlanRow: for<'r> FromRow<'r, DB::Row>,
    ConfirmationRow: for<'r> FromRow<'r, DB::Row>,
    AuditRow: for<'r> FromRow<'r, DB::Row>,
    HeadRow: for<'r> FromRow<'r, DB::Row>,
    ResolvedRow: for<'r> FromRow<'r, DB::Row>,
    PlanGroupRow: for<'r> FromRow<'r, DB::Row>,
    IdRow: for<'r> FromRow<'r, DB::Row>,
    MaxRow: for<'r> FromRow<'r, DB::Row>,
    ConsoleMessageRow: for<'r> FromRow<'r, DB::Row>,
    ConsoleSessionRow: for<'r> FromRow<'r, DB::Row>,
{
    /// Records an alert notification and keeps its group's counts. Run inside a
    /// transaction that excludes concurrent recordings of the same group key.
    pub(crate) async fn record_alert(
        conn: &mut DB::Connection,
        alert: &Alert,
        group_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<RecordedAlert> {
        if alert.status == AlertStatus::Resolved
            && let Some(recorded) = Self::resolve_alert(conn, alert, now).await?
        {
            return Ok(recorded);
        }
        if let Some(recorded) = Self::repeated_alert(conn, alert).await? {
            return Ok(recorded);
        }
        let firing = i64::from(alert.status == AlertStatus::Firing);
        let key = group_key(alert);
        let open: Option<IdRow> = sqlx::query_as(
            "SELECT id FROM alert_groups \
             WHERE key = $1 AND resolved_at IS NULL AND last_alert_at >= $2 \
             ORDER BY last_alert_at DESC, id DESC LIMIT 1",
        )
        .bind(key.clone())
        .bind(micros(group_since))
        .fetch_optional(&mut *conn)
        .await?;
        let now_us = micros(now);
        let (group, new_group) = match open {
            Some(IdRow { id }) => {
                let row: GroupRow = sqlx::query_as(concat!(
                    "UPDATE alert_groups SET \
                       alert_count = alert_count + 1, \
                       firing_count = firing_count + $2, \
                       last_alert_at = CASE WHEN last_alert_at < $3 THEN $3 ELSE last_alert_at END \
                     WHERE id = $1 RETURNING ",
                    group_columns!()
                ))
                .bind(id)
                .bind(firing)
                .bind(now_us)
                .fetch_one(&mut *conn)
                .await?;
                (row, false)
            }
            None => {
                // A group opened by a resolved notification has nothing firing: it is
                // resolved from the start.
                let resolved_at = (firing == 0).then_some(now_us);
                let row: GroupRow = sqlx::query_as(concat!(
                    "INSERT INTO alert_groups (key, service, environment, title, opened_at, \
                     last_alert_at, alert_count, firing_count, resolved_at) \
                     VALUES ($1, $2, $3, $4, $5, $5, 1, $6, $7) RETURNING ",
                    group_columns!()
                ))
                .bind(key)
                .bind(alert.target().map(|t| t.service.to_string()))
                .bind(alert.target().map(|t| t.environment.to_string()))
                .bind(alert.title.clone())
                .bind(now_us)
                .bind(firing)
                .bind(resolved_at)
                .fetch_one(&mut *conn)
                .await?;
                (row, true)
            }
        };
        let inserted: IdRow = sqlx::query_as(
            "INSERT INTO alerts (group_id, source, fingerprint, started_at, status, service, \
             environment, severity, title, description, ended_at, labels, link, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(group.id)
        .bind(alert.source.as_str())
        .bind(alert.fingerprint.clone())
        .bind(micros(alert.started_at))
        .bind(alert.status.as_str())
        .bind(alert.service.as_ref().map(ToString::to_string))
        .bind(alert.environment.as_ref().map(ToString::to_string))
        .bind(alert.severity.as_str())
        .bind(alert.title.clone())
        .bind(alert.description.clone())
        .bind(opt_micros(alert.ended_at))
        .bind(to_json("alert labels", &alert.labels)?)
        .bind(alert.link.clone())
        .bind(now_us)
        .fetch_one(&mut *conn)
        .await?;
        Ok(RecordedAlert {
            id: inserted.id,
            group: group.into_group()?,
            new_alert: true,
            new_group,
            resolved: false,
        })
    }

    /// Resolves every firing alert with the notification's source and fingerprint (a
    /// source may have restarted one alert under a new start time) and decrements their
    /// groups; `None` when nothing with that identity fires.
    async fn resolve_alert(
        conn: &mut DB::Connection,
        alert: &Alert,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RecordedAlert>> {
        let mut resolved: Vec<ResolvedRow> = sqlx::query_as(
            "UPDATE alerts SET status = 'resolved', ended_at = $3 \
             WHERE source = $1 AND fingerprint = $2 AND status = 'firing' \
             RETURNING id, group_id",
        )
        .bind(alert.source.as_str())
        .bind(alert.fingerprint.clone())
        .bind(micros(alert.ended_at.unwrap_or(now)))
        .fetch_all(&mut *conn)
        .await?;
        let Some(latest) = resolved.iter().map(|row| row.id).max() else {
            return Ok(None);
        };
        // Groups in id order, so concurrent resolutions lock them in the same order.
        resolved.sort_by_key(|row| (row.group_id, row.id));
        let mut reported = None;
        for group_rows in resolved.chunk_by(|a, b| a.group_id == b.group_id) {
            let group_id = group_rows[0].group_id;
            let count = i64::try_from(group_rows.len()).unwrap_or(i64::MAX);
            let row: GroupRow = sqlx::query_as(concat!(
                "UPDATE alert_groups SET \
                   firing_count = firing_count - $2, \
                   resolved_at = CASE WHEN firing_count - $2 <= 0 THEN $3 ELSE resolved_at END \
                 WHERE id = $1 RETURNING ",
                group_columns!()
            ))
            .bind(group_id)
            .bind(count)
            .bind(micros(now))
            .fetch_one(&mut *conn)
            .await?;
            if group_rows.iter().any(|r| r.id == latest) {
                reported = Some(row.into_group()?);
            }
        }
        let group = reported.ok_or_else(|| corrupt("resolved alert lost its group"))?;
        Ok(Some(RecordedAlert {
            id: latest,
            group,
            new_alert: false,
            new_group: false,
            resolved: true,
        }))
    }

    /// The alert already recorded with the same source, fingerprint and start, if any.
    async fn repeated_alert(
        conn: &mut DB::Connection,
        alert: &Alert,
    ) -> StoreResult<Option<RecordedAlert>> {
        let existing: Option<ResolvedRow> = sqlx::query_as(
            "SELECT id, group_id FROM alerts \
             WHERE source = $1 AND fingerprint = $2 AND started_at = $3",
        )
        .bind(alert.source.as_str())
        .bind(alert.fingerprint.clone())
        .bind(micros(alert.started_at))
        .fetch_optional(&mut *conn)
        .await?;
        let Some(existing) = existing else {
            return Ok(None);
        };
        let group = Self::alert_group(conn, existing.group_id)
            .await?
            .ok_or_else(|| corrupt(format!("alert {} has no group", existing.id)))?;
        Ok(Some(RecordedAlert {
            id: existing.id,
            group,
            new_alert: false,
            new_group: false,
            resolved: false,
        }))
    }

    pub(crate) async fn alert_group(
        conn: &mut DB::Connection,
        id: i64,
    ) -> StoreResult<Option<AlertGroup>> {
        let row: Option<GroupRow> = sqlx::query_as(concat!(
            "SELECT ",
            group_columns!(),
            " FROM alert_groups WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await?;
        row.map(GroupRow::into_group).transpose()
    }

    pub(crate) async fn recent_alert_groups(
        conn: &mut DB::Connection,
        count: u32,
    ) -> StoreResult<Vec<AlertGroup>> {
        let rows: Vec<GroupRow> = sqlx::query_as(concat!(
            "SELECT ",
            group_columns!(),
            " FROM alert_groups ORDER BY last_alert_at DESC, id DESC LIMIT $1"
        ))
        .bind(limit(count))
        .fetch_all(conn)
        .await?;
        collect(rows, GroupRow::into_group)
    }

    pub(crate) async fn group_alerts(
        conn: &mut DB::Connection,
        group_id: i64,
    ) -> StoreResult<Vec<(i64, Alert, AlertStatus)>> {
        let rows: Vec<AlertRow> = sqlx::query_as(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE group_id = $1 ORDER BY id"
        ))
        .bind(group_id)
        .fetch_all(conn)
        .await?;
        collect(rows, AlertRow::into_alert)
    }

    /// Adds where a group is shown; adding the same alert message again updates it.
    pub(crate) async fn add_group_thread(
        conn: &mut DB::Connection,
        thread: &GroupThread,
    ) -> StoreResult<()> {
        let message = &thread.alert_message;
        sqlx::query(
            "INSERT INTO group_threads (group_id, platform, channel, message_id, alert_message, \
             summary) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (group_id, platform, channel, message_id) DO UPDATE SET \
               alert_message = excluded.alert_message, \
               summary = COALESCE(excluded.summary, group_threads.summary)",
        )
        .bind(thread.group_id)
        .bind(message.platform.as_str())
        .bind(message.channel.clone())
        .bind(message.id.clone())
        .bind(to_json(
            "thread alert message",
            &StoredAlertMessage {
                message: message.clone(),
                posted_by_bot: thread.posted_by_bot,
            },
        )?)
        .bind(opt_to_json("thread summary", thread.summary.as_ref())?)
        .execute(conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn set_group_summary(
        conn: &mut DB::Connection,
        group_id: i64,
        alert_message: &MessageRef,
        summary: &MessageRef,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE group_threads SET summary = $5 \
             WHERE group_id = $1 AND platform = $2 AND channel = $3 AND message_id = $4",
        )
        .bind(group_id)
        .bind(alert_message.platform.as_str())
        .bind(alert_message.channel.clone())
        .bind(alert_message.id.clone())
        .bind(to_json("thread summary", summary)?)
        .execute(conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn group_threads(
        conn: &mut DB::Connection,
        group_id: i64,
    ) -> StoreResult<Vec<GroupThread>> {
        let rows: Vec<ThreadRow> = sqlx::query_as(
            "SELECT group_id, alert_message, summary FROM group_threads \
             WHERE group_id = $1 ORDER BY id",
        )
        .bind(group_id)
        .fetch_all(conn)
        .await?;
        collect(rows, ThreadRow::into_thread)
    }
}
