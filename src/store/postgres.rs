//! The store for several replicas: one PostgreSQL database (or one schema of it).
//!
//! Writes that read first are serialised by the database, not by the process, because
//! other replicas write too: an audit append locks the one-row chain head with
//! `SELECT … FOR UPDATE`, and recording an alert takes a transaction-scoped advisory lock on
//! its group key so that two replicas cannot both open a group for the same storm. Plan
//! transitions, claims and confirmation takes are single statements whose row locks and
//! unique indexes already decide every race.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Postgres};

use super::sql::{AUDIT_HEAD_FOR_UPDATE, Sql};
use super::{
    AlertGroup, ConsoleMessage, ConsolePlace, ConsoleSession, DeployQuery, GroupThread,
    RecordedAlert, RecordedDeploy, StoreResult,
};
use crate::audit::{AuditEntry, AuditQuery, AuditRecord, AuditSealer};
use crate::core::alert::{Alert, AlertStatus};
use crate::core::deploy::{Deploy, Target};
use crate::core::message::{Message, MessageRef};
use crate::core::rollback::{Confirmation, PlanId, PlanPatch, PlanState, RollbackPlan};

type Q = Sql<Postgres>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/postgres");

/// Connections per replica; the bot's writes are short.
const MAX_CONNECTIONS: u32 = 10;

/// How long a request waits for a connection before failing rather than hanging. Short,
/// because a database that is down must fail requests fast (503 within about 2 s), and
/// the bot's queries are short enough that a healthy pool frees a connection well within
/// it.
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The advisory-lock class of alert group keys (the first of the two-`int4` lock keys), so
/// that these locks cannot collide with other users of advisory locks in the database.
const ALERT_GROUP_LOCK: i32 = 0x6277_6167; // "bwag"

/// A PostgreSQL database behind [`Store`]. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database a `postgres://` URL names and brings its schema up to date.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options: PgConnectOptions = url.parse()?;
        Self::open(options).await
    }

    /// Keeps every table in `schema` (created if missing) by setting the connections'
    /// `search_path`, so that several stores, such as parallel tests, share one database
    /// without seeing each other. `schema` must be a plain lower-case identifier.
    pub async fn connect_in_schema(url: &str, schema: &str) -> StoreResult<Self> {
        if !is_plain_identifier(schema) {
            return Err(sqlx::Error::Configuration(
                format!(
                    "schema name {schema:?} must be 1–63 lower-case letters, digits or '_', not \
                     starting with a digit"
                )
                .into(),
            )
            .into());
        }
        let options: PgConnectOptions = url.parse()?;
        let mut conn = PgConnection::connect_with(&options).await?;
        // Safe to splice: checked above to be a plain identifier.
        sqlx::query(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Self::open(options.options([("search_path", schema)])).await
    }

    async fn open(options: PgConnectOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn conn(&self) -> StoreResult<PoolConnection<Postgres>> {
        Ok(self.pool.acquire().await?)
    }

    /// A connection for a query that reads (the one pool; see [`super::forward`]).
    async fn read(&self) -> StoreResult<PoolConnection<Postgres>> {
        self.conn().await
    }

    /// A connection for a single-statement write (the one pool; see [`super::forward`]).
    async fn write(&self) -> StoreResult<PoolConnection<Postgres>> {
        self.conn().await
    }
}

fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

super::forward::impl_store! {
    PostgresStore,
    async fn record_deploy(&self, deploy: &Deploy) -> StoreResult<RecordedDeploy> {
        // Under READ COMMITTED the insert waits for a concurrent insert of the same deploy
        // and then does nothing, so the update that follows sees that row.
        let mut tx = self.pool.begin().await?;
        let recorded = Q::record_deploy(&mut tx, deploy).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn record_alert(
        &self,
        alert: &Alert,
        group_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<RecordedAlert> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(ALERT_GROUP_LOCK)
            .bind(super::sql::group_key(alert))
            .execute(&mut *tx)
            .await?;
        let recorded = Q::record_alert(&mut tx, alert, group_since, now).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn transition_plan(
        &self,
        id: &PlanId,
        from: &[PlanState],
        to: PlanState,
        patch: &PlanPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RollbackPlan>> {
        // Concurrent updates of the row queue on its lock and re-check `state IN (…)`
        // against the winner's committed state, so only one of them matches.
        Q::transition_plan(&mut *self.conn().await?, id, from, to, patch, now).await
    }

    async fn append_audit(
        &self,
        entry: &AuditEntry,
        sealer: &AuditSealer,
    ) -> StoreResult<AuditRecord> {
        let mut tx = self.pool.begin().await?;
        let record = Q::append_audit(&mut tx, AUDIT_HEAD_FOR_UPDATE, entry, sealer).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn audit_records(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        Q::audit_records(&mut *self.conn().await?, after, limit).await
    }

    async fn audit_snapshot(
        &self,
        page: u32,
        pages: tokio::sync::mpsc::Sender<Vec<AuditRecord>>,
    ) -> StoreResult<Option<(i64, String)>> {
        // REPEATABLE READ: every statement of the transaction sees the snapshot taken at
        // its first one, so the head and the pages agree while other replicas append.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let head = Q::audit_head(&mut tx).await?;
        let mut after = 0;
        loop {
            let records = Q::audit_records(&mut tx, after, page).await?;
            let Some(last) = records.last() else { break };
            after = last.seq;
            if pages.send(records).await.is_err() {
                break;
            }
        }
        tx.rollback().await?;
        Ok(head)
    }
}
