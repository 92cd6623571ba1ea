//! The Slack adapter end to end, in both connection modes: the real application with
//! slack-morphism's Web API client pointed at a fake Slack on loopback, Socket Mode
//! envelopes over a real websocket or signed requests to the `/slack/*` endpoints, and a
//! real signed-webhook backend.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_slack::{
    ALERT_CHANNEL, ALICE, APP_TOKEN, BOB, BOT_ID, BOT_TOKEN, BOT_USER_ID, FakeSlack, MALLORY,
    ONCALL_GROUP, OTHER_CHANNEL, SIGNING_SECRET, SlackUser, StoredMessage, buttons, text_of,
};
use crate::support::{AppOptions, TestApp, eventually, spawn_app_with};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Socket,
    Http,
}

struct SlackApp {
    app: TestApp,
    fake: Arc<FakeSlack>,
    mode: Mode,
}

async fn spawn_slack(mode: Mode) -> SlackApp {
    let slack = spawn_slack_with(mode, "", |_| {}).await;
    slack.wait_until_ready().await;
    slack
}

/// The app against a fake Slack that `prepare` set up first, with `slack_extra` appended
/// to `[slack]`; not waiting for the adapter to be ready.
async fn spawn_slack_with(
    mode: Mode,
    slack_extra: &str,
    prepare: impl FnOnce(&FakeSlack),
) -> SlackApp {
    let fake = FakeSlack::start().await;
    prepare(&fake);
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
mode = "{mode}"
bot_token = {{ file = "{{dir}}/slack_bot_token" }}
app_token = {{ file = "{{dir}}/slack_app_token" }}
signing_secret = {{ file = "{{dir}}/slack_signing_secret" }}
api_url = "{api_url}"
alert_channels = ["{ALERT_CHANNEL}"]
{slack_extra}

[policy]
rollback_allowed = ["slack:usergroup:{ONCALL_GROUP}"]
cooldown = "0s"
"#,
        mode = match mode {
            Mode::Socket => "socket",
            Mode::Http => "http",
        },
        api_url = fake.api_url(),
    );
    let app = spawn_app_with(AppOptions {
        extra_config,
        dir: Some(dir),
        ..AppOptions::default()
    })
    .await;
    SlackApp { app, fake, mode }
}

impl SlackApp {
    async fn wait_until_ready(&self) {
        self.app
            .wait_for_readyz("Slack connected", |status, body| {
                status == 200 && body["chat"]["slack"] == "connected"
            })
            .await;
    }

    fn timestamp() -> String {
        chrono::Utc::now().timestamp().to_string()
    }

    /// A request to `path` signed as Slack signs it.
    async fn signed_post(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let timestamp = Self::timestamp();
        let signature = breakwater::chat::slack::sign(SIGNING_SECRET.as_bytes(), &timestamp, &body);
        let mut request = self
            .app
            .http
            .post(format!("{}{path}", self.app.address))
            .header("content-type", content_type)
            .header("x-slack-request-timestamp", timestamp)
            .header("x-slack-signature", signature)
            .body(body);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        request.send().await.expect("request")
    }

    /// Delivers an Events API callback the way the mode does, and checks it was
    /// acknowledged.
    async fn deliver_event(&self, callback: &Value) {
        self.deliver_event_with(callback, &[]).await;
    }

    async fn deliver_event_with(&self, callback: &Value, headers: &[(&str, &str)]) {
        match self.mode {
            Mode::Http => {
                let response = self
                    .signed_post(
                        "/slack/events",
                        "application/json",
                        serde_json::to_vec(callback).expect("json"),
                        headers,
                    )
                    .await;
                assert_eq!(response.status(), 200, "event refused");
            }
            Mode::Socket => {
                let id = self.fake.send_envelope("events_api", callback.clone());
                self.fake.wait_for_ack(&id).await;
            }
        }
    }

    /// `who` clicks `button` on `message` (after Slack's confirm dialog, for buttons with
    /// one).
    async fn click(&self, who: &SlackUser, message: &StoredMessage, button: &Value) {
        self.interact(self.fake.press(who, message, button)).await;
    }

    /// Delivers a `block_actions` payload the way the mode does.
    async fn interact(&self, payload: Value) {
        match self.mode {
            Mode::Http => {
                let body = format!(
                    "payload={}",
                    url::form_urlencoded::byte_serialize(payload.to_string().as_bytes())
                        .collect::<String>()
                );
                let response = self
                    .signed_post(
                        "/slack/interactions",
                        "application/x-www-form-urlencoded",
                        body.into_bytes(),
                        &[],
                    )
                    .await;
                assert_eq!(response.status(), 200, "interaction refused");
                assert!(
                    response.bytes().await.expect("body").is_empty(),
                    "an interaction is acknowledged with an empty 200"
                );
            }
            Mode::Socket => {
                let id = self.fake.send_envelope("interactive", payload);
                self.fake.wait_for_ack(&id).await;
            }
        }
    }

    /// `who` types `/breakwater {text}` in the alert channel.
    async fn command(&self, who: &SlackUser, text: &str) {
        let fields = self.fake.slash_command(who, ALERT_CHANNEL, text);
        match self.mode {
            Mode::Http => {
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(fields)
                    .finish();
                let response = self
                    .signed_post(
                        "/slack/commands",
                        "application/x-www-form-urlencoded",
                        body.into_bytes(),
                        &[],
                    )
                    .await;
                assert_eq!(response.status(), 200, "command refused");
            }
            Mode::Socket => {
                let payload: serde_json::Map<String, Value> =
                    fields.into_iter().map(|(k, v)| (k, json!(v))).collect();
                let id = self
                    .fake
                    .send_envelope("slash_commands", Value::Object(payload));
                self.fake.wait_for_ack(&id).await;
            }
        }
    }

    async fn deploys(&self) {
        self.app.deploy("checkout", "production", "v41", 300).await;
        self.app.deploy("checkout", "production", "v42", 18).await;
    }

    /// Posts `fields` as a message in the alert channel, delivers its event, and returns
    /// the alert's `ts` and the summary in its thread.
    async fn alert_in_channel(&self, fields: Value) -> (String, StoredMessage) {
        let callback = self.fake.post_in_channel(ALERT_CHANNEL, fields);
        let ts = callback["event"]["ts"].as_str().expect("ts").to_owned();
        self.deliver_event(&callback).await;
        let summary = self.summary_in_thread(&ts).await;
        (ts, summary)
    }

    async fn summary_in_thread(&self, ts: &str) -> StoredMessage {
        self.fake
            .wait_for(&format!("a summary in the thread of {ts}"), |fake| {
                fake.replies(ALERT_CHANNEL, ts)
                    .into_iter()
                    .find(|m| m.text().contains("recent deploys"))
            })
            .await
    }

    async fn audited(&self, action: &str) -> Vec<breakwater::audit::AuditRecord> {
        self.app
            .bot
            .audit()
            .search(&breakwater::audit::AuditQuery {
                action: Some(action.into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("audit search")
    }

    async fn wait_for_audited(&self, action: &str, count: usize) {
        eventually(format_args!("{count} {action} records"), async || {
            let found = self.audited(action).await.len();
            if found >= count {
                Ok(())
            } else {
                Err(format!("{found}"))
            }
        })
        .await;
    }
}

/// A channel-message fixture (the neutral form the parsers' tests use) as the fields of
/// the Slack message event its tool would produce.
fn fixture_event(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/alerts/channel/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json");
    let attachments: Vec<Value> = fixture["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let mut attachment = a.clone();
            attachment["fields"] = Value::Array(
                a["fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| json!({"title": f[0], "value": f[1], "short": true}))
                    .collect(),
            );
            attachment
        })
        .collect();
    let mut event = json!({
        "text": fixture["text"],
        "attachments": attachments,
    });
    if fixture["author"]["is_bot"] == true {
        let name = fixture["author"]["name"].as_str().unwrap_or("bot");
        event["subtype"] = json!("bot_message");
        event["bot_id"] = json!(format!("B0{}", name.to_uppercase()));
        event["username"] = json!(name);
    } else {
        event["user"] = json!(ALICE.id);
    }
    event
}

fn rollback_button(summary: &StoredMessage) -> Value {
    summary
        .button("Roll back checkout production to v41")
        .unwrap_or_else(|| panic!("no rollback button on:\n{}", summary.text()))
}

// --- both modes: the rollback path -------------------------------------------------------

async fn alert_to_rollback(mode: Mode) {
    let slack = spawn_slack(mode).await;
    slack.deploys().await;
    let (alert_ts, summary) = slack
        .alert_in_channel(fixture_event("alertmanager_slack_firing"))
        .await;
    assert_eq!(summary.thread_ts.as_deref(), Some(alert_ts.as_str()));
    let text = summary.text();
    assert!(
        text.contains("v42") && text.contains("author-of-v42"),
        "{text}"
    );
    assert!(text.contains("Suspect"), "the suspect is marked: {text}");
    let button = rollback_button(&summary);
    assert_eq!(button["style"], "danger");
    assert!(
        button["action_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("bw:rb:"))
    );
    let dialog = button["confirm"]["text"]["text"]
        .as_str()
        .expect("a confirm dialog");
    assert!(
        dialog.contains("v42") && dialog.contains("v41"),
        "the dialog names from → to: {dialog}"
    );

    slack.click(&ALICE, &summary, &button).await;
    let calls = slack.app.wait_for_backend_calls(1).await;
    assert_eq!(calls[0]["to"], "v41", "{}", calls[0]);
    assert_eq!(calls[0]["requested_by"], format!("slack:{}", ALICE.id));
    let updated = slack.fake.wait_for_update(&summary, "✅ Rolled back").await;
    assert!(updated.text().contains("Alice"), "who: {}", updated.text());
    assert!(
        updated.button("Roll back").is_none(),
        "the buttons are replaced by the status line"
    );
    slack.app.bot.settle().await;
    assert_eq!(
        slack.app.receiver.calls().len(),
        1,
        "exactly one backend call"
    );
    assert_eq!(slack.app.receiver.rejected(), 0, "the call was signed");
    let report = slack.app.bot.audit().verify().await.expect("verify");
    assert_eq!(report.problem, None);
}

#[tokio::test]
async fn http_an_alert_message_gets_a_threaded_summary_and_a_click_rolls_back_once() {
    alert_to_rollback(Mode::Http).await;
}

#[tokio::test]
async fn socket_an_alert_message_gets_a_threaded_summary_and_a_click_rolls_back_once() {
    alert_to_rollback(Mode::Socket).await;
}

async fn retried_event_posts_once(mode: Mode) {
    let slack = spawn_slack(mode).await;
    slack.deploys().await;
    let callback = slack
        .fake
        .post_in_channel(ALERT_CHANNEL, fixture_event("alertmanager_slack_firing"));
    let ts = callback["event"]["ts"].as_str().expect("ts").to_owned();
    slack.deliver_event(&callback).await;
    slack
        .deliver_event_with(
            &callback,
            &[
                ("x-slack-retry-num", "1"),
                ("x-slack-retry-reason", "http_timeout"),
            ],
        )
        .await;
    slack.summary_in_thread(&ts).await;
    // A later alert proves the retry was handled before it.
    let later = slack.fake.post_in_channel(
        ALERT_CHANNEL,
        json!({"user": ALICE.id, "text": "payments production is down, 500s everywhere"}),
    );
    slack.deliver_event(&later).await;
    slack.wait_for_audited("alert.received", 2).await;
    slack.app.bot.settle().await;
    assert_eq!(slack.audited("alert.received").await.len(), 2);
    assert_eq!(
        slack.fake.replies(ALERT_CHANNEL, &ts).len(),
        1,
        "one summary"
    );
}

#[tokio::test]
async fn http_a_retried_event_posts_once() {
    retried_event_posts_once(Mode::Http).await;
}

#[tokio::test]
async fn socket_a_redelivered_envelope_posts_once() {
    retried_event_posts_once(Mode::Socket).await;
}

async fn six_concurrent_clicks(mode: Mode) {
    let slack = Arc::new(spawn_slack(mode).await);
    slack.deploys().await;
    let (_, summary) = slack
        .alert_in_channel(fixture_event("alertmanager_slack_firing"))
        .await;
    let button = rollback_button(&summary);
    let clicks = (0..6).map(|i| {
        let (slack, summary, button) = (slack.clone(), summary.clone(), button.clone());
        async move {
            let who = if i % 2 == 0 { ALICE } else { BOB };
            slack.click(&who, &summary, &button).await;
        }
    });
    futures::future::join_all(clicks).await;
    slack.fake.wait_for_update(&summary, "✅ Rolled back").await;
    slack.app.bot.settle().await;
    assert_eq!(slack.app.receiver.calls().len(), 1, "rolled back once");
    assert_eq!(slack.audited("rollback.started").await.len(), 1);
}

#[tokio::test]
async fn http_six_concurrent_clicks_roll_back_once() {
    six_concurrent_clicks(Mode::Http).await;
}

#[tokio::test]
async fn socket_six_concurrent_clicks_roll_back_once() {
    six_concurrent_clicks(Mode::Socket).await;
}

async fn unauthorised_click(mode: Mode) {
    let slack = spawn_slack(mode).await;
    slack.deploys().await;
    let (_, summary) = slack
        .alert_in_channel(fixture_event("alertmanager_slack_firing"))
        .await;
    slack
        .click(&MALLORY, &summary, &rollback_button(&summary))
        .await;
    let refusal = slack.fake.wait_for_ephemeral(MALLORY.id, "").await;
    assert_eq!(refusal.channel, ALERT_CHANNEL);
    assert_eq!(
        refusal.thread_ts, summary.thread_ts,
        "the refusal is shown in the thread"
    );
    slack.wait_for_audited("rollback.denied", 1).await;
    let denied = slack.audited("rollback.denied").await;
    assert_eq!(denied[0].actor, format!("slack:{}", MALLORY.id));
    slack.app.bot.settle().await;
    assert!(slack.app.receiver.calls().is_empty(), "nothing rolled back");
    let shown = slack
        .fake
        .message(ALERT_CHANNEL, &summary.ts)
        .expect("summary");
    assert!(shown.button("Roll back").is_some(), "the offer stands");
    assert!(
        slack.fake.ephemerals().iter().all(|e| e.user == MALLORY.id),
        "only the presser is told"
    );
}

#[tokio::test]
async fn http_an_unauthorised_click_is_refused_privately_and_audited() {
    unauthorised_click(Mode::Http).await;
}

#[tokio::test]
async fn socket_an_unauthorised_click_is_refused_privately_and_audited() {
    unauthorised_click(Mode::Socket).await;
}

#[tokio::test]
async fn usergroup_members_are_authorised_and_named_in_the_audit() {
    let slack = spawn_slack(Mode::Http).await;
    slack.deploys().await;
    let (_, summary) = slack
        .alert_in_channel(fixture_event("alertmanager_slack_firing"))
        .await;
    slack
        .click(&BOB, &summary, &rollback_button(&summary))
        .await;
    slack.fake.wait_for_update(&summary, "✅ Rolled back").await;
    let started = slack.audited("rollback.started").await;
    assert_eq!(started[0].actor, format!("slack:{}", BOB.id));
    assert!(
        started[0].actor_name.contains("Bob"),
        "display name from users.info: {:?}",
        started[0].actor_name
    );
    assert!(!slack.fake.calls("usergroups.users.list").is_empty());
}

async fn rate_limited_post(mode: Mode) {
    let slack = spawn_slack(mode).await;
    slack.deploys().await;
    slack.fake.rate_limit("chat.postMessage", 2);
    let (_, summary) = slack
        .alert_in_channel(fixture_event("alertmanager_slack_firing"))
        .await;
    assert!(summary.button("Roll back").is_some());
    assert_eq!(
        slack.fake.rate_limited(),
        2,
        "429s were returned and waited out"
    );
}

#[tokio::test]
async fn http_a_429_from_slack_delays_the_summary_but_loses_nothing() {
    rate_limited_post(Mode::Http).await;
}

#[tokio::test]
async fn socket_a_429_from_slack_delays_the_summary_but_loses_nothing() {
    rate_limited_post(Mode::Socket).await;
}

async fn rollback_command(mode: Mode) {
    let slack = spawn_slack(mode).await;
    slack.deploys().await;
    slack.command(&ALICE, "rollback checkout production").await;
    let plan = slack
        .fake
        .wait_for_text("Roll back checkout production to v41")
        .await;
    assert_eq!(plan.channel, ALERT_CHANNEL);
    let answer = slack.fake.wait_for_response("Nothing runs until").await;
    assert_ne!(answer.json["replace_original"], true);
    assert!(
        !answer.id.is_empty(),
        "answered through the command's response_url"
    );
    slack.app.bot.settle().await;
    assert!(
        slack.app.receiver.calls().is_empty(),
        "text alone never rolls back"
    );
}

#[tokio::test]
async fn http_the_rollback_command_answers_with_a_plan_and_never_rolls_back() {
    rollback_command(Mode::Http).await;
}

#[tokio::test]
async fn socket_the_rollback_command_answers_with_a_plan_and_never_rolls_back() {
    rollback_command(Mode::Socket).await;
}

#[tokio::test]
async fn help_deploys_and_unknown_input_are_answered_privately() {
    let slack = spawn_slack(Mode::Http).await;
    slack.deploys().await;
    slack.command(&ALICE, "deploys checkout production").await;
    slack.fake.wait_for_response("v42").await;
    slack.command(&ALICE, "please roll everything back").await;
    slack.fake.wait_for_response("Usage: /breakwater").await;
    slack.command(&ALICE, "help").await;
    let help = slack.fake.wait_for_response("rollback").await;
    assert!(!text_of(&help.json).is_empty());
}

// --- HTTP mode: signatures -----------------------------------------------------------------

#[tokio::test]
async fn forged_stale_and_unsigned_requests_get_401_and_cause_nothing() {
    let slack = spawn_slack(Mode::Http).await;
    slack.deploys().await;
    let callback = slack
        .fake
        .post_in_channel(ALERT_CHANNEL, fixture_event("alertmanager_slack_firing"));
    let body = serde_json::to_vec(&callback).expect("json");
    let now = SlackApp::timestamp();
    let stale = (chrono::Utc::now().timestamp() - 600).to_string();
    let sign = |secret: &str, ts: &str, body: &[u8]| {
        breakwater::chat::slack::sign(secret.as_bytes(), ts, body)
    };
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("unsigned", vec![]),
        (
            "no timestamp",
            vec![("x-slack-signature", sign(SIGNING_SECRET, &now, &body))],
        ),
        (
            "forged with another secret",
            vec![
                ("x-slack-signature", sign("not-the-secret", &now, &body)),
                ("x-slack-request-timestamp", now.clone()),
            ],
        ),
        (
            "signed for another timestamp",
            vec![
                ("x-slack-signature", sign(SIGNING_SECRET, &stale, &body)),
                ("x-slack-request-timestamp", now.clone()),
            ],
        ),
        (
            "stale (signed 10 minutes ago)",
            vec![
                ("x-slack-signature", sign(SIGNING_SECRET, &stale, &body)),
                ("x-slack-request-timestamp", stale.clone()),
            ],
        ),
        (
            "malformed signature",
            vec![
                ("x-slack-signature", "v0=not-hex".to_owned()),
                ("x-slack-request-timestamp", now.clone()),
            ],
        ),
    ];
    for path in ["/slack/events", "/slack/interactions", "/slack/commands"] {
        for (case, headers) in &cases {
            let mut request = slack
                .app
                .http
                .post(format!("{}{path}", slack.app.address))
                .header("content-type", "application/json")
                .body(body.clone());
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), 401, "{path}: {case}");
        }
    }
    slack.app.bot.settle().await;
    assert!(
        slack.audited("alert.received").await.is_empty(),
        "nothing was recorded"
    );
    assert!(
        slack.fake.calls("chat.postMessage").is_empty(),
        "nothing was posted"
    );
}

#[tokio::test]
async fn the_url_verification_challenge_is_echoed() {
    let slack = spawn_slack(Mode::Http).await;
    let body = json!({"token": "unused", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"});
    let response = slack
        .signed_post(
            "/slack/events",
            "application/json",
            serde_json::to_vec(&body).expect("json"),
            &[],
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["challenge"], body["challenge"]);
}

#[tokio::test]
async fn a_signed_request_that_is_not_slacks_gets_400_with_the_reason() {
    let slack = spawn_slack(Mode::Http).await;
    let response = slack
        .signed_post(
            "/slack/interactions",
            "application/x-www-form-urlencoded",
            b"nothing=here".to_vec(),
            &[],
        )
        .await;
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.expect("json");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("payload"))
    );
}

// --- alert sources ------------------------------------------------------------------------

async fn source_gets_a_summary(fields: Value) {
    let slack = spawn_slack(Mode::Socket).await;
    slack.deploys().await;
    let (_, summary) = slack.alert_in_channel(fields).await;
    assert!(summary.text().contains("v42"), "{}", summary.text());
}

#[tokio::test]
async fn a_grafana_attachment_alert_gets_a_threaded_summary() {
    source_gets_a_summary(fixture_event("grafana_slack_firing")).await;
}

#[tokio::test]
async fn a_datadog_attachment_alert_gets_a_threaded_summary() {
    source_gets_a_summary(fixture_event("datadog_slack_triggered")).await;
}

#[tokio::test]
async fn a_pagerduty_text_alert_gets_a_threaded_summary() {
    source_gets_a_summary(fixture_event("pagerduty_slack_triggered")).await;
}

#[tokio::test]
async fn an_opsgenie_attachment_alert_gets_a_threaded_summary() {
    source_gets_a_summary(fixture_event("opsgenie_slack_opened")).await;
}

#[tokio::test]
async fn a_block_kit_alert_gets_a_threaded_summary() {
    source_gets_a_summary(json!({
        "subtype": "bot_message", "bot_id": "B0ALERTMANAGER", "username": "Alertmanager",
        "text": "",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "[FIRING:1] HighErrorRate (checkout production critical)"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Summary:* 5xx ratio above 5% on checkout"}},
            {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
                {"type": "link", "url": "http://alertmanager.example.com:9093/#/alerts", "text": "Alertmanager"}
            ]}]}
        ]
    }))
    .await;
}

#[tokio::test]
async fn a_person_describing_a_problem_gets_a_threaded_summary() {
    source_gets_a_summary(json!({"user": ALICE.id, "text": "checkout production is throwing 500s since the last deploy"}))
        .await;
}

#[tokio::test]
async fn the_bots_own_posts_thread_replies_and_other_channels_are_not_alerts() {
    let slack = spawn_slack(Mode::Socket).await;
    slack.deploys().await;
    let alert = fixture_event("alertmanager_slack_firing");
    let mut own = alert.clone();
    own["bot_id"] = json!(BOT_ID);
    own["user"] = json!(BOT_USER_ID);
    slack
        .deliver_event(&slack.fake.post_in_channel(ALERT_CHANNEL, own))
        .await;
    let mut reply = json!({"user": ALICE.id, "text": "checkout production is down"});
    reply["thread_ts"] = json!("1741944060.000100");
    slack
        .deliver_event(&slack.fake.post_in_channel(ALERT_CHANNEL, reply))
        .await;
    slack
        .deliver_event(&slack.fake.post_in_channel(OTHER_CHANNEL, alert))
        .await;
    let edited = json!({"subtype": "message_changed", "text": "checkout production is down", "user": ALICE.id});
    slack
        .deliver_event(&slack.fake.post_in_channel(ALERT_CHANNEL, edited))
        .await;
    // A real alert afterwards proves the others were handled before it.
    slack
        .alert_in_channel(json!({"user": ALICE.id, "text": "payments production is down"}))
        .await;
    slack.app.bot.settle().await;
    assert_eq!(slack.audited("alert.received").await.len(), 1);
}

#[tokio::test]
async fn concurrent_alerts_of_one_service_and_environment_share_one_thread() {
    let slack = spawn_slack(Mode::Http).await;
    slack.deploys().await;
    let callbacks: Vec<Value> = (0..12)
        .map(|i| {
            slack.fake.post_in_channel(
                ALERT_CHANNEL,
                json!({
                    "subtype": "bot_message", "bot_id": "B0ALERTMANAGER", "username": "Alertmanager",
                    "text": "",
                    "attachments": [{"title": format!("[FIRING:1] HighErrorRate{i} (checkout production critical)"), "color": "danger", "fields": []}],
                }),
            )
        })
        .collect();
    futures::future::join_all(callbacks.iter().map(|c| slack.deliver_event(c))).await;
    slack.wait_for_audited("alert.received", 12).await;
    let summary = slack
        .fake
        .wait_for_text("12 alerts grouped in this thread")
        .await;
    slack.app.bot.settle().await;
    let summaries: Vec<StoredMessage> = slack
        .fake
        .messages()
        .into_iter()
        .filter(|m| m.by_bot && m.text().contains("recent deploys"))
        .collect();
    assert_eq!(summaries.len(), 1, "one thread for the group");
    assert_eq!(summaries[0].ts, summary.ts);
}

#[tokio::test]
async fn a_webhook_alert_is_posted_in_the_alert_channel_and_summarised_in_its_thread() {
    let slack = spawn_slack(Mode::Socket).await;
    slack.deploys().await;
    slack
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let post = slack.fake.wait_for_text("HighErrorRate").await;
    assert_eq!(post.channel, ALERT_CHANNEL);
    assert_eq!(post.thread_ts, None, "a new top-level message");
    let summary = slack.summary_in_thread(&post.ts).await;
    assert!(
        summary
            .button("Roll back checkout production to v41")
            .is_some()
    );
}

// --- Socket Mode --------------------------------------------------------------------------

#[tokio::test]
async fn every_envelope_is_acknowledged_with_its_id() {
    let slack = spawn_slack(Mode::Socket).await;
    slack.deploys().await;
    let (_, summary) = slack
        .alert_in_channel(fixture_event("alertmanager_slack_firing"))
        .await;
    slack
        .click(&MALLORY, &summary, &rollback_button(&summary))
        .await;
    slack.command(&ALICE, "help").await;
    let unknown = slack
        .fake
        .send_envelope("events_api", json!({"type": "app_rate_limited"}));
    slack.fake.wait_for_ack(&unknown).await;
    assert!(
        slack.fake.bad_acks().is_empty(),
        "{:?}",
        slack.fake.bad_acks()
    );
}

#[tokio::test]
async fn a_disconnect_is_survived_with_no_lost_envelope() {
    let slack = spawn_slack(Mode::Socket).await;
    slack.deploys().await;
    slack.fake.wait_for_hello(1).await;
    slack.fake.disconnect("refresh_requested");
    // Slack routes new envelopes to the next connection.
    let callback = slack
        .fake
        .post_in_channel(ALERT_CHANNEL, fixture_event("alertmanager_slack_firing"));
    let ts = callback["event"]["ts"].as_str().expect("ts").to_owned();
    let id = slack.fake.send_envelope("events_api", callback);
    slack.fake.wait_for_hello(2).await;
    slack.fake.wait_for_ack(&id).await;
    slack.summary_in_thread(&ts).await;
    assert_eq!(slack.fake.connections(), 2);
    assert!(
        slack.fake.open_connections() <= 1,
        "the old connection was closed"
    );
    let opens = slack.fake.calls("apps.connections.open");
    assert_eq!(opens.len(), 2, "one fresh URL per connection");
    assert!(opens.iter().all(|c| c.token.as_deref() == Some(APP_TOKEN)));

    slack.fake.disconnect("warning");
    slack.fake.wait_for_hello(3).await;
    slack.wait_until_ready().await;
    assert!(slack.fake.open_connections() <= 1);
}

#[tokio::test]
async fn an_alert_storm_is_grouped_into_threads_within_the_rate_limit_and_fully_recorded() {
    let slack = spawn_slack(Mode::Socket).await;
    slack.deploys().await;
    slack.app.deploy("payments", "production", "p7", 30).await;
    let targets = [
        ("checkout", "production"),
        ("payments", "production"),
        ("checkout", "staging"),
    ];
    let started = tokio::time::Instant::now();
    for i in 0..500 {
        let (service, environment) = targets[i % targets.len()];
        let fields = json!({
            "subtype": "bot_message", "bot_id": "B0ALERTMANAGER", "username": "Alertmanager",
            "text": "",
            "attachments": [{
                "title": format!("[FIRING:1] HighErrorRate{i} ({service} {environment} critical)"),
                "title_link": "http://alertmanager.example.com:9093/#/alerts",
                "fallback": format!("[FIRING:1] HighErrorRate{i} ({service} {environment} critical)"),
                "color": "danger", "fields": [],
            }],
        });
        slack.fake.send_envelope(
            "events_api",
            slack.fake.post_in_channel(ALERT_CHANNEL, fields),
        );
        // 500 alerts in 10 s: paces the flood like a real one; no test step waits on it.
        tokio::time::sleep_until(started + Duration::from_millis(20 * (i as u64 + 1))).await;
    }
    slack.wait_for_audited("alert.received", 500).await;
    slack.app.bot.settle().await;
    eventually("every summary to be updated with the count", async || {
        let summaries: Vec<StoredMessage> = slack
            .fake
            .messages()
            .into_iter()
            .filter(|m| m.by_bot && m.text().contains("recent deploys"))
            .collect();
        let grouped = summaries
            .iter()
            .filter(|m| m.text().contains("alerts grouped in this thread"))
            .count();
        assert!(
            summaries.len() <= targets.len(),
            "one thread per service and environment, got {}",
            summaries.len()
        );
        if summaries.len() == targets.len() && grouped == targets.len() {
            Ok(())
        } else {
            Err(format!(
                "{} summaries, {grouped} with the count",
                summaries.len()
            ))
        }
    })
    .await;
    let received = slack.audited("alert.received").await;
    assert_eq!(received.len(), 500, "every alert is audited");
    // Within Slack's rate: posts and updates in the channel at most one per second.
    let writes = slack.fake.write_times(ALERT_CHANNEL);
    for pair in writes.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(990),
            "two writes in one channel {:?} apart",
            pair[1] - pair[0]
        );
    }
}

// --- hostile text -------------------------------------------------------------------------

/// Every string on the wire to Slack's `chat.*` methods: `text`, every block's text,
/// fields, context elements.
fn strings_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| strings_in(item, out)),
        Value::Object(fields) => fields.values().for_each(|field| strings_in(field, out)),
        _ => {}
    }
}

#[tokio::test]
async fn mentions_and_links_from_alerts_and_deploy_authors_are_escaped_on_the_wire() {
    let slack = spawn_slack(Mode::Http).await;
    slack.app.deploy("checkout", "production", "v41", 300).await;
    let finished = chrono::Utc::now() - chrono::Duration::minutes(18);
    let response = slack
        .app
        .post_deploy(json!({
            "service": "checkout", "environment": "production", "version": "v42",
            "author": "<!here> <@U0123ABCD>",
            "started_at": finished - chrono::Duration::minutes(2),
            "finished_at": finished, "status": "succeeded",
        }))
        .await;
    assert!(response.status().is_success());
    let (_, summary) = slack
        .alert_in_channel(json!({
            "user": ALICE.id,
            "text": "LedgerDown <!channel> <@U0123ABCD> <http://evil.example|click me> checkout production is throwing 500s",
        }))
        .await;
    assert!(summary.text().contains("v42"), "{}", summary.text());
    let mut sent = Vec::new();
    for method in ["chat.postMessage", "chat.update", "chat.postEphemeral"] {
        for call in slack.fake.calls(method) {
            strings_in(&call.params, &mut sent);
        }
    }
    let fallback = summary.json["text"].as_str().unwrap_or_default().to_owned();
    assert!(
        fallback.contains("&lt;") || !fallback.contains('<'),
        "{fallback}"
    );
    for text in &sent {
        for raw in [
            "<!channel>",
            "<!here>",
            "<@U0123ABCD>",
            "<http://evil.example",
        ] {
            assert!(
                !text.contains(raw),
                "{raw} went to Slack unescaped in {text:?}"
            );
        }
    }
    assert!(
        sent.iter().any(|t| t.contains("&lt;!here&gt;")),
        "the deploy author is shown, escaped: {sent:?}"
    );
}

// --- floods, refused tokens, reconnects ---------------------------------------------------

impl SlackApp {
    /// Waits until `/readyz` shows Slack as `state`; returns the body.
    async fn wait_for_slack_state(&self, state: &str) -> Value {
        let (_, body) = self
            .app
            .wait_for_readyz(&format!("Slack {state}"), |_, body| {
                body["chat"]["slack"] == state
            })
            .await;
        body
    }

    /// A sample of `/metrics`: the value of the first line of `name` with every label in
    /// `labels`.
    async fn metric(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let text = self
            .app
            .http
            .get(format!("{}/metrics", self.app.address))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("text");
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")))
            .find(|line| labels.iter().all(|label| line.contains(label)))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    /// Posts a signed `block_actions` payload; the status and `Retry-After`.
    async fn post_interaction(&self, payload: &Value) -> (u16, Option<String>) {
        let body = format!(
            "payload={}",
            url::form_urlencoded::byte_serialize(payload.to_string().as_bytes())
                .collect::<String>()
        );
        let response = self
            .signed_post(
                "/slack/interactions",
                "application/x-www-form-urlencoded",
                body.into_bytes(),
                &[],
            )
            .await;
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (response.status().as_u16(), retry_after)
    }
}

/// A button on someone else's message that is not breakwater's.
fn foreign_button() -> Value {
    json!({"action_id": "poll-vote-yes", "value": "yes", "text": {"type": "plain_text", "text": "Yes"}})
}

#[tokio::test]
async fn a_flood_of_foreign_button_presses_stays_within_the_queue_bounds_and_alerts_still_get_summaries()
 {
    let slack = spawn_slack(Mode::Http).await;
    slack.deploys().await;
    let posted = slack.fake.post_in_channel(
        ALERT_CHANNEL,
        json!({"user": BOB.id, "text": "lunch poll: pizza?"}),
    );
    let poll_ts = posted["event"]["ts"].as_str().expect("ts").to_owned();
    let poll = slack
        .fake
        .message(ALERT_CHANNEL, &poll_ts)
        .expect("the poll is stored");

    // Not flooded: the private answer arrives.
    let (status, _) = slack
        .post_interaction(&slack.fake.press(&MALLORY, &poll, &foreign_button()))
        .await;
    assert_eq!(status, 200);
    slack
        .fake
        .wait_for_ephemeral(MALLORY.id, "not one of breakwater's")
        .await;

    // Flooded: 1,500 presses, 32 at a time.
    use futures::StreamExt;
    let presses: Vec<Value> = (0..1500)
        .map(|_| slack.fake.press(&MALLORY, &poll, &foreign_button()))
        .collect();
    let answers: Vec<(u16, Option<String>)> = futures::stream::iter(presses.iter())
        .map(|payload| slack.post_interaction(payload))
        .buffer_unordered(32)
        .collect()
        .await;
    for (status, retry_after) in &answers {
        match status {
            200 => {}
            503 => assert!(retry_after.is_some(), "a 503 says when to retry"),
            other => panic!("a press answered {other}"),
        }
    }
    let interactions = slack
        .metric("breakwater_chat_queue_peak", &["queue=\"interactions\""])
        .await
        .expect("the interaction set's peak is a metric");
    let private = slack
        .metric("breakwater_chat_queue_peak", &["queue=\"private_replies\""])
        .await
        .expect("the private lane's peak is a metric");
    let channel = slack
        .metric("breakwater_chat_queue_peak", &["queue=\"channel\""])
        .await
        .unwrap_or(0.0);
    assert!(
        (1.0..=256.0).contains(&interactions),
        "interactions in flight {interactions}"
    );
    assert!(
        (1.0..=128.0).contains(&private),
        "private replies in flight {private}"
    );
    assert!(channel <= 256.0, "channel queue {channel}");
    let dropped = slack
        .metric(
            "breakwater_chat_dropped_total",
            &["queue=\"private_replies\""],
        )
        .await
        .unwrap_or(0.0);
    assert!(
        dropped > 0.0,
        "beyond postEphemeral's budget, late private replies are dropped"
    );
    // The private replies never waited behind the channel's one message a second: the
    // burst Slack allows (100 a minute) went out.
    slack
        .fake
        .wait_for("100 private replies", |fake| {
            (fake.ephemerals().len() >= 100).then_some(())
        })
        .await;

    // An alert in the same channel still gets its summary.
    let (_, summary) = slack
        .alert_in_channel(fixture_event("alertmanager_slack_firing"))
        .await;
    assert!(summary.text().contains("v42"), "{}", summary.text());
}

#[tokio::test]
async fn a_revoked_bot_token_stops_the_slack_adapter_and_readyz_names_the_setting() {
    let slack = spawn_slack_with(Mode::Http, "", |fake| {
        fake.refuse("auth.test", "token_revoked")
    })
    .await;
    let body = slack.wait_for_slack_state("failed").await;
    assert_eq!(body["ready"], false);
    let reason = body["problems"]["slack"].as_str().unwrap_or_default();
    assert!(reason.contains("slack.bot_token"), "{body}");
    assert!(reason.contains("token_revoked"), "{body}");
    // The rest of the bot keeps working.
    slack.app.deploy("checkout", "production", "v41", 30).await;
    let health = slack
        .app
        .http
        .get(format!("{}/healthz", slack.app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), 200);
    // A signed event is still acknowledged, and asks Slack nothing more.
    slack
        .deliver_event(
            &slack
                .fake
                .post_in_channel(ALERT_CHANNEL, fixture_event("alertmanager_slack_firing")),
        )
        .await;
    slack.app.bot.settle().await;
    assert_eq!(
        slack.fake.calls("auth.test").len(),
        1,
        "a refused token is not retried"
    );
    assert_eq!(
        slack.wait_for_slack_state("failed").await["chat"]["slack"],
        "failed"
    );
}

#[tokio::test]
async fn a_refused_app_token_stops_socket_mode_without_a_retry_loop() {
    let slack = spawn_slack_with(Mode::Socket, "", |fake| {
        fake.refuse("apps.connections.open", "invalid_auth")
    })
    .await;
    let body = slack.wait_for_slack_state("failed").await;
    let reason = body["problems"]["slack"].as_str().unwrap_or_default();
    assert!(reason.contains("slack.app_token"), "{body}");
    assert!(reason.contains("invalid_auth"), "{body}");
    assert_eq!(slack.fake.calls("apps.connections.open").len(), 1);
    assert_eq!(slack.fake.connections(), 0);
}

#[tokio::test]
async fn socket_mode_backs_off_while_slack_closes_before_hello() {
    const CLOSED: usize = 5;
    const FIRST_PAUSE: Duration = Duration::from_millis(20);
    let slack = spawn_slack_with(Mode::Socket, "reconnect_backoff = \"20ms\"", |fake| {
        fake.close_before_hello(CLOSED)
    })
    .await;
    slack.wait_until_ready().await;
    assert_eq!(slack.fake.closed_before_hello(), CLOSED);
    let opens = slack.fake.calls("apps.connections.open");
    assert_eq!(
        opens.len(),
        CLOSED + 1,
        "one apps.connections.open per connection, none in between"
    );
    // Each attempt after a connection that ended before hello waited at least the
    // doubling backoff: 20, 40, 80, 160, 320 ms.
    for (attempt, pair) in opens.windows(2).enumerate() {
        let least = FIRST_PAUSE * 2u32.pow(u32::try_from(attempt).expect("small"));
        assert!(
            pair[1].at - pair[0].at >= least,
            "attempt {} came {:?} after the previous one, under the backoff of {least:?}",
            attempt + 1,
            pair[1].at - pair[0].at
        );
    }
}

#[tokio::test]
async fn socket_mode_backs_off_while_slack_hangs_up_right_after_hello() {
    const HUNG_UP: usize = 4;
    const FIRST_PAUSE: Duration = Duration::from_millis(20);
    let slack = spawn_slack_with(Mode::Socket, "reconnect_backoff = \"20ms\"", |fake| {
        fake.close_after_hello(HUNG_UP)
    })
    .await;
    // The connection after the hang-ups stays.
    slack.fake.wait_for_hello(HUNG_UP + 1).await;
    slack.wait_until_ready().await;
    let opens = slack.fake.calls("apps.connections.open");
    assert_eq!(opens.len(), HUNG_UP + 1);
    for (attempt, pair) in opens.windows(2).enumerate() {
        let least = FIRST_PAUSE * 2u32.pow(u32::try_from(attempt).expect("small"));
        assert!(
            pair[1].at - pair[0].at >= least,
            "attempt {} came {:?} after the previous one, under the backoff of {least:?}",
            attempt + 1,
            pair[1].at - pair[0].at
        );
    }
}

// --- private replies that follow the plan -----------------------------------------------

#[tokio::test]
async fn a_click_on_the_summary_leaves_no_private_rolling_back_reply_behind() {
    let slack = spawn_slack(Mode::Socket).await;
    slack.deploys().await;
    let (_, summary) = slack
        .alert_in_channel(fixture_event("alertmanager_slack_firing"))
        .await;
    slack
        .click(&ALICE, &summary, &rollback_button(&summary))
        .await;
    let updated = slack.fake.wait_for_update(&summary, "✅ Rolled back").await;
    assert!(
        updated
            .history
            .iter()
            .any(|version| text_of(version).contains("⏳ Rolling back")),
        "the pressed summary showed the progress in place"
    );
    slack.app.bot.settle().await;
    let lingering: Vec<String> = slack
        .fake
        .ephemerals()
        .iter()
        .map(|e| text_of(&e.json))
        .chain(slack.fake.responses().iter().map(|r| text_of(&r.json)))
        .filter(|text| text.contains("Rolling back"))
        .collect();
    assert!(lingering.is_empty(), "{lingering:?}");
}

#[tokio::test]
async fn a_privately_answered_plan_is_replaced_by_its_outcome_through_the_response_url() {
    let slack = spawn_slack(Mode::Http).await;
    slack.deploys().await;
    slack.fake.refuse("chat.postMessage", "not_in_channel");
    slack.command(&ALICE, "rollback checkout production").await;
    let private_plan = slack
        .fake
        .wait_for_response("Roll back checkout production to v41")
        .await;
    let shown = StoredMessage {
        channel: ALERT_CHANNEL.to_owned(),
        ts: "1741944000.000900".to_owned(),
        thread_ts: None,
        by_bot: true,
        json: private_plan.json.clone(),
        history: vec![],
    };
    let button = shown.button("Roll back").expect("a Roll back button");
    let mut payload = slack.fake.press(&ALICE, &shown, &button);
    // Slack's payload for a press on an ephemeral message.
    payload["container"]["is_ephemeral"] = json!(true);
    if let Some(fields) = payload.as_object_mut() {
        fields.remove("message");
    }
    let response_id = payload["response_url"]
        .as_str()
        .and_then(|url| url.rsplit('/').next())
        .expect("response_url")
        .to_owned();
    slack.interact(payload).await;

    let outcome = slack
        .fake
        .wait_for("the outcome through the press's response_url", |fake| {
            fake.responses()
                .into_iter()
                .find(|r| r.id == response_id && text_of(&r.json).contains("✅ Rolled back"))
        })
        .await;
    assert_eq!(outcome.json["replace_original"], true, "{}", outcome.json);
    assert!(
        buttons(&outcome.json).is_empty(),
        "the stale Roll back button is gone: {}",
        outcome.json
    );
}

// --- threads that read right --------------------------------------------------------------

const SHOP_SERVICE: &str = r#"
[[services]]
name = "shop"
environments = ["production"]
backend = "deployer"
owners = ["@shop-oncall"]
repository = "https://github.com/acme/shop"
"#;

#[tokio::test]
async fn a_resolved_incident_reads_resolved_and_links_to_investigate_on_the_wire() {
    let slack = spawn_slack_with(Mode::Socket, SHOP_SERVICE, |_| {}).await;
    slack.wait_until_ready().await;
    for (version, commit, minutes) in [("s41", "a1b2c3d", 300), ("s42", "e4f5a6b", 18)] {
        let finished = chrono::Utc::now() - chrono::Duration::minutes(minutes);
        let response = slack
            .app
            .post_deploy(json!({
                "service": "shop", "environment": "production", "version": version,
                "commit": commit, "status": "succeeded",
                "started_at": (finished - chrono::Duration::minutes(2)).to_rfc3339(),
                "finished_at": finished.to_rfc3339(),
            }))
            .await;
        assert!(response.status().is_success());
    }
    slack
        .app
        .fire_alert("HighErrorRate", "shop", "production")
        .await;
    let post = slack.fake.wait_for_text("HighErrorRate").await;
    let summary = slack.summary_in_thread(&post.ts).await;
    let blocks = summary.json["blocks"].to_string();
    for link in [
        "<https://github.com/acme/shop/commit/e4f5a6b|",
        "<https://github.com/acme/shop/compare/a1b2c3d...e4f5a6b|compare>",
    ] {
        assert!(blocks.contains(link), "{link} missing: {blocks}");
    }
    assert!(
        summary.text().contains("Owners: @shop-oncall"),
        "{}",
        summary.text()
    );

    let response = slack
        .app
        .post_webhook(
            "/webhooks/alertmanager",
            &crate::support::alertmanager("HighErrorRate", "shop", "production", "resolved"),
        )
        .await;
    assert_eq!(response.status(), 200);

    let header = slack.fake.wait_for_update(&post, "✅").await;
    assert!(!header.text().contains('🚨'), "{}", header.text());
    let resolved = slack
        .fake
        .wait_for_update(&summary, "No rollback button: the alert resolved at")
        .await;
    assert!(
        resolved.text().contains("✅ Resolved at"),
        "{}",
        resolved.text()
    );
    assert!(
        resolved.button("Roll back").is_none(),
        "{}",
        resolved.text()
    );
}
