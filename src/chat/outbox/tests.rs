//! The outbox's pacing, retries and time-to-live checked against a fake lane in real (scaled-down) time.

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

#[tokio::test]
async fn a_full_channel_queue_makes_senders_wait_and_drops_nothing() {
    let outbox = Arc::new(Outbox::with_bound(
        Platform::Slack,
        Duration::from_millis(1),
        RetryPolicy::default(),
        3,
    ));
    let sent = Arc::new(Sent::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut sends = Vec::new();
    for i in 0..10 {
        let (outbox, sent, gate) = (outbox.clone(), sent.clone(), gate.clone());
        sends.push(tokio::spawn(async move {
            outbox
                .send("C1", Lane::Alerts, "summary", || {
                    let (sent, gate) = (sent.clone(), gate.clone());
                    async move {
                        // Slack is slow: each send waits for the test to let it through.
                        let _ = gate.acquire().await.map(|p| p.forget());
                        sent.record(&format!("summary-{i}"));
                        Ok(())
                    }
                })
                .await
        }));
    }
    // Every sender has either joined the queue or is waiting for room.
    while outbox.queued("C1") < 3 {
        tokio::task::yield_now().await;
    }
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(outbox.queued("C1"), 3, "the queue stays within its bound");
    gate.add_permits(10);
    for send in sends {
        send.await.expect("joined").expect("sent");
    }
    assert_eq!(sent.names().len(), 10, "nothing was dropped");
    assert_eq!(outbox.queued("C1"), 0);
}

fn lane(per_minute: u32, bound: usize, ttl: Duration) -> Arc<PrivateLane> {
    Arc::new(PrivateLane::new(
        Platform::Slack,
        per_minute,
        bound,
        ttl,
        RetryPolicy {
            first_pause: Duration::from_millis(1),
            max_pause: Duration::from_millis(5),
            ..RetryPolicy::default()
        },
    ))
}

#[tokio::test]
async fn a_private_reply_goes_out_at_once_when_the_lane_is_quiet() {
    let lane = lane(100, 4, Duration::from_secs(30));
    let result = lane
        .send("chat.postEphemeral", PrivatePace::Budgeted, || async {
            Ok("sent")
        })
        .await;
    assert_eq!(result, Ok("sent"));
    assert_eq!(lane.dropped(), 0);
    assert_eq!(lane.in_flight(), 0);
}

#[tokio::test]
async fn a_flood_of_private_replies_stays_within_the_bound_and_the_rest_are_dropped() {
    let lane = lane(100, 8, Duration::from_secs(30));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut replies = Vec::new();
    for _ in 0..1000 {
        let (lane, gate) = (lane.clone(), gate.clone());
        replies.push(tokio::spawn(async move {
            lane.send("response_url", PrivatePace::PerInteraction, || {
                let gate = gate.clone();
                async move {
                    let _ = gate.acquire().await.map(|p| p.forget());
                    Ok(())
                }
            })
            .await
        }));
    }
    while lane.dropped() < 992 {
        tokio::task::yield_now().await;
    }
    assert_eq!(lane.in_flight(), 8);
    gate.add_permits(1000);
    let mut delivered = 0;
    for reply in replies {
        match reply.await.expect("joined") {
            Ok(()) => delivered += 1,
            Err(error) => assert!(matches!(error, PrivateError::Dropped(_)), "{error}"),
        }
    }
    assert_eq!(delivered, 8);
    assert_eq!(lane.in_flight(), 0);
}

#[tokio::test]
async fn budgeted_replies_beyond_the_rate_are_dropped_once_they_would_be_late() {
    // 60 a minute: a burst of 60, then one a second, which a 50 ms lifetime never
    // reaches.
    let lane = lane(60, 1000, Duration::from_millis(50));
    let mut replies = Vec::new();
    for _ in 0..100 {
        let lane = lane.clone();
        replies.push(tokio::spawn(async move {
            lane.send("chat.postEphemeral", PrivatePace::Budgeted, || async {
                Ok(())
            })
            .await
        }));
    }
    let mut delivered = 0;
    for reply in replies {
        if reply.await.expect("joined").is_ok() {
            delivered += 1;
        }
    }
    assert_eq!(delivered, 60);
    assert_eq!(lane.dropped(), 40);
}

#[tokio::test]
async fn a_private_reply_rate_limited_past_its_lifetime_is_dropped() {
    let lane = lane(100, 4, Duration::from_millis(50));
    let result: Result<(), _> = lane
        .send("chat.postEphemeral", PrivatePace::Budgeted, || async {
            Err(SendFailure::RateLimited {
                retry_after: Some(Duration::from_secs(3)),
            })
        })
        .await;
    assert!(
        matches!(result, Err(PrivateError::Dropped(_))),
        "{result:?}"
    );
    assert_eq!(lane.dropped(), 1);
}
