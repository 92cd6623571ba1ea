//! The brain. Adapters hand it alerts, channel messages, button presses and commands; it
//! records them, decides, calls the deployment backend and tells the chat platforms what
//! to show. It applies the rollback rules (README "Rollback rules") step by step:
//!
//! 1. claim the inbound event id (retries and double clicks collapse to one);
//! 2. load the plan and check policy (who, where, freeze, cooldown);
//! 3. confirm (Slack's dialog, or a private Confirm/Cancel step elsewhere);
//! 4. move the plan `offered|confirmed → running` with a conditional update — the loser of
//!    any race is told who already did it;
//! 5. re-read the current revision; if it is not the plan's `from`, mark it stale and
//!    offer a fresh plan;
//! 6. audit `rollback.started` durably, call the backend, follow it, audit the outcome,
//!    update the message.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::alert::{Alert, AlertStatus, KnownService, Recognizer};
use super::backend::{
    Action, BackendDirectory, BackendErrorKind, Caveat, DeployBackend, Operation, Outcome,
    RollbackCall,
};
use super::clock::Clock;
use super::compose::{self, SummaryView};
use super::deploy::{
    Deploy, DeploySource, DeployStatus, Environment, Revision, ServiceName, Target,
};
use super::event::{Command, CommandRequest, Press, Reply};
use super::incident;
use super::message::{
    ButtonKind, Message, MessageRef, Platform, PrivateReply, RichText, Section, Tone,
};
use super::policy::{Actor, Policy, Principal, RollbackRequest};
use super::repository::{ConsoleLinks, ServiceLinks};
use super::rollback::{Confirmation, PlanId, PlanPatch, PlanState, RollbackPlan};
use super::summary::{
    DeploySummary, Offer, Summary, SummaryBody, SummaryInput, human_span, summarize,
};
use crate::core::audit::{AuditLog, AuditQuery, AuditRecord, actions};
use crate::core::chat::{Chat, ChatHub, Lane};
use crate::core::store::{AlertGroup, DeployQuery, GroupThread, RecordedAlert, Store, StoreError};
use crate::metrics::{IncidentInterval, Metrics};
use crate::sync::lock;

/// Progress lines of one rollback written to the audit log; later ones are only shown.
const PROGRESS_AUDITED: usize = 20;
/// How much history commands read.
const HISTORY_LIMIT: u32 = 200;
/// Deploys read from an alert's lookback window (and after it), and from before it.
const WINDOW_LIMIT: u32 = 50;
const BEFORE_WINDOW_LIMIT: u32 = 10;

/// Which part of a target's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryScope {
    /// The newest deploys.
    Latest(u32),
    /// Everything since this time (an alert's lookback window), plus a few before it.
    Window(DateTime<Utc>),
}
/// Summaries cached per alert group; older ones are rebuilt on demand.
const SUMMARY_CACHE: usize = 1024;
/// How long a press waits for the backend to re-check what blocks a rollback. The
/// platforms want an answer within 3 s; a backend slower than this is not waited for,
/// and its own refusals at the rollback call (auto-sync on, a paused Deployment) still
/// hold.
const PRESS_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The parts of the configuration the bot decides with.
#[derive(Debug, Clone)]
pub struct BotSettings {
    pub services: Vec<KnownService>,
    pub policy: Policy,
    /// Alerts for the same target within this window share a thread.
    pub group_window: Duration,
    /// How long a private Confirm/Cancel step stays valid.
    pub confirm_ttl: Duration,
    /// How long grouped alerts wait before the summary is refreshed, so a storm of
    /// alerts becomes a few updates.
    pub refresh_delay: Duration,
    /// Upper bound on following one rollback, beyond the backend's own timeout.
    pub follow_limit: Duration,
    /// A running rollback whose process has not heartbeaten for this long is adopted by
    /// another process (or the restarted one).
    pub heartbeat_timeout: Duration,
    /// How often this process refreshes the heartbeat of the rollbacks it follows and
    /// looks for rollbacks of dead processes to adopt.
    pub heartbeat_interval: Duration,
    /// This process's stable name on the rollbacks it runs (`server.runner_id`): a
    /// restarted process with the same name takes its running rollbacks back at once.
    /// `None` makes up a name unique to this process (tests, the demo).
    pub runner_id: Option<String>,
    /// At most this many alerts are held in memory while the store is unavailable (see
    /// [`AlertHold`]).
    pub alert_hold: usize,
    /// `platform:channel` where the audit chain head is posted, and how often.
    pub digest: Option<(String, Duration)>,
    /// Per service: its repository (commit and compare links) and owners, named in the
    /// summary.
    pub links: HashMap<ServiceName, ServiceLinks>,
    /// The console's pages for the summary's links (`server.public_url`), if it is set.
    pub console_links: Option<ConsoleLinks>,
    /// The Flagger Canaries that deploy services, for Roll back canary.
    pub flagger: FlaggerSettings,
}

impl Default for BotSettings {
    fn default() -> Self {
        Self {
            services: Vec::new(),
            policy: Policy::default(),
            group_window: Duration::from_secs(600),
            confirm_ttl: Duration::from_secs(300),
            refresh_delay: Duration::from_secs(2),
            follow_limit: Duration::from_secs(3600),
            heartbeat_timeout: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(5),
            runner_id: None,
            alert_hold: ALERT_HOLD,
            digest: None,
            links: HashMap::new(),
            console_links: None,
            flagger: FlaggerSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store is unavailable and the hold for alerts waiting for it is full: the
    /// sender must redeliver later.
    #[error(
        "database unavailable and {0} alerts already wait for it; redeliver later (check database.url)"
    )]
    AlertHoldFull(usize),
}

impl BotError {
    /// The store (or the hold in front of it) cannot take this now; retrying later can
    /// succeed. HTTP answers 503 with `Retry-After`.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Store(error) => error.is_unavailable(),
            Self::AlertHoldFull(_) => true,
        }
    }
}

/// Default bound of [`AlertHold`].
pub const ALERT_HOLD: usize = 2000;

/// Alerts acknowledged to their sender while the store was unavailable, kept in memory in
/// arrival order and retried (with back-off from 100 ms to 5 s) until the store is back,
/// so that an alert breakwater acknowledged is never lost to a database outage.
///
/// Bounded at `BotSettings::alert_hold` alerts. While it holds anything, new alerts queue
/// behind (order is kept). When it is full, senders that can redeliver are refused
/// instead: webhook batches get [`BotError::AlertHoldFull`] (HTTP 503 + `Retry-After`,
/// Alertmanager and Grafana retry) and Slack's HTTP events get 503 before they are
/// acknowledged (see [`Bot::accepting_alerts`]). Channel messages that were acknowledged
/// on receipt (Socket Mode, the Discord gateway, Slack events already answered) wait for
/// room instead of being dropped; that stalls their reader, which is the back-pressure
/// those platforms understand (Socket Mode redelivers what is not acknowledged).
struct AlertHold {
    state: Mutex<HoldState>,
    /// Woken whenever an alert leaves the hold.
    room: tokio::sync::Notify,
    capacity: usize,
}

#[derive(Default)]
struct HoldState {
    queue: std::collections::VecDeque<HeldAlert>,
    /// A task is retrying the front of the queue.
    draining: bool,
}

/// An alert and how far its recording got before the store failed.
#[derive(Clone)]
struct HeldAlert {
    /// The platform delivery id still to claim (`slack:Ev…`); `None` once claimed or for
    /// webhook alerts.
    claim: Option<String>,
    alert: Alert,
    origin: AlertOrigin,
    /// Set once the alert is in the store; what is left is its audit record.
    recorded: Option<RecordedAlert>,
}

/// Whether a sender can be refused when the hold is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Refuse,
    WaitForRoom,
}

/// Where an alert was first seen.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertOrigin {
    /// A webhook (Alertmanager, Grafana): the bot posts it before answering.
    Webhook,
    /// A message in an alert channel: the bot answers in its thread.
    Channel(MessageRef),
}

/// What became of an inbound alert or channel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertHandled {
    /// The platform delivered the same event before.
    Duplicate,
    /// Not an alert (or a person's message naming no known service).
    Ignored,
    /// The same alert notification again (Alertmanager repeats firing alerts).
    Repeat,
    Recorded {
        group_id: i64,
        new_group: bool,
        resolved: bool,
    },
    /// The store is unavailable: the alert is held in memory and recorded once it is
    /// back.
    Held,
}

/// The bot. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct Bot {
    inner: Arc<Inner>,
}

struct Inner {
    settings: BotSettings,
    /// Alert names already logged as matching no service (bounded).
    unrouted: crate::core::unrouted::UnroutedNames,
    recognizer: Recognizer,
    store: Arc<dyn Store>,
    audit: AuditLog,
    backends: Arc<dyn BackendDirectory>,
    chats: ChatHub,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Rollbacks being followed by this process.
    rollbacks: TaskTracker,
    /// Chat work done after the inbound request was answered.
    background: TaskTracker,
    running: Mutex<HashSet<PlanId>>,
    /// This process's name on the rollbacks it follows (see `Store::heartbeat_plans`).
    runner: String,
    summaries: Mutex<HashMap<i64, Arc<Summary>>>,
    refresh_pending: Mutex<HashSet<i64>>,
    /// Groups whose thread on a platform is being opened: concurrent alerts of one group
    /// must not open a second thread before the first is in the store.
    opening: Mutex<HashSet<(i64, Platform)>>,
    last_digest: Mutex<Option<DateTime<Utc>>>,
    hold: AlertHold,
    private_replies: Mutex<PrivateReplies>,
    own_posts: Mutex<OwnPosts>,
}

/// At most this many plans keep their private replies for replacement, with at most
/// [`PRIVATE_REPLIES_PER_PLAN`] each; when full the oldest plan is forgotten (its private
/// replies then stay as they were, which is all a platform that cannot edit them gives).
const PRIVATE_REPLY_PLANS: usize = 1024;
const PRIVATE_REPLIES_PER_PLAN: usize = 16;

/// Private replies about each plan (Confirm/Cancel steps, "Rolling back…"), kept until the
/// plan is over and they are replaced by its outcome. In memory: the presses and the
/// rollback they start are handled by this process; after a restart the replies stay as
/// they were (Discord's interaction tokens would have expired anyway).
#[derive(Default)]
struct PrivateReplies {
    order: VecDeque<PlanId>,
    by_plan: HashMap<PlanId, Vec<(Principal, PrivateReply)>>,
}

impl PrivateReplies {
    fn add(&mut self, plan: PlanId, actor: &Actor, reply: PrivateReply) {
        if !self.by_plan.contains_key(&plan) {
            if self.order.len() >= PRIVATE_REPLY_PLANS
                && let Some(oldest) = self.order.pop_front()
            {
                self.by_plan.remove(&oldest);
            }
            self.order.push_back(plan);
        }
        let replies = self.by_plan.entry(plan).or_default();
        if reply.in_place {
            // The person answered their own earlier step in place: that message is now
            // this reply.
            replies.retain(|(who, earlier)| {
                *who != actor.principal || earlier.in_place || earlier.platform != reply.platform
            });
        }
        if replies.len() < PRIVATE_REPLIES_PER_PLAN {
            replies.push((actor.principal.clone(), reply));
        }
    }

    fn take(&mut self, plan: &PlanId) -> Vec<PrivateReply> {
        self.order.retain(|p| p != plan);
        self.by_plan
            .remove(plan)
            .map(|replies| replies.into_iter().map(|(_, reply)| reply).collect())
            .unwrap_or_default()
    }
}

/// At most this many alert posts are remembered as this process's own.
const OWN_POSTS: usize = 4096;

/// Alert posts this process made for webhook alerts, with whether they show the group as
/// resolved, so that their header can follow the group's state; a person's or another
/// tool's message cannot be edited. Bounded, oldest forgotten first: a forgotten post
/// keeps its last header, and the summary below it still shows the state.
#[derive(Default)]
struct OwnPosts {
    order: VecDeque<MessageRef>,
    resolved: HashMap<MessageRef, bool>,
}

impl OwnPosts {
    fn remember(&mut self, post: MessageRef, resolved: bool) {
        if self.resolved.insert(post.clone(), resolved).is_none() {
            if self.order.len() >= OWN_POSTS
                && let Some(oldest) = self.order.pop_front()
            {
                self.resolved.remove(&oldest);
            }
            self.order.push_back(post);
        }
    }
}

/// Everything the bot is built from.
pub struct BotParts {
    pub settings: BotSettings,
    pub store: Arc<dyn Store>,
    pub audit: AuditLog,
    pub backends: Arc<dyn BackendDirectory>,
    pub chats: ChatHub,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

/// Which warnings a fresh plan posted after another is shown with.
enum FreshCaveats {
    None,
    /// Asked of the backend for the new plan's target revision.
    FromBackend,
    /// Already known (a restore's own).
    Given(Vec<Caveat>),
}

impl Bot {
    pub fn new(parts: BotParts) -> Self {
        let recognizer = Recognizer::new(parts.settings.services.clone());
        Self {
            inner: Arc::new(Inner {
                recognizer,
                unrouted: crate::core::unrouted::UnroutedNames::default(),
                store: parts.store,
                audit: parts.audit,
                backends: parts.backends,
                chats: parts.chats,
                clock: parts.clock,
                metrics: parts.metrics,
                rollbacks: TaskTracker::new(),
                background: TaskTracker::new(),
                running: Mutex::new(HashSet::new()),
                summaries: Mutex::new(HashMap::new()),
                refresh_pending: Mutex::new(HashSet::new()),
                opening: Mutex::new(HashSet::new()),
                last_digest: Mutex::new(None),
                private_replies: Mutex::new(PrivateReplies::default()),
                own_posts: Mutex::new(OwnPosts::default()),
                runner: parts.settings.runner_id.clone().unwrap_or_else(|| {
                    format!(
                        "{}-{}",
                        std::process::id(),
                        &PlanId::generate().to_string()[..8]
                    )
                }),
                hold: AlertHold {
                    state: Mutex::new(HoldState::default()),
                    room: tokio::sync::Notify::new(),
                    capacity: parts.settings.alert_hold.max(1),
                },
                settings: parts.settings,
            }),
        }
    }

    pub fn recognizer(&self) -> &Recognizer {
        &self.inner.recognizer
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// For adapters that report their own queues, and the `/metrics` handler.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Rollbacks this process is running or following now (for `/metrics`).
    pub fn rollbacks_running(&self) -> usize {
        lock(&self.inner.running).len()
    }

    pub fn audit(&self) -> &AuditLog {
        &self.inner.audit
    }

    pub fn chats(&self) -> &ChatHub {
        &self.inner.chats
    }

    pub fn settings(&self) -> &BotSettings {
        &self.inner.settings
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }
}

/// Words people use when something is wrong in production.
const PROBLEM_WORDS: &[&str] = &[
    "error",
    "errors",
    "erroring",
    "5xx",
    "4xx",
    "500",
    "500s",
    "502",
    "502s",
    "503",
    "503s",
    "504",
    "504s",
    "down",
    "outage",
    "failing",
    "fails",
    "failed",
    "failure",
    "failures",
    "broken",
    "broke",
    "crash",
    "crashes",
    "crashing",
    "crashloop",
    "crashloopbackoff",
    "timeout",
    "timeouts",
    "latency",
    "slow",
    "slowness",
    "degraded",
    "unavailable",
    "alert",
    "alerting",
    "firing",
    "incident",
    "exception",
    "exceptions",
    "panic",
    "panics",
    "oom",
    "oomkilled",
    "spike",
    "spiking",
    "elevated",
    "throwing",
    "dropping",
    "stuck",
    "hanging",
    "paging",
    "sev1",
    "sev2",
    "p1",
    "p2",
    "rollback",
    "revert",
    "fire",
    "burning",
    "leak",
    "leaking",
    "saturated",
    "unhealthy",
    "flapping",
    "rejecting",
    "refused",
    "wrong",
    "bad",
    "issue",
    "issues",
    "problem",
    "problems",
];

/// Whether a person's message describes a problem rather than, say, announcing a deploy.
fn describes_a_problem(text: &str) -> bool {
    text.contains('🔥')
        || text.contains('🚨')
        || text
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .any(|word| PROBLEM_WORDS.contains(&word))
}

/// The backend's own words at the end of a caveat ("NAME history unavailable: …",
/// "Could not read what TARGET runs now from NAME: …"), to say one failure once.
fn backend_error_text(caveat: &str) -> Option<&str> {
    caveat.split_once(": ").map(|(_, error)| error)
}

fn platform_of(press: &Press) -> Platform {
    press
        .message
        .as_ref()
        .map(|m| m.platform)
        .or_else(|| press.actor.principal.platform())
        .unwrap_or(Platform::Console)
}

fn as_replacement(reply: Reply) -> Reply {
    match reply {
        Reply::Private(message) => Reply::ReplaceSource(message),
        other => other,
    }
}

fn suspect_version(summary: &Summary) -> Option<String> {
    match &summary.body {
        SummaryBody::Deploys(deploys) => deploys
            .entries
            .iter()
            .find(|e| e.suspect)
            .map(|e| e.deploy.version.clone()),
        _ => None,
    }
}

/// Whether a caveat of the summary names a remedy the person may choose.
fn offers_remedy(summary: &Summary) -> bool {
    match &summary.body {
        SummaryBody::Deploys(deploys) => deploys.caveats.iter().any(|c| c.remedy.is_some()),
        _ => false,
    }
}

/// Merges a backend's history into the registry's: one entry per version, the registry's
/// report filled in with what the backend knows.
fn merge_history(deploys: &mut Vec<Deploy>, from_backend: Vec<Deploy>) {
    for backend_deploy in from_backend {
        match deploys
            .iter_mut()
            .find(|d| d.version == backend_deploy.version && d.source != DeploySource::Rollback)
        {
            Some(reported) => reported.merge_backend(&backend_deploy),
            None => deploys.push(backend_deploy),
        }
    }
    deploys.sort_by_key(|d| std::cmp::Reverse(d.started_at));
}

fn help_message() -> Message {
    let mut message = Message::plain(Command::usage());
    message.title = Some("breakwater".to_owned());
    message
}

mod alerts;
mod canary;
pub use canary::{
    CanaryName, DEFAULT_ROLLBACK_TIMEOUT, FLAGGER_AUTHOR, FlaggerSettings, canary_offer,
};
mod commands;
mod details;
mod execution;
mod lifecycle;
mod presses;
mod summaries;

#[cfg(test)]
mod tests;
