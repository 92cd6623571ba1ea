//! The Argo CD backend against a fake Argo CD API on loopback, through the real
//! application: history in the summary, rollback to the history id that was shown,
//! followed to Healthy; the auto-sync caveat and its confirmed remedy; and each failure
//! ending as an audited failed rollback that says what to do next.

use std::sync::Arc;

use breakwater::backends::BackendRegistry;
use breakwater::config::Config;
use breakwater::core::backend::{Action, Outcome, RollbackCall};
use breakwater::core::deploy::{Environment, Revision, ServiceName, Target};
use breakwater::core::event::Reply;
use breakwater::core::message::Platform;
use breakwater::core::rollback::PlanId;
use serde_json::json;

use crate::support::argocd::{
    ARGO_TOKEN, AfterRollback, CHART_VERSION, Entry, FakeArgoCd, Shape, application, revision_of,
    shaped_application,
};
use crate::support::{AppOptions, TestApp, actor, spawn_app_with};

const APP: &str = "storefront-production";

struct Setup {
    auto_sync: bool,
    allow_disable_autosync: bool,
    confirm_step: bool,
    timeout: &'static str,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            auto_sync: false,
            allow_disable_autosync: false,
            confirm_step: false,
            timeout: "5s",
        }
    }
}

fn history() -> [Entry; 3] {
    [
        Entry {
            id: 1,
            tag: "v1.3.1",
            minutes_ago: 60 * 72,
            by: "ada",
        },
        Entry {
            id: 2,
            tag: "v1.3.2",
            minutes_ago: 300,
            by: "ada",
        },
        Entry {
            id: 3,
            tag: "v1.4.0",
            minutes_ago: 20,
            by: "grace",
        },
    ]
}

fn backend_config(url: &str, setup: &Setup) -> String {
    format!(
        r#"
[backends.argo]
kind = "argocd"
url = "{url}"
token = {{ file = "argocd_token" }}
allow_disable_autosync = {}
timeout = "{}"
poll_interval = "20ms"
allow_insecure_http = true

[[services]]
name = "storefront"
environments = ["production"]
backend = "argo"
app = "{{service}}-{{environment}}"
"#,
        setup.allow_disable_autosync, setup.timeout
    )
}

async fn start(setup: Setup) -> (TestApp, Arc<FakeArgoCd>) {
    let fake = FakeArgoCd::start().await;
    fake.add(application(APP, &history(), setup.auto_sync));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("argocd_token"), ARGO_TOKEN).expect("token");
    let app = spawn_app_with(AppOptions {
        extra_config: backend_config(&fake.url, &setup),
        platform: Platform::Console,
        confirm_step: setup.confirm_step,
        dir: Some(dir),
    })
    .await;
    (app, fake)
}

async fn summary_of_an_alert(app: &TestApp) -> crate::support::Shown {
    app.fire_alert("HighErrorRate", "storefront", "production")
        .await;
    app.summary().await
}

fn alice() -> breakwater::core::policy::Actor {
    actor("console:alice", "Alice")
}

#[tokio::test]
async fn argocd_history_is_summarised_and_a_press_rolls_back_to_the_shown_id_until_healthy() {
    let (app, fake) = start(Setup::default()).await;

    let summary = summary_of_an_alert(&app).await;
    let text = summary.plain();
    assert!(text.contains("Suspect v1.4.0"), "{text}");
    assert!(text.contains("by grace"), "{text}");
    assert!(text.contains("Argo CD sync to 033c2ab (main)"), "{text}");
    assert!(text.contains("v1.3.2"), "{text}");
    assert!(
        summary
            .button("Roll back storefront production to v1.3.2")
            .is_some(),
        "{text}"
    );

    app.press(&summary, "Roll back", &alice()).await;
    let done = app
        .chat
        .wait_for_update(
            &summary.at,
            "Rolled back storefront production from v1.4.0 to v1.3.2",
        )
        .await;

    assert!(done.plain().contains("by Alice"), "{}", done.plain());
    let writes = fake.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(
        writes[0].path,
        format!("/api/v1/applications/{APP}/rollback")
    );
    assert_eq!(
        writes[0].body,
        json!({"name": APP, "id": 2, "dryRun": false, "prune": false})
    );
    let succeeded = app.audited("rollback.succeeded").await;
    assert_eq!(succeeded.len(), 1);
    assert!(
        succeeded[0].details.contains("Healthy"),
        "{}",
        succeeded[0].details
    );
    let calls = app.audited("rollback.backend_call").await;
    assert!(
        calls[0].details.contains("\"ok\":true"),
        "{}",
        calls[0].details
    );
    assert_eq!(
        app.bot.audit().verify().await.expect("verify").problem,
        None
    );
}

#[tokio::test]
async fn argocd_auto_sync_blocks_the_rollback_and_the_confirmed_remedy_disables_it_first() {
    let (app, fake) = start(Setup {
        auto_sync: true,
        allow_disable_autosync: true,
        confirm_step: true,
        ..Setup::default()
    })
    .await;

    let summary = summary_of_an_alert(&app).await;
    let text = summary.plain();
    assert!(
        text.contains("auto-sync is on for storefront-production: a rollback would be reverted"),
        "{text}"
    );
    assert!(
        summary.button("Roll back").is_none(),
        "a blocking caveat hides Roll back: {text}"
    );

    let reply = app
        .press(
            &summary,
            "Disable auto-sync and roll back to v1.3.2",
            &alice(),
        )
        .await;
    let Reply::Private(prompt) = reply else {
        panic!("expected a private confirm step, got {reply:?}");
    };
    assert!(
        prompt
            .to_plain()
            .contains("Automated sync will be turned off first"),
        "{}",
        prompt.to_plain()
    );
    assert!(fake.writes().is_empty(), "nothing happens before Confirm");
    let confirm = prompt
        .buttons()
        .find(|(label, _)| *label == "Confirm")
        .map(|(_, action)| action.clone())
        .expect("Confirm button");
    app.press_action(confirm, None, &alice()).await;
    app.chat
        .wait_for_update(
            &summary.at,
            "Rolled back storefront production from v1.4.0 to v1.3.2",
        )
        .await;

    let writes = fake.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[0].method, axum::http::Method::PATCH);
    assert_eq!(writes[0].body["patchType"], "merge");
    assert_eq!(
        writes[0].body["patch"],
        r#"{"spec":{"syncPolicy":{"automated":null}}}"#
    );
    assert!(fake.app(APP)["spec"]["syncPolicy"]["automated"].is_null());
    assert_eq!(writes[1].body["id"], 2);
    let started = app.audited("rollback.started").await;
    assert!(
        started[0].details.contains("\"disable_auto_sync\":true"),
        "{}",
        started[0].details
    );
}

#[tokio::test]
async fn argocd_auto_sync_without_permission_offers_no_remedy_and_warns_about_the_parent_app() {
    let (app, fake) = start(Setup {
        auto_sync: true,
        ..Setup::default()
    })
    .await;
    fake.edit(APP, |app| {
        app["metadata"]["labels"]["app.kubernetes.io/instance"] = json!("platform-apps");
    });

    let summary = summary_of_an_alert(&app).await;

    let text = summary.plain();
    assert!(
        text.contains("argocd app set storefront-production --sync-policy none"),
        "{text}"
    );
    assert!(
        text.contains("managed by Application platform-apps, which will turn auto-sync back on"),
        "{text}"
    );
    assert!(
        summary
            .message
            .buttons()
            .all(|(label, _)| !label.starts_with("Roll back") && !label.starts_with("Disable")),
        "{text}"
    );
}

#[tokio::test]
async fn argocd_a_forged_remedy_press_is_refused_at_the_press_when_nothing_offered_it() {
    let (app, fake) = start(Setup::default()).await;
    let summary = summary_of_an_alert(&app).await;
    let rollback = summary.button("Roll back").expect("button");
    let forged = breakwater::core::message::ButtonAction::new(
        breakwater::core::message::ButtonKind::DisableAutoSyncAndRollback,
        rollback.token,
    );

    let reply = app
        .press_action(forged, Some(summary.at.clone()), &alice())
        .await;

    let text = private_text(&reply);
    assert!(
        text.contains("\"Disable auto-sync and roll back\" is not offered"),
        "{text}"
    );
    assert_denied(&app, "action_not_offered").await;
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

#[tokio::test]
async fn argocd_the_not_deploy_related_plan_id_of_an_auto_synced_app_never_rolls_back() {
    let (app, fake) = start(Setup {
        auto_sync: true,
        ..Setup::default()
    })
    .await;
    let summary = summary_of_an_alert(&app).await;
    assert!(summary.button("Roll back").is_none(), "{}", summary.plain());
    let dismiss = summary.button("Not deploy-related").expect("button");

    for kind in [
        breakwater::core::message::ButtonKind::Rollback,
        breakwater::core::message::ButtonKind::DisableAutoSyncAndRollback,
    ] {
        let forged = breakwater::core::message::ButtonAction::new(kind, dismiss.token);
        let reply = app
            .press_action(forged, Some(summary.at.clone()), &alice())
            .await;
        let text = private_text(&reply);
        assert!(
            text.contains("auto-sync is on for storefront-production"),
            "{text}"
        );
        assert!(text.contains("Nothing was done"), "{text}");
    }

    assert!(
        fake.writes().is_empty(),
        "nothing reached Argo CD: {:?}",
        fake.writes()
    );
    let denied = app.audited("rollback.denied").await;
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert!(app.audited("rollback.started").await.is_empty());
}

fn private_text(reply: &Reply) -> String {
    match reply {
        Reply::Private(message) => message.to_plain(),
        other => panic!("expected a private refusal, got {other:?}"),
    }
}

async fn assert_denied(app: &TestApp, reason: &str) {
    let denied = app.audited("rollback.denied").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert!(
        denied[0]
            .details
            .contains(&format!("\"reason\":\"{reason}\"")),
        "{}",
        denied[0].details
    );
    assert_eq!(denied[0].actor, "console:alice");
}

#[tokio::test]
async fn argocd_an_expired_token_fails_the_rollback_saying_to_renew_it() {
    let (app, fake) = start(Setup::default()).await;
    let summary = summary_of_an_alert(&app).await;
    fake.expire_token();

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(detail.contains("HTTP 401"), "{detail}");
    assert!(
        detail.contains("Renew the token in backends.argo.token"),
        "{detail}"
    );
    assert!(fake.writes().is_empty());
}

#[tokio::test]
async fn argocd_a_token_without_sync_rights_fails_naming_the_permission() {
    let (app, fake) = start(Setup::default()).await;
    let summary = summary_of_an_alert(&app).await;
    fake.forbid_sync();

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(
        detail.contains("may not sync application storefront-production"),
        "{detail}"
    );
    assert!(detail.contains("\"applications, sync\""), "{detail}");
    let calls = app.audited("rollback.backend_call").await;
    assert!(
        calls[0].details.contains("\"error_kind\":\"unauthorized\""),
        "{}",
        calls[0].details
    );
}

#[tokio::test]
async fn argocd_a_deleted_application_fails_as_not_found() {
    let (app, fake) = start(Setup::default()).await;
    let summary = summary_of_an_alert(&app).await;
    fake.remove(APP);

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(
        detail.contains("Argo CD has no application storefront-production"),
        "{detail}"
    );
    assert!(detail.contains("argocd app list"), "{detail}");
}

#[tokio::test]
async fn argocd_auto_sync_turned_on_after_the_offer_is_refused_at_the_press() {
    let (app, fake) = start(Setup::default()).await;
    let summary = summary_of_an_alert(&app).await;
    fake.edit(APP, |app| {
        app["spec"]["syncPolicy"]["automated"] = json!({"selfHeal": true});
    });

    let reply = app.press(&summary, "Roll back", &alice()).await;

    let text = private_text(&reply);
    assert!(
        text.contains("auto-sync is on for storefront-production: a rollback would be reverted"),
        "{text}"
    );
    assert!(text.contains("--sync-policy none"), "{text}");
    assert_denied(&app, "blocked").await;
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

#[tokio::test]
async fn argocd_a_sync_already_running_fails_as_a_conflict() {
    let (app, fake) = start(Setup::default()).await;
    let summary = summary_of_an_alert(&app).await;
    fake.edit(APP, |app| {
        app["operation"] =
            json!({"sync": {"revision": revision_of(3)}, "initiatedBy": {"username": "grace"}});
    });

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(detail.contains("already running an operation"), "{detail}");
    assert!(detail.contains("Wait for it to finish"), "{detail}");
    let calls = app.audited("rollback.backend_call").await;
    assert!(calls[0].details.contains("\"error_kind\":\"conflict\""));
}

#[tokio::test]
async fn argocd_a_rollback_that_ends_degraded_fails_with_argos_message() {
    let (app, fake) = start(Setup::default()).await;
    fake.after_rollback(AfterRollback::Degraded(
        "Deployment \"storefront\" exceeded its progress deadline".into(),
    ));
    let summary = summary_of_an_alert(&app).await;

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(
        detail.contains("it is Degraded: Deployment \"storefront\" exceeded its progress deadline"),
        "{detail}"
    );
    assert!(
        detail.contains("/applications/storefront-production"),
        "{detail}"
    );
}

#[tokio::test]
async fn argocd_a_failed_sync_operation_fails_with_its_message() {
    let (app, fake) = start(Setup::default()).await;
    fake.after_rollback(AfterRollback::SyncFails(
        "one or more objects failed to apply, reason: admission webhook denied the request".into(),
    ));
    let summary = summary_of_an_alert(&app).await;

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(detail.contains("ended Failed"), "{detail}");
    assert!(
        detail.contains("admission webhook denied the request"),
        "{detail}"
    );
}

#[tokio::test]
async fn argocd_a_rollback_that_never_turns_healthy_times_out_with_the_last_state() {
    let (app, fake) = start(Setup {
        timeout: "1s",
        ..Setup::default()
    })
    .await;
    fake.after_rollback(AfterRollback::Stuck);
    let summary = summary_of_an_alert(&app).await;

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(detail.contains("within 1s"), "{detail}");
    assert!(detail.contains("last seen: synced to"), "{detail}");
    assert!(detail.contains("Progressing"), "{detail}");
}

// --- the backend on its own -------------------------------------------------------------------

fn registry(url: &str, dir: &std::path::Path, extra_service_keys: &str) -> BackendRegistry {
    std::fs::write(dir.join("token"), ARGO_TOKEN).expect("token");
    let text = format!(
        r#"
[backends.argo]
kind = "argocd"
url = "{url}"
token = {{ file = "{}" }}
timeout = "5s"
poll_interval = "20ms"
allow_insecure_http = true

[[services]]
name = "storefront"
environments = ["production"]
backend = "argo"
app = "storefront-production"
{extra_service_keys}
"#,
        dir.join("token").display()
    );
    BackendRegistry::from_config(&Config::parse(&text).expect("config")).expect("registry")
}

fn target() -> Target {
    Target::new(
        ServiceName::parse("storefront").expect("service"),
        Environment::parse("production").expect("environment"),
    )
}

#[tokio::test]
async fn argocd_a_rollback_is_followed_again_by_a_restarted_breakwater_and_the_app_is_out_of_sync_but_current()
 {
    let fake = FakeArgoCd::start().await;
    fake.add(application(APP, &history(), false));
    let dir = tempfile::tempdir().expect("tempdir");
    let first = registry(&fake.url, dir.path(), "");
    let backend = first.get("argo").expect("argo");
    let call = RollbackCall {
        plan_id: PlanId::generate(),
        target: target(),
        from: Revision {
            id: "3".into(),
            version: "v1.4.0".into(),
        },
        to: Revision {
            id: "2".into(),
            version: "v1.3.2".into(),
        },
        requested_by: actor("console:alice", "Alice"),
        reason: "error rate".into(),
        disable_auto_sync: false,
        action: Action::Rollback,
    };
    let operation = backend.rollback(&call).await.expect("accepted");
    let stored = serde_json::to_value(&operation).expect("store");
    drop(first);

    let restarted = registry(&fake.url, dir.path(), "");
    let backend = restarted.get("argo").expect("argo");
    let lines = std::sync::Mutex::new(Vec::new());
    let outcome = backend
        .wait(&serde_json::from_value(stored).expect("load"), &|line| {
            lines.lock().expect("lock").push(line)
        })
        .await
        .expect("followed");

    assert!(
        matches!(outcome, Outcome::Succeeded(ref m) if m.contains("Healthy")),
        "{outcome:?}"
    );
    assert!(
        lines
            .lock()
            .expect("lock")
            .iter()
            .any(|l| l.contains("Running")),
        "{:?}",
        lines.lock().expect("lock")
    );
    assert_eq!(fake.app(APP)["status"]["sync"]["status"], "OutOfSync");
    let current = backend
        .current(&target())
        .await
        .expect("current")
        .expect("known");
    assert_eq!(current.version, "v1.3.2");
    assert_eq!(current.id, "4", "the rollback is the newest history entry");
}

#[tokio::test]
async fn argocd_apps_in_other_namespaces_are_addressed_with_app_namespace() {
    let fake = FakeArgoCd::start().await;
    fake.add(application(APP, &history(), false));
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry(&fake.url, dir.path(), "app_namespace = \"team-{service}\"");
    let backend = registry.get("argo").expect("argo");

    let history = backend.history(&target()).await.expect("history");

    assert_eq!(
        history
            .iter()
            .map(|d| d.version.as_str())
            .collect::<Vec<_>>(),
        ["v1.4.0", "v1.3.2", "v1.3.1"]
    );
    assert_eq!(history[0].revision.as_deref(), Some("3"));
    assert_eq!(history[0].author.as_deref(), Some("grace"));
    assert_eq!(history[0].commit.as_deref(), Some(revision_of(3).as_str()));
    assert_eq!(
        fake.seen()[0].query.as_deref(),
        Some("appNamespace=team-storefront")
    );
}

// --- rollback truth: the rollback's own operation, never the revision string ------------------

fn rollback_call() -> RollbackCall {
    RollbackCall {
        plan_id: PlanId::generate(),
        target: target(),
        from: Revision {
            id: "3".into(),
            version: "v1.4.0".into(),
        },
        to: Revision {
            id: "2".into(),
            version: "v1.3.2".into(),
        },
        requested_by: actor("console:alice", "Alice"),
        reason: "error rate".into(),
        disable_auto_sync: false,
        action: Action::Rollback,
    }
}

/// Rolls back through the backend on its own and follows it, returning the outcome, the
/// progress lines and the number of history entries the application had when the
/// outcome was known.
async fn roll_back_and_follow(fake: &FakeArgoCd) -> (Outcome, Vec<String>, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry(&fake.url, dir.path(), "");
    let backend = registry.get("argo").expect("argo");
    let operation = backend.rollback(&rollback_call()).await.expect("accepted");
    let lines = std::sync::Mutex::new(Vec::new());
    let outcome = backend
        .wait(&operation, &|line| lines.lock().expect("lock").push(line))
        .await
        .expect("followed");
    let entries = fake.app(APP)["status"]["history"]
        .as_array()
        .map_or(0, Vec::len);
    (outcome, lines.into_inner().expect("lock"), entries)
}

#[tokio::test]
async fn argocd_a_helm_repository_chart_sharing_one_revision_is_rolled_back_only_after_its_own_sync_ran()
 {
    let fake = FakeArgoCd::start().await;
    fake.add(shaped_application(
        APP,
        &history(),
        false,
        Shape::HelmRepositoryChart,
    ));
    // The controller is busy: the rollback stays pending for a few reads while the app
    // still reads Synced to 1.8.2 and Healthy.
    fake.start_syncs_after_reads(3);

    let (outcome, lines, entries) = roll_back_and_follow(&fake).await;

    assert!(
        matches!(outcome, Outcome::Succeeded(ref m) if m.contains("Healthy")),
        "{outcome:?}"
    );
    assert_eq!(
        entries, 4,
        "success only after the sync added its history entry"
    );
    assert!(
        lines
            .iter()
            .any(|l| l == &format!("waiting for Argo CD to start the sync to {CHART_VERSION}")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("Running")), "{lines:?}");
    let writes = fake.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].body["id"], 2);
}

#[tokio::test]
async fn argocd_a_pending_rollback_that_syncs_later_and_ends_degraded_is_a_failure_never_a_success_first()
 {
    let (app, fake) = start(Setup::default()).await;
    fake.add(shaped_application(
        APP,
        &history(),
        false,
        Shape::HelmRepositoryChart,
    ));
    fake.start_syncs_after_reads(3);
    fake.after_rollback(AfterRollback::Degraded(
        "Deployment \"storefront\" exceeded its progress deadline".into(),
    ));
    let summary = summary_of_an_alert(&app).await;
    assert!(
        summary.plain().contains("Suspect v1.4.0"),
        "{}",
        summary.plain()
    );

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(detail.contains("it is Degraded"), "{detail}");
    assert!(
        app.audited("rollback.succeeded").await.is_empty(),
        "never a success before the failure"
    );
    assert!(
        app.chat
            .messages()
            .iter()
            .flat_map(|m| m.history.iter())
            .all(|m| !m.to_plain().contains("Rolled back storefront")),
        "no success was ever shown"
    );
}

#[tokio::test]
async fn argocd_a_multi_source_rollback_compares_revisions_and_follows_its_own_operation() {
    let fake = FakeArgoCd::start().await;
    fake.add(shaped_application(
        APP,
        &history(),
        false,
        Shape::MultiSource,
    ));
    fake.start_syncs_after_reads(2);

    let (outcome, lines, entries) = roll_back_and_follow(&fake).await;

    assert!(
        matches!(outcome, Outcome::Succeeded(ref m) if m.contains("Healthy")),
        "{outcome:?}"
    );
    assert_eq!(
        entries, 4,
        "success only after the sync added its history entry"
    );
    let expected = format!("{CHART_VERSION} + {}", &revision_of(2)[..7]);
    assert!(
        lines.iter().any(|l| l.contains(&expected)),
        "{expected} in {lines:?}"
    );
    let writes = fake.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].body["id"], 2);
    let operation = &fake.app(APP)["status"]["operationState"];
    assert_eq!(
        operation["syncResult"]["revisions"],
        json!([CHART_VERSION, revision_of(2)])
    );
}

#[tokio::test]
async fn argocd_a_rejected_token_is_said_once_in_the_summary() {
    let (app, fake) = start(Setup::default()).await;
    fake.expire_token();

    let summary = summary_of_an_alert(&app).await;

    let text = summary.plain();
    assert_eq!(
        text.matches("Argo CD rejected breakwater's token").count(),
        1,
        "{text}"
    );
    assert!(summary.button("Roll back").is_none(), "{text}");
}

#[tokio::test]
async fn argocd_a_missing_application_is_said_once_in_the_summary() {
    let (app, fake) = start(Setup::default()).await;
    fake.remove(APP);

    let summary = summary_of_an_alert(&app).await;

    let text = summary.plain();
    assert_eq!(
        text.matches("Argo CD has no application storefront-production")
            .count(),
        1,
        "{text}"
    );
}

#[tokio::test]
async fn argocd_a_token_over_plain_http_is_refused_by_check_config_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), ARGO_TOKEN).expect("token");
    let config = |opt_in: &str| {
        format!(
            r#"
[backends.argo]
kind = "argocd"
url = "http://argocd.internal"
token = {{ file = "{}" }}
{opt_in}

[[services]]
name = "storefront"
environments = ["production"]
backend = "argo"
"#,
            dir.path().join("token").display()
        )
    };
    let path = dir.path().join("breakwater.toml");
    std::fs::write(&path, config("")).expect("write");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("BREAKWATER_CONFIG")
        .output()
        .expect("run");

    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("backends.argo.url: \"http://argocd.internal\" is plain http://"),
        "{text}"
    );
    assert!(
        text.contains("backends.argo.allow_insecure_http = true"),
        "{text}"
    );
    assert!(
        Config::parse(&config("allow_insecure_http = true")).is_ok(),
        "the operator may opt in"
    );
}
