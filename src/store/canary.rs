//! Flagger canaries: the progress text of a canary run's deploy, which each event
//! replaces, and the rollbacks people asked for. An armed rollback is taken by Flagger's
//! `rollback` hook with one conditional `UPDATE … WHERE taken_at IS NULL`: whichever hook
//! call (on whichever replica) updates the row is answered 2xx, every other one sees no
//! row. That is what makes one press one rollback.

use chrono::{DateTime, Utc};
use sqlx::{Database, Executor, FromRow, IntoArguments};

use super::sql::{Bind, RowsAffected, Sql, micros, opt_time, time};
use super::{CanaryRollback, StoreError, StoreResult};

#[derive(FromRow)]
pub(crate) struct CanaryRollbackRow {
    namespace: String,
    name: String,
    plan_id: String,
    requested_by: String,
    armed_at: i64,
    expires_at: i64,
    taken_at: Option<i64>,
}

impl TryFrom<CanaryRollbackRow> for CanaryRollback {
    type Error = StoreError;

    /// Times out of range are corrupt data, as for every other row, never a silent 1970.
    fn try_from(row: CanaryRollbackRow) -> StoreResult<Self> {
        Ok(Self {
            namespace: row.namespace,
            name: row.name,
            plan_id: row.plan_id,
            requested_by: row.requested_by,
            armed_at: time(row.armed_at)?,
            expires_at: time(row.expires_at)?,
            taken_at: opt_time(row.taken_at)?,
        })
    }
}

macro_rules! canary_rollback_columns {
    () => {
        "namespace, name, plan_id, requested_by, armed_at, expires_at, taken_at"
    };
}

impl<DB> Sql<DB>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> CanaryRollbackRow: FromRow<'r, DB::Row>,
    i64: Bind<DB>,
    Option<i64>: Bind<DB>,
    String: Bind<DB>,
{
    /// Replaces the description of deploy `id` (a canary run's phase and weight).
    pub(crate) async fn set_deploy_description(
        conn: &mut DB::Connection,
        id: i64,
        description: &str,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE deploys SET description = $1 WHERE id = $2")
            .bind(description.to_owned())
            .bind(id)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Arms a rollback of the Canary; a request still armed for it is replaced (one
    /// rollback answers both presses).
    pub(crate) async fn arm_canary_rollback(
        conn: &mut DB::Connection,
        rollback: &CanaryRollback,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO canary_rollbacks \
             (namespace, name, plan_id, requested_by, armed_at, expires_at, taken_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL) \
             ON CONFLICT (namespace, name) DO UPDATE SET plan_id = excluded.plan_id, \
             requested_by = excluded.requested_by, armed_at = excluded.armed_at, \
             expires_at = excluded.expires_at, taken_at = NULL",
        )
        .bind(rollback.namespace.clone())
        .bind(rollback.name.clone())
        .bind(rollback.plan_id.clone())
        .bind(rollback.requested_by.clone())
        .bind(micros(rollback.armed_at))
        .bind(micros(rollback.expires_at))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Takes the Canary's armed, unexpired rollback at `now`: the one caller that gets
    /// it answers Flagger 2xx.
    pub(crate) async fn take_canary_rollback(
        conn: &mut DB::Connection,
        namespace: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<CanaryRollback>> {
        let row: Option<CanaryRollbackRow> = sqlx::query_as(concat!(
            "UPDATE canary_rollbacks SET taken_at = $3 \
             WHERE namespace = $1 AND name = $2 AND taken_at IS NULL AND expires_at > $3 \
             RETURNING ",
            canary_rollback_columns!()
        ))
        .bind(namespace.to_owned())
        .bind(name.to_owned())
        .bind(micros(now))
        .fetch_optional(conn)
        .await?;
        row.map(CanaryRollback::try_from).transpose()
    }

    /// The Canary's latest rollback request, armed or taken.
    pub(crate) async fn canary_rollback(
        conn: &mut DB::Connection,
        namespace: &str,
        name: &str,
    ) -> StoreResult<Option<CanaryRollback>> {
        let row: Option<CanaryRollbackRow> = sqlx::query_as(concat!(
            "SELECT ",
            canary_rollback_columns!(),
            " FROM canary_rollbacks WHERE namespace = $1 AND name = $2"
        ))
        .bind(namespace.to_owned())
        .bind(name.to_owned())
        .fetch_optional(conn)
        .await?;
        row.map(CanaryRollback::try_from).transpose()
    }
}
