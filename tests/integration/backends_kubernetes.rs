//! The Kubernetes backend (kube + k8s-openapi) against a fake API server for apps/v1
//! Deployments and ReplicaSets on plain `http://127.0.0.1`, reached through a kubeconfig
//! file and context, through the real application: revisions and their configuration
//! changes in the summary, rollback to the shown revision as a merge patch with a
//! resourceVersion precondition, followed with the rollout-status rules; and each failure
//! ending as an audited failed rollback that says what to do next.

use std::sync::Arc;

use breakwater::backends::BackendRegistry;
use breakwater::config::Config;
use breakwater::core::message::Platform;
use serde_json::json;

use crate::support::kubernetes::{FakeKubernetes, NAMESPACE, Rev, RolloutEnd};
use crate::support::{AppOptions, Shown, TestApp, actor, spawn_app_with};

const REVISIONS: [Rev; 3] = [
    Rev {
        revision: 1,
        tag: "v1.3.1",
        env: &[("DB_POOL_SIZE", "20")],
        minutes_ago: 60 * 72,
        cause: "deploy v1.3.1",
    },
    Rev {
        revision: 2,
        tag: "v1.3.2",
        env: &[
            ("DB_POOL_SIZE", "20"),
            ("DB_PASSWORD", "secret:orders-db/password"),
        ],
        minutes_ago: 300,
        cause: "deploy v1.3.2",
    },
    Rev {
        revision: 3,
        tag: "v1.4.0",
        env: &[
            ("DB_POOL_SIZE", "2"),
            ("DB_PASSWORD", "secret:orders-db-v2/password"),
            ("FEATURE_FLAGS", "fast-checkout"),
        ],
        minutes_ago: 20,
        cause: "deploy v1.4.0 (#812)",
    },
];

struct Cluster {
    app: TestApp,
    fake: Arc<FakeKubernetes>,
    _kubeconfig_dir: tempfile::TempDir,
}

async fn start(timeout: &str, revisions: &[Rev]) -> Cluster {
    let fake = FakeKubernetes::start().await;
    fake.with_revisions(revisions);
    let kubeconfig_dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = fake.kubeconfig(kubeconfig_dir.path());
    let app = spawn_app_with(AppOptions {
        extra_config: format!(
            r#"
[backends.cluster]
kind = "kubernetes"
kubeconfig = "{}"
context = "fake-breakwater"
timeout = "{timeout}"
poll_interval = "20ms"
allow_insecure_http = true

[[services]]
name = "orders"
environments = ["production"]
backend = "cluster"
namespace = "{NAMESPACE}"
"#,
            kubeconfig.display()
        ),
        platform: Platform::Console,
        ..AppOptions::default()
    })
    .await;
    Cluster {
        app,
        fake,
        _kubeconfig_dir: kubeconfig_dir,
    }
}

async fn summary_of_an_alert(app: &TestApp) -> Shown {
    app.fire_alert("HighErrorRate", "orders", "production")
        .await;
    app.summary().await
}

fn alice() -> breakwater::core::policy::Actor {
    actor("console:alice", "Alice")
}

#[tokio::test]
async fn kubernetes_revisions_and_their_config_changes_are_summarised_and_a_press_rolls_back_to_the_shown_revision()
 {
    let Cluster { app, fake, .. } = start("5s", &REVISIONS).await;
    let resource_version = fake.deployment()["metadata"]["resourceVersion"].clone();

    let summary = summary_of_an_alert(&app).await;
    let text = summary.plain();
    assert!(text.contains("Suspect v1.4.0"), "{text}");
    assert!(text.contains("deploy v1.4.0 (#812)"), "{text}");
    assert!(text.contains("config DB_POOL_SIZE: 20 → 2"), "{text}");
    assert!(
        text.contains("config FEATURE_FLAGS: (unset) → fast-checkout"),
        "{text}"
    );
    assert!(
        text.contains("config image: ghcr.io/acme/orders:v1.3.2 → ghcr.io/acme/orders:v1.4.0"),
        "{text}"
    );
    assert!(text.contains("config DB_PASSWORD"), "{text}");
    assert!(text.contains("(secret, masked)"), "{text}");
    assert!(
        !text.contains("orders-db-v2"),
        "a secret-looking key leaked: {text}"
    );
    assert!(
        summary
            .button("Roll back orders production to v1.3.2")
            .is_some(),
        "{text}"
    );

    app.press(&summary, "Roll back", &alice()).await;
    let done = app
        .chat
        .wait_for_update(
            &summary.at,
            "Rolled back orders production from v1.4.0 to v1.3.2",
        )
        .await;

    assert!(done.plain().contains("by Alice"), "{}", done.plain());
    let patches = fake.patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    let patch = &patches[0];
    assert_eq!(
        patch.path,
        "/apis/apps/v1/namespaces/shop/deployments/orders"
    );
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patch.body["metadata"]["resourceVersion"], resource_version);
    assert_eq!(
        patch.body["metadata"]["annotations"]["kubernetes.io/change-cause"],
        "deploy v1.3.2"
    );
    let deployment = fake.deployment();
    let template = &deployment["spec"]["template"];
    assert_eq!(
        template["spec"]["containers"][0]["image"],
        "ghcr.io/acme/orders:v1.3.2"
    );
    assert_eq!(
        template["spec"]["containers"][0]["env"],
        json!([
            {"name": "DB_POOL_SIZE", "value": "20"},
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "orders-db", "key": "password"}}}
        ])
    );
    assert!(
        template["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none(),
        "{template}"
    );
    assert_eq!(
        deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "4",
        "the old ReplicaSet came back as the next revision"
    );
    let succeeded = app.audited("rollback.succeeded").await;
    assert!(
        succeeded[0]
            .details
            .contains("rolled out the template of revision 2"),
        "{}",
        succeeded[0].details
    );
    let seen = fake.seen();
    assert!(
        seen.iter().any(
            |s| s.query.as_deref() == Some("&labelSelector=app%3Dorders")
                || s.query.as_deref() == Some("labelSelector=app%3Dorders")
        ),
        "{:?}",
        seen.iter().map(|s| s.query.clone()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn kubernetes_a_configuration_only_change_is_its_own_suspect_and_rolls_back_to_the_same_image()
 {
    let revisions = [
        Rev {
            revision: 1,
            tag: "v1.4.0",
            env: &[("DB_POOL_SIZE", "20")],
            minutes_ago: 120,
            cause: "deploy v1.4.0",
        },
        Rev {
            revision: 2,
            tag: "v1.4.0",
            env: &[("DB_POOL_SIZE", "2")],
            minutes_ago: 10,
            cause: "kubectl set env deployment/orders DB_POOL_SIZE=2",
        },
    ];
    let Cluster { app, fake, .. } = start("5s", &revisions).await;

    let summary = summary_of_an_alert(&app).await;
    let text = summary.plain();
    assert!(text.contains("Suspect v1.4.0+r2"), "{text}");
    assert!(text.contains("config DB_POOL_SIZE: 20 → 2"), "{text}");
    assert!(
        summary
            .button("Roll back orders production to v1.4.0")
            .is_some(),
        "{text}"
    );

    app.press(&summary, "Roll back", &alice()).await;
    app.chat
        .wait_for_update(
            &summary.at,
            "Rolled back orders production from v1.4.0+r2 to v1.4.0",
        )
        .await;
    assert_eq!(
        fake.deployment()["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "20"
    );
}

#[tokio::test]
async fn kubernetes_rejected_credentials_fail_the_rollback_saying_to_renew_them() {
    let Cluster { app, fake, .. } = start("5s", &REVISIONS).await;
    let summary = summary_of_an_alert(&app).await;
    fake.expire_token();

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(detail.contains("HTTP 401"), "{detail}");
    assert!(
        detail.contains("Renew the credentials of backends.cluster"),
        "{detail}"
    );
    assert!(fake.patches().is_empty());
}

#[tokio::test]
async fn kubernetes_a_service_account_that_may_not_patch_fails_pointing_at_the_rbac_manifest() {
    let Cluster { app, fake, .. } = start("5s", &REVISIONS).await;
    let summary = summary_of_an_alert(&app).await;
    fake.forbid_patch();

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(
        detail.contains("may not patch deployments in namespace shop"),
        "{detail}"
    );
    assert!(detail.contains("deploy/kubernetes/rbac.yaml"), "{detail}");
    let calls = app.audited("rollback.backend_call").await;
    assert!(calls[0].details.contains("\"error_kind\":\"unauthorized\""));
}

#[tokio::test]
async fn kubernetes_a_revision_garbage_collected_since_the_offer_is_refused_at_the_press() {
    let Cluster { app, fake, .. } = start("5s", &REVISIONS).await;
    let summary = summary_of_an_alert(&app).await;
    fake.forget_revision(2);

    let reply = app.press(&summary, "Roll back", &alice()).await;

    let text = private_text(&reply);
    assert!(
        text.contains("Revision 2 of deployment/orders in namespace shop no longer exists"),
        "{text}"
    );
    assert!(text.contains("deploy v1.3.2 again instead"), "{text}");
    assert_denied_as_blocked(&app).await;
    assert!(fake.patches().is_empty());
}

#[tokio::test]
async fn kubernetes_a_deployment_paused_after_the_offer_is_refused_at_the_press_like_kubectl_refuses_it()
 {
    let Cluster { app, fake, .. } = start("5s", &REVISIONS).await;
    let summary = summary_of_an_alert(&app).await;
    fake.edit_deployment(|d| d["spec"]["paused"] = json!(true));

    let reply = app.press(&summary, "Roll back", &alice()).await;

    let text = private_text(&reply);
    assert!(text.contains("is paused"), "{text}");
    assert!(
        text.contains("kubectl rollout resume deployment/orders -n shop"),
        "{text}"
    );
    assert_denied_as_blocked(&app).await;
    assert!(fake.patches().is_empty());
    assert!(app.audited("rollback.started").await.is_empty());
}

fn private_text(reply: &breakwater::core::event::Reply) -> String {
    match reply {
        breakwater::core::event::Reply::Private(message) => message.to_plain(),
        other => panic!("expected a private refusal, got {other:?}"),
    }
}

async fn assert_denied_as_blocked(app: &TestApp) {
    let denied = app.audited("rollback.denied").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert!(
        denied[0].details.contains("\"reason\":\"blocked\""),
        "{}",
        denied[0].details
    );
    assert_eq!(denied[0].actor, "console:alice");
}

#[tokio::test]
async fn kubernetes_a_paused_deployment_is_a_blocking_caveat_in_the_summary() {
    let Cluster { app, fake, .. } = start("5s", &REVISIONS).await;
    fake.edit_deployment(|d| d["spec"]["paused"] = json!(true));

    let summary = summary_of_an_alert(&app).await;

    assert!(
        summary.plain().contains("is paused; resume it first"),
        "{}",
        summary.plain()
    );
    assert!(summary.button("Roll back").is_none());
}

#[tokio::test]
async fn kubernetes_a_conflicting_write_fails_the_rollback_with_a_409_and_changes_nothing() {
    let Cluster { app, fake, .. } = start("5s", &REVISIONS).await;
    let summary = summary_of_an_alert(&app).await;
    fake.lose_patch_races(10);

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(detail.contains("HTTP 409 Conflict"), "{detail}");
    assert!(
        detail.contains("someone else changed deployment/orders"),
        "{detail}"
    );
    assert!(
        detail.contains("kubectl rollout history deployment/orders -n shop"),
        "{detail}"
    );
    assert_eq!(
        fake.patches().len(),
        2,
        "one retry after re-reading, then give up"
    );
    assert_eq!(
        fake.deployment()["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/acme/orders:v1.4.0"
    );
    let calls = app.audited("rollback.backend_call").await;
    assert!(calls[0].details.contains("\"error_kind\":\"conflict\""));
}

#[tokio::test]
async fn kubernetes_one_lost_race_with_an_autoscaler_is_retried_after_reading_again() {
    let Cluster { app, fake, .. } = start("5s", &REVISIONS).await;
    let summary = summary_of_an_alert(&app).await;
    fake.lose_patch_races(1);

    app.press(&summary, "Roll back", &alice()).await;

    app.chat
        .wait_for_update(&summary.at, "Rolled back orders production")
        .await;
    let patches = fake.patches();
    assert_eq!(patches.len(), 2);
    assert_ne!(
        patches[0].body["metadata"]["resourceVersion"],
        patches[1].body["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn kubernetes_a_rollout_past_its_progress_deadline_fails_with_the_condition() {
    let Cluster { app, fake, .. } = start("5s", &REVISIONS).await;
    fake.end_rollouts(RolloutEnd::DeadlineExceeded);
    let summary = summary_of_an_alert(&app).await;

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(
        detail.contains("exceeded its progress deadline"),
        "{detail}"
    );
    assert!(detail.contains("has timed out progressing"), "{detail}");
    assert!(detail.contains("kubectl get pods -n shop"), "{detail}");
}

#[tokio::test]
async fn kubernetes_a_rollout_that_never_completes_times_out_with_the_last_status() {
    let Cluster { app, fake, .. } = start("1s", &REVISIONS).await;
    fake.end_rollouts(RolloutEnd::Stuck);
    let summary = summary_of_an_alert(&app).await;

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(detail.contains("did not finish within 1s"), "{detail}");
    assert!(
        detail.contains("last seen: 2 of 3 updated replicas are available"),
        "{detail}"
    );
    assert!(
        detail.contains("kubectl rollout status deployment/orders -n shop"),
        "{detail}"
    );
}

#[tokio::test]
async fn kubernetes_a_deployment_that_does_not_exist_shows_why_in_the_summary() {
    let Cluster { app, fake, .. } = start("5s", &REVISIONS).await;
    fake.remove_deployment();

    let summary = summary_of_an_alert(&app).await;

    let text = summary.plain();
    assert!(
        text.contains("there is no deployment/orders in namespace shop"),
        "{text}"
    );
    assert!(summary.button("Roll back").is_none(), "{text}");
}

#[test]
fn kubernetes_a_context_missing_from_the_kubeconfig_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts:\n- name: prod\n  context:\n    cluster: c\n    user: u\nusers: []\n",
    )
    .expect("write");
    let text = format!(
        "[backends.cluster]\nkind = \"kubernetes\"\nkubeconfig = \"{}\"\ncontext = \"staging\"\n",
        path.display()
    );
    let error =
        BackendRegistry::from_config(&Config::parse(&text).expect("config")).expect_err("refused");
    assert!(
        error
            .to_string()
            .starts_with("backends.cluster.context: \"staging\" is not a context"),
        "{error}"
    );
}

// --- rollback truth: a stuck rollout is the suspect ----------------------------------------

const STUCK: [Rev; 3] = [
    Rev {
        revision: 1,
        tag: "v1.0.0",
        env: &[("DB_POOL_SIZE", "20")],
        minutes_ago: 60 * 72,
        cause: "deploy v1.0.0",
    },
    Rev {
        revision: 2,
        tag: "v1.1.0",
        env: &[("DB_POOL_SIZE", "20")],
        minutes_ago: 120,
        cause: "deploy v1.1.0",
    },
    Rev {
        revision: 3,
        tag: "v1.2.0",
        env: &[("DB_POOL_SIZE", "20")],
        minutes_ago: 20,
        cause: "deploy v1.2.0",
    },
];

#[tokio::test]
async fn kubernetes_a_rollout_stuck_past_its_deadline_is_the_suspect_and_the_offer_is_what_rollout_undo_returns_to()
 {
    let Cluster { app, fake, .. } = start("5s", &STUCK).await;
    fake.stick_latest_rollout();

    let summary = summary_of_an_alert(&app).await;

    let text = summary.plain();
    assert!(text.contains("Suspect v1.2.0"), "{text}");
    assert!(
        text.contains("The latest rollout, v1.2.0, failed"),
        "the summary says the latest rollout failed: {text}"
    );
    assert!(
        summary
            .button("Roll back orders production to v1.1.0")
            .is_some(),
        "kubectl rollout undo goes to v1.1.0: {text}"
    );
    app.press(&summary, "Roll back", &alice()).await;
    app.chat
        .wait_for_update(
            &summary.at,
            "Rolled back orders production from v1.2.0 to v1.1.0",
        )
        .await;
    let patches = fake.patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(
        patches[0].body["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/acme/orders:v1.1.0"
    );
}

#[tokio::test]
async fn kubernetes_a_token_to_a_plain_http_api_server_is_refused_unless_allowed() {
    let fake = FakeKubernetes::start().await;
    fake.with_revisions(&REVISIONS);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = fake.kubeconfig(dir.path());
    let config = |opt_in: &str| {
        format!(
            r#"
[backends.cluster]
kind = "kubernetes"
kubeconfig = "{}"
context = "fake-breakwater"
{opt_in}

[[services]]
name = "orders"
environments = ["production"]
backend = "cluster"
namespace = "{NAMESPACE}"
"#,
            kubeconfig.display()
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
        text.contains(&format!(
            "backends.cluster.allow_insecure_http: the API server {} is plain http://",
            fake.url
        )),
        "{text}"
    );

    let refused = BackendRegistry::from_config(&Config::parse(&config("")).expect("config"))
        .expect_err("refused at start");
    assert!(
        refused
            .to_string()
            .starts_with("backends.cluster.allow_insecure_http: the API server"),
        "{refused}"
    );
    assert!(fake.seen().is_empty(), "no request carried the token");

    let allowed = config("allow_insecure_http = true");
    let registry = BackendRegistry::from_config(&Config::parse(&allowed).expect("config"))
        .expect("the operator may opt in");
    assert!(registry.get("cluster").is_some());
}

#[tokio::test]
async fn kubernetes_a_template_someone_else_already_applied_is_followed_and_never_reported_done_unobserved()
 {
    let Cluster { app, fake, .. } = start("5s", &REVISIONS).await;
    let summary = summary_of_an_alert(&app).await;
    // Someone applies v1.3.2's template just before the press; its rollout then gets stuck.
    fake.end_rollouts(RolloutEnd::DeadlineExceeded);
    fake.someone_applies("v1.3.2", REVISIONS[1].env, 20);

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(
        detail.contains("exceeded its progress deadline rolling back to revision 2"),
        "{detail}"
    );
    assert!(app.audited("rollback.succeeded").await.is_empty());
    assert!(fake.patches().is_empty(), "the template was already there");
}
