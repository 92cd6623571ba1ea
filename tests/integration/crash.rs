//! Crash recovery with real processes of the built binary: a rollback is running on a
//! slow webhook backend when its process is killed with SIGKILL. Restarted with the same
//! runner id, the process takes the rollback back at once and follows it to its outcome;
//! on PostgreSQL a second replica adopts it once the dead runner's heartbeat times out.
//! Each waits for the outcome in the console thread, never for time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use breakwater::chat::console::auth::hash_password;
use breakwater::core::rollback::PlanId;
use regex::Regex;
use reqwest::header::{COOKIE, SET_COOKIE};

use crate::support::{API_TOKEN, BACKEND_SECRET, WEBHOOK_TOKEN, alertmanager, eventually};

const ALICE_PASSWORD: &str = "alice-correct-horse";

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:{port}"
shutdown_grace = "2s"
{server_extra}

[database]
url = "{database}"

[api]
token = { file = "api_token" }

[webhooks]
token = { file = "webhook_token" }

[console]
users = [{ name = "alice", password_hash = "{alice}" }]

[backends.deployer]
kind = "webhook"
url = "{receiver}/rollback"
secret = { file = "backend_secret" }
timeout = "60s"
poll_interval = "50ms"

[[services]]
name = "checkout"
environments = ["production"]
backend = "deployer"

[policy]
rollback_allowed = ["console:alice"]
cooldown = "0s"
"#;

/// A deployment system that accepts a rollback (202 + `Location`) and reports it running
/// until the test lets it finish.
struct SlowDeployer {
    url: String,
    started: AtomicUsize,
    polled: AtomicUsize,
    finished: AtomicBool,
}

impl SlowDeployer {
    async fn start() -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let deployer = Arc::new(Self {
            url: format!("http://{}", listener.local_addr().expect("addr")),
            started: AtomicUsize::new(0),
            polled: AtomicUsize::new(0),
            finished: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/rollback", post(accept_rollback))
            .route("/status/{plan}", get(report_status))
            .with_state(deployer.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        deployer
    }

    /// Waits until the rollback was accepted and is being followed: breakwater polls only
    /// after it stored the operation, so from then on a successor can follow it too.
    async fn wait_until_followed(&self) {
        eventually(
            "the backend to be asked for the rollback's status",
            async || {
                (self.started.load(Ordering::SeqCst) > 0 && self.polled.load(Ordering::SeqCst) > 0)
                    .then_some(())
            },
        )
        .await;
    }
}

async fn accept_rollback(State(deployer): State<Arc<SlowDeployer>>, body: String) -> Response {
    deployer.started.fetch_add(1, Ordering::SeqCst);
    let plan = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["plan_id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("{}/status/{plan}", deployer.url))],
    )
        .into_response()
}

async fn report_status(
    State(deployer): State<Arc<SlowDeployer>>,
    UrlPath(_plan): UrlPath<String>,
) -> Response {
    deployer.polled.fetch_add(1, Ordering::SeqCst);
    let status = if deployer.finished.load(Ordering::SeqCst) {
        serde_json::json!({"status": "succeeded", "message": "rolled back by the deployer"})
    } else {
        serde_json::json!({"status": "running", "message": "rolling back"})
    };
    axum::Json(status).into_response()
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A `breakwater serve` process, killed when dropped.
pub(crate) struct Serve {
    child: Child,
    pub(crate) address: String,
    log: PathBuf,
}

impl Serve {
    pub(crate) async fn start(config: &Path, port: u16) -> Self {
        let log = config.with_file_name(format!("serve-{port}-{}.log", PlanId::generate()));
        let child = Command::new(env!("CARGO_BIN_EXE_breakwater"))
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("BREAKWATER_CONFIG")
            .env("RUST_LOG", "breakwater=info,warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start breakwater serve");
        let serve = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log,
        };
        let client = reqwest::Client::new();
        eventually(
            std::fmt::from_fn(|f| write!(f, "breakwater to answer /healthz:\n{}", serve.log())),
            async || {
                let response = client
                    .get(format!("{}/healthz", serve.address))
                    .send()
                    .await;
                response
                    .is_ok_and(|response| response.status().is_success())
                    .then_some(())
            },
        )
        .await;
        serve
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no chance to record anything.
    pub(crate) fn kill_9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test directory with the secrets files and a config per process.
pub(crate) struct Rig {
    pub(crate) dir: tempfile::TempDir,
    deployer: Arc<SlowDeployer>,
    pub(crate) alice_hash: String,
    http: reqwest::Client,
}

impl Rig {
    pub(crate) async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("api_token"), API_TOKEN).expect("write");
        std::fs::write(dir.path().join("webhook_token"), WEBHOOK_TOKEN).expect("write");
        std::fs::write(dir.path().join("backend_secret"), BACKEND_SECRET).expect("write");
        Self {
            dir,
            deployer: SlowDeployer::start().await,
            alice_hash: hash_password(ALICE_PASSWORD).expect("hash"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        }
    }

    fn config(&self, name: &str, port: u16, database: &str, server_extra: &str) -> PathBuf {
        let text = CONFIG
            .replace("{port}", &port.to_string())
            .replace("{database}", database)
            .replace("{alice}", &self.alice_hash)
            .replace("{receiver}", &self.deployer.url)
            .replace("{server_extra}", server_extra);
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Deploys, an alert, a signed-in Alice, and her confirmed press of Roll back; returns
    /// her session cookie once the rollback is being followed.
    async fn start_rollback(&self, serve: &Serve) -> String {
        for (version, minutes_ago) in [("v41", 300), ("v42", 18)] {
            let finished = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
            let response = self
                .http
                .post(format!("{}/api/v1/deploys", serve.address))
                .bearer_auth(API_TOKEN)
                .json(&serde_json::json!({
                    "service": "checkout", "environment": "production", "version": version,
                    "started_at": finished - chrono::Duration::minutes(2),
                    "finished_at": finished, "status": "succeeded",
                }))
                .send()
                .await
                .expect("deploy");
            assert!(response.status().is_success());
        }
        let response = self
            .http
            .post(format!("{}/webhooks/alertmanager", serve.address))
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
        let session = self.sign_in(serve).await;
        self.wait_for(serve, &session, "Roll back checkout production to v41")
            .await;
        self.press(serve, &session, "Roll back checkout production")
            .await;
        self.wait_for(serve, &session, "Only you can see this")
            .await;
        self.press(serve, &session, "Confirm").await;
        self.deployer.wait_until_followed().await;
        session
    }

    pub(crate) async fn sign_in(&self, serve: &Serve) -> String {
        let page = self
            .http
            .get(format!("{}/console/login", serve.address))
            .send()
            .await
            .expect("login page");
        let login_cookie = cookie(&page, "bw_login");
        let html = page.text().await.expect("body");
        let mut form = form_fields(&html, "/console/login", "Sign in").expect("sign-in form");
        form.insert("user".into(), "alice".into());
        form.insert("password".into(), ALICE_PASSWORD.into());
        let response = self
            .http
            .post(format!("{}/console/login", serve.address))
            .header(COOKIE, login_cookie)
            .form(&form)
            .send()
            .await
            .expect("sign in");
        assert_eq!(response.status(), 303, "sign-in refused");
        cookie(&response, "bw_session")
    }

    async fn channel(&self, serve: &Serve, session: &str) -> String {
        self.http
            .get(format!("{}/console", serve.address))
            .header(COOKIE, session)
            .send()
            .await
            .expect("channel")
            .text()
            .await
            .expect("body")
    }

    pub(crate) async fn wait_for(&self, serve: &Serve, session: &str, text: &str) -> String {
        eventually(
            std::fmt::from_fn(|f| {
                write!(
                    f,
                    "the console to show {text:?}\n--- log ---\n{}",
                    serve.log()
                )
            }),
            async || {
                let html = self.channel(serve, session).await;
                if html.contains(text) {
                    Ok(html)
                } else {
                    Err(html)
                }
            },
        )
        .await
    }

    pub(crate) async fn press(&self, serve: &Serve, session: &str, label: &str) {
        let html = self.channel(serve, session).await;
        let form = form_fields(&html, "/console/press", label)
            .unwrap_or_else(|| panic!("no {label:?} button on:\n{html}"));
        let response = self
            .http
            .post(format!("{}/console/press", serve.address))
            .header(COOKIE, session)
            .form(&form)
            .send()
            .await
            .expect("press");
        assert_eq!(response.status(), 303);
    }
}

fn cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_owned()
}

/// The hidden fields of the first form posting to `action` whose text contains `label`.
fn form_fields(html: &str, action: &str, label: &str) -> Option<HashMap<String, String>> {
    let forms = Regex::new(r#"(?s)<form [^>]*method="post" action="([^"]+)"[^>]*>(.*?)</form>"#)
        .expect("regex");
    let fields = Regex::new(r#"name="(\w+)" value="([^"]*)""#).expect("regex");
    forms
        .captures_iter(html)
        .find(|c| &c[1] == action && c[2].contains(label))
        .map(|c| {
            fields
                .captures_iter(&c[2])
                .map(|f| {
                    let value = f[2]
                        .replace("&quot;", "\"")
                        .replace("&#39;", "'")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                        .replace("&amp;", "&");
                    (f[1].to_owned(), value)
                })
                .collect()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_restarted_after_kill_9_takes_its_running_rollback_back_at_once() {
    let rig = Rig::new().await;
    let port = free_port();
    let database = format!("sqlite://{}/breakwater.db", rig.dir.path().display());
    // Adoption by timeout would take ten minutes: only taking it back at start-up can
    // finish this test.
    let config = rig.config(
        "serve",
        port,
        &database,
        "heartbeat_interval = \"1m\"\nheartbeat_timeout = \"10m\"",
    );
    let mut first = Serve::start(&config, port).await;
    let session = rig.start_rollback(&first).await;
    first.kill_9();
    rig.deployer.finished.store(true, Ordering::SeqCst);

    let killed = Instant::now();
    let restarted = Serve::start(&config, port).await;
    let serving = killed.elapsed();

    rig.wait_for(&restarted, &session, "Rolled back checkout production")
        .await;
    eprintln!(
        "restart: serving {serving:?} after kill -9, outcome shown {:?} after kill -9",
        killed.elapsed()
    );
    assert_eq!(
        rig.deployer.started.load(Ordering::SeqCst),
        1,
        "the restarted process follows the rollback; it does not start it again"
    );
    assert!(
        restarted
            .log()
            .contains("taking back the rollbacks this runner left running"),
        "{}",
        restarted.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_adopts_the_rollback_of_a_replica_killed_with_kill_9() {
    let Ok(url) = std::env::var("BREAKWATER_TEST_POSTGRES_URL") else {
        eprintln!("skipping: BREAKWATER_TEST_POSTGRES_URL not set");
        return;
    };
    let schema = format!("bw_crash_{}", PlanId::generate());
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .expect("create schema");
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    let database = format!("{url}{separator}options[search_path]={schema}");
    let rig = Rig::new().await;
    let (port_a, port_b) = (free_port(), free_port());
    let replica = |id: &str| {
        format!("runner_id = \"{id}\"\nheartbeat_interval = \"1s\"\nheartbeat_timeout = \"3s\"")
    };
    let config_a = rig.config("a", port_a, &database, &replica("replica-a"));
    let config_b = rig.config("b", port_b, &database, &replica("replica-b"));
    let mut a = Serve::start(&config_a, port_a).await;
    let b = Serve::start(&config_b, port_b).await;
    let session = rig.start_rollback(&a).await;
    a.kill_9();
    let killed = Instant::now();
    rig.deployer.finished.store(true, Ordering::SeqCst);

    rig.wait_for(&b, &session, "Rolled back checkout production")
        .await;
    eprintln!(
        "adoption: replica b showed the outcome {:?} after replica a was killed",
        killed.elapsed()
    );

    assert_eq!(rig.deployer.started.load(Ordering::SeqCst), 1);
    drop(b);
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut conn)
    .await
    .expect("drop schema");
}
