//! Flood benchmark of Slack's HTTP mode with real signatures: `cargo bench --bench
//! slack_http` (`BENCH_PHASE_SECS` changes the 10 s per phase).
//!
//! In one run it starts
//! - breakwater itself (the release binary, as a child process so its memory is its own)
//!   in `slack.mode = "http"` on SQLite, its Web API client pointed at a minimal fake
//!   Slack on loopback, and
//! - a bare axum server that does nothing but verify the same signature with the same
//!   function — the practical ceiling of this machine for a signed request,
//!
//! then floods each at concurrency 32 for a phase each with `POST /slack/events` (a
//! message in an alert channel: claimed in the store after the acknowledgement) and `POST
//! /slack/interactions` (presses of a button that is not breakwater's, each answered
//! privately), and prints requests/s, p50/p99 of the acknowledgement and how many were
//! refused with 503 next to the baseline; `/healthz` latency sampled throughout the
//! flood; breakwater's RSS idle, right after the floods and once its queues drained; and
//! the queue peaks and drops from `/metrics`.
//!
//! Targets (issue 10): RSS after the flood ≤ 40 MB, p99 at c=32 ≤ 3× the baseline's,
//! `/healthz` within 50 ms throughout on a quiet machine.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

const SECRET: &str = "bench-signing-secret-0123456789";
const CHANNEL: &str = "C0BENCHALERTS";
/// How long each measured phase runs unless `BENCH_PHASE_SECS` says otherwise.
const PHASE: Duration = Duration::from_secs(10);
const WARM_UP: Duration = Duration::from_secs(1);
const CONCURRENCY: usize = 32;

fn phase() -> Duration {
    std::env::var("BENCH_PHASE_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .map_or(PHASE, Duration::from_secs)
}

fn main() {
    breakwater::app::install_tls_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let fake = serve(fake_slack()).await;
    let _ = FAKE_ADDRESS.set(fake);
    let baseline = serve(baseline()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = dir.path().join("breakwater.toml");
    std::fs::write(dir.path().join("bot_token"), "xoxb-bench").expect("write");
    std::fs::write(dir.path().join("signing_secret"), SECRET).expect("write");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"

[database]
url = "sqlite://{dir}/breakwater.db"

[slack]
mode = "http"
bot_token = {{ file = "{dir}/bot_token" }}
signing_secret = {{ file = "{dir}/signing_secret" }}
api_url = "http://{fake}/api/"
alert_channels = ["{CHANNEL}"]

[[services]]
name = "checkout"
environments = ["production"]
backend = "simulated"

[backends.simulated]
kind = "simulated"

[policy]
rollback_allowed = ["slack:U0ALICE"]
"#,
            dir = dir.path().display(),
        ),
    )
    .expect("write config");

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let bot_url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start breakwater");
    let pid = child.id().expect("pid");
    loop {
        let ready = client
            .get(format!("{bot_url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "breakwater never became ready"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start_to_ready = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_kib(pid);

    println!(
        "start to ready: {} ms (SQLite, http mode)",
        start_to_ready.as_millis()
    );
    println!("RSS idle: {:.1} MiB", idle_rss as f64 / 1024.0);
    println!(
        "floods of {} s at concurrency {CONCURRENCY}; the machine's other load competes for its 2 cores",
        phase().as_secs()
    );
    println!();
    println!(
        "{:<36} {:>10} {:>9} {:>9} {:>9} {:>13}",
        "path", "requests/s", "p50 µs", "p99 µs", "503s", "/healthz max"
    );
    for path in ["/slack/events", "/slack/interactions"] {
        for (name, base) in [
            ("baseline (HMAC only)", format!("http://{baseline}")),
            ("breakwater", bot_url.clone()),
        ] {
            let health = HealthSampler::start(&base, name == "breakwater");
            let result = drive(&client, &base, path, CONCURRENCY).await;
            let health = health.stop().await;
            println!(
                "{:<36} {:>10.0} {:>9} {:>9} {:>9} {:>13}",
                format!("{name} {path}"),
                result.per_second,
                result.p50.as_micros(),
                result.p99.as_micros(),
                result.refused,
                health.map_or_else(String::new, |h| format!(
                    "{} ms (p99 {} ms, {} samples)",
                    h.max.as_millis(),
                    h.p99.as_millis(),
                    h.samples
                )),
            );
        }
    }
    let flooded_rss = rss_kib(pid);
    println!();
    println!(
        "RSS right after the floods: {:.1} MiB",
        flooded_rss as f64 / 1024.0
    );
    // Private replies live at most 30 s: let them drain or expire.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let after_rss = rss_kib(pid);
    println!(
        "RSS once the queues drained: {:.1} MiB",
        after_rss as f64 / 1024.0
    );
    let metrics = client
        .get(format!("{bot_url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    for line in metrics.lines().filter(|l| {
        l.starts_with("breakwater_chat_queue_peak") || l.starts_with("breakwater_chat_dropped")
    }) {
        println!("{line}");
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// `/healthz` asked every 20 ms while a flood runs.
struct HealthSampler {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<Vec<Duration>>>,
}

struct Health {
    max: Duration,
    p99: Duration,
    samples: usize,
}

impl HealthSampler {
    fn start(base: &str, enabled: bool) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let url = format!("{base}/healthz");
        let task = enabled.then(|| {
            tokio::spawn(async move {
                // A client of its own: the flood's pool must not queue the probe.
                let probe = reqwest::Client::new();
                let mut samples = Vec::new();
                loop {
                    let sent = Instant::now();
                    let ok = probe
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200);
                    samples.push(if ok { sent.elapsed() } else { Duration::MAX });
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(20)) => {}
                        _ = stopped.changed() => return samples,
                    }
                }
            })
        });
        Self { stop, task }
    }

    async fn stop(self) -> Option<Health> {
        let _ = self.stop.send(true);
        let mut samples = self.task?.await.ok()?;
        samples.sort();
        let max = *samples.last()?;
        let p99 = samples[((samples.len() as f64 * 0.99) as usize).min(samples.len() - 1)];
        Some(Health {
            max,
            p99,
            samples: samples.len(),
        })
    }
}

struct Measured {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    /// Answered 503 + Retry-After (a bounded set was full).
    refused: usize,
}

/// `concurrency` workers send signed requests back to back for the phase after a warm-up.
async fn drive(client: &reqwest::Client, base: &str, path: &str, concurrency: usize) -> Measured {
    let url = Arc::new(format!("{base}{path}"));
    let path = path.to_owned();
    let phase = phase();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (client, url, path) = (client.clone(), url.clone(), path.clone());
            tokio::spawn(async move {
                let begin = Instant::now();
                let mut latencies = Vec::new();
                let mut refused = 0;
                let mut n = 0u64;
                while begin.elapsed() < WARM_UP + phase {
                    n += 1;
                    let (content_type, body) = request_body(&path, worker, n);
                    let timestamp = unix_now().to_string();
                    let signature =
                        breakwater::chat::slack::sign(SECRET.as_bytes(), &timestamp, &body);
                    let sent = Instant::now();
                    let response = client
                        .post(url.as_str())
                        .header("content-type", content_type)
                        .header("x-slack-request-timestamp", timestamp)
                        .header("x-slack-signature", signature)
                        .body(body)
                        .send()
                        .await
                        .expect("request");
                    let status = response.status();
                    assert!(status == 200 || status == 503, "{url}: {status}");
                    let _ = response.bytes().await;
                    if begin.elapsed() > WARM_UP {
                        latencies.push(sent.elapsed());
                        refused += usize::from(status == 503);
                    }
                }
                (latencies, refused)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut refused = 0;
    for worker in workers {
        let (worker_latencies, worker_refused) = worker.await.expect("worker");
        latencies.extend(worker_latencies);
        refused += worker_refused;
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Measured {
        per_second: latencies.len() as f64 / phase.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        refused,
    }
}

/// A person's message in the alert channel (unique `event_id`), or a press of a button
/// that is not breakwater's (answered privately).
fn request_body(path: &str, worker: usize, n: u64) -> (&'static str, Vec<u8>) {
    if path == "/slack/events" {
        let body = json!({
            "token": "unused", "team_id": "T0BENCH", "api_app_id": "A0BENCH",
            "type": "event_callback", "event_id": format!("Ev{worker}x{n}"), "event_time": unix_now(),
            "event": {
                "type": "message", "channel": CHANNEL, "user": "U0ALICE",
                "text": "standup in 5 minutes", "ts": format!("{}.{:06}", unix_now(), n % 1_000_000),
            },
        });
        ("application/json", serde_json::to_vec(&body).expect("json"))
    } else {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": "T0BENCH"},
            "trigger_id": format!("{worker}.{n}.bench"),
            "channel": {"id": CHANNEL, "name": "alerts"},
            "container": {"type": "message", "message_ts": "1741944060.000100", "channel_id": CHANNEL},
            "message": {"type": "message", "ts": "1741944060.000100", "text": "summary"},
            "response_url": format!("http://{}/response/{worker}.{n}", fake_address()),
            "actions": [{"action_id": "poll-vote-yes", "value": "yes", "block_id": "b", "type": "button", "action_ts": "1741944100.000001"}],
        });
        let body = format!(
            "payload={}",
            url::form_urlencoded::byte_serialize(payload.to_string().as_bytes())
                .collect::<String>()
        );
        ("application/x-www-form-urlencoded", body.into_bytes())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The floor: verify the signature with breakwater's own function and answer 200.
fn baseline() -> Router {
    async fn verified(headers: HeaderMap, body: Bytes) -> StatusCode {
        match breakwater::chat::slack::verify_signature(
            SECRET.as_bytes(),
            &headers,
            &body,
            SystemTime::now(),
        ) {
            Ok(()) => StatusCode::OK,
            Err(_) => StatusCode::UNAUTHORIZED,
        }
    }
    Router::new()
        .route("/slack/events", post(verified))
        .route("/slack/interactions", post(verified))
}

/// Just enough Slack Web API for breakwater to start and answer: `auth.test` and `ok`
/// for everything else.
fn fake_slack() -> Router {
    async fn method(Path(method): Path<String>) -> impl IntoResponse {
        let body: Value = match method.as_str() {
            "auth.test" => json!({
                "ok": true, "url": "https://bench.slack.com/", "team": "Bench", "user": "breakwater",
                "team_id": "T0BENCH", "user_id": "U0BREAKWATER", "bot_id": "B0BREAKWATER",
            }),
            "users.info" => {
                json!({"ok": true, "user": {"id": "U0ALICE", "name": "alice", "profile": {"display_name": "Alice"}}})
            }
            _ => {
                json!({"ok": true, "channel": CHANNEL, "ts": "1741944060.000200", "message": {"ts": "1741944060.000200", "text": ""}})
            }
        };
        axum::Json(body)
    }
    async fn respond() -> &'static str {
        "ok"
    }
    Router::new()
        .route("/api/{method}", post(method).get(method))
        .route("/response/{id}", post(respond))
}

/// Where the fake Slack listens, once started.
static FAKE_ADDRESS: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();

fn fake_address() -> SocketAddr {
    FAKE_ADDRESS
        .get()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9)))
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or_default()
}
