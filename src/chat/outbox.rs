//! One outgoing queue per channel, shared by every platform that limits how fast a bot may
//! post in a channel (Slack: about one message per second per channel).
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

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{ChatError, Lane};
use crate::core::message::Platform;

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

/// The per-channel queues of one platform.
pub struct Outbox {
    platform: Platform,
    spacing: Duration,
    retry: RetryPolicy,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Outbox {
    /// `spacing` is the least time between two sends to one channel.
    pub fn new(platform: Platform, spacing: Duration, retry: RetryPolicy) -> Self {
        Self {
            platform,
            spacing,
            retry,
            queues: Mutex::new(HashMap::new()),
        }
    }

    fn queue(&self, channel: &str) -> Arc<Queue> {
        lock(&self.queues)
            .entry(channel.to_owned())
            .or_insert_with(|| Arc::new(Queue::default()))
            .clone()
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
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    changed: Notify,
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Real time, scaled down: 50 ms between sends, millisecond retry pauses.
    const SPACING: Duration = Duration::from_millis(50);

    fn outbox() -> Arc<Outbox> {
        Arc::new(Outbox::new(
            Platform::Slack,
            SPACING,
            RetryPolicy {
                first_pause: Duration::from_millis(1),
                max_pause: Duration::from_millis(5),
                ..RetryPolicy::default()
            },
        ))
    }

    /// Records the order sends went out in.
    #[derive(Default)]
    struct Sent(Mutex<Vec<(String, Instant)>>);

    impl Sent {
        fn record(&self, what: &str) {
            lock(&self.0).push((what.to_owned(), Instant::now()));
        }

        fn names(&self) -> Vec<String> {
            lock(&self.0).iter().map(|(n, _)| n.clone()).collect()
        }

        fn times(&self) -> Vec<Instant> {
            lock(&self.0).iter().map(|(_, t)| *t).collect()
        }
    }

    fn spawn_send(
        outbox: &Arc<Outbox>,
        sent: &Arc<Sent>,
        channel: &'static str,
        lane: Lane,
        name: &'static str,
    ) -> tokio::task::JoinHandle<Result<(), ChatError>> {
        let (outbox, sent) = (outbox.clone(), sent.clone());
        tokio::spawn(async move {
            outbox
                .send(channel, lane, name, || {
                    sent.record(name);
                    async { Ok(()) }
                })
                .await
        })
    }

    #[tokio::test]
    async fn sends_to_one_channel_are_spaced_by_the_platform_rate() {
        let (outbox, sent) = (outbox(), Arc::new(Sent::default()));
        let sends: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|name| spawn_send(&outbox, &sent, "C1", Lane::Alerts, name))
            .collect();
        for send in sends {
            send.await.expect("joined").expect("sent");
        }
        let times = sent.times();
        assert_eq!(times.len(), 3);
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= SPACING, "{times:?}");
        }
    }

    #[tokio::test]
    async fn channels_do_not_wait_for_each_other() {
        let (outbox, sent) = (outbox(), Arc::new(Sent::default()));
        let first = spawn_send(&outbox, &sent, "C1", Lane::Alerts, "one");
        let second = spawn_send(&outbox, &sent, "C2", Lane::Alerts, "two");
        first.await.expect("joined").expect("sent");
        second.await.expect("joined").expect("sent");
        let times = sent.times();
        let apart = if times[1] > times[0] {
            times[1] - times[0]
        } else {
            times[0] - times[1]
        };
        assert!(apart < SPACING, "{times:?}");
    }

    #[tokio::test]
    async fn an_interactive_send_goes_ahead_of_queued_alerts() {
        let (outbox, sent) = (outbox(), Arc::new(Sent::default()));
        let mut sends = Vec::new();
        for name in ["alert-1", "alert-2", "alert-3", "alert-4"] {
            sends.push(spawn_send(&outbox, &sent, "C1", Lane::Alerts, name));
            tokio::task::yield_now().await;
        }
        sends.push(spawn_send(
            &outbox,
            &sent,
            "C1",
            Lane::Interactive,
            "progress",
        ));
        for send in sends {
            send.await.expect("joined").expect("sent");
        }
        let names = sent.names();
        let position = names.iter().position(|n| n == "progress");
        assert!(
            position.is_some_and(|p| p <= 1),
            "the interactive send waits at most for the send under way: {names:?}"
        );
    }

    #[tokio::test]
    async fn a_rate_limited_send_waits_retry_after_and_is_not_lost() {
        let outbox = outbox();
        let attempts = AtomicUsize::new(0);
        let started = Instant::now();
        let result = outbox
            .send("C1", Lane::Alerts, "post", || {
                let n = attempts.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        Err(SendFailure::RateLimited {
                            retry_after: Some(Duration::from_millis(30)),
                        })
                    } else {
                        Ok("posted")
                    }
                }
            })
            .await;
        assert_eq!(result, Ok("posted"));
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() >= Duration::from_millis(60));
    }

    #[tokio::test]
    async fn a_refusal_is_returned_without_retrying() {
        let outbox = outbox();
        let attempts = AtomicUsize::new(0);
        let refusal = ChatError::Refused {
            platform: Platform::Slack,
            reason: "not_in_channel".into(),
        };
        let result: Result<(), _> = outbox
            .send("C1", Lane::Alerts, "post", || {
                attempts.fetch_add(1, Ordering::SeqCst);
                let refusal = refusal.clone();
                async move { Err(SendFailure::Refused(refusal)) }
            })
            .await;
        assert_eq!(result, Err(refusal));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn transient_failures_are_retried_then_reported_unavailable() {
        let outbox = outbox();
        let attempts = AtomicUsize::new(0);
        let result: Result<(), _> = outbox
            .send("C1", Lane::Alerts, "post", || {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err(SendFailure::Transient("503".into())) }
            })
            .await;
        assert!(matches!(result, Err(ChatError::Unavailable { .. })));
        assert_eq!(attempts.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_waiting_leaves_the_line() {
        let (outbox, sent) = (outbox(), Arc::new(Sent::default()));
        spawn_send(&outbox, &sent, "C1", Lane::Alerts, "first")
            .await
            .expect("joined")
            .expect("sent");
        let impatient = tokio::time::timeout(
            Duration::from_millis(10),
            outbox.send("C1", Lane::Alerts, "impatient", || async { Ok(()) }),
        )
        .await;
        assert!(impatient.is_err(), "still waiting for the channel's rate");
        spawn_send(&outbox, &sent, "C1", Lane::Alerts, "next")
            .await
            .expect("joined")
            .expect("the line moved on");
        assert_eq!(sent.names(), ["first", "next"]);
    }
}
