//! A Deployment's pod template as data: the JSON compared between revisions, the merge
//! patch that puts an earlier one back, and what changed from one to the next in words
//! people read (images, environment, resources, mounted ConfigMaps and Secrets), with
//! secret-looking values masked. Kept apart from the API calls so any workload with a pod
//! template (Deployments, Argo Rollouts) can share it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::core::deploy::ConfigChange;

const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The Deployment's replica count while a ReplicaSet was its newest; pod templates carry no
/// replica count, so this is where a change of scale between revisions shows.
pub(crate) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";

/// A pod template as JSON, without the label that only tells ReplicaSets apart.
pub(crate) fn template_value(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> Value {
    let mut value = serde_json::to_value(template).unwrap_or(Value::Null);
    remove_label(&mut value, POD_TEMPLATE_HASH);
    value
}

/// Removes one label from a pod template value (and the labels map once empty): the
/// controllers' hash labels (`pod-template-hash`, Argo Rollouts'
/// `rollouts-pod-template-hash`) only tell ReplicaSets apart.
pub(crate) fn remove_label(value: &mut Value, label: &str) {
    if let Some(labels) = value
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(label);
        if labels.is_empty()
            && let Some(metadata) = value
                .pointer_mut("/metadata")
                .and_then(Value::as_object_mut)
        {
            metadata.remove("labels");
        }
    }
}

/// An RFC 7386 merge patch that turns `old` into `new`: keys only in `old` become null,
/// nested objects are patched key by key, everything else is replaced.
pub(crate) fn merge_patch(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = Map::new();
            for key in old.keys() {
                if !new.contains_key(key) {
                    patch.insert(key.clone(), Value::Null);
                }
            }
            for (key, value) in new {
                match old.get(key) {
                    Some(before) if before == value => {}
                    Some(before @ Value::Object(_)) if value.is_object() => {
                        patch.insert(key.clone(), merge_patch(before, value));
                    }
                    _ => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            Value::Object(patch)
        }
        (_, new) => new.clone(),
    }
}

// --- configuration changes between pod templates ------------------------------------------

/// What changed from one pod template to the next, secret-looking keys masked.
pub(crate) fn template_changes(old: &Value, new: &Value) -> Vec<ConfigChange> {
    let mut changes = Vec::new();
    let old_containers = containers(old);
    let new_containers = containers(new);
    let single = old_containers.len() == 1
        && new_containers.len() == 1
        && old_containers.keys().eq(new_containers.keys());
    let names: BTreeSet<&String> = old_containers.keys().chain(new_containers.keys()).collect();
    for name in names {
        let prefix = if single {
            String::new()
        } else {
            format!("{name}/")
        };
        let before = old_containers
            .get(name)
            .map(container_settings)
            .unwrap_or_default();
        let after = new_containers
            .get(name)
            .map(container_settings)
            .unwrap_or_default();
        push_differences(&mut changes, &prefix, &before, &after);
    }
    push_differences(&mut changes, "", &volumes(old), &volumes(new));
    changes.into_iter().map(ConfigChange::masked).collect()
}

/// `replicas: 6 → 2` when the Deployment was scaled between two revisions.
pub(crate) fn replica_change(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Option<ConfigChange> {
    let (before, after) = (old.get(DESIRED_REPLICAS)?, new.get(DESIRED_REPLICAS)?);
    (before != after).then(|| ConfigChange {
        key: "replicas".into(),
        old: Some(before.clone()),
        new: Some(after.clone()),
    })
}

fn push_differences(
    changes: &mut Vec<ConfigChange>,
    prefix: &str,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for key in keys {
        let old = before.get(key);
        let new = after.get(key);
        if old != new {
            changes.push(ConfigChange {
                key: format!("{prefix}{key}"),
                old: old.cloned(),
                new: new.cloned(),
            });
        }
    }
}

/// Containers and init containers by name (init containers as `init:NAME`).
fn containers(template: &Value) -> BTreeMap<String, Value> {
    let mut found = BTreeMap::new();
    for (path, prefix) in [("/spec/containers", ""), ("/spec/initContainers", "init:")] {
        for container in template
            .pointer(path)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = container.get("name").and_then(Value::as_str).unwrap_or("");
            found.insert(format!("{prefix}{name}"), container.clone());
        }
    }
    found
}

/// A container's settings as flat key → shown value.
fn container_settings(container: &Value) -> BTreeMap<String, String> {
    let mut settings = BTreeMap::new();
    let text = |v: &Value| v.as_str().map(str::to_owned);
    if let Some(image) = container.get("image").and_then(Value::as_str) {
        settings.insert("image".to_owned(), image.to_owned());
    }
    for key in ["command", "args"] {
        if let Some(list) = container.get(key).and_then(Value::as_array) {
            let joined: Vec<String> = list.iter().filter_map(text).collect();
            settings.insert(key.to_owned(), joined.join(" "));
        }
    }
    for variable in container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = variable.get("name").and_then(Value::as_str) else {
            continue;
        };
        settings.insert(name.to_owned(), env_value(variable));
    }
    let sources: Vec<String> = container
        .get("envFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|source| {
            let prefix = source
                .get("prefix")
                .and_then(Value::as_str)
                .map(|p| format!(" (prefix {p})"))
                .unwrap_or_default();
            let named = |kind: &str, key: &str| {
                source
                    .get(key)
                    .and_then(|r| r.get("name"))
                    .and_then(Value::as_str)
                    .map(|name| format!("{kind} {name}{prefix}"))
            };
            named("configMap", "configMapRef")
                .or_else(|| named("secret", "secretRef"))
                .unwrap_or_else(|| format!("source{prefix}"))
        })
        .collect();
    if !sources.is_empty() {
        settings.insert("envFrom".to_owned(), sources.join(", "));
    }
    for kind in ["limits", "requests"] {
        if let Some(resources) = container
            .pointer(&format!("/resources/{kind}"))
            .and_then(Value::as_object)
        {
            for (resource, quantity) in resources {
                let shown = quantity
                    .as_str()
                    .map_or_else(|| quantity.to_string(), str::to_owned);
                settings.insert(format!("resources.{kind}.{resource}"), shown);
            }
        }
    }
    settings
}

/// An environment variable's value as shown: the literal, or the name of where it comes
/// from — never the referenced value itself.
fn env_value(variable: &Value) -> String {
    if let Some(value) = variable.get("value").and_then(Value::as_str) {
        return value.to_owned();
    }
    let Some(from) = variable.get("valueFrom") else {
        return String::new();
    };
    let key_ref = |kind: &str, field: &str| {
        from.get(field).map(|r| {
            format!(
                "{kind} {}/{}",
                r.get("name").and_then(Value::as_str).unwrap_or(""),
                r.get("key").and_then(Value::as_str).unwrap_or("")
            )
        })
    };
    key_ref("secret", "secretKeyRef")
        .or_else(|| key_ref("configMap", "configMapKeyRef"))
        .or_else(|| {
            from.pointer("/fieldRef/fieldPath")
                .and_then(Value::as_str)
                .map(|path| format!("field {path}"))
        })
        .or_else(|| {
            from.pointer("/resourceFieldRef/resource")
                .and_then(Value::as_str)
                .map(|resource| format!("resource {resource}"))
        })
        .unwrap_or_else(|| "valueFrom".to_owned())
}

/// The ConfigMaps and Secrets mounted as volumes, by volume name.
fn volumes(template: &Value) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for volume in template
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = volume.get("name").and_then(Value::as_str) else {
            continue;
        };
        let mut references = Vec::new();
        if let Some(map) = volume.pointer("/configMap/name").and_then(Value::as_str) {
            references.push(format!("configMap {map}"));
        }
        if let Some(secret) = volume.pointer("/secret/secretName").and_then(Value::as_str) {
            references.push(format!("secret {secret}"));
        }
        for source in volume
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(map) = source.pointer("/configMap/name").and_then(Value::as_str) {
                references.push(format!("configMap {map}"));
            }
            if let Some(secret) = source.pointer("/secret/name").and_then(Value::as_str) {
                references.push(format!("secret {secret}"));
            }
        }
        if !references.is_empty() {
            found.insert(format!("volume {name}"), references.join(", "));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::core::deploy::MASKED;

    fn template(env: Value, image: &str) -> Value {
        json!({
            "metadata": {"labels": {"app": "checkout"}},
            "spec": {
                "containers": [{
                    "name": "checkout",
                    "image": image,
                    "env": env,
                    "resources": {"limits": {"memory": "512Mi"}},
                }],
                "volumes": [{"name": "config", "configMap": {"name": "checkout-v1"}}],
            }
        })
    }

    #[test]
    fn changed_env_vars_images_and_references_are_listed_with_secrets_masked() {
        let old = template(
            json!([
                {"name": "DB_POOL_SIZE", "value": "20"},
                {"name": "DB_PASSWORD", "value": "hunter2"},
                {"name": "REGION", "valueFrom": {"configMapKeyRef": {"name": "site", "key": "region"}}},
            ]),
            "ghcr.io/acme/checkout:v1.3.2",
        );
        let mut new = template(
            json!([
                {"name": "DB_POOL_SIZE", "value": "2"},
                {"name": "DB_PASSWORD", "value": "hunter3"},
                {"name": "REGION", "valueFrom": {"secretKeyRef": {"name": "site", "key": "region"}}},
            ]),
            "ghcr.io/acme/checkout:v1.4.0",
        );
        new["spec"]["volumes"][0]["configMap"]["name"] = json!("checkout-v2");

        let changes = template_changes(&old, &new);

        let find = |key: &str| {
            changes
                .iter()
                .find(|c| c.key == key)
                .unwrap_or_else(|| panic!("{key} missing from {changes:?}"))
        };
        assert_eq!(find("DB_POOL_SIZE").new.as_deref(), Some("2"));
        assert_eq!(find("DB_PASSWORD").new.as_deref(), Some(MASKED));
        assert_eq!(find("REGION").old.as_deref(), Some("configMap site/region"));
        assert_eq!(find("REGION").new.as_deref(), Some("secret site/region"));
        assert_eq!(
            find("image").new.as_deref(),
            Some("ghcr.io/acme/checkout:v1.4.0")
        );
        assert_eq!(
            find("volume config").new.as_deref(),
            Some("configMap checkout-v2")
        );
        assert_eq!(changes.len(), 5, "{changes:?}");
    }

    #[test]
    fn a_change_of_scale_between_revisions_is_a_replicas_change() {
        let replicas = |n: &str| BTreeMap::from([(DESIRED_REPLICAS.to_owned(), n.to_owned())]);
        assert_eq!(
            replica_change(&replicas("6"), &replicas("2")),
            Some(ConfigChange {
                key: "replicas".into(),
                old: Some("6".into()),
                new: Some("2".into()),
            })
        );
        assert_eq!(replica_change(&replicas("3"), &replicas("3")), None);
        assert_eq!(replica_change(&BTreeMap::new(), &replicas("3")), None);
    }

    #[test]
    fn several_containers_name_the_container_in_each_key() {
        let mut old = template(json!([]), "app:1");
        old["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
            .push(json!({"name": "proxy", "image": "envoy:1.30"}));
        let mut new = old.clone();
        new["spec"]["containers"][1]["image"] = json!("envoy:1.31");
        new["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("1Gi");

        let changes = template_changes(&old, &new);

        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["checkout/resources.limits.memory", "proxy/image"]);
    }

    #[test]
    fn merge_patches_remove_what_the_target_lacks_and_replace_lists() {
        let old = json!({"labels": {"a": "1", "b": "2"}, "list": [1, 2], "same": {"x": 1}});
        let new = json!({"labels": {"a": "1"}, "list": [3], "same": {"x": 1}});
        assert_eq!(
            merge_patch(&old, &new),
            json!({"labels": {"b": null}, "list": [3]})
        );
    }
}
