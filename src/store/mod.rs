//! Persistence behind one trait: deploys, alerts and their groups, rollback plans with
//! conditional state transitions, processed-event claims, the audit chain, leases (a
//! role one replica holds at a time), and snapshots of watched ConfigMaps (for Restore).
//! SQLite (default) and PostgreSQL (several replicas)
//! implement it and pass the same tests. `backup` copies a SQLite store online; `open`
//! turns a database that cannot be opened into one line with the cause and the fix.
//!
//! Times are stored as integer microseconds since the Unix epoch and structured values
//! as JSON text, so both databases hold the same bytes and compare times the same way.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::audit::{AuditEntry, AuditQuery, AuditRecord, AuditSealer};
use crate::core::alert::{Alert, AlertStatus};
use crate::core::deploy::{Deploy, Environment, ServiceName, Target};
use crate::core::message::{Message, MessageRef};
use crate::core::rollback::{Confirmation, PlanId, PlanPatch, PlanState, RollbackPlan};

mod backup;
mod canary;
mod config_snapshots;
mod forward;
mod lease;
mod open;
mod postgres;
mod rows;
mod sql;
mod sqlite;

pub use backup::{BackupError, backup_sqlite};
pub use canary::CanaryRollback;
pub use config_snapshots::{ConfigObject, ConfigSnapshot, SNAPSHOTS_KEPT};
pub use lease::DISCORD_GATEWAY_LEASE;
pub use open::{
    CONNECT_TIMEOUT, OpenCause, OpenError, check as check_database, redact as redact_url,
};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {0:?} is neither sqlite:// nor postgres://")]
    UnsupportedUrl(String),
    #[error("another rollback of {0} is already running")]
    TargetBusy(Target),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database cannot be reached or cannot serve now (connection refused or
    /// dropped, pool timeout, server shutting down, file unreadable or locked). Callers
    /// answer 503 with `Retry-After` or hold the input until the database is back.
    #[error("database unavailable: {0}; check database.url")]
    Unavailable(sqlx::Error),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The database named by `database.url` cannot be opened at start-up.
    #[error(transparent)]
    Open(#[from] OpenError),
}

impl StoreError {
    /// Whether the database is down or overloaded rather than the request being wrong:
    /// retrying later can succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            Self::Unavailable(error)
        } else {
            Self::Database(error)
        }
    }
}

/// Sorts a driver error into "the database is not there" and everything else.
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        // The server's side of the conversation broke off or made no sense: a connection
        // cut mid-handshake, or something that is not the database at database.url.
        | sqlx::Error::Protocol(_)
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| unavailable_code(&code)),
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs and SQLite result codes that mean "not now" rather than "wrong".
fn unavailable_code(code: &str) -> bool {
    // PostgreSQL: class 08 connection exception; 57P01-57P03 admin/crash shutdown and
    // cannot connect now; 53300 too many connections; 53100 disk full; 58030 I/O error;
    // 25006 a read-only standby after a failover.
    if code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "53100" | "58030" | "25006"
        )
    {
        return true;
    }
    // SQLite reports its (extended) result code as a number; the low byte is the primary
    // code: 5 BUSY, 6 LOCKED, 10 IOERR, 13 FULL, 14 CANTOPEN.
    code.parse::<i64>()
        .is_ok_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 13 | 14))
}

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

    async fn set_plan_operation(
        &self,
        id: &PlanId,
        operation: &serde_json::Value,
    ) -> StoreResult<()>;

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

/// Opens the store a `database.url` names: `sqlite:…` (the default, one process) or
/// `postgres://…` / `postgresql://…` (several replicas sharing one database). A failure
/// is [`StoreError::Open`], one line saying what is wrong and what to change.
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(open::sqlite(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(open::postgres(url).await?))
    } else {
        // Only the scheme: the rest of a URL may carry a password.
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        Err(StoreError::UnsupportedUrl(format!("{scheme}:…")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_that_cannot_be_reached_is_unavailable() {
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            sqlx::Error::Protocol("unexpected end of file".into()),
        ] {
            let error = StoreError::from(error);
            assert!(error.is_unavailable(), "{error}");
            assert!(error.to_string().contains("database.url"), "{error}");
        }
    }

    #[test]
    fn a_wrong_query_or_row_is_not_an_outage() {
        for error in [
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("x".into()),
        ] {
            assert!(!StoreError::from(error).is_unavailable());
        }
    }

    #[test]
    fn shutdown_and_connection_codes_are_outages_and_constraint_codes_are_not() {
        for code in [
            "57P01", "57P03", "08006", "08001", "53300", "5", "261", "14", "10",
        ] {
            assert!(unavailable_code(code), "{code}");
        }
        for code in ["23505", "42P01", "2067", "19", "1"] {
            assert!(!unavailable_code(code), "{code}");
        }
    }
}
