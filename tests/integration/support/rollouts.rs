//! A fake Kubernetes API server with Argo Rollouts installed: `argoproj.io/v1alpha1`
//! Rollouts (get, JSON merge patch with the `resourceVersion` precondition, 409 when it
//! does not match) and the apps/v1 ReplicaSets they own, numbered by
//! `rollout.argoproj.io/revision`. Rollouts are shaped as the Argo Rollouts controller
//! reports them (canary with steps and weights, blue-green, paused, aborted, degraded).
//! A patch that changes the template is picked up by a fake controller one step per read:
//! the new spec observed with the matching ReplicaSet reactivated under the next revision,
//! then `Healthy` with that ReplicaSet stable — or `Degraded`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use serde_json::{Value, json};

use super::json_merge;
use super::kubernetes::{KUBE_TOKEN, NAMESPACE, Rev, Seen, pod_template};

const ROLLOUT_UID: &str = "7c1e9d2a-3b4f-4e5a-8c6d-9e0f1a2b3c4d";
const ROLLOUT_PATH: &str = "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/orders";

/// Where the newest revision's rollout stands when the test starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A canary at step index 2 of 6 with 20 % of traffic, progressing.
    Canary,
    /// A canary waiting at its pause step (index 1 of 6) after `setWeight: 20`.
    Paused,
    /// A canary aborted at step index 2: traffic back on the stable version.
    Aborted,
    /// A canary whose new pods never became ready.
    Degraded,
    /// Blue-green with the newest revision as the preview.
    BlueGreen,
    /// Fully promoted: the newest revision is stable.
    Healthy,
}

/// How the fake controller ends a rollout after a template change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Healthy,
    Degraded,
}

struct Inner {
    rollout: Value,
    replica_sets: Vec<Value>,
    seen: Vec<Seen>,
    /// Patches still to lose a race against another writer.
    conflicting_patches: u32,
    may_patch: bool,
    end: End,
    /// Controller steps still to show, one per Rollout read.
    steps: u32,
    /// Controller steps still to show after `status.abort` was set, one per Rollout read.
    abort_steps: u32,
    /// The Rollout CRD serves the status subresource (it does since Argo Rollouts 1.0).
    status_subresource: bool,
    resource_version: u64,
}

pub(crate) struct FakeRollouts {
    pub url: String,
    inner: Mutex<Inner>,
}

fn hash_of(template: &Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(template.to_string().as_bytes());
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

fn stamp(minutes_ago: i64) -> String {
    (Utc::now() - Duration::minutes(minutes_ago)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn replica_set(template: &Value, revision: i64, minutes_ago: i64, replicas: i64) -> Value {
    let hash = hash_of(template);
    let mut template = template.clone();
    template["metadata"]["labels"]["rollouts-pod-template-hash"] = json!(hash);
    json!({
        "kind": "ReplicaSet",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": format!("orders-{hash}"),
            "namespace": NAMESPACE,
            "uid": format!("rs-{hash}"),
            "resourceVersion": "900",
            "creationTimestamp": stamp(minutes_ago),
            "labels": {"app": "orders", "rollouts-pod-template-hash": hash},
            "annotations": {
                "rollout.argoproj.io/desired-replicas": "3",
                "rollout.argoproj.io/revision": revision.to_string(),
            },
            "ownerReferences": [{
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "orders",
                "uid": ROLLOUT_UID, "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "orders", "rollouts-pod-template-hash": hash}},
            "template": template
        },
        "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
    })
}

fn canary_steps() -> Value {
    json!([
        {"setWeight": 20}, {"pause": {}}, {"setWeight": 40},
        {"pause": {"duration": "10m"}}, {"setWeight": 80}, {"pause": {"duration": "10m"}}
    ])
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).expect("code"),
        axum::Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason,
            "details": {"name": "orders", "group": "argoproj.io", "kind": "rollouts"},
            "code": code
        })),
    )
        .into_response()
}

impl FakeRollouts {
    /// The orders Rollout with these revisions (oldest first), the last one in `shape`.
    pub(crate) async fn start(revisions: &[Rev], shape: Shape) -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        // Pods as the controller leaves them: the stable ReplicaSet full, the canary with
        // its share (none once aborted), older ones scaled to zero.
        let newest_index = revisions.len() - 1;
        let replicas_of = |index: usize| match (shape, index) {
            (Shape::Healthy, i) => i64::from(i == newest_index) * 3,
            (_, i) if i + 1 == newest_index => 3,
            (Shape::Aborted, _) => 0,
            (Shape::BlueGreen, i) => i64::from(i == newest_index) * 3,
            (_, i) => i64::from(i == newest_index),
        };
        let replica_sets: Vec<Value> = revisions
            .iter()
            .enumerate()
            .map(|(i, r)| {
                replica_set(
                    &pod_template(r.tag, r.env),
                    r.revision,
                    r.minutes_ago,
                    replicas_of(i),
                )
            })
            .collect();
        let last = revisions.last().expect("revisions");
        let newest = pod_template(last.tag, last.env);
        let newest_hash = hash_of(&newest);
        let stable_hash = match shape {
            Shape::Healthy => newest_hash.clone(),
            _ => {
                let before = &revisions[revisions.len() - 2];
                hash_of(&pod_template(before.tag, before.env))
            }
        };
        let strategy = if shape == Shape::BlueGreen {
            json!({"blueGreen": {"activeService": "orders", "previewService": "orders-preview", "autoPromotionEnabled": false}})
        } else {
            json!({"canary": {"steps": canary_steps()}})
        };
        let mut status = json!({
            "observedGeneration": "5",
            "currentPodHash": newest_hash,
            "stableRS": stable_hash,
            "replicas": 4, "updatedReplicas": 1, "readyReplicas": 4, "availableReplicas": 4,
        });
        let phase = match shape {
            Shape::Canary => {
                status["currentStepIndex"] = json!(2);
                "Progressing"
            }
            Shape::Paused => {
                status["currentStepIndex"] = json!(1);
                status["pauseConditions"] =
                    json!([{"reason": "CanaryPauseStep", "startTime": stamp(3)}]);
                status["message"] = json!("CanaryPauseStep");
                "Paused"
            }
            Shape::Aborted => {
                status["currentStepIndex"] = json!(0);
                status["abort"] = json!(true);
                status["abortedAt"] = json!(stamp(2));
                status["message"] = json!(
                    "RolloutAborted: Rollout aborted update to revision 3: Metric \"error-rate\" assessed Failed due to failed (3) > failureLimit (2)"
                );
                status["canary"] = json!({"currentStepAnalysisRunStatus": {
                    "name": "orders-e57c-3-2", "status": "Failed",
                    "message": "Metric \"error-rate\" assessed Failed due to failed (3) > failureLimit (2)"
                }});
                "Degraded"
            }
            Shape::Degraded => {
                status["currentStepIndex"] = json!(0);
                status["message"] = json!(format!(
                    "ProgressDeadlineExceeded: ReplicaSet \"orders-{newest_hash}\" has timed out progressing."
                ));
                "Degraded"
            }
            Shape::BlueGreen => {
                status["blueGreen"] =
                    json!({"activeSelector": stable_hash, "previewSelector": newest_hash});
                status["message"] = json!("BlueGreenPause");
                "Paused"
            }
            Shape::Healthy => {
                status["currentStepIndex"] = json!(6);
                status["updatedReplicas"] = json!(3);
                "Healthy"
            }
        };
        status["phase"] = json!(phase);
        let rollout = json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {
                "name": "orders",
                "namespace": NAMESPACE,
                "uid": ROLLOUT_UID,
                "resourceVersion": "1000",
                "generation": 5,
                "creationTimestamp": stamp(60 * 24 * 30),
                "labels": {"app": "orders"},
                "annotations": {"rollout.argoproj.io/revision": last.revision.to_string()}
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "orders"}},
                "template": newest,
                "strategy": strategy,
                "revisionHistoryLimit": 10
            },
            "status": status
        });
        let fake = Arc::new(Self {
            url: format!("http://{addr}"),
            inner: Mutex::new(Inner {
                rollout,
                replica_sets,
                seen: Vec::new(),
                conflicting_patches: 0,
                may_patch: true,
                end: End::Healthy,
                steps: 0,
                abort_steps: 0,
                status_subresource: true,
                resource_version: 1000,
            }),
        });
        let router = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("lock")
    }

    pub(crate) fn rollout(&self) -> Value {
        self.lock().rollout.clone()
    }

    pub(crate) fn edit_rollout(&self, change: impl FnOnce(&mut Value)) {
        let mut inner = self.lock();
        inner.resource_version += 1;
        let version = inner.resource_version.to_string();
        change(&mut inner.rollout);
        inner.rollout["metadata"]["resourceVersion"] = json!(version);
    }

    /// The next `count` patches find that someone else wrote the Rollout first.
    pub(crate) fn lose_patch_races(&self, count: u32) {
        self.lock().conflicting_patches = count;
    }

    /// The service account loses `patch` on rollouts (RBAC without the Rollouts rules).
    pub(crate) fn forbid_patch(&self) {
        self.lock().may_patch = false;
    }

    /// The CRD without the status subresource: `/status` is not found.
    pub(crate) fn without_status_subresource(&self) {
        self.lock().status_subresource = false;
    }

    pub(crate) fn end_rollouts(&self, end: End) {
        self.lock().end = end;
    }

    pub(crate) fn patches(&self) -> Vec<Seen> {
        self.lock()
            .seen
            .iter()
            .filter(|s| s.method == Method::PATCH)
            .cloned()
            .collect()
    }

    /// The pod-template hash of the ReplicaSet that has this image tag.
    pub(crate) fn hash_of_tag(&self, tag: &str) -> String {
        let inner = self.lock();
        inner
            .replica_sets
            .iter()
            .find(|rs| {
                rs["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .is_some_and(|image| image.ends_with(&format!(":{tag}")))
            })
            .and_then(|rs| rs["metadata"]["labels"]["rollouts-pod-template-hash"].as_str())
            .expect("a ReplicaSet with that tag")
            .to_owned()
    }
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

async fn handle(
    State(fake): State<Arc<FakeRollouts>>,
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
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {KUBE_TOKEN}"))
    {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let path = uri.path().to_owned();
    let path = path.as_str();
    if method == Method::GET && path == "/apis/apps/v1/namespaces/shop/replicasets" {
        let selector = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "labelSelector")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let items: Vec<Value> = inner
            .replica_sets
            .iter()
            .filter(|rs| selector_matches(&selector, &rs["metadata"]["labels"]))
            .cloned()
            .collect();
        return axum::Json(json!({
            "kind": "ReplicaSetList", "apiVersion": "apps/v1",
            "metadata": {"resourceVersion": inner.resource_version.to_string()},
            "items": items
        }))
        .into_response();
    }
    if method == Method::PATCH
        && path.strip_prefix(ROLLOUT_PATH) == Some("/status")
        && inner.status_subresource
    {
        return patch_status(&mut inner, content_type.as_deref(), &body_json);
    }
    if path != ROLLOUT_PATH {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    match method {
        Method::GET => {
            controller_step(&mut inner);
            axum::Json(inner.rollout.clone()).into_response()
        }
        Method::PATCH => {
            if !inner.may_patch {
                return status(
                    403,
                    "Forbidden",
                    "rollouts.argoproj.io \"orders\" is forbidden: User \"system:serviceaccount:breakwater:breakwater\" cannot patch resource \"rollouts\" in API group \"argoproj.io\" in the namespace \"shop\"",
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
                // The Rollouts controller wrote the status of a canary step first.
                inner.conflicting_patches -= 1;
                inner.resource_version += 1;
                let version = inner.resource_version.to_string();
                inner.rollout["metadata"]["resourceVersion"] = json!(version);
            }
            let wanted = &body_json["metadata"]["resourceVersion"];
            if !wanted.is_null() && *wanted != inner.rollout["metadata"]["resourceVersion"] {
                return status(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled on rollouts.argoproj.io \"orders\": the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            let before = inner.rollout["spec"]["template"].clone();
            let aborted_before = inner.rollout["status"]["abort"] == true;
            let mut patch = body_json.clone();
            if let Some(metadata) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("resourceVersion");
            }
            inner.resource_version += 1;
            let version = inner.resource_version.to_string();
            json_merge(&mut inner.rollout, &patch);
            inner.rollout["metadata"]["resourceVersion"] = json!(version);
            if inner.rollout["spec"]["template"] != before {
                let generation = inner.rollout["metadata"]["generation"]
                    .as_i64()
                    .unwrap_or(1)
                    + 1;
                inner.rollout["metadata"]["generation"] = json!(generation);
                inner.steps = 2;
                inner.abort_steps = 0;
            } else if !aborted_before && inner.rollout["status"]["abort"] == true {
                // Without the subresource the status is written with the object.
                inner.abort_steps = 2;
            }
            axum::Json(inner.rollout.clone()).into_response()
        }
        _ => status(405, "MethodNotAllowed", "method not allowed"),
    }
}

/// A merge patch on `rollouts/status`, as the API server takes it: only `status` is
/// written (spec and metadata changes are ignored), under the same preconditions.
fn patch_status(inner: &mut Inner, content_type: Option<&str>, body: &Value) -> Response {
    if !inner.may_patch {
        return status(
            403,
            "Forbidden",
            "rollouts.argoproj.io \"orders\" is forbidden: User \"system:serviceaccount:breakwater:breakwater\" cannot patch resource \"rollouts/status\" in API group \"argoproj.io\" in the namespace \"shop\"",
        );
    }
    if content_type != Some("application/merge-patch+json") {
        return status(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format",
        );
    }
    if inner.conflicting_patches > 0 {
        // The controller wrote the status of the next canary step first.
        inner.conflicting_patches -= 1;
        inner.resource_version += 1;
        let version = inner.resource_version.to_string();
        inner.rollout["metadata"]["resourceVersion"] = json!(version);
    }
    let wanted = &body["metadata"]["resourceVersion"];
    if !wanted.is_null() && *wanted != inner.rollout["metadata"]["resourceVersion"] {
        return status(
            409,
            "Conflict",
            "Operation cannot be fulfilled on rollouts.argoproj.io \"orders\": the object has been modified; please apply your changes to the latest version and try again",
        );
    }
    let aborted_before = inner.rollout["status"]["abort"] == true;
    if let Some(status) = body.get("status") {
        json_merge(&mut inner.rollout["status"], status);
    }
    inner.resource_version += 1;
    let version = inner.resource_version.to_string();
    inner.rollout["metadata"]["resourceVersion"] = json!(version);
    if !aborted_before && inner.rollout["status"]["abort"] == true {
        inner.abort_steps = 2;
    }
    axum::Json(inner.rollout.clone()).into_response()
}

/// What the Rollouts controller shows at the next read after an abort: the Rollout
/// `Degraded` as aborted with the canary still draining, then the canary scaled to zero
/// and the stable ReplicaSet serving everything.
fn abort_step(inner: &mut Inner) {
    let step = inner.abort_steps;
    inner.abort_steps -= 1;
    let revision = inner.rollout["metadata"]["annotations"]["rollout.argoproj.io/revision"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let status = &mut inner.rollout["status"];
    if step == 2 {
        status["phase"] = json!("Degraded");
        status["message"] = json!(format!(
            "RolloutAborted: Rollout aborted update to revision {revision}"
        ));
        status["abortedAt"] = json!(stamp(0));
        status["currentStepIndex"] = json!(0);
        if let Some(status) = status.as_object_mut() {
            status.remove("pauseConditions");
        }
        if status["canary"]["weights"].is_object() {
            status["canary"]["weights"]["canary"]["weight"] = json!(0);
            status["canary"]["weights"]["stable"]["weight"] = json!(100);
        }
        return;
    }
    let canary = status["currentPodHash"].clone();
    for rs in &mut inner.replica_sets {
        if rs["metadata"]["labels"]["rollouts-pod-template-hash"] == canary {
            rs["spec"]["replicas"] = json!(0);
            rs["status"] = json!({"replicas": 0, "readyReplicas": 0, "availableReplicas": 0});
        }
    }
}

/// What the Rollouts controller shows at the next read after a template change.
fn controller_step(inner: &mut Inner) {
    if inner.abort_steps > 0 {
        abort_step(inner);
        return;
    }
    if inner.steps == 0 {
        return;
    }
    let step = inner.steps;
    inner.steps -= 1;
    let generation = inner.rollout["metadata"]["generation"].to_string();
    let template = inner.rollout["spec"]["template"].clone();
    let hash = hash_of(&template);
    if step == 2 {
        let next = inner
            .replica_sets
            .iter()
            .filter_map(|rs| {
                rs["metadata"]["annotations"]["rollout.argoproj.io/revision"]
                    .as_str()
                    .and_then(|r| r.parse::<i64>().ok())
            })
            .max()
            .unwrap_or(0)
            + 1;
        match inner
            .replica_sets
            .iter_mut()
            .find(|rs| rs["metadata"]["labels"]["rollouts-pod-template-hash"] == hash.as_str())
        {
            Some(rs) => {
                rs["metadata"]["annotations"]["rollout.argoproj.io/revision"] =
                    json!(next.to_string())
            }
            None => inner.replica_sets.push(replica_set(&template, next, 0, 1)),
        }
        inner.rollout["metadata"]["annotations"]["rollout.argoproj.io/revision"] =
            json!(next.to_string());
        inner.rollout["status"] = json!({
            "observedGeneration": generation, "phase": "Progressing",
            "currentPodHash": hash, "stableRS": inner.rollout["status"]["stableRS"].clone(),
            "currentStepIndex": 0, "message": "more replicas need to be updated"
        });
        return;
    }
    match inner.end {
        End::Healthy => {
            inner.rollout["status"]["phase"] = json!("Healthy");
            inner.rollout["status"]["stableRS"] = json!(hash);
            inner.rollout["status"]["currentStepIndex"] = json!(6);
            inner.rollout["status"]["message"] = Value::Null;
        }
        End::Degraded => {
            inner.rollout["status"]["phase"] = json!("Degraded");
            inner.rollout["status"]["message"] = json!(format!(
                "ProgressDeadlineExceeded: ReplicaSet \"orders-{hash}\" has timed out progressing."
            ));
        }
    }
}
