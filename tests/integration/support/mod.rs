//! `spawn_app()`: the real application on port 0 with a SQLite database in a temporary
//! directory, a real webhook receiver as its deployment backend, and the neutral test
//! chat adapter; plus request helpers.

pub(crate) mod argocd;
pub(crate) mod chat;
pub(crate) mod eventually;
#[cfg(feature = "discord")]
pub(crate) mod fake_discord;
#[cfg(feature = "slack")]
pub(crate) mod fake_slack;
pub(crate) mod helm;
#[cfg(feature = "kubernetes")]
pub(crate) mod kubernetes;
pub(crate) mod proxy;
pub(crate) mod receiver;
#[cfg(feature = "kubernetes")]
pub(crate) mod rollouts;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use breakwater::app::{Application, Overrides};
use breakwater::config::Config;
use breakwater::core::bot::Bot;
use breakwater::core::event::{Press, Reply};
use breakwater::core::message::{ButtonAction, MessageRef, Platform};
use breakwater::core::policy::{Actor, Principal};
use tokio_util::sync::CancellationToken;

pub(crate) use chat::{RecordingChat, Shown};
pub(crate) use eventually::{eventually, eventually_within};
pub(crate) use receiver::{Behaviour, Receiver};

pub(crate) const API_TOKEN: &str = "test-api-token-0123456789";
pub(crate) const WEBHOOK_TOKEN: &str = "test-webhook-token-0123456789";
pub(crate) const BACKEND_SECRET: &str = "backend-signing-secret";

/// The base configuration; `{dir}` and `{receiver}` are filled in. Tests append to it.
pub(crate) const BASE_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "2s"

[database]
url = "sqlite://{dir}/breakwater.db"

[api]
token = { file = "api_token" }

[webhooks]
token = { file = "webhook_token" }

[backends.deployer]
kind = "webhook"
url = "{receiver}/rollback"
secret = { file = "backend_secret" }
timeout = "1s"
poll_interval = "50ms"

[[services]]
name = "checkout"
environments = ["staging", "production"]
aliases = ["checkout-svc"]
backend = "deployer"

[[services]]
name = "payments"
environments = ["production"]
backend = "deployer"
"#;

pub(crate) const DEFAULT_POLICY: &str = r#"
[policy]
rollback_allowed = ["console:alice", "console:bob", "slack:U0ALICE", "slack:usergroup:S0ONCALL"]
cooldown = "0s"
"#;

pub(crate) struct TestApp {
    pub address: String,
    pub bot: Bot,
    pub chat: Arc<RecordingChat>,
    pub receiver: Arc<Receiver>,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    stop: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Options for [`spawn_app_with`].
pub(crate) struct AppOptions {
    /// Appended to [`BASE_CONFIG`]; [`DEFAULT_POLICY`] unless it has its own `[policy]`.
    pub extra_config: String,
    /// The test chat's platform and whether it needs a Confirm step.
    pub platform: Platform,
    pub confirm_step: bool,
    /// Reuse a data directory (restart tests).
    pub dir: Option<tempfile::TempDir>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            extra_config: String::new(),
            platform: Platform::Console,
            confirm_step: false,
            dir: None,
        }
    }
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub(crate) async fn spawn_app_with(options: AppOptions) -> TestApp {
    let receiver = Receiver::start(BACKEND_SECRET).await;
    spawn_app_on(options, receiver).await
}

pub(crate) async fn spawn_app_on(options: AppOptions, receiver: Arc<Receiver>) -> TestApp {
    spawn_app_replacing(options, receiver, Replacements::default()).await
}

/// Parts a test builds itself instead of taking them from the configuration.
#[derive(Default)]
pub(crate) struct Replacements {
    /// The store, e.g. PostgreSQL behind a proxy the test can cut.
    pub store: Option<Arc<dyn breakwater::store::Store>>,
    /// Bot settings the configuration does not expose; replaces the default tuning
    /// (a 50 ms refresh delay).
    pub tune: Option<fn(&mut breakwater::core::bot::BotSettings)>,
    /// The bot's clock, e.g. a `ManualClock` the test moves instead of sleeping.
    pub clock: Option<Arc<dyn breakwater::core::clock::Clock>>,
    /// The chat, e.g. the one an earlier process posted in (restart tests).
    pub chat: Option<Arc<RecordingChat>>,
}

pub(crate) async fn spawn_app_replacing(
    options: AppOptions,
    receiver: Arc<Receiver>,
    replacements: Replacements,
) -> TestApp {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "breakwater=warn".into()),
        )
        .with_test_writer()
        .try_init();
    let dir = options
        .dir
        .unwrap_or_else(|| tempfile::tempdir().expect("tempdir"));
    std::fs::write(dir.path().join("api_token"), API_TOKEN).expect("write");
    std::fs::write(dir.path().join("webhook_token"), WEBHOOK_TOKEN).expect("write");
    std::fs::write(dir.path().join("backend_secret"), BACKEND_SECRET).expect("write");
    let policy = if options.extra_config.contains("[policy]") {
        ""
    } else {
        DEFAULT_POLICY
    };
    let text = format!("{BASE_CONFIG}\n{policy}\n{}", options.extra_config)
        .replace("{dir}", &dir.path().display().to_string())
        .replace("{receiver}", &receiver.url);
    let config_path = dir.path().join("breakwater.toml");
    std::fs::write(&config_path, &text).expect("write config");
    let config = Config::load(&config_path).unwrap_or_else(|e| panic!("test config invalid: {e}"));
    let chat = replacements
        .chat
        .unwrap_or_else(|| RecordingChat::new(options.platform, "alerts", options.confirm_step));
    let app = Application::build_with(
        config,
        Overrides {
            store: replacements.store,
            clock: replacements.clock,
            chats: vec![chat.clone()],
            maintenance_every: Some(Duration::from_millis(100)),
            tune: Some(
                replacements
                    .tune
                    .unwrap_or(|settings| settings.refresh_delay = Duration::from_millis(50)),
            ),
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
    TestApp {
        address,
        bot,
        chat,
        receiver,
        http: reqwest::Client::new(),
        dir,
        config_path,
        stop,
        server: Some(server),
    }
}

pub(crate) fn actor(principal: &str, name: &str) -> Actor {
    Actor::new(Principal::parse(principal).expect("principal"), name)
}

impl TestApp {
    /// Stops the server gracefully and returns the data directory for a restart.
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("join").expect("clean shutdown");
        }
        let TestApp { dir, .. } = self;
        dir
    }

    pub(crate) async fn post_deploy(&self, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/deploys", self.address))
            .bearer_auth(API_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// Reports a succeeded deploy that finished `minutes_ago` minutes ago.
    pub(crate) async fn deploy(
        &self,
        service: &str,
        environment: &str,
        version: &str,
        minutes_ago: i64,
    ) {
        let finished = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
        let response = self
            .post_deploy(serde_json::json!({
                "service": service,
                "environment": environment,
                "version": version,
                "author": format!("author-of-{version}"),
                "commit": format!("{version}-0123456789abcdef"),
                "started_at": finished - chrono::Duration::minutes(2),
                "finished_at": finished,
                "status": "succeeded",
            }))
            .await;
        assert!(
            response.status().is_success(),
            "deploy report failed: {}",
            response.text().await.unwrap_or_default()
        );
    }

    pub(crate) async fn post_webhook(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .bearer_auth(WEBHOOK_TOKEN)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// A person posts `text` in the test channel, delivered to the bot as event `event_id`
    /// (the same id again is a platform retry). Returns where it was posted and what the
    /// bot did with it.
    pub(crate) async fn person_says(
        &self,
        event_id: &str,
        text: &str,
    ) -> (MessageRef, breakwater::core::bot::AlertHandled) {
        let message = self.chat.person_posts(text);
        let handled = self.redeliver(event_id, &message, text).await;
        (message, handled)
    }

    /// Delivers an already posted channel message (again) as event `event_id`.
    pub(crate) async fn redeliver(
        &self,
        event_id: &str,
        message: &MessageRef,
        text: &str,
    ) -> breakwater::core::bot::AlertHandled {
        let seen = breakwater::core::event::ChannelMessage {
            text: text.into(),
            posted_at: chrono::Utc::now(),
            ..Default::default()
        };
        let Some(alert) = breakwater::alerts::parse_channel_message(&seen) else {
            return breakwater::core::bot::AlertHandled::Ignored;
        };
        self.bot
            .handle_channel_alert(event_id, message.clone(), alert)
            .await
            .expect("channel message handled")
    }

    /// An Alertmanager (version 4) notification for one firing alert.
    pub(crate) async fn fire_alert(&self, alertname: &str, service: &str, environment: &str) {
        let response = self
            .post_webhook(
                "/webhooks/alertmanager",
                &alertmanager(alertname, service, environment, "firing"),
            )
            .await;
        assert_eq!(
            response.status(),
            200,
            "{}",
            response.text().await.unwrap_or_default()
        );
    }

    /// Presses a button of a message the test chat shows.
    pub(crate) async fn press(&self, shown: &Shown, label_prefix: &str, who: &Actor) -> Reply {
        let action = shown
            .button(label_prefix)
            .unwrap_or_else(|| panic!("no button {label_prefix:?} on:\n{}", shown.plain()));
        self.press_action(action, Some(shown.at.clone()), who).await
    }

    pub(crate) async fn press_action(
        &self,
        action: ButtonAction,
        message: Option<MessageRef>,
        who: &Actor,
    ) -> Reply {
        self.bot
            .handle_press(Press {
                event_id: format!("press-{}", rand_id()),
                actor: who.clone(),
                action,
                channel: Some(format!("{}:alerts", self.chat.platform_name())),
                message,
                confirmed_by_platform: !self.chat_confirm_step(),
            })
            .await
    }

    fn chat_confirm_step(&self) -> bool {
        use breakwater::chat::Chat;
        self.chat.needs_confirm_step()
    }

    /// `GET /readyz`: the status code and the JSON body.
    pub(crate) async fn readyz(&self) -> (u16, serde_json::Value) {
        let response = self
            .http
            .get(format!("{}/readyz", self.address))
            .send()
            .await
            .expect("readyz");
        let status = response.status().as_u16();
        (status, response.json().await.expect("readyz json"))
    }

    /// Polls `/readyz` until `shows(status, body)` holds; returns that answer.
    pub(crate) async fn wait_for_readyz(
        &self,
        what: &str,
        shows: impl Fn(u16, &serde_json::Value) -> bool,
    ) -> (u16, serde_json::Value) {
        eventually(format_args!("/readyz to show {what}"), async || {
            let (status, body) = self.readyz().await;
            if shows(status, &body) {
                Ok((status, body))
            } else {
                Err(format!("{status} {body}"))
            }
        })
        .await
    }

    /// The backend's verified calls, once there are at least `count`.
    pub(crate) async fn wait_for_backend_calls(&self, count: usize) -> Vec<serde_json::Value> {
        eventually(
            std::fmt::from_fn(|f| {
                write!(f, "{count} backend calls; got {:?}", self.receiver.calls())
            }),
            async || {
                let calls = self.receiver.calls();
                (calls.len() >= count).then_some(calls)
            },
        )
        .await
    }

    /// The summary posted for the first alert, once it is there.
    pub(crate) async fn summary(&self) -> Shown {
        self.chat.wait_for_text("recent deploys").await
    }

    /// Audit records of one action, newest first.
    pub(crate) async fn audited(&self, action: &str) -> Vec<breakwater::audit::AuditRecord> {
        self.bot
            .audit()
            .search(&breakwater::audit::AuditQuery {
                action: Some(action.to_owned()),
                limit: 50,
                ..Default::default()
            })
            .await
            .expect("audit search")
    }

    /// Waits for the summary to show the rollback failed, checks that the failure is in
    /// the intact audit chain with the message shown, and returns that message.
    pub(crate) async fn failed_rollback(&self, summary: &Shown) -> String {
        let shown = self
            .chat
            .wait_for_update(&summary.at, "❌ Rollback of")
            .await;
        let text = shown.plain();
        let failed = self.audited("rollback.failed").await;
        assert_eq!(failed.len(), 1, "{failed:?}");
        let details: serde_json::Value =
            serde_json::from_str(&failed[0].details).expect("audit details");
        let detail = details["detail"].as_str().expect("detail").to_owned();
        assert!(
            text.contains(&detail),
            "the summary shows {text:?}, the audit {detail:?}"
        );
        assert_eq!(failed[0].actor, "console:alice");
        let report = self.bot.audit().verify().await.expect("verify");
        assert_eq!(report.problem, None);
        detail
    }
}

impl RecordingChat {
    pub(crate) fn platform_name(&self) -> &'static str {
        use breakwater::chat::Chat;
        self.platform().as_str()
    }
}

pub(crate) fn rand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// An Alertmanager webhook body (version 4) with one alert.
pub(crate) fn alertmanager(
    alertname: &str,
    service: &str,
    environment: &str,
    status: &str,
) -> serde_json::Value {
    let starts = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    serde_json::json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "breakwater",
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "service": service, "environment": environment, "severity": "critical"},
        "commonAnnotations": {"summary": format!("{alertname} on {service}")},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{
            "status": status,
            "labels": {"alertname": alertname, "service": service, "environment": environment, "severity": "critical"},
            "annotations": {"summary": format!("5xx ratio above 5% on {service}")},
            "startsAt": starts,
            "endsAt": if status == "resolved" { chrono::Utc::now().to_rfc3339() } else { "0001-01-01T00:00:00Z".to_owned() },
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=rate",
            "fingerprint": format!("fp-{alertname}-{service}-{environment}"),
        }]
    })
}

/// Applies an RFC 7386 JSON merge patch, as the fake API servers do.
pub(crate) fn json_merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::json!({});
    }
    let object = target.as_object_mut().expect("object");
    for (key, value) in patch {
        if value.is_null() {
            object.remove(key);
        } else {
            json_merge(
                object.entry(key.clone()).or_insert(serde_json::Value::Null),
                value,
            );
        }
    }
}
