//! An incident told after the fact, through the neutral test adapter: an alert, a grouped
//! alert, a refused press, a rollback and the resolution, compared with the timeline that
//! `/breakwater timeline` shows, the postmortem draft `breakwater incident export` writes,
//! and the duration histograms on `/metrics`.

use std::path::Path;
use std::process::Output;

use breakwater::core::event::{Command, CommandRequest, Reply};
use breakwater::core::message::Platform;

use crate::support::{AppOptions, TestApp, actor, alertmanager, spawn_app, spawn_app_with};

async fn resolve(app: &TestApp, alertname: &str) {
    let response = app
        .post_webhook(
            "/webhooks/alertmanager",
            &alertmanager(alertname, "checkout", "production", "resolved"),
        )
        .await;
    assert_eq!(response.status(), 200);
}

/// Drives a whole incident and returns once the thread says it is resolved.
async fn incident(app: &TestApp) {
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;
    app.fire_alert("HighLatency", "checkout", "production")
        .await;
    app.chat.wait_for_update(&summary.at, "2 alerts").await;
    app.press(&summary, "Roll back", &actor("console:mallory", "Mallory"))
        .await;
    app.press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;
    app.chat.wait_for_update(&summary.at, "Rolled back").await;
    resolve(app, "HighErrorRate").await;
    resolve(app, "HighLatency").await;
    app.chat
        .wait_for_update(&summary.at, "All alerts resolved")
        .await;
}

async fn timeline(app: &TestApp, text: &str) -> String {
    let reply = app
        .bot
        .handle_command(CommandRequest {
            event_id: format!("cmd-{text}"),
            actor: actor("console:bob", "Bob"),
            command: Command::parse(text).expect("parse"),
            platform: Platform::Console,
            channel: Some("alerts".into()),
        })
        .await;
    match reply {
        Reply::Private(message) => message.to_plain(),
        other => panic!("the timeline is answered privately, got {other:?}"),
    }
}

fn export(config: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args(["incident", "export"])
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("BREAKWATER_CONFIG")
        .output()
        .expect("run breakwater")
}

#[tokio::test]
async fn the_timeline_command_tells_the_latest_incident_in_the_order_it_happened() {
    let app = spawn_app().await;
    incident(&app).await;

    let plain = timeline(&app, "timeline checkout").await;

    let expected_order = [
        "Deploy v41 of checkout production",
        "Deploy v42 of checkout production — suspect",
        "First alert: HighErrorRate",
        "Summary posted on console, suspect v42",
        "Pressed Roll back (v42 → v41) — Mallory",
        "Refused: You are not allowed to roll back checkout production",
        "Pressed Roll back (v42 → v41) — Alice",
        "Rollback started on deployer (v42 → v41) — Alice",
        "Backend deployer accepted the rollback",
        "Rollback succeeded (v42 → v41)",
        "Alert resolved: HighLatency; incident resolved",
    ];
    let mut rest = plain.as_str();
    for wanted in expected_order {
        let found = rest
            .find(wanted)
            .unwrap_or_else(|| panic!("{wanted:?} after what came before it in:\n{plain}"));
        rest = &rest[found + wanted.len()..];
    }
    assert!(plain.contains("Grouped alert: HighLatency"), "{plain}");
    assert!(!plain.contains("audit chain does not verify"), "{plain}");
}

#[tokio::test]
async fn the_timeline_of_a_service_without_incidents_says_so() {
    let app = spawn_app().await;
    incident(&app).await;
    assert_eq!(
        timeline(&app, "timeline payments").await,
        "No incident of payments yet.\n"
    );
}

#[tokio::test]
async fn the_exported_draft_holds_the_timeline_suspect_durations_and_empty_sections() {
    let app = spawn_app().await;
    incident(&app).await;
    let id = app
        .bot
        .store()
        .recent_alert_groups(1)
        .await
        .expect("groups")[0]
        .id
        .to_string();
    let config = app.config_path.clone();
    let _dir = app.stop().await;

    let output = export(&config, &[&id]);
    assert!(output.status.success(), "{output:?}");
    let markdown = String::from_utf8_lossy(&output.stdout);
    assert!(
        markdown.starts_with(&format!(
            "# Incident #{id}: HighErrorRate on checkout production"
        )),
        "{markdown}"
    );
    assert!(markdown.contains("| Mallory | Refused:"), "{markdown}");
    assert!(
        markdown.contains("| Alice | Rollback started on deployer (v42 → v41) |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("Deploy v42 of checkout production by author-of-v42"),
        "{markdown}"
    );
    assert!(
        markdown.contains("Commit `v42-0123456789abcdef`."),
        "{markdown}"
    );
    for heading in [
        "## Timeline",
        "## Suspect change",
        "## Durations",
        "## Impact",
        "## Root cause",
        "## What went well",
        "## Action items",
    ] {
        assert!(markdown.contains(heading), "{heading} in {markdown}");
    }
    assert!(!markdown.contains("| Alert → resolved | — |"), "{markdown}");

    let output = export(&config, &[&id, "--format", "json"]);
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(json["chain"]["state"], "verified");
    assert_eq!(json["suspect"]["version"], "v42");
    assert!(json["durations"]["alert_to_resolved"].is_u64(), "{json}");
}

#[tokio::test]
async fn exporting_an_unknown_incident_exits_1_naming_it() {
    let app = spawn_app().await;
    let config = app.config_path.clone();
    let _dir = app.stop().await;
    let output = export(&config, &["4242"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no incident 4242"), "{stderr}");
}

/// The samples of one histogram for checkout production: (count, sum).
fn histogram(metrics: &str, name: &str) -> (u64, f64) {
    let labels = "{service=\"checkout\",environment=\"production\"}";
    let value = |suffix: &str| {
        metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix(&format!(
                    "breakwater_incident_{name}_seconds_{suffix}{labels} "
                ))
            })
            .unwrap_or_else(|| panic!("no {name} {suffix} in:\n{metrics}"))
            .to_owned()
    };
    (
        value("count").parse().expect("count"),
        value("sum").parse().expect("sum"),
    )
}

#[tokio::test]
async fn each_duration_is_observed_once_per_incident_as_the_export_measured_it() {
    let app = spawn_app().await;
    incident(&app).await;
    let id = app
        .bot
        .store()
        .recent_alert_groups(1)
        .await
        .expect("groups")[0]
        .id;
    // A redelivered resolution observes nothing again.
    resolve(&app, "HighLatency").await;
    let found = breakwater::core::incident::load(app.bot.store(), app.bot.audit(), id, true)
        .await
        .expect("load")
        .expect("incident");

    let metrics = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");

    let d = found.durations;
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
        assert_eq!(histogram(&metrics, name), (1, seconds as f64), "{name}");
    }
}

#[tokio::test]
async fn marking_not_deploy_related_ends_the_incident_in_its_timeline() {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;
    // The dismissal is audited before the press is answered.
    app.press(
        &summary,
        "Not deploy-related",
        &actor("console:alice", "Alice"),
    )
    .await;

    let plain = timeline(&app, "timeline checkout").await;

    assert!(
        plain
            .lines()
            .next()
            .unwrap_or_default()
            .ends_with("(ended: not deploy-related)"),
        "{plain}"
    );
    assert!(
        plain.contains("Marked not deploy-related; incident ended — Alice"),
        "{plain}"
    );
}

#[tokio::test]
async fn someone_else_pressing_a_confirm_step_is_a_refusal_in_the_timeline() {
    let app = spawn_app_with(AppOptions {
        confirm_step: true,
        ..AppOptions::default()
    })
    .await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;
    let alice = actor("console:alice", "Alice");
    let Reply::Private(prompt) = app.press(&summary, "Roll back", &alice).await else {
        panic!("expected a private confirmation")
    };
    let (_, confirm) = prompt
        .buttons()
        .find(|(label, _)| *label == "Confirm")
        .expect("confirm button");
    app.press_action(confirm.clone(), None, &actor("console:bob", "Bob"))
        .await;
    app.press_action(confirm.clone(), None, &alice).await;
    app.chat.wait_for_update(&summary.at, "Rolled back").await;

    let plain = timeline(&app, "timeline").await;

    let expected_order = [
        "Pressed Roll back (v42 → v41) — Alice",
        "Asked to confirm v42 → v41 — Alice",
        "Refused: Only Alice can confirm this rollback",
        "— Bob",
        "Confirmed; rollback started on deployer (v42 → v41) — Alice",
        "Rollback succeeded (v42 → v41)",
    ];
    let mut rest = plain.as_str();
    for wanted in expected_order {
        let found = rest
            .find(wanted)
            .unwrap_or_else(|| panic!("{wanted:?} after what came before it in:\n{plain}"));
        rest = &rest[found + wanted.len()..];
    }
}
