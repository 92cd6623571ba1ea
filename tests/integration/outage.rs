//! The database going away and coming back under a running application: requests fail
//! fast with 503 naming the store, `/readyz` says so, and alerts acknowledged meanwhile
//! are held and recorded once it is back. The outage is a loopback proxy in front of the
//! machine's PostgreSQL that the test cuts and restores (no database server is stopped);
//! the tests skip without `BREAKWATER_TEST_POSTGRES_URL`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use breakwater::core::bot::AlertHandled;
use breakwater::core::rollback::PlanId;
use breakwater::store::{PostgresStore, Store};

use crate::support::proxy::CuttableProxy;
use crate::support::{
    AppOptions, Receiver, Replacements, TestApp, alertmanager, eventually, spawn_app_replacing,
};

/// The application on a PostgreSQL schema reached through a proxy the test controls.
pub(crate) struct OutageApp {
    pub(crate) app: TestApp,
    pub(crate) proxy: CuttableProxy,
    url: String,
    schema: String,
}

async fn spawn_behind_proxy(
    tune: Option<fn(&mut breakwater::core::bot::BotSettings)>,
) -> Option<OutageApp> {
    spawn_behind_proxy_with(AppOptions::default(), tune).await
}

pub(crate) async fn spawn_behind_proxy_with(
    options: AppOptions,
    tune: Option<fn(&mut breakwater::core::bot::BotSettings)>,
) -> Option<OutageApp> {
    let Ok(url) = std::env::var("BREAKWATER_TEST_POSTGRES_URL") else {
        eprintln!("skipping: BREAKWATER_TEST_POSTGRES_URL not set");
        return None;
    };
    let parsed = url::Url::parse(&url).expect("postgres url");
    let upstream = tokio::net::lookup_host((
        parsed.host_str().expect("host"),
        parsed.port().unwrap_or(5432),
    ))
    .await
    .expect("resolve postgres")
    .next()
    .expect("an address");
    let proxy = CuttableProxy::start(upstream).await;
    let mut through_proxy = parsed.clone();
    through_proxy.set_host(Some("127.0.0.1")).expect("host");
    through_proxy
        .set_port(Some(proxy.address.port()))
        .expect("port");
    let schema = format!("bw_outage_{}", PlanId::generate());
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::connect_in_schema(through_proxy.as_str(), &schema)
            .await
            .expect("open postgres through the proxy"),
    );
    let app = spawn_app_replacing(
        options,
        Receiver::start(crate::support::BACKEND_SECRET).await,
        Replacements {
            store: Some(store),
            tune,
            ..Replacements::default()
        },
    )
    .await;
    Some(OutageApp {
        app,
        proxy,
        url,
        schema,
    })
}

impl OutageApp {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.app
            .http
            .get(format!("{}{path}", self.app.address))
            .bearer_auth(crate::support::API_TOKEN)
            .send()
            .await
            .expect("request")
    }

    /// Waits until `/readyz` says the store is reachable again.
    pub(crate) async fn wait_until_ready(&self) {
        self.app
            .wait_for_readyz("the store reachable", |_, body| body["store"] == "ok")
            .await;
    }

    /// Waits until the bot holds no alert any more.
    async fn wait_until_drained(&self) {
        eventually("the held alerts to be recorded", async || {
            (self.app.bot.held_alerts() == 0).then_some(())
        })
        .await;
    }

    pub(crate) async fn finish(self) {
        let OutageApp {
            app,
            proxy,
            url,
            schema,
        } = self;
        proxy.restore().await;
        drop(app.stop().await);
        drop(proxy);
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&mut conn)
        .await
        .expect("drop schema");
    }
}

fn deploy_report() -> serde_json::Value {
    serde_json::json!({
        "service": "checkout",
        "environment": "production",
        "version": "v43",
        "started_at": (chrono::Utc::now() - chrono::Duration::minutes(3)).to_rfc3339(),
        "status": "succeeded",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_requests_get_503_naming_it_and_readyz_says_so() {
    let Some(outage) = spawn_behind_proxy(None).await else {
        return;
    };
    outage.proxy.cut();

    let started = Instant::now();
    let report = outage.app.post_deploy(deploy_report()).await;
    let report_took = started.elapsed();
    let status = report.status();
    let retry_after = report.headers().get("retry-after").cloned();
    let body: serde_json::Value = report.json().await.expect("json");
    let listing = outage.get("/api/v1/deploys?service=checkout").await;
    let started = Instant::now();
    let ready = outage.get("/readyz").await;
    let ready_took = started.elapsed();
    let ready_status = ready.status();
    let ready_body: serde_json::Value = ready.json().await.expect("json");
    eprintln!(
        "during the outage: deploy report answered in {report_took:?}, /readyz in {ready_took:?}"
    );

    assert_eq!(status, 503, "{body}");
    assert_eq!(
        retry_after.as_ref().map(|v| v.to_str().ok()),
        Some(Some("5"))
    );
    let message = body["error"].as_str().expect("error message");
    assert!(
        message.contains("database unavailable") && message.contains("database.url"),
        "{message}"
    );
    assert_eq!(listing.status(), 503);
    assert_eq!(ready_status, 503, "{ready_body}");
    assert_eq!(ready_body["store"], "unreachable");
    assert!(
        ready_body["problems"]["store"]
            .as_str()
            .is_some_and(|p| p.contains("database.url")),
        "{ready_body}"
    );

    outage.proxy.restore().await;
    outage.wait_until_ready().await;
    let report = outage.app.post_deploy(deploy_report()).await;
    assert_eq!(report.status(), 201);
    outage.finish().await;
}

#[tokio::test]
async fn while_the_database_is_down_console_pages_answer_503_with_retry_after_not_500() {
    let hash = breakwater::chat::console::auth::hash_password("correct horse").expect("hash");
    let options = AppOptions {
        extra_config: format!(
            "[console]\nusers = [{{ name = \"alice\", password_hash = \"{hash}\" }}]\n"
        ),
        ..AppOptions::default()
    };
    let Some(outage) = spawn_behind_proxy_with(options, None).await else {
        return;
    };
    outage.proxy.cut();

    let page = outage
        .app
        .http
        .get(format!("{}/console", outage.app.address))
        .header(
            reqwest::header::COOKIE,
            "bw_session=a-session-the-store-must-look-up",
        )
        .send()
        .await
        .expect("request");

    assert_eq!(page.status(), 503);
    assert!(page.headers().contains_key("retry-after"));
    let html = page.text().await.expect("body");
    assert!(html.contains("Service Unavailable"), "{html}");
    outage.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_acknowledged_while_the_database_is_down_are_recorded_once_it_is_back() {
    let Some(outage) = spawn_behind_proxy(None).await else {
        return;
    };
    outage
        .app
        .deploy("checkout", "production", "v41", 300)
        .await;
    outage.app.deploy("checkout", "production", "v42", 18).await;
    outage.proxy.cut();

    let webhook = outage
        .app
        .post_webhook(
            "/webhooks/alertmanager",
            &alertmanager("HighErrorRate", "checkout", "production", "firing"),
        )
        .await;
    let webhook_status = webhook.status();
    let webhook_body: serde_json::Value = webhook.json().await.expect("json");
    let (_, channel) = outage
        .app
        .person_says("Ev-outage", "checkout production is throwing 500s")
        .await;
    let ready: serde_json::Value = outage.get("/readyz").await.json().await.expect("json");

    assert_eq!(webhook_status, 200, "{webhook_body}");
    assert_eq!(webhook_body["held"], 1, "{webhook_body}");
    assert_eq!(channel, AlertHandled::Held);
    assert_eq!(ready["held_alerts"], 2, "{ready}");

    outage.proxy.restore().await;
    outage.wait_until_drained().await;
    let summary = outage.app.summary().await;
    assert!(summary.plain().contains("v42"), "{}", summary.plain());
    let received = outage.app.audited("alert.received").await;
    assert_eq!(received.len(), 2, "{received:?}");
    // Recorded in the order they arrived (the audit search lists newest first).
    assert!(
        received[1].details.contains("\"origin\":\"webhook\""),
        "{received:?}"
    );
    assert!(
        received[0].details.contains("\"source\":\"person\""),
        "{received:?}"
    );
    // Delivered again by the platform, the channel message is a known event now.
    let again = outage
        .app
        .redeliver(
            "Ev-outage",
            &outage
                .app
                .chat
                .person_posts("checkout production is throwing 500s"),
            "checkout production is throwing 500s",
        )
        .await;
    assert_eq!(again, AlertHandled::Duplicate);
    let report = outage.app.bot.audit().verify().await.expect("verify");
    assert_eq!(report.problem, None);
    outage.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_alerts_are_refused_with_503_once_the_hold_is_full_and_taken_after() {
    let Some(outage) = spawn_behind_proxy(Some(|settings| {
        settings.refresh_delay = Duration::from_millis(50);
        settings.alert_hold = 1;
    }))
    .await
    else {
        return;
    };
    outage.proxy.cut();

    let first = outage
        .app
        .post_webhook(
            "/webhooks/alertmanager",
            &alertmanager("HighErrorRate", "checkout", "production", "firing"),
        )
        .await;
    let second_body = alertmanager("HighLatency", "payments", "production", "firing");
    let refused = outage
        .app
        .post_webhook("/webhooks/alertmanager", &second_body)
        .await;

    assert_eq!(first.status(), 200);
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    assert!(!outage.app.bot.accepting_alerts());

    outage.proxy.restore().await;
    outage.wait_until_drained().await;
    let redelivered = outage
        .app
        .post_webhook("/webhooks/alertmanager", &second_body)
        .await;
    assert_eq!(redelivered.status(), 200);
    let body: serde_json::Value = redelivered.json().await.expect("json");
    assert_eq!(body["recorded"], 1, "{body}");
    assert_eq!(outage.app.audited("alert.received").await.len(), 2);
    outage.finish().await;
}

#[cfg(feature = "slack")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_events_get_503_while_the_hold_is_full_and_held_ones_are_answered_once_it_is_back() {
    use crate::support::fake_slack::{
        ALERT_CHANNEL, ALICE, APP_TOKEN, BOT_TOKEN, FakeSlack, SIGNING_SECRET,
    };
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (file, secret) in [
        ("slack_bot_token", BOT_TOKEN),
        ("slack_app_token", APP_TOKEN),
        ("slack_signing_secret", SIGNING_SECRET),
    ] {
        std::fs::write(dir.path().join(file), secret).expect("write");
    }
    let extra_config = format!(
        r#"
[slack]
mode = "http"
bot_token = {{ file = "{{dir}}/slack_bot_token" }}
app_token = {{ file = "{{dir}}/slack_app_token" }}
signing_secret = {{ file = "{{dir}}/slack_signing_secret" }}
api_url = "{api_url}"
alert_channels = ["{ALERT_CHANNEL}"]
"#,
        api_url = fake.api_url(),
    );
    let Some(outage) = spawn_behind_proxy_with(
        AppOptions {
            extra_config,
            dir: Some(dir),
            ..AppOptions::default()
        },
        Some(|settings| {
            settings.refresh_delay = Duration::from_millis(50);
            settings.alert_hold = 1;
        }),
    )
    .await
    else {
        return;
    };
    outage
        .app
        .deploy("checkout", "production", "v41", 300)
        .await;
    outage.app.deploy("checkout", "production", "v42", 18).await;
    let deliver = |callback: serde_json::Value| {
        let body = serde_json::to_vec(&callback).expect("json");
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature = breakwater::chat::slack::sign(SIGNING_SECRET.as_bytes(), &timestamp, &body);
        outage
            .app
            .http
            .post(format!("{}/slack/events", outage.app.address))
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", timestamp)
            .header("x-slack-signature", signature)
            .body(body)
            .send()
    };
    outage.proxy.cut();

    let first = fake.post_in_channel(
        ALERT_CHANNEL,
        serde_json::json!({"user": ALICE.id, "text": "checkout production is throwing 500s"}),
    );
    let first_ts = first["event"]["ts"].as_str().expect("ts").to_owned();
    let acknowledged = deliver(first).await.expect("deliver");
    eventually("the first event to be held", async || {
        (outage.app.bot.held_alerts() > 0).then_some(())
    })
    .await;
    let second = fake.post_in_channel(
        ALERT_CHANNEL,
        serde_json::json!({"user": ALICE.id, "text": "payments production errors everywhere"}),
    );
    let refused = deliver(second).await.expect("deliver");

    assert_eq!(acknowledged.status(), 200);
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));

    outage.proxy.restore().await;
    outage.wait_until_drained().await;
    fake.wait_for(&format!("a summary in the thread of {first_ts}"), |fake| {
        fake.replies(ALERT_CHANNEL, &first_ts)
            .into_iter()
            .find(|m| m.text().contains("recent deploys"))
    })
    .await;
    outage.finish().await;
}
