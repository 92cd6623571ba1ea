//! In-place ConfigMap and Secret edits on Kubernetes, seen through real watch streams of
//! the fake API server (chunked JSON lines, ADDED/MODIFIED/BOOKMARK, 410 Gone then relist)
//! and shown in the next summary beside deploys.

use std::sync::Arc;

use breakwater::core::deploy::{Deploy, ServiceName};
use breakwater::core::message::Platform;
use breakwater::store::DeployQuery;

use crate::support::kubernetes::{FakeKubernetes, NAMESPACE, Rev};
use crate::support::{AppOptions, TestApp, eventually, spawn_app_with};

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
