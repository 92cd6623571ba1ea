//! The SQL both stores run, written once. SQLite and PostgreSQL accept the same statements
//! here (`$n` parameters, `ON CONFLICT`, `RETURNING`, partial indexes), so every query,
//! row conversion and multi-statement algorithm lives in [`Sql`], generic over the sqlx
//! database. What differs stays with each store: pools, how a write transaction is opened,
//! and how concurrent writers are serialised (SQLite `BEGIN IMMEDIATE` on one writer
//! connection; PostgreSQL row and advisory locks). The functions here therefore take a
//! connection the caller has already put in the right transaction.

use std::marker::PhantomData;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{Database, Decode, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};

use super::rows::{
    AlertRow, AuditRow, ConfirmationRow, ConsoleMessageRow, ConsoleSessionRow, DeployRow,
    DeployValues, GroupRow, HeadRow, IdRow, MaxRow, PlanGroupRow, PlanRow, ResolvedRow,
    StoredAlertMessage, ThreadRow, collect,
};
use super::{
    AlertGroup, ConsoleMessage, ConsolePlace, ConsoleSession, DeployQuery, GroupThread,
    IncidentHistory, RecordedAlert, RecordedDeploy, StoreError, StoreResult,
};
use crate::audit::{AuditEntry, AuditQuery, AuditRecord, AuditSealer};
use crate::core::alert::{Alert, AlertStatus};
use crate::core::backend::Action;
use crate::core::deploy::{Deploy, Environment, ServiceName, Target};
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

// The queries by table group; declared after the column macros above, which they use.
mod alerts;
mod audit;
mod console;
mod deploys;
mod plans;

// --- conversions -----------------------------------------------------------------------------

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn opt_micros(at: Option<DateTime<Utc>>) -> Option<i64> {
    at.map(micros)
}

pub(crate) fn time(micros: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| corrupt(format!("time {micros} µs is out of range")))
}

pub(crate) fn opt_time(micros: Option<i64>) -> StoreResult<Option<DateTime<Utc>>> {
    micros.map(time).transpose()
}

/// Encodes a value of one of our own types. They hold only strings, numbers, options,
/// sequences and string-keyed maps, which JSON always represents; an error here would be a
/// bug in a `Serialize` impl, reported rather than panicking.
pub(crate) fn to_json<T: Serialize + ?Sized>(what: &str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| corrupt(format!("cannot encode {what}: {e}")))
}

pub(crate) fn opt_to_json<T: Serialize>(
    what: &str,
    value: Option<&T>,
) -> StoreResult<Option<String>> {
    value.map(|value| to_json(what, value)).transpose()
}

pub(crate) fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("{what} is not valid JSON: {e}")))
}

pub(crate) fn opt_from_json<T: DeserializeOwned>(
    what: &str,
    text: Option<&str>,
) -> StoreResult<Option<T>> {
    text.map(|text| from_json(what, text)).transpose()
}

pub(crate) fn service(raw: &str) -> StoreResult<ServiceName> {
    ServiceName::parse(raw).map_err(corrupt)
}

pub(crate) fn environment(raw: &str) -> StoreResult<Environment> {
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

pub(crate) fn state_list(states: &[PlanState]) -> impl Iterator<Item = &'static str> + '_ {
    states.iter().map(|state| state.as_str())
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
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
