//! The audit log: appending sealed records, reading and searching them, and an incident's history.

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
    /// Seals and appends one record after the head read by `head_sql`. Run inside a
    /// transaction in which `head_sql` excludes every other appender until commit.
    pub(crate) async fn append_audit(
        conn: &mut DB::Connection,
        head_sql: &'static str,
        entry: &AuditEntry,
        sealer: &AuditSealer,
    ) -> StoreResult<AuditRecord> {
        let head: HeadRow = sqlx::query_as(head_sql)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| corrupt("the audit chain head row is missing"))?;
        let mut entry = entry.clone();
        // Stored times have microsecond precision; seal what will be read back.
        entry.at = entry.at.trunc_subsecs(6);
        let record = entry.into_record(head.seq + 1, head.hash, sealer);
        sqlx::query(concat!(
            "INSERT INTO audit_log (",
            audit_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(record.seq)
        .bind(micros(record.at))
        .bind(record.actor.clone())
        .bind(record.actor_name.clone())
        .bind(record.action.clone())
        .bind(record.service.clone())
        .bind(record.environment.clone())
        .bind(record.details.clone())
        .bind(record.prev_hash.clone())
        .bind(record.hash.clone())
        .execute(&mut *conn)
        .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(record.seq)
            .bind(record.hash.clone())
            .execute(&mut *conn)
            .await?;
        Ok(record)
    }

    pub(crate) async fn audit_records(
        conn: &mut DB::Connection,
        after: i64,
        count: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = sqlx::query_as(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(limit(count))
        .fetch_all(conn)
        .await?;
        collect(rows, AuditRow::into_record)
    }

    pub(crate) async fn audit_search(
        conn: &mut DB::Connection,
        query: &AuditQuery,
    ) -> StoreResult<Vec<AuditRecord>> {
        Self::audit_search_by(conn, query, ActionMatch::Exact).await
    }

    pub(crate) async fn audit_search_containing(
        conn: &mut DB::Connection,
        query: &AuditQuery,
    ) -> StoreResult<Vec<AuditRecord>> {
        Self::audit_search_by(conn, query, ActionMatch::Contains).await
    }

    async fn audit_search_by(
        conn: &mut DB::Connection,
        query: &AuditQuery,
        action_match: ActionMatch,
    ) -> StoreResult<Vec<AuditRecord>> {
        let mut sql = QueryBuilder::<DB>::new(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log WHERE 1 = 1"
        ));
        if let Some(service) = &query.service {
            sql.push(" AND service = ").push_bind(service.clone());
        }
        if let Some(actor) = &query.actor {
            sql.push(" AND (actor = ")
                .push_bind(actor.clone())
                .push(" OR actor_name = ")
                .push_bind(actor.clone())
                .push(")");
        }
        match (&query.action, action_match) {
            (None, _) => {}
            (Some(action), ActionMatch::Exact) => {
                sql.push(" AND action = ").push_bind(action.clone());
            }
            (Some(action), ActionMatch::Contains) => {
                sql.push(" AND LOWER(action) LIKE ")
                    .push_bind(like_containing(action))
                    .push(" ESCAPE '\\'");
            }
        }
        if let Some(before) = query.before_seq {
            sql.push(" AND seq < ").push_bind(before);
        }
        sql.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(limit(query.limit));
        let rows: Vec<AuditRow> = sql.build_query_as().fetch_all(conn).await?;
        collect(rows, AuditRow::into_record)
    }

    /// See [`Store::incident_history`](super::Store::incident_history). Run inside one
    /// read transaction so that the three reads see the same snapshot.
    pub(crate) async fn incident_history(
        conn: &mut DB::Connection,
        since: DateTime<Utc>,
        actions: &[&str],
        count: u32,
    ) -> StoreResult<IncidentHistory> {
        let rows: Vec<GroupRow> = sqlx::query_as(concat!(
            "SELECT ",
            group_columns!(),
            " FROM alert_groups WHERE opened_at >= $1 ORDER BY opened_at, id"
        ))
        .bind(micros(since))
        .fetch_all(&mut *conn)
        .await?;
        let groups = collect(rows, GroupRow::into_group)?;
        let rows: Vec<PlanGroupRow> = sqlx::query_as(
            "SELECT p.id, p.alert_group FROM rollback_plans p \
             JOIN alert_groups g ON g.id = p.alert_group WHERE g.opened_at >= $1 ORDER BY p.id",
        )
        .bind(micros(since))
        .fetch_all(&mut *conn)
        .await?;
        let plans = rows
            .into_iter()
            .map(|row| {
                PlanId::parse(&row.id)
                    .map(|id| (id, row.alert_group))
                    .ok_or_else(|| corrupt(format!("plan id {:?}", row.id)))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let records = if actions.is_empty() {
            Vec::new()
        } else {
            // Records of a group are written after it opened; the margin covers replicas
            // whose clocks differ a little.
            let mut sql = QueryBuilder::<DB>::new(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log WHERE at >= "
            ));
            sql.push_bind(micros(since - chrono::Duration::minutes(5)))
                .push(" AND action IN (");
            let mut list = sql.separated(", ");
            for action in actions {
                list.push_bind((*action).to_owned());
            }
            // Newest first, so that a limit cuts the oldest records, then put in order.
            sql.push(") ORDER BY seq DESC LIMIT ")
                .push_bind(limit(count.saturating_add(1)));
            let rows: Vec<AuditRow> = sql.build_query_as().fetch_all(&mut *conn).await?;
            collect(rows, AuditRow::into_record)?
        };
        let mut records = records;
        let truncated = records.len() > count as usize;
        records.truncate(count as usize);
        records.reverse();
        Ok(IncidentHistory {
            groups,
            plans,
            records,
            truncated,
        })
    }

    pub(crate) async fn audit_head(
        conn: &mut DB::Connection,
    ) -> StoreResult<Option<(i64, String)>> {
        let head: Option<HeadRow> = sqlx::query_as(AUDIT_HEAD).fetch_optional(conn).await?;
        Ok(head
            .filter(|head| head.seq > 0)
            .map(|head| (head.seq, head.hash)))
    }
}
