//! Threads that read right once an incident is over, through the neutral test adapter:
//! the alert post and the summary say "resolved" at a glance, the Roll back button gives
//! way to a line saying why, status lines read in the order things happened, and the
//! summary links to where to investigate.

use std::time::Duration;

use breakwater::core::bot::BotSettings;
use breakwater::core::deploy::ServiceName;
use breakwater::core::message::Tone;
use breakwater::core::repository::{Repository, ServiceLinks};

use crate::support::{
    AppOptions, Receiver, Replacements, Shown, TestApp, actor, alertmanager, spawn_app,
    spawn_app_replacing,
};

async fn resolve(app: &TestApp) {
    let response = app
        .post_webhook(
            "/webhooks/alertmanager",
            &alertmanager("HighErrorRate", "checkout", "production", "resolved"),
        )
        .await;
    assert_eq!(response.status(), 200);
}

async fn incident(app: &TestApp) -> Shown {
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    app.summary().await
}

#[tokio::test]
async fn a_resolved_incident_turns_the_summary_green_and_replaces_the_button_with_why() {
    let app = spawn_app().await;
    let summary = incident(&app).await;
    assert!(summary.button("Roll back").is_some());

    resolve(&app).await;

    let resolved = app
        .chat
        .wait_for_update(&summary.at, "✅ Resolved at")
        .await;
    assert_eq!(resolved.message.tone, Tone::Success);
    assert!(
        resolved.message.buttons().next().is_none(),
        "{}",
        resolved.plain()
    );
    assert!(
        resolved
            .plain()
            .contains("No rollback button: the alert resolved at")
            && resolved
                .plain()
                .contains("use /breakwater rollback checkout production if it is still needed"),
        "{}",
        resolved.plain()
    );
}

#[tokio::test]
async fn a_resolved_incident_takes_the_siren_off_the_alert_post() {
    let app = spawn_app().await;
    let summary = incident(&app).await;
    let post = summary.parent.clone().expect("the alert post");
    assert!(app.chat.get(&post).expect("post").plain().contains('🚨'));

    resolve(&app).await;

    let updated = app.chat.wait_for_update(&post, "✅ HighErrorRate").await;
    assert!(!updated.plain().contains('🚨'), "{}", updated.plain());
    assert!(
        updated.plain().contains("resolved at"),
        "{}",
        updated.plain()
    );
    assert_eq!(updated.message.tone, Tone::Success);
}

#[tokio::test]
async fn a_restarted_process_takes_the_siren_off_the_alert_post_an_earlier_one_made() {
    let app = spawn_app().await;
    let summary = incident(&app).await;
    let post = summary.parent.clone().expect("the alert post");
    let chat = app.chat.clone();
    let dir = app.stop().await;

    let restarted = spawn_app_replacing(
        AppOptions {
            dir: Some(dir),
            ..AppOptions::default()
        },
        Receiver::start(crate::support::BACKEND_SECRET).await,
        Replacements {
            chat: Some(chat),
            ..Replacements::default()
        },
    )
    .await;
    resolve(&restarted).await;

    let updated = restarted
        .chat
        .wait_for_update(&post, "✅ HighErrorRate")
        .await;
    assert!(!updated.plain().contains('🚨'), "{}", updated.plain());
}

#[tokio::test]
async fn after_a_rollback_and_the_resolution_the_status_lines_read_in_time_order() {
    let app = spawn_app().await;
    let summary = incident(&app).await;
    app.press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;
    app.chat.wait_for_update(&summary.at, "Rolled back").await;

    resolve(&app).await;

    let shown = app
        .chat
        .wait_for_update(&summary.at, "All alerts resolved")
        .await;
    let plain = shown.plain();
    let rolled_back = plain.find("Rolled back checkout production").expect("line");
    let resolved = plain.find("All alerts resolved at").expect("line");
    assert!(rolled_back < resolved, "{plain}");
    assert!(
        shown
            .message
            .status
            .as_ref()
            .is_some_and(|s| s.to_string().starts_with("✅ All alerts resolved at")),
        "the latest line is the status: {plain}"
    );
    assert!(!plain.contains("Confirm rollback"), "{plain}");
}

#[tokio::test]
async fn every_time_in_the_summary_carries_its_zone_and_ages_name_their_end() {
    let app = spawn_app().await;
    let summary = incident(&app).await;
    let plain = summary.plain();
    assert!(
        plain.contains("fired at ") && plain.contains(" UTC"),
        "{plain}"
    );
    assert!(
        plain.contains("finished 17 min before the alert ("),
        "the age says it is counted from the finish (the alert started a minute ago): {plain}"
    );
}

fn link_checkout_repository(settings: &mut BotSettings) {
    settings.refresh_delay = Duration::from_millis(50);
    settings.links.insert(
        ServiceName::parse("checkout").expect("name"),
        ServiceLinks {
            repository: Some(
                Repository::parse("https://github.com/acme/checkout", None).expect("repository"),
            ),
            owners: vec!["@checkout-oncall".to_owned()],
        },
    );
}

#[tokio::test]
async fn with_a_repository_the_summary_links_commits_and_compares_and_names_the_owners() {
    let app = spawn_app_replacing(
        AppOptions::default(),
        Receiver::start(crate::support::BACKEND_SECRET).await,
        Replacements {
            tune: Some(link_checkout_repository),
            ..Replacements::default()
        },
    )
    .await;
    app.post_deploy(serde_json::json!({
        "service": "checkout", "environment": "production", "version": "v41",
        "commit": "a1b2c3d", "status": "succeeded",
        "started_at": (chrono::Utc::now() - chrono::Duration::minutes(300)).to_rfc3339(),
        "finished_at": (chrono::Utc::now() - chrono::Duration::minutes(298)).to_rfc3339(),
    }))
    .await;
    app.post_deploy(serde_json::json!({
        "service": "checkout", "environment": "production", "version": "v42",
        "previous_version": "v41", "commit": "e4f5a6b", "status": "succeeded",
        "started_at": (chrono::Utc::now() - chrono::Duration::minutes(20)).to_rfc3339(),
        "finished_at": (chrono::Utc::now() - chrono::Duration::minutes(18)).to_rfc3339(),
    }))
    .await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let plain = app.summary().await.plain();
    for url in [
        "<https://github.com/acme/checkout/commit/e4f5a6b>",
        "<https://github.com/acme/checkout/compare/a1b2c3d...e4f5a6b>",
    ] {
        assert!(plain.contains(url), "{url} missing:\n{plain}");
    }
    assert!(plain.contains("Owners: @checkout-oncall"), "{plain}");
}

#[tokio::test]
async fn the_audit_command_gives_every_time_its_zone() {
    let app = spawn_app().await;
    incident(&app).await;

    let reply = app
        .bot
        .handle_command(breakwater::core::event::CommandRequest {
            event_id: "cmd-audit".into(),
            actor: actor("console:alice", "Alice"),
            command: breakwater::core::event::Command::parse("audit checkout").expect("parse"),
            platform: breakwater::core::message::Platform::Console,
            channel: Some("alerts".into()),
        })
        .await;

    let text = reply.message().expect("an answer").to_plain();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("• #")).collect();
    assert!(!lines.is_empty(), "{text}");
    for line in lines {
        assert!(line.contains(" UTC "), "a time without its zone: {line}");
    }
}
