//! The SQL both stores run, written once. SQLite and PostgreSQL accept the same statements
//! here (`$n` parameters, `ON CONFLICT`, `RETURNING`, partial indexes), so every query,
//! row conversion and multi-statement algorithm lives in [`Sql`], generic over the sqlx
//! database. What differs stays with each store: pools, how a write transaction is opened,
//! and how concurrent writers are serialised (SQLite `BEGIN IMMEDIATE` on one writer
//! connection; PostgreSQL row and advisory locks). The functions here therefore take a
//! connection the caller has already put in the right transaction.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{Database, Decode, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};

use super::{
    AlertGroup, ConsoleMessage, ConsolePlace, ConsoleSession, DeployQuery, GroupThread,
    IncidentHistory, RecordedAlert, RecordedDeploy, StoreError, StoreResult,
};
use crate::audit::{AuditEntry, AuditQuery, AuditRecord, AuditSealer};
use crate::core::alert::{Alert, AlertSource, AlertStatus, Severity};
use crate::core::backend::Action;
use crate::core::deploy::{
    Deploy, DeploySource, DeployStatus, Environment, Revision, ServiceName, Target,
};
use crate::core::message::{Message, MessageRef};
use crate::core::rollback::{Confirmation, PlanId, PlanPatch, PlanState, RollbackPlan};

/// A Rust value the driver can bind as a parameter.
pub(crate) trait Bind<DB: Database>: for<'q> Encode<'q, DB> + Type<DB> + Send {}
impl<DB: Database, T: for<'q> Encode<'q, DB> + Type<DB> + Send> Bind<DB> for T {}

/// sqlx's generic `QueryResult` has no row count; both drivers' results do.
pub(crate) trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// Reads the audit chain head. Enough to append under SQLite's `BEGIN IMMEDIATE`, which
/// already holds the database's write lock; PostgreSQL needs [`AUDIT_HEAD_FOR_UPDATE`].
pub(crate) const AUDIT_HEAD: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";
/// Reads and locks the audit chain head: concurrent appends on any connection of any
/// replica wait here until the holder commits.
pub(crate) const AUDIT_HEAD_FOR_UPDATE: &str =
    "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE";

/// Rows per multi-row `INSERT` when seeding; 17 columns each stays far below both drivers'
/// bind-parameter limits.
const BULK_ROWS: usize = 1_000;

macro_rules! deploy_columns {
    () => {
        "id, service, environment, version, previous_version, revision, commit_sha, author, \
         description, url, started_at, finished_at, status, changes, config_changes, source"
    };
}

macro_rules! group_columns {
    () => {
        "id, key, service, environment, title, opened_at, last_alert_at, alert_count, \
         firing_count, resolved_at"
    };
}

macro_rules! alert_columns {
    () => {
        "id, source, fingerprint, started_at, status, service, environment, severity, title, \
         description, ended_at, labels, link"
    };
}

macro_rules! plan_columns {
    () => {
        "id, service, environment, from_id, from_version, to_id, to_version, reason, \
         alert_group, offered_at, expires_at, message, requested_by, state, approved_by, \
         started_by, started_at, finished_at, outcome, operation, verified_at, action"
    };
}

macro_rules! console_message_columns {
    () => {
        "id, channel, thread_id, audience, message, created_at, updated_at, revision"
    };
}

macro_rules! audit_columns {
    () => {
        "seq, at, actor, actor_name, action, service, environment, details, prev_hash, hash"
    };
}

// --- conversions -----------------------------------------------------------------------------

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn opt_micros(at: Option<DateTime<Utc>>) -> Option<i64> {
    at.map(micros)
}

fn time(micros: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| corrupt(format!("time {micros} µs is out of range")))
}

fn opt_time(micros: Option<i64>) -> StoreResult<Option<DateTime<Utc>>> {
    micros.map(time).transpose()
}

/// Encodes a value of one of our own types. They hold only strings, numbers, options,
/// sequences and string-keyed maps, which JSON always represents; an error here would be a
/// bug in a `Serialize` impl, reported rather than panicking.
fn to_json<T: Serialize + ?Sized>(what: &str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| corrupt(format!("cannot encode {what}: {e}")))
}

fn opt_to_json<T: Serialize>(what: &str, value: Option<&T>) -> StoreResult<Option<String>> {
    value.map(|value| to_json(what, value)).transpose()
}

fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("{what} is not valid JSON: {e}")))
}

fn opt_from_json<T: DeserializeOwned>(what: &str, text: Option<&str>) -> StoreResult<Option<T>> {
    text.map(|text| from_json(what, text)).transpose()
}

fn service(raw: &str) -> StoreResult<ServiceName> {
    ServiceName::parse(raw).map_err(corrupt)
}

fn environment(raw: &str) -> StoreResult<Environment> {
    Environment::parse(raw).map_err(corrupt)
}

/// A `LIMIT` value: 0 means no limit.
pub(crate) fn limit(limit: u32) -> i64 {
    if limit == 0 {
        i64::MAX
    } else {
        i64::from(limit)
    }
}

/// The group key of an alert: its target in lower case, or `unknown`.
pub(crate) fn group_key(alert: &Alert) -> String {
    match (&alert.service, &alert.environment) {
        (Some(service), Some(environment)) => format!("{}/{}", service.key(), environment.key()),
        _ => "unknown".to_owned(),
    }
}

fn state_list(states: &[PlanState]) -> impl Iterator<Item = &'static str> + '_ {
    states.iter().map(|state| state.as_str())
}

// --- rows ------------------------------------------------------------------------------------

#[derive(FromRow)]
pub(crate) struct DeployRow {
    id: i64,
    service: String,
    environment: String,
    version: String,
    previous_version: Option<String>,
    revision: Option<String>,
    commit_sha: Option<String>,
    author: Option<String>,
    description: Option<String>,
    url: Option<String>,
    started_at: i64,
    finished_at: Option<i64>,
    status: String,
    changes: String,
    config_changes: String,
    source: String,
}

impl DeployRow {
    fn into_deploy(self) -> StoreResult<(i64, Deploy)> {
        let deploy = Deploy {
            target: Target::new(service(&self.service)?, environment(&self.environment)?),
            version: self.version,
            previous_version: self.previous_version,
            revision: self.revision,
            commit: self.commit_sha,
            author: self.author,
            description: self.description,
            url: self.url,
            started_at: time(self.started_at)?,
            finished_at: opt_time(self.finished_at)?,
            status: DeployStatus::parse(&self.status)
                .ok_or_else(|| corrupt(format!("unknown deploy status {:?}", self.status)))?,
            changes: from_json("deploy changes", &self.changes)?,
            config_changes: from_json("deploy config changes", &self.config_changes)?,
            source: DeploySource::parse(&self.source)
                .ok_or_else(|| corrupt(format!("unknown deploy source {:?}", self.source)))?,
        };
        Ok((self.id, deploy))
    }
}

/// A deploy as column values, in the order of the `INSERT` column list.
struct DeployValues {
    service: String,
    service_key: String,
    environment: String,
    environment_key: String,
    version: String,
    previous_version: Option<String>,
    revision: Option<String>,
    commit_sha: Option<String>,
    author: Option<String>,
    description: Option<String>,
    url: Option<String>,
    started_at: i64,
    finished_at: Option<i64>,
    status: String,
    changes: String,
    config_changes: String,
    source: String,
}

impl DeployValues {
    fn new(deploy: &Deploy) -> StoreResult<Self> {
        // The store never holds a secret, whoever forgot to mask it before.
        let deploy = deploy.clone().with_secrets_masked();
        Ok(Self {
            service: deploy.target.service.to_string(),
            service_key: deploy.target.service.key(),
            environment: deploy.target.environment.to_string(),
            environment_key: deploy.target.environment.key(),
            changes: to_json("deploy changes", &deploy.changes)?,
            config_changes: to_json("deploy config changes", &deploy.config_changes)?,
            version: deploy.version,
            previous_version: deploy.previous_version,
            revision: deploy.revision,
            commit_sha: deploy.commit,
            author: deploy.author,
            description: deploy.description,
            url: deploy.url,
            started_at: micros(deploy.started_at),
            finished_at: opt_micros(deploy.finished_at),
            status: deploy.status.as_str().to_owned(),
            source: deploy.source.as_str().to_owned(),
        })
    }
}

#[derive(FromRow)]
pub(crate) struct GroupRow {
    id: i64,
    key: String,
    service: Option<String>,
    environment: Option<String>,
    title: String,
    opened_at: i64,
    last_alert_at: i64,
    alert_count: i64,
    firing_count: i64,
    resolved_at: Option<i64>,
}

impl GroupRow {
    fn into_group(self) -> StoreResult<AlertGroup> {
        let target = match (self.service, self.environment) {
            (Some(s), Some(e)) => Some(Target::new(service(&s)?, environment(&e)?)),
            _ => None,
        };
        Ok(AlertGroup {
            id: self.id,
            key: self.key,
            target,
            title: self.title,
            opened_at: time(self.opened_at)?,
            last_alert_at: time(self.last_alert_at)?,
            alert_count: self.alert_count,
            firing_count: self.firing_count,
            resolved_at: opt_time(self.resolved_at)?,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct AlertRow {
    id: i64,
    source: String,
    fingerprint: String,
    started_at: i64,
    status: String,
    service: Option<String>,
    environment: Option<String>,
    severity: String,
    title: String,
    description: String,
    ended_at: Option<i64>,
    labels: String,
    link: Option<String>,
}

impl AlertRow {
    fn into_alert(self) -> StoreResult<(i64, Alert, AlertStatus)> {
        let status = AlertStatus::parse(&self.status)
            .ok_or_else(|| corrupt(format!("unknown alert status {:?}", self.status)))?;
        let alert = Alert {
            source: AlertSource::parse(&self.source)
                .ok_or_else(|| corrupt(format!("unknown alert source {:?}", self.source)))?,
            service: self.service.as_deref().map(service).transpose()?,
            environment: self.environment.as_deref().map(environment).transpose()?,
            severity: Severity::parse_lenient(&self.severity),
            status,
            title: self.title,
            description: self.description,
            started_at: time(self.started_at)?,
            ended_at: opt_time(self.ended_at)?,
            labels: from_json::<BTreeMap<String, String>>("alert labels", &self.labels)?,
            fingerprint: self.fingerprint,
            link: self.link,
        };
        Ok((self.id, alert, status))
    }
}

#[derive(FromRow)]
pub(crate) struct ThreadRow {
    group_id: i64,
    alert_message: String,
    summary: Option<String>,
}

impl ThreadRow {
    fn into_thread(self) -> StoreResult<GroupThread> {
        let stored: StoredAlertMessage = from_json("thread alert message", &self.alert_message)?;
        Ok(GroupThread {
            group_id: self.group_id,
            alert_message: stored.message,
            summary: opt_from_json("thread summary", self.summary.as_deref())?,
            posted_by_bot: stored.posted_by_bot,
        })
    }
}

/// A thread's alert message as stored, with whether breakwater posted it: the flag rides in
/// the same JSON column, so rows written before it existed read as not the bot's.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAlertMessage {
    #[serde(flatten)]
    message: MessageRef,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    posted_by_bot: bool,
}

#[derive(FromRow)]
pub(crate) struct PlanRow {
    id: String,
    service: String,
    environment: String,
    from_id: String,
    from_version: String,
    to_id: String,
    to_version: String,
    reason: String,
    alert_group: Option<i64>,
    offered_at: i64,
    expires_at: i64,
    message: Option<String>,
    requested_by: Option<String>,
    state: String,
    approved_by: Option<String>,
    started_by: Option<String>,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    outcome: Option<String>,
    operation: Option<String>,
    verified_at: Option<i64>,
    action: String,
}

impl PlanRow {
    fn into_plan(self) -> StoreResult<RollbackPlan> {
        Ok(RollbackPlan {
            id: plan_id(&self.id)?,
            target: Target::new(service(&self.service)?, environment(&self.environment)?),
            from: Revision {
                id: self.from_id,
                version: self.from_version,
            },
            to: Revision {
                id: self.to_id,
                version: self.to_version,
            },
            reason: self.reason,
            alert_group: self.alert_group,
            offered_at: time(self.offered_at)?,
            expires_at: time(self.expires_at)?,
            message: opt_from_json("plan message", self.message.as_deref())?,
            requested_by: opt_from_json("plan requested_by", self.requested_by.as_deref())?,
            state: PlanState::parse(&self.state)
                .ok_or_else(|| corrupt(format!("unknown plan state {:?}", self.state)))?,
            approved_by: opt_from_json("plan approved_by", self.approved_by.as_deref())?,
            started_by: opt_from_json("plan started_by", self.started_by.as_deref())?,
            started_at: opt_time(self.started_at)?,
            finished_at: opt_time(self.finished_at)?,
            outcome: self.outcome,
            operation: opt_from_json("plan operation", self.operation.as_deref())?,
            verified_at: opt_time(self.verified_at)?,
            action: Action::parse(&self.action)
                .ok_or_else(|| corrupt(format!("unknown plan action {:?}", self.action)))?,
        })
    }
}

fn plan_id(raw: &str) -> StoreResult<PlanId> {
    PlanId::parse(raw).ok_or_else(|| corrupt(format!("invalid plan id {raw:?}")))
}

#[derive(FromRow)]
pub(crate) struct ConfirmationRow {
    id: String,
    plan_id: String,
    actor: String,
    created_at: i64,
    expires_at: i64,
    disable_auto_sync: i64,
}

impl ConfirmationRow {
    fn into_confirmation(self) -> StoreResult<Confirmation> {
        Ok(Confirmation {
            id: plan_id(&self.id)?,
            plan: plan_id(&self.plan_id)?,
            actor: from_json("confirmation actor", &self.actor)?,
            created_at: time(self.created_at)?,
            expires_at: time(self.expires_at)?,
            disable_auto_sync: self.disable_auto_sync != 0,
        })
    }
}

/// A page of audit records as one JSON array of row arrays. SQLite hands sqlx each row
/// separately across its worker thread, which costs several times the hashing that
/// `audit verify` does per record; one value per page removes that. The outer sort in
/// [`audit_page_from_json`] keeps the order whatever the aggregate does.
pub(crate) const AUDIT_PAGE_AS_JSON_SQLITE: &str = concat!(
    "SELECT json_group_array(json_array(",
    audit_columns!(),
    ")) FROM (SELECT ",
    audit_columns!(),
    " FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2)"
);

/// Reads a page selected by [`AUDIT_PAGE_AS_JSON_SQLITE`].
pub(crate) fn audit_page_from_json(page: &str) -> StoreResult<Vec<AuditRecord>> {
    let rows: Vec<AuditRow> =
        serde_json::from_str(page).map_err(|error| corrupt(format!("audit page: {error}")))?;
    let mut records = collect(rows, AuditRow::into_record)?;
    records.sort_unstable_by_key(|record| record.seq);
    Ok(records)
}

/// Fields in column order, so a row serialised as a JSON array reads back as this struct.
#[derive(FromRow, serde::Deserialize)]
pub(crate) struct AuditRow {
    seq: i64,
    at: i64,
    actor: String,
    actor_name: String,
    action: String,
    service: String,
    environment: String,
    details: String,
    prev_hash: String,
    hash: String,
}

impl AuditRow {
    fn into_record(self) -> StoreResult<AuditRecord> {
        Ok(AuditRecord {
            seq: self.seq,
            at: time(self.at)?,
            actor: self.actor,
            actor_name: self.actor_name,
            action: self.action,
            service: self.service,
            environment: self.environment,
            details: self.details,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct HeadRow {
    seq: i64,
    hash: String,
}

#[derive(FromRow)]
pub(crate) struct PlanGroupRow {
    id: String,
    alert_group: i64,
}

#[derive(FromRow)]
pub(crate) struct ResolvedRow {
    id: i64,
    group_id: i64,
}

#[derive(FromRow)]
pub(crate) struct IdRow {
    id: i64,
}

#[derive(FromRow)]
pub(crate) struct MaxRow {
    finished_at: Option<i64>,
}

#[derive(FromRow)]
pub(crate) struct ConsoleMessageRow {
    id: i64,
    channel: String,
    thread_id: Option<i64>,
    audience: Option<String>,
    message: String,
    created_at: i64,
    updated_at: i64,
    revision: i64,
}

impl ConsoleMessageRow {
    fn into_message(self) -> StoreResult<ConsoleMessage> {
        Ok(ConsoleMessage {
            id: self.id,
            channel: self.channel,
            thread: self.thread_id,
            audience: self.audience,
            message: from_json::<Message>("console message", &self.message)?,
            created_at: time(self.created_at)?,
            updated_at: time(self.updated_at)?,
            revision: self.revision,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct ConsoleSessionRow {
    token_hash: String,
    user_name: String,
    csrf_token: String,
    created_at: i64,
    expires_at: i64,
}

impl ConsoleSessionRow {
    fn into_session(self) -> StoreResult<ConsoleSession> {
        Ok(ConsoleSession {
            token_hash: self.token_hash,
            user: self.user_name,
            csrf_token: self.csrf_token,
            created_at: time(self.created_at)?,
            expires_at: time(self.expires_at)?,
        })
    }
}

fn collect<R, T>(rows: Vec<R>, convert: impl Fn(R) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.into_iter().map(convert).collect()
}

// --- queries ---------------------------------------------------------------------------------

/// The store's statements for one database. A namespace rather than a value: the bounds
/// sqlx needs to run generic queries are written once, on this impl.
pub(crate) struct Sql<DB>(PhantomData<DB>);

/// How an audit search compares the action it is given.
#[derive(Clone, Copy)]
enum ActionMatch {
    Exact,
    Contains,
}

/// A `LIKE … ESCAPE '\'` pattern for values containing `part` (lower-cased): the
/// wildcards `%` and `_` (common in action names) in it match only themselves.
fn like_containing(part: &str) -> String {
    let mut pattern = String::with_capacity(part.len() + 4);
    pattern.push('%');
    for c in part.to_lowercase().chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The first start of the alerts of each of the `$1` most recent groups (the same groups,
/// in the same order, as [`Sql::recent_alert_groups`]), as `(group_id, started_at)`. Run
/// by each store with its own driver's tuple rows.
pub(crate) const RECENT_GROUPS_FIRED_AT: &str = "SELECT group_id, MIN(started_at) FROM alerts \
     WHERE group_id IN (SELECT id FROM alert_groups ORDER BY last_alert_at DESC, id DESC LIMIT $1) \
     GROUP BY group_id";

/// The rows of [`RECENT_GROUPS_FIRED_AT`] by group id.
pub(crate) fn fired_at_by_group(
    rows: Vec<(i64, i64)>,
) -> StoreResult<std::collections::HashMap<i64, DateTime<Utc>>> {
    rows.into_iter()
        .map(|(group, started_at)| Ok((group, time(started_at)?)))
        .collect()
}

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
    pub(crate) async fn ping(conn: &mut DB::Connection) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(conn).await?;
        Ok(())
    }

    // --- deploys ---------------------------------------------------------------------------

    /// Inserts or merges a deploy. Run inside a transaction: the insert and the merge must
    /// see the same row.
    pub(crate) async fn record_deploy(
        conn: &mut DB::Connection,
        deploy: &Deploy,
    ) -> StoreResult<RecordedDeploy> {
        let values = DeployValues::new(deploy)?;
        let inserted: Option<DeployRow> = sqlx::query_as(concat!(
            "INSERT INTO deploys (service, service_key, environment, environment_key, version, \
             previous_version, revision, commit_sha, author, description, url, started_at, \
             finished_at, status, changes, config_changes, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (service_key, environment_key, version, started_at) DO NOTHING \
             RETURNING ",
            deploy_columns!()
        ))
        .bind(values.service)
        .bind(values.service_key.clone())
        .bind(values.environment)
        .bind(values.environment_key.clone())
        .bind(values.version.clone())
        .bind(values.previous_version.clone())
        .bind(values.revision.clone())
        .bind(values.commit_sha.clone())
        .bind(values.author.clone())
        .bind(values.description.clone())
        .bind(values.url.clone())
        .bind(values.started_at)
        .bind(values.finished_at)
        .bind(values.status.clone())
        .bind(values.changes.clone())
        .bind(values.config_changes.clone())
        .bind(values.source)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = inserted {
            let (id, deploy) = row.into_deploy()?;
            return Ok(RecordedDeploy {
                id,
                deploy,
                created: true,
            });
        }
        // A re-post of a known deploy: status and finish are the caller's (the API applies
        // a report with `Deploy::updated`, which never moves a recorded finish to "now");
        // other fields are only filled where they were empty.
        let row: DeployRow = sqlx::query_as(concat!(
            "UPDATE deploys SET \
               status = $5, \
               finished_at = $6, \
               previous_version = COALESCE(NULLIF(previous_version, ''), $7, previous_version), \
               revision = COALESCE(NULLIF(revision, ''), $8, revision), \
               commit_sha = COALESCE(NULLIF(commit_sha, ''), $9, commit_sha), \
               author = COALESCE(NULLIF(author, ''), $10, author), \
               description = COALESCE(NULLIF(description, ''), $11, description), \
               url = COALESCE(NULLIF(url, ''), $12, url), \
               changes = CASE WHEN changes = '[]' THEN $13 ELSE changes END, \
               config_changes = CASE WHEN config_changes = '[]' THEN $14 ELSE config_changes END \
             WHERE service_key = $1 AND environment_key = $2 AND version = $3 AND started_at = $4 \
             RETURNING ",
            deploy_columns!()
        ))
        .bind(values.service_key)
        .bind(values.environment_key)
        .bind(values.version)
        .bind(values.started_at)
        .bind(values.status)
        .bind(values.finished_at)
        .bind(values.previous_version)
        .bind(values.revision)
        .bind(values.commit_sha)
        .bind(values.author)
        .bind(values.description)
        .bind(values.url)
        .bind(values.changes)
        .bind(values.config_changes)
        .fetch_one(&mut *conn)
        .await?;
        let (id, deploy) = row.into_deploy()?;
        Ok(RecordedDeploy {
            id,
            deploy,
            created: false,
        })
    }

    pub(crate) async fn deploys(
        conn: &mut DB::Connection,
        query: &DeployQuery,
    ) -> StoreResult<Vec<Deploy>> {
        // Built per call so that each filter present becomes an indexable condition rather
        // than an `(? IS NULL OR …)` the planner cannot use.
        let mut sql = QueryBuilder::<DB>::new(concat!(
            "SELECT ",
            deploy_columns!(),
            " FROM deploys WHERE 1 = 1"
        ));
        if let Some(service) = &query.service {
            sql.push(" AND service_key = ").push_bind(service.key());
        }
        if let Some(environment) = &query.environment {
            sql.push(" AND environment_key = ")
                .push_bind(environment.key());
        }
        if let Some(since) = query.since {
            sql.push(" AND started_at >= ").push_bind(micros(since));
        }
        if let Some(before) = query.before {
            sql.push(" AND started_at < ").push_bind(micros(before));
        }
        sql.push(" ORDER BY started_at DESC, id DESC LIMIT ")
            .push_bind(limit(query.limit));
        let rows: Vec<DeployRow> = sql.build_query_as().fetch_all(conn).await?;
        collect(rows, |row| row.into_deploy().map(|(_, deploy)| deploy))
    }

    pub(crate) async fn latest_deploy_of_version(
        conn: &mut DB::Connection,
        target: &Target,
        version: &str,
    ) -> StoreResult<Option<Deploy>> {
        let row: Option<DeployRow> = sqlx::query_as(concat!(
            "SELECT ",
            deploy_columns!(),
            " FROM deploys WHERE service_key = $1 AND environment_key = $2 AND version = $3 \
             ORDER BY started_at DESC, id DESC LIMIT 1"
        ))
        .bind(target.service.key())
        .bind(target.environment.key())
        .bind(version.to_owned())
        .fetch_optional(conn)
        .await?;
        row.map(|row| row.into_deploy().map(|(_, deploy)| deploy))
            .transpose()
    }

    /// Seeds many deploys at once with multi-row inserts, skipping ones already known. Run
    /// inside one transaction so that a million rows cost one commit.
    pub(crate) async fn bulk_insert_deploys(
        conn: &mut DB::Connection,
        deploys: &[Deploy],
    ) -> StoreResult<()> {
        for chunk in deploys.chunks(BULK_ROWS) {
            let values = chunk
                .iter()
                .map(DeployValues::new)
                .collect::<StoreResult<Vec<_>>>()?;
            let mut sql = QueryBuilder::<DB>::new(
                "INSERT INTO deploys (service, service_key, environment, environment_key, \
                 version, previous_version, revision, commit_sha, author, description, url, \
                 started_at, finished_at, status, changes, config_changes, source) ",
            );
            sql.push_values(values, |mut row, v| {
                row.push_bind(v.service)
                    .push_bind(v.service_key)
                    .push_bind(v.environment)
                    .push_bind(v.environment_key)
                    .push_bind(v.version)
                    .push_bind(v.previous_version)
                    .push_bind(v.revision)
                    .push_bind(v.commit_sha)
                    .push_bind(v.author)
                    .push_bind(v.description)
                    .push_bind(v.url)
                    .push_bind(v.started_at)
                    .push_bind(v.finished_at)
                    .push_bind(v.status)
                    .push_bind(v.changes)
                    .push_bind(v.config_changes)
                    .push_bind(v.source);
            });
            sql.push(" ON CONFLICT (service_key, environment_key, version, started_at) DO NOTHING");
            sql.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    // --- alerts ----------------------------------------------------------------------------

    /// Records an alert notification and keeps its group's counts. Run inside a
    /// transaction that excludes concurrent recordings of the same group key.
    pub(crate) async fn record_alert(
        conn: &mut DB::Connection,
        alert: &Alert,
        group_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<RecordedAlert> {
        if alert.status == AlertStatus::Resolved
            && let Some(recorded) = Self::resolve_alert(conn, alert, now).await?
        {
            return Ok(recorded);
        }
        if let Some(recorded) = Self::repeated_alert(conn, alert).await? {
            return Ok(recorded);
        }
        let firing = i64::from(alert.status == AlertStatus::Firing);
        let key = group_key(alert);
        let open: Option<IdRow> = sqlx::query_as(
            "SELECT id FROM alert_groups \
             WHERE key = $1 AND resolved_at IS NULL AND last_alert_at >= $2 \
             ORDER BY last_alert_at DESC, id DESC LIMIT 1",
        )
        .bind(key.clone())
        .bind(micros(group_since))
        .fetch_optional(&mut *conn)
        .await?;
        let now_us = micros(now);
        let (group, new_group) = match open {
            Some(IdRow { id }) => {
                let row: GroupRow = sqlx::query_as(concat!(
                    "UPDATE alert_groups SET \
                       alert_count = alert_count + 1, \
                       firing_count = firing_count + $2, \
                       last_alert_at = CASE WHEN last_alert_at < $3 THEN $3 ELSE last_alert_at END \
                     WHERE id = $1 RETURNING ",
                    group_columns!()
                ))
                .bind(id)
                .bind(firing)
                .bind(now_us)
                .fetch_one(&mut *conn)
                .await?;
                (row, false)
            }
            None => {
                // A group opened by a resolved notification has nothing firing: it is
                // resolved from the start.
                let resolved_at = (firing == 0).then_some(now_us);
                let row: GroupRow = sqlx::query_as(concat!(
                    "INSERT INTO alert_groups (key, service, environment, title, opened_at, \
                     last_alert_at, alert_count, firing_count, resolved_at) \
                     VALUES ($1, $2, $3, $4, $5, $5, 1, $6, $7) RETURNING ",
                    group_columns!()
                ))
                .bind(key)
                .bind(alert.target().map(|t| t.service.to_string()))
                .bind(alert.target().map(|t| t.environment.to_string()))
                .bind(alert.title.clone())
                .bind(now_us)
                .bind(firing)
                .bind(resolved_at)
                .fetch_one(&mut *conn)
                .await?;
                (row, true)
            }
        };
        let inserted: IdRow = sqlx::query_as(
            "INSERT INTO alerts (group_id, source, fingerprint, started_at, status, service, \
             environment, severity, title, description, ended_at, labels, link, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(group.id)
        .bind(alert.source.as_str())
        .bind(alert.fingerprint.clone())
        .bind(micros(alert.started_at))
        .bind(alert.status.as_str())
        .bind(alert.service.as_ref().map(ToString::to_string))
        .bind(alert.environment.as_ref().map(ToString::to_string))
        .bind(alert.severity.as_str())
        .bind(alert.title.clone())
        .bind(alert.description.clone())
        .bind(opt_micros(alert.ended_at))
        .bind(to_json("alert labels", &alert.labels)?)
        .bind(alert.link.clone())
        .bind(now_us)
        .fetch_one(&mut *conn)
        .await?;
        Ok(RecordedAlert {
            id: inserted.id,
            group: group.into_group()?,
            new_alert: true,
            new_group,
            resolved: false,
        })
    }

    /// Resolves every firing alert with the notification's source and fingerprint (a
    /// source may have restarted one alert under a new start time) and decrements their
    /// groups; `None` when nothing with that identity fires.
    async fn resolve_alert(
        conn: &mut DB::Connection,
        alert: &Alert,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RecordedAlert>> {
        let mut resolved: Vec<ResolvedRow> = sqlx::query_as(
            "UPDATE alerts SET status = 'resolved', ended_at = $3 \
             WHERE source = $1 AND fingerprint = $2 AND status = 'firing' \
             RETURNING id, group_id",
        )
        .bind(alert.source.as_str())
        .bind(alert.fingerprint.clone())
        .bind(micros(alert.ended_at.unwrap_or(now)))
        .fetch_all(&mut *conn)
        .await?;
        let Some(latest) = resolved.iter().map(|row| row.id).max() else {
            return Ok(None);
        };
        // Groups in id order, so concurrent resolutions lock them in the same order.
        resolved.sort_by_key(|row| (row.group_id, row.id));
        let mut reported = None;
        for group_rows in resolved.chunk_by(|a, b| a.group_id == b.group_id) {
            let group_id = group_rows[0].group_id;
            let count = i64::try_from(group_rows.len()).unwrap_or(i64::MAX);
            let row: GroupRow = sqlx::query_as(concat!(
                "UPDATE alert_groups SET \
                   firing_count = firing_count - $2, \
                   resolved_at = CASE WHEN firing_count - $2 <= 0 THEN $3 ELSE resolved_at END \
                 WHERE id = $1 RETURNING ",
                group_columns!()
            ))
            .bind(group_id)
            .bind(count)
            .bind(micros(now))
            .fetch_one(&mut *conn)
            .await?;
            if group_rows.iter().any(|r| r.id == latest) {
                reported = Some(row.into_group()?);
            }
        }
        let group = reported.ok_or_else(|| corrupt("resolved alert lost its group"))?;
        Ok(Some(RecordedAlert {
            id: latest,
            group,
            new_alert: false,
            new_group: false,
            resolved: true,
        }))
    }

    /// The alert already recorded with the same source, fingerprint and start, if any.
    async fn repeated_alert(
        conn: &mut DB::Connection,
        alert: &Alert,
    ) -> StoreResult<Option<RecordedAlert>> {
        let existing: Option<ResolvedRow> = sqlx::query_as(
            "SELECT id, group_id FROM alerts \
             WHERE source = $1 AND fingerprint = $2 AND started_at = $3",
        )
        .bind(alert.source.as_str())
        .bind(alert.fingerprint.clone())
        .bind(micros(alert.started_at))
        .fetch_optional(&mut *conn)
        .await?;
        let Some(existing) = existing else {
            return Ok(None);
        };
        let group = Self::alert_group(conn, existing.group_id)
            .await?
            .ok_or_else(|| corrupt(format!("alert {} has no group", existing.id)))?;
        Ok(Some(RecordedAlert {
            id: existing.id,
            group,
            new_alert: false,
            new_group: false,
            resolved: false,
        }))
    }

    pub(crate) async fn alert_group(
        conn: &mut DB::Connection,
        id: i64,
    ) -> StoreResult<Option<AlertGroup>> {
        let row: Option<GroupRow> = sqlx::query_as(concat!(
            "SELECT ",
            group_columns!(),
            " FROM alert_groups WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await?;
        row.map(GroupRow::into_group).transpose()
    }

    pub(crate) async fn recent_alert_groups(
        conn: &mut DB::Connection,
        count: u32,
    ) -> StoreResult<Vec<AlertGroup>> {
        let rows: Vec<GroupRow> = sqlx::query_as(concat!(
            "SELECT ",
            group_columns!(),
            " FROM alert_groups ORDER BY last_alert_at DESC, id DESC LIMIT $1"
        ))
        .bind(limit(count))
        .fetch_all(conn)
        .await?;
        collect(rows, GroupRow::into_group)
    }

    pub(crate) async fn group_alerts(
        conn: &mut DB::Connection,
        group_id: i64,
    ) -> StoreResult<Vec<(i64, Alert, AlertStatus)>> {
        let rows: Vec<AlertRow> = sqlx::query_as(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE group_id = $1 ORDER BY id"
        ))
        .bind(group_id)
        .fetch_all(conn)
        .await?;
        collect(rows, AlertRow::into_alert)
    }

    /// Adds where a group is shown; adding the same alert message again updates it.
    pub(crate) async fn add_group_thread(
        conn: &mut DB::Connection,
        thread: &GroupThread,
    ) -> StoreResult<()> {
        let message = &thread.alert_message;
        sqlx::query(
            "INSERT INTO group_threads (group_id, platform, channel, message_id, alert_message, \
             summary) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (group_id, platform, channel, message_id) DO UPDATE SET \
               alert_message = excluded.alert_message, \
               summary = COALESCE(excluded.summary, group_threads.summary)",
        )
        .bind(thread.group_id)
        .bind(message.platform.as_str())
        .bind(message.channel.clone())
        .bind(message.id.clone())
        .bind(to_json(
            "thread alert message",
            &StoredAlertMessage {
                message: message.clone(),
                posted_by_bot: thread.posted_by_bot,
            },
        )?)
        .bind(opt_to_json("thread summary", thread.summary.as_ref())?)
        .execute(conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn set_group_summary(
        conn: &mut DB::Connection,
        group_id: i64,
        alert_message: &MessageRef,
        summary: &MessageRef,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE group_threads SET summary = $5 \
             WHERE group_id = $1 AND platform = $2 AND channel = $3 AND message_id = $4",
        )
        .bind(group_id)
        .bind(alert_message.platform.as_str())
        .bind(alert_message.channel.clone())
        .bind(alert_message.id.clone())
        .bind(to_json("thread summary", summary)?)
        .execute(conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn group_threads(
        conn: &mut DB::Connection,
        group_id: i64,
    ) -> StoreResult<Vec<GroupThread>> {
        let rows: Vec<ThreadRow> = sqlx::query_as(
            "SELECT group_id, alert_message, summary FROM group_threads \
             WHERE group_id = $1 ORDER BY id",
        )
        .bind(group_id)
        .fetch_all(conn)
        .await?;
        collect(rows, ThreadRow::into_thread)
    }

    // --- plans -----------------------------------------------------------------------------

    pub(crate) async fn insert_plan(
        conn: &mut DB::Connection,
        plan: &RollbackPlan,
    ) -> StoreResult<()> {
        let result = sqlx::query(
            "INSERT INTO rollback_plans (id, service, service_key, environment, environment_key, \
             from_id, from_version, to_id, to_version, reason, alert_group, offered_at, \
             expires_at, message, requested_by, state, approved_by, started_by, started_at, \
             finished_at, outcome, operation, verified_at, action) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20, $21, $22, $23, $24)",
        )
        .bind(plan.id.to_string())
        .bind(plan.target.service.to_string())
        .bind(plan.target.service.key())
        .bind(plan.target.environment.to_string())
        .bind(plan.target.environment.key())
        .bind(plan.from.id.clone())
        .bind(plan.from.version.clone())
        .bind(plan.to.id.clone())
        .bind(plan.to.version.clone())
        .bind(plan.reason.clone())
        .bind(plan.alert_group)
        .bind(micros(plan.offered_at))
        .bind(micros(plan.expires_at))
        .bind(opt_to_json("plan message", plan.message.as_ref())?)
        .bind(opt_to_json(
            "plan requested_by",
            plan.requested_by.as_ref(),
        )?)
        .bind(plan.state.as_str())
        .bind(opt_to_json("plan approved_by", plan.approved_by.as_ref())?)
        .bind(opt_to_json("plan started_by", plan.started_by.as_ref())?)
        .bind(opt_micros(plan.started_at))
        .bind(opt_micros(plan.finished_at))
        .bind(plan.outcome.clone())
        .bind(opt_to_json("plan operation", plan.operation.as_ref())?)
        .bind(opt_micros(plan.verified_at))
        .bind(plan.action.as_str())
        .execute(&mut *conn)
        .await;
        let error = match result {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        // A running plan can violate two unique indexes: its id (a plain error) or the one
        // that allows a single running plan per target.
        if is_unique_violation(&error)
            && plan.state == PlanState::Running
            && Self::plan(conn, &plan.id).await?.is_none()
        {
            return Err(StoreError::TargetBusy(plan.target.clone()));
        }
        Err(error.into())
    }

    pub(crate) async fn plan(
        conn: &mut DB::Connection,
        id: &PlanId,
    ) -> StoreResult<Option<RollbackPlan>> {
        let row: Option<PlanRow> = sqlx::query_as(concat!(
            "SELECT ",
            plan_columns!(),
            " FROM rollback_plans WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
        row.map(PlanRow::into_plan).transpose()
    }

    /// One conditional `UPDATE`: the database decides which of several concurrent callers
    /// moves the plan, and its partial unique index refuses a second running plan of a
    /// target.
    pub(crate) async fn transition_plan(
        conn: &mut DB::Connection,
        id: &PlanId,
        from: &[PlanState],
        to: PlanState,
        patch: &PlanPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RollbackPlan>> {
        if from.is_empty() {
            return Ok(None);
        }
        let mut sql = QueryBuilder::<DB>::new("UPDATE rollback_plans SET state = ");
        sql.push_bind(to.as_str())
            .push(", approved_by = COALESCE(")
            .push_bind(opt_to_json("plan approved_by", patch.approved_by.as_ref())?)
            .push(", approved_by), started_by = COALESCE(")
            .push_bind(opt_to_json("plan started_by", patch.started_by.as_ref())?)
            .push(", started_by), started_at = COALESCE(")
            .push_bind(opt_micros(patch.started_at))
            .push(", started_at), finished_at = COALESCE(")
            .push_bind(opt_micros(patch.finished_at))
            .push(", finished_at), outcome = COALESCE(")
            .push_bind(patch.outcome.clone())
            .push(", outcome)");
        if let Some(runner) = &patch.runner {
            sql.push(", runner = ")
                .push_bind(runner.clone())
                .push(", heartbeat_at = ")
                .push_bind(micros(now));
        }
        sql.push(" WHERE id = ")
            .push_bind(id.to_string())
            .push(" AND state IN (");
        let mut states = sql.separated(", ");
        for state in state_list(from) {
            states.push_bind(state);
        }
        sql.push(")");
        if to == PlanState::Running {
            sql.push(" AND expires_at > ").push_bind(micros(now));
        }
        sql.push(concat!(" RETURNING ", plan_columns!()));
        let result: Result<Option<PlanRow>, sqlx::Error> =
            sql.build_query_as().fetch_optional(&mut *conn).await;
        match result {
            Ok(row) => row.map(PlanRow::into_plan).transpose(),
            // The id does not change, so the only unique index an update can violate is
            // the one-running-plan-per-target index.
            Err(error) if is_unique_violation(&error) => {
                let plan = Self::plan(conn, id)
                    .await?
                    .ok_or(StoreError::Database(error))?;
                Err(StoreError::TargetBusy(plan.target))
            }
            Err(error) => Err(error.into()),
        }
    }

    pub(crate) async fn set_plan_message(
        conn: &mut DB::Connection,
        id: &PlanId,
        message: &MessageRef,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE rollback_plans SET message = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(to_json("plan message", message)?)
            .execute(conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn set_plan_operation(
        conn: &mut DB::Connection,
        id: &PlanId,
        operation: &serde_json::Value,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE rollback_plans SET operation = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(operation.to_string())
            .execute(conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn set_plan_verified(
        conn: &mut DB::Connection,
        id: &PlanId,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE rollback_plans SET verified_at = $2 WHERE id = $1 AND verified_at IS NULL",
        )
        .bind(id.to_string())
        .bind(micros(at))
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn plans_in_state(
        conn: &mut DB::Connection,
        states: &[PlanState],
    ) -> StoreResult<Vec<RollbackPlan>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = QueryBuilder::<DB>::new(concat!(
            "SELECT ",
            plan_columns!(),
            " FROM rollback_plans WHERE state IN ("
        ));
        let mut list = sql.separated(", ");
        for state in state_list(states) {
            list.push_bind(state);
        }
        sql.push(") ORDER BY offered_at, id");
        let rows: Vec<PlanRow> = sql.build_query_as().fetch_all(conn).await?;
        collect(rows, PlanRow::into_plan)
    }

    pub(crate) async fn plans_for_group(
        conn: &mut DB::Connection,
        group_id: i64,
    ) -> StoreResult<Vec<RollbackPlan>> {
        let rows: Vec<PlanRow> = sqlx::query_as(concat!(
            "SELECT ",
            plan_columns!(),
            " FROM rollback_plans WHERE alert_group = $1 ORDER BY offered_at, id"
        ))
        .bind(group_id)
        .fetch_all(conn)
        .await?;
        collect(rows, PlanRow::into_plan)
    }

    pub(crate) async fn last_rollback_finished(
        conn: &mut DB::Connection,
        target: &Target,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        // Failed plans count once the backend accepted the call (an operation is stored):
        // a call it refused (a 409, a missing permission) changed nothing, and the fresh
        // plan offered after it must not wait out the cooldown. Only rollbacks count: an
        // abort is usually followed by the rollback that makes it final.
        let row: MaxRow = sqlx::query_as(
            "SELECT MAX(finished_at) AS finished_at FROM rollback_plans \
             WHERE service_key = $1 AND environment_key = $2 AND action = $3 \
             AND (state = $4 OR (state = $5 AND operation IS NOT NULL))",
        )
        .bind(target.service.key())
        .bind(target.environment.key())
        .bind(Action::Rollback.as_str())
        .bind(PlanState::Succeeded.as_str())
        .bind(PlanState::Failed.as_str())
        .fetch_one(conn)
        .await?;
        opt_time(row.finished_at)
    }

    pub(crate) async fn plans_awaiting_verification(
        conn: &mut DB::Connection,
    ) -> StoreResult<Vec<RollbackPlan>> {
        let rows: Vec<PlanRow> = sqlx::query_as(concat!(
            "SELECT ",
            plan_columns!(),
            " FROM rollback_plans WHERE state = $1 AND verified_at IS NULL \
              ORDER BY finished_at, id"
        ))
        .bind(PlanState::Succeeded.as_str())
        .fetch_all(conn)
        .await?;
        collect(rows, PlanRow::into_plan)
    }

    /// Keeps a runner's claim on the rollbacks it follows alive.
    pub(crate) async fn heartbeat_plans(
        conn: &mut DB::Connection,
        runner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let result = sqlx::query(
            "UPDATE rollback_plans SET heartbeat_at = $1 WHERE state = $2 AND runner = $3",
        )
        .bind(micros(now))
        .bind(PlanState::Running.as_str())
        .bind(runner.to_owned())
        .execute(conn)
        .await?;
        Ok(result.rows_affected())
    }

    /// Takes over running rollbacks whose runner stopped heartbeating (or never had one),
    /// in one conditional update so that two processes never adopt the same plan.
    pub(crate) async fn adopt_running_plans(
        conn: &mut DB::Connection,
        runner: &str,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RollbackPlan>> {
        let rows: Vec<PlanRow> = sqlx::query_as(concat!(
            "UPDATE rollback_plans SET runner = $1, heartbeat_at = $2 \
             WHERE state = $3 AND (heartbeat_at IS NULL OR heartbeat_at < $4) RETURNING ",
            plan_columns!()
        ))
        .bind(runner.to_owned())
        .bind(micros(now))
        .bind(PlanState::Running.as_str())
        .bind(micros(stale_before))
        .fetch_all(conn)
        .await?;
        collect(rows, PlanRow::into_plan)
    }

    /// Running rollbacks recorded under `runner` (its previous run), heartbeat refreshed.
    pub(crate) async fn reclaim_running_plans(
        conn: &mut DB::Connection,
        runner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RollbackPlan>> {
        let rows: Vec<PlanRow> = sqlx::query_as(concat!(
            "UPDATE rollback_plans SET heartbeat_at = $1 WHERE state = $2 AND runner = $3 \
             RETURNING ",
            plan_columns!()
        ))
        .bind(micros(now))
        .bind(PlanState::Running.as_str())
        .bind(runner.to_owned())
        .fetch_all(conn)
        .await?;
        collect(rows, PlanRow::into_plan)
    }

    // --- confirmations ---------------------------------------------------------------------

    pub(crate) async fn insert_confirmation(
        conn: &mut DB::Connection,
        confirmation: &Confirmation,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO confirmations \
             (id, plan_id, actor, created_at, expires_at, disable_auto_sync) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(confirmation.id.to_string())
        .bind(confirmation.plan.to_string())
        .bind(to_json("confirmation actor", &confirmation.actor)?)
        .bind(micros(confirmation.created_at))
        .bind(micros(confirmation.expires_at))
        .bind(i64::from(confirmation.disable_auto_sync))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// `DELETE … RETURNING`: of two concurrent takes, one deletes the row and the other
    /// finds nothing.
    pub(crate) async fn take_confirmation(
        conn: &mut DB::Connection,
        id: &PlanId,
    ) -> StoreResult<Option<Confirmation>> {
        let row: Option<ConfirmationRow> = sqlx::query_as(
            "DELETE FROM confirmations WHERE id = $1 \
             RETURNING id, plan_id, actor, created_at, expires_at, disable_auto_sync",
        )
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
        row.map(ConfirmationRow::into_confirmation).transpose()
    }

    pub(crate) async fn confirmation(
        conn: &mut DB::Connection,
        id: &PlanId,
    ) -> StoreResult<Option<Confirmation>> {
        let row: Option<ConfirmationRow> = sqlx::query_as(
            "SELECT id, plan_id, actor, created_at, expires_at, disable_auto_sync \
             FROM confirmations WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
        row.map(ConfirmationRow::into_confirmation).transpose()
    }

    // --- processed events ------------------------------------------------------------------

    /// Insert-if-absent on the primary key: the database admits exactly one first claim.
    pub(crate) async fn claim_event(
        conn: &mut DB::Connection,
        key: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO event_claims (key, claimed_at) VALUES ($1, $2) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key.to_owned())
        .bind(micros(now))
        .execute(conn)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub(crate) async fn prune_event_claims(
        conn: &mut DB::Connection,
        before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM event_claims WHERE claimed_at < $1")
            .bind(micros(before))
            .execute(conn)
            .await?;
        Ok(result.rows_affected())
    }

    // --- audit -----------------------------------------------------------------------------

    /// Seals and appends one record after the head read by `head_sql`. Run inside a
    /// transaction in which `head_sql` excludes every other appender until commit.
    pub(crate) async fn append_audit(
        conn: &mut DB::Connection,
        head_sql: &'static str,
        entry: &AuditEntry,
        sealer: &AuditSealer,
    ) -> StoreResult<AuditRecord> {
        let head: HeadRow = sqlx::query_as(head_sql)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| corrupt("the audit chain head row is missing"))?;
        let mut entry = entry.clone();
        // Stored times have microsecond precision; seal what will be read back.
        entry.at = entry.at.trunc_subsecs(6);
        let record = entry.into_record(head.seq + 1, head.hash, sealer);
        sqlx::query(concat!(
            "INSERT INTO audit_log (",
            audit_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(record.seq)
        .bind(micros(record.at))
        .bind(record.actor.clone())
        .bind(record.actor_name.clone())
        .bind(record.action.clone())
        .bind(record.service.clone())
        .bind(record.environment.clone())
        .bind(record.details.clone())
        .bind(record.prev_hash.clone())
        .bind(record.hash.clone())
        .execute(&mut *conn)
        .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(record.seq)
            .bind(record.hash.clone())
            .execute(&mut *conn)
            .await?;
        Ok(record)
    }

    pub(crate) async fn audit_records(
        conn: &mut DB::Connection,
        after: i64,
        count: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = sqlx::query_as(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(limit(count))
        .fetch_all(conn)
        .await?;
        collect(rows, AuditRow::into_record)
    }

    pub(crate) async fn audit_search(
        conn: &mut DB::Connection,
        query: &AuditQuery,
    ) -> StoreResult<Vec<AuditRecord>> {
        Self::audit_search_by(conn, query, ActionMatch::Exact).await
    }

    pub(crate) async fn audit_search_containing(
        conn: &mut DB::Connection,
        query: &AuditQuery,
    ) -> StoreResult<Vec<AuditRecord>> {
        Self::audit_search_by(conn, query, ActionMatch::Contains).await
    }

    async fn audit_search_by(
        conn: &mut DB::Connection,
        query: &AuditQuery,
        action_match: ActionMatch,
    ) -> StoreResult<Vec<AuditRecord>> {
        let mut sql = QueryBuilder::<DB>::new(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log WHERE 1 = 1"
        ));
        if let Some(service) = &query.service {
            sql.push(" AND service = ").push_bind(service.clone());
        }
        if let Some(actor) = &query.actor {
            sql.push(" AND (actor = ")
                .push_bind(actor.clone())
                .push(" OR actor_name = ")
                .push_bind(actor.clone())
                .push(")");
        }
        match (&query.action, action_match) {
            (None, _) => {}
            (Some(action), ActionMatch::Exact) => {
                sql.push(" AND action = ").push_bind(action.clone());
            }
            (Some(action), ActionMatch::Contains) => {
                sql.push(" AND LOWER(action) LIKE ")
                    .push_bind(like_containing(action))
                    .push(" ESCAPE '\\'");
            }
        }
        if let Some(before) = query.before_seq {
            sql.push(" AND seq < ").push_bind(before);
        }
        sql.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(limit(query.limit));
        let rows: Vec<AuditRow> = sql.build_query_as().fetch_all(conn).await?;
        collect(rows, AuditRow::into_record)
    }

    /// See [`Store::incident_history`](super::Store::incident_history). Run inside one
    /// read transaction so that the three reads see the same snapshot.
    pub(crate) async fn incident_history(
        conn: &mut DB::Connection,
        since: DateTime<Utc>,
        actions: &[&str],
        count: u32,
    ) -> StoreResult<IncidentHistory> {
        let rows: Vec<GroupRow> = sqlx::query_as(concat!(
            "SELECT ",
            group_columns!(),
            " FROM alert_groups WHERE opened_at >= $1 ORDER BY opened_at, id"
        ))
        .bind(micros(since))
        .fetch_all(&mut *conn)
        .await?;
        let groups = collect(rows, GroupRow::into_group)?;
        let rows: Vec<PlanGroupRow> = sqlx::query_as(
            "SELECT p.id, p.alert_group FROM rollback_plans p \
             JOIN alert_groups g ON g.id = p.alert_group WHERE g.opened_at >= $1 ORDER BY p.id",
        )
        .bind(micros(since))
        .fetch_all(&mut *conn)
        .await?;
        let plans = rows
            .into_iter()
            .map(|row| {
                PlanId::parse(&row.id)
                    .map(|id| (id, row.alert_group))
                    .ok_or_else(|| corrupt(format!("plan id {:?}", row.id)))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let records = if actions.is_empty() {
            Vec::new()
        } else {
            // Records of a group are written after it opened; the margin covers replicas
            // whose clocks differ a little.
            let mut sql = QueryBuilder::<DB>::new(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log WHERE at >= "
            ));
            sql.push_bind(micros(since - chrono::Duration::minutes(5)))
                .push(" AND action IN (");
            let mut list = sql.separated(", ");
            for action in actions {
                list.push_bind((*action).to_owned());
            }
            // Newest first, so that a limit cuts the oldest records, then put in order.
            sql.push(") ORDER BY seq DESC LIMIT ")
                .push_bind(limit(count.saturating_add(1)));
            let rows: Vec<AuditRow> = sql.build_query_as().fetch_all(&mut *conn).await?;
            collect(rows, AuditRow::into_record)?
        };
        let mut records = records;
        let truncated = records.len() > count as usize;
        records.truncate(count as usize);
        records.reverse();
        Ok(IncidentHistory {
            groups,
            plans,
            records,
            truncated,
        })
    }

    pub(crate) async fn audit_head(
        conn: &mut DB::Connection,
    ) -> StoreResult<Option<(i64, String)>> {
        let head: Option<HeadRow> = sqlx::query_as(AUDIT_HEAD).fetch_optional(conn).await?;
        Ok(head
            .filter(|head| head.seq > 0)
            .map(|head| (head.seq, head.hash)))
    }

    // --- web console -----------------------------------------------------------------------

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

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
