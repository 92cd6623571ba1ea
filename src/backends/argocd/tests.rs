//! Unit tests of the Argo CD backend: versions, following a rollback, parents.

use super::history::entry_version;
use super::*;

fn entry(value: Value) -> HistoryEntry {
    serde_json::from_value(value).expect("history entry")
}

#[test]
fn kustomize_image_overrides_give_the_tag_of_the_apps_image() {
    let entry = entry(json!({
        "id": 3, "revision": "0123456789abcdef0123456789abcdef01234567",
        "source": {"repoURL": "https://git.example/deploy.git", "path": "storefront",
            "kustomize": {"images": ["redis:7.2", "storefront=ghcr.io/acme/storefront:v1.4.0"]}}
    }));
    assert_eq!(entry_version(&entry, "storefront-production"), "v1.4.0");
}

#[test]
fn charts_are_known_by_their_version_and_git_by_tag_or_commit() {
    let chart = entry(json!({"id": 1, "revision": "1.2.0",
        "source": {"repoURL": "https://charts.example", "chart": "web", "targetRevision": "1.2.0"}}));
    assert_eq!(entry_version(&chart, "web"), "1.2.0");
    let helm_parameter = entry(json!({"id": 1, "revision": "abc",
        "source": {"repoURL": "r", "helm": {"parameters": [{"name": "image.tag", "value": "v9"}]}}}));
    assert_eq!(entry_version(&helm_parameter, "web"), "v9");
    let tagged = entry(json!({"id": 1, "revision": "0123456789abcdef0123",
        "source": {"repoURL": "r", "targetRevision": "v2.0.1"}}));
    assert_eq!(entry_version(&tagged, "web"), "v2.0.1");
    let branch = entry(json!({"id": 1, "revision": "0123456789abcdef0123",
        "source": {"repoURL": "r", "targetRevision": "main"}}));
    assert_eq!(entry_version(&branch, "web"), "0123456");
}

fn backend() -> ArgoCdBackend {
    let config = ArgoCdBackendConfig {
        url: Url::parse("https://argocd.example.com").expect("url"),
        token: Secret::new("t"),
        ca_file: None,
        insecure: false,
        allow_disable_autosync: false,
        timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(10),
        allow_insecure_http: false,
        cluster: None,
    };
    ArgoCdBackend::new("argo", &config, &[]).expect("backend")
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
}

/// A rollback to chart version 1.8.2, requested at 03:00:00, accepted while the
/// previous operation (02:50:00–02:50:40) was shown.
fn chart_handle() -> Handle {
    Handle {
        app: "web".into(),
        app_namespace: None,
        history_id: 2,
        revision: "1.8.2".into(),
        revisions: Vec::new(),
        requested_at: at("2026-11-29T03:00:00Z"),
        prior_started_at: Some(at("2026-11-29T02:50:00Z")),
        prior_finished_at: Some(at("2026-11-29T02:50:40Z")),
    }
}

fn app_with_operation(operation: Value) -> Application {
    serde_json::from_value(json!({
        "status": {
            "sync": {"status": "Synced", "revision": "1.8.2"},
            "health": {"status": "Healthy"},
            "operationState": operation,
            "reconciledAt": "2026-11-29T03:00:05Z"
        }
    }))
    .expect("application")
}

#[test]
fn the_operation_shown_when_the_rollback_was_accepted_is_never_its_own() {
    let app = app_with_operation(json!({
        "operation": {"sync": {"revision": "1.8.2"}},
        "phase": "Succeeded",
        "syncResult": {"revision": "1.8.2"},
        "startedAt": "2026-11-29T02:50:00Z",
        "finishedAt": "2026-11-29T02:50:40Z"
    }));
    assert_eq!(
        backend().follow_state(&chart_handle(), &app),
        Look::running("waiting for Argo CD to start the sync to 1.8.2"),
        "Synced and Healthy at the same revision string proves nothing"
    );
}

#[test]
fn an_automated_sync_to_the_shared_revision_is_not_the_rollback() {
    let app = app_with_operation(json!({
        "operation": {"sync": {"revision": "1.8.2"}, "initiatedBy": {"automated": true}},
        "phase": "Succeeded",
        "syncResult": {"revision": "1.8.2"},
        "startedAt": "2026-11-29T03:00:02Z",
        "finishedAt": "2026-11-29T03:00:04Z"
    }));
    let state = backend().follow_state(&chart_handle(), &app);
    assert!(
        matches!(state, Look::Done(Outcome::Failed(ref m)) if m.starts_with("Argo CD's automated sync started another sync")),
        "{state:?}"
    );
}

#[test]
fn the_rollbacks_own_succeeded_operation_then_healthy_is_success() {
    let app = app_with_operation(json!({
        "operation": {"sync": {"revision": "1.8.2"}, "initiatedBy": {"username": "breakwater"}},
        "phase": "Succeeded",
        "syncResult": {"revision": "1.8.2"},
        "startedAt": "2026-11-29T03:00:02Z",
        "finishedAt": "2026-11-29T03:00:04Z"
    }));
    let state = backend().follow_state(&chart_handle(), &app);
    assert!(
        matches!(state, Look::Done(Outcome::Succeeded(_))),
        "{state:?}"
    );
}

#[test]
fn parents_are_found_by_tracking_label_annotation_or_owner() {
    let app = |metadata: Value| -> Application {
        serde_json::from_value(json!({ "metadata": metadata })).expect("app")
    };
    assert_eq!(
        parent_of(&app(
            json!({"name": "child", "labels": {INSTANCE_LABEL: "apps"}})
        )),
        Some("Application apps".to_owned())
    );
    assert_eq!(
        parent_of(&app(json!({"name": "child",
            "annotations": {TRACKING_ANNOTATION: "root:argoproj.io/Application:argocd/child"}}))),
        Some("Application root".to_owned())
    );
    assert_eq!(
        parent_of(&app(json!({"name": "child",
            "ownerReferences": [{"kind": "ApplicationSet", "name": "teams"}]}))),
        Some("ApplicationSet teams".to_owned())
    );
    assert_eq!(
        parent_of(&app(
            json!({"name": "child", "labels": {INSTANCE_LABEL: "child"}})
        )),
        None
    );
}
