//! Load benchmark of Slack's HTTP mode with real signatures: `cargo bench --bench
//! slack_http`.
//!
//! In one run it starts
//! - breakwater itself (the release binary, as a child process so its memory is its own)
//!   in `slack.mode = "http"` on SQLite, its Web API client pointed at a minimal fake
//!   Slack on loopback, and
//! - a bare axum server that does nothing but verify the same signature with the same
//!   function — the practical ceiling of this machine for a signed request,
//!
//! then drives `POST /slack/events` (a message in an alert channel: claimed in the store
//! after the acknowledgement) and `POST /slack/interactions` (a link-button click) at
//! concurrency 1 and 32, and prints requests/s and p50/p99 latency next to the baseline,
//! breakwater's RSS idle and after the run, and its start-to-ready time.

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
/// How long each measured phase runs.
const PHASE: Duration = Duration::from_secs(5);
const WARM_UP: Duration = Duration::from_secs(1);

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
    println!();
    println!(
        "{:<28} {:>5} {:>12} {:>10} {:>10}",
        "path", "conc", "requests/s", "p50 µs", "p99 µs"
    );
    for path in ["/slack/events", "/slack/interactions"] {
        for concurrency in [1, 32] {
            for (name, base) in [
                ("baseline (HMAC only)", format!("http://{baseline}")),
                ("breakwater", bot_url.clone()),
            ] {
                let result = drive(&client, &base, path, concurrency).await;
                println!(
                    "{:<28} {:>5} {:>12.0} {:>10} {:>10}",
                    format!("{name} {path}"),
                    concurrency,
                    result.per_second,
                    result.p50.as_micros(),
                    result.p99.as_micros()
                );
            }
        }
    }
    // Let the work started after the acknowledgements finish before measuring memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_rss = rss_kib(pid);
    println!();
    println!("RSS after the run: {:.1} MiB", after_rss as f64 / 1024.0);
    let _ = child.start_kill();
    let _ = child.wait().await;
}

struct Measured {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// `concurrency` workers send signed requests back to back for [`PHASE`] after a warm-up.
async fn drive(client: &reqwest::Client, base: &str, path: &str, concurrency: usize) -> Measured {
    let url = Arc::new(format!("{base}{path}"));
    let path = path.to_owned();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (client, url, path) = (client.clone(), url.clone(), path.clone());
            tokio::spawn(async move {
                let begin = Instant::now();
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while begin.elapsed() < WARM_UP + PHASE {
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
                    assert_eq!(response.status(), 200, "{url}");
                    let _ = response.bytes().await;
                    if begin.elapsed() > WARM_UP {
                        latencies.push(sent.elapsed());
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Measured {
        per_second: latencies.len() as f64 / PHASE.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// A person's message in the alert channel (unique `event_id`), or a link-button click.
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
            "response_url": "http://127.0.0.1:9/response",
            "actions": [{"action_id": "link:0", "block_id": "b", "type": "button", "action_ts": "1741944100.000001"}],
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
    Router::new().route("/api/{method}", post(method).get(method))
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
