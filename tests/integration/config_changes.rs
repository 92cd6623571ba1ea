//! In-place ConfigMap and Secret edits on Kubernetes, seen through real watch streams of
//! the fake API server (chunked JSON lines, ADDED/MODIFIED/BOOKMARK, 410 Gone then relist)
//! and shown in the next summary beside deploys.

use std::sync::Arc;

use breakwater::backends::BackendRegistry;
use breakwater::config::Config;
use breakwater::core::deploy::{Deploy, ServiceName};
use breakwater::core::event::Reply;
use breakwater::core::message::{Action, Platform};
use breakwater::store::DeployQuery;
use serde_json::json;

use crate::support::argocd::{ARGO_TOKEN, Entry, FakeArgoCd, application};
use crate::support::kubernetes::{FakeKubernetes, NAMESPACE, Rev};
use crate::support::{AppOptions, TestApp, actor, eventually, spawn_app_with};

const SECRET_VALUE: &str = "hunter2-original-value";
const NEW_SECRET_VALUE: &str = "hunter3-rotated-value";

const REVISIONS: [Rev; 1] = [Rev {
    revision: 1,
    tag: "v1.3.1",
    env: &[
        ("DB_POOL_SIZE", "configmap:orders-env/DB_POOL_SIZE"),
        ("DB_PASSWORD", "secret:orders-db/password"),
    ],
    minutes_ago: 300,
    cause: "deploy v1.3.1",
}];

struct Cluster {
    app: TestApp,
    fake: Arc<FakeKubernetes>,
    _kubeconfig_dir: tempfile::TempDir,
}

/// The orders Deployment reading ConfigMap orders-env and Secret orders-db, breakwater
/// running and watching both.
async fn start() -> Cluster {
    start_with(false).await
}

/// [`start`] on a platform without a native confirmation dialog when `confirm_step`.
async fn start_with(confirm_step: bool) -> Cluster {
    let fake = FakeKubernetes::start().await;
    fake.with_revisions(&REVISIONS);
    fake.put_config_map(
        "orders-env",
        &[("DB_POOL_SIZE", "20"), ("REGION", "eu1")],
        "kubectl-client-side-apply",
        60 * 24,
    );
    fake.put_config_map("unrelated", &[("X", "1")], "helm", 60 * 24);
    fake.put_secret("orders-db", &[("password", SECRET_VALUE)], "helm", 60 * 24);
    let kubeconfig_dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = fake.kubeconfig(kubeconfig_dir.path());
    let app = spawn_app_with(AppOptions {
        extra_config: format!(
            r#"
[backends.cluster]
kind = "kubernetes"
kubeconfig = "{}"
context = "fake-breakwater"
allow_insecure_http = true
poll_interval = "20ms"

[[services]]
name = "orders"
environments = ["production"]
backend = "cluster"
namespace = "{NAMESPACE}"
"#,
            kubeconfig.display()
        ),
        platform: Platform::Console,
        confirm_step,
        ..AppOptions::default()
    })
    .await;
    until("both watches open", || {
        fake.watches_of("configmaps") > 0 && fake.watches_of("secrets") > 0
    })
    .await;
    Cluster {
        app,
        fake,
        _kubeconfig_dir: kubeconfig_dir,
    }
}

/// Waits until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    eventually(what, async || done().then_some(())).await;
}

async fn recorded_changes(app: &TestApp) -> Vec<Deploy> {
    let deploys = app
        .bot
        .store()
        .deploys(&DeployQuery {
            service: Some(ServiceName::parse("orders").expect("name")),
            ..DeployQuery::default()
        })
        .await
        .expect("deploys");
    deploys
        .into_iter()
        .filter(Deploy::is_config_change)
        .collect()
}

async fn until_recorded(app: &TestApp, count: usize) -> Vec<Deploy> {
    eventually(
        format_args!("{count} configuration changes recorded"),
        async || {
            let changes = recorded_changes(app).await;
            if changes.len() >= count {
                Ok(changes)
            } else {
                Err(format!("{changes:?}"))
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_config_map_edit_appears_in_the_next_summary_with_its_diff_and_manager() {
    let Cluster { app, fake, .. } = start().await;

    fake.put_config_map(
        "orders-env",
        &[("DB_POOL_SIZE", "2"), ("REGION", "eu1")],
        "kubectl-edit",
        12,
    );
    until_recorded(&app, 1).await;
    app.fire_alert("HighErrorRate", "orders", "production")
        .await;
    let summary = app.summary().await;

    let text = summary.plain();
    assert!(
        text.contains("Suspect ⚙ ConfigMap orders-env changed by kubectl-edit"),
        "{text}"
    );
    assert!(text.contains("min before the alert ("), "{text}");
    assert!(text.contains("config DB_POOL_SIZE: 20 → 2"), "{text}");
    assert!(
        !text.contains("REGION"),
        "an unchanged key is listed: {text}"
    );
    assert!(text.contains("v1.3.1"), "the deploy is listed too: {text}");
    let audited = app.audited("config_change.recorded").await;
    assert_eq!(audited.len(), 1);
    assert!(
        audited[0].details.contains("kubectl-edit"),
        "{}",
        audited[0].details
    );
}

#[tokio::test]
async fn a_secret_edit_appears_with_its_key_names_only() {
    let Cluster { app, fake, .. } = start().await;

    fake.put_secret(
        "orders-db",
        &[("password", NEW_SECRET_VALUE)],
        "kubectl-edit",
        12,
    );
    let changes = until_recorded(&app, 1).await;
    app.fire_alert("HighErrorRate", "orders", "production")
        .await;
    let summary = app.summary().await;

    let text = summary.plain();
    assert!(
        text.contains("⚙ Secret orders-db changed by kubectl-edit"),
        "{text}"
    );
    assert!(text.contains("config password"), "{text}");
    assert!(text.contains("(secret, masked)"), "{text}");
    let audit = format!("{:?}", app.audited("config_change.recorded").await);
    let stored = format!("{changes:?}");
    for value in [SECRET_VALUE, NEW_SECRET_VALUE] {
        assert!(!text.contains(value), "summary shows the secret: {text}");
        assert!(!audit.contains(value), "audit holds the secret: {audit}");
        assert!(!stored.contains(value), "store holds the secret: {stored}");
    }
}

#[tokio::test]
async fn a_relist_after_410_gone_records_the_missed_change_once_and_nothing_twice() {
    let Cluster { app, fake, .. } = start().await;
    fake.put_config_map(
        "orders-env",
        &[("DB_POOL_SIZE", "2"), ("REGION", "eu1")],
        "kubectl-edit",
        12,
    );
    until_recorded(&app, 1).await;
    let watches_before = fake.watches_of("configmaps");

    fake.compact_history_then(|fake| {
        fake.put_config_map(
            "orders-env",
            &[("DB_POOL_SIZE", "2"), ("REGION", "us1")],
            "kubectl-edit",
            6,
        );
    });
    let changes = until_recorded(&app, 2).await;
    // Caught up: a watch opened after the relist that found the change.
    until("a watch after the relist", || {
        fake.watches_of("configmaps") >= watches_before + 2
    })
    .await;

    let lists = fake
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/configmaps"))
        .filter(|s| !s.query.as_deref().unwrap_or("").contains("watch=true"))
        .count();
    assert!(
        lists >= 2,
        "the 410 made the watcher list again: {lists} lists"
    );
    let changes_now = recorded_changes(&app).await;
    assert_eq!(changes_now.len(), 2, "{changes_now:?}");
    assert_eq!(changes.len(), 2);
    let region = changes_now
        .iter()
        .flat_map(|d| &d.config_changes)
        .filter(|c| c.key == "REGION")
        .count();
    assert_eq!(region, 1, "{changes_now:?}");
    assert_eq!(app.audited("config_change.recorded").await.len(), 2);
}

#[tokio::test]
async fn a_config_map_change_made_after_the_pods_started_is_not_yet_picked_up() {
    let Cluster { app, fake, .. } = start().await;

    fake.put_config_map(
        "orders-env",
        &[("DB_POOL_SIZE", "2"), ("REGION", "eu1")],
        "kubectl-edit",
        12,
    );
    until_recorded(&app, 1).await;
    app.fire_alert("HighErrorRate", "orders", "production")
        .await;

    let text = app.summary().await.plain();
    assert!(
        text.contains("⚙ ConfigMap orders-env changed by kubectl-edit · changed ")
            && text.contains(" UTC) · not yet picked up by running pods"),
        "{text}"
    );
}

#[tokio::test]
async fn a_config_map_change_made_before_a_restart_is_live_since_the_restart() {
    let Cluster { app, fake, .. } = start().await;

    fake.put_config_map(
        "orders-env",
        &[("DB_POOL_SIZE", "2"), ("REGION", "eu1")],
        "kubectl-edit",
        12,
    );
    until_recorded(&app, 1).await;
    let restarted = fake.restart_pods(8);
    app.fire_alert("HighErrorRate", "orders", "production")
        .await;

    let text = app.summary().await.plain();
    let live = format!(" · live since {}", restarted.format("%H:%M UTC"));
    assert!(text.contains(&live), "{live:?} in {text}");
    assert!(!text.contains("not yet picked up"), "{text}");
}

// --- Restore --------------------------------------------------------------------------------

const TOKEN_BEFORE: &str = "tok-before-0123456789";
const TOKEN_AFTER: &str = "tok-after-9876543210";

fn alice() -> breakwater::core::policy::Actor {
    actor("console:alice", "Alice")
}

/// orders-env as applied an hour ago (with a token), then `kubectl edit configmap
/// orders-env` 12 minutes ago: the pool shrunk and the token rotated; then an alert and
/// its summary.
async fn edited_then_alerted(confirm_step: bool) -> (Cluster, crate::support::Shown) {
    let cluster = start_with(confirm_step).await;
    cluster.fake.put_config_map(
        "orders-env",
        &[
            ("DB_POOL_SIZE", "20"),
            ("REGION", "eu1"),
            ("API_TOKEN", TOKEN_BEFORE),
        ],
        "kubectl-client-side-apply",
        60,
    );
    until_recorded(&cluster.app, 1).await;
    cluster.fake.put_config_map(
        "orders-env",
        &[
            ("DB_POOL_SIZE", "2"),
            ("REGION", "eu1"),
            ("API_TOKEN", TOKEN_AFTER),
        ],
        "kubectl-edit",
        12,
    );
    until_recorded(&cluster.app, 2).await;
    cluster
        .app
        .fire_alert("HighErrorRate", "orders", "production")
        .await;
    let summary = cluster.app.summary().await;
    (cluster, summary)
}

fn restore_dialog(summary: &crate::support::Shown) -> String {
    summary
        .message
        .actions
        .iter()
        .find_map(|action| match action {
            Action::Button {
                label,
                confirm: Some(confirm),
                ..
            } if label.starts_with("Restore") => Some(confirm.text.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Restore button with a dialog on:\n{}", summary.plain()))
}

fn patches_of(fake: &FakeKubernetes, plural: &str) -> usize {
    fake.patches()
        .iter()
        .filter(|p| p.path.contains(&format!("/{plural}/")))
        .count()
}

#[tokio::test]
async fn a_suspect_config_map_change_offers_a_restore_whose_confirm_names_the_masked_values() {
    let (Cluster { app, .. }, summary) = edited_then_alerted(true).await;

    let text = summary.plain();
    let changed_at = text
        .split("changed by kubectl-edit · changed ")
        .nth(1)
        .and_then(|rest| rest.split('(').nth(1))
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("the change's clock time in {text}"))
        .to_owned();
    let label = format!("Restore orders-env to its state before {changed_at}");
    assert!(summary.button(&label).is_some(), "{label:?} on {text}");
    assert!(
        !text.contains("rolling back the code would not undo it"),
        "{text}"
    );

    let dialog = restore_dialog(&summary);
    assert!(dialog.contains("DB_POOL_SIZE: 2 → 20"), "{dialog}");
    assert!(dialog.contains("API_TOKEN: •••••• → ••••••"), "{dialog}");
    let Reply::Private(prompt) = app.press(&summary, "Restore", &alice()).await else {
        panic!("a private Confirm step")
    };
    let prompt = prompt.to_plain();
    assert!(
        prompt.contains("Restore ConfigMap orders-env of orders production to its state before")
            && prompt.contains("DB_POOL_SIZE: 2 → 20"),
        "{prompt}"
    );
    for shown in [&text, &dialog, &prompt] {
        for token in [TOKEN_BEFORE, TOKEN_AFTER] {
            assert!(
                !shown.contains(token),
                "a secret-looking value leaked: {shown}"
            );
        }
    }
}

#[tokio::test]
async fn a_restore_runs_once_for_many_presses_writes_the_kept_data_back_and_restarts_the_deployment()
 {
    let (Cluster { app, fake, .. }, summary) = edited_then_alerted(false).await;

    let alice = alice();
    let presses = (0..5).map(|_| app.press(&summary, "Restore", &alice));
    futures::future::join_all(presses).await;
    let done = app
        .chat
        .wait_for_update(
            &summary.at,
            "✅ Restored ConfigMap orders-env of orders production",
        )
        .await;

    let data = fake.config_object("ConfigMap", "orders-env")["data"].clone();
    assert_eq!(
        data,
        serde_json::json!({"DB_POOL_SIZE": "20", "REGION": "eu1", "API_TOKEN": TOKEN_BEFORE}),
        "the kept state"
    );
    assert_eq!(patches_of(&fake, "configmaps"), 1, "written once");
    let restarts: Vec<_> = fake
        .patches()
        .into_iter()
        .filter(|p| p.path.ends_with("/deployments/orders"))
        .collect();
    assert_eq!(restarts.len(), 1, "restarted once");
    assert!(
        restarts[0].body["spec"]["template"]["metadata"]["annotations"]
            ["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "{:?}",
        restarts[0].body
    );
    assert!(
        done.plain().contains("and restarted it — by Alice"),
        "{}",
        done.plain()
    );
    let started = app.audited("rollback.started").await;
    assert_eq!(started.len(), 1);
    assert!(
        started[0].details.contains("restore_config"),
        "{}",
        started[0].details
    );
    assert_eq!(app.audited("rollback.succeeded").await.len(), 1);
}

#[tokio::test]
async fn a_config_map_changed_again_since_the_offer_is_not_written_and_a_fresh_restore_is_offered()
{
    let (Cluster { app, fake, .. }, summary) = edited_then_alerted(false).await;
    fake.put_config_map(
        "orders-env",
        &[("DB_POOL_SIZE", "3"), ("REGION", "eu1")],
        "kubectl-edit",
        1,
    );

    app.press(&summary, "Restore", &alice()).await;
    let stale = app
        .chat
        .wait_for_update(
            &summary.at,
            "⚠️ Not restored: ConfigMap orders-env was changed again",
        )
        .await;
    assert!(
        stale.plain().contains("nothing was written"),
        "{}",
        stale.plain()
    );
    let fresh = app
        .chat
        .wait_for_text("Restore ConfigMap orders-env of orders production to its state before")
        .await;
    assert!(
        fresh.plain().contains("DB_POOL_SIZE: 3 → 20"),
        "{}",
        fresh.plain()
    );
    assert!(
        fresh.button("Restore orders-env").is_some(),
        "{}",
        fresh.plain()
    );
    assert_eq!(patches_of(&fake, "configmaps"), 0);
    assert_eq!(patches_of(&fake, "deployments"), 0);
    assert_eq!(app.audited("rollback.stale").await.len(), 1);
}

#[tokio::test]
async fn a_409_on_the_write_refuses_the_restore_and_restarts_nothing() {
    let (Cluster { app, fake, .. }, summary) = edited_then_alerted(false).await;
    fake.lose_config_map_races(1);

    app.press(&summary, "Restore", &alice()).await;
    let refused = app
        .chat
        .wait_for_update(
            &summary.at,
            "⚠️ Not restored: ConfigMap orders-env was changed by someone else",
        )
        .await;
    assert!(
        refused
            .plain()
            .contains("(409 Conflict); nothing was written"),
        "{}",
        refused.plain()
    );
    assert_eq!(
        fake.config_object("ConfigMap", "orders-env")["data"]["DB_POOL_SIZE"],
        "2",
        "the other writer's data stays"
    );
    assert_eq!(patches_of(&fake, "deployments"), 0, "nothing restarted");
    app.chat
        .wait_for_text("Restore ConfigMap orders-env of orders production to its state before")
        .await;
}

#[tokio::test]
async fn a_restore_of_a_config_map_argo_cd_syncs_automatically_warns_that_the_next_sync_undoes_it()
{
    let cluster = start().await;
    cluster.fake.add_application("shop-orders", true);
    cluster.fake.put_config_map(
        "orders-env",
        &[("DB_POOL_SIZE", "2"), ("REGION", "eu1")],
        "kubectl-edit",
        12,
    );
    cluster.fake.track_by_argocd("orders-env", "shop-orders");
    until_recorded(&cluster.app, 1).await;
    cluster
        .app
        .fire_alert("HighErrorRate", "orders", "production")
        .await;

    let summary = cluster.app.summary().await;
    let text = summary.plain();
    assert!(
        text.contains(
            "ConfigMap orders-env is managed by Argo CD application shop-orders with automated sync: its next sync will undo a restore."
        ),
        "{text}"
    );
    assert!(summary.button("Restore orders-env").is_some(), "{text}");
}

#[tokio::test]
async fn a_restore_of_a_config_map_argo_cd_manages_says_a_sync_may_undo_it_when_the_application_cannot_be_read()
 {
    let cluster = start().await;
    cluster.fake.put_config_map(
        "orders-env",
        &[("DB_POOL_SIZE", "2"), ("REGION", "eu1")],
        "kubectl-edit",
        12,
    );
    cluster.fake.track_by_argocd("orders-env", "shop-orders");
    until_recorded(&cluster.app, 1).await;
    cluster
        .app
        .fire_alert("HighErrorRate", "orders", "production")
        .await;

    let text = cluster.app.summary().await.plain();
    assert!(
        text.contains(
            "ConfigMap orders-env is managed by Argo CD application shop-orders: if it syncs automatically, its next sync will undo a restore."
        ),
        "{text}"
    );
}

// --- Argo CD-managed workloads ---------------------------------------------------------------

/// The Argo CD Application deploying orders: history in Argo CD, automated sync, and the
/// orders Deployment and its ConfigMap among the objects it manages.
const ARGO_APP: &str = "orders-production";

struct ArgoCluster {
    app: TestApp,
    fake: Arc<FakeKubernetes>,
    _kubeconfig_dir: tempfile::TempDir,
}

fn argo_backend(argo_url: &str, kubeconfig: &std::path::Path, cluster_keys: &str) -> String {
    format!(
        r#"
[backends.argo]
kind = "argocd"
url = "{argo_url}"
token = {{ file = "argocd_token" }}
poll_interval = "20ms"
allow_insecure_http = true
kubeconfig = "{}"
{cluster_keys}

[[services]]
name = "orders"
environments = ["production"]
backend = "argo"
app = "{{service}}-{{environment}}"
"#,
        kubeconfig.display()
    )
}

/// breakwater with an Argo CD backend watching the cluster its Application deploys to.
async fn start_argo() -> ArgoCluster {
    let fake = FakeKubernetes::start().await;
    fake.with_revisions(&REVISIONS);
    fake.put_config_map(
        "orders-env",
        &[("DB_POOL_SIZE", "20"), ("REGION", "eu1")],
        "argocd-controller",
        60 * 24,
    );
    fake.put_secret("orders-db", &[("password", SECRET_VALUE)], "helm", 60 * 24);
    let argo = FakeArgoCd::start().await;
    let history = [Entry {
        id: 1,
        tag: "v1.3.1",
        minutes_ago: 300,
        by: "ada",
    }];
    argo.add(application(ARGO_APP, &history, true));
    argo.edit(ARGO_APP, |app| {
        app["status"]["resources"] = json!([
            {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": NAMESPACE,
             "name": "orders", "status": "Synced", "health": {"status": "Healthy"}},
            {"version": "v1", "kind": "ConfigMap", "namespace": NAMESPACE, "name": "orders-env",
             "status": "Synced"},
            {"version": "v1", "kind": "Service", "namespace": NAMESPACE, "name": "orders",
             "status": "Synced", "health": {"status": "Healthy"}}
        ]);
    });
    let kubeconfig_dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = fake.kubeconfig(kubeconfig_dir.path());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("argocd_token"), ARGO_TOKEN).expect("token");
    let app = spawn_app_with(AppOptions {
        extra_config: argo_backend(
            &argo.url,
            &kubeconfig,
            "context = \"fake-breakwater\"\nwatch_config = true",
        ),
        platform: Platform::Console,
        dir: Some(dir),
        ..AppOptions::default()
    })
    .await;
    until("both watches open", || {
        fake.watches_of("configmaps") > 0 && fake.watches_of("secrets") > 0
    })
    .await;
    ArgoCluster {
        app,
        fake,
        _kubeconfig_dir: kubeconfig_dir,
    }
}

#[tokio::test]
async fn argocd_a_config_map_edit_of_a_managed_deployment_is_in_the_next_summary_and_restored_once()
{
    let ArgoCluster { app, fake, .. } = start_argo().await;

    fake.put_config_map(
        "orders-env",
        &[("DB_POOL_SIZE", "2"), ("REGION", "eu1")],
        "kubectl-edit",
        12,
    );
    until_recorded(&app, 1).await;
    app.fire_alert("HighErrorRate", "orders", "production")
        .await;
    let summary = app.summary().await;

    let text = summary.plain();
    assert!(
        text.contains("Suspect ⚙ ConfigMap orders-env changed by kubectl-edit"),
        "{text}"
    );
    assert!(text.contains("config DB_POOL_SIZE: 20 → 2"), "{text}");
    assert!(
        text.contains("v1.3.1"),
        "the Argo CD deploy is listed too: {text}"
    );
    assert!(
        text.contains(
            "ConfigMap orders-env is managed by Argo CD application orders-production with automated sync: its next sync will undo a restore."
        ),
        "{text}"
    );

    let alice = alice();
    let presses = (0..3).map(|_| app.press(&summary, "Restore", &alice));
    futures::future::join_all(presses).await;
    app.chat
        .wait_for_update(
            &summary.at,
            "✅ Restored ConfigMap orders-env of orders production",
        )
        .await;
    assert_eq!(
        fake.config_object("ConfigMap", "orders-env")["data"],
        json!({"DB_POOL_SIZE": "20", "REGION": "eu1"})
    );
    assert_eq!(patches_of(&fake, "configmaps"), 1, "written once");
    let restarts = fake
        .patches()
        .iter()
        .filter(|p| p.path.ends_with("/deployments/orders"))
        .count();
    assert_eq!(
        restarts, 1,
        "the Deployment Argo CD lists was restarted once"
    );
}

#[test]
fn argocd_cluster_settings_that_cannot_work_stop_start_up_naming_their_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("argocd_token"), ARGO_TOKEN).expect("token");
    let config = |kubeconfig: &std::path::Path, keys: &str| {
        let text = argo_backend("http://127.0.0.1:9", kubeconfig, keys).replace(
            "{ file = \"argocd_token\" }",
            &format!(
                "{{ file = \"{}\" }}",
                dir.path().join("argocd_token").display()
            ),
        );
        Config::parse(&text).expect("config")
    };
    let missing = dir.path().join("no-such-kubeconfig");

    let error = BackendRegistry::from_config(&config(&missing, "watch_config = true"))
        .expect_err("an unreadable kubeconfig");
    assert!(
        error
            .to_string()
            .starts_with("backends.argo.kubeconfig: cannot read"),
        "{error}"
    );
    assert!(
        BackendRegistry::from_config(&config(&missing, "")).is_ok(),
        "without watch_config the cluster settings are not used"
    );
}

// --- Restore through a crash, and a restart that fails -------------------------------------

#[tokio::test]
async fn a_restore_whose_restart_fails_says_the_data_was_written_and_the_pods_were_not_restarted() {
    let (Cluster { app, fake, .. }, summary) = edited_then_alerted(false).await;
    fake.forbid_patch();

    app.press(&summary, "Restore", &alice()).await;
    let done = app.chat.wait_for_update(&summary.at, "❌ Restore of").await;

    let text = done.plain();
    assert!(
        text.contains("ConfigMap orders-env was written back to its state before")
            && text.contains("but its pods were not restarted")
            && text.contains("kubectl rollout restart deployment/orders -n shop"),
        "{text}"
    );
    assert_eq!(
        fake.config_object("ConfigMap", "orders-env")["data"]["DB_POOL_SIZE"],
        "20"
    );
    assert_eq!(patches_of(&fake, "configmaps"), 1, "written once");
    assert_eq!(app.audited("rollback.failed").await.len(), 1);
}

const RESTORE_SERVE_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:{port}"
shutdown_grace = "2s"
heartbeat_interval = "1m"
heartbeat_timeout = "10m"

[database]
url = "sqlite://{dir}/breakwater.db"

[api]
token = { file = "api_token" }

[webhooks]
token = { file = "webhook_token" }

[console]
users = [{ name = "alice", password_hash = "{alice}" }]

[backends.cluster]
kind = "kubernetes"
kubeconfig = "{kubeconfig}"
context = "fake-breakwater"
allow_insecure_http = true
poll_interval = "50ms"

[[services]]
name = "orders"
environments = ["production"]
backend = "cluster"
namespace = "shop"

[policy]
rollback_allowed = ["console:alice"]
cooldown = "0s"
"#;

/// Real processes: a restore is confirmed, the ConfigMap written and the Deployment
/// restarted, and the process is killed with SIGKILL while the restart rolls out. The
/// restarted process takes the plan back, follows the rollout to its outcome and writes
/// nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_while_its_restart_rolls_out_is_followed_after_a_restart_and_written_once()
{
    use crate::crash::{Rig, Serve, free_port};
    use crate::support::kubernetes::RolloutEnd;
    use crate::support::{API_TOKEN, WEBHOOK_TOKEN, alertmanager};

    let rig = Rig::new().await;
    let fake = FakeKubernetes::start().await;
    fake.with_revisions(&REVISIONS);
    fake.put_config_map(
        "orders-env",
        &[("DB_POOL_SIZE", "20"), ("REGION", "eu1")],
        "kubectl-client-side-apply",
        60 * 24,
    );
    fake.put_secret("orders-db", &[("password", SECRET_VALUE)], "helm", 60 * 24);
    fake.end_rollouts(RolloutEnd::Stuck);
    let kubeconfig = fake.kubeconfig(rig.dir.path());
    let port = free_port();
    let config = rig.dir.path().join("serve.toml");
    std::fs::write(
        &config,
        RESTORE_SERVE_CONFIG
            .replace("{port}", &port.to_string())
            .replace("{dir}", &rig.dir.path().display().to_string())
            .replace("{alice}", &rig.alice_hash)
            .replace("{kubeconfig}", &kubeconfig.display().to_string()),
    )
    .expect("write config");
    let http = reqwest::Client::new();

    let mut first = Serve::start(&config, port).await;
    until("the ConfigMap watch to open", || {
        fake.watches_of("configmaps") > 0
    })
    .await;
    fake.put_config_map(
        "orders-env",
        &[("DB_POOL_SIZE", "2"), ("REGION", "eu1")],
        "kubectl-edit",
        12,
    );
    eventually("the edit to be recorded", async || {
        let listed: serde_json::Value = http
            .get(format!("{}/api/v1/deploys?service=orders", first.address))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        listed["deploys"]
            .as_array()?
            .iter()
            .any(|d| d["source"] == "config_change")
            .then_some(())
    })
    .await;
    let response = http
        .post(format!("{}/webhooks/alertmanager", first.address))
        .bearer_auth(WEBHOOK_TOKEN)
        .json(&alertmanager(
            "HighErrorRate",
            "orders",
            "production",
            "firing",
        ))
        .send()
        .await
        .expect("alert");
    assert_eq!(response.status(), 200);
    let session = rig.sign_in(&first).await;
    rig.wait_for(&first, &session, "Restore orders-env to its state before")
        .await;
    rig.press(&first, &session, "Restore orders-env").await;
    rig.wait_for(&first, &session, "Only you can see this")
        .await;
    rig.press(&first, &session, "Confirm").await;
    // The rollout is followed (a read of the Deployment after the restart's patch) only
    // once the plan's operation is stored: from then on a restart can take it back.
    until("the restart's rollout to be followed", || {
        let seen = fake.seen();
        seen.iter()
            .position(|s| s.method == "PATCH" && s.path.ends_with("/deployments/orders"))
            .is_some_and(|patched| {
                seen[patched..]
                    .iter()
                    .any(|s| s.method == "GET" && s.path.ends_with("/deployments/orders"))
            })
    })
    .await;
    first.kill_9();
    fake.end_rollouts(RolloutEnd::Available);

    let restarted = Serve::start(&config, port).await;
    rig.wait_for(
        &restarted,
        &session,
        "Restored ConfigMap orders-env of orders production",
    )
    .await;
    assert_eq!(
        fake.config_object("ConfigMap", "orders-env")["data"],
        json!({"DB_POOL_SIZE": "20", "REGION": "eu1"})
    );
    assert_eq!(patches_of(&fake, "configmaps"), 1, "written once");
    let restarts = fake
        .patches()
        .iter()
        .filter(|p| p.path.ends_with("/deployments/orders"))
        .count();
    assert_eq!(restarts, 1, "restarted once");
    assert!(
        restarted
            .log()
            .contains("taking back the rollbacks this runner left running"),
        "{}",
        restarted.log()
    );
}
