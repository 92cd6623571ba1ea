//! The default store: one SQLite file, created on first start.
//!
//! SQLite admits one writer at a time, and a deferred transaction that reads before it
//! writes fails with `SQLITE_BUSY` instead of waiting when another connection wrote in
//! between. So every write goes through a pool of exactly one connection (writers queue
//! fairly in the pool instead of polling the file lock), multi-statement writes open with
//! `BEGIN IMMEDIATE` (they take the write lock before reading, and another process on the
//! same file waits in `busy_timeout` rather than failing), and reads use a separate pool
//! that WAL lets run beside the writer. Commits are `synchronous = FULL`: durable once
//! `commit` returns.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::sql::{AUDIT_HEAD, Sql};
use super::{
    AlertGroup, ConsoleMessage, ConsolePlace, ConsoleSession, DeployQuery, GroupThread,
    RecordedAlert, RecordedDeploy, StoreResult,
};
use crate::audit::{AuditEntry, AuditQuery, AuditRecord, AuditSealer};
use crate::core::alert::{Alert, AlertStatus};
use crate::core::deploy::{Deploy, Target};
use crate::core::message::{Message, MessageRef};
use crate::core::rollback::{Confirmation, PlanId, PlanPatch, PlanState, RollbackPlan};

type Q = Sql<Sqlite>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

/// How long a write waits for another process holding the file's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reader connections; reads are short and the machine is small.
const READERS: u32 = 4;

/// A SQLite database behind [`Store`]. Cheap to clone: clones share the pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database a `sqlite://path` or `sqlite::memory:` URL
    /// names and brings its schema up to date.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Full);
        if is_in_memory(url) {
            // An in-memory database lives as long as a connection to it: keep exactly one,
            // forever, and let it both read and write.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await?;
            MIGRATOR.run(&pool).await?;
            return Ok(Self {
                writer: pool.clone(),
                reader: pool,
            });
        }
        let options = options.journal_mode(SqliteJournalMode::Wal);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options)
            .await?;
        Ok(Self { writer, reader })
    }

    /// Closes every connection, so the file can be reopened, moved or deleted.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Seeds deploys in bulk (one transaction, multi-row inserts), for benchmarks and load
    /// tests that need a large registry quickly. Known deploys are skipped, not merged.
    #[doc(hidden)]
    pub async fn bulk_insert_deploys(&self, deploys: &[Deploy]) -> StoreResult<()> {
        let mut tx = self.immediate().await?;
        Q::bulk_insert_deploys(&mut tx, deploys).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn read(&self) -> StoreResult<PoolConnection<Sqlite>> {
        Ok(self.reader.acquire().await?)
    }

    async fn write(&self) -> StoreResult<PoolConnection<Sqlite>> {
        Ok(self.writer.acquire().await?)
    }

    /// A write transaction that holds the database's write lock from its first statement.
    async fn immediate(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

pub(super) fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

super::forward::impl_store! {
    SqliteStore,
    async fn record_deploy(&self, deploy: &Deploy) -> StoreResult<RecordedDeploy> {
        let mut tx = self.immediate().await?;
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
        let mut tx = self.immediate().await?;
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
        Q::transition_plan(&mut *self.write().await?, id, from, to, patch, now).await
    }

    async fn append_audit(
        &self,
        entry: &AuditEntry,
        sealer: &AuditSealer,
    ) -> StoreResult<AuditRecord> {
        // `BEGIN IMMEDIATE` holds the write lock across the head read and the insert, so
        // no other connection or process can append in between.
        let mut tx = self.immediate().await?;
        let record = Q::append_audit(&mut tx, AUDIT_HEAD, entry, sealer).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn audit_records(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let page: String = sqlx::query_scalar(super::sql::AUDIT_PAGE_AS_JSON_SQLITE)
            .bind(after)
            .bind(super::sql::limit(limit))
            .fetch_one(&mut *self.read().await?)
            .await?;
        super::sql::audit_page_from_json(&page)
    }

    async fn audit_snapshot(
        &self,
        page: u32,
        pages: tokio::sync::mpsc::Sender<Vec<AuditRecord>>,
    ) -> StoreResult<Option<(i64, String)>> {
        // One read transaction: under WAL its first read fixes the snapshot every later
        // read in it sees, while writers go on appending beside it.
        let mut tx = self.reader.begin().await?;
        let head = Q::audit_head(&mut tx).await?;
        let mut after = 0;
        loop {
            let json: String = sqlx::query_scalar(super::sql::AUDIT_PAGE_AS_JSON_SQLITE)
                .bind(after)
                .bind(super::sql::limit(page))
                .fetch_one(&mut *tx)
                .await?;
            let records = super::sql::audit_page_from_json(&json)?;
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
