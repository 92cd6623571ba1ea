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
use serde_json::json;
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
use super::event::{ChannelMessage, Command, CommandRequest, Press, Reply};
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
use crate::audit::{AuditLog, AuditQuery, AuditRecord, actions};
use crate::chat::{Chat, ChatHub, Lane};
use crate::metrics::{IncidentInterval, Metrics};
use crate::store::{AlertGroup, DeployQuery, GroupThread, RecordedAlert, Store, StoreError};
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
    unrouted: super::unrouted::UnroutedNames,
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
                unrouted: super::unrouted::UnroutedNames::default(),
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

    // --- inbound: alerts -------------------------------------------------------------------

    /// Alerts from a webhook payload. Returns once every alert is recorded and audited, or
    /// held until the store is back; posting to chat continues in the background. When
    /// the store is unavailable and the rest of the batch does not fit in the hold, fails
    /// with [`BotError::AlertHoldFull`] so that the sender redelivers the batch (alerts
    /// already recorded come back as repeats).
    pub async fn handle_webhook_alerts(
        &self,
        alerts: Vec<Alert>,
    ) -> Result<Vec<AlertHandled>, BotError> {
        let mut handled = Vec::with_capacity(alerts.len());
        let mut alerts = alerts.into_iter();
        while let Some(mut alert) = alerts.next() {
            self.inner.recognizer.apply(&mut alert);
            if alert.service.is_none() {
                self.note_unrouted(&alert);
            }
            let held = HeldAlert {
                claim: None,
                alert,
                origin: AlertOrigin::Webhook,
                recorded: None,
            };
            let result = if self.is_holding() {
                Err((held, None))
            } else {
                self.record_held(held).await.map_err(|(h, e)| (h, Some(e)))
            };
            match result {
                Ok(one) => handled.push(one),
                Err((held, error)) => {
                    if let Some(error) = error
                        && !error.is_unavailable()
                    {
                        return Err(error);
                    }
                    // From here on the rest of the batch queues behind this alert, in order.
                    let mut rest = vec![held];
                    rest.extend(alerts.by_ref().map(|mut alert| {
                        self.inner.recognizer.apply(&mut alert);
                        if alert.service.is_none() {
                            self.note_unrouted(&alert);
                        }
                        HeldAlert {
                            claim: None,
                            alert,
                            origin: AlertOrigin::Webhook,
                            recorded: None,
                        }
                    }));
                    let count = rest.len();
                    self.hold(rest, Admission::Refuse).await?;
                    handled.extend(std::iter::repeat_n(AlertHandled::Held, count));
                }
            }
        }
        Ok(handled)
    }

    /// Counts a webhook alert that matched no configured service and logs the first of
    /// each alert name; the thread it opens says the same in chat (see `build_summary`).
    fn note_unrouted(&self, alert: &Alert) {
        self.inner.metrics.alert_unrouted();
        if self.inner.unrouted.first_time(&alert.title) {
            let known: Vec<String> = self
                .inner
                .settings
                .services
                .iter()
                .map(|s| s.name.to_string())
                .collect();
            let looked_at: Vec<String> = super::unrouted::service_labels_looked_at(&alert.labels)
                .into_iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            tracing::warn!(
                alert = %alert.title,
                labels = %looked_at.join(", "),
                known = %known.join(", "),
                "a webhook alert matched no configured service; add a `service` label to the alert or an alias to [[services]] (logged once per alert name, counted in breakwater_alerts_unrouted_total)"
            );
        }
    }

    /// A message seen in an alert channel. `event_id` is the platform's delivery id.
    ///
    /// The delivery was acknowledged already, so it is never dropped: when the store is
    /// unavailable the alert is held, waiting for room in the hold when that is full.
    pub async fn handle_channel_message(
        &self,
        event_id: &str,
        at: MessageRef,
        message: &ChannelMessage,
    ) -> Result<AlertHandled, BotError> {
        let Some(mut alert) = crate::alerts::parse_channel_message(message) else {
            return Ok(AlertHandled::Ignored);
        };
        self.inner.recognizer.apply(&mut alert);
        // People (and bots of unknown format) talk about services all day; only a message
        // naming a known service *and* describing a problem is treated as an alert.
        let from_a_person = alert.source == super::alert::AlertSource::Person;
        if from_a_person && (alert.service.is_none() || !describes_a_problem(&alert.description)) {
            return Ok(AlertHandled::Ignored);
        }
        let held = HeldAlert {
            claim: Some(format!("{}:{event_id}", at.platform)),
            alert,
            origin: AlertOrigin::Channel(at),
            recorded: None,
        };
        if self.is_holding() {
            self.hold(vec![held], Admission::WaitForRoom).await?;
            return Ok(AlertHandled::Held);
        }
        match self.record_held(held).await {
            Ok(handled) => Ok(handled),
            Err((held, error)) if error.is_unavailable() => {
                self.hold(vec![held], Admission::WaitForRoom).await?;
                Ok(AlertHandled::Held)
            }
            Err((_, error)) => Err(error),
        }
    }

    /// Whether an alert delivery that can still be refused should be accepted: `false`
    /// while the store is unavailable and the hold is full. Slack's HTTP events ask this
    /// before acknowledging, and answer 503 when it says no.
    pub fn accepting_alerts(&self) -> bool {
        lock(&self.inner.hold.state).queue.len() < self.inner.hold.capacity
    }

    /// Alerts held in memory for the store to come back (`/readyz`).
    pub fn held_alerts(&self) -> usize {
        lock(&self.inner.hold.state).queue.len()
    }

    fn is_holding(&self) -> bool {
        let state = lock(&self.inner.hold.state);
        state.draining || !state.queue.is_empty()
    }

    async fn claim(&self, platform: Platform, event_id: &str) -> Result<bool, BotError> {
        Ok(self
            .inner
            .store
            .claim_event(&format!("{platform}:{event_id}"), self.now())
            .await?)
    }

    /// Records, audits and groups one recognised alert, then answers it in chat in the
    /// background.
    pub async fn process_alert(
        &self,
        alert: Alert,
        origin: AlertOrigin,
    ) -> Result<AlertHandled, BotError> {
        self.record_held(HeldAlert {
            claim: None,
            alert,
            origin,
            recorded: None,
        })
        .await
        .map_err(|(_, error)| error)
    }

    /// Takes an alert through the steps it has not done yet: claim its delivery, record
    /// it, audit it, then answer it in chat in the background. On failure returns the
    /// alert as far as it got, so that a retry neither claims nor records it twice.
    async fn record_held(
        &self,
        mut held: HeldAlert,
    ) -> Result<AlertHandled, (HeldAlert, BotError)> {
        let now = self.now();
        if let Some(key) = &held.claim {
            match self.inner.store.claim_event(key, now).await {
                Ok(true) => held.claim = None,
                Ok(false) => return Ok(AlertHandled::Duplicate),
                Err(error) => return Err((held, error.into())),
            }
        }
        let recorded = match &held.recorded {
            Some(recorded) => recorded.clone(),
            None => {
                let since = now
                    - chrono::Duration::from_std(self.inner.settings.group_window)
                        .unwrap_or(chrono::Duration::minutes(10));
                match self.inner.store.record_alert(&held.alert, since, now).await {
                    Ok(recorded) => recorded,
                    Err(error) => return Err((held, error.into())),
                }
            }
        };
        if !recorded.new_alert && !recorded.resolved {
            return Ok(AlertHandled::Repeat);
        }
        held.recorded = Some(recorded.clone());
        let alert = &held.alert;
        let origin = &held.origin;
        let action = if alert.status == AlertStatus::Resolved {
            actions::ALERT_RESOLVED
        } else {
            actions::ALERT_RECEIVED
        };
        let mut entry = self.inner.audit.entry(action).details(json!({
            "alert_id": recorded.id,
            "group": recorded.group.id,
            "source": alert.source.as_str(),
            "title": alert.title,
            "severity": alert.severity.as_str(),
            "status": alert.status.as_str(),
            "fingerprint": alert.fingerprint,
            "started_at": alert.started_at,
            "link": alert.link,
            "origin": match origin { AlertOrigin::Webhook => json!("webhook"), AlertOrigin::Channel(at) => json!(at) },
        }));
        if let Some(target) = alert.target() {
            entry = entry.target(&target);
        }
        let written = match self.inner.audit.append(entry).await {
            Ok(written) => written,
            Err(error) => return Err((held, error.into())),
        };
        self.inner
            .metrics
            .alert_received(held.alert.source.as_str());
        if recorded.resolved && recorded.group.resolved_at.is_some() {
            self.observe_incident(Some(recorded.group.id), &written)
                .await;
        }
        Ok(self.announce(held.alert, held.origin, recorded))
    }

    /// Observes the incident intervals that the record just `written` ends. Only the
    /// first record of its kind in the group's chain ends an interval, and only the
    /// replica that wrote it observes, so redeliveries and other replicas never count an
    /// incident twice. Metrics are best effort: a failure to read is logged, not raised.
    async fn observe_incident(&self, group_id: Option<i64>, written: &AuditRecord) {
        let Some(group_id) = group_id else { return };
        let found = match incident::load(&self.inner.store, &self.inner.audit, group_id, false)
            .await
        {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, group = group_id, "could not read the incident to observe its durations");
                return;
            }
        };
        let (Some(service), Some(environment)) = (&found.service, &found.environment) else {
            return;
        };
        let ends =
            |mark: Option<(i64, DateTime<Utc>)>| mark.is_some_and(|(seq, _)| seq == written.seq);
        let marks = &found.milestones;
        let durations = &found.durations;
        let mut ended = Vec::new();
        if ends(marks.summary_posted) {
            ended.push((IncidentInterval::AlertToSummary, durations.alert_to_summary));
        }
        if ends(marks.first_press) {
            ended.push((
                IncidentInterval::AlertToFirstPress,
                durations.alert_to_first_press,
            ));
        }
        if ends(marks.rollback_finished) {
            ended.push((
                IncidentInterval::PressToRollbackFinished,
                durations.press_to_rollback_finished,
            ));
        }
        if ends(marks.resolved) {
            ended.push((
                IncidentInterval::RollbackFinishedToResolved,
                durations.rollback_finished_to_resolved,
            ));
            ended.push((
                IncidentInterval::AlertToResolved,
                durations.alert_to_resolved,
            ));
        }
        for (interval, seconds) in ended {
            if let Some(seconds) = seconds {
                self.inner
                    .metrics
                    .incident_interval(interval, service, environment, seconds);
            }
        }
    }

    /// Answers a recorded alert in chat, in the background.
    fn announce(&self, alert: Alert, origin: AlertOrigin, recorded: RecordedAlert) -> AlertHandled {
        let handled = AlertHandled::Recorded {
            group_id: recorded.group.id,
            new_group: recorded.new_group,
            resolved: recorded.resolved,
        };
        let bot = self.clone();
        let group = recorded.group.clone();
        if alert.status == AlertStatus::Resolved {
            if recorded.resolved {
                self.inner
                    .background
                    .spawn(async move { bot.on_alert_resolved(group).await });
            }
        } else if recorded.new_group {
            // Claimed before this returns, so the group's next alert (perhaps already on
            // its way) joins instead of opening a thread of its own.
            let platforms: Vec<Platform> = match &origin {
                AlertOrigin::Channel(at) => vec![at.platform],
                AlertOrigin::Webhook => self
                    .inner
                    .chats
                    .all()
                    .iter()
                    .map(|c| c.platform())
                    .collect(),
            };
            lock(&self.inner.opening).extend(platforms.iter().map(|p| (group.id, *p)));
            self.inner.background.spawn(async move {
                bot.open_threads(group.clone(), alert, origin).await;
                let mut opening = lock(&bot.inner.opening);
                for platform in platforms {
                    opening.remove(&(group.id, platform));
                }
            });
        } else {
            self.inner
                .background
                .spawn(async move { bot.join_group(group, origin).await });
        }
        handled
    }

    /// Puts alerts at the end of the hold and makes sure a task is retrying it. With
    /// [`Admission::Refuse`] all of them or none go in.
    async fn hold(&self, mut alerts: Vec<HeldAlert>, admission: Admission) -> Result<(), BotError> {
        let hold = &self.inner.hold;
        loop {
            let room = hold.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut state = lock(&hold.state);
                let free = hold.capacity.saturating_sub(state.queue.len());
                let fits = match admission {
                    Admission::Refuse => alerts.len() <= free,
                    Admission::WaitForRoom => free > 0,
                };
                if fits {
                    let take = alerts.len().min(free);
                    let first = state.queue.is_empty() && !state.draining;
                    state.queue.extend(alerts.drain(..take));
                    if first {
                        tracing::warn!(
                            capacity = hold.capacity,
                            "the database is unavailable: holding alerts in memory until it is back (check database.url)"
                        );
                    }
                    if !state.draining {
                        state.draining = true;
                        let bot = self.clone();
                        tokio::spawn(async move { bot.drain_hold().await });
                    }
                    if alerts.is_empty() {
                        return Ok(());
                    }
                } else if admission == Admission::Refuse {
                    return Err(BotError::AlertHoldFull(state.queue.len()));
                }
            }
            room.await;
        }
    }

    /// Retries the oldest held alert until the store takes it, then the next, in order,
    /// backing off while the store stays unavailable. Logs once when the hold is empty.
    async fn drain_hold(&self) {
        const FIRST_RETRY: Duration = Duration::from_millis(100);
        const LAST_RETRY: Duration = Duration::from_secs(5);
        let hold = &self.inner.hold;
        let started = Instant::now();
        let mut delay = FIRST_RETRY;
        let mut recorded = 0usize;
        loop {
            let front = {
                let mut state = lock(&hold.state);
                match state.queue.front() {
                    Some(front) => front.clone(),
                    None => {
                        state.draining = false;
                        break;
                    }
                }
            };
            match self.record_held(front).await {
                Ok(_) => {
                    lock(&hold.state).queue.pop_front();
                    hold.room.notify_waiters();
                    recorded += 1;
                    delay = FIRST_RETRY;
                }
                Err((progress, error)) if error.is_unavailable() => {
                    if let Some(front) = lock(&hold.state).queue.front_mut() {
                        *front = progress;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(LAST_RETRY);
                }
                Err((dropped, error)) => {
                    tracing::error!(%error, title = dropped.alert.title, "a held alert cannot be recorded and is dropped");
                    lock(&hold.state).queue.pop_front();
                    hold.room.notify_waiters();
                }
            }
        }
        hold.room.notify_waiters();
        tracing::info!(
            recorded,
            held_for = ?started.elapsed(),
            "the database is back: every held alert is recorded"
        );
    }

    /// A new group: post (for webhooks), reply with the summary, offer the plan.
    async fn open_threads(&self, group: AlertGroup, alert: Alert, origin: AlertOrigin) {
        let summary = self.summary_for(group.id, &alert).await;
        let mut places: Vec<(Arc<dyn Chat>, Option<MessageRef>)> = Vec::new();
        match &origin {
            AlertOrigin::Channel(at) => {
                if let Some(chat) = self.inner.chats.get(at.platform) {
                    places.push((chat, Some(at.clone())));
                }
            }
            AlertOrigin::Webhook => {
                for chat in self.inner.chats.all() {
                    places.push((chat, None));
                }
            }
        }
        for chat in self.inner.chats.all() {
            if chat.mirrors_all_alerts()
                && !places.iter().any(|(c, _)| c.platform() == chat.platform())
            {
                places.push((chat, None));
            }
        }
        for (chat, at) in places {
            if let Err(error) = self.open_thread(&chat, &group, &alert, &summary, at).await {
                tracing::warn!(platform = %chat.platform(), group = group.id, %error, "could not post the alert summary");
                self.inner.metrics.chat_error(chat.platform().as_str());
            }
        }
    }

    async fn open_thread(
        &self,
        chat: &Arc<dyn Chat>,
        group: &AlertGroup,
        alert: &Alert,
        summary: &Summary,
        at: Option<MessageRef>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let posted_by_bot = at.is_none();
        let alert_message = match at {
            Some(at) => at,
            None => {
                let Some(channel) = chat.alert_channel(alert.service.as_ref()) else {
                    return Ok(());
                };
                let posted = chat
                    .post(
                        &channel,
                        &compose::alert_post(alert, alert.target().as_ref()),
                        Lane::Alerts,
                    )
                    .await?;
                lock(&self.inner.own_posts).remember(posted.clone(), false);
                posted
            }
        };
        self.inner
            .store
            .add_group_thread(&GroupThread {
                group_id: group.id,
                alert_message: alert_message.clone(),
                summary: None,
                posted_by_bot,
            })
            .await?;
        let plan = match &summary.body {
            SummaryBody::Deploys(deploys) => match &deploys.offer {
                Some(offer) => Some(
                    self.offer_plan(&deploys.target, offer, Some(group.id), None)
                        .await?,
                ),
                None => None,
            },
            _ => None,
        };
        let fresh_group = self
            .inner
            .store
            .alert_group(group.id)
            .await?
            .unwrap_or_else(|| group.clone());
        let message = self.render_summary(summary, &fresh_group, plan.as_ref());
        let posted = chat.reply(&alert_message, &message, Lane::Alerts).await?;
        self.inner
            .store
            .set_group_summary(group.id, &alert_message, &posted)
            .await?;
        if let Some(plan) = &plan {
            self.inner.store.set_plan_message(&plan.id, &posted).await?;
        }
        let mut entry = self
            .inner
            .audit
            .entry(actions::SUMMARY_POSTED)
            .details(json!({
                "group": group.id,
                "platform": posted.platform,
                "channel": posted.channel,
                "message": posted.id,
                "plan": plan.as_ref().map(|p| p.id.to_string()),
                "from": plan.as_ref().map(|p| p.from.version.clone()),
                "to": plan.as_ref().map(|p| p.to.version.clone()),
                "suspect": suspect_version(summary),
            }));
        if let Some(target) = alert.target() {
            entry = entry.target(&target);
        }
        let written = self.inner.audit.append(entry).await?;
        self.inner.metrics.summary_posted(posted.platform.as_str());
        self.observe_incident(Some(group.id), &written).await;
        Ok(())
    }

    /// Another alert in an open group: refresh the summary's count, and answer on a
    /// platform the group has no thread on yet.
    async fn join_group(&self, group: AlertGroup, origin: AlertOrigin) {
        if let AlertOrigin::Channel(at) = &origin
            && lock(&self.inner.opening).insert((group.id, at.platform))
        {
            match self.inner.store.group_threads(group.id).await {
                Ok(threads)
                    if !threads
                        .iter()
                        .any(|t| t.alert_message.platform == at.platform) =>
                {
                    if let (Some(chat), Ok(alerts)) = (
                        self.inner.chats.get(at.platform),
                        self.inner.store.group_alerts(group.id).await,
                    ) && let Some((_, first, _)) = alerts.first()
                    {
                        let summary = self.summary_for(group.id, first).await;
                        if let Err(error) = self
                            .open_thread(&chat, &group, first, &summary, Some(at.clone()))
                            .await
                        {
                            tracing::warn!(%error, "could not post the summary on a second platform");
                        }
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "could not read the group's threads"),
            }
            lock(&self.inner.opening).remove(&(group.id, at.platform));
        }
        self.schedule_refresh(group.id);
    }

    fn schedule_refresh(&self, group_id: i64) {
        if !lock(&self.inner.refresh_pending).insert(group_id) {
            return;
        }
        let bot = self.clone();
        self.inner.background.spawn(async move {
            tokio::time::sleep(bot.inner.settings.refresh_delay).await;
            lock(&bot.inner.refresh_pending).remove(&group_id);
            bot.refresh_group(group_id, Lane::Alerts).await;
        });
    }

    /// Re-renders every summary of a group (count, resolution, plan status).
    async fn refresh_group(&self, group_id: i64, lane: Lane) {
        let result: Result<(), Box<dyn std::error::Error + Send + Sync>> = async {
            let Some(group) = self.inner.store.alert_group(group_id).await? else {
                return Ok(());
            };
            let threads = self.inner.store.group_threads(group_id).await?;
            let plans = self.inner.store.plans_for_group(group_id).await?;
            let alerts = self.inner.store.group_alerts(group_id).await?;
            let Some((_, first, _)) = alerts.first() else {
                return Ok(());
            };
            let summary = self.summary_for(group_id, first).await;
            for thread in &threads {
                self.refresh_alert_post(&group, first, thread, lane).await;
            }
            for thread in threads {
                let Some(summary_ref) = thread.summary else {
                    continue;
                };
                let plan = plans
                    .iter()
                    .find(|p| p.message.as_ref() == Some(&summary_ref));
                let message = self.render_summary(&summary, &group, plan);
                if let Some(chat) = self.inner.chats.get(summary_ref.platform)
                    && let Err(error) = chat.update(&summary_ref, &message, lane).await
                {
                    tracing::warn!(%error, group = group_id, "could not update a summary");
                    self.inner.metrics.chat_error(summary_ref.platform.as_str());
                }
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, group = group_id, "could not refresh the group's summaries");
        }
    }

    /// Shows the group's state in the alert post breakwater made for it: resolved (✅, no
    /// red) or firing again. Only posts known to be the bot's own are edited (stored as such,
    /// so another replica or a restarted process edits them too), once per change of state
    /// seen by this process.
    async fn refresh_alert_post(
        &self,
        group: &AlertGroup,
        alert: &Alert,
        thread: &GroupThread,
        lane: Lane,
    ) {
        let post = &thread.alert_message;
        let Some(chat) = self.inner.chats.get(post.platform) else {
            return;
        };
        let resolved = group.resolved_at.is_some();
        let shown = lock(&self.inner.own_posts).resolved.get(post).copied();
        let own = shown.is_some() || thread.posted_by_bot;
        let ours_unseen = shown.is_none() && chat.mirrors_all_alerts() && resolved;
        if !(own || ours_unseen) || shown == Some(resolved) {
            return;
        }
        let target = alert.target();
        let message = match group.resolved_at {
            Some(at) => compose::alert_post_resolved(alert, target.as_ref(), at),
            None => compose::alert_post(alert, target.as_ref()),
        };
        match chat.update(post, &message, lane).await {
            Ok(()) => lock(&self.inner.own_posts).remember(post.clone(), resolved),
            Err(error) => {
                tracing::warn!(%error, group = group.id, "could not update the alert post");
                self.inner.metrics.chat_error(post.platform.as_str());
            }
        }
    }

    fn render_summary(
        &self,
        summary: &Summary,
        group: &AlertGroup,
        plan: Option<&RollbackPlan>,
    ) -> Message {
        let service = match &summary.body {
            SummaryBody::Deploys(deploys) => Some(&deploys.target.service),
            _ => None,
        };
        compose::summary_message(
            summary,
            &SummaryView {
                plan,
                grouped: group.alert_count,
                resolved_at: group.resolved_at,
                // A backend names a remedy only when its configuration allows it (Argo CD's
                // `allow_disable_autosync`), so a remedy in the caveats is the permission.
                offer_remedy: offers_remedy(summary),
                now: Some(self.now()),
                received_at: Some(group.opened_at),
                links: service.and_then(|s| self.inner.settings.links.get(s)),
                console: self.inner.settings.console_links.as_ref(),
                incident: Some(group.id),
            },
        )
    }

    /// The group resolved: refresh its summaries, and verify rollbacks made for it.
    async fn on_alert_resolved(&self, group: AlertGroup) {
        if group.resolved_at.is_none() {
            self.schedule_refresh(group.id);
            return;
        }
        self.refresh_group(group.id, Lane::Alerts).await;
        let plans = match self.inner.store.plans_for_group(group.id).await {
            Ok(plans) => plans,
            Err(error) => {
                tracing::warn!(%error, "could not read plans of a resolved group");
                return;
            }
        };
        if let Some(resolved_at) = group.resolved_at {
            // Confirm steps still open say, like the summary, that the alert is over.
            for plan in plans.iter().filter(|p| p.state.is_open()) {
                let message = compose::prompt_after_resolution(plan, resolved_at);
                self.replace_private_replies(plan, message).await;
            }
        }
        for plan in plans
            .into_iter()
            .filter(|p| p.state == PlanState::Succeeded && p.verified_at.is_none())
        {
            let resolved_at = group.resolved_at.unwrap_or_else(|| self.now());
            let after = plan
                .finished_at
                .map(|f| human_span((resolved_at - f).num_seconds().max(0).unsigned_abs()));
            let text = match after {
                Some(after) => format!(
                    "✅ {} resolved {after} after the rollback to {}.",
                    group.title, plan.to.version
                ),
                None => format!(
                    "✅ {} resolved after the rollback to {}.",
                    group.title, plan.to.version
                ),
            };
            self.verify_plan(
                &plan,
                actions::ROLLBACK_VERIFIED,
                Message::plain(text).with_tone(Tone::Success),
            )
            .await;
        }
    }

    async fn verify_plan(&self, plan: &RollbackPlan, action: &str, message: Message) {
        let result: Result<(), Box<dyn std::error::Error + Send + Sync>> = async {
            if !self
                .inner
                .store
                .set_plan_verified(&plan.id, self.now())
                .await?
            {
                // Another path (or replica) saw the same resolution and reported it.
                return Ok(());
            }
            self.inner
                .audit
                .append(
                    self.inner
                        .audit
                        .entry(action)
                        .target(&plan.target)
                        .details(json!({
                            "plan": plan.id.to_string(),
                            "to": plan.to.version,
                            "message": message.text,
                        })),
                )
                .await?;
            if let Some(at) = &plan.message
                && let Some(chat) = self.inner.chats.get(at.platform)
            {
                chat.reply(at, &message, Lane::Interactive).await?;
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, plan = %plan.id, "could not report the rollback verification");
        }
    }

    // --- summaries -------------------------------------------------------------------------

    async fn summary_for(&self, group_id: i64, alert: &Alert) -> Arc<Summary> {
        if let Some(summary) = lock(&self.inner.summaries).get(&group_id) {
            return summary.clone();
        }
        let summary = Arc::new(self.build_summary(alert).await);
        let mut cache = lock(&self.inner.summaries);
        if cache.len() >= SUMMARY_CACHE
            && let Some(oldest) = cache.keys().min().copied()
        {
            cache.remove(&oldest);
        }
        cache.insert(group_id, summary.clone());
        summary
    }

    /// The summary for an alert: deploys, suspect, offer and caveats.
    pub async fn build_summary(&self, alert: &Alert) -> Summary {
        let base = |body| Summary {
            alert_title: alert.title.clone(),
            alert_started_at: alert.started_at,
            severity: alert.severity,
            link: alert.link.clone(),
            body,
        };
        let Some(service) = &alert.service else {
            let known = self
                .inner
                .settings
                .services
                .iter()
                .map(|s| s.name.clone())
                .collect();
            let looked_at = super::unrouted::service_labels_looked_at(&alert.labels);
            return base(SummaryBody::UnknownService { known, looked_at });
        };
        let Some(environment) = &alert.environment else {
            let known = self
                .inner
                .recognizer
                .service(service)
                .map(|s| s.environments.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            return base(SummaryBody::UnknownEnvironment {
                service: service.clone(),
                known,
            });
        };
        let target = Target::new(service.clone(), environment.clone());
        let window_start = crate::core::clock::saturating_sub(
            alert.started_at,
            chrono::Duration::from_std(self.inner.settings.policy.lookback)
                .unwrap_or(chrono::Duration::hours(6)),
        );
        let (history, mut caveats) = self
            .history(&target, HistoryScope::Window(window_start))
            .await;
        let current = match self.current_revision(&target, &history).await {
            Ok(current) => current,
            Err(message) => {
                // The history read usually failed the same way (a rejected token, a
                // deleted application): say it once.
                let repeated = backend_error_text(&message).is_some_and(|error| {
                    caveats
                        .iter()
                        .any(|c| backend_error_text(&c.message) == Some(error))
                });
                if !repeated {
                    caveats.push(Caveat {
                        message,
                        blocking: false,
                        remedy: None,
                    });
                }
                None
            }
        };
        let instances_started = self.instances_started(&target, &history).await;
        let mut summary = summarize(SummaryInput {
            alert,
            target: &target,
            history: &history,
            lookback: self.inner.settings.policy.lookback,
            current,
            caveats,
            instances_started: instances_started.as_deref(),
        });
        if let SummaryBody::Deploys(deploys) = &mut summary.body {
            self.offer_restore(deploys).await;
            if let (Some(offer), Some(backend)) = (
                deploys
                    .offer
                    .as_ref()
                    .filter(|o| o.action == Action::Rollback),
                self.inner.backends.for_target(&target),
            ) {
                match backend.instead_of_rollback(&target, offer).await {
                    Ok(Some(better)) => deploys.offer = Some(better),
                    Ok(None) => {}
                    Err(error) => deploys.caveats.push(Caveat {
                        message: format!(
                            "Could not read {} for a better first move than a rollback: {error}",
                            backend.name()
                        ),
                        blocking: false,
                        remedy: None,
                    }),
                }
            }
            // A restore carries its own caveats (offer_restore); rollbacks and aborts ask
            // the backend.
            if let (Some(offer), Some(backend)) = (
                deploys
                    .offer
                    .as_ref()
                    .filter(|o| o.action != Action::RestoreConfig),
                self.inner.backends.for_target(&target),
            ) {
                match backend.caveats(&target, &offer.to).await {
                    Ok(found) => deploys.caveats.extend(found),
                    Err(error) => deploys.caveats.push(Caveat {
                        message: format!(
                            "Could not check {} before offering a rollback: {error}",
                            backend.name()
                        ),
                        blocking: false,
                        remedy: None,
                    }),
                }
            }
            if self.inner.backends.for_target(&target).is_none() {
                deploys.caveats.push(Caveat {
                    message: format!("No deployment backend is configured for {target}; rollback is not possible from here."),
                    blocking: true,
                    remedy: None,
                });
            }
        }
        summary
    }

    /// When the suspect is a configuration change the backend can undo in place (a
    /// ConfigMap with a snapshot from before it), offers that restore instead of the
    /// "rolling back the code would not undo it" line.
    async fn offer_restore(&self, deploys: &mut DeploySummary) {
        let Some(suspect) = deploys
            .entries
            .iter()
            .find(|e| e.suspect && e.deploy.is_config_change())
        else {
            return;
        };
        let Some(backend) = self.inner.backends.for_target(&deploys.target) else {
            return;
        };
        match backend
            .restore_offer(&deploys.target, &suspect.deploy)
            .await
        {
            Ok(Some(restore)) => {
                deploys.offer = Some(Offer {
                    reason: compose::restore_reason(&restore.changes),
                    from: restore.from,
                    to: restore.to,
                    suspect_version: suspect.deploy.version.clone(),
                    to_url: None,
                    action: Action::RestoreConfig,
                });
                deploys.no_offer_reason = None;
                deploys.caveats.extend(restore.caveats);
            }
            Ok(None) => {}
            Err(error) => deploys.caveats.push(Caveat {
                message: format!(
                    "Could not check whether {} can restore the changed configuration: {error}",
                    backend.name()
                ),
                blocking: false,
                remedy: None,
            }),
        }
    }

    /// The target's deploys, newest first: the registry merged with the backend's own
    /// history (one entry per version). Backend failures become caveats, not errors.
    pub async fn history(
        &self,
        target: &Target,
        scope: HistoryScope,
    ) -> (Vec<Deploy>, Vec<Caveat>) {
        let mut caveats = Vec::new();
        let query = |since, before, limit| DeployQuery {
            service: Some(target.service.clone()),
            environment: Some(target.environment.clone()),
            since,
            before,
            limit,
        };
        // Around an alert only the window and a few deploys before it matter (the
        // suspect's predecessor); reading more would cost every summary.
        let queries = match scope {
            HistoryScope::Latest(limit) => vec![query(None, None, limit)],
            HistoryScope::Window(start) => vec![
                query(Some(start), None, WINDOW_LIMIT),
                query(None, Some(start), BEFORE_WINDOW_LIMIT),
            ],
        };
        let mut deploys = Vec::new();
        for query in queries {
            match self.inner.store.deploys(&query).await {
                Ok(found) => deploys.extend(found),
                Err(error) => {
                    tracing::warn!(%error, "could not read the deploy registry");
                    caveats.push(Caveat {
                        message: "The deploy registry could not be read.".to_owned(),
                        blocking: false,
                        remedy: None,
                    });
                    break;
                }
            }
        }
        if let Some(backend) = self.inner.backends.for_target(target)
            && backend.capabilities().own_history
        {
            let started = Instant::now();
            let result = backend.history(target).await;
            self.inner.metrics.backend_call(
                backend.name(),
                "history",
                result.is_ok(),
                started.elapsed(),
            );
            match result {
                Ok(from_backend) => merge_history(&mut deploys, from_backend),
                Err(error) => caveats.push(Caveat {
                    message: format!("{} history unavailable: {error}", backend.name()),
                    blocking: false,
                    remedy: None,
                }),
            }
        }
        (deploys, caveats)
    }

    /// When the target's running instances started, asked only when a configuration
    /// change is in the history (it is one more backend call per summary). A failure
    /// leaves the changes without a pick-up flag rather than holding up the summary.
    async fn instances_started(
        &self,
        target: &Target,
        history: &[Deploy],
    ) -> Option<Vec<DateTime<Utc>>> {
        if !history.iter().any(Deploy::is_config_change) {
            return None;
        }
        let backend = self.inner.backends.for_target(target)?;
        let started = Instant::now();
        let result = backend.instances_started(target).await;
        self.inner.metrics.backend_call(
            backend.name(),
            "instances_started",
            result.is_ok(),
            started.elapsed(),
        );
        match result {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(backend = backend.name(), %target, %error, "could not read when the running instances started; configuration changes are shown without whether they were picked up");
                None
            }
        }
    }

    /// What runs now: from the backend when it knows, else the newest successful deploy
    /// in the registry.
    async fn current_revision(
        &self,
        target: &Target,
        history: &[Deploy],
    ) -> Result<Option<Revision>, String> {
        if let Some(backend) = self.inner.backends.for_target(target)
            && backend.capabilities().own_history
        {
            let started = Instant::now();
            let result = backend.current(target).await;
            self.inner.metrics.backend_call(
                backend.name(),
                "current",
                result.is_ok(),
                started.elapsed(),
            );
            match result {
                Ok(Some(current)) => return Ok(Some(current)),
                Ok(None) => {}
                Err(error) => {
                    return Err(format!(
                        "Could not read what {target} runs now from {}: {error}",
                        backend.name()
                    ));
                }
            }
        }
        Ok(history
            .iter()
            .filter(|d| d.status == DeployStatus::Succeeded && !d.is_config_change())
            .max_by_key(|d| d.effective_at())
            .map(Deploy::as_revision))
    }

    async fn offer_plan(
        &self,
        target: &Target,
        offer: &Offer,
        group: Option<i64>,
        requested_by: Option<Actor>,
    ) -> Result<RollbackPlan, BotError> {
        let now = self.now();
        let plan = RollbackPlan {
            id: PlanId::generate(),
            target: target.clone(),
            from: offer.from.clone(),
            to: offer.to.clone(),
            reason: offer.reason.clone(),
            alert_group: group,
            offered_at: now,
            expires_at: now
                + chrono::Duration::from_std(self.inner.settings.policy.plan_ttl)
                    .unwrap_or(chrono::Duration::minutes(30)),
            message: None,
            requested_by: requested_by.clone(),
            state: PlanState::Offered,
            approved_by: None,
            started_by: None,
            started_at: None,
            finished_at: None,
            outcome: None,
            operation: None,
            verified_at: None,
            action: offer.action,
        };
        self.inner.store.insert_plan(&plan).await?;
        let mut entry = self
            .inner
            .audit
            .entry(actions::ROLLBACK_OFFERED)
            .target(target)
            .details(json!({
                "plan": plan.id.to_string(),
                "action": plan.action.as_str(),
                "from": plan.from,
                "to": plan.to,
                "group": group,
                "expires_at": plan.expires_at,
                "reason": plan.reason,
            }));
        if let Some(actor) = &requested_by {
            entry = entry.actor(actor);
        }
        self.inner.audit.append(entry).await?;
        Ok(plan)
    }

    // --- inbound: presses ------------------------------------------------------------------

    /// A button press. The reply is for the person who pressed; public progress goes to
    /// the plan's message.
    pub async fn handle_press(&self, press: Press) -> Reply {
        match self.press(press).await {
            Ok(reply) => reply,
            Err(error) => {
                tracing::error!(%error, "press failed");
                Reply::Private(Message::plain(
                    "Something went wrong on breakwater's side and nothing was rolled back. The error is in breakwater's log; try again in a moment.",
                ).with_tone(Tone::Danger))
            }
        }
    }

    async fn press(&self, press: Press) -> Result<Reply, BotError> {
        let platform = press
            .actor
            .principal
            .platform()
            .unwrap_or(Platform::Console);
        if !self.claim(platform, &press.event_id).await? {
            return Ok(Reply::None);
        }
        match press.action.kind {
            ButtonKind::Rollback => self.press_rollback(&press, false).await,
            ButtonKind::DisableAutoSyncAndRollback => self.press_rollback(&press, true).await,
            ButtonKind::Confirm => self.press_confirm(&press).await,
            ButtonKind::Cancel => self.press_cancel(&press).await,
            ButtonKind::NotDeployRelated => self.press_dismiss(&press).await,
        }
    }

    async fn deny(
        &self,
        press: &Press,
        target: Option<&Target>,
        code: &str,
        text: String,
    ) -> Result<Reply, BotError> {
        self.deny_naming(press, &press.action.token, target, code, text)
            .await
    }

    /// Refuses a press, auditing it under `plan` (a Confirm button carries its
    /// confirmation's id, but the refusal belongs to the plan's story).
    async fn deny_naming(
        &self,
        press: &Press,
        plan: &PlanId,
        target: Option<&Target>,
        code: &str,
        text: String,
    ) -> Result<Reply, BotError> {
        let mut entry = self
            .inner
            .audit
            .entry(actions::ROLLBACK_DENIED)
            .actor(&press.actor)
            .details(json!({
                "plan": plan.to_string(),
                "reason": code,
                "message": text,
                "channel": press.channel,
            }));
        if let Some(target) = target {
            entry = entry.target(target);
        }
        self.inner.audit.append(entry).await?;
        self.inner.metrics.rollback("denied");
        Ok(Reply::Private(
            Message::plain(text).with_tone(Tone::Warning),
        ))
    }

    async fn press_rollback(
        &self,
        press: &Press,
        disable_auto_sync: bool,
    ) -> Result<Reply, BotError> {
        let Some(plan) = self.inner.store.plan(&press.action.token).await? else {
            return self.deny(press, None, "unknown_plan", "This button does not belong to any rollback breakwater offered. Nothing was done.".to_owned()).await;
        };
        let written = self
            .inner
            .audit
            .append(
                self.inner
                    .audit
                    .entry(actions::ROLLBACK_REQUESTED)
                    .actor(&press.actor)
                    .target(&plan.target)
                    .details(json!({
                        "plan": plan.id.to_string(),
                        "from": plan.from,
                        "to": plan.to,
                        "channel": press.channel,
                        "disable_auto_sync": disable_auto_sync,
                    })),
            )
            .await?;
        self.observe_incident(plan.alert_group, &written).await;
        if let Some(reply) = self.refuse_closed_plan(press, &plan).await? {
            return Ok(reply);
        }
        if let Some(reply) = self.refuse_by_policy(press, &plan).await? {
            return Ok(reply);
        }
        if let Some(reply) = self.refuse_blocked(press, &plan, disable_auto_sync).await? {
            return Ok(reply);
        }
        let needs_confirm_step = !press.confirmed_by_platform
            && self
                .inner
                .chats
                .get(platform_of(press))
                .is_none_or(|chat| chat.needs_confirm_step());
        if needs_confirm_step {
            let now = self.now();
            let ttl = chrono::Duration::from_std(self.inner.settings.confirm_ttl)
                .unwrap_or(chrono::Duration::minutes(5));
            let confirmation = Confirmation {
                id: PlanId::generate(),
                plan: plan.id,
                actor: press.actor.clone(),
                created_at: now,
                expires_at: (now + ttl).min(plan.expires_at),
                disable_auto_sync,
            };
            self.inner.store.insert_confirmation(&confirmation).await?;
            self.inner
                .audit
                .append(
                    self.inner
                        .audit
                        .entry(actions::ROLLBACK_CONFIRMATION_REQUESTED)
                        .actor(&press.actor)
                        .target(&plan.target)
                        .details(json!({
                            "plan": plan.id.to_string(),
                            "confirmation": confirmation.id.to_string(),
                            "from": plan.from.version,
                            "to": plan.to.version,
                            "disable_auto_sync": disable_auto_sync,
                        })),
                )
                .await?;
            self.remember_private_reply(&plan.id, press, false);
            return Ok(Reply::Private(compose::confirm_prompt(
                &plan,
                confirmation.id,
                disable_auto_sync,
            )));
        }
        self.approve_or_start(press, plan, disable_auto_sync).await
    }

    /// Closes an offer past its expiry: audited, and its buttons replaced by the
    /// expiry line. A no-op when someone else closed it first.
    async fn expire_plan(&self, plan: &RollbackPlan, now: DateTime<Utc>) -> Result<(), BotError> {
        let open = [PlanState::Offered, PlanState::Confirmed];
        let expired = self
            .inner
            .store
            .transition_plan(
                &plan.id,
                &open,
                PlanState::Expired,
                &PlanPatch::default(),
                now,
            )
            .await?;
        if let Some(expired) = expired {
            let entry = self
                .inner
                .audit
                .entry(actions::ROLLBACK_EXPIRED)
                .target(&plan.target)
                .details(json!({"plan": plan.id.to_string()}));
            self.inner.audit.append(entry).await?;
            self.update_plan_message(&expired).await;
        }
        Ok(())
    }

    /// A plan that can no longer be started: say what happened to it.
    async fn refuse_closed_plan(
        &self,
        press: &Press,
        plan: &RollbackPlan,
    ) -> Result<Option<Reply>, BotError> {
        let now = self.now();
        if plan.state.is_open() && plan.is_expired(now) {
            self.expire_plan(plan, now).await?;
            self.inner.metrics.rollback("expired");
            let text = format!(
                "This rollback offer expired at {} UTC (offers last {}). Nothing was done. Run /breakwater rollback {} {} for a fresh one with the current revisions.",
                plan.expires_at.format("%H:%M"),
                human_span(self.inner.settings.policy.plan_ttl.as_secs()),
                plan.target.service,
                plan.target.environment
            );
            return self
                .deny(press, Some(&plan.target), "expired", text)
                .await
                .map(Some);
        }
        if plan.state.is_open() {
            return Ok(None);
        }
        let who = |actor: &Option<Actor>| {
            actor
                .as_ref()
                .map_or("someone".to_owned(), |a| a.name().to_owned())
        };
        let when = plan
            .started_at
            .map(|t| t.format("%H:%M:%S UTC").to_string())
            .unwrap_or_default();
        let text = match plan.state {
            PlanState::Running => format!("{} already started this rollback at {when}; it is running now.", who(&plan.started_by)),
            PlanState::Succeeded => format!("{} already rolled {} back to {} at {when}.", who(&plan.started_by), plan.target, plan.to.version),
            PlanState::Failed => format!("{} already ran this rollback at {when} and it failed. Check the thread, then ask for a fresh plan.", who(&plan.started_by)),
            PlanState::Stale => "This plan went stale: the service was deployed again after it was offered. Use the fresh plan in the thread.".to_owned(),
            PlanState::Expired => format!("This rollback offer expired. Run /breakwater rollback {} {} for a fresh one.", plan.target.service, plan.target.environment),
            PlanState::Dismissed => format!("This alert was marked not deploy-related ({}). Run /breakwater rollback {} {} if you still want to roll back.", plan.outcome.clone().unwrap_or_default(), plan.target.service, plan.target.environment),
            PlanState::Interrupted => "This rollback was interrupted by a breakwater restart; check the thread before asking for a fresh plan.".to_owned(),
            PlanState::Offered | PlanState::Confirmed => return Ok(None),
        };
        self.deny(press, Some(&plan.target), "plan_closed", text)
            .await
            .map(Some)
    }

    async fn refuse_by_policy(
        &self,
        press: &Press,
        plan: &RollbackPlan,
    ) -> Result<Option<Reply>, BotError> {
        let last = self
            .inner
            .store
            .last_rollback_finished(&plan.target)
            .await?;
        let decision = self.inner.settings.policy.check(&RollbackRequest {
            actor: &press.actor,
            target: &plan.target,
            channel: press.channel.as_deref(),
            now: self.now(),
            last_rollback_finished: last,
        });
        match decision {
            Ok(()) => Ok(None),
            Err(denial) => self
                .deny(press, Some(&plan.target), denial.code(), denial.to_string())
                .await
                .map(Some),
        }
    }

    /// Checks again, at the press, what hid or changed the plan's buttons when they were
    /// drawn: a blocking caveat (Argo CD auto-sync, a paused Deployment, a revision gone
    /// from the history) hides Roll back, and "Disable auto-sync and roll back" exists
    /// only while auto-sync is the one blocker and the configuration allows the remedy. A
    /// plan id taken from another button (Not deploy-related) therefore never rolls back
    /// what its Roll back button was hidden for. Refusals are private and audited.
    async fn refuse_blocked(
        &self,
        press: &Press,
        plan: &RollbackPlan,
        disable_auto_sync: bool,
    ) -> Result<Option<Reply>, BotError> {
        // A restore's blockers (a paused Deployment, a changed ConfigMap) are checked by
        // the backend before it writes anything; a rollback's caveats do not apply to it.
        if plan.action == Action::RestoreConfig {
            if !disable_auto_sync {
                return Ok(None);
            }
            return self
                .deny(
                    press,
                    Some(&plan.target),
                    "action_not_offered",
                    format!(
                        "\"Disable auto-sync and roll back\" is not offered for a restore of {}. \
                         Nothing was done.",
                        plan.target
                    ),
                )
                .await
                .map(Some);
        }
        let Some(backend) = self.inner.backends.for_target(&plan.target) else {
            return Ok(None);
        };
        let started = Instant::now();
        let checked =
            tokio::time::timeout(PRESS_CHECK_TIMEOUT, backend.caveats(&plan.target, &plan.to))
                .await;
        self.inner.metrics.backend_call(
            backend.name(),
            "caveats",
            matches!(checked, Ok(Ok(_))),
            started.elapsed(),
        );
        let caveats = match checked {
            Ok(Ok(caveats)) => caveats,
            // The rollback re-reads the backend and fails loudly if it is down.
            Ok(Err(error)) => {
                tracing::warn!(backend = backend.name(), %error, "could not re-check blockers at the press");
                return Ok(None);
            }
            Err(_) => {
                tracing::warn!(
                    backend = backend.name(),
                    "re-checking blockers at the press timed out"
                );
                return Ok(None);
            }
        };
        let blockers: Vec<&Caveat> = caveats.iter().filter(|c| c.blocking).collect();
        let remedied = |c: &&Caveat| {
            disable_auto_sync && c.remedy == Some(super::backend::Remedy::DisableAutoSync)
        };
        let unremedied: Vec<&str> = blockers
            .iter()
            .filter(|c| !remedied(c))
            .map(|c| c.message.as_str())
            .collect();
        if !unremedied.is_empty() {
            return self
                .deny(
                    press,
                    Some(&plan.target),
                    "blocked",
                    format!(
                        "{} cannot be rolled back from here right now: {} Nothing was done.",
                        plan.target,
                        unremedied.join(" ")
                    ),
                )
                .await
                .map(Some);
        }
        if disable_auto_sync && blockers.is_empty() {
            return self
                .deny(
                    press,
                    Some(&plan.target),
                    "action_not_offered",
                    format!(
                        "\"Disable auto-sync and roll back\" is not offered for {}: nothing blocks \
                         a plain rollback, so there is no automated sync to turn off. Nothing was \
                         done; use Roll back.",
                        plan.target
                    ),
                )
                .await
                .map(Some);
        }
        Ok(None)
    }

    async fn press_confirm(&self, press: &Press) -> Result<Reply, BotError> {
        let Some(confirmation) = self.inner.store.confirmation(&press.action.token).await? else {
            return Ok(Reply::ReplaceSource(Message::plain(
                "This confirmation was already used or has expired. Nothing more was done.",
            )));
        };
        if !confirmation.actor.is_same_person(&press.actor) {
            let plan = self.inner.store.plan(&confirmation.plan).await?;
            return self
                .deny_naming(press, &confirmation.plan, plan.as_ref().map(|p| &p.target), "not_confirmer", format!("Only {} can confirm this rollback. Press Roll back yourself to get your own confirmation.", confirmation.actor.name()))
                .await;
        }
        let Some(confirmation) = self
            .inner
            .store
            .take_confirmation(&press.action.token)
            .await?
        else {
            return Ok(Reply::None);
        };
        if self.now() >= confirmation.expires_at {
            return Ok(Reply::ReplaceSource(Message::plain(
                "This confirmation expired. Press Roll back again.",
            )));
        }
        let Some(plan) = self.inner.store.plan(&confirmation.plan).await? else {
            return Ok(Reply::ReplaceSource(Message::plain(
                "The rollback plan no longer exists. Nothing was done.",
            )));
        };
        if let Some(reply) = self.refuse_closed_plan(press, &plan).await? {
            return Ok(as_replacement(reply));
        }
        if let Some(reply) = self.refuse_by_policy(press, &plan).await? {
            return Ok(as_replacement(reply));
        }
        if let Some(reply) = self
            .refuse_blocked(press, &plan, confirmation.disable_auto_sync)
            .await?
        {
            return Ok(as_replacement(reply));
        }
        let reply = self
            .approve_or_start(press, plan, confirmation.disable_auto_sync)
            .await?;
        Ok(as_replacement(reply))
    }

    async fn press_cancel(&self, press: &Press) -> Result<Reply, BotError> {
        let Some(confirmation) = self.inner.store.confirmation(&press.action.token).await? else {
            return Ok(Reply::ReplaceSource(Message::plain("Nothing to cancel.")));
        };
        if !confirmation.actor.is_same_person(&press.actor) {
            return Ok(Reply::Private(Message::plain(format!(
                "Only {} can cancel this.",
                confirmation.actor.name()
            ))));
        }
        if self
            .inner
            .store
            .take_confirmation(&press.action.token)
            .await?
            .is_some()
        {
            let plan = self.inner.store.plan(&confirmation.plan).await?;
            let mut entry = self
                .inner
                .audit
                .entry(actions::ROLLBACK_CANCELLED)
                .actor(&press.actor)
                .details(json!({
                    "plan": confirmation.plan.to_string(),
                    "confirmation": confirmation.id.to_string(),
                }));
            if let Some(plan) = &plan {
                entry = entry.target(&plan.target);
            }
            self.inner.audit.append(entry).await?;
        }
        Ok(Reply::ReplaceSource(Message::plain(
            "Cancelled. Nothing was rolled back.",
        )))
    }

    async fn press_dismiss(&self, press: &Press) -> Result<Reply, BotError> {
        let Some(plan) = self.inner.store.plan(&press.action.token).await? else {
            return Ok(Reply::Private(Message::plain(
                "This button does not belong to anything breakwater offered.",
            )));
        };
        let now = self.now();
        let outcome = format!(
            "Marked not deploy-related by {} at {}.",
            press.actor.name(),
            now.format("%H:%M UTC")
        );
        let patch = PlanPatch {
            outcome: Some(outcome),
            ..PlanPatch::default()
        };
        match self
            .inner
            .store
            .transition_plan(
                &plan.id,
                &[PlanState::Offered, PlanState::Confirmed],
                PlanState::Dismissed,
                &patch,
                now,
            )
            .await?
        {
            Some(dismissed) => {
                self.inner
                    .audit
                    .append(
                        self.inner
                            .audit
                            .entry(actions::SUMMARY_DISMISSED)
                            .actor(&press.actor)
                            .target(&plan.target)
                            .details(json!({"plan": plan.id.to_string()})),
                    )
                    .await?;
                self.update_plan_message(&dismissed).await;
                Ok(Reply::None)
            }
            None => Ok(Reply::Private(Message::plain(format!(
                "This plan is already {}.",
                self.inner
                    .store
                    .plan(&plan.id)
                    .await?
                    .map_or(plan.state, |p| p.state)
            )))),
        }
    }

    /// After all checks: record a first approval where two people are needed, or start.
    async fn approve_or_start(
        &self,
        press: &Press,
        plan: RollbackPlan,
        disable_auto_sync: bool,
    ) -> Result<Reply, BotError> {
        let now = self.now();
        if self.inner.settings.policy.needs_two_people(&plan.target) {
            match (&plan.state, &plan.approved_by) {
                (PlanState::Offered, _) => {
                    let patch = PlanPatch {
                        approved_by: Some(press.actor.clone()),
                        ..PlanPatch::default()
                    };
                    return match self
                        .inner
                        .store
                        .transition_plan(
                            &plan.id,
                            &[PlanState::Offered],
                            PlanState::Confirmed,
                            &patch,
                            now,
                        )
                        .await?
                    {
                        Some(approved) => {
                            self.inner
                                .audit
                                .append(self.inner.audit.entry(actions::ROLLBACK_APPROVED).actor(&press.actor).target(&plan.target).details(json!({
                                    "plan": plan.id.to_string(), "from": plan.from.version, "to": plan.to.version,
                                })))
                                .await?;
                            self.update_plan_message(&approved).await;
                            Ok(Reply::Private(Message::plain(format!(
                                "Approval recorded. {} needs a second person: another authorised person must press Roll back.",
                                plan.target.environment
                            ))))
                        }
                        None => {
                            // Someone else approved first; look again.
                            let Some(fresh) = self.inner.store.plan(&plan.id).await? else {
                                return Ok(Reply::None);
                            };
                            if fresh.state == PlanState::Confirmed
                                && fresh
                                    .approved_by
                                    .as_ref()
                                    .is_some_and(|a| !a.is_same_person(&press.actor))
                            {
                                Box::pin(self.approve_or_start(press, fresh, disable_auto_sync))
                                    .await
                            } else {
                                Ok(self
                                    .refuse_closed_plan(press, &fresh)
                                    .await?
                                    .unwrap_or(Reply::None))
                            }
                        }
                    };
                }
                (PlanState::Confirmed, Some(approver)) if approver.is_same_person(&press.actor) => {
                    return Ok(Reply::Private(Message::plain(
                        "You already approved this rollback. A second authorised person must press Roll back.",
                    )));
                }
                _ => {}
            }
        }
        self.start(press, plan, disable_auto_sync).await
    }

    async fn start(
        &self,
        press: &Press,
        plan: RollbackPlan,
        disable_auto_sync: bool,
    ) -> Result<Reply, BotError> {
        let now = self.now();
        let patch = PlanPatch {
            started_by: Some(press.actor.clone()),
            started_at: Some(now),
            runner: Some(self.inner.runner.clone()),
            ..PlanPatch::default()
        };
        let started = match self
            .inner
            .store
            .transition_plan(
                &plan.id,
                &[PlanState::Offered, PlanState::Confirmed],
                PlanState::Running,
                &patch,
                now,
            )
            .await
        {
            Ok(Some(started)) => started,
            Ok(None) => {
                let fresh = self.inner.store.plan(&plan.id).await?.unwrap_or(plan);
                return Ok(self
                    .refuse_closed_plan(press, &fresh)
                    .await?
                    .unwrap_or(Reply::None));
            }
            Err(StoreError::TargetBusy(target)) => {
                return self.deny(press, Some(&target), "target_busy", format!("Another rollback of {target} is running right now. Wait for its outcome in its thread.")).await;
            }
            Err(error) => return Err(error.into()),
        };
        let shows_progress = |at: &MessageRef| {
            started.message.as_ref().is_some_and(|m| {
                m.platform == at.platform && m.channel == at.channel && m.id == at.id
            })
        };
        // Confirmed in the platform's dialog on the message that now shows the progress and
        // then the outcome in place: a private "Rolling back…" would only linger after it.
        let silent =
            press.confirmed_by_platform && press.message.as_ref().is_some_and(shows_progress);
        if !silent {
            // Before the rollback starts, so that its outcome finds the reply to replace.
            // A Confirm press replaces its own Confirm/Cancel step with this.
            let in_place = press.action.kind == ButtonKind::Confirm;
            self.remember_private_reply(&started.id, press, in_place);
        }
        lock(&self.inner.running).insert(started.id);
        let bot = self.clone();
        let plan_for_task = started.clone();
        self.inner
            .rollbacks
            .spawn(async move { bot.execute(plan_for_task, disable_auto_sync).await });
        if silent {
            return Ok(Reply::None);
        }
        let follow = match started.message {
            Some(_) => "Progress and the outcome appear in the thread.",
            None => "The outcome will replace this message.",
        };
        Ok(Reply::Private(Message::plain(format!(
            "{} {follow}",
            compose::starting_line(&started)
        ))))
    }

    fn remember_private_reply(&self, plan: &PlanId, press: &Press, in_place: bool) {
        lock(&self.inner.private_replies).add(
            *plan,
            &press.actor,
            PrivateReply {
                platform: platform_of(press),
                event_id: press.event_id.clone(),
                pressed: press.message.clone(),
                in_place,
            },
        );
    }

    /// The plan is over: its private replies (Confirm steps nobody answered, "Rolling
    /// back…") are replaced by its outcome where the platform allows.
    async fn settle_private_replies(&self, plan: &RollbackPlan) {
        self.replace_private_replies(plan, compose::private_outcome(plan, self.now()))
            .await;
    }

    /// Replaces every private reply kept for `plan` with `message`, once.
    async fn replace_private_replies(&self, plan: &RollbackPlan, message: Message) {
        let replies = lock(&self.inner.private_replies).take(&plan.id);
        for reply in replies {
            let Some(chat) = self.inner.chats.get(reply.platform) else {
                continue;
            };
            if let Err(error) = chat.replace_private(&reply, &message).await {
                tracing::debug!(%error, plan = %plan.id, "could not replace a private reply");
            }
        }
    }

    // --- rollback execution ----------------------------------------------------------------

    async fn execute(&self, plan: RollbackPlan, disable_auto_sync: bool) {
        self.update_plan_message(&plan).await;
        let Some(backend) = self.inner.backends.for_target(&plan.target) else {
            self.finish(
                &plan,
                Outcome::Failed(format!(
                    "No deployment backend is configured for {}. Nothing was changed.",
                    plan.target
                )),
            )
            .await;
            return;
        };
        // A restore's `from` is what the ConfigMap holds, not a revision: the backend
        // checks it against the object itself right before writing.
        if plan.action == Action::Rollback {
            let (history, _) = self.history(&plan.target, HistoryScope::Latest(20)).await;
            let current = match self.current_revision(&plan.target, &history).await {
                Ok(current) => current,
                Err(message) => {
                    self.finish(
                        &plan,
                        Outcome::Failed(format!("{message}. Nothing was changed.")),
                    )
                    .await;
                    return;
                }
            };
            if current.as_ref().map(|c| &c.id) != Some(&plan.from.id) {
                self.mark_stale(&plan, current).await;
                return;
            }
        }
        let Some(actor) = plan.started_by.clone() else {
            self.finish(
                &plan,
                Outcome::Failed("The plan has no recorded starter.".to_owned()),
            )
            .await;
            return;
        };
        let started = self
            .inner
            .audit
            .append(
                self.inner
                    .audit
                    .entry(actions::ROLLBACK_STARTED)
                    .actor(&actor)
                    .target(&plan.target)
                    .details(json!({
                        "plan": plan.id.to_string(),
                        "from": plan.from,
                        "to": plan.to,
                        "action": plan.action.as_str(),
                        "backend": backend.name(),
                        "kind": backend.kind(),
                        "disable_auto_sync": disable_auto_sync,
                    })),
            )
            .await;
        if let Err(error) = started {
            // Without the durable record nothing may run.
            tracing::error!(%error, "could not audit rollback.started");
            self.finish(&plan, Outcome::Failed("breakwater could not write its audit log, so it did not call the backend. Nothing was changed.".to_owned())).await;
            return;
        }
        let call = RollbackCall {
            plan_id: plan.id,
            target: plan.target.clone(),
            from: plan.from.clone(),
            to: plan.to.clone(),
            requested_by: actor.clone(),
            reason: plan.reason.clone(),
            disable_auto_sync,
            action: plan.action,
        };
        let started_at = Instant::now();
        let result = backend.rollback(&call).await;
        self.inner.metrics.backend_call(
            backend.name(),
            "rollback",
            result.is_ok(),
            started_at.elapsed(),
        );
        let audit_call = self.inner.audit.append(
            self.inner
                .audit
                .entry(actions::ROLLBACK_BACKEND_CALL)
                .target(&plan.target)
                .details(json!({
                    "plan": plan.id.to_string(),
                    "backend": backend.name(),
                    "operation": "rollback",
                    "ok": result.is_ok(),
                    "error": result.as_ref().err().map(|e| e.message.clone()),
                    "error_kind": result.as_ref().err().map(|e| e.kind.as_str()),
                    "took_ms": started_at.elapsed().as_millis() as u64,
                })),
        );
        if let Err(error) = audit_call.await {
            tracing::error!(%error, "could not audit the backend call");
        }
        match result {
            Err(error)
                if plan.action == Action::RestoreConfig
                    && error.kind == BackendErrorKind::Conflict =>
            {
                self.restore_went_stale(&plan, backend, error.message).await;
            }
            Err(error) => {
                let conflict = error.kind == BackendErrorKind::Conflict;
                self.finish(&plan, Outcome::Failed(error.message)).await;
                if conflict {
                    self.reoffer_after_conflict(&plan).await;
                }
            }
            Ok(operation) => {
                if let Ok(value) = serde_json::to_value(&operation)
                    && let Err(error) = self.inner.store.set_plan_operation(&plan.id, &value).await
                {
                    tracing::warn!(%error, "could not store the rollback operation");
                }
                self.follow(&plan, backend, operation).await;
            }
        }
    }

    async fn follow(
        &self,
        plan: &RollbackPlan,
        backend: Arc<dyn DeployBackend>,
        operation: Operation,
    ) {
        let outcome = match operation.finished.clone() {
            Some(outcome) => outcome,
            None => {
                let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
                let progress = move |line: String| {
                    let _ = sender.send(line);
                };
                let reporter = {
                    let bot = self.clone();
                    let mut shown = plan.clone();
                    tokio::spawn(async move {
                        let mut last = Instant::now() - Duration::from_secs(10);
                        let mut audited = 0;
                        while let Some(line) = receiver.recv().await {
                            // The first lines go to the audit log too, so that an
                            // incident's timeline can show the backend's progress; past
                            // the bound they are only shown (the outcome is audited).
                            if audited < PROGRESS_AUDITED {
                                audited += 1;
                                bot.audit_progress(&shown, &line).await;
                            }
                            shown.outcome = Some(line);
                            if last.elapsed() >= Duration::from_secs(2) {
                                last = Instant::now();
                                bot.update_plan_message(&shown).await;
                            }
                        }
                    })
                };
                let started = Instant::now();
                let result = tokio::time::timeout(
                    self.inner.settings.follow_limit,
                    backend.wait(&operation, &progress),
                )
                .await;
                drop(progress);
                let _ = reporter.await;
                let ok = matches!(result, Ok(Ok(_)));
                self.inner
                    .metrics
                    .backend_call(backend.name(), "wait", ok, started.elapsed());
                match result {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(error)) => Outcome::Failed(error.message),
                    Err(_) => Outcome::Failed(format!(
                        "breakwater stopped following after {}; check {} for the outcome before retrying.",
                        human_span(self.inner.settings.follow_limit.as_secs()),
                        backend.name()
                    )),
                }
            }
        };
        self.finish(plan, outcome).await;
    }

    /// Audits one progress line of a followed rollback. Best effort: the rollback goes on
    /// when the line cannot be written, and the failure is logged.
    async fn audit_progress(&self, plan: &RollbackPlan, line: &str) {
        let entry = self
            .inner
            .audit
            .entry(actions::ROLLBACK_PROGRESS)
            .target(&plan.target)
            .details(json!({"plan": plan.id.to_string(), "line": line}));
        if let Err(error) = self.inner.audit.append(entry).await {
            tracing::warn!(%error, plan = %plan.id, "could not audit a rollback progress line");
        }
    }

    async fn finish(&self, plan: &RollbackPlan, outcome: Outcome) {
        let now = self.now();
        let (state, detail) = match &outcome {
            Outcome::Succeeded(detail) => (PlanState::Succeeded, detail.clone()),
            Outcome::Failed(reason) => (PlanState::Failed, reason.clone()),
        };
        let patch = PlanPatch {
            finished_at: Some(now),
            outcome: Some(detail.clone()),
            ..PlanPatch::default()
        };
        let result: Result<(), BotError> = async {
            let Some(finished) = self
                .inner
                .store
                .transition_plan(&plan.id, &[PlanState::Running], state, &patch, now)
                .await?
            else {
                // Someone (shutdown) already closed it.
                return Ok(());
            };
            let actor = finished.started_by.clone();
            // A restore is recorded by the config watch, as the ConfigMap change it is; an
            // abort deployed nothing.
            if state == PlanState::Succeeded && plan.action.changes_revision() {
                let who = actor
                    .as_ref()
                    .map_or("breakwater".to_owned(), |a| a.name().to_owned());
                let deploy = Deploy {
                    target: plan.target.clone(),
                    version: plan.to.version.clone(),
                    previous_version: Some(plan.from.version.clone()),
                    revision: (plan.to.id != plan.to.version).then(|| plan.to.id.clone()),
                    commit: None,
                    author: Some(who),
                    description: Some(format!("rollback of {}", plan.from.version)),
                    url: None,
                    started_at: finished.started_at.unwrap_or(now),
                    finished_at: Some(now),
                    status: DeployStatus::Succeeded,
                    changes: Vec::new(),
                    config_changes: Vec::new(),
                    source: DeploySource::Rollback,
                };
                self.inner.store.record_deploy(&deploy).await?;
                if finished.alert_group.is_none() {
                    self.inner.store.set_plan_verified(&plan.id, now).await?;
                }
            }
            let took = finished
                .started_at
                .map(|s| (now - s).num_milliseconds())
                .unwrap_or_default();
            let action = if state == PlanState::Succeeded {
                actions::ROLLBACK_SUCCEEDED
            } else {
                actions::ROLLBACK_FAILED
            };
            let mut entry = self
                .inner
                .audit
                .entry(action)
                .target(&plan.target)
                .details(json!({
                    "plan": plan.id.to_string(),
                    "action": plan.action.as_str(),
                    "from": plan.from,
                    "to": plan.to,
                    "detail": detail,
                    "took_ms": took,
                }));
            if let Some(actor) = &actor {
                entry = entry.actor(actor);
            }
            let written = self.inner.audit.append(entry).await?;
            self.inner.metrics.rollback(state.as_str());
            self.observe_incident(plan.alert_group, &written).await;
            self.update_plan_message(&finished).await;
            if state == PlanState::Succeeded && plan.action == Action::AbortRollout {
                // Traffic is back on the stable version, but the target still holds the
                // aborted template: the rollback that makes the abort final comes next.
                let offer = Offer {
                    from: plan.from.clone(),
                    to: plan.to.clone(),
                    suspect_version: plan.from.version.clone(),
                    reason: format!(
                        "the rollout of {} was aborted; rolling back makes {} the template again",
                        plan.from.version, plan.to.version
                    ),
                    to_url: None,
                    action: Action::Rollback,
                };
                self.post_fresh_plan(&finished, &offer, actor.clone(), FreshCaveats::FromBackend)
                    .await?;
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::error!(%error, plan = %plan.id, "could not record the rollback outcome");
        }
        lock(&self.inner.running).remove(&plan.id);
    }

    /// Moves a running plan to stale with `patch`, audits it with `details` and shows it
    /// where its button is; `None` when someone else (shutdown) already closed it.
    async fn record_stale(
        &self,
        plan: &RollbackPlan,
        patch: &PlanPatch,
        now: DateTime<Utc>,
        details: serde_json::Value,
    ) -> Result<Option<RollbackPlan>, BotError> {
        let Some(stale) = self
            .inner
            .store
            .transition_plan(
                &plan.id,
                &[PlanState::Running],
                PlanState::Stale,
                patch,
                now,
            )
            .await?
        else {
            return Ok(None);
        };
        let mut entry = self
            .inner
            .audit
            .entry(actions::ROLLBACK_STALE)
            .target(&plan.target)
            .details(details);
        if let Some(actor) = &stale.started_by {
            entry = entry.actor(actor);
        }
        self.inner.audit.append(entry).await?;
        self.inner.metrics.rollback("stale");
        self.update_plan_message(&stale).await;
        Ok(Some(stale))
    }

    /// The target moved since the plan was offered: nothing runs; a fresh plan is offered.
    async fn mark_stale(&self, plan: &RollbackPlan, current: Option<Revision>) {
        let now = self.now();
        let current_text = current
            .as_ref()
            .map_or("an unknown revision".to_owned(), |c| c.version.clone());
        let nothing = if plan.action.changes_revision() {
            "Nothing was rolled back."
        } else {
            "Nothing was changed."
        };
        let outcome = format!(
            "{} now runs {current_text}, not {} as when this was offered (deployed again since). {nothing}",
            plan.target, plan.from.version
        );
        let patch = PlanPatch {
            finished_at: Some(now),
            outcome: Some(outcome.clone()),
            ..PlanPatch::default()
        };
        let result: Result<(), BotError> = async {
            let details = json!({
                "plan": plan.id.to_string(),
                "expected_from": plan.from,
                "current": current,
                "to": plan.to,
            });
            let Some(stale) = self.record_stale(plan, &patch, now, details).await? else {
                return Ok(());
            };
            if let Some(current) = current
                && current.id != plan.to.id
            {
                let offer = Offer {
                    from: current,
                    to: plan.to.clone(),
                    suspect_version: plan.from.version.clone(),
                    reason: format!("fresh plan after {} was deployed again", plan.target),
                    to_url: None,
                    action: Action::Rollback,
                };
                self.post_fresh_plan(&stale, &offer, stale.started_by.clone(), FreshCaveats::None)
                    .await?;
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::error!(%error, plan = %plan.id, "could not record the stale plan");
        }
        lock(&self.inner.running).remove(&plan.id);
    }

    /// A restore found the ConfigMap changed since it was offered (or lost the race to
    /// write it): nothing was written. The plan goes stale, and a fresh restore to the
    /// same kept state, from what the ConfigMap holds now, is offered in the thread.
    async fn restore_went_stale(
        &self,
        plan: &RollbackPlan,
        backend: Arc<dyn DeployBackend>,
        outcome: String,
    ) {
        let now = self.now();
        let patch = PlanPatch {
            finished_at: Some(now),
            outcome: Some(outcome),
            ..PlanPatch::default()
        };
        let result: Result<(), BotError> = async {
            let details = json!({
                "plan": plan.id.to_string(),
                "action": plan.action.as_str(),
                "expected_from": plan.from,
                "to": plan.to,
            });
            let Some(stale) = self.record_stale(plan, &patch, now, details).await? else {
                return Ok(());
            };
            if stale.message.is_none() {
                // No thread to offer a fresh restore in.
                return Ok(());
            }
            // The change the plan restores from: the newest one of that ConfigMap whose
            // restore still returns to the same kept state.
            let (history, _) = self.history(&plan.target, HistoryScope::Latest(50)).await;
            let mut fresh = None;
            for change in history.iter().filter(|d| d.is_config_change()) {
                if let Ok(Some(restore)) = backend.restore_offer(&plan.target, change).await
                    && restore.to.id == plan.to.id
                {
                    fresh = Some((change.version.clone(), restore));
                    break;
                }
            }
            let Some((suspect_version, restore)) = fresh else {
                return Ok(());
            };
            let offer = Offer {
                reason: compose::restore_reason(&restore.changes),
                from: restore.from,
                to: restore.to,
                suspect_version,
                to_url: None,
                action: Action::RestoreConfig,
            };
            self.post_fresh_plan(
                &stale,
                &offer,
                stale.started_by.clone(),
                FreshCaveats::Given(restore.caveats),
            )
            .await
        }
        .await;
        if let Err(error) = result {
            tracing::error!(%error, plan = %plan.id, "could not record the stale restore");
        }
        lock(&self.inner.running).remove(&plan.id);
    }

    /// Offers `offer` as a new plan and posts it in the thread of `after` (a stale or
    /// refused plan, an abort the rollback follows), with the warnings `caveats` names
    /// (an Argo CD sync that would revert it).
    async fn post_fresh_plan(
        &self,
        after: &RollbackPlan,
        offer: &Offer,
        requested_by: Option<Actor>,
        caveats: FreshCaveats,
    ) -> Result<(), BotError> {
        let Some(at) = &after.message else {
            return Ok(());
        };
        let fresh = self
            .offer_plan(&after.target, offer, None, requested_by)
            .await?;
        let warnings = match caveats {
            FreshCaveats::None => Vec::new(),
            FreshCaveats::Given(given) => given,
            FreshCaveats::FromBackend => match self.inner.backends.for_target(&after.target) {
                Some(backend) => match backend.caveats(&after.target, &offer.to).await {
                    Ok(found) => found,
                    Err(error) => {
                        tracing::warn!(%error, "could not read the fresh plan's caveats");
                        Vec::new()
                    }
                },
                None => Vec::new(),
            },
        };
        if let Some(chat) = self.inner.chats.get(at.platform) {
            let message = compose::plan_message(&fresh, &warnings, self.now());
            match chat.reply(at, &message, Lane::Interactive).await {
                Ok(posted) => {
                    self.inner
                        .store
                        .set_plan_message(&fresh.id, &posted)
                        .await?
                }
                Err(error) => tracing::warn!(%error, "could not post the fresh plan"),
            }
        }
        Ok(())
    }

    /// The backend refused because someone else wrote the target at the same moment
    /// (HTTP 409): nothing was done, and the person gets a fresh plan for what runs now
    /// rather than a retry behind their back.
    async fn reoffer_after_conflict(&self, plan: &RollbackPlan) {
        let (history, _) = self.history(&plan.target, HistoryScope::Latest(20)).await;
        let current = match self.current_revision(&plan.target, &history).await {
            Ok(Some(current)) => current,
            Ok(None) => return,
            Err(message) => {
                tracing::warn!(%message, plan = %plan.id, "no fresh plan after the conflict");
                return;
            }
        };
        if current.id == plan.to.id {
            return;
        }
        // The same action while the target still runs what the plan was made for;
        // otherwise a rollback from what runs now.
        let action = if current.id == plan.from.id {
            plan.action
        } else {
            Action::Rollback
        };
        let offer = Offer {
            from: current,
            to: plan.to.clone(),
            suspect_version: plan.from.version.clone(),
            reason: format!(
                "fresh plan after someone else changed {} at the same moment",
                plan.target
            ),
            to_url: None,
            action,
        };
        if let Err(error) = self
            .post_fresh_plan(plan, &offer, plan.started_by.clone(), FreshCaveats::None)
            .await
        {
            tracing::error!(%error, plan = %plan.id, "could not offer a fresh plan after the conflict");
        }
    }

    /// Shows a plan's state where its button is: the whole summary for alert plans, the
    /// plan message for command plans.
    async fn update_plan_message(&self, plan: &RollbackPlan) {
        if plan.state.is_final() {
            self.settle_private_replies(plan).await;
        }
        let Some(at) = &plan.message else { return };
        let Some(chat) = self.inner.chats.get(at.platform) else {
            return;
        };
        let message = match plan.alert_group {
            Some(group_id) => {
                let group = self.inner.store.alert_group(group_id).await.ok().flatten();
                let first = self
                    .inner
                    .store
                    .group_alerts(group_id)
                    .await
                    .ok()
                    .and_then(|alerts| alerts.into_iter().next());
                match (group, first) {
                    (Some(group), Some((_, alert, _))) => {
                        let summary = self.summary_for(group_id, &alert).await;
                        self.render_summary(&summary, &group, Some(plan))
                    }
                    _ => compose::plan_message(plan, &[], self.now()),
                }
            }
            None => compose::plan_message(plan, &[], self.now()),
        };
        if let Err(error) = chat.update(at, &message, Lane::Interactive).await {
            tracing::warn!(%error, plan = %plan.id, "could not update the plan's message");
            self.inner.metrics.chat_error(at.platform.as_str());
        }
    }

    // --- commands --------------------------------------------------------------------------

    pub async fn handle_command(&self, request: CommandRequest) -> Reply {
        match self.command(request).await {
            Ok(reply) => reply,
            Err(error) => {
                tracing::error!(%error, "command failed");
                Reply::Private(
                    Message::plain(
                        "Something went wrong on breakwater's side; the error is in its log.",
                    )
                    .with_tone(Tone::Danger),
                )
            }
        }
    }

    async fn command(&self, request: CommandRequest) -> Result<Reply, BotError> {
        if !self.claim(request.platform, &request.event_id).await? {
            return Ok(Reply::None);
        }
        match &request.command {
            Command::Help => Ok(Reply::Private(help_message())),
            Command::Deploys {
                service,
                environment,
            } => {
                self.command_deploys(service.as_deref(), environment.as_deref())
                    .await
            }
            Command::Status {
                service,
                environment,
            } => self.command_status(service, environment).await,
            Command::Audit { service } => self.command_audit(service.as_deref()).await,
            Command::Timeline { service } => self.command_timeline(service.as_deref()).await,
            Command::Rollback {
                service,
                environment,
                version,
            } => {
                self.command_rollback(&request, service, environment, version.as_deref())
                    .await
            }
        }
    }

    /// A service (and optionally environment) named in a command, or the reply saying
    /// which names are known.
    fn resolve(
        &self,
        service: &str,
        environment: Option<&str>,
    ) -> Result<(ServiceName, Option<Environment>), String> {
        let known: Vec<String> = self
            .inner
            .settings
            .services
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        let found = ServiceName::parse(service)
            .ok()
            .and_then(|name| self.inner.recognizer.service(&name).cloned())
            .or_else(|| {
                let lower = service.to_lowercase();
                self.inner
                    .settings
                    .services
                    .iter()
                    .find(|s| s.aliases.iter().any(|a| a.to_lowercase() == lower))
                    .cloned()
            });
        let Some(found) = found else {
            return Err(format!(
                "I don't know a service called {service:?}. Services I know: {}.",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        let Some(environment) = environment else {
            return Ok((found.name, None));
        };
        let env = Environment::parse(environment)
            .ok()
            .and_then(|env| found.environments.iter().find(|e| **e == env).cloned());
        match env {
            Some(env) => Ok((found.name, Some(env))),
            None => Err(format!(
                "{} has no environment {environment:?}; it runs in {}.",
                found.name,
                found
                    .environments
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    async fn command_deploys(
        &self,
        service: Option<&str>,
        environment: Option<&str>,
    ) -> Result<Reply, BotError> {
        let now = self.now();
        let (service, environment) = match service {
            Some(service) => match self.resolve(service, environment) {
                Ok(found) => (Some(found.0), found.1),
                Err(text) => return Ok(Reply::Private(Message::plain(text))),
            },
            None => (None, None),
        };
        let deploys = match (&service, &environment) {
            (Some(service), Some(environment)) => {
                let (mut history, _) = self
                    .history(
                        &Target::new(service.clone(), environment.clone()),
                        HistoryScope::Latest(10),
                    )
                    .await;
                history.truncate(10);
                history
            }
            _ => {
                self.inner
                    .store
                    .deploys(&DeployQuery {
                        service: service.clone(),
                        environment: environment.clone(),
                        limit: 10,
                        ..DeployQuery::default()
                    })
                    .await?
            }
        };
        let heading = match (&service, &environment) {
            (Some(s), Some(e)) => format!("Recent deploys of {s} {e}"),
            (Some(s), None) => format!("Recent deploys of {s}"),
            _ => "Recent deploys".to_owned(),
        };
        let links = &self.inner.settings.links;
        Ok(Reply::Private(compose::deploy_list(
            &heading,
            &deploys,
            now,
            &|deploy: &Deploy| {
                links
                    .get(&deploy.target.service)
                    .and_then(|l| l.repository.clone())
            },
        )))
    }

    async fn command_status(&self, service: &str, environment: &str) -> Result<Reply, BotError> {
        let (service, environment) = match self.resolve(service, Some(environment)) {
            Ok((service, Some(environment))) => (service, environment),
            Ok(_) => return Ok(Reply::Private(Message::plain(Command::usage()))),
            Err(text) => return Ok(Reply::Private(Message::plain(text))),
        };
        let target = Target::new(service, environment);
        let (history, caveats) = self.history(&target, HistoryScope::Latest(20)).await;
        let current = self.current_revision(&target, &history).await;
        let mut lines = Vec::new();
        match &current {
            Ok(Some(current)) => {
                lines.push(RichText::new().plain("Runs ").code(current.to_string()))
            }
            Ok(None) => {
                lines.push(RichText::new().plain("Current revision unknown (no deploys recorded)"))
            }
            Err(message) => lines.push(RichText::new().plain(message.clone())),
        }
        if let Some(last) = history.first() {
            lines.push(RichText::new().plain(format!(
                "Last deploy: {} by {} at {} ({})",
                last.version,
                last.author.as_deref().unwrap_or("unknown"),
                last.effective_at().format("%Y-%m-%d %H:%M UTC"),
                last.status.as_str()
            )));
        }
        let running = self
            .inner
            .store
            .plans_in_state(&[PlanState::Running])
            .await?;
        for plan in running.iter().filter(|p| p.target == target) {
            lines.push(RichText::new().plain(format!(
                "Rollback running: {} → {}, started by {}",
                plan.from.version,
                plan.to.version,
                plan.started_by.as_ref().map_or("someone", |a| a.name())
            )));
        }
        let key = format!("{}/{}", target.service.key(), target.environment.key());
        let open: Vec<AlertGroup> = self
            .inner
            .store
            .recent_alert_groups(50)
            .await?
            .into_iter()
            .filter(|g| g.key == key && g.resolved_at.is_none())
            .collect();
        if open.is_empty() {
            lines.push(RichText::new().plain("No open alerts"));
        }
        for group in open {
            lines.push(RichText::new().plain(format!(
                "Open alert: {} ({} alerts since {})",
                group.title,
                group.alert_count,
                group.opened_at.format("%H:%M UTC")
            )));
        }
        if let Some(finished) = self.inner.store.last_rollback_finished(&target).await? {
            lines.push(RichText::new().plain(format!(
                "Last rollback finished {}",
                finished.format("%Y-%m-%d %H:%M UTC")
            )));
        }
        for caveat in caveats {
            lines.push(RichText::new().plain(format!("⚠️ {}", caveat.message)));
        }
        let text = lines
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        Ok(Reply::Private(Message {
            text: format!("Status of {target}: {text}"),
            title: Some(format!("{target} · status")),
            tone: Tone::Info,
            sections: vec![Section::Lines { lines }],
            actions: vec![],
            status: None,
        }))
    }

    /// The latest incident's timeline (of the service when named), computed from the
    /// audit log after verifying its chain; answered privately like the other read-only
    /// commands.
    async fn command_timeline(&self, service: Option<&str>) -> Result<Reply, BotError> {
        let service = match service {
            Some(service) => match self.resolve(service, None) {
                Ok((service, _)) => Some(service.to_string()),
                Err(text) => return Ok(Reply::Private(Message::plain(text))),
            },
            None => None,
        };
        let latest = incident::latest(&self.inner.store, service.as_deref()).await?;
        let found = match latest {
            Some(id) => incident::load(&self.inner.store, &self.inner.audit, id, true).await?,
            None => None,
        };
        let Some(found) = found else {
            let text = match &service {
                Some(service) => format!("No incident of {service} yet."),
                None => "No incident yet.".to_owned(),
            };
            return Ok(Reply::Private(Message::plain(text)));
        };
        let link = self
            .inner
            .settings
            .console_links
            .as_ref()
            .map(|console| console.incident(found.id));
        Ok(Reply::Private(incident::to_message(&found, link)))
    }

    async fn command_audit(&self, service: Option<&str>) -> Result<Reply, BotError> {
        let service = match service {
            Some(service) => match self.resolve(service, None) {
                Ok((service, _)) => Some(service.to_string()),
                Err(text) => return Ok(Reply::Private(Message::plain(text))),
            },
            None => None,
        };
        let records = self
            .inner
            .audit
            .search(&AuditQuery {
                service: service.clone(),
                limit: 10,
                ..AuditQuery::default()
            })
            .await?;
        let lines: Vec<RichText> = records
            .iter()
            .map(|r| {
                let who = if r.actor_name.is_empty() {
                    "breakwater".to_owned()
                } else {
                    r.actor_name.clone()
                };
                let target = if r.service.is_empty() {
                    String::new()
                } else {
                    format!(" — {} {}", r.service, r.environment)
                };
                RichText::new()
                    .code(format!("#{}", r.seq))
                    .plain(format!(" {} ", r.at.format("%m-%d %H:%M:%S UTC")))
                    .bold(r.action.clone())
                    .plain(format!(" by {who}{target}"))
            })
            .collect();
        let heading = match &service {
            Some(service) => format!("Latest audit records for {service}"),
            None => "Latest audit records".to_owned(),
        };
        let text = if lines.is_empty() {
            "No audit records yet.".to_owned()
        } else {
            lines
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        };
        Ok(Reply::Private(Message {
            text: format!("{heading}:\n{text}"),
            title: Some(heading),
            tone: Tone::Info,
            sections: if lines.is_empty() {
                vec![Section::Text {
                    text: RichText::new().plain(text),
                }]
            } else {
                vec![Section::Lines { lines }]
            },
            actions: vec![],
            status: None,
        }))
    }

    async fn command_rollback(
        &self,
        request: &CommandRequest,
        service: &str,
        environment: &str,
        version: Option<&str>,
    ) -> Result<Reply, BotError> {
        let (service, environment) = match self.resolve(service, Some(environment)) {
            Ok((service, Some(environment))) => (service, environment),
            Ok(_) => return Ok(Reply::Private(Message::plain(Command::usage()))),
            Err(text) => return Ok(Reply::Private(Message::plain(text))),
        };
        let target = Target::new(service, environment);
        let Some(backend) = self.inner.backends.for_target(&target) else {
            return Ok(Reply::Private(Message::plain(format!(
                "No deployment backend is configured for {target}."
            ))));
        };
        let (history, _) = self
            .history(&target, HistoryScope::Latest(HISTORY_LIMIT))
            .await;
        let current = match self.current_revision(&target, &history).await {
            Ok(Some(current)) => current,
            Ok(None) => {
                return Ok(Reply::Private(Message::plain(format!(
                    "I don't know what {target} runs now (no deploys recorded), so I can't offer a rollback."
                ))));
            }
            Err(message) => return Ok(Reply::Private(Message::plain(message))),
        };
        let to = match version {
            Some(version) => match history
                .iter()
                .find(|d| d.version == version && d.status == DeployStatus::Succeeded)
            {
                Some(deploy) => deploy.as_revision(),
                None => {
                    let known: Vec<&str> = history
                        .iter()
                        .filter(|d| d.status == DeployStatus::Succeeded)
                        .map(|d| d.version.as_str())
                        .take(10)
                        .collect();
                    return Ok(Reply::Private(Message::plain(format!(
                        "{version} is not a known successful deploy of {target}. Known: {}.",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ))));
                }
            },
            None => {
                let current_deploy = history
                    .iter()
                    .filter(|d| d.status == DeployStatus::Succeeded && d.version == current.version)
                    .max_by_key(|d| d.effective_at());
                let previous = history.iter().find(|d| {
                    d.status == DeployStatus::Succeeded
                        && d.version != current.version
                        && current_deploy.is_none_or(|c| d.effective_at() <= c.started_at)
                });
                match previous {
                    Some(deploy) => deploy.as_revision(),
                    None => {
                        return Ok(Reply::Private(Message::plain(format!(
                            "No earlier successful deploy of {target} is known to roll back to."
                        ))));
                    }
                }
            }
        };
        if to.id == current.id {
            return Ok(Reply::Private(Message::plain(format!(
                "{target} already runs {}.",
                to.version
            ))));
        }
        if !backend.capabilities().any_revision {
            let previous = history
                .iter()
                .find(|d| d.status == DeployStatus::Succeeded && d.version != current.version);
            if previous.is_some_and(|p| p.version != to.version) {
                return Ok(Reply::Private(Message::plain(format!(
                    "The {} backend can only roll back to the previous revision ({}).",
                    backend.kind(),
                    previous.map(|p| p.version.as_str()).unwrap_or("unknown")
                ))));
            }
        }
        let caveats = backend.caveats(&target, &to).await.unwrap_or_default();
        let offer = Offer {
            reason: format!(
                "requested by {} with /breakwater rollback",
                request.actor.name()
            ),
            from: current,
            to,
            suspect_version: String::new(),
            to_url: None,
            action: Action::Rollback,
        };
        let plan = self
            .offer_plan(&target, &offer, None, Some(request.actor.clone()))
            .await?;
        let message = compose::plan_message(&plan, &caveats, self.now());
        let posted = match (&request.channel, self.inner.chats.get(request.platform)) {
            (Some(channel), Some(chat)) => chat
                .post(channel, &message, Lane::Interactive)
                .await
                .map_err(|e| e.to_string()),
            _ => Err("no channel".to_owned()),
        };
        match posted {
            Ok(posted) => {
                self.inner.store.set_plan_message(&plan.id, &posted).await?;
                Ok(Reply::Private(Message::plain(format!(
                    "Rollback plan for {target} posted in the channel ({} → {}). Nothing runs until someone presses Roll back.",
                    plan.from.version, plan.to.version
                ))))
            }
            Err(reason) => {
                tracing::info!(%reason, "could not post the plan in the channel; answering privately");
                Ok(Reply::Private(message))
            }
        }
    }

    // --- lifecycle -------------------------------------------------------------------------

    /// Rollbacks whose process died (at start-up: this one's previous run; at any time:
    /// another replica) are adopted and followed to their outcome when the backend can
    /// resume them, confirmed from the current revision, or reported as interrupted.
    /// Rollbacks other live processes follow keep their heartbeat and are left alone.
    pub async fn recover(&self) -> Result<usize, BotError> {
        let now = self.now();
        let stale_before = now
            - chrono::Duration::from_std(self.inner.settings.heartbeat_timeout)
                .unwrap_or(chrono::Duration::seconds(15));
        let running = self
            .inner
            .store
            .adopt_running_plans(&self.inner.runner, stale_before, now)
            .await?;
        Ok(self.resume_plans(running).await)
    }

    /// At start-up: takes back at once the rollbacks this runner id left running (its
    /// previous run was killed), then adopts those of dead runners like [`Bot::recover`].
    /// Must run before this process starts any rollback of its own.
    pub async fn recover_at_start(&self) -> Result<usize, BotError> {
        let own = self
            .inner
            .store
            .reclaim_running_plans(&self.inner.runner, self.now())
            .await?;
        if !own.is_empty() {
            tracing::info!(
                count = own.len(),
                runner = self.inner.runner,
                "taking back the rollbacks this runner left running"
            );
        }
        let reclaimed = self.resume_plans(own).await;
        Ok(reclaimed + self.recover().await?)
    }

    /// This process's runner id on the rollbacks it follows.
    pub fn runner_id(&self) -> &str {
        &self.inner.runner
    }

    /// Refreshes this process's heartbeat on its rollbacks and adopts dead runners' ones,
    /// every `settings.heartbeat_interval`, until `stop`.
    pub async fn run_heartbeat(&self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.inner.settings.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let beat: Result<(), BotError> = async {
                self.inner
                    .store
                    .heartbeat_plans(&self.inner.runner, self.now())
                    .await?;
                self.recover().await?;
                Ok(())
            }
            .await;
            if let Err(error) = beat {
                match &error {
                    BotError::Store(store) if store.is_unavailable() => {
                        crate::store::log_unavailable(store)
                    }
                    _ => tracing::warn!(%error, "rollback heartbeat failed"),
                }
            }
        }
    }

    /// Follows, confirms or reports each adopted running plan; returns how many.
    async fn resume_plans(&self, running: Vec<RollbackPlan>) -> usize {
        let count = running.len();
        for plan in running {
            if lock(&self.inner.running).contains(&plan.id) {
                continue;
            }
            let backend = self.inner.backends.for_target(&plan.target);
            let operation = plan
                .operation
                .clone()
                .and_then(|v| serde_json::from_value::<Operation>(v).ok());
            match (backend, operation) {
                (Some(backend), Some(operation))
                    if backend.capabilities().resumable || operation.finished.is_some() =>
                {
                    lock(&self.inner.running).insert(plan.id);
                    let bot = self.clone();
                    self.inner.rollbacks.spawn(async move {
                        bot.update_plan_message(&plan).await;
                        bot.follow(&plan, backend, operation).await;
                    });
                }
                _ => {
                    let (history, _) = self.history(&plan.target, HistoryScope::Latest(20)).await;
                    let current = self
                        .current_revision(&plan.target, &history)
                        .await
                        .ok()
                        .flatten();
                    if current.as_ref().is_some_and(|c| c.id == plan.to.id)
                        && plan.operation.is_some()
                    {
                        lock(&self.inner.running).insert(plan.id);
                        self.finish(
                            &plan,
                            Outcome::Succeeded(format!(
                                "confirmed after a restart: {} runs {}",
                                plan.target, plan.to.version
                            )),
                        )
                        .await;
                    } else {
                        let now_runs =
                            current.map_or("an unknown revision".to_owned(), |c| c.version);
                        self.interrupt(&plan, &format!(
                            "breakwater restarted while this rollback ran and cannot follow it; {} now runs {now_runs}. Check the deployment system before retrying.",
                            plan.target
                        ))
                        .await;
                    }
                }
            }
        }
        count
    }

    async fn interrupt(&self, plan: &RollbackPlan, reason: &str) {
        let now = self.now();
        let patch = PlanPatch {
            finished_at: Some(now),
            outcome: Some(reason.to_owned()),
            ..PlanPatch::default()
        };
        let result: Result<(), BotError> = async {
            if let Some(interrupted) = self.inner.store.transition_plan(&plan.id, &[PlanState::Running], PlanState::Interrupted, &patch, now).await? {
                let mut entry = self.inner.audit.entry(actions::ROLLBACK_INTERRUPTED).target(&plan.target).details(json!({
                    "plan": plan.id.to_string(), "from": plan.from, "to": plan.to, "reason": reason,
                }));
                if let Some(actor) = &interrupted.started_by {
                    entry = entry.actor(actor);
                }
                self.inner.audit.append(entry).await?;
                self.inner.metrics.rollback("interrupted");
                self.update_plan_message(&interrupted).await;
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::error!(%error, plan = %plan.id, "could not record the interrupted rollback");
        }
        lock(&self.inner.running).remove(&plan.id);
    }

    /// Stops taking new work, lets running rollbacks finish within `grace`, and records
    /// the ones still running as interrupted.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.rollbacks.close();
        self.inner.background.close();
        let finished = tokio::time::timeout(grace, self.inner.rollbacks.wait())
            .await
            .is_ok();
        if !finished {
            let still: Vec<PlanId> = lock(&self.inner.running).iter().copied().collect();
            for id in still {
                if let Ok(Some(plan)) = self.inner.store.plan(&id).await {
                    self.interrupt(&plan, &format!(
                        "breakwater shut down while this rollback ran; it may still complete in the deployment system. Check {} before retrying.",
                        plan.target
                    ))
                    .await;
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.background.wait()).await;
        self.wait_for_held_alerts(grace).await;
    }

    /// Gives alerts held for an unavailable store `grace` to be recorded; names the ones
    /// that could not be, since they die with the process.
    async fn wait_for_held_alerts(&self, grace: Duration) {
        let hold = &self.inner.hold;
        let drained = tokio::time::timeout(grace, async {
            loop {
                let room = hold.room.notified();
                tokio::pin!(room);
                room.as_mut().enable();
                if !self.is_holding() {
                    return;
                }
                room.await;
            }
        })
        .await;
        if drained.is_err() {
            let state = lock(&hold.state);
            let titles: Vec<&str> = state.queue.iter().map(|h| h.alert.title.as_str()).collect();
            tracing::error!(
                count = titles.len(),
                ?titles,
                "shutting down with alerts held for the unavailable database: they are lost (check database.url)"
            );
        }
    }

    /// Waits until background chat work and running rollbacks are done; for tests and the
    /// demo.
    pub async fn settle(&self) {
        loop {
            let idle = self.inner.rollbacks.is_empty() && self.inner.background.is_empty();
            if idle {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Periodic work: expire stale offers, report rollbacks whose alert still fires after
    /// the verify window, forget old event claims, post the audit digest.
    pub async fn run_maintenance(&self, every: Duration, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Err(error) = self.maintain().await {
                tracing::warn!(%error, "maintenance failed");
            }
        }
    }

    pub async fn maintain(&self) -> Result<(), BotError> {
        let now = self.now();
        self.inner
            .store
            .heartbeat_plans(&self.inner.runner, now)
            .await?;
        self.recover().await?;
        for plan in self
            .inner
            .store
            .plans_in_state(&[PlanState::Offered, PlanState::Confirmed])
            .await?
        {
            if plan.is_expired(now) {
                self.expire_plan(&plan, now).await?;
            }
        }
        let window = chrono::Duration::from_std(self.inner.settings.policy.verify_window)
            .unwrap_or(chrono::Duration::minutes(15));
        for plan in self.inner.store.plans_awaiting_verification().await? {
            let Some(group_id) = plan.alert_group else {
                continue;
            };
            let Some(finished) = plan.finished_at else {
                continue;
            };
            let Some(group) = self.inner.store.alert_group(group_id).await? else {
                continue;
            };
            if group.resolved_at.is_some() {
                self.on_alert_resolved(group).await;
            } else if now >= finished + window {
                let text = format!(
                    "⚠️ {} is still firing {} after the rollback to {}. The cause may not be the deploy; keep investigating.",
                    group.title,
                    human_span((now - finished).num_seconds().max(0).unsigned_abs()),
                    plan.to.version
                );
                self.verify_plan(
                    &plan,
                    actions::ROLLBACK_NOT_RESOLVED,
                    Message::plain(text).with_tone(Tone::Warning),
                )
                .await;
            }
        }
        self.inner
            .store
            .prune_event_claims(now - chrono::Duration::days(2))
            .await?;
        self.post_digest(now).await?;
        Ok(())
    }

    async fn post_digest(&self, now: DateTime<Utc>) -> Result<(), BotError> {
        let Some((channel, every)) = &self.inner.settings.digest else {
            return Ok(());
        };
        let due = lock(&self.inner.last_digest).is_none_or(|last| {
            now - last >= chrono::Duration::from_std(*every).unwrap_or(chrono::Duration::days(1))
        });
        if !due {
            return Ok(());
        }
        let Some((platform, channel_id)) = channel.split_once(':') else {
            return Ok(());
        };
        let Some(chat) = Platform::parse(platform).and_then(|p| self.inner.chats.get(p)) else {
            return Ok(());
        };
        let head = self.inner.store.audit_head().await?;
        let text = match head {
            Some((seq, hash)) => format!(
                "Audit chain head at {}: record {seq}, hash {hash}",
                now.format("%Y-%m-%d %H:%M UTC")
            ),
            None => "Audit chain is empty.".to_owned(),
        };
        match chat
            .post(channel_id, &Message::plain(text), Lane::Alerts)
            .await
        {
            Ok(_) => *lock(&self.inner.last_digest) = Some(now),
            Err(error) => tracing::warn!(%error, "could not post the audit digest"),
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::deploy::DeploySource;

    fn deploy(version: &str, minutes: i64, source: DeploySource) -> Deploy {
        let at = DateTime::parse_from_rfc3339("2026-11-29T03:00:00Z")
            .expect("valid")
            .with_timezone(&Utc)
            + chrono::Duration::minutes(minutes);
        Deploy {
            target: Target::new(
                ServiceName::parse("checkout").expect("ok"),
                Environment::parse("production").expect("ok"),
            ),
            version: version.into(),
            previous_version: None,
            revision: None,
            commit: None,
            author: None,
            description: None,
            url: None,
            started_at: at,
            finished_at: Some(at),
            status: DeployStatus::Succeeded,
            changes: vec![],
            config_changes: vec![],
            source,
        }
    }

    #[test]
    fn people_describing_a_problem_are_heard() {
        for text in [
            "checkout prod is throwing 500s",
            "checkout production is down",
            "seeing elevated latency on checkout",
            "checkout 🔥",
        ] {
            assert!(describes_a_problem(text), "{text}");
        }
    }

    #[test]
    fn people_merely_mentioning_a_service_are_not_an_alert() {
        for text in [
            "deployed checkout v42 to production",
            "who owns checkout?",
            "checkout standup in 5",
        ] {
            assert!(!describes_a_problem(text), "{text}");
        }
    }

    #[test]
    fn backend_history_merges_into_reported_deploys_one_entry_per_version() {
        let mut registry = vec![deploy("v2", 0, DeploySource::Api)];
        let mut from_backend = deploy("v2", 0, DeploySource::Backend);
        from_backend.revision = Some("7".into());
        let older = deploy("v1", -60, DeploySource::Backend);
        merge_history(&mut registry, vec![from_backend, older]);
        assert_eq!(registry.len(), 2);
        assert_eq!(registry[0].revision.as_deref(), Some("7"));
        assert_eq!(registry[1].version, "v1");
    }

    #[test]
    fn a_rollout_the_backend_saw_fail_is_failed_even_when_ci_reported_it_succeeded() {
        let mut registry = vec![deploy("v2", 0, DeploySource::Api)];
        let mut stuck = deploy("v2", 0, DeploySource::Backend);
        stuck.status = DeployStatus::Failed;
        merge_history(&mut registry, vec![stuck]);
        assert_eq!(registry[0].status, DeployStatus::Failed);
        assert_eq!(registry[0].source, DeploySource::Api);
    }

    fn reply(event_id: &str, in_place: bool) -> PrivateReply {
        PrivateReply {
            platform: Platform::Discord,
            event_id: event_id.to_owned(),
            pressed: None,
            in_place,
        }
    }

    fn person(name: &str) -> Actor {
        Actor::new(
            Principal::parse(&format!("discord:{name}")).expect("principal"),
            name,
        )
    }

    #[test]
    fn a_confirm_answered_in_place_takes_over_that_persons_open_step() {
        let mut replies = PrivateReplies::default();
        let plan = PlanId::generate();
        replies.add(plan, &person("1"), reply("alice-step", false));
        replies.add(plan, &person("2"), reply("bob-step", false));
        replies.add(plan, &person("1"), reply("alice-confirm", true));
        let left: Vec<String> = replies
            .take(&plan)
            .into_iter()
            .map(|r| r.event_id)
            .collect();
        assert_eq!(left, ["bob-step", "alice-confirm"]);
        assert!(replies.take(&plan).is_empty(), "taken once");
    }

    #[test]
    fn private_replies_are_kept_for_a_bounded_number_of_plans() {
        let mut replies = PrivateReplies::default();
        let first = PlanId::generate();
        replies.add(first, &person("1"), reply("first", false));
        for _ in 0..PRIVATE_REPLY_PLANS {
            replies.add(PlanId::generate(), &person("1"), reply("later", false));
        }
        assert!(
            replies.take(&first).is_empty(),
            "the oldest plan is forgotten"
        );
        assert_eq!(replies.by_plan.len(), PRIVATE_REPLY_PLANS);
    }
}
