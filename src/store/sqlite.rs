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

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::sql::{AUDIT_HEAD, Sql};
use super::{
    AlertGroup, CanaryRollback, ConsoleMessage, ConsolePlace, ConsoleSession, DeployQuery,
    GroupThread, RecordedAlert, RecordedDeploy, Store, StoreResult,
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

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        Q::ping(&mut *self.read().await?).await
    }

    async fn record_deploy(&self, deploy: &Deploy) -> StoreResult<RecordedDeploy> {
        let mut tx = self.immediate().await?;
        let recorded = Q::record_deploy(&mut tx, deploy).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn set_deploy_description(&self, id: i64, description: &str) -> StoreResult<()> {
        Q::set_deploy_description(&mut *self.write().await?, id, description).await
    }

    async fn arm_canary_rollback(&self, rollback: &CanaryRollback) -> StoreResult<()> {
        Q::arm_canary_rollback(&mut *self.write().await?, rollback).await
    }

    async fn take_canary_rollback(
        &self,
        namespace: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<CanaryRollback>> {
        Q::take_canary_rollback(&mut *self.write().await?, namespace, name, now).await
    }

    async fn canary_rollback(
        &self,
        namespace: &str,
        name: &str,
    ) -> StoreResult<Option<CanaryRollback>> {
        Q::canary_rollback(&mut *self.read().await?, namespace, name).await
    }

    async fn deploys(&self, query: &DeployQuery) -> StoreResult<Vec<Deploy>> {
        Q::deploys(&mut *self.read().await?, query).await
    }

    async fn latest_deploy_of_version(
        &self,
        target: &Target,
        version: &str,
    ) -> StoreResult<Option<Deploy>> {
        Q::latest_deploy_of_version(&mut *self.read().await?, target, version).await
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

    async fn alert_group(&self, id: i64) -> StoreResult<Option<AlertGroup>> {
        Q::alert_group(&mut *self.read().await?, id).await
    }

    async fn recent_alert_groups(&self, limit: u32) -> StoreResult<Vec<AlertGroup>> {
        Q::recent_alert_groups(&mut *self.read().await?, limit).await
    }

    async fn recent_alert_groups_fired_at(
        &self,
        limit: u32,
    ) -> StoreResult<std::collections::HashMap<i64, DateTime<Utc>>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(super::sql::RECENT_GROUPS_FIRED_AT)
            .bind(super::sql::limit(limit))
            .fetch_all(&mut *self.read().await?)
            .await?;
        super::sql::fired_at_by_group(rows)
    }

    async fn group_alerts(&self, group_id: i64) -> StoreResult<Vec<(i64, Alert, AlertStatus)>> {
        Q::group_alerts(&mut *self.read().await?, group_id).await
    }

    async fn add_group_thread(&self, thread: &GroupThread) -> StoreResult<()> {
        Q::add_group_thread(&mut *self.write().await?, thread).await
    }

    async fn set_group_summary(
        &self,
        group_id: i64,
        alert_message: &MessageRef,
        summary: &MessageRef,
    ) -> StoreResult<()> {
        Q::set_group_summary(&mut *self.write().await?, group_id, alert_message, summary).await
    }

    async fn group_threads(&self, group_id: i64) -> StoreResult<Vec<GroupThread>> {
        Q::group_threads(&mut *self.read().await?, group_id).await
    }

    async fn insert_plan(&self, plan: &RollbackPlan) -> StoreResult<()> {
        Q::insert_plan(&mut *self.write().await?, plan).await
    }

    async fn plan(&self, id: &PlanId) -> StoreResult<Option<RollbackPlan>> {
        Q::plan(&mut *self.read().await?, id).await
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

    async fn set_plan_message(&self, id: &PlanId, message: &MessageRef) -> StoreResult<()> {
        Q::set_plan_message(&mut *self.write().await?, id, message).await
    }

    async fn set_plan_operation(
        &self,
        id: &PlanId,
        operation: &serde_json::Value,
    ) -> StoreResult<()> {
        Q::set_plan_operation(&mut *self.write().await?, id, operation).await
    }

    async fn set_plan_verified(&self, id: &PlanId, at: DateTime<Utc>) -> StoreResult<()> {
        Q::set_plan_verified(&mut *self.write().await?, id, at).await
    }

    async fn plans_in_state(&self, states: &[PlanState]) -> StoreResult<Vec<RollbackPlan>> {
        Q::plans_in_state(&mut *self.read().await?, states).await
    }

    async fn plans_for_group(&self, group_id: i64) -> StoreResult<Vec<RollbackPlan>> {
        Q::plans_for_group(&mut *self.read().await?, group_id).await
    }

    async fn last_rollback_finished(&self, target: &Target) -> StoreResult<Option<DateTime<Utc>>> {
        Q::last_rollback_finished(&mut *self.read().await?, target).await
    }

    async fn plans_awaiting_verification(&self) -> StoreResult<Vec<RollbackPlan>> {
        Q::plans_awaiting_verification(&mut *self.read().await?).await
    }

    async fn heartbeat_plans(&self, runner: &str, now: DateTime<Utc>) -> StoreResult<u64> {
        Q::heartbeat_plans(&mut *self.write().await?, runner, now).await
    }

    async fn adopt_running_plans(
        &self,
        runner: &str,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RollbackPlan>> {
        Q::adopt_running_plans(&mut *self.write().await?, runner, stale_before, now).await
    }

    async fn reclaim_running_plans(
        &self,
        runner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RollbackPlan>> {
        Q::reclaim_running_plans(&mut *self.write().await?, runner, now).await
    }

    async fn insert_confirmation(&self, confirmation: &Confirmation) -> StoreResult<()> {
        Q::insert_confirmation(&mut *self.write().await?, confirmation).await
    }

    async fn take_confirmation(&self, id: &PlanId) -> StoreResult<Option<Confirmation>> {
        Q::take_confirmation(&mut *self.write().await?, id).await
    }

    async fn confirmation(&self, id: &PlanId) -> StoreResult<Option<Confirmation>> {
        Q::confirmation(&mut *self.read().await?, id).await
    }

    async fn claim_event(&self, key: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        Q::claim_event(&mut *self.write().await?, key, now).await
    }

    async fn prune_event_claims(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        Q::prune_event_claims(&mut *self.write().await?, before).await
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

    async fn audit_search(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        Q::audit_search(&mut *self.read().await?, query).await
    }

    async fn audit_search_containing(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        Q::audit_search_containing(&mut *self.read().await?, query).await
    }

    async fn audit_head(&self) -> StoreResult<Option<(i64, String)>> {
        Q::audit_head(&mut *self.read().await?).await
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

    async fn insert_console_message(
        &self,
        place: ConsolePlace<'_>,
        message: &Message,
        now: DateTime<Utc>,
    ) -> StoreResult<ConsoleMessage> {
        Q::insert_console_message(&mut *self.write().await?, place, message, now).await
    }

    async fn update_console_message(
        &self,
        id: i64,
        message: &Message,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ConsoleMessage>> {
        Q::update_console_message(&mut *self.write().await?, id, message, now).await
    }

    async fn console_message(&self, id: i64) -> StoreResult<Option<ConsoleMessage>> {
        Q::console_message(&mut *self.read().await?, id).await
    }

    async fn console_channel(
        &self,
        channel: &str,
        threads: u32,
    ) -> StoreResult<Vec<ConsoleMessage>> {
        Q::console_channel(&mut *self.read().await?, channel, threads).await
    }

    async fn console_messages_changed_since(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<ConsoleMessage>> {
        Q::console_messages_changed_since(&mut *self.read().await?, since, limit).await
    }

    async fn insert_console_session(&self, session: &ConsoleSession) -> StoreResult<()> {
        Q::insert_console_session(&mut *self.write().await?, session).await
    }

    async fn console_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ConsoleSession>> {
        Q::console_session(&mut *self.read().await?, token_hash, now).await
    }

    async fn delete_console_session(&self, token_hash: &str) -> StoreResult<()> {
        Q::delete_console_session(&mut *self.write().await?, token_hash).await
    }

    async fn prune_console_sessions(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        Q::prune_console_sessions(&mut *self.write().await?, before).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        Q::acquire_lease(&mut *self.write().await?, name, holder, now, until).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        Q::release_lease(&mut *self.write().await?, name, holder).await
    }
}
