//! The Discord gateway session as `/readyz` reports it: following the session through a
//! close and refused reconnects, and final refusals (4004 bad token, 4014 Message
//! Content intent not enabled, a 401 on the REST API) that are reported, never retried.

use std::sync::Arc;

use serde_json::Value;

use crate::support::fake_discord::{ALERT_CHANNEL, APPLICATION_ID, FakeDiscord, GUILD_ID};
use crate::support::{AppOptions, TestApp, spawn_app_with};

const TOKEN: &str = "test-discord-token";

async fn spawn_on(fake: &FakeDiscord, mode: &str, token: &str) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("discord_token"), token).expect("write");
    let public_key = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
            .verifying_key()
            .to_bytes(),
    );
    let extra_config = format!(
        r#"
[discord]
mode = "{mode}"
token = {{ file = "{{dir}}/discord_token" }}
application_id = "{APPLICATION_ID}"
public_key = "{public_key}"
guild_id = "{GUILD_ID}"
alert_channels = ["{ALERT_CHANNEL}"]
api_url = "{api_url}"
"#,
        api_url = fake.api_url(),
    );
    spawn_app_with(AppOptions {
        extra_config,
        dir: Some(dir),
        ..AppOptions::default()
    })
    .await
}

/// Polls `/readyz` until Discord shows `state`; returns the answer.
async fn wait_for_discord(app: &TestApp, state: &str) -> (u16, Value) {
    app.wait_for_readyz(&format!("Discord {state}"), |_, body| {
        body["chat"]["discord"] == state
    })
    .await
}

#[tokio::test]
async fn readiness_follows_the_gateway_session_through_a_close_and_refused_reconnects() {
    let fake = FakeDiscord::start().await;
    let app = spawn_on(&fake, "gateway", TOKEN).await;
    fake.wait_until_ready().await;
    let (status, _) = wait_for_discord(&app, "connected").await;
    assert_eq!(status, 200);

    fake.close_session(4000, true);
    let (status, body) = wait_for_discord(&app, "disconnected").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["problems"]["discord"].is_string(), "{body}");
    // Still down while Discord keeps refusing: a reconnect was tried and refused.
    fake.wait_for("a refused reconnect", |fake| {
        (fake.refused_connections() >= 1).then_some(())
    })
    .await;
    let (status, body) = app.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["chat"]["discord"], "disconnected", "{body}");

    fake.accept_connections();
    fake.wait_until_ready().await;
    let (status, _) = wait_for_discord(&app, "connected").await;
    assert_eq!(status, 200);
    app.stop().await;
}

async fn rejected_identify_fails_the_adapter(code: u16, named: &str) {
    let fake = FakeDiscord::start().await;
    fake.reject_identify_with(code);
    let app = spawn_on(&fake, "gateway", TOKEN).await;
    let (status, body) = wait_for_discord(&app, "failed").await;
    assert_eq!(status, 503, "{body}");
    let reason = body["problems"]["discord"].as_str().unwrap_or_default();
    assert!(reason.contains(named), "{reason:?} should name {named}");
    // The rest of the bot keeps working: a deploy report is accepted and listed.
    let response = app
        .post_deploy(serde_json::json!({
            "service": "checkout", "environment": "production", "version": "v43"
        }))
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let (_, body) = app.readyz().await;
    assert_eq!(
        body["chat"]["discord"], "failed",
        "final, not retried: {body}"
    );
    assert_eq!(
        fake.identifies().len(),
        1,
        "exactly one IDENTIFY, no retry loop"
    );
    assert_eq!(fake.connections(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_rejected_token_4004_fails_the_adapter_after_one_identify() {
    rejected_identify_fails_the_adapter(4004, "discord.token").await;
}

#[tokio::test]
async fn a_disallowed_message_content_intent_4014_names_the_portal_switch() {
    rejected_identify_fails_the_adapter(4014, "Message Content Intent").await;
}

#[tokio::test]
async fn http_mode_with_a_rejected_token_reports_failed() {
    let fake: Arc<FakeDiscord> = FakeDiscord::start().await;
    let app = spawn_on(&fake, "http", "not-the-token").await;
    let (status, body) = wait_for_discord(&app, "failed").await;
    assert_eq!(status, 503, "{body}");
    let reason = body["problems"]["discord"].as_str().unwrap_or_default();
    assert!(reason.contains("discord.token"), "{reason}");
    app.stop().await;
}

#[tokio::test]
async fn the_gateway_lease_holder_is_shown_in_metrics() {
    let fake = FakeDiscord::start().await;
    let app = spawn_on(&fake, "gateway", TOKEN).await;
    fake.wait_until_ready().await;
    let metrics = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("breakwater_discord_gateway_lease 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("breakwater_rollbacks_running 0"),
        "{metrics}"
    );
    app.stop().await;
}
