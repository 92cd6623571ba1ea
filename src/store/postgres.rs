//! The store for several replicas: one PostgreSQL database (or one schema of it).
//!
//! Writes that read first are serialised by the database, not by the process, because
//! other replicas write too: an audit append locks the one-row chain head with
//! `SELECT … FOR UPDATE`, and recording an alert takes a transaction-scoped advisory lock on
//! its group key so that two replicas cannot both open a group for the same storm. Plan
//! transitions, claims and confirmation takes are single statements whose row locks and
//! unique indexes already decide every race.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Postgres};

use super::sql::{AUDIT_HEAD_FOR_UPDATE, Sql};
use super::{
    AlertGroup, CanaryRollback, ConsoleMessage, ConsolePlace, ConsoleSession, DeployQuery,
    GroupThread, RecordedAlert, RecordedDeploy, Store, StoreResult,
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
}

fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        Q::ping(&mut *self.conn().await?).await
    }

    async fn record_deploy(&self, deploy: &Deploy) -> StoreResult<RecordedDeploy> {
        // Under READ COMMITTED the insert waits for a concurrent insert of the same deploy
        // and then does nothing, so the update that follows sees that row.
        let mut tx = self.pool.begin().await?;
        let recorded = Q::record_deploy(&mut tx, deploy).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn set_deploy_description(&self, id: i64, description: &str) -> StoreResult<()> {
        Q::set_deploy_description(&mut *self.conn().await?, id, description).await
    }

    async fn arm_canary_rollback(&self, rollback: &CanaryRollback) -> StoreResult<()> {
        Q::arm_canary_rollback(&mut *self.conn().await?, rollback).await
    }

    async fn take_canary_rollback(
        &self,
        namespace: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<CanaryRollback>> {
        Q::take_canary_rollback(&mut *self.conn().await?, namespace, name, now).await
    }

    async fn canary_rollback(
        &self,
        namespace: &str,
        name: &str,
    ) -> StoreResult<Option<CanaryRollback>> {
        Q::canary_rollback(&mut *self.conn().await?, namespace, name).await
    }

    async fn deploys(&self, query: &DeployQuery) -> StoreResult<Vec<Deploy>> {
        Q::deploys(&mut *self.conn().await?, query).await
    }

    async fn latest_deploy_of_version(
        &self,
        target: &Target,
        version: &str,
    ) -> StoreResult<Option<Deploy>> {
        Q::latest_deploy_of_version(&mut *self.conn().await?, target, version).await
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

    async fn alert_group(&self, id: i64) -> StoreResult<Option<AlertGroup>> {
        Q::alert_group(&mut *self.conn().await?, id).await
    }

    async fn recent_alert_groups(&self, limit: u32) -> StoreResult<Vec<AlertGroup>> {
        Q::recent_alert_groups(&mut *self.conn().await?, limit).await
    }

    async fn recent_alert_groups_fired_at(
        &self,
        limit: u32,
    ) -> StoreResult<std::collections::HashMap<i64, DateTime<Utc>>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(super::sql::RECENT_GROUPS_FIRED_AT)
            .bind(super::sql::limit(limit))
            .fetch_all(&mut *self.conn().await?)
            .await?;
        super::sql::fired_at_by_group(rows)
    }

    async fn group_alerts(&self, group_id: i64) -> StoreResult<Vec<(i64, Alert, AlertStatus)>> {
        Q::group_alerts(&mut *self.conn().await?, group_id).await
    }

    async fn add_group_thread(&self, thread: &GroupThread) -> StoreResult<()> {
        Q::add_group_thread(&mut *self.conn().await?, thread).await
    }

    async fn set_group_summary(
        &self,
        group_id: i64,
        alert_message: &MessageRef,
        summary: &MessageRef,
    ) -> StoreResult<()> {
        Q::set_group_summary(&mut *self.conn().await?, group_id, alert_message, summary).await
    }

    async fn group_threads(&self, group_id: i64) -> StoreResult<Vec<GroupThread>> {
        Q::group_threads(&mut *self.conn().await?, group_id).await
    }

    async fn insert_plan(&self, plan: &RollbackPlan) -> StoreResult<()> {
        Q::insert_plan(&mut *self.conn().await?, plan).await
    }

    async fn plan(&self, id: &PlanId) -> StoreResult<Option<RollbackPlan>> {
        Q::plan(&mut *self.conn().await?, id).await
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

    async fn set_plan_message(&self, id: &PlanId, message: &MessageRef) -> StoreResult<()> {
        Q::set_plan_message(&mut *self.conn().await?, id, message).await
    }

    async fn set_plan_operation(
        &self,
        id: &PlanId,
        operation: &serde_json::Value,
    ) -> StoreResult<()> {
        Q::set_plan_operation(&mut *self.conn().await?, id, operation).await
    }

    async fn set_plan_verified(&self, id: &PlanId, at: DateTime<Utc>) -> StoreResult<()> {
        Q::set_plan_verified(&mut *self.conn().await?, id, at).await
    }

    async fn plans_in_state(&self, states: &[PlanState]) -> StoreResult<Vec<RollbackPlan>> {
        Q::plans_in_state(&mut *self.conn().await?, states).await
    }

    async fn plans_for_group(&self, group_id: i64) -> StoreResult<Vec<RollbackPlan>> {
        Q::plans_for_group(&mut *self.conn().await?, group_id).await
    }

    async fn last_rollback_finished(&self, target: &Target) -> StoreResult<Option<DateTime<Utc>>> {
        Q::last_rollback_finished(&mut *self.conn().await?, target).await
    }

    async fn plans_awaiting_verification(&self) -> StoreResult<Vec<RollbackPlan>> {
        Q::plans_awaiting_verification(&mut *self.conn().await?).await
    }

    async fn heartbeat_plans(&self, runner: &str, now: DateTime<Utc>) -> StoreResult<u64> {
        Q::heartbeat_plans(&mut *self.conn().await?, runner, now).await
    }

    async fn adopt_running_plans(
        &self,
        runner: &str,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RollbackPlan>> {
        Q::adopt_running_plans(&mut *self.conn().await?, runner, stale_before, now).await
    }

    async fn reclaim_running_plans(
        &self,
        runner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RollbackPlan>> {
        Q::reclaim_running_plans(&mut *self.conn().await?, runner, now).await
    }

    async fn insert_confirmation(&self, confirmation: &Confirmation) -> StoreResult<()> {
        Q::insert_confirmation(&mut *self.conn().await?, confirmation).await
    }

    async fn take_confirmation(&self, id: &PlanId) -> StoreResult<Option<Confirmation>> {
        Q::take_confirmation(&mut *self.conn().await?, id).await
    }

    async fn confirmation(&self, id: &PlanId) -> StoreResult<Option<Confirmation>> {
        Q::confirmation(&mut *self.conn().await?, id).await
    }

    async fn claim_event(&self, key: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        Q::claim_event(&mut *self.conn().await?, key, now).await
    }

    async fn prune_event_claims(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        Q::prune_event_claims(&mut *self.conn().await?, before).await
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

    async fn audit_search(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        Q::audit_search(&mut *self.conn().await?, query).await
    }

    async fn audit_search_containing(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        Q::audit_search_containing(&mut *self.conn().await?, query).await
    }

    async fn audit_head(&self) -> StoreResult<Option<(i64, String)>> {
        Q::audit_head(&mut *self.conn().await?).await
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

    async fn insert_console_message(
        &self,
        place: ConsolePlace<'_>,
        message: &Message,
        now: DateTime<Utc>,
    ) -> StoreResult<ConsoleMessage> {
        Q::insert_console_message(&mut *self.conn().await?, place, message, now).await
    }

    async fn update_console_message(
        &self,
        id: i64,
        message: &Message,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ConsoleMessage>> {
        Q::update_console_message(&mut *self.conn().await?, id, message, now).await
    }

    async fn console_message(&self, id: i64) -> StoreResult<Option<ConsoleMessage>> {
        Q::console_message(&mut *self.conn().await?, id).await
    }

    async fn console_channel(
        &self,
        channel: &str,
        threads: u32,
    ) -> StoreResult<Vec<ConsoleMessage>> {
        Q::console_channel(&mut *self.conn().await?, channel, threads).await
    }

    async fn console_messages_changed_since(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<ConsoleMessage>> {
        Q::console_messages_changed_since(&mut *self.conn().await?, since, limit).await
    }

    async fn insert_console_session(&self, session: &ConsoleSession) -> StoreResult<()> {
        Q::insert_console_session(&mut *self.conn().await?, session).await
    }

    async fn console_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ConsoleSession>> {
        Q::console_session(&mut *self.conn().await?, token_hash, now).await
    }

    async fn delete_console_session(&self, token_hash: &str) -> StoreResult<()> {
        Q::delete_console_session(&mut *self.conn().await?, token_hash).await
    }

    async fn prune_console_sessions(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        Q::prune_console_sessions(&mut *self.conn().await?, before).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        Q::acquire_lease(&mut *self.conn().await?, name, holder, now, until).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        Q::release_lease(&mut *self.conn().await?, name, holder).await
    }
}
