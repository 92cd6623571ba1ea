//! The Discord adapter end to end: the real application with serenity pointed at a fake
//! Discord on loopback (REST and gateway), a real signed-webhook backend, and Ed25519-
//! signed requests to `POST /discord/interactions`.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

use crate::support::fake_discord::{
    ALERT_CHANNEL, APPLICATION_ID, BOT_USER_ID, DiscordUser, FakeDiscord, GUILD_ID,
    NO_THREADS_CHANNEL, ONCALL_ROLE, RouteKind, StoredMessage, apply_callback_to, buttons,
};
use crate::support::{AppOptions, TestApp, eventually, spawn_app_with};

const TOKEN: &str = "test-discord-token";

struct DiscordApp {
    app: TestApp,
    fake: Arc<FakeDiscord>,
    key: SigningKey,
}

fn alice() -> DiscordUser {
    DiscordUser::new("2000000000000000001", "Alice", &[ONCALL_ROLE])
}

fn bob() -> DiscordUser {
    DiscordUser::new("2000000000000000002", "Bob", &[ONCALL_ROLE])
}

fn mallory() -> DiscordUser {
    DiscordUser::new("2000000000000000003", "Mallory", &["3000000000000000001"])
}

async fn spawn_discord(mode: &str) -> DiscordApp {
    let fake = FakeDiscord::start().await;
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let public_key = hex::encode(key.verifying_key().to_bytes());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("discord_token"), TOKEN).expect("write");
    let extra_config = format!(
        r#"
[[services]]
name = "ledger"
environments = ["production"]
backend = "deployer"
discord_channel = "{NO_THREADS_CHANNEL}"

[discord]
mode = "{mode}"
token = {{ file = "{{dir}}/discord_token" }}
application_id = "{APPLICATION_ID}"
public_key = "{public_key}"
guild_id = "{GUILD_ID}"
alert_channels = ["{ALERT_CHANNEL}"]
api_url = "{api_url}"

[policy]
rollback_allowed = ["discord:role:{ONCALL_ROLE}"]
cooldown = "0s"
"#,
        api_url = fake.api_url(),
    );
    let app = spawn_app_with(AppOptions {
        extra_config,
        dir: Some(dir),
        ..AppOptions::default()
    })
    .await;
    DiscordApp { app, fake, key }
}

impl DiscordApp {
    /// Signs `body` as Discord does: Ed25519 over timestamp ‖ body.
    fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let message = [timestamp.as_bytes(), body].concat();
        hex::encode(self.key.sign(&message).to_bytes())
    }

    fn now() -> String {
        chrono::Utc::now().timestamp().to_string()
    }

    async fn post_interaction(&self, body: &[u8], headers: &[(&str, String)]) -> reqwest::Response {
        let mut request = self
            .app
            .http
            .post(format!("{}/discord/interactions", self.app.address))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.expect("request")
    }

    /// Sends a signed interaction; returns Discord's view of the answer (the response
    /// body), applied to the fake as Discord would apply it.
    async fn interact(&self, interaction: &Value) -> Value {
        let body = serde_json::to_vec(interaction).expect("json");
        let timestamp = Self::now();
        let signature = self.sign(&timestamp, &body);
        let response = self
            .post_interaction(
                &body,
                &[
                    ("x-signature-ed25519", signature),
                    ("x-signature-timestamp", timestamp),
                ],
            )
            .await;
        assert_eq!(response.status(), 200, "interaction refused");
        let answer: Value = response.json().await.expect("json answer");
        apply_callback_to(&self.fake, interaction, &answer);
        answer
    }

    async fn deploys(&self) {
        self.app.deploy("checkout", "production", "v41", 300).await;
        self.app.deploy("checkout", "production", "v42", 18).await;
    }

    /// The summary in the alert's thread, once posted.
    async fn summary(&self) -> StoredMessage {
        self.fake.wait_for_text("recent deploys").await
    }

    /// Presses Roll back as `who`; returns the ephemeral confirmation shown to them.
    async fn press_rollback(&self, who: &DiscordUser, summary: &StoredMessage) -> StoredMessage {
        let custom_id = summary.button("Roll back").expect("a Roll back button");
        let press = self.fake.component_interaction(who, summary, &custom_id);
        let answer = self.interact(&press).await;
        assert_eq!(answer["type"], 4, "{answer}");
        assert_eq!(answer["data"]["flags"], 64, "ephemeral: {answer}");
        self.fake.response_to(&press).expect("the confirmation")
    }

    async fn audit_actions(&self, action: &str) -> Vec<breakwater::audit::AuditRecord> {
        self.app
            .bot
            .audit()
            .search(&breakwater::audit::AuditQuery {
                action: Some(action.into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("audit search")
    }
}

/// Request headers as (name, value) pairs.
type Headers = Vec<(&'static str, String)>;

fn answer_text(answer: &Value) -> String {
    crate::support::fake_discord::text_of(&answer["data"])
}

// --- HTTP interactions endpoint ------------------------------------------------------------

#[tokio::test]
async fn ping_gets_pong() {
    let discord = spawn_discord("http").await;
    let body = serde_json::to_vec(&json!({
        "id": "4000000000000000001", "application_id": APPLICATION_ID, "type": 1,
        "token": "ping-token", "version": 1
    }))
    .expect("json");
    let timestamp = DiscordApp::now();
    let signature = discord.sign(&timestamp, &body);
    let response = discord
        .post_interaction(
            &body,
            &[
                ("x-signature-ed25519", signature),
                ("x-signature-timestamp", timestamp),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"type": 1})
    );
}

#[tokio::test]
async fn forged_missing_and_stale_signatures_get_401_before_parsing() {
    let discord = spawn_discord("http").await;
    let body = br#"{"type": 1}"#.to_vec();
    let timestamp = DiscordApp::now();
    let forger = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let forged = hex::encode(
        forger
            .sign(&[timestamp.as_bytes(), &body[..]].concat())
            .to_bytes(),
    );
    let stale = (chrono::Utc::now().timestamp() - 3600).to_string();
    let cases: Vec<(&str, Vec<u8>, Headers)> = vec![
        ("no headers", body.clone(), vec![]),
        (
            "no signature",
            body.clone(),
            vec![("x-signature-timestamp", timestamp.clone())],
        ),
        (
            "forged by another key",
            body.clone(),
            vec![
                ("x-signature-ed25519", forged),
                ("x-signature-timestamp", timestamp.clone()),
            ],
        ),
        (
            "body changed after signing",
            br#"{"type": 2}"#.to_vec(),
            vec![
                ("x-signature-ed25519", discord.sign(&timestamp, &body)),
                ("x-signature-timestamp", timestamp.clone()),
            ],
        ),
        (
            "not hex",
            body.clone(),
            vec![
                ("x-signature-ed25519", "zz".repeat(64)),
                ("x-signature-timestamp", timestamp.clone()),
            ],
        ),
        (
            "replayed an hour later",
            body.clone(),
            vec![
                ("x-signature-ed25519", discord.sign(&stale, &body)),
                ("x-signature-timestamp", stale),
            ],
        ),
        (
            "garbage that would not parse",
            b"not json".to_vec(),
            vec![
                ("x-signature-ed25519", "00".repeat(64)),
                ("x-signature-timestamp", timestamp.clone()),
            ],
        ),
    ];
    for (case, body, headers) in cases {
        let response = discord.post_interaction(&body, &headers).await;
        assert_eq!(response.status(), 401, "{case}");
    }
}

#[tokio::test]
async fn a_webhook_alert_is_posted_in_the_alert_channel_and_summarised_in_its_thread() {
    let discord = spawn_discord("http").await;
    discord.deploys().await;
    discord
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;

    let summary = discord.summary().await;
    let alert_post = discord.fake.wait_for_text("🚨").await;
    assert_eq!(alert_post.channel_id, ALERT_CHANNEL);
    assert!(
        alert_post.content().contains("HighErrorRate"),
        "{}",
        alert_post.text()
    );
    assert_eq!(
        summary.channel_id, alert_post.id,
        "the summary is in the thread started from the alert post"
    );
    assert_eq!(
        discord.fake.thread_parent(&summary.channel_id).as_deref(),
        Some(ALERT_CHANNEL)
    );
    let embed = &summary.json["embeds"][0];
    assert_eq!(embed["title"], "checkout production · recent deploys");
    let text = summary.text();
    assert!(
        text.contains("**Suspect** **v42** by author-of-v42"),
        "{text}"
    );
    assert!(text.contains("`v42-0123456"), "commits are shown: {text}");
    let rollback = buttons(&summary.json)
        .into_iter()
        .find(|b| b["label"] == "Roll back checkout production to v41")
        .expect("the rollback button");
    assert_eq!(rollback["style"], 4, "danger");
    let custom_id = rollback["custom_id"].as_str().expect("custom_id");
    assert!(custom_id.starts_with("bw:rb:") && custom_id.len() <= 100);
    assert!(summary.button("Not deploy-related").is_some());
}

#[tokio::test]
async fn press_then_confirm_makes_exactly_one_signed_backend_call_and_edits_the_summary() {
    let discord = spawn_discord("http").await;
    discord.deploys().await;
    discord
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = discord.summary().await;

    let confirmation = discord.press_rollback(&alice(), &summary).await;
    assert!(confirmation.is_ephemeral());
    let prompt = confirmation.text();
    assert!(prompt.contains("from `v42"), "names from: {prompt}");
    assert!(prompt.contains("to `v41"), "names to: {prompt}");
    assert!(
        discord.app.receiver.calls().is_empty(),
        "nothing runs before Confirm"
    );

    let confirm_id = confirmation.button("Confirm").expect("Confirm");
    let confirm = discord
        .fake
        .component_interaction(&alice(), &confirmation, &confirm_id);
    let answer = discord.interact(&confirm).await;
    assert_eq!(answer["type"], 7, "the confirmation is replaced: {answer}");
    assert!(answer_text(&answer).contains("Rolling back checkout production from v42 to v41"));
    assert_eq!(answer["data"]["components"], json!([]));

    let calls = discord.app.wait_for_backend_calls(1).await;
    assert_eq!(calls[0]["to"], "v41");
    assert_eq!(calls[0]["requested_by"], format!("discord:{}", alice().id));
    assert_eq!(discord.app.receiver.rejected(), 0, "the call is signed");
    let done = discord
        .fake
        .wait_for_update(
            &summary.id,
            "Rolled back checkout production from v42 to v41",
        )
        .await;
    assert!(done.text().contains("by Alice"), "{}", done.text());
    assert!(
        done.buttons().is_empty(),
        "the buttons give way to the status line"
    );
    // Whatever the presses started has been started by now; let it finish, then count.
    discord.app.bot.settle().await;
    assert_eq!(discord.app.receiver.calls().len(), 1);
}

#[tokio::test]
async fn press_then_cancel_runs_nothing() {
    let discord = spawn_discord("http").await;
    discord.deploys().await;
    discord
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = discord.summary().await;
    let confirmation = discord.press_rollback(&alice(), &summary).await;

    let cancel_id = confirmation.button("Cancel").expect("Cancel");
    let cancel = discord
        .fake
        .component_interaction(&alice(), &confirmation, &cancel_id);
    let answer = discord.interact(&cancel).await;
    assert_eq!(answer["type"], 7);
    assert!(answer_text(&answer).contains("Cancelled. Nothing was rolled back."));

    // Confirm on the cancelled step does nothing either.
    let confirm_id = confirmation.button("Confirm").expect("Confirm");
    let late = discord
        .fake
        .component_interaction(&alice(), &confirmation, &confirm_id);
    let answer = discord.interact(&late).await;
    assert!(
        answer_text(&answer).contains("already used or has expired"),
        "{answer}"
    );
    discord.app.bot.settle().await;
    assert!(discord.app.receiver.calls().is_empty());
    assert_eq!(discord.audit_actions("rollback.cancelled").await.len(), 1);
}

#[tokio::test]
async fn a_second_user_cannot_confirm_someone_elses_step() {
    let discord = spawn_discord("http").await;
    discord.deploys().await;
    discord
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = discord.summary().await;
    let confirmation = discord.press_rollback(&alice(), &summary).await;

    let confirm_id = confirmation.button("Confirm").expect("Confirm");
    let by_bob = discord
        .fake
        .component_interaction(&bob(), &confirmation, &confirm_id);
    let answer = discord.interact(&by_bob).await;
    assert_eq!(answer["type"], 4);
    assert_eq!(answer["data"]["flags"], 64, "the refusal is ephemeral");
    assert!(
        answer_text(&answer).contains("Only Alice can confirm this rollback"),
        "{answer}"
    );
    discord.app.bot.settle().await;
    assert!(discord.app.receiver.calls().is_empty());

    // Alice's own confirmation still works.
    let by_alice = discord
        .fake
        .component_interaction(&alice(), &confirmation, &confirm_id);
    discord.interact(&by_alice).await;
    assert_eq!(discord.app.wait_for_backend_calls(1).await.len(), 1);
}

#[tokio::test]
async fn concurrent_confirms_run_the_rollback_once() {
    let discord = spawn_discord("http").await;
    discord
        .app
        .receiver
        .behave(crate::support::Behaviour::Succeed {
            delay: Duration::from_millis(200),
        });
    discord.deploys().await;
    discord
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = discord.summary().await;
    let confirmation = discord.press_rollback(&alice(), &summary).await;
    let confirm_id = confirmation.button("Confirm").expect("Confirm");

    let presses: Vec<Value> = (0..8)
        .map(|_| {
            discord
                .fake
                .component_interaction(&alice(), &confirmation, &confirm_id)
        })
        .collect();
    let answers = futures::future::join_all(presses.iter().map(|p| discord.interact(p))).await;

    let started = answers
        .iter()
        .filter(|a| answer_text(a).contains("Rolling back checkout production"))
        .count();
    assert_eq!(started, 1, "{answers:?}");
    discord
        .fake
        .wait_for_update(&summary.id, "Rolled back checkout production")
        .await;
    discord.app.bot.settle().await;
    assert_eq!(discord.app.receiver.calls().len(), 1);
}

#[tokio::test]
async fn an_unauthorised_press_is_refused_ephemerally_and_audited() {
    let discord = spawn_discord("http").await;
    discord.deploys().await;
    discord
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = discord.summary().await;

    let custom_id = summary.button("Roll back").expect("button");
    let press = discord
        .fake
        .component_interaction(&mallory(), &summary, &custom_id);
    let answer = discord.interact(&press).await;

    assert_eq!(answer["type"], 4);
    assert_eq!(answer["data"]["flags"], 64);
    assert!(
        answer_text(&answer).contains("not allowed to roll back checkout production"),
        "{answer}"
    );
    assert!(
        buttons(&answer["data"]).is_empty(),
        "no Confirm for a refusal"
    );
    let denied = discord.audit_actions("rollback.denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].actor, format!("discord:{}", mallory().id));
    assert!(denied[0].details.contains("not_allowed"));
    discord.app.bot.settle().await;
    assert!(discord.app.receiver.calls().is_empty());
}

#[tokio::test]
async fn not_deploy_related_is_acknowledged_and_the_summary_says_who_dismissed_it() {
    let discord = spawn_discord("http").await;
    discord.deploys().await;
    discord
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = discord.summary().await;
    let custom_id = summary.button("Not deploy-related").expect("button");
    let press = discord
        .fake
        .component_interaction(&bob(), &summary, &custom_id);
    let answer = discord.interact(&press).await;
    assert_eq!(
        answer["type"], 6,
        "acknowledged without a message: {answer}"
    );
    let dismissed = discord
        .fake
        .wait_for_update(&summary.id, "Marked not deploy-related by Bob")
        .await;
    assert!(dismissed.button("Roll back").is_none());
}

#[tokio::test]
async fn the_rollback_command_answers_with_a_plan_and_never_rolls_back() {
    let discord = spawn_discord("http").await;
    discord.deploys().await;
    let command = discord.fake.command_interaction(
        &alice(),
        ALERT_CHANNEL,
        "rollback",
        &[("service", "checkout"), ("environment", "production")],
    );
    let answer = discord.interact(&command).await;

    assert_eq!(answer["type"], 4);
    assert_eq!(answer["data"]["flags"], 64);
    assert!(
        answer_text(&answer).contains("Nothing runs until someone presses Roll back"),
        "{answer}"
    );
    let plan = discord.fake.wait_for_text("rollback plan").await;
    assert_eq!(plan.channel_id, ALERT_CHANNEL);
    assert!(
        plan.button("Roll back checkout production to v41")
            .is_some()
    );
    discord.app.bot.settle().await;
    assert!(discord.app.receiver.calls().is_empty());
    assert!(discord.audit_actions("rollback.started").await.is_empty());
}

#[tokio::test]
async fn help_and_deploys_answer_privately() {
    let discord = spawn_discord("http").await;
    discord.deploys().await;
    let deploys = discord.fake.command_interaction(
        &mallory(),
        ALERT_CHANNEL,
        "deploys",
        &[("service", "checkout")],
    );
    let answer = discord.interact(&deploys).await;
    assert_eq!(answer["data"]["flags"], 64);
    assert!(
        answer_text(&answer).contains("Recent deploys of checkout"),
        "{answer}"
    );
    let help = discord
        .fake
        .command_interaction(&mallory(), ALERT_CHANNEL, "help", &[]);
    let answer = discord.interact(&help).await;
    assert!(
        answer_text(&answer).contains("rollback SERVICE ENV"),
        "{answer}"
    );
}

#[tokio::test]
async fn autocomplete_offers_the_configured_services() {
    let discord = spawn_discord("http").await;
    let typing = discord.fake.autocomplete_interaction(
        &alice(),
        "rollback",
        &[("service", "pay")],
        "service",
    );
    let answer = discord.interact(&typing).await;
    assert_eq!(answer["type"], 8);
    assert_eq!(
        answer["data"]["choices"],
        json!([{"name": "payments", "value": "payments"}])
    );
}

#[tokio::test]
async fn the_command_is_registered_in_the_configured_guild() {
    let discord = spawn_discord("http").await;
    let registered = discord
        .fake
        .wait_for("the command registration", |fake| {
            fake.registrations().into_iter().next()
        })
        .await;
    assert_eq!(
        registered.0,
        format!("/api/v10/applications/{APPLICATION_ID}/guilds/{GUILD_ID}/commands")
    );
    assert_eq!(registered.1[0]["name"], "breakwater");
}

#[tokio::test]
async fn a_429_does_not_lose_the_alert_post() {
    let discord = spawn_discord("http").await;
    discord.deploys().await;
    discord.fake.rate_limit(RouteKind::CreateMessage, 1);
    discord
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = discord.summary().await;
    assert_eq!(discord.fake.rate_limited(), 1);
    let posts: Vec<StoredMessage> = discord
        .fake
        .messages()
        .into_iter()
        .filter(|m| m.channel_id == ALERT_CHANNEL && m.content().contains("HighErrorRate"))
        .collect();
    assert_eq!(posts.len(), 1, "posted exactly once after the 429");
    assert_eq!(summary.channel_id, posts[0].id);
}

#[tokio::test]
async fn where_threads_are_unavailable_the_summary_replies_to_the_alert() {
    let discord = spawn_discord("http").await;
    discord.app.deploy("ledger", "production", "l1", 300).await;
    discord.app.deploy("ledger", "production", "l2", 10).await;
    discord
        .app
        .fire_alert("DiskFull", "ledger", "production")
        .await;
    let summary = discord.summary().await;
    let alert_post = discord.fake.wait_for_text("DiskFull").await;
    assert_eq!(
        alert_post.channel_id, NO_THREADS_CHANNEL,
        "the service's own channel"
    );
    assert_eq!(summary.channel_id, NO_THREADS_CHANNEL);
    assert_eq!(summary.json["type"], 19, "a reply");
    assert_eq!(
        summary.json["message_reference"]["message_id"],
        alert_post.id
    );
}

// --- gateway -------------------------------------------------------------------------------

#[tokio::test]
async fn the_gateway_identifies_with_the_message_intents_and_keeps_its_heartbeat() {
    let discord = spawn_discord("gateway").await;
    discord.fake.wait_until_ready().await;
    let identify = &discord.fake.identifies()[0];
    assert_eq!(identify["intents"], 33280);
    assert!(
        identify["token"]
            .as_str()
            .is_some_and(|t| t.ends_with(TOKEN)),
        "{identify}"
    );
    discord
        .fake
        .wait_for("two heartbeats", |fake| {
            (fake.heartbeats() >= 2).then_some(())
        })
        .await;
    let (_, body) = discord.app.readyz().await;
    assert_eq!(body["chat"]["discord"], "connected", "{body}");
    discord
        .fake
        .wait_for("the command registration", |fake| {
            fake.registrations().into_iter().next()
        })
        .await;
}

fn alertmanager_embed() -> Value {
    json!([{
        "type": "rich",
        "title": "[FIRING:1] HighErrorRate (checkout production critical)",
        "description": "\nAlerts Firing:\nLabels:\n - alertname = HighErrorRate\n - app = checkout\n - environment = production\n - severity = critical\nAnnotations:\n - summary = 5xx ratio above 5% on checkout\nSource: http://prometheus.example.com:9090/graph?g0.expr=job\n",
        "color": 10038562,
        "fields": []
    }])
}

#[tokio::test]
async fn an_embed_alert_in_the_channel_gets_a_threaded_summary() {
    let discord = spawn_discord("gateway").await;
    discord.deploys().await;
    discord.fake.wait_until_ready().await;
    let alert =
        discord
            .fake
            .post_as_webhook(ALERT_CHANNEL, "Alertmanager", "", alertmanager_embed());

    let summary = discord.summary().await;
    assert_eq!(
        summary.channel_id, alert,
        "in the thread started from the alert"
    );
    assert!(
        summary.text().contains("**Suspect** **v42**"),
        "{}",
        summary.text()
    );
    assert!(
        summary
            .button("Roll back checkout production to v41")
            .is_some()
    );
    let received = discord.audit_actions("alert.received").await;
    assert_eq!(received.len(), 1);
    assert!(
        received[0].details.contains("alertmanager"),
        "{}",
        received[0].details
    );
}

#[tokio::test]
async fn a_plain_text_alert_gets_a_threaded_summary() {
    let discord = spawn_discord("gateway").await;
    discord.deploys().await;
    discord.fake.wait_until_ready().await;
    let alert = discord.fake.post_as_person(
        ALERT_CHANNEL,
        &alice(),
        "checkout production is throwing 500s since a few minutes",
    );

    let summary = discord.summary().await;
    assert_eq!(summary.channel_id, alert);
    assert!(
        summary.text().contains("**Suspect** **v42**"),
        "{}",
        summary.text()
    );
}

#[tokio::test]
async fn the_bots_own_posts_and_other_channels_are_not_read_as_alerts() {
    let discord = spawn_discord("gateway").await;
    discord.deploys().await;
    discord.fake.wait_until_ready().await;
    // A webhook alert: the bot's own post of it comes back over the gateway.
    discord
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;
    discord.summary().await;
    discord.fake.post_as_person(
        "1000000000000000777",
        &alice(),
        "payments production is down",
    );
    // A later alert in the alert channel: once it is in, what came before was read.
    discord
        .fake
        .post_as_person(ALERT_CHANNEL, &alice(), "checkout staging is throwing 500s");
    eventually("the later alert to be recorded", async || {
        (discord.audit_actions("alert.received").await.len() >= 2).then_some(())
    })
    .await;
    discord.app.bot.settle().await;
    let received = discord.audit_actions("alert.received").await;
    assert_eq!(
        received.len(),
        2,
        "the webhook alert and the later one only"
    );
    assert!(
        received[0]
            .details
            .contains("checkout staging is throwing 500s"),
        "{received:?}"
    );
    let by_bot: Vec<StoredMessage> = discord
        .fake
        .messages()
        .into_iter()
        .filter(|m| m.json["author"]["id"] == BOT_USER_ID)
        .collect();
    let checkout_production = by_bot
        .iter()
        .filter(|m| m.text().contains("checkout production · recent deploys"))
        .count();
    assert_eq!(checkout_production, 1, "its own summary is not a new alert");
    assert!(
        !by_bot.iter().any(|m| m.text().contains("payments")),
        "the other channel's message is not an alert"
    );
    assert!(by_bot.len() >= 2);
}

#[tokio::test]
async fn a_message_replayed_after_a_resume_is_answered_once() {
    let discord = spawn_discord("gateway").await;
    discord.deploys().await;
    discord.fake.wait_until_ready().await;
    discord.fake.post_as_person(
        ALERT_CHANNEL,
        &alice(),
        "checkout production errors everywhere",
    );
    discord.summary().await;

    discord.fake.reconnect_replaying_from(0);
    discord
        .fake
        .wait_for("the client to resume", |fake| {
            fake.resumes().into_iter().next()
        })
        .await;
    discord.fake.wait_until_ready().await;
    assert_eq!(discord.fake.resumes()[0]["session_id"], "fake-session-1");
    assert!(discord.fake.connections() >= 2);
    // A later message proves the replayed one was processed before it.
    discord
        .fake
        .post_as_person(ALERT_CHANNEL, &alice(), "payments production is slow");
    eventually("the later alert to be recorded", async || {
        (discord.audit_actions("alert.received").await.len() >= 2).then_some(())
    })
    .await;
    discord.app.bot.settle().await;
    let received = discord.audit_actions("alert.received").await;
    assert_eq!(received.len(), 2, "the replayed message is claimed once");
    let checkout_summaries = discord
        .fake
        .messages()
        .into_iter()
        .filter(|m| m.text().contains("checkout production · recent deploys"))
        .count();
    assert_eq!(checkout_summaries, 1);
}

#[tokio::test]
async fn a_gateway_press_and_confirm_roll_back_once_and_show_the_outcome() {
    let discord = spawn_discord("gateway").await;
    discord.deploys().await;
    discord.fake.wait_until_ready().await;
    discord
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = discord.summary().await;

    let custom_id = summary.button("Roll back").expect("button");
    let press = discord
        .fake
        .component_interaction(&alice(), &summary, &custom_id);
    discord.fake.dispatch_interaction(&press);
    let callback = discord
        .fake
        .wait_for_callback(press["id"].as_str().expect("id"))
        .await;
    assert_eq!(callback.body["type"], 4);
    assert_eq!(callback.body["data"]["flags"], 64);
    let confirmation = discord.fake.response_to(&press).expect("the confirmation");

    let confirm_id = confirmation.button("Confirm").expect("Confirm");
    let confirm = discord
        .fake
        .component_interaction(&alice(), &confirmation, &confirm_id);
    discord.fake.dispatch_interaction(&confirm);
    let callback = discord
        .fake
        .wait_for_callback(confirm["id"].as_str().expect("id"))
        .await;
    assert_eq!(
        callback.body["type"], 7,
        "UPDATE_MESSAGE on the confirmation"
    );
    let updated = discord
        .fake
        .wait_for_update(&confirmation.id, "Rolling back")
        .await;
    assert!(updated.buttons().is_empty());

    assert_eq!(discord.app.wait_for_backend_calls(1).await.len(), 1);
    let done = discord
        .fake
        .wait_for_update(
            &summary.id,
            "Rolled back checkout production from v42 to v41",
        )
        .await;
    assert!(done.buttons().is_empty());
    // The same confirm delivered again (a resume replay) changes nothing.
    discord.fake.dispatch_interaction(&confirm);
    let confirm_id = confirm["id"].as_str().expect("id");
    eventually("the replayed confirm to be answered", async || {
        (discord.fake.callback_attempts(confirm_id) >= 2).then_some(())
    })
    .await;
    discord.app.bot.settle().await;
    assert_eq!(discord.app.receiver.calls().len(), 1);
}

// --- hostile text -------------------------------------------------------------------------

/// Every string in a JSON value.
fn strings_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| strings_in(item, out)),
        Value::Object(fields) => fields.values().for_each(|field| strings_in(field, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_message_on_the_wire_parses_no_mentions_and_outside_text_cannot_ping() {
    let discord = spawn_discord("http").await;
    discord
        .app
        .deploy("checkout", "production", "v41", 300)
        .await;
    let finished = chrono::Utc::now() - chrono::Duration::minutes(18);
    let response = discord
        .app
        .post_deploy(json!({
            "service": "checkout", "environment": "production", "version": "v42",
            "author": "@everyone <@2000000000000000002>",
            "started_at": finished - chrono::Duration::minutes(2),
            "finished_at": finished, "status": "succeeded",
        }))
        .await;
    assert!(response.status().is_success());
    discord
        .app
        .fire_alert("LedgerDown @everyone @here", "checkout", "production")
        .await;
    let summary = discord.summary().await;
    // A press, its ephemeral confirmation, the confirm that replaces it, the outcome.
    let confirmation = discord.press_rollback(&alice(), &summary).await;
    let mut answers = vec![
        discord
            .fake
            .callbacks()
            .last()
            .map(|c| c.body.clone())
            .expect("the press's answer"),
    ];
    let confirm_id = confirmation.button("Confirm").expect("Confirm");
    let confirm = discord
        .fake
        .component_interaction(&alice(), &confirmation, &confirm_id);
    answers.push(discord.interact(&confirm).await);
    discord
        .fake
        .wait_for_update(&summary.id, "Rolled back checkout production")
        .await;

    let mut bodies: Vec<(&str, Value)> = discord.fake.message_bodies();
    bodies.extend(
        answers
            .into_iter()
            .map(|answer| ("interaction response", answer["data"].clone())),
    );
    let carrying: Vec<&(&str, Value)> = bodies
        .iter()
        .filter(|(_, body)| body.get("content").is_some() || body.get("embeds").is_some())
        .collect();
    assert!(
        carrying.iter().any(|(route, _)| *route == "create message")
            && carrying.iter().any(|(route, _)| *route == "edit message")
            && carrying
                .iter()
                .any(|(route, _)| *route == "interaction response"),
        "creates, edits and interaction responses were seen: {bodies:?}"
    );
    for (route, body) in carrying {
        let allowed = &body["allowed_mentions"];
        assert_eq!(
            allowed["parse"],
            json!([]),
            "{route} parses no mentions: {body}"
        );
        for list in ["users", "roles"] {
            assert!(
                allowed[list].is_null() || allowed[list] == json!([]),
                "{route} allows no {list}: {body}"
            );
        }
        let mut texts = Vec::new();
        strings_in(body, &mut texts);
        for text in texts {
            for ping in ["@everyone", "@here", "<@2000000000000000002>"] {
                assert!(!text.contains(ping), "{route} carries {ping:?}: {text:?}");
            }
        }
    }
    let shown = discord.fake.message(&summary.id).expect("summary").text();
    assert!(
        shown.contains("@\u{200B}everyone"),
        "the author is shown, defused: {shown}"
    );
}

// --- private replies that follow the plan -----------------------------------------------

#[tokio::test]
async fn the_private_rolling_back_reply_is_replaced_by_the_outcome() {
    let discord = spawn_discord("http").await;
    discord.deploys().await;
    discord
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = discord.summary().await;
    let confirmation = discord.press_rollback(&alice(), &summary).await;
    let confirm_id = confirmation.button("Confirm").expect("Confirm");
    let confirm = discord
        .fake
        .component_interaction(&alice(), &confirmation, &confirm_id);
    discord.interact(&confirm).await;

    let settled = discord
        .fake
        .wait_for_update(&confirmation.id, "The thread has the details.")
        .await;
    let text = settled.text();
    assert!(
        text.contains("✅ Rolled back checkout production from v42 to v41"),
        "{text}"
    );
    assert!(!text.contains("Rolling back"), "{text}");
    assert!(settled.buttons().is_empty());
    assert!(
        discord
            .fake
            .message_bodies()
            .iter()
            .any(|(route, _)| *route == "edit original"),
        "edited through PATCH /webhooks/{{application}}/{{token}}/messages/@original"
    );
}

#[tokio::test]
async fn a_confirm_step_left_open_stops_offering_confirm_once_someone_else_rolled_back() {
    let discord = spawn_discord("http").await;
    discord.deploys().await;
    discord
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = discord.summary().await;
    let bobs_step = discord.press_rollback(&bob(), &summary).await;
    assert!(bobs_step.button("Confirm").is_some());

    let confirmation = discord.press_rollback(&alice(), &summary).await;
    let confirm_id = confirmation.button("Confirm").expect("Confirm");
    let confirm = discord
        .fake
        .component_interaction(&alice(), &confirmation, &confirm_id);
    discord.interact(&confirm).await;

    let settled = discord
        .fake
        .wait_for_update(&bobs_step.id, "The thread has the details.")
        .await;
    assert!(
        settled.buttons().is_empty(),
        "no Confirm button is left: {}",
        settled.text()
    );
    assert!(settled.text().contains("by Alice"), "{}", settled.text());
}

#[tokio::test]
async fn a_resolved_incident_turns_the_alert_post_and_the_summary_green_without_buttons() {
    let discord = spawn_discord("http").await;
    discord.deploys().await;
    discord
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let post = discord.fake.wait_for_text("🚨").await;
    let summary = discord.summary().await;
    assert!(summary.button("Roll back").is_some());

    let response = discord
        .app
        .post_webhook(
            "/webhooks/alertmanager",
            &crate::support::alertmanager("HighErrorRate", "checkout", "production", "resolved"),
        )
        .await;
    assert_eq!(response.status(), 200);

    let header = discord.fake.wait_for_update(&post.id, "✅").await;
    assert!(!header.text().contains('🚨'), "{}", header.text());
    let resolved = discord
        .fake
        .wait_for_update(&summary.id, "No rollback button: the alert resolved at")
        .await;
    assert!(
        resolved.text().contains("✅ Resolved at"),
        "{}",
        resolved.text()
    );
    assert!(resolved.buttons().is_empty(), "{}", resolved.text());
    assert_eq!(
        resolved.json["embeds"][0]["color"].as_u64(),
        Some(0x57F287),
        "the success colour, no longer red"
    );
}

#[tokio::test]
async fn a_confirm_step_left_open_says_so_once_the_alert_resolved() {
    let discord = spawn_discord("http").await;
    discord.deploys().await;
    discord
        .app
        .fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = discord.summary().await;
    let step = discord.press_rollback(&bob(), &summary).await;
    assert!(step.button("Confirm").is_some());

    let response = discord
        .app
        .post_webhook(
            "/webhooks/alertmanager",
            &crate::support::alertmanager("HighErrorRate", "checkout", "production", "resolved"),
        )
        .await;
    assert_eq!(response.status(), 200);

    let settled = discord
        .fake
        .wait_for_update(&step.id, "is no longer offered here")
        .await;
    assert!(settled.buttons().is_empty(), "{}", settled.text());
    assert!(
        settled
            .text()
            .contains("Use /breakwater rollback checkout production if it is still needed."),
        "{}",
        settled.text()
    );
}
