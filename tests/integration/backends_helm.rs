//! The Helm backend against a fake `helm` executable (a checked-in shell script that
//! records its argument vectors and prints real `helm history -o json` output), through
//! the real application: history in the summary, `helm rollback RELEASE REVISION --wait
//! --timeout …` to the shown revision with every argument intact, and each failure helm
//! reports ending as an audited failed rollback that quotes its stderr and says what to
//! do next.

use breakwater::core::message::Platform;

use crate::support::helm::{FakeHelm, Release};
use crate::support::{AppOptions, Shown, TestApp, actor, spawn_app_with};

const CONTEXT: &str = "prod eu1; echo pwned";

fn before() -> [Release; 3] {
    [
        Release {
            revision: 1,
            status: "superseded",
            chart: "web-1.2.0",
            app_version: "1.3.1",
            description: "Install complete",
            minutes_ago: 60 * 72,
        },
        Release {
            revision: 2,
            status: "superseded",
            chart: "web-1.2.1",
            app_version: "1.3.2",
            description: "Upgrade complete",
            minutes_ago: 300,
        },
        Release {
            revision: 3,
            status: "deployed",
            chart: "web-1.3.0",
            app_version: "1.4.0",
            description: "Upgrade complete",
            minutes_ago: 20,
        },
    ]
}

fn after() -> [Release; 4] {
    let [one, two, mut three] = before();
    three.status = "superseded";
    [
        one,
        two,
        three,
        Release {
            revision: 4,
            status: "deployed",
            chart: "web-1.2.1",
            app_version: "1.3.2",
            description: "Rollback to 2",
            minutes_ago: 0,
        },
    ]
}

async fn start(helm: &FakeHelm, timeout: &str) -> TestApp {
    spawn_app_with(AppOptions {
        extra_config: format!(
            r#"
[backends.charts]
kind = "helm"
helm = "{}"
kube_context = "{CONTEXT}"
kubeconfig = "{}"
timeout = "{timeout}"

[[services]]
name = "web"
environments = ["production"]
backend = "charts"
release = "{{service}}-{{environment}}"
namespace = "web"
"#,
            FakeHelm::executable().display(),
            helm.kubeconfig().display()
        ),
        platform: Platform::Console,
        ..AppOptions::default()
    })
    .await
}

fn fake() -> FakeHelm {
    let helm = FakeHelm::new();
    helm.history(&before());
    helm.history_after_rollback(&after());
    helm
}

async fn summary_of_an_alert(app: &TestApp) -> Shown {
    app.fire_alert("HighErrorRate", "web", "production").await;
    app.summary().await
}

fn alice() -> breakwater::core::policy::Actor {
    actor("console:alice", "Alice")
}

fn common_args(helm: &FakeHelm) -> Vec<String> {
    vec![
        "--namespace".into(),
        "web".into(),
        "--kube-context".into(),
        CONTEXT.into(),
        "--kubeconfig".into(),
        helm.kubeconfig().display().to_string(),
    ]
}

#[tokio::test]
async fn helm_history_is_summarised_and_a_press_rolls_back_to_the_shown_revision_with_argv_intact()
{
    let helm = fake();
    let app = start(&helm, "7s").await;

    let summary = summary_of_an_alert(&app).await;
    let text = summary.plain();
    assert!(text.contains("Suspect 1.4.0"), "{text}");
    assert!(text.contains("chart web-1.3.0"), "{text}");
    assert!(
        summary
            .button("Roll back web production to 1.3.2")
            .is_some(),
        "{text}"
    );

    app.press(&summary, "Roll back", &alice()).await;
    app.chat
        .wait_for_update(
            &summary.at,
            "Rolled back web production from 1.4.0 to 1.3.2",
        )
        .await;

    let mut history = vec![
        "history".to_owned(),
        "web-production".into(),
        "-o".into(),
        "json".into(),
    ];
    history.extend(common_args(&helm));
    assert_eq!(helm.calls()[0], history);
    let mut rollback = vec![
        "rollback".to_owned(),
        "web-production".into(),
        "2".into(),
        "--wait".into(),
        "--timeout".into(),
        "7s".into(),
    ];
    rollback.extend(common_args(&helm));
    assert_eq!(helm.rollbacks(), vec![rollback]);
    let succeeded = app.audited("rollback.succeeded").await;
    assert!(
        succeeded[0]
            .details
            .contains("Rollback was a success! Happy Helming!"),
        "{}",
        succeeded[0].details
    );
    assert_eq!(
        app.bot.audit().verify().await.expect("verify").problem,
        None
    );
}

#[tokio::test]
async fn helm_after_a_rollback_the_release_runs_the_version_rolled_back_to() {
    let helm = fake();
    let app = start(&helm, "7s").await;
    let summary = summary_of_an_alert(&app).await;
    app.press(&summary, "Roll back", &alice()).await;
    app.chat.wait_for_update(&summary.at, "Rolled back").await;

    let status = app
        .bot
        .handle_command(breakwater::core::event::CommandRequest {
            event_id: "status-after-rollback".into(),
            actor: alice(),
            command: breakwater::core::event::Command::Status {
                service: "web".into(),
                environment: "production".into(),
            },
            platform: Platform::Console,
            channel: None,
        })
        .await;

    let text = status.message().map(|m| m.to_plain()).unwrap_or_default();
    assert!(text.contains("Runs 1.3.2 (revision 4)"), "{text}");
}

async fn rollback_failing_with(stderr: &str) -> (TestApp, FakeHelm, String) {
    let helm = fake();
    let app = start(&helm, "2s").await;
    let summary = summary_of_an_alert(&app).await;
    helm.fail_rollback(stderr);
    app.press(&summary, "Roll back", &alice()).await;
    let detail = app.failed_rollback(&summary).await;
    (app, helm, detail)
}

async fn error_kind(app: &TestApp) -> String {
    let calls = app.audited("rollback.backend_call").await;
    let details: serde_json::Value = serde_json::from_str(&calls[0].details).expect("json");
    details["error_kind"].as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn helm_forbidden_credentials_fail_quoting_stderr_and_naming_the_permissions() {
    let (app, _helm, detail) = rollback_failing_with(
        "Error: query: failed to query with labels: secrets is forbidden: User \"system:serviceaccount:ops:breakwater\" cannot list resource \"secrets\" in API group \"\" in the namespace \"web\"\n",
    )
    .await;
    assert!(
        detail.contains("helm exited with status 1: Error: query"),
        "{detail}"
    );
    assert!(
        detail.contains("the cluster refused helm's credentials"),
        "{detail}"
    );
    assert_eq!(error_kind(&app).await, "unauthorized");
}

#[tokio::test]
async fn helm_a_revision_that_no_longer_exists_fails_as_not_found() {
    let (app, _helm, detail) = rollback_failing_with("Error: release has no 2 version\n").await;
    assert!(
        detail.contains("revision 2 of web-production in namespace web no longer exists"),
        "{detail}"
    );
    assert_eq!(error_kind(&app).await, "not_found");
}

#[tokio::test]
async fn helm_a_failing_hook_refuses_the_rollback_with_helms_reason() {
    let (app, _helm, detail) = rollback_failing_with(
        "Error: pre-rollback hooks failed: job web-migrate failed: BackoffLimitExceeded\n",
    )
    .await;
    assert!(detail.contains("pre-rollback hooks failed"), "{detail}");
    assert!(
        detail.contains("Check `helm history web-production`"),
        "{detail}"
    );
    assert_eq!(error_kind(&app).await, "refused");
}

#[tokio::test]
async fn helm_another_operation_in_progress_fails_as_a_conflict() {
    let (app, _helm, detail) = rollback_failing_with(
        "Error: another operation (install/upgrade/rollback) is in progress\n",
    )
    .await;
    assert!(
        detail.contains("another helm operation on web-production"),
        "{detail}"
    );
    assert_eq!(error_kind(&app).await, "conflict");
}

#[tokio::test]
async fn helm_resources_that_never_become_ready_fail_saying_helm_marked_the_revision_failed() {
    let (app, _helm, detail) =
        rollback_failing_with("Error: release web-production failed: context deadline exceeded\n")
            .await;
    assert!(
        detail.contains("did not become ready within 2s"),
        "{detail}"
    );
    assert!(detail.contains("kubectl get pods -n web"), "{detail}");
    assert_eq!(error_kind(&app).await, "timeout");
}

#[tokio::test]
async fn helm_that_never_returns_is_stopped_after_its_timeout_and_a_margin() {
    let helm = fake();
    let app = start(&helm, "1s").await;
    let summary = summary_of_an_alert(&app).await;
    helm.hang_rollback();

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(
        detail.contains("did not return within 2s and was stopped"),
        "{detail}"
    );
    assert!(detail.contains("may be half-done"), "{detail}");
    assert_eq!(error_kind(&app).await, "timeout");
}

#[tokio::test]
async fn helm_a_missing_release_shows_why_in_the_summary_and_offers_nothing() {
    let helm = fake();
    helm.fail_history("Error: release: not found\n");
    let app = start(&helm, "2s").await;

    let summary = summary_of_an_alert(&app).await;

    let text = summary.plain();
    assert!(
        text.contains("helm has no release web-production in namespace web"),
        "{text}"
    );
    assert!(summary.button("Roll back").is_none(), "{text}");
}

// --- rollback truth: a failed latest upgrade, and success only when helm history shows it --

fn failed_upgrade_history() -> [Release; 3] {
    [
        Release {
            revision: 1,
            status: "superseded",
            chart: "web-2.0.0",
            app_version: "5.0.0",
            description: "Install complete",
            minutes_ago: 60 * 72,
        },
        Release {
            revision: 2,
            status: "deployed",
            chart: "web-2.1.0",
            app_version: "5.1.0",
            description: "Upgrade complete",
            minutes_ago: 180,
        },
        Release {
            revision: 3,
            status: "failed",
            chart: "web-2.2.0",
            app_version: "5.2.0",
            description: "Upgrade \"web-production\" failed: context deadline exceeded",
            minutes_ago: 15,
        },
    ]
}

#[tokio::test]
async fn helm_a_failed_latest_upgrade_is_the_suspect_and_the_offer_is_the_revision_helm_rollback_returns_to()
 {
    let helm = FakeHelm::new();
    helm.history(&failed_upgrade_history());
    let [one, mut two, three] = failed_upgrade_history();
    two.status = "superseded";
    helm.history_after_rollback(&[
        one,
        two,
        three,
        Release {
            revision: 4,
            status: "deployed",
            chart: "web-2.1.0",
            app_version: "5.1.0",
            description: "Rollback to 2",
            minutes_ago: 0,
        },
    ]);
    let app = start(&helm, "7s").await;

    let summary = summary_of_an_alert(&app).await;

    let text = summary.plain();
    assert!(text.contains("Suspect 5.2.0"), "{text}");
    assert!(
        text.contains("The latest rollout, 5.2.0, failed"),
        "the summary says the latest rollout failed: {text}"
    );
    assert!(
        summary
            .button("Roll back web production to 5.1.0")
            .is_some(),
        "{text}"
    );
    app.press(&summary, "Roll back", &alice()).await;
    app.chat
        .wait_for_update(
            &summary.at,
            "Rolled back web production from 5.2.0 to 5.1.0",
        )
        .await;
    let succeeded = app.audited("rollback.succeeded").await;
    assert!(
        succeeded[0]
            .details
            .contains("as revision 4, which is deployed"),
        "{}",
        succeeded[0].details
    );
    let rollbacks = helm.rollbacks();
    assert_eq!(rollbacks.len(), 1);
    assert_eq!(rollbacks[0][..3], ["rollback", "web-production", "2"]);
}

#[tokio::test]
async fn helm_a_rollback_that_exits_0_without_a_new_deployed_revision_is_not_a_success() {
    let helm = fake();
    // helm claims success, but its history never changes.
    helm.history_after_rollback(&before());
    let app = start(&helm, "7s").await;
    let summary = summary_of_an_alert(&app).await;

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(detail.contains("shows no new revision"), "{detail}");
    assert!(app.audited("rollback.succeeded").await.is_empty());
}
