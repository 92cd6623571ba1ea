//! The details the bot's audit records carry, one type per kind of record. An auditor
//! reads these field names (`breakwater audit`, the export, the console's Deploys page),
//! so they are written once here and every writer is checked by the compiler; the field
//! order is the order they are shown in.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::core::deploy::Revision;
use crate::core::message::{MessageRef, Platform};

/// Where an alert came from: a webhook, or the chat message it was read from.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum AlertOriginDetail<'a> {
    Webhook(&'static str),
    Channel(&'a MessageRef),
}

/// `alert.received` / `alert.resolved`.
#[derive(Serialize)]
pub(super) struct AlertRecorded<'a> {
    pub alert_id: i64,
    pub group: i64,
    pub source: &'static str,
    pub title: &'a str,
    pub severity: &'static str,
    pub status: &'static str,
    pub fingerprint: &'a str,
    pub started_at: DateTime<Utc>,
    pub link: Option<&'a str>,
    pub origin: AlertOriginDetail<'a>,
}

/// `summary.posted`: where the summary is and what it offered.
#[derive(Serialize)]
pub(super) struct SummaryPosted<'a> {
    pub group: i64,
    pub platform: Platform,
    pub channel: &'a str,
    pub message: &'a str,
    pub plan: Option<String>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub suspect: Option<String>,
}

/// The verification of a finished rollback once its alert resolved (or did not).
#[derive(Serialize)]
pub(super) struct PlanVerified<'a> {
    pub plan: String,
    pub to: &'a str,
    pub message: &'a str,
}

/// `rollback.offered`.
#[derive(Serialize)]
pub(super) struct PlanOffered<'a> {
    pub plan: String,
    pub action: &'static str,
    pub from: &'a Revision,
    pub to: &'a Revision,
    pub group: Option<i64>,
    pub expires_at: DateTime<Utc>,
    pub reason: &'a str,
}

/// `rollback.denied`: a press refused, with the reason code and the words shown.
#[derive(Serialize)]
pub(super) struct PressDenied<'a> {
    pub plan: String,
    pub reason: &'a str,
    pub message: &'a str,
    pub channel: Option<&'a str>,
}

/// `rollback.requested`.
#[derive(Serialize)]
pub(super) struct PlanRequested<'a> {
    pub plan: String,
    pub from: &'a Revision,
    pub to: &'a Revision,
    pub channel: Option<&'a str>,
    pub disable_auto_sync: bool,
}

/// `rollback.confirmation_requested`.
#[derive(Serialize)]
pub(super) struct ConfirmationRequested<'a> {
    pub plan: String,
    pub confirmation: String,
    pub from: &'a str,
    pub to: &'a str,
    pub disable_auto_sync: bool,
}

/// Records about a plan that need nothing but its id (expired, dismissed).
#[derive(Serialize)]
pub(super) struct PlanOnly {
    pub plan: String,
}

/// `rollback.cancelled`: the Cancel step of a confirmation.
#[derive(Serialize)]
pub(super) struct ConfirmationCancelled {
    pub plan: String,
    pub confirmation: String,
}

/// `rollback.approved`: the second person of a two-person rule.
#[derive(Serialize)]
pub(super) struct PlanApproved<'a> {
    pub plan: String,
    pub from: &'a str,
    pub to: &'a str,
}

/// `rollback.started`: written before the backend is called.
#[derive(Serialize)]
pub(super) struct RollbackStarted<'a> {
    pub plan: String,
    pub from: &'a Revision,
    pub to: &'a Revision,
    pub action: &'static str,
    pub backend: &'a str,
    pub kind: &'a str,
    pub disable_auto_sync: bool,
}

/// `rollback.backend_call`: the call's result and how long it took.
#[derive(Serialize)]
pub(super) struct BackendCalled<'a> {
    pub plan: String,
    pub backend: &'a str,
    pub operation: &'static str,
    pub ok: bool,
    pub error: Option<&'a str>,
    pub error_kind: Option<&'static str>,
    pub took_ms: u64,
}

/// `rollback.progress`: one line of a followed rollback.
#[derive(Serialize)]
pub(super) struct ProgressLine<'a> {
    pub plan: String,
    pub line: &'a str,
}

/// `rollback.succeeded` / `rollback.failed`.
#[derive(Serialize)]
pub(super) struct RollbackFinished<'a> {
    pub plan: String,
    pub action: &'static str,
    pub from: &'a Revision,
    pub to: &'a Revision,
    pub detail: &'a str,
    pub took_ms: i64,
}

/// `rollback.stale`: the target no longer runs the plan's `from` (deployed again since).
#[derive(Serialize)]
pub(super) struct DeployedSince<'a> {
    pub plan: String,
    pub expected_from: &'a Revision,
    pub current: Option<&'a Revision>,
    pub to: &'a Revision,
}

/// `rollback.stale`: the backend refused a plan that changed under it (a 409).
#[derive(Serialize)]
pub(super) struct ChangedUnderIt<'a> {
    pub plan: String,
    pub action: &'static str,
    pub expected_from: &'a Revision,
    pub to: &'a Revision,
}

/// `rollback.interrupted`: a running plan whose process stopped and cannot be followed.
#[derive(Serialize)]
pub(super) struct RollbackInterrupted<'a> {
    pub plan: String,
    pub from: &'a Revision,
    pub to: &'a Revision,
    pub reason: &'a str,
}

/// `rollback.started` of a Roll back canary: no deployment backend, Flagger does it.
#[derive(Serialize)]
pub(super) struct CanaryRollbackStarted<'a> {
    pub plan: String,
    pub from: &'a Revision,
    pub to: &'a Revision,
    pub action: &'static str,
    pub backend: &'static str,
    pub kind: &'static str,
    pub namespace: &'a str,
    pub canary: &'a str,
}

/// `canary_rollback.armed`: the request Flagger's rollback hook will be answered 2xx for.
#[derive(Serialize)]
pub(super) struct CanaryRollbackArmed<'a> {
    pub plan: String,
    pub namespace: &'a str,
    pub canary: &'a str,
    pub from: &'a Revision,
    pub expires_at: DateTime<Utc>,
}

/// `rollback.stale` of a Roll back canary: the canary run is no longer in analysis.
#[derive(Serialize)]
pub(super) struct CanaryRunChanged<'a> {
    pub plan: String,
    pub action: &'static str,
    pub expected_from: &'a Revision,
    pub current: Option<Revision>,
    pub current_status: Option<&'static str>,
    pub to: &'a Revision,
}
