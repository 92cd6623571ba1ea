//! The Argo Rollouts backend against a fake Kubernetes API serving `argoproj.io/v1alpha1`
//! Rollouts and their ReplicaSets, through the real application: revisions and their
//! configuration changes, the rollout's state in the summary in the bot's words, undo to
//! the shown revision as one merge patch with a resourceVersion precondition, followed
//! until the target is stable and healthy or the Rollout degrades.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use breakwater::core::message::{Action, Platform};

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

fn first_button(shown: &Shown) -> String {
    shown
        .message
        .buttons()
        .next()
        .map(|(label, _)| label.to_owned())
        .unwrap_or_default()
}

/// The confirmation the platform shows before a button runs.
fn confirmation(shown: &Shown, label_prefix: &str) -> String {
    shown
        .message
        .actions
        .iter()
        .find_map(|action| match action {
            Action::Button {
                label,
                confirm: Some(confirm),
                ..
            } if label.starts_with(label_prefix) => {
                Some(format!("{}: {}", confirm.title, confirm.text))
            }
            _ => None,
        })
        .unwrap_or_default()
}

const ABORTED: &str =
    "✅ Aborted the rollout of v1.4.0 on orders production: all traffic is back on v1.3.2";

/// Presses Abort rollout on the summary and waits until the abort is done.
async fn abort(app: &TestApp, summary: &Shown) -> Shown {
    app.press(summary, "Abort rollout", &alice()).await;
    app.chat.wait_for_update(&summary.at, ABORTED).await
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
        summary.button("Abort rollout of v1.4.0").is_some(),
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
    let Cluster { app, fake, .. } = start(Shape::Aborted).await;
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
    let Cluster { app, fake, .. } = start(Shape::Aborted).await;
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
    let fresh = app
        .chat
        .wait_for_text("fresh plan after someone else changed orders production")
        .await;
    assert!(
        fresh
            .button("Roll back orders production to v1.3.2")
            .is_some(),
        "{}",
        fresh.plain()
    );
}

#[tokio::test]
async fn rollouts_a_rollout_synced_by_argo_cd_warns_that_the_next_sync_undoes_the_rollback() {
    let Cluster { app, fake, .. } = start(Shape::Aborted).await;
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
async fn rollouts_a_fully_promoted_rollout_is_described_as_healthy_and_offers_a_plain_rollback() {
    let Cluster { app, .. } = start(Shape::Healthy).await;

    let summary = summary_of_an_alert(&app).await;

    let text = summary.plain();
    assert!(
        text.contains("(canary): healthy, v1.4.0 is stable and serves all traffic."),
        "{text}"
    );
    assert_eq!(
        first_button(&summary),
        "Roll back orders production to v1.3.2"
    );
    assert!(summary.button("Abort rollout").is_none(), "{text}");
}

#[tokio::test]
async fn rollouts_a_service_account_that_may_not_patch_rollouts_fails_pointing_at_the_rbac_manifest()
 {
    let Cluster { app, fake, .. } = start(Shape::Aborted).await;
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
    let Cluster { app, fake, .. } = start(Shape::Aborted).await;
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

#[tokio::test]
async fn rollouts_while_a_canary_rolls_out_the_first_button_is_abort_rollout_naming_the_versions() {
    let Cluster { app, .. } = start(Shape::Canary).await;

    let summary = summary_of_an_alert(&app).await;

    assert_eq!(first_button(&summary), "Abort rollout of v1.4.0");
    assert_eq!(
        confirmation(&summary, "Abort rollout"),
        "Abort rollout?: Abort the rollout of v1.4.0 on orders production: send all traffic back \
         to v1.3.2 from the canary v1.4.0? The rollout keeps v1.4.0 as its template and tries it \
         again if the abort is lifted; a rollback to v1.3.2 is offered once traffic is back."
    );
    assert!(summary.button("Roll back").is_none(), "{}", summary.plain());
    assert!(
        summary
            .message
            .text
            .ends_with("Abort the rollout of v1.4.0 and send all traffic back to v1.3.2?"),
        "{}",
        summary.message.text
    );
}

#[tokio::test]
async fn rollouts_a_paused_canary_is_aborted_too() {
    let Cluster { app, .. } = start(Shape::Paused).await;

    let summary = summary_of_an_alert(&app).await;

    assert_eq!(first_button(&summary), "Abort rollout of v1.4.0");
}

#[tokio::test]
async fn rollouts_a_blue_green_update_offers_a_rollback_not_an_abort() {
    let Cluster { app, .. } = start(Shape::BlueGreen).await;

    let summary = summary_of_an_alert(&app).await;

    assert_eq!(
        first_button(&summary),
        "Roll back orders production to v1.3.2"
    );
}

#[tokio::test]
async fn rollouts_an_abort_patches_the_status_once_and_is_followed_until_the_stable_version_serves_all_traffic()
 {
    let Cluster { app, fake, .. } = start(Shape::Canary).await;
    let resource_version = fake.rollout()["metadata"]["resourceVersion"].clone();
    let summary = summary_of_an_alert(&app).await;

    let done = abort(&app, &summary).await;

    let patches = fake.patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(
        patches[0].path,
        "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/orders/status"
    );
    assert_eq!(
        patches[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        patches[0].body,
        serde_json::json!({"metadata": {"resourceVersion": resource_version}, "status": {"abort": true}})
    );
    let rollout = fake.rollout();
    assert_eq!(rollout["status"]["abort"], true);
    assert_eq!(
        rollout["spec"]["template"]["spec"]["containers"][0]["image"], "ghcr.io/acme/orders:v1.4.0",
        "an abort leaves the template alone"
    );
    let text = done.plain();
    assert!(
        text.contains(
            "the stable ReplicaSet (v1.3.2) serves all traffic with 3 of 3 pods available, the \
             canary v1.4.0 gets none"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "The rollout still holds v1.4.0 as its template and will try it again if the abort \
             is lifted (retry or promote); roll back to v1.3.2 to make the abort final."
        ),
        "{text}"
    );
    let succeeded = app.audited("rollback.succeeded").await;
    assert!(
        succeeded[0]
            .details
            .contains("\"action\":\"abort_rollout\""),
        "{}",
        succeeded[0].details
    );
}

#[tokio::test]
async fn rollouts_many_presses_of_abort_rollout_patch_the_rollout_once() {
    let Cluster { app, fake, .. } = start(Shape::Canary).await;
    let summary = summary_of_an_alert(&app).await;

    let alice = alice();
    let presses = (0..8).map(|_| app.press(&summary, "Abort rollout", &alice));
    futures::future::join_all(presses).await;
    app.chat.wait_for_update(&summary.at, ABORTED).await;

    assert_eq!(fake.patches().len(), 1, "{:?}", fake.patches());
    assert_eq!(app.audited("rollback.started").await.len(), 1);
}

#[tokio::test]
async fn rollouts_after_an_abort_roll_back_to_the_stable_version_is_offered_and_followed_to_healthy()
 {
    let Cluster { app, fake, .. } = start(Shape::Canary).await;
    let summary = summary_of_an_alert(&app).await;
    abort(&app, &summary).await;

    let offer = app
        .chat
        .wait_for_text("Roll back orders production from v1.4.0")
        .await;
    assert_eq!(offer.parent.as_ref().map(|p| &p.id), Some(&summary.at.id));
    app.press(&offer, "Roll back orders production to v1.3.2", &alice())
        .await;
    app.chat
        .wait_for_update(
            &offer.at,
            "✅ Rolled back orders production from v1.4.0 to v1.3.2",
        )
        .await;

    let patches = fake.patches();
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert_eq!(
        patches[1].path,
        "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/orders"
    );
    let rollout = fake.rollout();
    assert_eq!(
        rollout["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/acme/orders:v1.3.2"
    );
    assert_eq!(rollout["status"]["phase"], "Healthy");
    assert_eq!(rollout["status"]["stableRS"], fake.hash_of_tag("v1.3.2"));
    assert!(rollout["status"].get("abort").is_none(), "{rollout}");
}

#[tokio::test]
async fn rollouts_the_rollback_offered_after_an_abort_warns_when_argo_cd_syncs_the_template_back() {
    let Cluster { app, fake, .. } = start(Shape::Canary).await;
    fake.edit_rollout(|r| {
        r["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] =
            serde_json::json!("orders-prod:argoproj.io/Rollout:shop/orders")
    });
    let summary = summary_of_an_alert(&app).await;
    assert!(
        summary.plain().contains(
            "managed by Argo CD application orders-prod: an abort changes only the Rollout's \
             status, which a sync leaves alone"
        ),
        "{}",
        summary.plain()
    );

    abort(&app, &summary).await;

    let offer = app
        .chat
        .wait_for_text("Roll back orders production from v1.4.0")
        .await;
    assert!(
        offer
            .plain()
            .contains("its next sync will replace the rolled-back template"),
        "{}",
        offer.plain()
    );
}

#[tokio::test]
async fn rollouts_a_conflicting_write_refuses_the_abort_and_offers_a_fresh_one() {
    let Cluster { app, fake, .. } = start(Shape::Canary).await;
    let summary = summary_of_an_alert(&app).await;
    fake.lose_patch_races(1);

    app.press(&summary, "Abort rollout", &alice()).await;

    let failed = app
        .chat
        .wait_for_update(
            &summary.at,
            "❌ Abort of the rollout of v1.4.0 on orders production failed",
        )
        .await;
    assert!(
        failed.plain().contains("HTTP 409 Conflict"),
        "{}",
        failed.plain()
    );
    assert_eq!(fake.rollout()["status"].get("abort"), None);
    let fresh = app
        .chat
        .wait_for_text("fresh plan after someone else changed orders production")
        .await;
    app.press(&fresh, "Abort rollout of v1.4.0", &alice()).await;
    app.chat.wait_for_update(&fresh.at, ABORTED).await;
    assert_eq!(fake.patches().len(), 2, "no retry behind the person's back");
}

#[tokio::test]
async fn rollouts_without_the_status_subresource_the_abort_patches_the_rollout_as_kubectl_does() {
    let Cluster { app, fake, .. } = start(Shape::Canary).await;
    fake.without_status_subresource();
    let summary = summary_of_an_alert(&app).await;

    abort(&app, &summary).await;

    let paths: Vec<String> = fake.patches().into_iter().map(|p| p.path).collect();
    assert_eq!(
        paths,
        [
            "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/orders/status",
            "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/orders"
        ]
    );
}

#[tokio::test]
async fn rollouts_an_abort_without_permission_on_rollouts_status_names_the_rbac_rule() {
    let Cluster { app, fake, .. } = start(Shape::Canary).await;
    fake.forbid_patch();
    let summary = summary_of_an_alert(&app).await;

    app.press(&summary, "Abort rollout", &alice()).await;

    let failed = app
        .chat
        .wait_for_update(&summary.at, "❌ Abort of the rollout")
        .await
        .plain();
    assert!(failed.contains("HTTP 403 Forbidden"), "{failed}");
    assert!(
        failed.contains("patch rollouts and rollouts/status"),
        "{failed}"
    );
}
