//! The web console over real HTTP: every route refuses without a session, every POST
//! without its CSRF token; sign-in is rate-limited; a press by someone outside the policy
//! is refused; concurrent presses run one rollback; pages show what the core said.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use breakwater::app::{Application, Overrides};
use breakwater::chat::console::auth::hash_password;
use breakwater::config::Config;
use breakwater::core::bot::Bot;
use breakwater::core::deploy::{
    ConfigChange, Deploy, DeploySource, DeployStatus, Environment, ServiceName, Target,
};
use regex::Regex;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use tokio_util::sync::CancellationToken;

use crate::support::{WEBHOOK_TOKEN, alertmanager, eventually};

const ALICE_PASSWORD: &str = "alice-correct-horse";
const MALLORY_PASSWORD: &str = "mallory-battery-staple";

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "2s"
{server_extra}

[database]
url = "sqlite://{dir}/breakwater.db"

[webhooks]
token = { file = "webhook_token" }

[console]
users = [
  { name = "alice", password_hash = "{alice}" },
  { name = "mallory", password_hash = "{mallory}" },
]
{console_extra}

[backends.sim]
kind = "simulated"
delay = "300ms"
failure_rate = 0.0

[[services]]
name = "checkout"
environments = ["production"]
backend = "sim"

[policy]
rollback_allowed = ["console:alice"]
cooldown = "0s"
"#;

struct ConsoleApp {
    address: String,
    bot: Bot,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    stop: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A signed-in browser: its session cookie.
#[derive(Clone)]
struct Session {
    cookie: String,
}

async fn spawn_console(console_extra: &str) -> ConsoleApp {
    spawn_console_in(console_extra, tempfile::tempdir().expect("tempdir")).await
}

async fn spawn_console_in(console_extra: &str, dir: tempfile::TempDir) -> ConsoleApp {
    spawn_console_with("", console_extra, dir).await
}

async fn spawn_console_with(
    server_extra: &str,
    console_extra: &str,
    dir: tempfile::TempDir,
) -> ConsoleApp {
    spawn_console_beside(server_extra, console_extra, dir, Vec::new()).await
}

/// The console next to other chat adapters.
async fn spawn_console_beside(
    server_extra: &str,
    console_extra: &str,
    dir: tempfile::TempDir,
    chats: Vec<Arc<dyn breakwater::chat::Chat>>,
) -> ConsoleApp {
    std::fs::write(dir.path().join("webhook_token"), WEBHOOK_TOKEN).expect("write");
    let text = CONFIG
        .replace("{dir}", &dir.path().display().to_string())
        .replace("{alice}", &hash_password(ALICE_PASSWORD).expect("hash"))
        .replace("{mallory}", &hash_password(MALLORY_PASSWORD).expect("hash"))
        .replace("{console_extra}", console_extra)
        .replace("{server_extra}", server_extra);
    let path = dir.path().join("breakwater.toml");
    std::fs::write(&path, text).expect("write config");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("test config invalid: {e}"));
    let app = Application::build_with(
        config,
        Overrides {
            chats,
            maintenance_every: Some(Duration::from_millis(200)),
            tune: Some(|settings| settings.refresh_delay = Duration::from_millis(50)),
            ..Overrides::default()
        },
    )
    .await
    .expect("build app");
    let address = format!("http://{}", app.local_addr());
    let bot = app.bot();
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move { app.run_until(async move { stop.cancelled().await }).await })
    };
    ConsoleApp {
        address,
        bot,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        dir,
        stop,
        server: Some(server),
    }
}

fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_owned()
}

/// The hidden fields of the first form whose text contains `label`.
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
                .map(|f| (f[1].to_owned(), html_unescape(&f[2])))
                .collect()
        })
}

fn html_unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl ConsoleApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    async fn get(&self, path: &str, session: Option<&Session>) -> reqwest::Response {
        let mut request = self.http.get(self.url(path));
        if let Some(session) = session {
            request = request.header(COOKIE, &session.cookie);
        }
        request.send().await.expect("request")
    }

    async fn post(
        &self,
        path: &str,
        session: Option<&Session>,
        form: &HashMap<String, String>,
    ) -> reqwest::Response {
        let mut request = self.http.post(self.url(path)).form(form);
        if let Some(session) = session {
            request = request.header(COOKIE, &session.cookie);
        }
        request.send().await.expect("request")
    }

    /// Submits the sign-in form as a browser would; returns the answer.
    async fn try_sign_in(&self, user: &str, password: &str) -> reqwest::Response {
        let form_page = self.get("/console/login", None).await;
        assert_eq!(form_page.status(), StatusCode::OK);
        let login_cookie = cookie_value(&set_cookie(&form_page, "bw_login").expect("login cookie"));
        let html = form_page.text().await.expect("body");
        let mut form = form_fields(&html, "/console/login", "Sign in").expect("sign-in form");
        form.insert("user".into(), user.into());
        form.insert("password".into(), password.into());
        self.http
            .post(self.url("/console/login"))
            .header(COOKIE, login_cookie)
            .form(&form)
            .send()
            .await
            .expect("request")
    }

    async fn sign_in(&self, user: &str, password: &str) -> Session {
        let response = self.try_sign_in(user, password).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "sign-in refused");
        Session {
            cookie: cookie_value(&set_cookie(&response, "bw_session").expect("session cookie")),
        }
    }

    async fn channel(&self, session: &Session) -> String {
        let response = self.get("/console", Some(session)).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("body")
    }

    /// Polls the channel page until it contains `text`.
    async fn wait_for(&self, session: &Session, text: &str) -> String {
        eventually(format_args!("the channel to show {text:?}"), async || {
            let html = self.channel(session).await;
            if html.contains(text) {
                Ok(html)
            } else {
                Err(html)
            }
        })
        .await
    }

    /// Presses the button labelled `label` as shown on the channel page.
    async fn press(&self, session: &Session, label: &str) -> reqwest::Response {
        let html = self.channel(session).await;
        let form = form_fields(&html, "/console/press", label)
            .unwrap_or_else(|| panic!("no {label:?} button on:\n{html}"));
        self.post("/console/press", Some(session), &form).await
    }

    async fn deploy(&self, version: &str, minutes_ago: i64, config: Vec<ConfigChange>) {
        let started_at = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
        self.bot
            .store()
            .record_deploy(&Deploy {
                target: Target::new(
                    ServiceName::parse("checkout").expect("name"),
                    Environment::parse("production").expect("env"),
                ),
                version: version.into(),
                previous_version: None,
                revision: None,
                commit: Some("abc1234".into()),
                author: Some("Ada".into()),
                description: None,
                url: None,
                started_at,
                finished_at: Some(started_at),
                status: DeployStatus::Succeeded,
                changes: Vec::new(),
                config_changes: config,
                source: DeploySource::Api,
            })
            .await
            .expect("record deploy");
    }

    async fn fire_alert(&self, alertname: &str) {
        let response = self
            .http
            .post(self.url("/webhooks/alertmanager"))
            .bearer_auth(WEBHOOK_TOKEN)
            .json(&alertmanager(alertname, "checkout", "production", "firing"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// Deploys, an alert, and its summary on the channel page.
    async fn incident(&self, session: &Session) -> String {
        self.deploy("v41", 300, Vec::new()).await;
        self.deploy("v42", 20, Vec::new()).await;
        self.fire_alert("HighErrorRate").await;
        let html = self
            .wait_for(session, "Roll back checkout production to v41")
            .await;
        // The summary is shown before its posting is audited; the incident is complete
        // (and the audit chain settled) once it is.
        eventually("the summary's posting to be audited", async || {
            match self.audited("summary.posted").await {
                0 => Err(0),
                posted => Ok(posted),
            }
        })
        .await;
        html
    }

    /// Appends an audit record as the core would, with these details.
    async fn audit(&self, action: &str, details: serde_json::Value) {
        let log = self.bot.audit();
        log.append(log.entry(action).details(details))
            .await
            .expect("append audit record");
    }

    async fn page(&self, path: &str, session: &Session) -> String {
        let response = self.get(path, Some(session)).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.text().await.expect("body")
    }

    async fn audited(&self, action: &str) -> usize {
        self.bot
            .audit()
            .search(&breakwater::audit::AuditQuery {
                action: Some(action.into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("audit")
            .len()
    }

    async fn stop(mut self) -> tempfile::TempDir {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("join").expect("clean shutdown");
        }
        let ConsoleApp { dir, .. } = self;
        dir
    }
}

fn with_csrf(mut form: HashMap<String, String>, csrf: Option<&str>) -> HashMap<String, String> {
    match csrf {
        Some(token) => form.insert("csrf".into(), token.into()),
        None => form.remove("csrf"),
    };
    form
}

// --- access ---------------------------------------------------------------------------------

#[tokio::test]
async fn the_console_is_off_unless_configured() {
    let app = crate::support::spawn_app().await;
    let response = app
        .http
        .get(format!("{}/console", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pages_redirect_to_the_sign_in_form_without_a_session() {
    let app = spawn_console("").await;
    for path in [
        "/console",
        "/console/deploys",
        "/console/audit",
        "/console/audit/export",
    ] {
        let response = app.get(path, None).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(response.headers()[LOCATION], "/console/login", "{path}");
    }
    let forged = Session {
        cookie: "bw_session=not-a-session".into(),
    };
    let response = app.get("/console", Some(&forged)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn posts_and_the_event_stream_are_refused_without_a_session() {
    let app = spawn_console("").await;
    let response = app.get("/console/events", None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    for path in ["/console/press", "/console/logout"] {
        let response = app.post(path, None, &HashMap::new()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn signing_in_sets_an_http_only_same_site_strict_session_cookie() {
    let app = spawn_console("").await;
    let response = app.try_sign_in("alice", ALICE_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/console");
    let cookie = set_cookie(&response, "bw_session").expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    assert_eq!(app.audited("console.login").await, 1);
}

#[tokio::test]
async fn the_session_cookie_is_secure_when_the_public_url_is_https() {
    let app = spawn_console_with(
        "public_url = \"https://breakwater.example.com\"",
        "",
        tempfile::tempdir().expect("tempdir"),
    )
    .await;
    let response = app.try_sign_in("alice", ALICE_PASSWORD).await;
    let cookie = set_cookie(&response, "bw_session").expect("session cookie");
    assert!(cookie.ends_with("; Secure"), "{cookie}");
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_audited() {
    let app = spawn_console("").await;
    let response = app.try_sign_in("alice", "wrong").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&response, "bw_session").is_none());
    let html = response.text().await.expect("body");
    assert!(html.contains("wrong user name or password"), "{html}");
    let response = app.try_sign_in("nobody", ALICE_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.audited("console.login_failed").await, 2);
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited() {
    let app = spawn_console("").await;
    for _ in 0..5 {
        let response = app.try_sign_in("alice", "guess").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused until the window passes.
    let response = app.try_sign_in("alice", ALICE_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!((1..=300).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn the_sign_in_form_is_refused_without_its_csrf_cookie() {
    let app = spawn_console("").await;
    let form: HashMap<String, String> = [
        ("csrf", "made-up"),
        ("user", "alice"),
        ("password", ALICE_PASSWORD),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let response = app.post("/console/login", None, &form).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&response, "bw_session").is_none());
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    let html = app.channel(&session).await;
    let form = form_fields(&html, "/console/logout", "Sign out").expect("sign-out form");
    let response = app
        .post(
            "/console/logout",
            Some(&session),
            &with_csrf(form.clone(), None),
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "no CSRF token");
    let response = app.post("/console/logout", Some(&session), &form).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let response = app.get("/console", Some(&session)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_trusted_proxy_header_is_believed_only_from_a_trusted_address() {
    let trusted = spawn_console(
        "trusted_proxy_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"127.0.0.1\"]",
    )
    .await;
    let response = trusted
        .http
        .get(trusted.url("/console"))
        .header("X-Forwarded-User", "carol")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(set_cookie(&response, "bw_session").is_some());
    let html = response.text().await.expect("body");
    assert!(
        html.contains("Signed in as <strong>carol</strong>"),
        "{html}"
    );

    let untrusted = spawn_console(
        "trusted_proxy_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"10.9.8.7\"]",
    )
    .await;
    let response = untrusted
        .http
        .get(untrusted.url("/console"))
        .header("X-Forwarded-User", "carol")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

// --- the channel ----------------------------------------------------------------------------

#[tokio::test]
async fn an_alert_appears_with_its_summary_and_the_roll_back_button() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    let html = app.incident(&session).await;
    assert!(html.contains("HighErrorRate"), "{html}");
    assert!(html.contains("Suspect"), "{html}");
    assert!(html.contains("v42"), "{html}");
}

#[tokio::test]
async fn a_rollback_shows_the_confirmation_then_progress_and_outcome() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    app.incident(&session).await;
    let response = app.press(&session, "Roll back checkout production").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let html = app.wait_for(&session, "Only you can see this").await;
    assert!(html.contains("v42") && html.contains("v41"), "{html}");
    let response = app.press(&session, "Confirm").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    app.wait_for(&session, "Rolled back checkout production from v42 to v41")
        .await;
    assert_eq!(app.audited("rollback.succeeded").await, 1);
}

#[tokio::test]
async fn a_press_without_the_csrf_token_is_refused() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    let html = app.incident(&session).await;
    let form = form_fields(&html, "/console/press", "Roll back").expect("button");
    for csrf in [None, Some("forged-token")] {
        let response = app
            .post(
                "/console/press",
                Some(&session),
                &with_csrf(form.clone(), csrf),
            )
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(app.audited("rollback.requested").await, 0);
}

#[tokio::test]
async fn a_malformed_press_is_refused_with_its_reason() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    let html = app.incident(&session).await;
    let form = form_fields(&html, "/console/press", "Roll back").expect("button");
    let mut tampered = form.clone();
    tampered.insert("action".into(), "bw:rb:checkout-production-v1".into());
    let response = app.post("/console/press", Some(&session), &tampered).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("not one of breakwater")
    );
    let mut unknown = form;
    unknown.insert("message".into(), "999999".into());
    let response = app.post("/console/press", Some(&session), &unknown).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_press_by_a_user_outside_the_policy_is_refused_privately() {
    let app = spawn_console("").await;
    let alice = app.sign_in("alice", ALICE_PASSWORD).await;
    let mallory = app.sign_in("mallory", MALLORY_PASSWORD).await;
    app.incident(&alice).await;
    app.press(&mallory, "Roll back checkout production").await;
    let html = app.wait_for(&mallory, "Only you can see this").await;
    assert!(
        !html.contains("Confirm"),
        "no confirmation for mallory:\n{html}"
    );
    assert_eq!(app.audited("rollback.denied").await, 1);
    assert_eq!(app.audited("rollback.started").await, 0);
    let alices = app.channel(&alice).await;
    assert!(!alices.contains("Only you can see this"), "{alices}");
}

#[tokio::test]
async fn concurrent_confirm_presses_run_the_rollback_once() {
    let app = Arc::new(spawn_console("").await);
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    app.incident(&session).await;
    app.press(&session, "Roll back checkout production").await;
    app.wait_for(&session, "Only you can see this").await;
    // Five open tabs, each with its own rendering (and nonce), press Confirm at once.
    let mut forms = Vec::new();
    for _ in 0..5 {
        let html = app.channel(&session).await;
        forms.push(form_fields(&html, "/console/press", "Confirm").expect("confirm"));
    }
    let presses = forms.into_iter().map(|form| {
        let app = app.clone();
        let session = session.clone();
        async move {
            app.post("/console/press", Some(&session), &form)
                .await
                .status()
        }
    });
    for status in futures::future::join_all(presses).await {
        assert_eq!(status, StatusCode::SEE_OTHER);
    }
    app.wait_for(&session, "Rolled back checkout production")
        .await;
    assert_eq!(app.audited("rollback.started").await, 1);
    assert_eq!(app.audited("rollback.succeeded").await, 1);
}

#[tokio::test]
async fn the_same_form_submitted_twice_is_one_press() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    let html = app.incident(&session).await;
    let form = form_fields(&html, "/console/press", "Roll back").expect("button");
    for _ in 0..2 {
        let response = app.post("/console/press", Some(&session), &form).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    assert_eq!(app.audited("rollback.confirmation_requested").await, 1);
}

#[tokio::test]
async fn alert_text_is_escaped_on_the_page() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    app.fire_alert("<script>alert(1)</script>").await;
    let html = app.wait_for(&session, "&lt;script&gt;alert(1)").await;
    assert!(!html.contains("<script>alert(1)"), "{html}");
}

#[tokio::test]
async fn an_alert_seen_on_another_platform_is_shown_in_the_console_too() {
    let slack = crate::support::RecordingChat::new(
        breakwater::core::message::Platform::Slack,
        "C0ALERTS",
        false,
    );
    let app = spawn_console_beside(
        "",
        "",
        tempfile::tempdir().expect("tempdir"),
        vec![slack.clone()],
    )
    .await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    app.deploy("v41", 300, Vec::new()).await;
    app.deploy("v42", 20, Vec::new()).await;
    let handled = app
        .bot
        .handle_channel_alert(
            "Ev0001",
            breakwater::core::message::MessageRef {
                platform: breakwater::core::message::Platform::Slack,
                channel: "C0ALERTS".into(),
                id: "1700000000.000100".into(),
                thread: None,
            },
            breakwater::alerts::parse_channel_message(&breakwater::core::event::ChannelMessage {
                text: "checkout production is down, customers get errors at payment".into(),
                author: breakwater::core::event::MessageAuthor {
                    name: Some("Ada".into()),
                    is_bot: false,
                },
                posted_at: chrono::Utc::now(),
                ..Default::default()
            })
            .expect("an alert"),
        )
        .await
        .expect("handled");
    assert!(
        matches!(
            handled,
            breakwater::core::bot::AlertHandled::Recorded { .. }
        ),
        "{handled:?}"
    );
    slack.wait_for_text("Roll back checkout production").await;
    let html = app
        .wait_for(&session, "Roll back checkout production to v41")
        .await;
    assert!(html.contains("customers get errors"), "{html}");
}

#[tokio::test]
async fn the_stylesheet_and_script_are_served_from_the_binary() {
    let app = spawn_console("").await;
    for (path, content_type) in [
        ("/console/static/console.css", "text/css; charset=utf-8"),
        (
            "/console/static/console.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let response = app.get(path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
    let response = app.get("/console/", None).await;
    assert_eq!(response.headers()[LOCATION], "/console");
}

#[tokio::test]
async fn the_event_stream_brings_new_messages_to_an_open_page() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    let response = app.get("/console/events", Some(&session)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut response = response;
    app.fire_alert("HighErrorRate").await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("HighErrorRate") {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("a live update in time")
            .expect("stream readable")
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: message"), "{seen}");
    assert!(seen.contains("\"thread\":null"), "a new thread: {seen}");
}

#[tokio::test]
async fn the_channel_survives_a_restart() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    app.incident(&session).await;
    let dir = app.stop().await;
    let app = spawn_console_in("", dir).await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    let html = app.channel(&session).await;
    assert!(
        html.contains("Roll back checkout production to v41"),
        "{html}"
    );
}

// --- deploys and audit ----------------------------------------------------------------------

#[tokio::test]
async fn the_deploys_page_lists_deploys_with_config_changes_and_a_timeline() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    app.deploy("v41", 300, Vec::new()).await;
    app.deploy(
        "v42",
        20,
        vec![ConfigChange {
            key: "DB_POOL_MAX".into(),
            old: Some("40".into()),
            new: Some("8".into()),
        }],
    )
    .await;
    let response = app.get("/console/deploys", Some(&session)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.expect("body");
    assert!(html.contains("<svg role=\"img\""), "{html}");
    assert_eq!(html.matches("<circle").count(), 2, "{html}");
    assert!(html.contains("DB_POOL_MAX</code>: 40 → 8"), "{html}");
    assert!(
        html.contains("<caption>checkout in production</caption>"),
        "{html}"
    );
}

#[tokio::test]
async fn the_audit_page_filters_and_shows_the_verified_chain_head() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    app.incident(&session).await;
    let response = app.get("/console/audit", Some(&session)).await;
    let html = response.text().await.expect("body");
    assert!(html.contains("Chain intact"), "{html}");
    let report = app.bot.audit().verify().await.expect("verify");
    assert!(html.contains(&report.head_hash), "{html}");
    assert!(html.contains("alert.received"), "{html}");
    let response = app
        .get("/console/audit?action=console.login&actor=", Some(&session))
        .await;
    let html = response.text().await.expect("body");
    assert!(html.contains("console.login"), "{html}");
    assert!(!html.contains("<code>alert.received</code>"), "{html}");
    let response = app.get("/console/audit?before=x", Some(&session)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_audit_export_downloads_json_lines_and_csv() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    let response = app.get("/console/audit/export", Some(&session)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .expect("header")
            .starts_with("attachment; filename=\"breakwater-audit-")
    );
    let body = response.text().await.expect("body");
    let first: serde_json::Value =
        serde_json::from_str(body.lines().next().expect("a record")).expect("json line");
    assert_eq!(first["action"], "console.login");
    let response = app
        .get("/console/audit/export?format=csv", Some(&session))
        .await;
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert!(
        response
            .text()
            .await
            .expect("body")
            .starts_with("seq,at,actor")
    );
    let response = app
        .get("/console/audit/export?format=xml", Some(&session))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pages_forbid_framing_and_foreign_scripts() {
    let app = spawn_console("").await;
    let response = app.get("/console/login", None).await;
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .expect("header")
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
}

// --- the demo -------------------------------------------------------------------------------

/// The demo, serving, with the console app to drive it and the demo user's password.
async fn start_demo() -> (ConsoleApp, String) {
    let demo = breakwater::demo::Demo::build(breakwater::demo::DemoOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: None,
        alert_after: Duration::from_millis(200),
        resolve_after: Duration::from_millis(200),
    })
    .await
    .expect("demo");
    let password = demo.password().to_owned();
    let address = format!("http://{}", demo.local_addr());
    let bot = demo.bot();
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            demo.run_until(async move { stop.cancelled().await })
                .await
                .map_err(anyhow::Error::from)
        })
    };
    let app = ConsoleApp {
        address,
        bot,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        dir: tempfile::tempdir().expect("tempdir"),
        stop,
        server: Some(server),
    };
    (app, password)
}

#[tokio::test]
async fn the_demo_incident_is_rolled_back_and_verified_over_http() {
    let (app, password) = start_demo().await;
    let session = app.sign_in("demo", &password).await;
    let html = app
        .wait_for(&session, "Roll back checkout production to v2.13.1")
        .await;
    assert!(html.contains("DB_POOL_MAX"), "{html}");
    app.press(&session, "Roll back checkout production").await;
    app.wait_for(&session, "Only you can see this").await;
    app.press(&session, "Confirm").await;
    app.wait_for(
        &session,
        "Rolled back checkout production from v2.14.0 to v2.13.1",
    )
    .await;
    app.wait_for(&session, "HighErrorRate resolved").await;
    assert_eq!(app.audited("rollback.verified").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn the_demo_canary_is_aborted_then_rolled_back_over_http() {
    let (app, password) = start_demo().await;
    let session = app.sign_in("demo", &password).await;
    let html = app.wait_for(&session, "Abort rollout of v0.43.0").await;
    assert!(
        html.contains("step 3 of 8, 20 % of traffic on v0.43.0"),
        "{html}"
    );

    app.press(&session, "Abort rollout of v0.43.0").await;
    app.wait_for(&session, "Only you can see this").await;
    app.press(&session, "Confirm").await;
    app.wait_for(
        &session,
        "Aborted the rollout of v0.43.0 on search production: all traffic is back on v0.42.0",
    )
    .await;
    // The rollback plan is posted in the thread once the abort's outcome is shown.
    app.wait_for(&session, "Roll back search production to v0.42.0")
        .await;
    app.press(&session, "Roll back search production to v0.42.0")
        .await;
    app.wait_for(&session, "Only you can see this").await;
    app.press(&session, "Confirm").await;
    app.wait_for(
        &session,
        "Rolled back search production from v0.43.0 to v0.42.0",
    )
    .await;
    app.stop().await;
}

// --- phone width, no script, filters (issue 13) ---------------------------------------------

#[tokio::test]
async fn the_root_address_redirects_to_the_console() {
    let app = spawn_console("").await;
    let response = app.get("/", None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/console");
}

#[tokio::test]
async fn the_root_address_without_a_console_names_what_is_served() {
    let app = crate::support::spawn_app().await;
    let response = app
        .http
        .get(format!("{}/", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("body");
    assert!(text.contains("/healthz"), "{text}");
    assert!(text.contains("add a [console] section"), "{text}");
}

#[tokio::test]
async fn without_javascript_the_channel_does_not_claim_to_update_itself() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    let html = app.channel(&session).await;
    assert!(!html.contains("updates itself"), "{html}");
    assert!(
        html.contains("<noscript> Reload to see new events.</noscript>"),
        "{html}"
    );
    let script = app
        .get("/console/static/console.js", None)
        .await
        .text()
        .await
        .expect("body");
    assert!(
        script.contains("This page updates itself while it is open."),
        "the script says it once it is running"
    );
}

#[tokio::test]
async fn wide_tables_scroll_sideways_in_their_own_box() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    app.deploy("v41", 300, Vec::new()).await;
    let deploys = app.page("/console/deploys", &session).await;
    assert!(
        deploys.contains(
            "<div class=\"scroll\" role=\"region\" tabindex=\"0\" aria-label=\"Deploys of checkout in production\"><table"
        ),
        "{deploys}"
    );
    assert!(
        deploys.contains("<figure class=\"timeline\"><div class=\"scroll\""),
        "the timeline scrolls rather than shrinks: {deploys}"
    );
    let audit = app.page("/console/audit", &session).await;
    assert!(
        audit.contains(
            "<div class=\"scroll\" role=\"region\" tabindex=\"0\" aria-label=\"Audit records\"><table"
        ),
        "{audit}"
    );
    let css = app
        .get("/console/static/console.css", None)
        .await
        .text()
        .await
        .expect("body");
    assert!(
        css.contains(".scroll { max-width: 100%; overflow-x: auto; }"),
        "{css}"
    );
    assert!(css.contains(".timeline .scroll svg { display: block; min-width: 800px; }"));
}

#[tokio::test]
async fn audit_details_read_as_key_value_lines_with_nested_keys_flattened() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    app.audit(
        "rollback.started",
        serde_json::json!({
            "plan": "p-1",
            "revision": {"from": "v42", "to": "v41"},
            "hosts": ["web-1", "web-2"],
            "note": "<b>escaped</b>",
        }),
    )
    .await;
    let html = app.page("/console/audit?action=rollback", &session).await;
    for line in [
        "<li><span class=\"key\">plan</span>: p-1</li>",
        "<li><span class=\"key\">revision.from</span>: v42</li>",
        "<li><span class=\"key\">revision.to</span>: v41</li>",
        "<li><span class=\"key\">hosts.1</span>: web-2</li>",
        "<li><span class=\"key\">note</span>: &lt;b&gt;escaped&lt;/b&gt;</li>",
    ] {
        assert!(html.contains(line), "no {line:?} in:\n{html}");
    }
    assert!(!html.contains("{&quot;"), "no raw JSON left: {html}");
}

#[tokio::test]
async fn the_audit_action_filter_matches_part_of_an_action_name() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    for action in ["rollback.started", "rollback.succeeded", "alert.received"] {
        app.audit(action, serde_json::json!({})).await;
    }
    let html = app.page("/console/audit?action=RollBack", &session).await;
    assert!(html.contains("<code>rollback.started</code>"), "{html}");
    assert!(html.contains("<code>rollback.succeeded</code>"), "{html}");
    assert!(!html.contains("<code>alert.received</code>"), "{html}");
    assert!(!html.contains("<code>console.login</code>"), "{html}");
}

#[tokio::test]
async fn the_audit_action_filter_takes_wildcard_characters_literally() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    app.try_sign_in("alice", "wrong").await;
    let html = app.page("/console/audit?action=login_f", &session).await;
    assert!(html.contains("<code>console.login_failed</code>"), "{html}");
    assert!(!html.contains("<code>console.login</code>"), "{html}");
    // `_` and `%` match only themselves: "e_l" is not "console.login".
    for literal in ["e_l", "%25"] {
        let html = app
            .page(&format!("/console/audit?action={literal}"), &session)
            .await;
        assert!(html.contains("No records match."), "{literal}: {html}");
    }
}

#[tokio::test]
async fn the_audit_downloads_carry_the_filter_shown() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    let html = app.page("/console/audit?action=rollback", &session).await;
    assert!(
        html.contains("href=\"/console/audit/export?format=jsonl&amp;action=rollback\""),
        "{html}"
    );
    assert!(
        html.contains("href=\"/console/audit/export?format=csv&amp;action=rollback\""),
        "{html}"
    );
}

#[tokio::test]
async fn the_audit_export_honours_the_filter() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    for action in ["rollback.started", "alert.received", "rollback.succeeded"] {
        app.audit(action, serde_json::json!({})).await;
    }
    let body = app
        .page(
            "/console/audit/export?format=jsonl&action=rollback",
            &session,
        )
        .await;
    let actions: Vec<String> = body
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("json line");
            record["action"].as_str().expect("action").to_owned()
        })
        .collect();
    assert_eq!(actions, ["rollback.started", "rollback.succeeded"]);
    let csv = app
        .page("/console/audit/export?format=csv&action=alert", &session)
        .await;
    assert_eq!(csv.lines().count(), 2, "header and one record: {csv}");
    assert!(csv.contains(",alert.received,"), "{csv}");
    let everything = app.page("/console/audit/export", &session).await;
    assert!(
        everything.contains("\"action\":\"alert.received\""),
        "{everything}"
    );
    assert!(
        everything.contains("\"action\":\"console.login\""),
        "{everything}"
    );
}

#[tokio::test]
async fn the_deploys_timeline_draws_an_alert_when_it_fired_not_when_it_arrived() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    app.deploy("v42", 60, Vec::new()).await;
    let fired = chrono::Utc::now() - chrono::Duration::minutes(25);
    let mut payload = alertmanager("HighErrorRate", "checkout", "production", "firing");
    payload["alerts"][0]["startsAt"] = serde_json::json!(fired.to_rfc3339());
    let response = app
        .http
        .post(app.url("/webhooks/alertmanager"))
        .bearer_auth(WEBHOOK_TOKEN)
        .json(&payload)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let html = app.page("/console/deploys", &session).await;
    let tooltip = format!(
        "Alert HighErrorRate fired {} (received ",
        fired.format("%Y-%m-%d %H:%M UTC")
    );
    assert!(html.contains(&tooltip), "no {tooltip:?} in:\n{html}");
    assert!(html.contains("UTC</text>"), "axis times carry their zone");
}

#[tokio::test]
async fn a_thread_whose_alert_post_the_core_marks_resolved_reads_resolved() {
    use breakwater::core::message::{Message, MessageRef, Platform, Tone};
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    let html = app.incident(&session).await;
    let root = Regex::new(r#"<section class="thread" id="t-(\d+)""#)
        .expect("regex")
        .captures(&html)
        .map(|c| c[1].to_owned())
        .expect("a thread");
    assert!(
        html.contains(&format!(
            "<article class=\"msg tone-danger\" id=\"m-{root}\""
        )),
        "a firing alert is shown as a problem: {html}"
    );
    // What the core sends when the group resolves: the same post, resolved.
    let resolved = Message::plain(
        "✅ HighErrorRate (critical) on checkout production — resolved at 15:20 UTC",
    )
    .with_tone(Tone::Success);
    let console = app
        .bot
        .chats()
        .get(Platform::Console)
        .expect("console chat");
    console
        .update(
            &MessageRef {
                platform: Platform::Console,
                channel: breakwater::chat::console::CHANNEL.into(),
                id: root.clone(),
                thread: None,
            },
            &resolved,
            breakwater::chat::Lane::Alerts,
        )
        .await
        .expect("update");
    let html = app.channel(&session).await;
    let head = format!(
        "<article class=\"msg tone-success\" id=\"m-{root}\" data-id=\"{root}\" data-thread=\"\" data-rev=\"2\""
    );
    assert!(html.contains(&head), "{html}");
    let heading = format!(
        "<h2 id=\"m-{root}-h\"><span class=\"visually-hidden\">Resolved: </span>✅ HighErrorRate"
    );
    assert!(html.contains(&heading), "{html}");
    assert!(!html.contains("🚨"), "no alarm left in the thread: {html}");
}

#[tokio::test]
async fn a_confirm_step_left_open_when_the_alert_resolves_stops_offering_confirm() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    app.incident(&session).await;
    app.press(&session, "Roll back checkout production").await;
    let html = app.wait_for(&session, "Only you can see this").await;
    assert!(
        form_fields(&html, "/console/press", "Confirm").is_some(),
        "{html}"
    );
    let response = app
        .http
        .post(app.url("/webhooks/alertmanager"))
        .bearer_auth(WEBHOOK_TOKEN)
        .json(&alertmanager(
            "HighErrorRate",
            "checkout",
            "production",
            "resolved",
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let html = app.wait_for(&session, "is no longer offered here").await;
    assert!(
        form_fields(&html, "/console/press", "Confirm").is_none(),
        "the private step no longer offers Confirm: {html}"
    );
    assert_eq!(app.audited("rollback.started").await, 0);
}

// --- incidents (issue 17) ---------------------------------------------------------------------

/// The resolved notification for one alert of checkout production.
async fn resolve_alert(app: &ConsoleApp, alertname: &str) {
    let response = app
        .http
        .post(app.url("/webhooks/alertmanager"))
        .bearer_auth(WEBHOOK_TOKEN)
        .json(&alertmanager(
            alertname,
            "checkout",
            "production",
            "resolved",
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
}

/// A whole incident through the console: an alert and a grouped one whose name needs
/// escaping, a refused press by mallory, alice's rollback with its Confirm step, and the
/// resolution of both alerts. Returns the incident's id.
async fn console_incident(app: &ConsoleApp) -> i64 {
    let alice = app.sign_in("alice", ALICE_PASSWORD).await;
    let mallory = app.sign_in("mallory", MALLORY_PASSWORD).await;
    app.incident(&alice).await;
    app.fire_alert("<b>Latency</b>").await;
    app.wait_for(&alice, "2 alerts grouped in this thread")
        .await;
    app.press(&mallory, "Roll back checkout production").await;
    app.wait_for(&mallory, "Only you can see this").await;
    app.press(&alice, "Roll back checkout production").await;
    app.wait_for(&alice, "Only you can see this").await;
    app.press(&alice, "Confirm").await;
    app.wait_for(&alice, "Rolled back checkout production from v42 to v41")
        .await;
    resolve_alert(app, "HighErrorRate").await;
    resolve_alert(app, "<b>Latency</b>").await;
    app.wait_for(&alice, "All alerts resolved").await;
    app.bot
        .store()
        .recent_alert_groups(1)
        .await
        .expect("groups")[0]
        .id
}

async fn load_incident(app: &ConsoleApp, id: i64) -> breakwater::core::incident::Incident {
    breakwater::core::incident::load(app.bot.store(), app.bot.audit(), id, true)
        .await
        .expect("load")
        .expect("incident")
}

#[tokio::test]
async fn the_incident_page_tells_a_console_incident_in_order_with_outside_text_escaped() {
    let app = spawn_console("").await;
    let id = console_incident(&app).await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;

    let html = app
        .page(&format!("/console/incidents/{id}"), &session)
        .await;

    assert!(
        html.contains(&format!(
            "<h1>Incident #{id}: HighErrorRate on checkout production</h1>"
        )),
        "{html}"
    );
    assert!(html.contains("the chain verifies"), "{html}");
    assert!(!html.contains("<b>Latency"), "{html}");
    let expected_order = [
        "Deploy v41 of checkout production",
        "Deploy v42 of checkout production — suspect",
        "First alert: HighErrorRate",
        "Summary posted on console, suspect v42",
        "<td>mallory</td><td>Pressed Roll back (v42 → v41)",
        "<td>mallory</td><td>Refused: You are not allowed to roll back checkout production",
        "<td>alice</td><td>Pressed Roll back (v42 → v41)",
        "<td>alice</td><td>Asked to confirm v42 → v41",
        "<td>alice</td><td>Confirmed; rollback started on sim (v42 → v41)",
        "Backend progress: ",
        "Rollback succeeded (v42 → v41)",
        "Alert resolved: HighErrorRate",
        "; incident resolved",
    ];
    let mut rest = html.as_str();
    for wanted in expected_order {
        let found = rest
            .find(wanted)
            .unwrap_or_else(|| panic!("{wanted:?} after what came before it in:\n{html}"));
        rest = &rest[found + wanted.len()..];
    }
    // The grouped alert may be recorded before or after the summary (the channel shows
    // the summary a moment before it is audited), but always after the first alert.
    let first = html
        .find("First alert: HighErrorRate")
        .expect("first alert");
    let grouped = html
        .find("Grouped alert: &lt;b&gt;Latency&lt;/b&gt;")
        .unwrap_or_else(|| panic!("the grouped alert, escaped, in:\n{html}"));
    assert!(first < grouped, "{html}");
    assert!(
        html.contains("State: resolved. Alerts grouped: 2."),
        "{html}"
    );
}

#[tokio::test]
async fn every_timeline_line_is_an_audit_record_of_the_incident_at_its_time_and_actor() {
    let app = spawn_console("").await;
    let id = console_incident(&app).await;
    let incident = load_incident(&app, id).await;
    let records = app
        .bot
        .audit()
        .search(&breakwater::audit::AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("audit");
    for entry in incident.timeline.iter().filter(|e| e.kind != "deploy") {
        let record = records
            .iter()
            .find(|r| Some(r.seq) == entry.seq)
            .unwrap_or_else(|| panic!("no audit record for {entry:?}"));
        assert_eq!(record.at, entry.at, "{entry:?}");
        assert_eq!(record.action, entry.kind, "{entry:?}");
        let actor = if record.actor_name.is_empty() {
            "breakwater"
        } else {
            &record.actor_name
        };
        assert_eq!(actor, entry.actor, "{entry:?}");
    }
    let first_alert = incident
        .timeline
        .iter()
        .find(|e| e.kind == "alert.received");
    assert_eq!(first_alert.map(|e| e.offset_seconds), Some(0));
}

#[tokio::test]
async fn the_postmortem_draft_downloads_as_a_markdown_attachment_of_the_incident() {
    let app = spawn_console("").await;
    let id = console_incident(&app).await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;

    let response = app
        .get(
            &format!("/console/incidents/{id}/postmortem.md"),
            Some(&session),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let header = |name: reqwest::header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        header(reqwest::header::CONTENT_TYPE),
        "text/markdown; charset=utf-8"
    );
    assert_eq!(
        header(reqwest::header::CONTENT_DISPOSITION),
        format!("attachment; filename=\"breakwater-incident-{id}.md\"")
    );
    let markdown = response.text().await.expect("body");
    let incident = load_incident(&app, id).await;
    assert_eq!(markdown, breakwater::core::incident::to_markdown(&incident));
    assert!(
        markdown.contains("| mallory | Refused: You are not allowed"),
        "{markdown}"
    );
    assert!(
        markdown.contains("Grouped alert: \\<b\\>Latency\\</b\\>"),
        "{markdown}"
    );
    let rows = markdown.lines().filter(|l| l.starts_with("| 20")).count();
    assert_eq!(rows, incident.timeline.len(), "{markdown}");
}

#[tokio::test]
async fn the_incident_json_downloads_as_a_json_attachment() {
    let app = spawn_console("").await;
    let id = console_incident(&app).await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;

    let response = app
        .get(
            &format!("/console/incidents/{id}/incident.json"),
            Some(&session),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "application/json"
    );
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_DISPOSITION],
        format!("attachment; filename=\"breakwater-incident-{id}.json\"").as_str()
    );
    let json: serde_json::Value = response.json().await.expect("json");
    assert_eq!(json["id"], id);
    assert_eq!(json["ended"]["how"], "resolved");
    assert_eq!(json["alert_count"], 2);
}

#[tokio::test]
async fn incident_pages_need_a_session_and_a_known_numeric_id() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    let response = app.get("/console/incidents/1", None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let response = app.get("/console/incidents/4242", Some(&session)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("There is no incident 4242.")
    );
    let response = app
        .get("/console/incidents/latest/postmortem.md", Some(&session))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_deploys_page_shows_the_last_30_days_recovery_figures_as_the_incident_measured_them() {
    let app = spawn_console("").await;
    let id = console_incident(&app).await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    let incident = load_incident(&app, id).await;

    let html = app.page("/console/deploys", &session).await;

    assert!(
        html.contains(
            "Recovery of checkout: incidents opened in the last 30 days (1) and the 30 days before (0)"
        ),
        "{html}"
    );
    let words = breakwater::core::incident::seconds_words;
    for (name, seconds) in breakwater::core::incident::duration_rows(&incident.durations) {
        let seconds = seconds.unwrap_or_else(|| panic!("{name} measured"));
        // One incident: its duration is both the median and the worst.
        let row = format!(
            "<th scope=\"row\">{name}</th><td>{}</td><td>{}</td><td>—</td><td>—</td><td>—</td>",
            words(Some(seconds)),
            words(Some(seconds))
        );
        assert!(html.contains(&row), "{row} in:\n{html}");
    }
}

#[tokio::test]
async fn the_deploys_page_says_when_a_service_had_no_incidents() {
    let app = spawn_console("").await;
    let session = app.sign_in("alice", ALICE_PASSWORD).await;
    let html = app.page("/console/deploys", &session).await;
    assert!(
        html.contains("No incidents of checkout in the last 60 days."),
        "{html}"
    );
}

#[tokio::test]
async fn the_demo_thread_links_an_incident_timeline_a_newcomer_can_open() {
    let demo = breakwater::demo::Demo::build(breakwater::demo::DemoOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: None,
        alert_after: Duration::from_millis(200),
        resolve_after: Duration::from_millis(200),
    })
    .await
    .expect("demo");
    let password = demo.password().to_owned();
    let address = format!("http://{}", demo.local_addr());
    let bot = demo.bot();
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            demo.run_until(async move { stop.cancelled().await })
                .await
                .map_err(anyhow::Error::from)
        })
    };
    let app = ConsoleApp {
        address: address.clone(),
        bot,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        dir: tempfile::tempdir().expect("tempdir"),
        stop,
        server: Some(server),
    };
    let session = app.sign_in("demo", &password).await;
    let html = app.wait_for(&session, "Incident timeline").await;
    // The demo has more than one incident (checkout's errors, search's canary): each
    // thread links its own; the checkout one must open its timeline.
    let links: Vec<String> =
        Regex::new(r#"href="([^"]+/console/incidents/\d+)"[^>]*>Incident timeline<"#)
            .expect("regex")
            .captures_iter(&html)
            .map(|found| found[1].to_owned())
            .collect();
    assert!(!links.is_empty(), "no Incident timeline link in:\n{html}");
    let mut page = String::new();
    for link in &links {
        let path = link
            .strip_prefix(&address)
            .unwrap_or_else(|| panic!("{link} is not on the demo's address {address}"));
        page = app.page(path, &session).await;
        if page.contains("First alert: HighErrorRate") {
            break;
        }
    }
    assert!(page.contains("First alert: HighErrorRate"), "{page}");
    assert!(
        page.contains("Download the postmortem draft (Markdown)"),
        "{page}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_duration_histograms_hold_the_console_incident_as_its_timeline_measured_it() {
    let app = spawn_console("").await;
    let id = console_incident(&app).await;
    let incident = load_incident(&app, id).await;

    let metrics = app.get("/metrics", None).await.text().await.expect("body");

    let labels = "{service=\"checkout\",environment=\"production\"}";
    let d = incident.durations;
    for (name, seconds) in [
        ("alert_to_summary", d.alert_to_summary),
        ("alert_to_first_press", d.alert_to_first_press),
        ("press_to_rollback_finished", d.press_to_rollback_finished),
        (
            "rollback_finished_to_resolved",
            d.rollback_finished_to_resolved,
        ),
        ("alert_to_resolved", d.alert_to_resolved),
    ] {
        let seconds = seconds.unwrap_or_else(|| panic!("{name} measured"));
        for (suffix, value) in [("count", 1.0), ("sum", seconds as f64)] {
            let prefix = format!("breakwater_incident_{name}_seconds_{suffix}{labels} ");
            let sample: f64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no {prefix} in:\n{metrics}"))
                .parse()
                .expect("a number");
            assert_eq!(sample, value, "{prefix}");
        }
    }
}
