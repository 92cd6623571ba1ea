//! A fake Kubernetes API server for apps/v1 Deployments and ReplicaSets: get, list with a
//! label selector, and JSON merge patch with the `resourceVersion` precondition (409
//! `Conflict` when it does not match), answering errors as `Status` objects. A patch that
//! changes the pod template is picked up by a fake deployment controller one step per
//! status read, as the real one would report it: spec observed, the matching old
//! ReplicaSet reactivated under the next revision (or a new one created), replicas
//! updated, then available — or the `ProgressDeadlineExceeded` condition. The
//! Deployment's pods are listed with their containers' start times; a completed rollout
//! replaces them with pods started at that moment.
//!
//! ConfigMaps and Secrets (core/v1) are listed and watched as the API server streams them:
//! `?watch=true&resourceVersion=N` answers a chunked body of JSON lines, first the events
//! after N, then a BOOKMARK (with `allowWatchBookmarks=true`), then live ADDED/MODIFIED
//! events; a version older than the compacted history gets an ERROR event with a 410
//! `Expired` Status, as etcd compaction makes the real server answer. A ConfigMap is read
//! by name and written with a JSON merge patch under the same `resourceVersion`
//! precondition (409 when it does not match), which its watchers see as MODIFIED.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use serde_json::{Value, json};

use super::json_merge;

pub(crate) const KUBE_TOKEN: &str = "kube-service-account-token-for-breakwater";
pub(crate) const NAMESPACE: &str = "shop";
const DEPLOYMENT_UID: &str = "0d6a4b1c-7e2f-4a3b-9c8d-5e6f7a8b9c0d";

/// How the fake controller ends a rollout after a template change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RolloutEnd {
    Available,
    DeadlineExceeded,
    Stuck,
}

/// One revision for [`FakeKubernetes::with_revisions`].
pub(crate) struct Rev {
    pub revision: i64,
    pub tag: &'static str,
    pub env: &'static [(&'static str, &'static str)],
    pub minutes_ago: i64,
    pub cause: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
}

struct Inner {
    deployment: Option<Value>,
    replica_sets: Vec<Value>,
    seen: Vec<Seen>,
    token_valid: bool,
    may_patch: bool,
    /// Patches still to lose a race against another writer.
    conflicting_patches: u32,
    end: RolloutEnd,
    /// Controller steps still to show, one per Deployment read.
    steps: u32,
    resource_version: u64,
    /// ConfigMaps and Secrets, each with its `kind`.
    config_objects: Vec<Value>,
    /// Every config object event: (resourceVersion, plural, watch event line).
    config_events: Vec<(u64, &'static str, Value)>,
    /// Watches from a resourceVersion below this are answered 410 Gone.
    oldest_watchable: u64,
    /// Open watch streams by plural.
    watchers: Vec<(&'static str, tokio::sync::mpsc::UnboundedSender<Value>)>,
    /// The orders Deployment's pods, replaced by each completed rollout.
    pods: Vec<Value>,
    /// ConfigMap patches still to lose a race against another writer.
    conflicting_config_patches: u32,
    /// Argo CD Applications in the `argocd` namespace, by name.
    applications: Vec<Value>,
}

pub(crate) struct FakeKubernetes {
    pub url: String,
    inner: Mutex<Inner>,
}

/// A pod template for the orders container with this image tag and environment.
pub(crate) fn pod_template(tag: &str, env: &[(&str, &str)]) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|(name, value)| {
            if let Some(reference) = value.strip_prefix("secret:") {
                let (secret, key) = reference.split_once('/').expect("secret/key");
                json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
            } else if let Some(reference) = value.strip_prefix("configmap:") {
                let (map, key) = reference.split_once('/').expect("configmap/key");
                json!({"name": name, "valueFrom": {"configMapKeyRef": {"name": map, "key": key}}})
            } else {
                json!({"name": name, "value": value})
            }
        })
        .collect();
    json!({
        "metadata": {"labels": {"app": "orders"}, "annotations": {"prometheus.io/scrape": "true"}},
        "spec": {
            "containers": [{
                "name": "orders",
                "image": format!("ghcr.io/acme/orders:{tag}"),
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": env,
                "resources": {"limits": {"memory": "512Mi"}, "requests": {"cpu": "250m", "memory": "256Mi"}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler"
        }
    })
}

fn hash_of(template: &Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(template.to_string().as_bytes());
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    digest
        .iter()
        .take(10)
        .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
        .collect()
}

fn stamp(minutes_ago: i64) -> String {
    (Utc::now() - Duration::minutes(minutes_ago)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn replica_set(
    template: &Value,
    revision: i64,
    minutes_ago: i64,
    cause: &str,
    replicas: i64,
    owner_uid: &str,
) -> Value {
    let hash = hash_of(template);
    let mut template = template.clone();
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    json!({
        "kind": "ReplicaSet",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": format!("orders-{hash}"),
            "namespace": NAMESPACE,
            "uid": format!("rs-{hash}"),
            "resourceVersion": "900",
            "generation": 2,
            "creationTimestamp": stamp(minutes_ago),
            "labels": {"app": "orders", "pod-template-hash": hash},
            "annotations": {
                "deployment.kubernetes.io/desired-replicas": "3",
                "deployment.kubernetes.io/max-replicas": "4",
                "deployment.kubernetes.io/revision": revision.to_string(),
                "kubernetes.io/change-cause": cause,
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "orders",
                "uid": owner_uid, "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "orders", "pod-template-hash": hash}},
            "template": template
        },
        "status": {"replicas": replicas, "fullyLabeledReplicas": replicas, "readyReplicas": replicas,
            "availableReplicas": replicas, "observedGeneration": 2}
    })
}

/// Three running pods of `template`, their containers up since `minutes_ago`.
fn pods_of(template: &Value, minutes_ago: i64) -> Vec<Value> {
    let hash = hash_of(template);
    (0..3)
        .map(|i| {
            json!({
                "kind": "Pod", "apiVersion": "v1",
                "metadata": {
                    "name": format!("orders-{hash}-{i}x{minutes_ago}"),
                    "namespace": NAMESPACE,
                    "uid": format!("pod-{hash}-{i}-{minutes_ago}"),
                    "labels": {"app": "orders", "pod-template-hash": hash},
                    "creationTimestamp": stamp(minutes_ago)
                },
                "spec": template["spec"].clone(),
                "status": {
                    "phase": "Running",
                    "startTime": stamp(minutes_ago),
                    "containerStatuses": [{
                        "name": "orders", "ready": true, "restartCount": 0, "started": true,
                        "image": template["spec"]["containers"][0]["image"].clone(),
                        "imageID": "",
                        "state": {"running": {"startedAt": stamp(minutes_ago)}}
                    }]
                }
            })
        })
        .collect()
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).expect("code"),
        axum::Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason,
            "details": {"name": "orders", "group": "apps", "kind": "deployments"},
            "code": code
        })),
    )
        .into_response()
}

fn complete_status(generation: i64, replica_set: &str) -> Value {
    json!({
        "observedGeneration": generation,
        "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability.",
             "lastUpdateTime": stamp(0), "lastTransitionTime": stamp(60)},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "message": format!("ReplicaSet \"{replica_set}\" has successfully progressed."),
             "lastUpdateTime": stamp(0), "lastTransitionTime": stamp(60)}
        ]
    })
}

impl FakeKubernetes {
    pub(crate) async fn start() -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let fake = Arc::new(Self {
            url: format!("http://{addr}"),
            inner: Mutex::new(Inner {
                deployment: None,
                replica_sets: Vec::new(),
                seen: Vec::new(),
                token_valid: true,
                may_patch: true,
                conflicting_patches: 0,
                end: RolloutEnd::Available,
                steps: 0,
                resource_version: 1000,
                config_objects: Vec::new(),
                config_events: Vec::new(),
                oldest_watchable: 0,
                watchers: Vec::new(),
                pods: Vec::new(),
                conflicting_config_patches: 0,
                applications: Vec::new(),
            }),
        });
        let router = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("lock")
    }

    /// The orders Deployment with these revisions (oldest first); the last one runs.
    /// A ReplicaSet with the same labels owned by another Deployment is listed too.
    pub(crate) fn with_revisions(&self, revisions: &[Rev]) {
        let mut inner = self.lock();
        inner.replica_sets = revisions
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let replicas = if i + 1 == revisions.len() { 3 } else { 0 };
                replica_set(
                    &pod_template(r.tag, r.env),
                    r.revision,
                    r.minutes_ago,
                    r.cause,
                    replicas,
                    DEPLOYMENT_UID,
                )
            })
            .collect();
        inner.replica_sets.push(replica_set(
            &pod_template("canary", &[]),
            1,
            5,
            "canary",
            1,
            "another-deployment-uid",
        ));
        let last = revisions.last().expect("revisions");
        let running = pod_template(last.tag, last.env);
        let rs_name = format!("orders-{}", hash_of(&running));
        inner.pods = pods_of(&running, last.minutes_ago);
        inner.resource_version += 1;
        inner.deployment = Some(json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": "orders",
                "namespace": NAMESPACE,
                "uid": DEPLOYMENT_UID,
                "resourceVersion": inner.resource_version.to_string(),
                "generation": 7,
                "creationTimestamp": stamp(60 * 24 * 30),
                "labels": {"app": "orders"},
                "annotations": {
                    "deployment.kubernetes.io/revision": last.revision.to_string(),
                    "kubernetes.io/change-cause": last.cause,
                }
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "orders"}},
                "template": running,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600
            },
            "status": complete_status(7, &rs_name)
        }));
    }

    /// The newest revision's rollout got stuck, as the deployment controller reports it:
    /// its ReplicaSet scaled to 1 pod that never became available, the previous one still
    /// serving with 3, and `Progressing=False` with `ProgressDeadlineExceeded`.
    pub(crate) fn stick_latest_rollout(&self) {
        let mut inner = self.lock();
        let count = inner
            .replica_sets
            .iter()
            .filter(|rs| rs["metadata"]["ownerReferences"][0]["uid"] == DEPLOYMENT_UID)
            .count();
        let owned = inner
            .replica_sets
            .iter_mut()
            .filter(|rs| rs["metadata"]["ownerReferences"][0]["uid"] == DEPLOYMENT_UID);
        let mut newest_name = String::new();
        for (i, rs) in owned.enumerate() {
            let (replicas, available) = match count - i {
                1 => (1, 0),
                2 => (3, 3),
                _ => (0, 0),
            };
            if count - i == 1 {
                newest_name = rs["metadata"]["name"].as_str().unwrap_or("").to_owned();
            }
            rs["spec"]["replicas"] = json!(replicas);
            rs["status"]["replicas"] = json!(replicas);
            rs["status"]["readyReplicas"] = json!(available);
            rs["status"]["availableReplicas"] = json!(available);
        }
        inner.resource_version += 1;
        let version = inner.resource_version.to_string();
        let deployment = inner.deployment.as_mut().expect("deployment");
        let generation = deployment["metadata"]["generation"].clone();
        deployment["metadata"]["resourceVersion"] = json!(version);
        deployment["status"] = json!({
            "observedGeneration": generation,
            "replicas": 4, "updatedReplicas": 1, "readyReplicas": 3, "availableReplicas": 3,
            "unavailableReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability.",
                 "lastUpdateTime": stamp(15), "lastTransitionTime": stamp(60)},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": format!("ReplicaSet \"{newest_name}\" has timed out progressing."),
                 "lastUpdateTime": stamp(10), "lastTransitionTime": stamp(10)}
            ]
        });
    }

    /// Someone else (kubectl, another tool) sets the Deployment's pod template to this
    /// tag and environment; the controller observes it only after `unobserved_reads`
    /// more reads, then rolls it out as it ends rollouts.
    pub(crate) fn someone_applies(&self, tag: &str, env: &[(&str, &str)], unobserved_reads: u32) {
        let mut inner = self.lock();
        inner.resource_version += 1;
        let version = inner.resource_version.to_string();
        let deployment = inner.deployment.as_mut().expect("deployment");
        deployment["spec"]["template"] = pod_template(tag, env);
        let generation = deployment["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        deployment["metadata"]["generation"] = json!(generation);
        deployment["metadata"]["resourceVersion"] = json!(version);
        inner.steps = 4 + unobserved_reads;
    }

    /// The pods are replaced by new ones that started `minutes_ago`, as `kubectl rollout
    /// restart` (or a crash of every pod) would.
    /// Returns when they started, to the second as the API shows it.
    pub(crate) fn restart_pods(&self, minutes_ago: i64) -> chrono::DateTime<Utc> {
        let mut inner = self.lock();
        let template = inner.deployment.as_ref().expect("deployment")["spec"]["template"].clone();
        inner.pods = pods_of(&template, minutes_ago);
        let started = inner.pods[0]["status"]["startTime"]
            .as_str()
            .expect("startTime");
        chrono::DateTime::parse_from_rfc3339(started)
            .expect("a time")
            .with_timezone(&Utc)
    }

    /// The next `count` ConfigMap patches find that someone else wrote it first (409).
    pub(crate) fn lose_config_map_races(&self, count: u32) {
        self.lock().conflicting_config_patches = count;
    }

    /// Marks the ConfigMap as managed by Argo CD application `app` (annotation tracking),
    /// as Argo CD's sync writes it.
    pub(crate) fn track_by_argocd(&self, name: &str, app: &str) {
        let mut inner = self.lock();
        let object = inner
            .config_objects
            .iter_mut()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
            .expect("config map");
        object["metadata"]["annotations"] = json!({
            "argocd.argoproj.io/tracking-id": format!("{app}:/ConfigMap:{NAMESPACE}/{name}")
        });
    }

    /// An Argo CD Application in the `argocd` namespace, syncing automatically or not.
    pub(crate) fn add_application(&self, name: &str, automated: bool) {
        let sync_policy = if automated {
            json!({"automated": {"prune": true, "selfHeal": true}})
        } else {
            json!({})
        };
        self.lock().applications.push(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": "argocd"},
            "spec": {"project": "default", "syncPolicy": sync_policy,
                "destination": {"server": "https://kubernetes.default.svc", "namespace": NAMESPACE}}
        }));
    }

    /// The ConfigMap or Secret as the server holds it now.
    pub(crate) fn config_object(&self, kind: &str, name: &str) -> Value {
        self.lock()
            .config_objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .cloned()
            .expect("config object")
    }

    /// Creates or replaces a ConfigMap as `manager` (kubectl-edit, helm) wrote it
    /// `minutes_ago` (its managedFields time).
    pub(crate) fn put_config_map(
        &self,
        name: &str,
        data: &[(&str, &str)],
        manager: &str,
        minutes_ago: i64,
    ) {
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        self.put_config_object("ConfigMap", name, data, (manager, minutes_ago));
    }

    /// Creates or replaces a Secret; its values travel base64-encoded, as the API shows them.
    pub(crate) fn put_secret(
        &self,
        name: &str,
        data: &[(&str, &str)],
        manager: &str,
        minutes_ago: i64,
    ) {
        use base64::Engine;
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| {
                let encoded = base64::engine::general_purpose::STANDARD.encode(v);
                ((*k).to_owned(), json!(encoded))
            })
            .collect();
        self.put_config_object("Secret", name, data, (manager, minutes_ago));
    }

    fn put_config_object(
        &self,
        kind: &str,
        name: &str,
        data: serde_json::Map<String, Value>,
        written: (&str, i64),
    ) {
        let mut inner = self.lock();
        put_config_object(&mut inner, kind, name, data, written);
    }

    /// The server compacts its history and drops every open watch, and `change` happens
    /// while no one watches: a watcher resuming from its last version gets 410 Gone and
    /// must list again to see it.
    pub(crate) fn compact_history_then(&self, change: impl FnOnce(&Self)) {
        {
            let mut inner = self.lock();
            inner.watchers.clear();
            inner.oldest_watchable = inner.resource_version + 1;
        }
        change(self);
        // From now on the current version is watchable again.
        let mut inner = self.lock();
        inner.oldest_watchable = inner.resource_version;
    }

    /// Watch requests for `plural` answered so far.
    pub(crate) fn watches_of(&self, plural: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.path.ends_with(&format!("/{plural}")))
            .filter(|s| s.query.as_deref().is_some_and(|q| q.contains("watch=true")))
            .count()
    }

    pub(crate) fn remove_deployment(&self) {
        self.lock().deployment = None;
    }

    pub(crate) fn edit_deployment(&self, change: impl FnOnce(&mut Value)) {
        let mut inner = self.lock();
        inner.resource_version += 1;
        let version = inner.resource_version.to_string();
        let deployment = inner.deployment.as_mut().expect("deployment");
        change(deployment);
        deployment["metadata"]["resourceVersion"] = json!(version);
    }

    /// Drops the ReplicaSet of a revision, as revisionHistoryLimit would.
    pub(crate) fn forget_revision(&self, revision: i64) {
        let revision = revision.to_string();
        self.lock().replica_sets.retain(|rs| {
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] != revision.as_str()
        });
    }

    pub(crate) fn deployment(&self) -> Value {
        self.lock().deployment.clone().expect("deployment")
    }

    pub(crate) fn expire_token(&self) {
        self.lock().token_valid = false;
    }

    pub(crate) fn forbid_patch(&self) {
        self.lock().may_patch = false;
    }

    /// The next `count` patches find that someone else wrote the Deployment first.
    pub(crate) fn lose_patch_races(&self, count: u32) {
        self.lock().conflicting_patches = count;
    }

    pub(crate) fn end_rollouts(&self, end: RolloutEnd) {
        self.lock().end = end;
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    pub(crate) fn patches(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == Method::PATCH)
            .collect()
    }

    /// A kubeconfig pointing at this server with a token user, written into `dir`.
    pub(crate) fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
                 contexts:\n- name: fake-admin\n  context:\n    cluster: fake\n    user: admin\n\
                 - name: fake-breakwater\n  context:\n    cluster: fake\n    user: breakwater\n    namespace: {NAMESPACE}\n\
                 current-context: fake-admin\nusers:\n- name: admin\n  user:\n    token: wrong-token\n\
                 - name: breakwater\n  user:\n    token: {KUBE_TOKEN}\n",
                self.url
            ),
        )
        .expect("write kubeconfig");
        path
    }
}

fn plural_of(kind: &str) -> &'static str {
    if kind == "Secret" {
        "secrets"
    } else {
        "configmaps"
    }
}

fn put_config_object(
    inner: &mut Inner,
    kind: &str,
    name: &str,
    data: serde_json::Map<String, Value>,
    (manager, minutes_ago): (&str, i64),
) {
    inner.resource_version += 1;
    let version = inner.resource_version;
    let object = json!({
        "kind": kind, "apiVersion": "v1",
        "metadata": {
            "name": name, "namespace": NAMESPACE, "uid": format!("uid-{kind}-{name}"),
            "resourceVersion": version.to_string(), "creationTimestamp": stamp(60 * 24),
            "managedFields": [
                {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
                 "time": stamp(60 * 24), "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}},
                {"manager": manager, "operation": "Update", "apiVersion": "v1",
                 "time": stamp(minutes_ago), "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}
            ]
        },
        "data": data
    });
    let existing = inner
        .config_objects
        .iter()
        .position(|o| o["kind"] == kind && o["metadata"]["name"] == name);
    let event_type = match existing {
        Some(index) => {
            inner.config_objects[index] = object.clone();
            "MODIFIED"
        }
        None => {
            inner.config_objects.push(object.clone());
            "ADDED"
        }
    };
    let plural = plural_of(kind);
    let event = json!({"type": event_type, "object": object});
    inner.config_events.push((version, plural, event.clone()));
    inner
        .watchers
        .retain(|(p, sender)| *p != plural || sender.send(event.clone()).is_ok());
}

/// A watch answer: the given lines, then whatever live events arrive, as JSON lines.
fn watch_stream(
    lines: Vec<Value>,
    live: Option<tokio::sync::mpsc::UnboundedReceiver<Value>>,
) -> Response {
    let first = futures::stream::iter(lines);
    let rest = futures::stream::unfold(live, |live| async move {
        let mut receiver = live?;
        let next = receiver.recv().await?;
        Some((next, Some(receiver)))
    });
    let body = futures::StreamExt::map(futures::StreamExt::chain(first, rest), |line| {
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("{line}\n")))
    });
    (
        [("content-type", "application/json")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

fn config_objects(inner: &mut Inner, uri: &Uri, ns: &str, plural: &'static str) -> Response {
    if query_param(uri, "watch").as_deref() != Some("true") {
        let items: Vec<Value> = inner
            .config_objects
            .iter()
            .filter(|o| plural_of(o["kind"].as_str().unwrap_or("")) == plural)
            .filter(|o| o["metadata"]["namespace"] == ns)
            .cloned()
            .collect();
        let kind = if plural == "secrets" {
            "SecretList"
        } else {
            "ConfigMapList"
        };
        return axum::Json(json!({
            "kind": kind, "apiVersion": "v1",
            "metadata": {"resourceVersion": inner.resource_version.to_string()},
            "items": items
        }))
        .into_response();
    }
    let from: u64 = query_param(uri, "resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(inner.resource_version);
    if from < inner.oldest_watchable {
        let gone = json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {from} ({})", inner.oldest_watchable),
            "reason": "Expired", "code": 410
        }});
        return watch_stream(vec![gone], None);
    }
    let mut lines: Vec<Value> = inner
        .config_events
        .iter()
        .filter(|(version, p, _)| *version > from && *p == plural)
        .map(|(_, _, event)| event.clone())
        .collect();
    if query_param(uri, "allowWatchBookmarks").as_deref() == Some("true") {
        let kind = if plural == "secrets" {
            "Secret"
        } else {
            "ConfigMap"
        };
        lines.push(json!({"type": "BOOKMARK", "object": {
            "kind": kind, "apiVersion": "v1",
            "metadata": {"resourceVersion": inner.resource_version.to_string()}
        }}));
    }
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    inner.watchers.push((plural, sender));
    watch_stream(lines, Some(receiver))
}

fn find_config_map(inner: &Inner, ns: &str, name: &str) -> Option<usize> {
    inner.config_objects.iter().position(|o| {
        o["kind"] == "ConfigMap"
            && o["metadata"]["namespace"] == ns
            && o["metadata"]["name"] == name
    })
}

fn config_map_not_found(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("configmaps \"{name}\" not found"), "reason": "NotFound",
            "details": {"name": name, "kind": "configmaps"}, "code": 404
        })),
    )
        .into_response()
}

/// A JSON merge patch of a ConfigMap with the `resourceVersion` precondition: 409 when it
/// does not match; otherwise written by the field manager "breakwater" and streamed to
/// the watchers as MODIFIED.
fn patch_config_map(
    inner: &mut Inner,
    ns: &str,
    name: &str,
    content_type: Option<&str>,
    patch: &Value,
) -> Response {
    let Some(index) = find_config_map(inner, ns, name) else {
        return config_map_not_found(name);
    };
    if content_type != Some("application/merge-patch+json") {
        return status(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format",
        );
    }
    if inner.conflicting_config_patches > 0 {
        // Someone else wrote it first.
        inner.conflicting_config_patches -= 1;
        let data = inner.config_objects[index]["data"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        put_config_object(inner, "ConfigMap", name, data, ("kubectl-edit", 0));
    }
    let index = find_config_map(inner, ns, name).expect("still there");
    let object = inner.config_objects[index].clone();
    let wanted = &patch["metadata"]["resourceVersion"];
    if !wanted.is_null() && *wanted != object["metadata"]["resourceVersion"] {
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("Operation cannot be fulfilled on configmaps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
                "reason": "Conflict", "details": {"name": name, "kind": "configmaps"}, "code": 409
            })),
        )
            .into_response();
    }
    let mut data = object["data"].clone();
    json_merge(&mut data, &patch["data"]);
    let data = data.as_object().cloned().unwrap_or_default();
    put_config_object(inner, "ConfigMap", name, data, ("breakwater", 0));
    let index = find_config_map(inner, ns, name).expect("still there");
    axum::Json(inner.config_objects[index].clone()).into_response()
}

fn selector_matches(selector: &str, labels: &Value) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|pair| match pair.split_once('=') {
            Some((key, value)) => labels[key] == value,
            None => false,
        })
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn handle(
    State(fake): State<Arc<FakeKubernetes>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut inner = fake.lock();
    inner.seen.push(Seen {
        method: method.clone(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        content_type: content_type.clone(),
        body: body_json.clone(),
    });
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {KUBE_TOKEN}"));
    if !authorized || !inner.token_valid {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (Method::GET, ["api", "v1", "namespaces", ns, "configmaps"]) => {
            config_objects(&mut inner, &uri, ns, "configmaps")
        }
        (Method::GET, ["api", "v1", "namespaces", ns, "secrets"]) => {
            config_objects(&mut inner, &uri, ns, "secrets")
        }
        (Method::GET, ["api", "v1", "namespaces", ns, "configmaps", name]) => {
            match find_config_map(&inner, ns, name) {
                Some(index) => axum::Json(inner.config_objects[index].clone()).into_response(),
                None => config_map_not_found(name),
            }
        }
        (Method::PATCH, ["api", "v1", "namespaces", ns, "configmaps", name]) => {
            patch_config_map(&mut inner, ns, name, content_type.as_deref(), &body_json)
        }
        (
            Method::GET,
            [
                "apis",
                "argoproj.io",
                "v1alpha1",
                "namespaces",
                "argocd",
                "applications",
                name,
            ],
        ) => match inner
            .applications
            .iter()
            .find(|a| a["metadata"]["name"] == *name)
        {
            Some(application) => axum::Json(application.clone()).into_response(),
            None => status(
                404,
                "NotFound",
                &format!("applications.argoproj.io \"{name}\" not found"),
            ),
        },
        (Method::GET, ["api", "v1", "namespaces", ns, "pods"]) => {
            let selector = query_param(&uri, "labelSelector").unwrap_or_default();
            let items: Vec<Value> = inner
                .pods
                .iter()
                .filter(|pod| pod["metadata"]["namespace"] == *ns)
                .filter(|pod| selector_matches(&selector, &pod["metadata"]["labels"]))
                .cloned()
                .collect();
            axum::Json(json!({
                "kind": "PodList", "apiVersion": "v1",
                "metadata": {"resourceVersion": inner.resource_version.to_string()},
                "items": items
            }))
            .into_response()
        }
        (Method::GET, ["apis", "apps", "v1", "namespaces", ns, "replicasets"]) => {
            let selector = query_param(&uri, "labelSelector").unwrap_or_default();
            let items: Vec<Value> = inner
                .replica_sets
                .iter()
                .filter(|rs| rs["metadata"]["namespace"] == *ns)
                .filter(|rs| selector_matches(&selector, &rs["metadata"]["labels"]))
                .cloned()
                .collect();
            axum::Json(json!({
                "kind": "ReplicaSetList", "apiVersion": "apps/v1",
                "metadata": {"resourceVersion": inner.resource_version.to_string()},
                "items": items
            }))
            .into_response()
        }
        (Method::GET, ["apis", "apps", "v1", "namespaces", ns, "deployments", name]) => {
            if *ns != NAMESPACE || *name != "orders" || inner.deployment.is_none() {
                return status(
                    404,
                    "NotFound",
                    &format!("deployments.apps \"{name}\" not found"),
                );
            }
            controller_step(&mut inner);
            axum::Json(inner.deployment.clone().expect("deployment")).into_response()
        }
        (Method::PATCH, ["apis", "apps", "v1", "namespaces", ns, "deployments", name]) => {
            if *ns != NAMESPACE || *name != "orders" || inner.deployment.is_none() {
                return status(
                    404,
                    "NotFound",
                    &format!("deployments.apps \"{name}\" not found"),
                );
            }
            if !inner.may_patch {
                return status(
                    403,
                    "Forbidden",
                    &format!(
                        "deployments.apps \"{name}\" is forbidden: User \"system:serviceaccount:ops:breakwater\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"{ns}\""
                    ),
                );
            }
            if content_type.as_deref() != Some("application/merge-patch+json") {
                return status(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format",
                );
            }
            if inner.conflicting_patches > 0 {
                // Another writer (an autoscaler) got there first.
                inner.conflicting_patches -= 1;
                inner.resource_version += 1;
                let version = inner.resource_version.to_string();
                if let Some(deployment) = inner.deployment.as_mut() {
                    deployment["metadata"]["resourceVersion"] = json!(version);
                }
            }
            let current_version =
                inner.deployment.as_ref().expect("deployment")["metadata"]["resourceVersion"]
                    .clone();
            let wanted = &body_json["metadata"]["resourceVersion"];
            if !wanted.is_null() && *wanted != current_version {
                return status(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on deployments.apps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                    ),
                );
            }
            let before = inner.deployment.as_ref().expect("deployment")["spec"]["template"].clone();
            let mut patch = body_json.clone();
            if let Some(metadata) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("resourceVersion");
            }
            inner.resource_version += 1;
            let version = inner.resource_version.to_string();
            let deployment = inner.deployment.as_mut().expect("deployment");
            json_merge(deployment, &patch);
            deployment["metadata"]["resourceVersion"] = json!(version);
            let changed = deployment["spec"]["template"] != before;
            if changed {
                let generation = deployment["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                deployment["metadata"]["generation"] = json!(generation);
                inner.steps = 4;
            }
            axum::Json(inner.deployment.clone().expect("deployment")).into_response()
        }
        _ => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

/// What the deployment controller shows at the next read after a template change.
fn controller_step(inner: &mut Inner) {
    if inner.steps == 0 {
        return;
    }
    let step = inner.steps;
    if !(step == 1 && inner.end == RolloutEnd::Stuck) {
        inner.steps -= 1;
    }
    let end = inner.end;
    let deployment = inner.deployment.as_mut().expect("deployment");
    let generation = deployment["metadata"]["generation"].clone();
    let template = deployment["spec"]["template"].clone();
    let rs_name = format!("orders-{}", hash_of(&template));
    match step {
        // 4 and more: the spec change is not observed yet.
        4.. => {}
        3 => {
            // Observed: reactivate the ReplicaSet of that template under the next revision.
            let next = inner
                .replica_sets
                .iter()
                .filter_map(|rs| {
                    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                        .as_str()
                        .and_then(|r| r.parse::<i64>().ok())
                })
                .max()
                .unwrap_or(0)
                + 1;
            match inner
                .replica_sets
                .iter_mut()
                .find(|rs| rs["metadata"]["name"] == rs_name.as_str())
            {
                Some(rs) => {
                    let annotations = &mut rs["metadata"]["annotations"];
                    let old = annotations["deployment.kubernetes.io/revision"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned();
                    let history =
                        match annotations["deployment.kubernetes.io/revision-history"].as_str() {
                            Some(earlier) => format!("{earlier},{old}"),
                            None => old,
                        };
                    annotations["deployment.kubernetes.io/revision-history"] = json!(history);
                    annotations["deployment.kubernetes.io/revision"] = json!(next.to_string());
                }
                None => {
                    inner
                        .replica_sets
                        .push(replica_set(&template, next, 0, "", 1, DEPLOYMENT_UID))
                }
            }
            let deployment = inner.deployment.as_mut().expect("deployment");
            deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                json!(next.to_string());
            deployment["status"] = json!({
                "observedGeneration": generation,
                "replicas": 4, "updatedReplicas": 1, "readyReplicas": 3, "availableReplicas": 3,
                "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                    "message": format!("ReplicaSet \"{rs_name}\" is progressing.")}]
            });
        }
        2 => {
            deployment["status"]["replicas"] = json!(3);
            deployment["status"]["updatedReplicas"] = json!(3);
            deployment["status"]["availableReplicas"] = json!(2);
            deployment["status"]["readyReplicas"] = json!(2);
        }
        _ => match end {
            RolloutEnd::Available => {
                deployment["status"] = complete_status(generation.as_i64().unwrap_or(0), &rs_name);
                inner.pods = pods_of(&template, 0);
            }
            RolloutEnd::Stuck => {}
            RolloutEnd::DeadlineExceeded => {
                deployment["status"]["conditions"] = json!([{
                    "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                    "message": format!("ReplicaSet \"{rs_name}\" has timed out progressing.")
                }]);
            }
        },
    }
}
