//! End to end through the neutral test adapter: deploys reported, an alert, the summary
//! with the suspect, and the rollback rules (who, once, to what was shown, never stale).

use std::sync::Arc;
use std::time::Duration;

use breakwater::core::clock::ManualClock;
use breakwater::core::event::Reply;
use breakwater::core::message::Platform;
use breakwater::core::rollback::PlanState;

use crate::support::{
    AppOptions, BACKEND_SECRET, Behaviour, Receiver, Replacements, actor, spawn_app,
    spawn_app_replacing, spawn_app_with,
};

fn private_text(reply: &Reply) -> String {
    reply.message().map(|m| m.to_plain()).unwrap_or_default()
}

#[tokio::test]
async fn a_webhook_alert_gets_a_summary_naming_the_suspect_and_its_predecessor() {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.deploy("payments", "production", "p7", 10).await;

    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;

    let summary = app.summary().await;
    let text = summary.plain();
    assert!(
        text.contains("checkout production · recent deploys"),
        "{text}"
    );
    assert!(text.contains("Suspect v42 by author-of-v42"), "{text}");
    assert!(text.contains("before the alert"), "{text}");
    assert!(text.contains("v41"), "{text}");
    assert!(
        !text.contains("p7"),
        "another service's deploy leaked in: {text}"
    );
    assert!(
        summary
            .button("Roll back checkout production to v41")
            .is_some(),
        "{text}"
    );
    let alert_post = summary
        .parent
        .clone()
        .expect("the summary replies in the alert's thread");
    assert!(
        app.chat
            .get(&alert_post)
            .expect("alert post")
            .plain()
            .contains("HighErrorRate")
    );
}

#[tokio::test]
async fn a_persons_message_in_the_channel_gets_a_threaded_summary() {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 5).await;
    let (message, handled) = app
        .person_says("Ev1", "checkout prod is throwing 500s")
        .await;
    assert!(matches!(
        handled,
        breakwater::core::bot::AlertHandled::Recorded {
            new_group: true,
            ..
        }
    ));

    let summary = app.summary().await;
    assert_eq!(
        summary.parent.as_ref().map(|p| p.id.clone()),
        Some(message.id)
    );
    assert!(summary.plain().contains("Suspect v42"));
}

#[tokio::test]
async fn the_same_channel_event_delivered_twice_is_answered_once() {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v42", 5).await;
    let (message, first) = app
        .person_says("Ev-retried", "checkout production errors")
        .await;
    let second = app
        .redeliver("Ev-retried", &message, "checkout production errors")
        .await;
    assert!(matches!(
        first,
        breakwater::core::bot::AlertHandled::Recorded { .. }
    ));
    assert_eq!(second, breakwater::core::bot::AlertHandled::Duplicate);
}

#[tokio::test]
async fn a_person_mentioning_no_known_service_is_ignored() {
    let app = spawn_app().await;
    let (_, handled) = app.person_says("Ev-lunch", "lunch anyone?").await;
    assert_eq!(handled, breakwater::core::bot::AlertHandled::Ignored);
}

#[tokio::test]
async fn a_person_announcing_a_deploy_is_not_an_alert() {
    let app = spawn_app().await;
    let (_, handled) = app
        .person_says("Ev-deploy", "deployed checkout v42 to production")
        .await;
    assert_eq!(handled, breakwater::core::bot::AlertHandled::Ignored);
}

#[tokio::test]
async fn an_alert_for_an_unknown_service_lists_the_known_ones_and_offers_no_button() {
    let app = spawn_app().await;
    app.fire_alert("DiskFull", "ledger", "production").await;
    let answer = app.chat.wait_for_text("Services I know").await;
    assert!(
        answer.plain().contains("checkout, payments"),
        "{}",
        answer.plain()
    );
    assert!(answer.message.buttons().next().is_none());
}

#[tokio::test]
async fn no_deploys_in_the_window_says_so_and_names_the_last_one() {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v40", 60 * 24).await;
    app.fire_alert("HighLatency", "checkout", "production")
        .await;
    let summary = app.summary().await;
    let text = summary.plain();
    assert!(
        text.contains("No deploys to checkout production in the 6 h before the alert"),
        "{text}"
    );
    assert!(text.contains("The last one was v40"), "{text}");
    assert!(
        summary
            .message
            .buttons()
            .all(|(label, _)| !label.starts_with("Roll back"))
    );
}

#[tokio::test]
async fn an_unauthorised_press_is_refused_privately_and_audited() {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;

    let reply = app
        .press(&summary, "Roll back", &actor("console:mallory", "Mallory"))
        .await;

    assert!(matches!(reply, Reply::Private(_)));
    assert!(
        private_text(&reply).contains("not allowed to roll back checkout production"),
        "{}",
        private_text(&reply)
    );
    app.bot.settle().await;
    assert!(app.receiver.calls().is_empty());
    let denied = app
        .bot
        .audit()
        .search(&breakwater::audit::AuditQuery {
            action: Some("rollback.denied".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("search");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].actor, "console:mallory");
    assert!(denied[0].details.contains("not_allowed"));
}

#[tokio::test]
async fn ten_concurrent_presses_roll_back_exactly_once_and_the_rest_are_told_who_did() {
    let app = spawn_app().await;
    app.receiver.behave(Behaviour::Succeed {
        delay: Duration::from_millis(200),
    });
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;
    let alice = actor("console:alice", "Alice");

    let presses = (0..10).map(|_| app.press(&summary, "Roll back", &alice));
    let replies = futures::future::join_all(presses).await;

    // The press that started it gets no private reply: the summary it pressed on shows
    // the progress and the outcome.
    let started = replies.iter().filter(|r| **r == Reply::None).count();
    assert_eq!(
        started,
        1,
        "{:?}",
        replies.iter().map(private_text).collect::<Vec<_>>()
    );
    assert!(
        replies
            .iter()
            .filter(|r| **r != Reply::None)
            .all(|r| private_text(r).contains("Alice already started this rollback"))
    );
    let done = app
        .chat
        .wait_for_update(
            &summary.at,
            "Rolled back checkout production from v42 to v41",
        )
        .await;
    assert!(done.plain().contains("by Alice"), "{}", done.plain());
    assert!(
        done.message.buttons().next().is_none(),
        "buttons are replaced by the status line"
    );
    let calls = app.receiver.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["service"], "checkout");
    assert_eq!(calls[0]["from"], "v42");
    assert_eq!(calls[0]["to"], "v41");
    assert_eq!(calls[0]["requested_by"], "console:alice");
    assert_eq!(app.receiver.rejected(), 0);

    let report = app.bot.audit().verify().await.expect("verify");
    assert_eq!(report.problem, None);
    let actions: Vec<String> = app
        .bot
        .audit()
        .search(&Default::default())
        .await
        .expect("search")
        .into_iter()
        .map(|r| r.action)
        .collect();
    for expected in [
        "alert.received",
        "summary.posted",
        "rollback.requested",
        "rollback.started",
        "rollback.backend_call",
        "rollback.succeeded",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
}

#[tokio::test]
async fn a_finished_rollback_is_recorded_as_a_deploy_by_the_person_who_pressed() {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;
    app.press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;
    app.chat.wait_for_update(&summary.at, "Rolled back").await;

    let listed: serde_json::Value = app
        .http
        .get(format!(
            "{}/api/v1/deploys?service=checkout&environment=production&limit=1",
            app.address
        ))
        .bearer_auth(crate::support::API_TOKEN)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let newest = &listed["deploys"][0];
    assert_eq!(newest["version"], "v41");
    assert_eq!(newest["author"], "Alice");
    assert_eq!(newest["description"], "rollback of v42");
    assert_eq!(newest["source"], "rollback");
}

#[tokio::test]
async fn a_deploy_after_the_button_was_offered_makes_the_plan_stale_and_nothing_runs() {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;
    app.deploy("checkout", "production", "v43", 0).await;

    app.press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;

    let stale = app
        .chat
        .wait_for_update(&summary.at, "Not rolled back")
        .await;
    assert!(
        stale
            .plain()
            .contains("checkout production now runs v43, not v42 as when this was offered"),
        "{}",
        stale.plain()
    );
    assert!(app.receiver.calls().is_empty());
    let fresh = app
        .chat
        .wait_for_text("Roll back checkout production from v43 to v41?")
        .await;
    assert!(
        fresh
            .button("Roll back checkout production to v41")
            .is_some()
    );
}

#[tokio::test]
async fn an_expired_plan_is_refused_with_how_to_get_a_fresh_one() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let app = spawn_app_replacing(
        AppOptions {
            extra_config: "[policy]\nrollback_allowed = [\"console:alice\"]\nplan_ttl = \"10m\"\ncooldown = \"0s\"\n".into(),
            ..AppOptions::default()
        },
        Receiver::start(BACKEND_SECRET).await,
        Replacements {
            clock: Some(clock.clone()),
            ..Replacements::default()
        },
    )
    .await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;
    clock.advance(chrono::Duration::minutes(10) + chrono::Duration::seconds(1));

    let reply = app
        .press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;

    let text = private_text(&reply);
    assert!(text.contains("This rollback offer expired"), "{text}");
    assert!(
        text.contains("Run /breakwater rollback checkout production for a fresh one"),
        "{text}"
    );
    assert!(app.receiver.calls().is_empty());
}

#[tokio::test]
async fn a_backend_timeout_fails_the_rollback_with_the_reason_shown() {
    let app = spawn_app().await;
    app.receiver.behave(Behaviour::Hang);
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;

    app.press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;

    let failed = app
        .chat
        .wait_for_update(&summary.at, "Rollback of checkout production to v41 failed")
        .await;
    assert!(
        failed.plain().contains("did not answer within 1s"),
        "{}",
        failed.plain()
    );
}

#[tokio::test]
async fn a_backend_500_fails_the_rollback_with_its_answer_shown() {
    let app = spawn_app().await;
    app.receiver.behave(Behaviour::Fail {
        status: 500,
        body: "deployer exploded: quota exceeded".into(),
    });
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;

    app.press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;

    let failed = app.chat.wait_for_update(&summary.at, "failed").await;
    assert!(failed.plain().contains("500"), "{}", failed.plain());
    assert!(
        failed.plain().contains("quota exceeded"),
        "{}",
        failed.plain()
    );
    let failed_records = app
        .bot
        .audit()
        .search(&breakwater::audit::AuditQuery {
            action: Some("rollback.failed".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .expect("search");
    assert_eq!(failed_records.len(), 1);
}

#[tokio::test]
async fn on_a_platform_without_a_confirm_dialog_a_press_asks_for_confirmation_first() {
    let app = spawn_app_with(AppOptions {
        platform: Platform::Console,
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

    let prompt = app.press(&summary, "Roll back", &alice).await;
    let Reply::Private(prompt) = prompt else {
        panic!("expected a private confirmation, got {prompt:?}")
    };
    assert!(
        prompt
            .to_plain()
            .contains("Roll back checkout production from v42 to v41?"),
        "{}",
        prompt.to_plain()
    );
    app.bot.settle().await;
    assert!(
        app.receiver.calls().is_empty(),
        "nothing runs before Confirm"
    );

    let (_, confirm) = prompt
        .buttons()
        .find(|(label, _)| *label == "Confirm")
        .expect("confirm button");
    let bob = actor("console:bob", "Bob");
    let refused = app.press_action(confirm.clone(), None, &bob).await;
    assert!(
        private_text(&refused).contains("Only Alice can confirm"),
        "{}",
        private_text(&refused)
    );

    let confirmed = app.press_action(confirm.clone(), None, &alice).await;
    assert!(matches!(confirmed, Reply::ReplaceSource(_)));
    app.chat.wait_for_update(&summary.at, "Rolled back").await;
    assert_eq!(app.receiver.calls().len(), 1);
}

#[tokio::test]
async fn cancel_in_the_confirmation_step_runs_nothing() {
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
        panic!("expected a prompt")
    };
    let (_, cancel) = prompt
        .buttons()
        .find(|(label, _)| *label == "Cancel")
        .expect("cancel");

    let reply = app.press_action(cancel.clone(), None, &alice).await;

    assert!(private_text(&reply).contains("Cancelled"));
    app.bot.settle().await;
    assert!(app.receiver.calls().is_empty());
    let plans = app
        .bot
        .store()
        .plans_in_state(&[PlanState::Offered])
        .await
        .expect("plans");
    assert_eq!(plans.len(), 1, "the offer stays open for someone else");
}

#[tokio::test]
async fn the_two_person_rule_needs_a_second_authorised_press() {
    let app = spawn_app_with(AppOptions {
        extra_config: "[policy]\nrollback_allowed = [\"console:alice\", \"console:bob\"]\ntwo_person = [\"production\"]\ncooldown = \"0s\"\n".into(),
        ..AppOptions::default()
    })
    .await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;
    let alice = actor("console:alice", "Alice");

    let first = app.press(&summary, "Roll back", &alice).await;
    assert!(
        private_text(&first).contains("Approval recorded"),
        "{}",
        private_text(&first)
    );
    let again = app.press(&summary, "Roll back", &alice).await;
    assert!(
        private_text(&again).contains("You already approved"),
        "{}",
        private_text(&again)
    );
    app.chat
        .wait_for_update(&summary.at, "Approved by Alice")
        .await;
    assert!(app.receiver.calls().is_empty());

    app.press(&summary, "Roll back", &actor("console:bob", "Bob"))
        .await;
    app.chat.wait_for_update(&summary.at, "Rolled back").await;
    assert_eq!(app.receiver.calls().len(), 1);
}

#[tokio::test]
async fn not_deploy_related_removes_the_button_and_says_who() {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;

    app.press(&summary, "Not deploy-related", &actor("console:bob", "Bob"))
        .await;

    let dismissed = app
        .chat
        .wait_for_update(&summary.at, "Marked not deploy-related by Bob")
        .await;
    assert!(dismissed.message.buttons().next().is_none());
    let reply = app
        .press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;
    assert!(
        private_text(&reply).contains("marked not deploy-related"),
        "{}",
        private_text(&reply)
    );
}

#[tokio::test]
async fn alerts_for_the_same_target_are_grouped_into_one_thread() {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v42", 18).await;
    for name in ["HighErrorRate", "HighLatency", "PodCrashLooping", "SLOBurn"] {
        app.fire_alert(name, "checkout", "production").await;
    }
    let summary = app.summary().await;
    app.chat
        .wait_for_update(&summary.at, "4 alerts grouped in this thread")
        .await;
    let summaries = app
        .chat
        .messages()
        .into_iter()
        .filter(|m| m.plain().contains("recent deploys"))
        .count();
    assert_eq!(summaries, 1);
}

#[tokio::test]
async fn a_resolved_alert_after_a_rollback_is_reported_in_the_thread() {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;
    app.press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;
    app.chat.wait_for_update(&summary.at, "Rolled back").await;

    let response = app
        .post_webhook(
            "/webhooks/alertmanager",
            &crate::support::alertmanager("HighErrorRate", "checkout", "production", "resolved"),
        )
        .await;
    assert_eq!(response.status(), 200);

    let verified = app.chat.wait_for_text("HighErrorRate resolved").await;
    assert!(
        verified.plain().contains("after the rollback to v41"),
        "{}",
        verified.plain()
    );
    app.chat
        .wait_for_update(&summary.at, "All alerts resolved")
        .await;
}

#[tokio::test]
async fn an_alert_still_firing_after_the_verify_window_is_reported() {
    let app = spawn_app_with(AppOptions {
        extra_config: "[policy]\nrollback_allowed = [\"console:alice\"]\nverify_window = \"1s\"\ncooldown = \"0s\"\n".into(),
        ..AppOptions::default()
    })
    .await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;
    app.press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;
    app.chat.wait_for_update(&summary.at, "Rolled back").await;

    let warning = app.chat.wait_for_text("is still firing").await;
    assert!(
        warning.plain().contains("HighErrorRate is still firing"),
        "{}",
        warning.plain()
    );
}

#[tokio::test]
async fn the_rollback_command_answers_with_a_plan_and_never_rolls_back_by_itself() {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;

    let reply = app
        .bot
        .handle_command(breakwater::core::event::CommandRequest {
            event_id: "cmd-1".into(),
            actor: actor("console:alice", "Alice"),
            command: breakwater::core::event::Command::parse("rollback checkout production")
                .expect("parse"),
            platform: Platform::Console,
            channel: Some("alerts".into()),
        })
        .await;

    assert!(
        private_text(&reply).contains("Nothing runs until someone presses Roll back"),
        "{}",
        private_text(&reply)
    );
    let plan = app
        .chat
        .wait_for_text("Roll back checkout production from v42 to v41?")
        .await;
    app.bot.settle().await;
    assert!(app.receiver.calls().is_empty());
    app.press(&plan, "Roll back", &actor("console:alice", "Alice"))
        .await;
    app.chat.wait_for_update(&plan.at, "Rolled back").await;
    assert_eq!(app.receiver.calls().len(), 1);
}

#[tokio::test]
async fn a_rollback_left_running_by_a_crash_is_reported_as_interrupted_on_start() {
    let app = spawn_app().await;
    app.receiver.behave(Behaviour::Hang);
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;
    let plan_id = summary.button("Roll back").expect("button").token;
    // Simulate a crash: the plan is marked running but no process follows it.
    let store = app.bot.store().clone();
    store
        .transition_plan(
            &plan_id,
            &[PlanState::Offered],
            PlanState::Running,
            &breakwater::core::rollback::PlanPatch {
                started_by: Some(actor("console:alice", "Alice")),
                started_at: Some(chrono::Utc::now()),
                ..Default::default()
            },
            chrono::Utc::now(),
        )
        .await
        .expect("transition")
        .expect("running");

    // Maintenance adopts the orphaned plan (no heartbeat) within its next tick.
    let interrupted = app.chat.wait_for_update(&summary.at, "interrupted").await;
    assert!(
        interrupted
            .plain()
            .contains("breakwater restarted while this rollback ran"),
        "{}",
        interrupted.plain()
    );
    let plan = store.plan(&plan_id).await.expect("load").expect("plan");
    assert_eq!(plan.state, PlanState::Interrupted);
}

#[tokio::test]
async fn shutting_down_during_a_rollback_records_it_as_interrupted() {
    let app = spawn_app_with(AppOptions {
        extra_config: "[backends.slow]\nkind = \"simulated\"\ndelay = \"30s\"\n\n[[services]]\nname = \"search\"\nenvironments = [\"production\"]\nbackend = \"slow\"\n".into(),
        ..AppOptions::default()
    })
    .await;
    app.deploy("search", "production", "s1", 300).await;
    app.deploy("search", "production", "s2", 18).await;
    app.fire_alert("HighErrorRate", "search", "production")
        .await;
    let summary = app.summary().await;
    let plan_id = summary.button("Roll back").expect("button").token;
    app.press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;
    app.chat.wait_for_update(&summary.at, "Rolling back").await;
    let store = app.bot.store().clone();
    let chat = app.chat.clone();

    app.stop().await;

    let plan = store.plan(&plan_id).await.expect("load").expect("plan");
    assert_eq!(plan.state, PlanState::Interrupted);
    let shown = chat.get(&summary.at).expect("summary");
    assert!(
        shown
            .plain()
            .contains("breakwater shut down while this rollback ran"),
        "{}",
        shown.plain()
    );
}

#[tokio::test]
async fn an_alert_is_recorded_and_audited_even_when_the_chat_is_down() {
    let app = spawn_app().await;
    app.chat.set_failing(true);
    app.deploy("checkout", "production", "v42", 18).await;

    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;

    let received = app
        .bot
        .audit()
        .search(&breakwater::audit::AuditQuery {
            action: Some("alert.received".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .expect("search");
    assert_eq!(received.len(), 1);
    let groups = app
        .bot
        .store()
        .recent_alert_groups(5)
        .await
        .expect("groups");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].title, "HighErrorRate");
}

#[tokio::test]
async fn a_command_backend_that_exits_1_fails_the_rollback_with_its_stderr_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("rollback.sh"),
        "#!/bin/sh\necho \"rolling back $1 to $2\"\necho 'Error: release search has no deployed releases' >&2\nexit 1\n",
    )
    .expect("write script");
    let app = spawn_app_with(AppOptions {
        extra_config: "[backends.script]\nkind = \"command\"\nargv = [\"/bin/sh\", \"{dir}/rollback.sh\", \"{service}\", \"{to}\"]\ntimeout = \"5s\"\n\n[[services]]\nname = \"search\"\nenvironments = [\"production\"]\nbackend = \"script\"\n".into(),
        dir: Some(dir),
        ..AppOptions::default()
    })
    .await;
    app.deploy("search", "production", "s1", 300).await;
    app.deploy("search", "production", "s2", 18).await;
    app.fire_alert("HighErrorRate", "search", "production")
        .await;
    let summary = app.summary().await;

    app.press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;

    let failed = app
        .chat
        .wait_for_update(&summary.at, "Rollback of search production to s1 failed")
        .await;
    assert!(failed.plain().contains("exit"), "{}", failed.plain());
    assert!(
        failed
            .plain()
            .contains("Error: release search has no deployed releases"),
        "{}",
        failed.plain()
    );
}

#[tokio::test]
async fn a_freeze_window_is_checked_again_at_the_press_and_refuses_privately_with_its_reason() {
    let now = chrono::Utc::now();
    let app = spawn_app_with(AppOptions {
        extra_config: format!(
            r#"
[policy]
rollback_allowed = ["console:alice"]
cooldown = "0s"

[[policy.freeze]]
start = "{}"
end = "{}"
environments = ["production"]
reason = "Black Friday change freeze"
"#,
            (now - chrono::Duration::hours(1)).to_rfc3339(),
            (now + chrono::Duration::hours(1)).to_rfc3339()
        ),
        ..AppOptions::default()
    })
    .await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;

    let reply = app
        .press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;

    let text = private_text(&reply);
    assert!(text.contains("Black Friday change freeze"), "{text}");
    let denied = app.audited("rollback.denied").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert!(
        denied[0].details.contains("\"reason\":\"freeze\""),
        "{}",
        denied[0].details
    );
    assert!(app.audited("rollback.started").await.is_empty());
    assert!(
        app.receiver.calls().is_empty(),
        "nothing reached the backend"
    );
}
