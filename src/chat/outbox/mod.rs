//! One outgoing queue per channel, shared by every platform that limits how fast a bot may
//! post in a channel (Slack: about one message per second per channel), and a separate
//! lane for private replies, which the platforms limit differently.
//!
//! - Sends to one channel take turns, spaced by the platform's rate; channels never wait
//!   for each other.
//! - [`Lane::Interactive`] sends (progress of a rollback someone pressed, answers to a
//!   command) go ahead of every queued [`Lane::Alerts`] send, so an alert storm never
//!   delays them by more than the one send already under way.
//! - A rate-limited send waits out the platform's `Retry-After` and is tried again while
//!   holding the channel's turn: nothing is dropped, and nothing else in the channel races
//!   into the same limit. Transient failures are retried with exponential backoff; refusals
//!   are returned at once.
//!
//! # Bounds and what happens when they are reached
//!
//! - **Channel queues** hold at most [`CHANNEL_QUEUE_BOUND`] sends each. What goes through
//!   them is never dropped: alert threads, summaries, rollback progress and outcomes. A
//!   send that finds its channel's queue full waits for room; its caller holds a place in a
//!   bounded inbound set (channel events, interactions), so the pressure travels back to
//!   the platform (503 + `Retry-After` over HTTP, a slower Socket Mode reader) instead of
//!   into memory. The audit log is never behind any of these queues: the core writes it
//!   before it asks for a message.
//! - **Merged**: pending edits of one message collapse, the newest content goes out once
//!   (the caller's `skip`, see [`Outbox::send_unless`]).
//! - **Private replies** (only the person who pressed or typed sees them: Slack's
//!   `chat.postEphemeral` and `response_url`) never wait in a channel's queue; they have
//!   their own [`PrivateLane`]: at most [`PRIVATE_REPLIES_BOUND`] waiting or under way,
//!   paced by the method's own limit, and **dropped** when the lane is full or when they
//!   could not go out within [`PRIVATE_REPLY_TTL`] — a "not one of breakwater's buttons"
//!   reply minutes late helps nobody, while the press itself is already audited.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use super::{ChatError, Lane};
use crate::core::message::Platform;
use crate::sync::lock;

/// What one failed attempt means for the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// The platform said slow down (HTTP 429); `retry_after` is its `Retry-After`.
    RateLimited { retry_after: Option<Duration> },
    /// The platform could not be reached or failed on its side (5xx).
    Transient(String),
    /// The platform refused in a way retrying does not fix.
    Refused(ChatError),
}

/// How long and how often sends are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first_pause: Duration,
    pub max_pause: Duration,
    /// Attempts for transport failures and 5xx answers.
    pub transient_attempts: usize,
    /// How long rate limits are waited out before the send is given up.
    pub rate_limited_for: Duration,
    /// The pause after a `429` that names no `Retry-After`.
    pub default_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_pause: Duration::from_millis(250),
            max_pause: Duration::from_secs(30),
            transient_attempts: 5,
            rate_limited_for: Duration::from_secs(15 * 60),
            default_retry_after: Duration::from_secs(1),
        }
    }
}

/// At most this many sends wait in (or are under way from) one channel's queue. At
/// Slack's one message per second that is four minutes of posts: more would only be
/// delivered too late to matter, so the producers are slowed down instead.
pub const CHANNEL_QUEUE_BOUND: usize = 256;

/// The per-channel queues of one platform.
pub struct Outbox {
    platform: Platform,
    spacing: Duration,
    retry: RetryPolicy,
    bound: usize,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    /// Raised to the longest any channel's queue has been.
    peak: Option<Gauge>,
}

/// Raises `gauge` to `now` if that is more than it shows.
fn raise(gauge: Option<&Gauge>, now: usize) {
    if let Some(gauge) = gauge {
        gauge
            .inner()
            .fetch_max(i64::try_from(now).unwrap_or(i64::MAX), Ordering::Relaxed);
    }
}

impl Outbox {
    /// `spacing` is the least time between two sends to one channel.
    pub fn new(platform: Platform, spacing: Duration, retry: RetryPolicy) -> Self {
        Self::with_bound(platform, spacing, retry, CHANNEL_QUEUE_BOUND)
    }

    /// Like [`Outbox::new`] with `bound` sends per channel queue instead of
    /// [`CHANNEL_QUEUE_BOUND`].
    pub fn with_bound(
        platform: Platform,
        spacing: Duration,
        retry: RetryPolicy,
        bound: usize,
    ) -> Self {
        Self {
            platform,
            spacing,
            retry,
            bound: bound.max(1),
            queues: Mutex::new(HashMap::new()),
            peak: None,
        }
    }

    /// Reports the longest channel queue to `gauge` (a metric).
    pub fn reporting_peak(mut self, gauge: Gauge) -> Self {
        self.peak = Some(gauge);
        self
    }

    fn queue(&self, channel: &str) -> Arc<Queue> {
        lock(&self.queues)
            .entry(channel.to_owned())
            .or_insert_with(|| Arc::new(Queue::new(self.bound)))
            .clone()
    }

    /// Sends waiting in or under way from `channel`'s queue; never more than the bound.
    pub fn queued(&self, channel: &str) -> usize {
        lock(&self.queues)
            .get(channel)
            .map_or(0, |queue| queue.len())
    }

    /// The longest channel queue right now.
    pub fn longest_queue(&self) -> usize {
        lock(&self.queues)
            .values()
            .map(|queue| queue.len())
            .max()
            .unwrap_or(0)
    }

    /// Waits for `channel`'s turn in `lane`, then runs `attempt` until it succeeds, is
    /// refused, or retrying is no longer worth it.
    pub async fn send<T, F, Fut>(
        &self,
        channel: &str,
        lane: Lane,
        what: &str,
        attempt: F,
    ) -> Result<T, ChatError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SendFailure>>,
    {
        self.send_unless(channel, lane, what, || None, attempt)
            .await
    }

    /// Like [`Outbox::send`], but when the turn comes `skip` may say the send is no longer
    /// needed (a newer edit of the same message already went out): then nothing is sent and
    /// the channel's next send does not wait for the rate.
    pub async fn send_unless<T, S, F, Fut>(
        &self,
        channel: &str,
        lane: Lane,
        what: &str,
        skip: S,
        mut attempt: F,
    ) -> Result<T, ChatError>
    where
        S: FnOnce() -> Option<T>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SendFailure>>,
    {
        let queue = self.queue(channel);
        // A full queue slows the caller down; nothing that goes through a channel is
        // dropped (see the module doc).
        let Ok(_place) = queue.room.clone().acquire_owned().await else {
            return Err(self.unavailable(format!("{what}: the channel queue is closed")));
        };
        raise(self.peak.as_ref(), queue.len());
        let turn = queue.wait_turn(lane).await;
        if let Some(done) = skip() {
            return Ok(done);
        }
        tokio::time::sleep_until(turn.not_before).await;
        let started = Instant::now();
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.first_pause)
            .with_max_delay(self.retry.max_pause)
            .with_max_times(self.retry.transient_attempts.saturating_sub(1))
            .with_jitter()
            .build();
        let result = loop {
            let pause = match attempt().await {
                Ok(value) => break Ok(value),
                Err(SendFailure::Refused(error)) => break Err(error),
                Err(SendFailure::RateLimited { retry_after }) => {
                    let pause = retry_after.unwrap_or(self.retry.default_retry_after);
                    if started.elapsed() + pause > self.retry.rate_limited_for {
                        break Err(self.unavailable(format!(
                            "{what}: still rate limited after {:?}",
                            started.elapsed()
                        )));
                    }
                    tracing::info!(platform = %self.platform, channel, what, ?pause, "rate limited; waiting before retrying");
                    pause
                }
                Err(SendFailure::Transient(reason)) => match backoff.next() {
                    Some(pause) => {
                        tracing::debug!(platform = %self.platform, what, %reason, ?pause, "send failed; retrying");
                        pause
                    }
                    None => break Err(self.unavailable(format!("{what}: {reason}"))),
                },
            };
            tokio::time::sleep(pause).await;
        };
        turn.finish(Instant::now() + self.spacing);
        result
    }

    fn unavailable(&self, reason: String) -> ChatError {
        ChatError::Unavailable {
            platform: self.platform,
            reason,
        }
    }
}

/// One channel's turn-taking: who waits in which lane, whether a send is under way, and
/// when the next one may start.
struct Queue {
    state: Mutex<QueueState>,
    changed: Notify,
    /// One permit per place in the queue.
    room: Arc<Semaphore>,
    bound: usize,
}

#[derive(Default)]
struct QueueState {
    busy: bool,
    next_free: Option<Instant>,
    next_ticket: u64,
    interactive: VecDeque<u64>,
    alerts: VecDeque<u64>,
}

impl QueueState {
    fn lane(&mut self, lane: Lane) -> &mut VecDeque<u64> {
        match lane {
            Lane::Interactive => &mut self.interactive,
            Lane::Alerts => &mut self.alerts,
        }
    }

    /// The next send is the oldest interactive one, else the oldest alert.
    fn is_next(&self, lane: Lane, ticket: u64) -> bool {
        !self.busy
            && match lane {
                Lane::Interactive => self.interactive.front() == Some(&ticket),
                Lane::Alerts => self.interactive.is_empty() && self.alerts.front() == Some(&ticket),
            }
    }
}

impl Queue {
    fn new(bound: usize) -> Self {
        Self {
            state: Mutex::new(QueueState::default()),
            changed: Notify::new(),
            room: Arc::new(Semaphore::new(bound)),
            bound,
        }
    }

    fn len(&self) -> usize {
        self.bound.saturating_sub(self.room.available_permits())
    }

    async fn wait_turn(self: &Arc<Self>, lane: Lane) -> Turn {
        let ticket = {
            let mut state = lock(&self.state);
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.lane(lane).push_back(ticket);
            ticket
        };
        // Leaves the line if the caller gives up waiting (its future is dropped).
        let mut waiting = Waiting {
            queue: self.clone(),
            lane,
            ticket,
            served: false,
        };
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = lock(&self.state);
                if state.is_next(lane, ticket) {
                    state.lane(lane).pop_front();
                    state.busy = true;
                    waiting.served = true;
                    let now = Instant::now();
                    return Turn {
                        queue: self.clone(),
                        not_before: state.next_free.map_or(now, |free| free.max(now)),
                        finished: false,
                    };
                }
            }
            changed.await;
        }
    }
}

struct Waiting {
    queue: Arc<Queue>,
    lane: Lane,
    ticket: u64,
    served: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.served {
            let mut state = lock(&self.queue.state);
            let ticket = self.ticket;
            state.lane(self.lane).retain(|t| *t != ticket);
            drop(state);
            self.queue.changed.notify_waiters();
        }
    }
}

/// The channel is ours until this is finished or dropped.
struct Turn {
    queue: Arc<Queue>,
    not_before: Instant,
    finished: bool,
}

impl Turn {
    fn finish(mut self, next_free: Instant) {
        self.release(Some(next_free));
        self.finished = true;
    }

    fn release(&self, next_free: Option<Instant>) {
        let mut state = lock(&self.queue.state);
        state.busy = false;
        if let Some(next_free) = next_free {
            state.next_free = Some(next_free);
        }
        drop(state);
        self.queue.changed.notify_waiters();
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.finished {
            self.release(None);
        }
    }
}

/// At most this many private replies wait or are under way on one platform; more are
/// dropped at once (see the module doc).
pub const PRIVATE_REPLIES_BOUND: usize = 128;

/// A private reply that cannot go out within this long is dropped: the person has moved
/// on, and a late "nothing was done" only confuses.
pub const PRIVATE_REPLY_TTL: Duration = Duration::from_secs(30);

/// How a private reply's method is limited by the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivatePace {
    /// Counted against the lane's per-minute budget (Slack's `chat.postEphemeral`: Web
    /// API Tier 4, 100+ calls per minute per workspace).
    Budgeted,
    /// Not counted (Slack's `response_url`: up to five uses within 30 minutes of the one
    /// interaction it came with, no workspace-wide budget).
    PerInteraction,
}

/// Why a private reply did not go out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivateError {
    /// Left out by the lane's policy; trying another way would be left out too.
    #[error("private reply dropped: {0}")]
    Dropped(&'static str),
    #[error(transparent)]
    Failed(#[from] ChatError),
}

/// Private replies of one platform: bounded, paced by their own limit, never behind a
/// channel's queue, dropped when full or late.
pub struct PrivateLane {
    platform: Platform,
    places: Arc<Semaphore>,
    bound: usize,
    ttl: Duration,
    per_minute: u32,
    budget: Mutex<Budget>,
    retry: RetryPolicy,
    dropped: AtomicU64,
    peak: Option<Gauge>,
    dropped_metric: Option<Counter>,
}

/// A token bucket that hands out future send times: `tokens` goes negative while sends
/// are booked ahead of the refill.
struct Budget {
    tokens: f64,
    refilled: Instant,
}

impl PrivateLane {
    /// `per_minute` sends of [`PrivatePace::Budgeted`] methods (bursts up to that many),
    /// at most `bound` replies at once, each dropped when still not sent after `ttl`.
    pub fn new(
        platform: Platform,
        per_minute: u32,
        bound: usize,
        ttl: Duration,
        retry: RetryPolicy,
    ) -> Self {
        let per_minute = per_minute.max(1);
        Self {
            platform,
            places: Arc::new(Semaphore::new(bound.max(1))),
            bound: bound.max(1),
            ttl,
            per_minute,
            budget: Mutex::new(Budget {
                tokens: f64::from(per_minute),
                refilled: Instant::now(),
            }),
            retry,
            dropped: AtomicU64::new(0),
            peak: None,
            dropped_metric: None,
        }
    }

    /// Reports the most replies in flight to `peak` and each drop to `dropped` (metrics).
    pub fn reporting(mut self, peak: Gauge, dropped: Counter) -> Self {
        self.peak = Some(peak);
        self.dropped_metric = Some(dropped);
        self
    }

    /// Private replies waiting or under way; never more than the bound.
    pub fn in_flight(&self) -> usize {
        self.bound.saturating_sub(self.places.available_permits())
    }

    /// Private replies dropped since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Books the next send time within the budget, or `None` when it would come after
    /// `deadline` (then nothing is booked).
    fn book(&self, deadline: Instant) -> Option<Instant> {
        let mut budget = lock(&self.budget);
        let now = Instant::now();
        let per_second = f64::from(self.per_minute) / 60.0;
        let refill = (now - budget.refilled).as_secs_f64() * per_second;
        budget.tokens = (budget.tokens + refill).min(f64::from(self.per_minute));
        budget.refilled = now;
        let at = if budget.tokens >= 1.0 {
            now
        } else {
            now + Duration::from_secs_f64((1.0 - budget.tokens) / per_second)
        };
        if at > deadline {
            return None;
        }
        budget.tokens -= 1.0;
        Some(at)
    }

    fn drop_reply(&self, what: &str, why: &'static str) -> PrivateError {
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(metric) = &self.dropped_metric {
            metric.inc();
        }
        // One line per thousand, not one per press of a flood.
        if dropped == 1 || dropped.is_multiple_of(1000) {
            tracing::warn!(platform = %self.platform, what, why, dropped, "dropping private replies");
        } else {
            tracing::debug!(platform = %self.platform, what, why, "dropped a private reply");
        }
        PrivateError::Dropped(why)
    }

    /// Sends one private reply: a place in the lane now or dropped, then the budget, then
    /// `attempt` until it succeeds, is refused, or the reply's time is up.
    pub async fn send<T, F, Fut>(
        &self,
        what: &str,
        pace: PrivatePace,
        mut attempt: F,
    ) -> Result<T, PrivateError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SendFailure>>,
    {
        let deadline = Instant::now() + self.ttl;
        let Ok(_place) = self.places.clone().try_acquire_owned() else {
            return Err(self.drop_reply(what, "too many private replies waiting"));
        };
        raise(self.peak.as_ref(), self.in_flight());
        if pace == PrivatePace::Budgeted {
            match self.book(deadline) {
                Some(at) => tokio::time::sleep_until(at).await,
                None => return Err(self.drop_reply(what, "over the method's rate limit")),
            }
        }
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.first_pause)
            .with_max_delay(self.retry.max_pause)
            .with_max_times(self.retry.transient_attempts.saturating_sub(1))
            .with_jitter()
            .build();
        loop {
            let pause = match attempt().await {
                Ok(value) => return Ok(value),
                Err(SendFailure::Refused(error)) => return Err(PrivateError::Failed(error)),
                Err(SendFailure::RateLimited { retry_after }) => {
                    retry_after.unwrap_or(self.retry.default_retry_after)
                }
                Err(SendFailure::Transient(reason)) => match backoff.next() {
                    Some(pause) => pause,
                    None => {
                        return Err(PrivateError::Failed(ChatError::Unavailable {
                            platform: self.platform,
                            reason: format!("{what}: {reason}"),
                        }));
                    }
                },
            };
            if Instant::now() + pause > deadline {
                return Err(self.drop_reply(what, "not sent within its time to live"));
            }
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests;
