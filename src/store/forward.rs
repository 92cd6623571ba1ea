//! The [`Store`](super::Store) methods that are one query of [`Sql`](super::sql::Sql) on
//! one connection, written once for SQLite and PostgreSQL. Each store keeps in its own
//! file only what differs: how a connection for reading or writing is had (SQLite has a
//! reader pool and a single writer; PostgreSQL one pool) and the writes that lock first
//! (SQLite `BEGIN IMMEDIATE`, PostgreSQL advisory locks and `FOR UPDATE`).

/// `impl Store for $store { $own… }` plus every forwarded method. The store provides
/// `read()` and `write()` connections and `type Q = Sql<ItsDatabase>` in its module.
macro_rules! impl_store {
    ($store:ty, $($own:tt)*) => {
        #[async_trait::async_trait]
        impl super::Store for $store {
            $($own)*

            async fn ping(&self) -> StoreResult<()> {
                Q::ping(&mut *self.read().await?).await
            }

            async fn set_deploy_description(&self, id: i64, description: &str) -> StoreResult<()> {
                Q::set_deploy_description(&mut *self.write().await?, id, description).await
            }

            async fn arm_canary_rollback(&self, rollback: &super::CanaryRollback) -> StoreResult<()> {
                Q::arm_canary_rollback(&mut *self.write().await?, rollback).await
            }

            async fn take_canary_rollback(
                &self,
                namespace: &str,
                name: &str,
                now: DateTime<Utc>,
            ) -> StoreResult<Option<super::CanaryRollback>> {
                Q::take_canary_rollback(&mut *self.write().await?, namespace, name, now).await
            }

            async fn canary_rollback(
                &self,
                namespace: &str,
                name: &str,
            ) -> StoreResult<Option<super::CanaryRollback>> {
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

            async fn set_plan_message(&self, id: &PlanId, message: &MessageRef) -> StoreResult<()> {
                Q::set_plan_message(&mut *self.write().await?, id, message).await
            }

            async fn set_plan_operation(
                &self,
                id: &PlanId,
                operation: &crate::core::backend::Operation,
            ) -> StoreResult<()> {
                Q::set_plan_operation(&mut *self.write().await?, id, operation).await
            }

            async fn set_plan_verified(&self, id: &PlanId, at: DateTime<Utc>) -> StoreResult<bool> {
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

            async fn audit_search(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
                Q::audit_search(&mut *self.read().await?, query).await
            }

            async fn audit_search_containing(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
                Q::audit_search_containing(&mut *self.read().await?, query).await
            }

            async fn audit_head(&self) -> StoreResult<Option<(i64, String)>> {
                Q::audit_head(&mut *self.read().await?).await
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

            async fn record_config_snapshot(
                &self,
                snapshot: &super::ConfigSnapshot,
            ) -> StoreResult<bool> {
                Q::record_config_snapshot(&mut *self.write().await?, snapshot).await
            }

            async fn config_snapshots(
                &self,
                object: &super::ConfigObject,
            ) -> StoreResult<Vec<super::ConfigSnapshot>> {
                Q::config_snapshots(&mut *self.read().await?, object).await
            }

            async fn config_snapshot(&self, id: i64) -> StoreResult<Option<super::ConfigSnapshot>> {
                Q::config_snapshot(&mut *self.read().await?, id).await
            }
        }
    };
}

pub(super) use impl_store;
