//! The Argo Rollouts backend against a fake Kubernetes API serving `argoproj.io/v1alpha1`
//! Rollouts and their ReplicaSets, through the real application: revisions and their
//! configuration changes, the rollout's state in the summary in the bot's words, undo to
//! the shown revision as one merge patch with a resourceVersion precondition, followed
//! until the target is stable and healthy or the Rollout degrades.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use breakwater::core::message::Platform;

use crate::support::kubernetes::{KUBE_TOKEN, NAMESPACE, Rev};
use crate::support::rollouts::{End, FakeRollouts, Shape};
use crate::support::{AppOptions, Shown, TestApp, actor, spawn_app_with};

const REVISIONS: [Rev; 3] = [
    Rev {
        revision: 1,
        tag: "v1.3.1",
        env: &[("DB_POOL_SIZE", "20")],
        minutes_ago: 60 * 72,
        cause: "",
    },
    Rev {
        revision: 2,
        tag: "v1.3.2",
        env: &[("DB_POOL_SIZE", "20")],
        minutes_ago: 300,
        cause: "",
    },
    Rev {
        revision: 3,
        tag: "v1.4.0",
        env: &[("DB_POOL_SIZE", "2"), ("FEATURE_FLAGS", "fast-checkout")],
        minutes_ago: 20,
        cause: "",
    },
];

struct Cluster {
    app: TestApp,
    fake: Arc<FakeRollouts>,
    _kubeconfig_dir: tempfile::TempDir,
}

fn kubeconfig(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: breakwater\n\
             current-context: fake\nusers:\n- name: breakwater\n  user:\n    token: {KUBE_TOKEN}\n"
        ),
    )
    .expect("write kubeconfig");
    path
}

async fn start(shape: Shape) -> Cluster {
    let fake = FakeRollouts::start(&REVISIONS, shape).await;
    let kubeconfig_dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = kubeconfig(kubeconfig_dir.path(), &fake.url);
    let app = spawn_app_with(AppOptions {
        extra_config: format!(
            r#"
[backends.rollouts]
kind = "argo-rollouts"
kubeconfig = "{}"
timeout = "5s"
poll_interval = "20ms"
allow_insecure_http = true

[[services]]
name = "orders"
environments = ["production"]
backend = "rollouts"
namespace = "{NAMESPACE}"
rollout = "{{service}}"
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
async fn rollouts_revisions_and_their_config_changes_come_from_the_replicasets_the_rollout_owns() {
    let Cluster { app, .. } = start(Shape::Canary).await;

    let summary = summary_of_an_alert(&app).await;

    let text = summary.plain();
    assert!(text.contains("Suspect v1.4.0"), "{text}");
    assert!(text.contains("config DB_POOL_SIZE: 20 → 2"), "{text}");
    assert!(
        text.contains("config image: ghcr.io/acme/orders:v1.3.2 → ghcr.io/acme/orders:v1.4.0"),
        "{text}"
    );
    assert!(
        !text.contains("rollouts-pod-template-hash"),
        "the hash label is no configuration: {text}"
    );
    assert!(
        summary
            .button("Roll back orders production to v1.3.2")
            .is_some(),
        "{text}"
    );
}

#[tokio::test]
async fn rollouts_a_canary_in_progress_is_described_with_its_step_weight_and_versions() {
    let Cluster { app, .. } = start(Shape::Canary).await;

    let text = summary_of_an_alert(&app).await.plain();

    assert!(
        text.contains(
            "rollout/orders in namespace shop (canary): in progress, moving from stable v1.3.2 \
             to v1.4.0, step 3 of 6, 40 % of traffic on v1.4.0."
        ),
        "{text}"
    );
}

#[tokio::test]
async fn rollouts_a_canary_at_its_pause_step_says_it_waits_for_a_promotion() {
    let Cluster { app, .. } = start(Shape::Paused).await;

    let text = summary_of_an_alert(&app).await.plain();

    assert!(
        text.contains(
            "(canary): paused, moving from stable v1.3.2 to v1.4.0, step 2 of 6, 20 % of traffic \
             on v1.4.0. It waits for someone to promote it."
        ),
        "{text}"
    );
}

#[tokio::test]
async fn rollouts_an_aborted_canary_says_traffic_is_back_on_stable_and_the_template_remains() {
    let Cluster { app, .. } = start(Shape::Aborted).await;

    let text = summary_of_an_alert(&app).await.plain();

    assert!(
        text.contains(
            "the rollout of v1.4.0 was aborted, so all traffic is back on the stable version \
             v1.3.2; the Rollout still holds v1.4.0's template"
        ),
        "{text}"
    );
    assert!(
        text.contains("Metric \"error-rate\" assessed Failed"),
        "{text}"
    );
}

#[tokio::test]
async fn rollouts_a_failed_analysis_run_is_named_with_its_verdict_and_metric_once() {
    let Cluster { app, .. } = start(Shape::Aborted).await;

    let text = summary_of_an_alert(&app).await.plain();

    assert!(
        text.contains(
            "Failing analysis: analysis run orders-e57c-3-2 failed (Metric \"error-rate\" \
             assessed Failed due to failed (3) > failureLimit (2))."
        ),
        "{text}"
    );
    assert_eq!(
        text.matches("failureLimit (2)").count(),
        1,
        "the controller's abort message repeats the metric: {text}"
    );
}

#[tokio::test]
async fn rollouts_an_inconclusive_background_analysis_of_a_paused_canary_is_reported() {
    let Cluster { app, fake, .. } = start(Shape::Paused).await;
    fake.edit_rollout(|r| {
        r["status"]["canary"] = serde_json::json!({"currentBackgroundAnalysisRunStatus": {
            "name": "orders-e57c-3-bg", "status": "Inconclusive",
            "message": "Metric \"latency-p99\" assessed Inconclusive due to inconclusive (1) > inconclusiveLimit (0)"
        }});
    });

    let text = summary_of_an_alert(&app).await.plain();

    assert!(
        text.contains(
            "It waits for someone to promote it. Failing analysis: analysis run orders-e57c-3-bg \
             was inconclusive (Metric \"latency-p99\" assessed Inconclusive"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn rollouts_a_degraded_rollout_is_reported_with_the_controllers_reason() {
    let Cluster { app, .. } = start(Shape::Degraded).await;

    let text = summary_of_an_alert(&app).await.plain();

    assert!(
        text.contains("(canary): degraded, moving from stable v1.3.2"),
        "{text}"
    );
    assert!(text.contains("has timed out progressing"), "{text}");
}

#[tokio::test]
async fn rollouts_a_blue_green_preview_names_the_active_and_preview_versions() {
    let Cluster { app, .. } = start(Shape::BlueGreen).await;

    let text = summary_of_an_alert(&app).await.plain();

    assert!(
        text.contains(
            "(blue-green): paused, moving from stable v1.3.2 to v1.4.0 (v1.4.0 is the preview, \
             v1.3.2 stays active)."
        ),
        "{text}"
    );
}

#[tokio::test]
async fn rollouts_a_press_undoes_to_the_shown_revision_once_and_follows_it_to_healthy() {
    let Cluster { app, fake, .. } = start(Shape::Aborted).await;
    let resource_version = fake.rollout()["metadata"]["resourceVersion"].clone();
    let summary = summary_of_an_alert(&app).await;

    app.press(&summary, "Roll back", &alice()).await;
    app.chat
        .wait_for_update(
            &summary.at,
            "Rolled back orders production from v1.4.0 to v1.3.2",
        )
        .await;

    let patches = fake.patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    let patch = &patches[0];
    assert_eq!(
        patch.path,
        "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/orders"
    );
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patch.body["metadata"]["resourceVersion"], resource_version);
    let rollout = fake.rollout();
    let template = &rollout["spec"]["template"];
    assert_eq!(
        template["spec"]["containers"][0]["image"],
        "ghcr.io/acme/orders:v1.3.2"
    );
    assert_eq!(
        template["spec"]["containers"][0]["env"],
        serde_json::json!([{"name": "DB_POOL_SIZE", "value": "20"}])
    );
    assert!(
        template["metadata"]["labels"]
            .get("rollouts-pod-template-hash")
            .is_none(),
        "{template}"
    );
    assert_eq!(rollout["status"]["stableRS"], fake.hash_of_tag("v1.3.2"));
    let succeeded = app.audited("rollback.succeeded").await;
    assert!(
        succeeded[0]
            .details
            .contains("is healthy with the template of revision 2 stable"),
        "{}",
        succeeded[0].details
    );
}

#[tokio::test]
async fn rollouts_a_rollback_that_degrades_fails_with_the_controllers_reason() {
    let Cluster { app, fake, .. } = start(Shape::Canary).await;
    fake.end_rollouts(End::Degraded);
    let summary = summary_of_an_alert(&app).await;

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(
        detail.contains("is degraded rolling back to revision 2"),
        "{detail}"
    );
    assert!(detail.contains("has timed out progressing"), "{detail}");
}

#[tokio::test]
async fn rollouts_a_conflicting_write_refuses_the_rollback_with_a_409_and_changes_nothing() {
    let Cluster { app, fake, .. } = start(Shape::Canary).await;
    let summary = summary_of_an_alert(&app).await;
    fake.lose_patch_races(1);

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(detail.contains("HTTP 409 Conflict"), "{detail}");
    assert!(detail.contains("ask for a fresh plan"), "{detail}");
    assert_eq!(
        fake.patches().len(),
        1,
        "no retry: the person decides again"
    );
    assert_eq!(
        fake.rollout()["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/acme/orders:v1.4.0"
    );
    let calls = app.audited("rollback.backend_call").await;
    assert!(calls[0].details.contains("\"error_kind\":\"conflict\""));
}

#[tokio::test]
async fn rollouts_a_rollout_synced_by_argo_cd_warns_that_the_next_sync_undoes_the_rollback() {
    let Cluster { app, fake, .. } = start(Shape::Canary).await;
    fake.edit_rollout(|r| {
        r["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] =
            serde_json::json!("orders-prod:argoproj.io/Rollout:shop/orders")
    });

    let text = summary_of_an_alert(&app).await.plain();

    assert!(
        text.contains(
            "rollout/orders in namespace shop is managed by Argo CD application orders-prod: its \
             next sync will replace the rolled-back template"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn rollouts_a_fully_promoted_rollout_is_described_as_healthy_on_its_stable_version() {
    let Cluster { app, .. } = start(Shape::Healthy).await;

    let text = summary_of_an_alert(&app).await.plain();

    assert!(
        text.contains("(canary): healthy, v1.4.0 is stable and serves all traffic."),
        "{text}"
    );
}

#[tokio::test]
async fn rollouts_a_service_account_that_may_not_patch_rollouts_fails_pointing_at_the_rbac_manifest()
 {
    let Cluster { app, fake, .. } = start(Shape::Canary).await;
    fake.forbid_patch();
    let summary = summary_of_an_alert(&app).await;

    app.press(&summary, "Roll back", &alice()).await;

    let detail = app.failed_rollback(&summary).await;
    assert!(detail.contains("HTTP 403 Forbidden"), "{detail}");
    assert!(
        detail.contains("apply deploy/kubernetes/rbac.yaml in namespace shop"),
        "{detail}"
    );
    assert!(detail.contains("patch rollouts"), "{detail}");
}

#[tokio::test]
async fn rollouts_a_rollout_moved_to_another_revision_since_the_offer_is_stale_and_never_patched() {
    let Cluster { app, fake, .. } = start(Shape::Canary).await;
    let summary = summary_of_an_alert(&app).await;
    fake.edit_rollout(|r| {
        r["metadata"]["annotations"]["rollout.argoproj.io/revision"] = serde_json::json!("2")
    });

    app.press(&summary, "Roll back", &alice()).await;

    app.chat
        .wait_for_update(
            &summary.at,
            "Not rolled back: orders production now runs v1.3.2, not v1.4.0",
        )
        .await;
    assert!(fake.patches().is_empty(), "{:?}", fake.patches());
}
