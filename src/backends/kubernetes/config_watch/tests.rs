//! Unit tests of the config watch: references, diffs, masking, the last writer.

use serde_json::json;

use super::*;

#[test]
fn every_way_a_template_reads_config_is_a_reference() {
    let template = json!({"spec": {
        "containers": [{
            "name": "app",
            "env": [
                {"name": "POOL", "valueFrom": {"configMapKeyRef": {"name": "app-env", "key": "pool"}}},
                {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "PLAIN", "value": "x"}
            ],
            "envFrom": [{"configMapRef": {"name": "shared"}}, {"secretRef": {"name": "api-keys"}}]
        }],
        "initContainers": [{"name": "migrate", "envFrom": [{"configMapRef": {"name": "migrations"}}]}],
        "volumes": [
            {"name": "conf", "configMap": {"name": "nginx"}},
            {"name": "tls", "secret": {"secretName": "tls"}},
            {"name": "all", "projected": {"sources": [
                {"configMap": {"name": "features"}}, {"secret": {"name": "signing"}}
            ]}}
        ]
    }});
    let references = referenced_objects(&template);
    let found: Vec<(Kind, &str)> = references.iter().map(|(k, n)| (*k, n.as_str())).collect();
    assert_eq!(
        found,
        [
            (Kind::ConfigMap, "app-env"),
            (Kind::ConfigMap, "features"),
            (Kind::ConfigMap, "migrations"),
            (Kind::ConfigMap, "nginx"),
            (Kind::ConfigMap, "shared"),
            (Kind::Secret, "api-keys"),
            (Kind::Secret, "db"),
            (Kind::Secret, "signing"),
            (Kind::Secret, "tls"),
        ]
    );
}

fn config_map(data: &[(&str, &str)]) -> Snapshot {
    ConfigMap {
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
    .snapshot()
}

fn secret(data: &[(&str, &str)]) -> Snapshot {
    Secret {
        data: Some(
            data.iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        k8s_openapi::ByteString(v.as_bytes().to_vec()),
                    )
                })
                .collect(),
        ),
        ..Secret::default()
    }
    .snapshot()
}

#[test]
fn a_config_map_edit_lists_added_removed_and_changed_keys_with_values() {
    let changes = data_changes(
        &config_map(&[("DB_POOL_SIZE", "20"), ("OLD", "x"), ("SAME", "1")]),
        &config_map(&[("DB_POOL_SIZE", "2"), ("NEW", "y"), ("SAME", "1")]),
    );
    let shown: Vec<(&str, Option<&str>, Option<&str>)> = changes
        .iter()
        .map(|c| (c.key.as_str(), c.old.as_deref(), c.new.as_deref()))
        .collect();
    assert_eq!(
        shown,
        [
            ("DB_POOL_SIZE", Some("20"), Some("2")),
            ("NEW", None, Some("y")),
            ("OLD", Some("x"), None),
        ]
    );
}

#[test]
fn a_secret_looking_config_map_key_is_masked() {
    let changes = data_changes(
        &config_map(&[("API_TOKEN", "abc")]),
        &config_map(&[("API_TOKEN", "def")]),
    );
    assert_eq!(changes[0].old.as_deref(), Some(MASKED));
    assert_eq!(changes[0].new.as_deref(), Some(MASKED));
}

#[test]
fn a_secret_edit_names_the_keys_and_never_the_values() {
    let changes = data_changes(
        &secret(&[("password", "hunter2"), ("user", "app")]),
        &secret(&[
            ("password", "hunter3"),
            ("user", "app"),
            ("extra", "s3cr3t"),
        ]),
    );
    let text = format!("{changes:?}");
    for value in ["hunter2", "hunter3", "s3cr3t"] {
        assert!(!text.contains(value), "{text}");
    }
    let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["extra", "password"]);
    assert_eq!(changes[1].new.as_deref(), Some(MASKED));
    assert_eq!(changes[0].old, None);
}

#[test]
fn the_newest_manager_wrote_it_and_a_far_future_time_is_not_believed() {
    let now = Utc::now();
    let meta: ObjectMeta = serde_json::from_value(json!({
        "managedFields": [
            {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-01-01T10:00:00Z"},
            {"manager": "kubectl-edit", "operation": "Update", "time": "2026-01-01T11:00:00Z"},
            {"manager": "kubelet", "operation": "Update", "subresource": "status", "time": "2026-01-01T12:00:00Z"}
        ]
    }))
    .expect("meta");
    let (manager, at) = last_writer(&meta, now);
    assert_eq!(manager.as_deref(), Some("kubectl-edit"));
    assert_eq!(at.to_rfc3339(), "2026-01-01T11:00:00+00:00");

    let future: ObjectMeta = serde_json::from_value(json!({
        "managedFields": [{"manager": "helm", "operation": "Update", "time": "2999-01-01T00:00:00Z"}]
    }))
    .expect("meta");
    assert_eq!(last_writer(&future, now), (Some("helm".to_owned()), now));
}
