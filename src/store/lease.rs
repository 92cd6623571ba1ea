//! Leases: a named role that one process at a time holds (the Discord gateway session),
//! renewed by its holder and taken over by another once it expires. One conditional
//! upsert decides every race, on either database: it writes only when the lease is free,
//! expired, or already the caller's, and the row count says who won.

use chrono::{DateTime, Utc};
use sqlx::{Database, Executor, IntoArguments};

use super::StoreResult;
use super::sql::{Bind, RowsAffected, Sql, micros};

/// The lease on the Discord gateway session of this bot's token.
pub const DISCORD_GATEWAY_LEASE: &str = "discord-gateway";

impl<DB> Sql<DB>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    i64: Bind<DB>,
    String: Bind<DB>,
{
    /// Takes or renews `name` for `holder` until `until`; false when another holder's
    /// lease is still current at `now`.
    pub(crate) async fn acquire_lease(
        conn: &mut DB::Connection,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(name.to_owned())
        .bind(holder.to_owned())
        .bind(micros(until))
        .bind(micros(now))
        .execute(conn)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Gives `name` up if `holder` holds it.
    pub(crate) async fn release_lease(
        conn: &mut DB::Connection,
        name: &str,
        holder: &str,
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name.to_owned())
            .bind(holder.to_owned())
            .execute(conn)
            .await?;
        Ok(())
    }
}
