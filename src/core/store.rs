//! The store port: what the core keeps and reads — deploys, alerts and their groups,
//! rollback plans with conditional state transitions, processed-event claims, the audit
//! chain, leases, canary rollback requests and ConfigMap snapshots. `crate::store`
//! implements it on SQLite and PostgreSQL; the core sees only this trait and these
//! records, so it knows no SQL.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::alert::{Alert, AlertStatus};
use super::audit::{AuditEntry, AuditQuery, AuditRecord, AuditSealer};
use super::backend::Operation;
use super::deploy::{Deploy, Environment, ServiceName, Target};
use super::message::{Message, MessageRef};
use super::rollback::{Confirmation, PlanId, PlanPatch, PlanState, RollbackPlan};

/// Why a store call failed, in the core's terms. Driver errors are kept as their source
/// (boxed, so this port names no database library); callers decide with
/// [`StoreError::is_unavailable`] whether to answer 503 and retry later.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {0:?} is neither sqlite:// nor postgres://")]
    UnsupportedUrl(String),
    #[error("another rollback of {0} is already running")]
    TargetBusy(Target),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database migration failed: {0}")]
    Migration(#[source] Cause),
    /// The database cannot be reached or cannot serve now (connection refused or
    /// dropped, pool timeout, server shutting down, file unreadable or locked). Callers
    /// answer 503 with `Retry-After` or hold the input until the database is back.
    #[error("database unavailable: {0}; check database.url")]
    Unavailable(#[source] Cause),
    #[error("database error: {0}")]
    Database(#[source] Cause),
    /// The database named by `database.url` cannot be opened at start-up: one line
    /// saying what is wrong and what to change.
    #[error("{0}")]
    Open(Cause),
}

/// A store adapter's own error, kept for logs and for the adapter to inspect.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Logs that the database is unavailable at most once per [`OUTAGE_LOG_EVERY`], with the
/// number of failures since the last line, so an outage is one clear line naming the
/// setting to check rather than one line per request.
pub fn log_unavailable(error: &StoreError) {
    use std::sync::Mutex;
    use std::time::Instant;
    static LAST: Mutex<Option<(Instant, u64)>> = Mutex::new(None);
    let mut last = crate::sync::lock(&LAST);
    let now = Instant::now();
    match &mut *last {
        Some((at, suppressed)) if now.duration_since(*at) < OUTAGE_LOG_EVERY => {
            *suppressed += 1;
        }
        _ => {
            let suppressed = last.map_or(0, |(_, n)| n);
            tracing::error!(%error, suppressed, "the database is unavailable; check database.url and that the database is running");
            *last = Some((now, 0));
        }
    }
}

/// How often an ongoing outage is logged again.
pub const OUTAGE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

impl StoreError {
    /// Whether the database is down or overloaded rather than the request being wrong:
    /// retrying later can succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which deploys to list. `None` filters match everything.
#[derive(Debug, Clone, Default)]
pub struct DeployQuery {
    pub service: Option<ServiceName>,
    pub environment: Option<Environment>,
    /// Only deploys that started at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only deploys that started strictly before this time.
    pub before: Option<DateTime<Utc>>,
    /// At most this many; 0 means no limit.
    pub limit: u32,
}

/// What recording a deploy did: it is new, or it repeats one already known (same target,
/// version and start), in which case status, finish and empty fields were updated.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedDeploy {
    pub id: i64,
    pub deploy: Deploy,
    pub created: bool,
}

/// Alerts about the same target that arrive close together share one group, one thread and
/// one summary.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertGroup {
    pub id: i64,
    /// `service/environment` in lower case, or `unknown`.
    pub key: String,
    pub target: Option<Target>,
    pub title: String,
    pub opened_at: DateTime<Utc>,
    pub last_alert_at: DateTime<Utc>,
    pub alert_count: i64,
    pub firing_count: i64,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// What recording an alert did.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedAlert {
    pub id: i64,
    pub group: AlertGroup,
    /// A notification of an alert not seen before (not a repeat of the same firing).
    pub new_alert: bool,
    /// The group was opened by this alert.
    pub new_group: bool,
    /// This notification resolved an alert that was firing.
    pub resolved: bool,
}

/// Where a group is shown on one platform: the alert message the summary replies to, and
/// the summary itself once posted.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupThread {
    pub group_id: i64,
    pub alert_message: MessageRef,
    pub summary: Option<MessageRef>,
    /// breakwater posted the alert message itself (for a webhook alert), so it may edit its
    /// header when the group resolves — also after a restart or from another replica.
    pub posted_by_bot: bool,
}

/// What the incidents opened in a period are computed from, read from one consistent
/// snapshot so that the groups, their plans and the audit records agree with each other.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentHistory {
    /// Groups opened at or after the period's start, oldest first.
    pub groups: Vec<AlertGroup>,
    /// Every plan offered for one of those groups: the plan's id and its group's id.
    pub plans: Vec<(PlanId, i64)>,
    /// Audit records of the asked-for actions from a little before the period's start,
    /// in sequence order.
    pub records: Vec<AuditRecord>,
    /// More records matched than the limit allowed; `records` holds the newest ones.
    pub truncated: bool,
}

/// A message in the web console's channel, as the bot posted or last updated it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleMessage {
    pub id: i64,
    pub channel: String,
    /// The thread's first message; `None` for a top-level message.
    pub thread: Option<i64>,
    /// The one console user who sees it (a private reply); `None` for everyone.
    pub audience: Option<String>,
    pub message: Message,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Grows with every update, so a page can tell a newer rendering from an older one.
    pub revision: i64,
}

/// Where a new console message goes.
#[derive(Debug, Clone, Copy)]
pub struct ConsolePlace<'a> {
    pub channel: &'a str,
    pub thread: Option<i64>,
    pub audience: Option<&'a str>,
}

/// A signed-in console session. Only the token's hash is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub token_hash: String,
    pub user: String,
    /// Sent back with every form; a request without it is refused.
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Fails when the database cannot be reached; used by `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    // --- deploys -------------------------------------------------------------------------

    /// Inserts a deploy, or updates the one with the same (target, version, started_at):
    /// status and finished_at are set as given (callers apply a report to the recorded
    /// deploy first, see `Deploy::updated`), fields that were empty are filled.
    async fn record_deploy(&self, deploy: &Deploy) -> StoreResult<RecordedDeploy>;

    /// Replaces a deploy's description: a source whose description says how far the
    /// deploy has got (a Flagger canary's phase and weight).
    async fn set_deploy_description(&self, id: i64, description: &str) -> StoreResult<()>;

    /// Arms a rollback of a Flagger Canary, replacing one still armed for it.
    async fn arm_canary_rollback(&self, rollback: &CanaryRollback) -> StoreResult<()>;

    /// Takes the Canary's armed, unexpired rollback: exactly one caller gets it.
    async fn take_canary_rollback(
        &self,
        namespace: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<CanaryRollback>>;

    /// The Canary's latest rollback request, armed or taken.
    async fn canary_rollback(
        &self,
        namespace: &str,
        name: &str,
    ) -> StoreResult<Option<CanaryRollback>>;

    /// Newest first by start time.
    async fn deploys(&self, query: &DeployQuery) -> StoreResult<Vec<Deploy>>;

    /// The newest deploy of `version` to the target, for re-posts without a start time.
    async fn latest_deploy_of_version(
        &self,
        target: &Target,
        version: &str,
    ) -> StoreResult<Option<Deploy>>;

    // --- alerts --------------------------------------------------------------------------

    /// Records an alert notification and places it in a group: the open group of its
    /// target whose last alert is no older than `group_since`, else a new group. A repeat of
    /// an alert already recorded (same source, fingerprint and start) is not a new alert;
    /// a resolved notification resolves the firing alert with the same source and
    /// fingerprint, and the group when no alert in it fires any more.
    async fn record_alert(
        &self,
        alert: &Alert,
        group_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<RecordedAlert>;

    async fn alert_group(&self, id: i64) -> StoreResult<Option<AlertGroup>>;

    /// Most recent first, for the console and `status`.
    async fn recent_alert_groups(&self, limit: u32) -> StoreResult<Vec<AlertGroup>>;

    /// When the alerts of the `limit` most recent groups (those of
    /// [`recent_alert_groups`](Self::recent_alert_groups)) first fired, by group id: the
    /// earliest start their sources reported, which may be well before breakwater
    /// received them. The console's timeline draws alerts at this time.
    async fn recent_alert_groups_fired_at(
        &self,
        limit: u32,
    ) -> StoreResult<std::collections::HashMap<i64, DateTime<Utc>>>;

    /// Alerts of a group, oldest first.
    async fn group_alerts(&self, group_id: i64) -> StoreResult<Vec<(i64, Alert, AlertStatus)>>;

    async fn add_group_thread(&self, thread: &GroupThread) -> StoreResult<()>;

    /// Sets the summary message of the thread whose alert message is `alert_message`.
    async fn set_group_summary(
        &self,
        group_id: i64,
        alert_message: &MessageRef,
        summary: &MessageRef,
    ) -> StoreResult<()>;

    async fn group_threads(&self, group_id: i64) -> StoreResult<Vec<GroupThread>>;

    // --- plans ---------------------------------------------------------------------------

    async fn insert_plan(&self, plan: &RollbackPlan) -> StoreResult<()>;

    async fn plan(&self, id: &PlanId) -> StoreResult<Option<RollbackPlan>>;

    /// Moves a plan from one of `from` to `to` and writes `patch`, only if it is in one of
    /// `from` now (and, when `to` is `running`, not expired at `now` and no other plan of the
    /// same target is running). Returns the updated plan, or `None` when the condition did
    /// not hold; `TargetBusy` when another plan of the target is running.
    async fn transition_plan(
        &self,
        id: &PlanId,
        from: &[PlanState],
        to: PlanState,
        patch: &PlanPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RollbackPlan>>;

    async fn set_plan_message(&self, id: &PlanId, message: &MessageRef) -> StoreResult<()>;

    /// Keeps what the backend accepted, so a restarted breakwater can follow it.
    async fn set_plan_operation(&self, id: &PlanId, operation: &Operation) -> StoreResult<()>;

    /// Marks the plan's rollback verified; false when it already was, so that two paths
    /// noticing the same resolution report it once.
    async fn set_plan_verified(&self, id: &PlanId, at: DateTime<Utc>) -> StoreResult<bool>;

    async fn plans_in_state(&self, states: &[PlanState]) -> StoreResult<Vec<RollbackPlan>>;

    async fn plans_for_group(&self, group_id: i64) -> StoreResult<Vec<RollbackPlan>>;

    /// When the last finished rollback of the target ended, for the cooldown: succeeded,
    /// or failed after the backend accepted it (a refused call changed nothing). Other
    /// actions (an abort) do not count.
    async fn last_rollback_finished(&self, target: &Target) -> StoreResult<Option<DateTime<Utc>>>;

    /// Succeeded plans whose outcome has not been verified against their alert yet.
    async fn plans_awaiting_verification(&self) -> StoreResult<Vec<RollbackPlan>>;

    /// Refreshes the heartbeat of every running plan `runner` follows.
    async fn heartbeat_plans(&self, runner: &str, now: DateTime<Utc>) -> StoreResult<u64>;

    /// Hands `runner` the running plans whose heartbeat is older than `stale_before` (their
    /// process died): each plan is adopted by exactly one caller.
    async fn adopt_running_plans(
        &self,
        runner: &str,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RollbackPlan>>;

    /// The running plans recorded under `runner`, with their heartbeat refreshed: what a
    /// process with a stable runner id left running when it died, taken back at start-up
    /// without waiting for the heartbeat timeout.
    async fn reclaim_running_plans(
        &self,
        runner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RollbackPlan>>;

    // --- confirmations -------------------------------------------------------------------

    async fn insert_confirmation(&self, confirmation: &Confirmation) -> StoreResult<()>;

    /// Removes and returns a confirmation, so that it is used at most once.
    async fn take_confirmation(&self, id: &PlanId) -> StoreResult<Option<Confirmation>>;

    async fn confirmation(&self, id: &PlanId) -> StoreResult<Option<Confirmation>>;

    // --- processed events ----------------------------------------------------------------

    /// Claims an inbound event id (`slack:Ev0123`, `discord:interaction:99`). Returns
    /// `false` when it was claimed before: a platform retry or a double delivery.
    async fn claim_event(&self, key: &str, now: DateTime<Utc>) -> StoreResult<bool>;

    /// Forgets claims older than `before`; platforms do not retry for that long.
    async fn prune_event_claims(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    // --- audit ---------------------------------------------------------------------------

    /// Appends one record to the chain in one serialised, committed transaction: reads the
    /// head, seals the record with `sealer`, inserts it and moves the head.
    async fn append_audit(
        &self,
        entry: &AuditEntry,
        sealer: &AuditSealer,
    ) -> StoreResult<AuditRecord>;

    /// Records with `seq > after`, in sequence order, at most `limit`.
    async fn audit_records(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRecord>>;

    /// Newest first, filtered, for people reading the log.
    async fn audit_search(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>>;

    /// Like [`audit_search`](Self::audit_search), but `query.action` matches every action
    /// that contains it, ignoring case: people type `rollback`, not `rollback.started`.
    async fn audit_search_containing(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>>;

    /// The recorded head of the chain: last sequence number and hash.
    async fn audit_head(&self) -> StoreResult<Option<(i64, String)>>;

    /// Reads the chain head and every record, in sequence order and pages of `page`, from
    /// one consistent snapshot of the log (records other processes append meanwhile are
    /// not seen, and neither is the head they move), sending each page to `pages`.
    /// Returns the head of that snapshot. Stops early, without error, when `pages` is
    /// closed. The channel's bound lets the caller check one page while the next is read.
    async fn audit_snapshot(
        &self,
        page: u32,
        pages: tokio::sync::mpsc::Sender<Vec<AuditRecord>>,
    ) -> StoreResult<Option<(i64, String)>>;

    /// The groups opened since `since`, their plans, and the audit records with one of
    /// `actions` written since a little before it (at most `limit`), from one consistent
    /// snapshot. The console's recovery figures are computed from it.
    async fn incident_history(
        &self,
        since: DateTime<Utc>,
        actions: &[&str],
        limit: u32,
    ) -> StoreResult<IncidentHistory>;

    // --- web console ---------------------------------------------------------------------

    async fn insert_console_message(
        &self,
        place: ConsolePlace<'_>,
        message: &Message,
        now: DateTime<Utc>,
    ) -> StoreResult<ConsoleMessage>;

    /// Replaces a message's content and raises its revision; `None` when there is no such
    /// message.
    async fn update_console_message(
        &self,
        id: i64,
        message: &Message,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ConsoleMessage>>;

    async fn console_message(&self, id: i64) -> StoreResult<Option<ConsoleMessage>>;

    /// The newest `threads` top-level messages of a channel and every reply to them,
    /// oldest first.
    async fn console_channel(
        &self,
        channel: &str,
        threads: u32,
    ) -> StoreResult<Vec<ConsoleMessage>>;

    /// Messages created or updated at or after `since`, oldest change first, at most
    /// `limit`: what live pages have not shown yet.
    async fn console_messages_changed_since(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<ConsoleMessage>>;

    async fn insert_console_session(&self, session: &ConsoleSession) -> StoreResult<()>;

    /// The session with this token hash, unless it expired before `now`.
    async fn console_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ConsoleSession>>;

    async fn delete_console_session(&self, token_hash: &str) -> StoreResult<()>;

    /// Forgets sessions that expired before `before`.
    async fn prune_console_sessions(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    // --- leases --------------------------------------------------------------------------

    /// Takes or renews the lease `name` for `holder` until `until`: true when it was free,
    /// expired before `now`, or already `holder`'s; false while another holder's lease is
    /// current. Replicas compare expiry by their own clocks, so keep them in sync (NTP).
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Gives the lease up at once if `holder` holds it (a graceful stop), so that another
    /// replica takes over without waiting for it to expire.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()>;

    // --- configuration snapshots -------------------------------------------------------

    /// Keeps a ConfigMap's data once per object and resourceVersion, and only the newest
    /// [`SNAPSHOTS_KEPT`] per object. True when it was new.
    async fn record_config_snapshot(&self, snapshot: &ConfigSnapshot) -> StoreResult<bool>;

    /// The object's kept snapshots, newest first.
    async fn config_snapshots(&self, object: &ConfigObject) -> StoreResult<Vec<ConfigSnapshot>>;

    async fn config_snapshot(&self, id: i64) -> StoreResult<Option<ConfigSnapshot>>;
}

/// A rollback of a Flagger Canary that a person asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryRollback {
    pub namespace: String,
    pub name: String,
    /// The plan whose press armed it.
    pub plan_id: String,
    pub requested_by: String,
    pub armed_at: DateTime<Utc>,
    /// After this the hook is no longer answered 2xx for it.
    pub expires_at: DateTime<Utc>,
    /// When Flagger's hook took it.
    pub taken_at: Option<DateTime<Utc>>,
}

/// Snapshots kept per ConfigMap; the oldest beyond this are deleted.
pub const SNAPSHOTS_KEPT: i64 = 20;

/// Which ConfigMap: the backend (cluster) it was read from, its namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConfigObject {
    pub backend: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ConfigObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configmap/{} in namespace {}", self.name, self.namespace)
    }
}

/// One state of a ConfigMap's data. `Debug` names the keys only: a ConfigMap may hold a
/// value that looks secret, and logs must not carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigSnapshot {
    /// The store's id; 0 before it is stored.
    pub id: i64,
    pub object: ConfigObject,
    pub resource_version: String,
    pub data: BTreeMap<String, String>,
    /// `binaryData`, base64-encoded as the API carries it.
    pub binary_data: BTreeMap<String, String>,
    /// When the object got this data (its last writer's managed-fields time).
    pub taken_at: DateTime<Utc>,
}

impl fmt::Debug for ConfigSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigSnapshot")
            .field("id", &self.id)
            .field("object", &self.object)
            .field("resource_version", &self.resource_version)
            .field("data_keys", &self.data.keys().collect::<Vec<_>>())
            .field(
                "binary_data_keys",
                &self.binary_data.keys().collect::<Vec<_>>(),
            )
            .field("taken_at", &self.taken_at)
            .finish()
    }
}
