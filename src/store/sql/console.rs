//! The web console's messages and sessions.

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
    pub(crate) async fn insert_console_message(
        conn: &mut DB::Connection,
        place: ConsolePlace<'_>,
        message: &Message,
        now: DateTime<Utc>,
    ) -> StoreResult<ConsoleMessage> {
        let row: ConsoleMessageRow = sqlx::query_as(concat!(
            "INSERT INTO console_messages (channel, thread_id, audience, message, created_at, \
             updated_at, revision) VALUES ($1, $2, $3, $4, $5, $5, 1) RETURNING ",
            console_message_columns!()
        ))
        .bind(place.channel.to_owned())
        .bind(place.thread)
        .bind(place.audience.map(str::to_owned))
        .bind(to_json("console message", message)?)
        .bind(micros(now))
        .fetch_one(conn)
        .await?;
        row.into_message()
    }

    pub(crate) async fn update_console_message(
        conn: &mut DB::Connection,
        id: i64,
        message: &Message,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ConsoleMessage>> {
        // An update never moves `updated_at` backwards, so live pages that read changes
        // since a time do not miss it when clocks of replicas differ slightly.
        let row: Option<ConsoleMessageRow> = sqlx::query_as(concat!(
            "UPDATE console_messages SET message = $2, \
               updated_at = CASE WHEN updated_at > $3 THEN updated_at ELSE $3 END, \
               revision = revision + 1 \
             WHERE id = $1 RETURNING ",
            console_message_columns!()
        ))
        .bind(id)
        .bind(to_json("console message", message)?)
        .bind(micros(now))
        .fetch_optional(conn)
        .await?;
        row.map(ConsoleMessageRow::into_message).transpose()
    }

    pub(crate) async fn console_message(
        conn: &mut DB::Connection,
        id: i64,
    ) -> StoreResult<Option<ConsoleMessage>> {
        let row: Option<ConsoleMessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            console_message_columns!(),
            " FROM console_messages WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await?;
        row.map(ConsoleMessageRow::into_message).transpose()
    }

    pub(crate) async fn console_channel(
        conn: &mut DB::Connection,
        channel: &str,
        threads: u32,
    ) -> StoreResult<Vec<ConsoleMessage>> {
        let rows: Vec<ConsoleMessageRow> = sqlx::query_as(concat!(
            "WITH roots AS (SELECT id FROM console_messages \
               WHERE channel = $1 AND thread_id IS NULL ORDER BY id DESC LIMIT $2) \
             SELECT ",
            console_message_columns!(),
            " FROM console_messages \
             WHERE id IN (SELECT id FROM roots) OR thread_id IN (SELECT id FROM roots) \
             ORDER BY id"
        ))
        .bind(channel.to_owned())
        .bind(limit(threads))
        .fetch_all(conn)
        .await?;
        collect(rows, ConsoleMessageRow::into_message)
    }

    pub(crate) async fn console_messages_changed_since(
        conn: &mut DB::Connection,
        since: DateTime<Utc>,
        count: u32,
    ) -> StoreResult<Vec<ConsoleMessage>> {
        let rows: Vec<ConsoleMessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            console_message_columns!(),
            " FROM console_messages WHERE updated_at >= $1 ORDER BY updated_at, id LIMIT $2"
        ))
        .bind(micros(since))
        .bind(limit(count))
        .fetch_all(conn)
        .await?;
        collect(rows, ConsoleMessageRow::into_message)
    }

    pub(crate) async fn insert_console_session(
        conn: &mut DB::Connection,
        session: &ConsoleSession,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO console_sessions (token_hash, user_name, csrf_token, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session.token_hash.clone())
        .bind(session.user.clone())
        .bind(session.csrf_token.clone())
        .bind(micros(session.created_at))
        .bind(micros(session.expires_at))
        .execute(conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn console_session(
        conn: &mut DB::Connection,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ConsoleSession>> {
        let row: Option<ConsoleSessionRow> = sqlx::query_as(
            "SELECT token_hash, user_name, csrf_token, created_at, expires_at \
             FROM console_sessions WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash.to_owned())
        .bind(micros(now))
        .fetch_optional(conn)
        .await?;
        row.map(ConsoleSessionRow::into_session).transpose()
    }

    pub(crate) async fn delete_console_session(
        conn: &mut DB::Connection,
        token_hash: &str,
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
            .bind(token_hash.to_owned())
            .execute(conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn prune_console_sessions(
        conn: &mut DB::Connection,
        before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
            .bind(micros(before))
            .execute(conn)
            .await?;
        Ok(result.rows_affected())
    }
}
