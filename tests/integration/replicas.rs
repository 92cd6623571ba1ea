//! Several processes of the real binary on one PostgreSQL database, as on Kubernetes:
//! they start at once on a fresh schema (one migrates, the others wait), exactly one of
//! them holds the Discord gateway session and another takes it over after the holder is
//! killed with SIGKILL, and confirms pressed on different replicas at once run one
//! rollback. (A rollback whose runner is killed mid-way is adopted by another replica:
//! `crash.rs`.) Skips without `BREAKWATER_TEST_POSTGRES_URL`.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use breakwater::core::rollback::PlanId;
use sqlx::Connection;

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

use crate::support::fake_discord::{
    ALERT_CHANNEL, APPLICATION_ID, DiscordUser, FakeDiscord, GUILD_ID, ONCALL_ROLE,
    apply_callback_to, text_of,
};
use crate::support::{
    API_TOKEN, BACKEND_SECRET, Behaviour, Receiver, WEBHOOK_TOKEN, alertmanager, eventually,
    eventually_within,
};

const TOKEN: &str = "test-discord-token";
/// A takeover waits for the gateway lease (10 s) to expire and a standby's next try (3 s).
const TAKEOVER_PATIENCE: Duration = Duration::from_secs(40);

/// A running `breakwater serve`, killed (SIGKILL) when dropped.
struct Replica {
    child: Child,
    address: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Starts `serve` and waits for its "breakwater is serving" line (JSON logs) to learn
    /// the address it bound.
    async fn start(config: &Path) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_breakwater"))
            .args(["serve", "--config"])
            .arg(config)
            .env("BREAKWATER_LOG_FORMAT", "json")
            .env("RUST_LOG", "breakwater=info,warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start breakwater serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = tokio::sync::oneshot::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut address_tx = Some(address_tx);
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if line.contains("breakwater is serving")
                        && let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line)
                        && let Some(address) = entry["fields"]["address"].as_str()
                        && let Some(tx) = address_tx.take()
                    {
                        let _ = tx.send(address.to_owned());
                    }
                    log.lock().expect("lock").push(line);
                }
            });
        }
        let address = tokio::time::timeout(Duration::from_secs(60), address_rx)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| {
                panic!(
                    "the replica did not start: {:#?}",
                    log.lock().expect("lock")
                )
            });
        Replica {
            child,
            address: format!("http://{address}"),
            log,
        }
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.address))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.trim().parse().ok())
    }

    fn logs(&self) -> String {
        self.log.lock().expect("lock").join("\n")
    }

    async fn holds_gateway(&self) -> bool {
        self.metric("breakwater_discord_gateway_lease").await == Some(1.0)
    }

    async fn ready(&self) -> bool {
        reqwest::get(format!("{}/readyz", self.address))
            .await
            .is_ok_and(|r| r.status() == 200)
    }
}

/// Which replicas say they hold the gateway lease, once exactly one does.
async fn the_one_holder(replicas: &[&Replica]) -> usize {
    eventually("exactly one gateway holder", async || {
        let mut holders = Vec::new();
        for (i, replica) in replicas.iter().enumerate() {
            if replica.holds_gateway().await {
                holders.push(i);
            }
        }
        match holders[..] {
            [one] => Ok(one),
            _ => Err(format!("holders {holders:?}")),
        }
    })
    .await
}

/// A fresh schema on the test database, and a `database.url` whose connections use it.
async fn fresh_schema(url: &str) -> (String, String) {
    let schema = format!("bw_replicas_{}", PlanId::generate());
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    let database_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    (schema, database_url)
}

async fn drop_schema(url: &str, schema: &str) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut conn)
    .await
    .expect("drop schema");
}

#[tokio::test]
async fn one_replica_holds_the_discord_gateway_another_takes_over_after_kill_9_or_sigterm() {
    let Ok(url) = std::env::var("BREAKWATER_TEST_POSTGRES_URL") else {
        eprintln!("skipping: BREAKWATER_TEST_POSTGRES_URL not set");
        return;
    };
    let (schema, database_url) = fresh_schema(&url).await;
    let fake = FakeDiscord::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("discord_token"), TOKEN).expect("write");
    std::fs::write(dir.path().join("database_url"), &database_url).expect("write");
    let config = dir.path().join("breakwater.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "2s"

[database]
url = {{ file = "database_url" }}

[discord]
mode = "gateway"
token = {{ file = "discord_token" }}
application_id = "{APPLICATION_ID}"
guild_id = "{GUILD_ID}"
alert_channels = ["{ALERT_CHANNEL}"]
api_url = "{api_url}"
"#,
            api_url = fake.api_url()
        ),
    )
    .expect("write config");

    // Three replicas starting at once on a fresh schema: all come up (one migrated it).
    let (a, b, c) = tokio::join!(
        Replica::start(&config),
        Replica::start(&config),
        Replica::start(&config)
    );
    let mut replicas = vec![a, b, c];
    fake.wait_until_ready().await;
    let holder = the_one_holder(&replicas.iter().collect::<Vec<_>>()).await;
    assert_eq!(
        fake.identifies().len(),
        1,
        "one gateway session for the cluster"
    );
    assert_eq!(fake.connections(), 1);
    for replica in &replicas {
        eventually(
            std::fmt::from_fn(|f| write!(f, "a replica to be ready: {}", replica.logs())),
            async || replica.ready().await.then_some(()),
        )
        .await;
    }

    // SIGKILL: no chance to release the lease; another replica takes over once it expires.
    let killed_at = tokio::time::Instant::now();
    let mut dead = replicas.remove(holder);
    dead.child.kill().expect("kill -9");
    let _ = dead.child.wait();
    // The lease lasts 10 s and standbys try every 3 s: allow well beyond that.
    eventually_within(
        TAKEOVER_PATIENCE,
        "a replica to take the gateway over",
        async || (fake.identifies().len() >= 2).then_some(()),
    )
    .await;
    fake.wait_until_ready().await;
    eprintln!(
        "gateway taken over {:.1} s after kill -9",
        killed_at.elapsed().as_secs_f64()
    );
    let second = the_one_holder(&replicas.iter().collect::<Vec<_>>()).await;
    assert_eq!(fake.identifies().len(), 2, "exactly one replica took over");

    // SIGTERM: a clean stop gives the lease up on the way out, so the last replica does
    // not wait for it to expire.
    let mut stopped = replicas.remove(second);
    let pid = stopped.child.id();
    let terminated_at = tokio::time::Instant::now();
    let terminated = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(terminated.success());
    let exit = tokio::task::spawn_blocking(move || {
        let status = stopped.child.wait().expect("wait");
        (stopped, status)
    });
    let (stopped, status) = tokio::time::timeout(Duration::from_secs(30), exit)
        .await
        .expect("a clean stop")
        .expect("join");
    assert!(status.success(), "{status:?}: {}", stopped.logs());
    let mut conn = sqlx::PgConnection::connect(&database_url)
        .await
        .expect("connect");
    let holder: Option<String> =
        sqlx::query_scalar("SELECT holder FROM leases WHERE name = 'discord-gateway'")
            .fetch_optional(&mut conn)
            .await
            .expect("read the lease");
    assert!(
        holder
            .as_deref()
            .is_none_or(|h| !h.contains(&format!("/{pid}/"))),
        "the stopped replica still holds the lease: {holder:?}"
    );
    let _ = conn.close().await;
    eventually_within(
        TAKEOVER_PATIENCE,
        "the last replica to take the gateway over",
        async || (fake.identifies().len() >= 3).then_some(()),
    )
    .await;
    eprintln!(
        "gateway taken over {:.1} s after SIGTERM",
        terminated_at.elapsed().as_secs_f64()
    );
    the_one_holder(&replicas.iter().collect::<Vec<_>>()).await;
    drop(stopped);
    drop(dead);
    drop(replicas);
    drop_schema(&url, &schema).await;
}

/// Sends a signed interaction to one replica's `/discord/interactions`; applies Discord's
/// view of the answer to the fake.
async fn interact(
    replica: &Replica,
    key: &SigningKey,
    fake: &FakeDiscord,
    interaction: &Value,
) -> Value {
    let body = serde_json::to_vec(interaction).expect("json");
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = hex::encode(key.sign(&[timestamp.as_bytes(), &body].concat()).to_bytes());
    let response = reqwest::Client::new()
        .post(format!("{}/discord/interactions", replica.address))
        .header("content-type", "application/json")
        .header("x-signature-ed25519", signature)
        .header("x-signature-timestamp", timestamp)
        .body(body)
        .send()
        .await
        .expect("interaction");
    assert_eq!(response.status(), 200, "interaction refused");
    let answer: Value = response.json().await.expect("json answer");
    apply_callback_to(fake, interaction, &answer);
    answer
}

#[tokio::test]
async fn confirms_pressed_on_three_replicas_at_once_run_one_rollback() {
    let Ok(url) = std::env::var("BREAKWATER_TEST_POSTGRES_URL") else {
        eprintln!("skipping: BREAKWATER_TEST_POSTGRES_URL not set");
        return;
    };
    let (schema, database_url) = fresh_schema(&url).await;
    let fake = FakeDiscord::start().await;
    let receiver = Receiver::start(BACKEND_SECRET).await;
    receiver.behave(Behaviour::Succeed {
        delay: Duration::from_millis(200),
    });
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let dir = tempfile::tempdir().expect("tempdir");
    for (file, value) in [
        ("discord_token", TOKEN),
        ("database_url", database_url.as_str()),
        ("api_token", API_TOKEN),
        ("webhook_token", WEBHOOK_TOKEN),
        ("backend_secret", BACKEND_SECRET),
    ] {
        std::fs::write(dir.path().join(file), value).expect("write");
    }
    let config = dir.path().join("breakwater.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "2s"

[database]
url = {{ file = "database_url" }}

[api]
token = {{ file = "api_token" }}

[webhooks]
token = {{ file = "webhook_token" }}

[backends.deployer]
kind = "webhook"
url = "{receiver}/rollback"
secret = {{ file = "backend_secret" }}
timeout = "5s"
poll_interval = "50ms"

[[services]]
name = "checkout"
environments = ["production"]
backend = "deployer"

[discord]
mode = "http"
token = {{ file = "discord_token" }}
application_id = "{APPLICATION_ID}"
public_key = "{public_key}"
guild_id = "{GUILD_ID}"
alert_channels = ["{ALERT_CHANNEL}"]
api_url = "{api_url}"

[policy]
rollback_allowed = ["discord:role:{ONCALL_ROLE}"]
cooldown = "0s"
"#,
            receiver = receiver.url,
            public_key = hex::encode(key.verifying_key().to_bytes()),
            api_url = fake.api_url(),
        ),
    )
    .expect("write config");
    let (a, b, c) = tokio::join!(
        Replica::start(&config),
        Replica::start(&config),
        Replica::start(&config)
    );
    let replicas = [a, b, c];
    let http = reqwest::Client::new();

    // CI reports to one replica, Alertmanager notifies another.
    for (version, minutes_ago) in [("v41", 300), ("v42", 18)] {
        let finished = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
        let response = http
            .post(format!("{}/api/v1/deploys", replicas[0].address))
            .bearer_auth(API_TOKEN)
            .json(&json!({
                "service": "checkout", "environment": "production", "version": version,
                "started_at": finished - chrono::Duration::minutes(2),
                "finished_at": finished, "status": "succeeded",
            }))
            .send()
            .await
            .expect("deploy report");
        assert!(response.status().is_success());
    }
    let response = http
        .post(format!("{}/webhooks/alertmanager", replicas[1].address))
        .bearer_auth(WEBHOOK_TOKEN)
        .json(&alertmanager(
            "HighErrorRate",
            "checkout",
            "production",
            "firing",
        ))
        .send()
        .await
        .expect("alert");
    assert_eq!(response.status(), 200);
    let summary = fake.wait_for_text("recent deploys").await;

    // Roll back, pressed on the third replica; its private Confirm step.
    let alice = DiscordUser::new("2000000000000000001", "Alice", &[ONCALL_ROLE]);
    let roll_back = summary.button("Roll back").expect("a Roll back button");
    let press = fake.component_interaction(&alice, &summary, &roll_back);
    interact(&replicas[2], &key, &fake, &press).await;
    let confirmation = fake.response_to(&press).expect("the confirmation");
    let confirm = confirmation.button("Confirm").expect("Confirm");

    // Nine confirms at once, three on each replica.
    let presses: Vec<(usize, Value)> = (0..9)
        .map(|i| {
            (
                i % 3,
                fake.component_interaction(&alice, &confirmation, &confirm),
            )
        })
        .collect();
    let answers = futures::future::join_all(
        presses
            .iter()
            .map(|(replica, press)| interact(&replicas[*replica], &key, &fake, press)),
    )
    .await;
    let started = answers
        .iter()
        .filter(|answer| text_of(&answer["data"]).contains("Rolling back checkout production"))
        .count();
    assert_eq!(started, 1, "{answers:#?}");
    fake.wait_for_update(&summary.id, "Rolled back checkout production")
        .await;
    assert_eq!(
        receiver.calls().len(),
        1,
        "one backend call for the cluster"
    );
    drop(replicas);
    drop_schema(&url, &schema).await;
}
