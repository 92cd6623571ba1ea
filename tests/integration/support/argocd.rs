//! A fake Argo CD API server: the subset of `/api/v1/applications` breakwater uses, with
//! the JSON shapes of Argo CD's `Application` type and its grpc-gateway errors. A rollback
//! behaves like Argo CD's: refused while automated sync is on or another operation runs,
//! otherwise an operation that the "controller" advances one step per status read — sync
//! running, sync succeeded (a new history entry, the app `OutOfSync` with Git), then the
//! scripted health.

use std::collections::HashMap;
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

pub(crate) const ARGO_TOKEN: &str = "argocd-api-token-for-breakwater";
/// The Git revision the applications' branch points at now.
pub(crate) const HEAD: &str = "9f3c2ab4e1d07c5b6a8f9e0d1c2b3a4f5e6d7c8b";

/// What the application's health does after a rollback synced.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AfterRollback {
    Healthy,
    Degraded(String),
    /// Stays `Progressing` forever.
    Stuck,
    /// The sync operation itself fails with this message.
    SyncFails(String),
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub body: Value,
}

struct AppState {
    app: Value,
    /// Steps of a rollback still to show, one per read.
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Step {
    /// The rollback is still the application's pending `operation`: the controller has
    /// not picked it up, and nothing else about the application changed.
    Pending,
    Running,
    /// The sync to this history entry succeeded; it becomes history entry `history_id`.
    Synced {
        history_id: i64,
        entry: Value,
    },
    Health(Value),
}

struct Inner {
    apps: HashMap<String, AppState>,
    seen: Vec<Seen>,
    token_valid: bool,
    may_sync: bool,
    after: AfterRollback,
    /// Reads during which a rollback stays a pending operation before the controller
    /// starts it.
    pending_reads: usize,
}

pub(crate) struct FakeArgoCd {
    pub url: String,
    inner: Mutex<Inner>,
}

/// A history entry of the fake: id, image tag, minutes before now it was deployed.
pub(crate) struct Entry {
    pub id: i64,
    pub tag: &'static str,
    pub minutes_ago: i64,
    pub by: &'static str,
}

/// The Git revision the fake gives a history entry.
pub(crate) fn revision_of(id: i64) -> String {
    format!("{id:02}{}", &HEAD[2..])
}

fn source(name: &str, tag: &str) -> Value {
    json!({
        "repoURL": "https://git.example.com/acme/deploy.git",
        "path": format!("apps/{name}"),
        "targetRevision": "main",
        "kustomize": {"images": [format!("ghcr.io/acme/storefront:{tag}")]}
    })
}

/// The chart version every history entry of a Helm-repository application shares.
pub(crate) const CHART_VERSION: &str = "1.8.2";

/// A chart from a Helm repository with the image tag as a parameter override, as Argo CD
/// Image Updater writes it: only the override differs between history entries.
fn chart_source(tag: &str) -> Value {
    json!({
        "repoURL": "https://charts.example.com/acme",
        "chart": "storefront",
        "targetRevision": CHART_VERSION,
        "helm": {"parameters": [{"name": "image.tag", "value": tag, "forceString": true}]}
    })
}

/// What an application deploys from, in Argo CD's shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One Git source with a Kustomize image override; each entry its own commit.
    Git,
    /// One Helm-repository chart; every entry has `revision` [`CHART_VERSION`].
    HelmRepositoryChart,
    /// `sources`: the chart plus a Git repository of values; entries have `revisions`
    /// and no `revision`.
    MultiSource,
}

impl Shape {
    /// The spec's source(s) for this tag, as `(key, value)`.
    fn sources(self, name: &str, tag: &str) -> (&'static str, Value) {
        match self {
            Self::Git => ("source", source(name, tag)),
            Self::HelmRepositoryChart => ("source", chart_source(tag)),
            Self::MultiSource => (
                "sources",
                json!([chart_source(tag), {
                    "repoURL": "https://git.example.com/acme/values.git",
                    "targetRevision": "main",
                    "ref": "values"
                }]),
            ),
        }
    }

    /// The revision(s) of a history entry, as `(key, value)`.
    fn revisions(self, id: i64) -> (&'static str, Value) {
        match self {
            Self::Git => ("revision", json!(revision_of(id))),
            Self::HelmRepositoryChart => ("revision", json!(CHART_VERSION)),
            Self::MultiSource => ("revisions", json!([CHART_VERSION, revision_of(id)])),
        }
    }
}

/// An `Application` as `GET /api/v1/applications/{name}` returns it.
pub(crate) fn application(name: &str, history: &[Entry], auto_sync: bool) -> Value {
    shaped_application(name, history, auto_sync, Shape::Git)
}

/// An `Application` of the given shape.
pub(crate) fn shaped_application(
    name: &str,
    history: &[Entry],
    auto_sync: bool,
    shape: Shape,
) -> Value {
    let now = Utc::now();
    let entries: Vec<Value> = history
        .iter()
        .map(|e| {
            let deployed = now - Duration::minutes(e.minutes_ago);
            let (source_key, sources) = shape.sources(name, e.tag);
            let (revision_key, revisions) = shape.revisions(e.id);
            json!({
                "id": e.id,
                revision_key: revisions,
                "deployedAt": deployed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "deployStartedAt": (deployed - Duration::seconds(40)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                source_key: sources,
                "initiatedBy": {"username": e.by},
            })
        })
        .collect();
    let last = history.last().expect("history");
    let (source_key, last_sources) = shape.sources(name, last.tag);
    let (revision_key, last_revisions) = shape.revisions(last.id);
    let mut sync_policy = json!({"syncOptions": ["CreateNamespace=true"]});
    if auto_sync {
        sync_policy["automated"] = json!({"prune": true, "selfHeal": true});
    }
    let destination =
        json!({"server": "https://kubernetes.default.svc", "namespace": "storefront"});
    json!({
        "metadata": {
            "name": name,
            "namespace": "argocd",
            "uid": "4a0f7b9e-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
            "resourceVersion": "48213",
            "generation": 12,
            "creationTimestamp": "2026-01-10T09:00:00Z",
            "labels": {}
        },
        "spec": {
            "project": "default",
            source_key: last_sources.clone(),
            "destination": destination.clone(),
            "syncPolicy": sync_policy
        },
        "status": {
            "sync": {
                "status": "Synced",
                revision_key: last_revisions.clone(),
                "comparedTo": {source_key: last_sources.clone(), "destination": destination}
            },
            "health": {"status": "Healthy"},
            "history": entries,
            "operationState": {
                "operation": {"sync": {revision_key: last_revisions.clone()}, "initiatedBy": {"username": last.by}},
                "phase": "Succeeded",
                "message": "successfully synced (all tasks run)",
                "syncResult": {revision_key: last_revisions, source_key: last_sources},
                "startedAt": (now - Duration::minutes(last.minutes_ago) - Duration::seconds(40)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "finishedAt": (now - Duration::minutes(last.minutes_ago)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            },
            "reconciledAt": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "sourceType": if shape == Shape::Git { "Kustomize" } else { "Helm" },
            "summary": {"images": [format!("ghcr.io/acme/storefront:{}", last.tag)]}
        }
    })
}

fn grpc_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": message, "code": code, "message": message})),
    )
        .into_response()
}

impl FakeArgoCd {
    pub(crate) async fn start() -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let fake = Arc::new(Self {
            url: format!("http://{addr}"),
            inner: Mutex::new(Inner {
                apps: HashMap::new(),
                seen: Vec::new(),
                token_valid: true,
                may_sync: true,
                after: AfterRollback::Healthy,
                pending_reads: 0,
            }),
        });
        let router = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("lock")
    }

    pub(crate) fn add(&self, app: Value) {
        let name = app["metadata"]["name"].as_str().expect("name").to_owned();
        self.lock().apps.insert(
            name,
            AppState {
                app,
                steps: Vec::new(),
            },
        );
    }

    pub(crate) fn remove(&self, name: &str) {
        self.lock().apps.remove(name);
    }

    pub(crate) fn edit(&self, name: &str, change: impl FnOnce(&mut Value)) {
        change(&mut self.lock().apps.get_mut(name).expect("app").app);
    }

    pub(crate) fn app(&self, name: &str) -> Value {
        self.lock().apps.get(name).expect("app").app.clone()
    }

    /// From now on the token is rejected as expired.
    pub(crate) fn expire_token(&self) {
        self.lock().token_valid = false;
    }

    /// From now on the token's account lacks the `sync` action.
    pub(crate) fn forbid_sync(&self) {
        self.lock().may_sync = false;
    }

    pub(crate) fn after_rollback(&self, after: AfterRollback) {
        self.lock().after = after;
    }

    /// A rollback stays Argo CD's pending `operation` for this many reads before the
    /// controller starts its sync, as when the controller is busy.
    pub(crate) fn start_syncs_after_reads(&self, reads: usize) {
        self.lock().pending_reads = reads;
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    pub(crate) fn writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method != Method::GET)
            .collect()
    }
}

async fn handle(
    State(fake): State<Arc<FakeArgoCd>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut inner = fake.lock();
    inner.seen.push(Seen {
        method: method.clone(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        body: body_json.clone(),
    });
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {ARGO_TOKEN}"));
    if !authorized || !inner.token_valid {
        return grpc_error(
            StatusCode::UNAUTHORIZED,
            16,
            "invalid session: token has invalid claims: token is expired",
        );
    }
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let (name, action) = match segments.as_slice() {
        ["api", "v1", "applications", name] => (*name, None),
        ["api", "v1", "applications", name, action] => (*name, Some(*action)),
        _ => return grpc_error(StatusCode::NOT_FOUND, 5, "Not Found"),
    };
    let after = inner.after.clone();
    let may_sync = inner.may_sync;
    let pending_reads = inner.pending_reads;
    let Some(state) = inner.apps.get_mut(name) else {
        return grpc_error(
            StatusCode::NOT_FOUND,
            5,
            &format!("applications.argoproj.io \"{name}\" not found"),
        );
    };
    match (method, action) {
        (Method::GET, None) => {
            advance(state);
            axum::Json(state.app.clone()).into_response()
        }
        (Method::PATCH, None) => {
            if body_json["patchType"] != "merge" {
                return grpc_error(
                    StatusCode::BAD_REQUEST,
                    3,
                    "Patch type 'json' is not supported",
                );
            }
            let patch: Value = serde_json::from_str(body_json["patch"].as_str().unwrap_or("{}"))
                .unwrap_or(Value::Null);
            json_merge(&mut state.app, &patch);
            axum::Json(state.app.clone()).into_response()
        }
        (Method::POST, Some("rollback")) => {
            if !may_sync {
                return grpc_error(
                    StatusCode::FORBIDDEN,
                    7,
                    &format!(
                        "permission denied: applications, sync, default/{name}, sub: breakwater, iat: 2026-11-29T02:00:00Z"
                    ),
                );
            }
            if !state.app["spec"]["syncPolicy"]["automated"].is_null() {
                return grpc_error(
                    StatusCode::BAD_REQUEST,
                    9,
                    "rollback cannot be initiated when auto-sync is enabled",
                );
            }
            if !state.app["operation"].is_null() || !state.steps.is_empty() {
                return grpc_error(
                    StatusCode::BAD_REQUEST,
                    9,
                    "another operation is already in progress",
                );
            }
            let id = body_json["id"].as_i64().unwrap_or(-1);
            let Some(entry) = state.app["status"]["history"]
                .as_array()
                .and_then(|h| h.iter().find(|e| e["id"] == id))
                .cloned()
            else {
                return grpc_error(
                    StatusCode::BAD_REQUEST,
                    3,
                    &format!("application {name} does not have deployment with id {id}"),
                );
            };
            // Argo CD's RollbackApplication: a sync to the entry's revision and source, or
            // for a multi-source application its revisions and sources.
            let mut sync = json!({"syncStrategy": {"apply": {}}});
            for key in ["revision", "revisions", "source", "sources"] {
                if !entry[key].is_null() {
                    sync[key] = entry[key].clone();
                }
            }
            state.app["operation"] = json!({
                "sync": sync,
                "initiatedBy": {"username": "breakwater"},
                "retry": {}
            });
            let next_id = state.app["status"]["history"]
                .as_array()
                .map(|h| h.iter().filter_map(|e| e["id"].as_i64()).max().unwrap_or(0) + 1)
                .unwrap_or(1);
            state.steps = vec![Step::Pending; pending_reads];
            state.steps.push(Step::Running);
            state.steps.push(Step::Synced {
                history_id: next_id,
                entry,
            });
            match after {
                AfterRollback::Healthy => {
                    state.steps.push(Step::Health(json!({"status": "Progressing",
                        "message": "Waiting for rollout to finish: 1 of 3 updated replicas are available..."})));
                    state.steps.push(Step::Health(json!({"status": "Healthy"})));
                }
                AfterRollback::Degraded(message) => {
                    state.steps.push(Step::Health(json!({"status": "Progressing",
                        "message": "Waiting for rollout to finish: 0 of 3 updated replicas are available..."})));
                    state.steps.push(Step::Health(
                        json!({"status": "Degraded", "message": message}),
                    ));
                }
                AfterRollback::Stuck => {
                    state.steps.push(Step::Health(json!({"status": "Progressing",
                        "message": "Waiting for rollout to finish: 0 of 3 updated replicas are available..."})));
                }
                AfterRollback::SyncFails(message) => {
                    state.steps.truncate(1);
                    state
                        .steps
                        .push(Step::Health(json!({"phase": "Failed", "message": message})));
                }
            }
            axum::Json(state.app.clone()).into_response()
        }
        _ => grpc_error(StatusCode::NOT_IMPLEMENTED, 12, "Method Not Allowed"),
    }
}

/// The controller's next step, shown at the next read. The last health step stays.
fn advance(state: &mut AppState) {
    if state.steps.is_empty() {
        return;
    }
    let step = if state.steps.len() == 1 && matches!(state.steps[0], Step::Health(_)) {
        state.steps[0].clone()
    } else {
        state.steps.remove(0)
    };
    let app = &mut state.app;
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    app["status"]["reconciledAt"] = json!(now);
    match step {
        Step::Running => {
            let operation = app["operation"].take();
            app["status"]["operationState"] = json!({
                "operation": operation,
                "phase": "Running",
                "message": "one or more tasks are running",
                "startedAt": now,
            });
            app["status"]["health"] = json!({"status": "Progressing"});
        }
        Step::Pending => {}
        Step::Synced { history_id, entry } => {
            let state_op = &mut app["status"]["operationState"];
            state_op["phase"] = json!("Succeeded");
            state_op["message"] = json!("successfully synced (all tasks run)");
            let mut result = json!({});
            for key in ["revision", "revisions", "source", "sources"] {
                if !entry[key].is_null() {
                    result[key] = entry[key].clone();
                }
            }
            state_op["syncResult"] = result;
            state_op["finishedAt"] = json!(now);
            let mut deployed = entry.clone();
            deployed["id"] = json!(history_id);
            deployed["deployedAt"] = json!(now);
            deployed["deployStartedAt"] = json!(now);
            deployed["initiatedBy"] = json!({"username": "breakwater"});
            if let Some(history) = app["status"]["history"].as_array_mut() {
                history.push(deployed);
            }
            // The spec still says the newer state: for a Git source, the branch's head.
            app["status"]["sync"]["status"] = json!("OutOfSync");
            let git = app["spec"]["source"].is_object() && app["spec"]["source"]["chart"].is_null();
            if git {
                app["status"]["sync"]["revision"] = json!(HEAD);
            }
        }
        Step::Health(health) if health.get("phase").is_some() => {
            let state_op = &mut app["status"]["operationState"];
            state_op["phase"] = health["phase"].clone();
            state_op["message"] = health["message"].clone();
            state_op["finishedAt"] = json!(now);
            app["status"]["health"] = json!({"status": "Degraded"});
        }
        Step::Health(health) => {
            app["status"]["health"] = health;
        }
    }
}
