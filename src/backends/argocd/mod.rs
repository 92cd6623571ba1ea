//! The Argo CD backend: history and the current revision from an Application's status,
//! rollback through Argo CD's own rollback endpoint, followed until the application is
//! synced to the target revision and healthy.
//!
//! # The API used
//!
//! - `GET /api/v1/applications/{name}[?appNamespace=…]` — the Application: its
//!   `spec.syncPolicy.automated`, `status.history` (`id`, `revision`, `deployedAt`,
//!   `deployStartedAt`, `source`/`sources`, `initiatedBy`), `status.sync`,
//!   `status.health` and `status.operationState`.
//! - `POST /api/v1/applications/{name}/rollback` with `{"name", "id", "dryRun": false,
//!   "prune": false, "appNamespace"}` — Argo CD turns it into a sync to that history
//!   entry's revision and source. It refuses while automated sync is on, because the
//!   next automated sync would undo it.
//! - `PATCH /api/v1/applications/{name}` with `{"name", "patch", "patchType": "merge",
//!   "appNamespace"}` — only to remove `spec.syncPolicy.automated`, only when the person
//!   confirmed "Disable auto-sync and roll back" and `allow_disable_autosync = true`.
//!
//! Every request carries `Authorization: Bearer <token>`. Errors come back as grpc-gateway
//! JSON `{"error", "code", "message"}` with the HTTP status of the gRPC code.
//!
//! # What is shown
//!
//! The version of a history entry is the image tag from its source (Kustomize `images`,
//! a Helm `image.tag` parameter), else the chart version for a chart source, else the
//! target revision when it looks like a version, else the short commit. After an Argo CD
//! rollback the application is `OutOfSync` (Git still says the newer revision), and the
//! sync status proves nothing either way: history entries may share one revision string
//! (a Helm-repository chart with parameter overrides), so a rollback counts as synced only
//! when its own operation — the first one after the request that is not the one shown when
//! Argo CD accepted it — succeeded at the entry's `revision` (or, for multi-source
//! applications, its `revisions`), and as done only when health assessed after that sync
//! is `Healthy`.

mod api;
#[cfg(feature = "kubernetes")]
mod cluster;
#[cfg(not(feature = "kubernetes"))]
#[path = "no_cluster.rs"]
mod cluster;
mod history;
use history::parent_of;
mod model;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::toolkit::{Follow, Look, read_limited};
use super::{VersionSource, distinct_versions, error_chain, image_name, image_tag, short_commit};
use crate::config::{ArgoCdBackendConfig, Secret, ServiceConfig};
use crate::core::backend::{
    Action, BackendError, BackendErrorKind, Capabilities, Caveat, DeployBackend, Operation,
    Outcome, ProgressFn, Remedy, RestoreOffer, RollbackCall,
};
use crate::core::deploy::{Deploy, DeploySource, DeployStatus, Revision, ServiceName, Target};
use model::{Application, ErrorBody, HistoryEntry, OperationState, Source, SyncResult};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One request; a rollback's follow is bounded by the backend's `timeout` as well.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const BODY_LIMIT: usize = 4 * 1024 * 1024;
/// How much of Argo CD's message is quoted to people.
const SNIPPET_CHARS: usize = 300;
/// Status reads that may fail in a row while following before breakwater gives up.
const FOLLOW_READ_FAILURES: u32 = 5;
/// Operations that started this long before the rollback request still count as its own,
/// for servers whose clock runs behind breakwater's.
const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(30);

/// The label Argo CD's default label tracking puts on the resources it manages,
/// including child Applications of an app-of-apps.
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Annotation tracking's marker: `APP:GROUP/KIND:NAMESPACE/NAME`.
const TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";

pub struct ArgoCdBackend {
    name: String,
    url: Url,
    token: Secret,
    allow_disable_autosync: bool,
    timeout: Duration,
    poll_interval: Duration,
    client: reqwest::Client,
    services: HashMap<ServiceName, ServiceConfig>,
    /// The cluster the Applications deploy to, when `watch_config` is on.
    cluster: Option<cluster::Cluster>,
}

/// The Application an alert's target maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AppRef {
    name: String,
    namespace: Option<String>,
}

impl std::fmt::Display for AppRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{namespace}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What is stored with the plan to follow a rollback, also after a restart.
///
/// Several history entries may share one revision string (a chart from a Helm repository
/// whose entries differ only in parameter overrides all have the chart version), so the
/// rollback's own operation is recognised by more than its revision: it is the first
/// operation that is not the one Argo CD showed when it accepted the rollback, it started
/// after the request, and no automated sync started it.
#[derive(Debug, serde::Serialize, Deserialize)]
struct Handle {
    app: String,
    app_namespace: Option<String>,
    history_id: i64,
    /// The revision of the history entry rolled back to (Git commit or chart version).
    revision: String,
    /// Multi-source applications: the entry's revisions, one per source.
    #[serde(default)]
    revisions: Vec<String>,
    requested_at: DateTime<Utc>,
    /// `startedAt` and `finishedAt` of the operation Argo CD showed when it accepted the
    /// rollback: that operation is never the rollback's own.
    #[serde(default)]
    prior_started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    prior_finished_at: Option<DateTime<Utc>>,
}

impl Handle {
    /// Whether a sync operation or result went to the revision(s) rolled back to.
    fn matches(&self, sync: &SyncResult) -> bool {
        if self.revisions.is_empty() {
            !self.revision.is_empty() && sync.revision == self.revision
        } else {
            sync.revisions == self.revisions
        }
    }

    /// The revision(s) rolled back to, short, for people.
    fn label(&self) -> String {
        if self.revisions.is_empty() {
            short_commit(&self.revision).to_owned()
        } else {
            self.revisions
                .iter()
                .map(|r| short_commit(r))
                .collect::<Vec<_>>()
                .join(" + ")
        }
    }

    /// Whether this operation state is the one Argo CD showed when it accepted the
    /// rollback. An operation that started and finished in the very same seconds as that
    /// one cannot be told apart from it and counts as it: breakwater then waits (and times
    /// out) rather than claim a success it did not see.
    fn is_prior(&self, operation: &OperationState) -> bool {
        self.prior_started_at.is_some()
            && operation.started_at == self.prior_started_at
            && operation.finished_at == self.prior_finished_at
    }
}

/// What a request was for, which decides what an error means for the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Read,
    DisableAutoSync,
    Rollback,
    Follow,
}

impl Phase {
    /// What has (not) happened when a request of this phase fails.
    fn consequence(self) -> &'static str {
        match self {
            Self::Read => "nothing was changed",
            Self::DisableAutoSync => "neither auto-sync nor the application was changed",
            Self::Rollback => "nothing was rolled back",
            Self::Follow => "the rollback may still be running",
        }
    }

    /// The Argo CD RBAC action the request needs.
    fn rbac_action(self) -> &'static str {
        match self {
            Self::Read | Self::Follow => "get",
            Self::DisableAutoSync => "update",
            Self::Rollback => "sync",
        }
    }
}

impl ArgoCdBackend {
    pub fn new(
        name: &str,
        config: &ArgoCdBackendConfig,
        services: &[ServiceConfig],
    ) -> Result<Self, super::BuildError> {
        if config.url.cannot_be_a_base() {
            return Err(super::BuildError::Url {
                name: name.to_owned(),
                url: config.url.to_string(),
            });
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("breakwater/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let ca_error = |reason: String| super::BuildError::CaFile {
                name: name.to_owned(),
                path: path.clone(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ca_error(error_chain(&e)))?;
            if certificates.is_empty() {
                return Err(ca_error("it holds no PEM certificate".to_owned()));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if config.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .map_err(|source| super::BuildError::HttpClient {
                name: name.to_owned(),
                source,
            })?;
        Ok(Self {
            name: name.to_owned(),
            url: config.url.clone(),
            token: config.token.clone(),
            allow_disable_autosync: config.allow_disable_autosync,
            timeout: config.timeout,
            poll_interval: config.poll_interval,
            client,
            services: super::services_by_name(services),
            cluster: cluster::Cluster::new(name, config.cluster.as_ref(), services)?,
        })
    }

    /// Where a followed rollback stands after one read of the application.
    ///
    /// Only the rollback's own operation counts: until Argo CD's controller has picked it
    /// up (it is still the application's pending `operation`), nothing is concluded, and
    /// an application that is `Synced` to the same revision string proves nothing — the
    /// entries of a Helm-repository chart share the chart version, and the sync may not
    /// have run yet.
    fn follow_state(&self, handle: &Handle, application: &Application) -> Look {
        let app = AppRef {
            name: handle.app.clone(),
            namespace: handle.app_namespace.clone(),
        };
        let status = &application.status;
        let short = handle.label();
        let waiting = || Look::running(format!("waiting for Argo CD to start the sync to {short}"));
        // A fresh operation: not the one shown when the rollback was accepted, and started
        // after it was requested.
        let Some(operation) = status.operation_state.as_ref().filter(|op| {
            !handle.is_prior(op)
                && op
                    .started_at
                    .is_some_and(|at| at >= handle.requested_at - CLOCK_SKEW)
        }) else {
            return waiting();
        };
        let spec = operation.operation.as_ref();
        let requested = spec.and_then(|o| o.sync.as_ref());
        let automated = spec
            .and_then(|o| o.initiated_by.as_ref())
            .is_some_and(|by| by.automated);
        let ours = !automated
            && requested
                .or(operation.sync_result.as_ref())
                .is_some_and(|sync| handle.matches(sync));
        if !ours {
            let to = requested
                .or(operation.sync_result.as_ref())
                .map(|sync| {
                    if sync.revisions.is_empty() {
                        short_commit(&sync.revision).to_owned()
                    } else {
                        sync.revisions
                            .iter()
                            .map(|r| short_commit(r))
                            .collect::<Vec<_>>()
                            .join(" + ")
                    }
                })
                .filter(|to| !to.is_empty())
                .unwrap_or_else(|| "an unknown revision".to_owned());
            let who = if automated {
                "Argo CD's automated sync".to_owned()
            } else {
                "someone".to_owned()
            };
            return Look::Done(Outcome::Failed(format!(
                "{who} started another sync of {app} (to {to}) while the rollback to {short} \
                 was followed; check {} to see what runs now before doing anything else",
                self.ui_link(&app)
            )));
        }
        let phase = operation.phase.as_str();
        let op_message = super::snippet(&operation.message, SNIPPET_CHARS);
        if matches!(phase, "Failed" | "Error") {
            return Look::Done(Outcome::Failed(format!(
                "Argo CD's rollback sync of {app} to {short} ended {phase}: {op_message}. Open {} \
                 to see which resources failed; fix them or sync another revision",
                self.ui_link(&app)
            )));
        }
        if phase != "Succeeded" {
            let phase = if phase.is_empty() { "Pending" } else { phase };
            return Look::running(if op_message.is_empty() {
                format!("Argo CD sync to {short}: {phase}")
            } else {
                format!("Argo CD sync to {short}: {phase} — {op_message}")
            });
        }
        if let Some(result) = &operation.sync_result
            && !handle.matches(result)
        {
            return Look::Done(Outcome::Failed(format!(
                "Argo CD's rollback sync of {app} ended at {} instead of {short}; check {} to see \
                 what runs now before doing anything else",
                if result.revisions.is_empty() {
                    short_commit(&result.revision).to_owned()
                } else {
                    result.revisions.join(" + ")
                },
                self.ui_link(&app)
            )));
        }
        // Health read before the controller looked at the synced resources is the old one.
        let assessed = match (status.reconciled_at, operation.finished_at) {
            (Some(reconciled), Some(finished)) => reconciled >= finished,
            _ => true,
        };
        if !assessed {
            return Look::running(format!(
                "synced to {short}; waiting for Argo CD to assess health"
            ));
        }
        let health = &status.health;
        let health_message = super::snippet(&health.message, SNIPPET_CHARS);
        match health.status.as_str() {
            "Healthy" => Look::Done(Outcome::Succeeded(format!(
                "Argo CD synced {app} to {short} and it is Healthy"
            ))),
            "Degraded" => Look::Done(Outcome::Failed(format!(
                "Argo CD synced {app} to {short} but it is Degraded{}. Open {} to see which \
                 resources are unhealthy; the previous revision may be broken too",
                if health_message.is_empty() {
                    String::new()
                } else {
                    format!(": {health_message}")
                },
                self.ui_link(&app)
            ))),
            other => {
                let other = if other.is_empty() { "Unknown" } else { other };
                Look::running(if health_message.is_empty() {
                    format!("synced to {short}; health {other}")
                } else {
                    format!("synced to {short}; health {other}: {health_message}")
                })
            }
        }
    }

    async fn disable_auto_sync(&self, app: &AppRef) -> Result<(), BackendError> {
        let mut body = json!({
            "name": app.name,
            "patch": r#"{"spec":{"syncPolicy":{"automated":null}}}"#,
            "patchType": "merge",
        });
        if let Some(namespace) = &app.namespace {
            body["appNamespace"] = json!(namespace);
        }
        self.send(
            self.client.patch(self.endpoint(app, "")).json(&body),
            app,
            Phase::DisableAutoSync,
        )
        .await?;
        tracing::info!(backend = %self.name, %app, "turned Argo CD automated sync off");
        Ok(())
    }
}

#[async_trait]
impl DeployBackend for ArgoCdBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "argocd"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            any_revision: true,
            config_diffs: false,
            own_history: true,
            resumable: true,
        }
    }

    async fn history(&self, target: &Target) -> Result<Vec<Deploy>, BackendError> {
        let app = self.app_ref(target);
        let application = self.get_app(&app, Phase::Read).await?;
        Ok(self.deploys(target, &app, &application))
    }

    async fn current(&self, target: &Target) -> Result<Option<Revision>, BackendError> {
        let app = self.app_ref(target);
        let application = self.get_app(&app, Phase::Read).await?;
        let deploys = self.deploys(target, &app, &application);
        Ok(Self::current_of(&deploys, &application))
    }

    async fn caveats(&self, target: &Target, to: &Revision) -> Result<Vec<Caveat>, BackendError> {
        let app = self.app_ref(target);
        let application = self.get_app(&app, Phase::Read).await?;
        let mut caveats = Vec::new();
        let automated = application
            .spec
            .sync_policy
            .as_ref()
            .is_some_and(|p| p.automated.is_some());
        if automated {
            let message = if self.allow_disable_autosync {
                format!(
                    "Argo CD auto-sync is on for {app}: a rollback would be reverted. \
                     \"Disable auto-sync and roll back\" turns it off first; turn it on again \
                     once Git holds the fix."
                )
            } else {
                format!(
                    "Argo CD auto-sync is on for {app}: a rollback would be reverted. Turn it \
                     off in Argo CD (argocd app set {} --sync-policy none) and ask for a fresh \
                     plan, or revert the change in Git.",
                    app.name
                )
            };
            caveats.push(Caveat {
                message,
                blocking: true,
                remedy: self
                    .allow_disable_autosync
                    .then_some(Remedy::DisableAutoSync),
            });
            if let Some(parent) = parent_of(&application) {
                caveats.push(Caveat {
                    message: format!(
                        "{app} is managed by {parent}, which will turn auto-sync back on (and \
                         undo the rollback) at its next sync; turn off its automated sync or \
                         self-heal first."
                    ),
                    blocking: false,
                    remedy: None,
                });
            }
        }
        let busy = application.operation.is_some()
            || application
                .status
                .operation_state
                .as_ref()
                .is_some_and(|op| matches!(op.phase.as_str(), "Running" | "Terminating"));
        if busy {
            caveats.push(Caveat {
                message: format!(
                    "Argo CD is running an operation on {app} right now; a rollback will be \
                     refused until it finishes."
                ),
                blocking: false,
                remedy: None,
            });
        }
        let known = application
            .status
            .history
            .iter()
            .any(|e| e.id.to_string() == to.id);
        if !known {
            caveats.push(Caveat {
                message: format!(
                    "{} is no longer in the Argo CD history of {app}; sync to its Git revision \
                     in Argo CD instead.",
                    to.version
                ),
                blocking: true,
                remedy: None,
            });
        }
        Ok(caveats)
    }

    async fn restore_offer(
        &self,
        target: &Target,
        change: &Deploy,
    ) -> Result<Option<RestoreOffer>, BackendError> {
        self.cluster_restore_offer(target, change).await
    }

    async fn rollback(&self, call: &RollbackCall) -> Result<Operation, BackendError> {
        if call.action == Action::RestoreConfig {
            return self.restore_config(call).await;
        }
        let app = self.app_ref(&call.target);
        let history_id: i64 = call.to.id.parse().map_err(|_| {
            BackendError::new(
                BackendErrorKind::Protocol,
                format!(
                    "the plan names revision {:?}, which is not an Argo CD history id; nothing \
                     was rolled back. Ask for a fresh plan",
                    call.to.id
                ),
            )
        })?;
        if call.disable_auto_sync {
            if !self.allow_disable_autosync {
                return Err(BackendError::new(
                    BackendErrorKind::Refused,
                    format!(
                        "turning auto-sync off is not allowed for backends.{} \
                         (allow_disable_autosync = false); nothing was changed. Turn it off in \
                         Argo CD yourself, then ask for a fresh plan",
                        self.name
                    ),
                ));
            }
            self.disable_auto_sync(&app).await?;
        }
        let requested_at = Utc::now();
        let mut body = json!({
            "name": app.name,
            "id": history_id,
            "dryRun": false,
            "prune": false,
        });
        if let Some(namespace) = &app.namespace {
            body["appNamespace"] = json!(namespace);
        }
        let answer = self
            .send(
                self.client
                    .post(self.endpoint(&app, "rollback"))
                    .json(&body),
                &app,
                Phase::Rollback,
            )
            .await
            .map_err(|mut error| {
                if call.disable_auto_sync {
                    error.message.push_str(&format!(
                        ". Automated sync of {app} was turned off before this and stays off: \
                         turn it on again in Argo CD when you are done"
                    ));
                }
                error
            })?;
        let entry = answer.status.history.iter().find(|e| e.id == history_id);
        let revision = entry.map(|e| e.revision.clone()).unwrap_or_default();
        let revisions = entry.map(|e| e.revisions.clone()).unwrap_or_default();
        let prior = answer.status.operation_state.as_ref();
        tracing::info!(backend = %self.name, %app, history_id, %revision, ?revisions, "Argo CD accepted the rollback");
        let handle = Handle {
            app: app.name.clone(),
            app_namespace: app.namespace.clone(),
            history_id,
            revision,
            revisions,
            requested_at,
            prior_started_at: prior.and_then(|op| op.started_at),
            prior_finished_at: prior.and_then(|op| op.finished_at),
        };
        Ok(Operation {
            target: call.target.clone(),
            to: call.to.clone(),
            started_at: requested_at,
            handle: serde_json::to_value(&handle).unwrap_or(Value::Null),
            finished: None,
        })
    }

    async fn wait(
        &self,
        operation: &Operation,
        progress: ProgressFn<'_>,
    ) -> Result<Outcome, BackendError> {
        if let Some(outcome) = &operation.finished {
            return Ok(outcome.clone());
        }
        if let Some(restore) = operation.handle.get(cluster::RESTORE_HANDLE) {
            return self.wait_restore(operation, restore, progress).await;
        }
        let handle: Handle = serde_json::from_value(operation.handle.clone()).map_err(|_| {
            BackendError::new(
                BackendErrorKind::Protocol,
                format!(
                    "this Argo CD rollback of {} has no readable handle, so breakwater cannot \
                     follow it; check the application in Argo CD",
                    operation.target
                ),
            )
        })?;
        let app = AppRef {
            name: handle.app.clone(),
            namespace: handle.app_namespace.clone(),
        };
        let follow = Follow {
            backend: &self.name,
            subject: &app,
            every: self.poll_interval,
            within: self.timeout,
            tolerated_read_failures: FOLLOW_READ_FAILURES,
        };
        follow
            .until(
                progress,
                || async {
                    let application = self.get_app(&app, Phase::Follow).await?;
                    Ok(self.follow_state(&handle, &application))
                },
                |last| {
                    BackendError::new(
                        BackendErrorKind::Timeout,
                        format!(
                            "{app} did not become synced and Healthy at {} within {}{}; the \
                             rollback may still be progressing. Check {} before retrying",
                            handle.label(),
                            humantime::format_duration(self.timeout),
                            last.map(|l| format!(" (last seen: {l})"))
                                .unwrap_or_default(),
                            self.ui_link(&app)
                        ),
                    )
                },
            )
            .await
    }
}

impl std::fmt::Debug for ArgoCdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgoCdBackend")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("allow_disable_autosync", &self.allow_disable_autosync)
            .field("timeout", &self.timeout)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
