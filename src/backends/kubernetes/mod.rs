//! The Kubernetes backend: a Deployment's history from the ReplicaSets it owns, the
//! configuration changed by each revision, rollback to a revision as
//! `kubectl rollout undo --to-revision` does it, followed with `kubectl rollout status`'s
//! rules.
//!
//! # History
//!
//! Every pod template a Deployment ever ran is a ReplicaSet it controls (owner reference
//! with `controller: true`), numbered by the `deployment.kubernetes.io/revision`
//! annotation; a rollback reuses the old ReplicaSet and gives it the next number, listing
//! its earlier numbers in `deployment.kubernetes.io/revision-history`. The version shown
//! is the image tag of the Deployment's container (the one named like the Deployment, else
//! the first), or a pod template label or annotation (`version_from`). The
//! `kubernetes.io/change-cause` annotation is the description. A ReplicaSet's time is its
//! creation time: when that template was first rolled out.
//!
//! # Configuration changes
//!
//! Consecutive revisions' pod templates are compared: images, commands and arguments,
//! environment variables (a `valueFrom` is named — `secret db/password`, `configMap
//! app/pool` — never resolved), `envFrom`, resource requests and limits, and the
//! ConfigMaps and Secrets mounted as volumes. Keys that look secret are masked.
//!
//! # Rollback
//!
//! The Deployment's `spec.template` becomes the target ReplicaSet's template without its
//! `pod-template-hash` label, and its annotations become the ReplicaSet's (keeping the
//! Deployment's own revision and last-applied annotations), in one JSON merge patch that
//! carries the `resourceVersion` read just before: if anything else wrote the Deployment
//! in between, the API server answers 409 and nothing changes. A paused Deployment is
//! refused, as kubectl refuses it. Success is only claimed after the rollout was seen
//! through: the new generation observed, the updated replicas available — also when the
//! Deployment already had the target template (someone applied it a moment before), whose
//! rollout may still fail.
//!
//! A kubeconfig that sends a token, password or auth plugin output to an `http://` API
//! server is refused unless `allow_insecure_http = true`, as kubectl refuses it.
//!
//! # Permissions
//!
//! `get`, `list` and `watch` on `deployments` and `replicasets` and `patch` on
//! `deployments` in the services' namespaces; `deploy/kubernetes/rbac.yaml` has the Role.

pub mod config_watch;
mod connection;
mod errors;
mod pods;
mod restore;
mod revisions;
pub(crate) mod template;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::Kubeconfig;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use super::error_chain;
use super::toolkit::{Follow, Look};
use crate::config::{KubernetesBackendConfig, ServiceConfig};
use crate::core::backend::{
    Action, BackendError, BackendErrorKind, Capabilities, Caveat, DeployBackend, Operation,
    Outcome, ProgressFn, RestoreOffer, RollbackCall,
};
use crate::core::deploy::{Deploy, DeployStatus, Revision, ServiceName, Target};
pub(crate) use connection::insecure_http_problem;
use connection::{insecure_http_reason, plain_http_server_with_credentials};
use revisions::{current_revision_number, revision_set, rollout_status, selector_of};
pub(crate) use revisions::{managed_by, numbered_revision_set, revision_deploys};
use template::{DESIRED_REPLICAS, merge_patch, template_value};

const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// Annotations that stay the Deployment's own on rollback (kubectl's `annotationsToSkip`).
const KEPT_ANNOTATIONS: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];
/// Status reads that may fail in a row while following before breakwater gives up.
const FOLLOW_READ_FAILURES: u32 = 5;
const FIELD_MANAGER: &str = "breakwater";

pub struct KubernetesBackend {
    name: String,
    kubeconfig: Option<(PathBuf, Kubeconfig)>,
    context: Option<String>,
    timeout: Duration,
    poll_interval: Duration,
    allow_insecure_http: bool,
    /// Built on first use: loading credentials may run exec plugins and needs the runtime.
    client: OnceCell<Connection>,
    services: HashMap<ServiceName, ServiceConfig>,
    /// Where the config watch keeps ConfigMap snapshots, for Restore; set at start-up.
    snapshots: std::sync::OnceLock<std::sync::Arc<dyn crate::store::Store>>,
}

#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) client: kube::Client,
    pub(crate) cluster_url: String,
}

/// The Deployment an alert's target maps to, and how its version is read.
#[derive(Debug, Clone)]
pub(crate) struct DeploymentRef {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) version_from: VersionFrom,
}

impl std::fmt::Display for DeploymentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deployment/{} in namespace {}",
            self.name, self.namespace
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VersionFrom {
    Image,
    Label(String),
    Annotation(String),
}

impl VersionFrom {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let raw = raw.unwrap_or("image");
        if let Some(label) = raw.strip_prefix("label:") {
            Self::Label(label.to_owned())
        } else if let Some(annotation) = raw.strip_prefix("annotation:") {
            Self::Annotation(annotation.to_owned())
        } else {
            Self::Image
        }
    }
}

/// What a request was for, which decides what an error means for the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Read,
    Patch,
    Follow,
    /// The restart after a ConfigMap was restored.
    Restart,
}

impl Phase {
    fn consequence(self) -> &'static str {
        match self {
            Self::Read => "nothing was changed",
            Self::Patch => "nothing was rolled back",
            Self::Follow => "the rollout may still be running",
            Self::Restart => "the pods were not restarted",
        }
    }
}

/// One revision of a Deployment: a ReplicaSet it controls.
#[derive(Debug, Clone)]
pub(crate) struct RevisionSet {
    pub(crate) revision: i64,
    /// The first number this template had; stable across rollbacks.
    pub(crate) first_revision: i64,
    pub(crate) name: String,
    pub(crate) created: Option<chrono::DateTime<Utc>>,
    /// The pod template, without the pod-template-hash label.
    pub(crate) template: Value,
    pub(crate) annotations: BTreeMap<String, String>,
}

/// The rollout status by `kubectl rollout status` rules.
#[derive(Debug, Clone, PartialEq)]
enum Rollout {
    Complete(String),
    Progressing(String),
    DeadlineExceeded(String),
}

/// What is stored with the plan to follow a rollback, also after a restart.
#[derive(Debug, Serialize, Deserialize)]
struct Handle {
    namespace: String,
    deployment: String,
    revision: String,
    /// The pod template rolled back to; a different one means someone deployed since.
    template: Value,
    /// The ConfigMap restored before this restart, when it is one (then `revision` says
    /// which state, "before 14:02 UTC").
    #[serde(default)]
    restored: Option<String>,
}

impl KubernetesBackend {
    pub fn new(
        name: &str,
        config: &KubernetesBackendConfig,
        services: &[ServiceConfig],
    ) -> Result<Self, super::BuildError> {
        let kubeconfig = match &config.kubeconfig {
            Some(path) => {
                let parsed =
                    Kubeconfig::read_from(path).map_err(|e| super::BuildError::Kubeconfig {
                        name: name.to_owned(),
                        key: "kubeconfig",
                        reason: format!("cannot read {}: {}", path.display(), error_chain(&e)),
                    })?;
                if let Some(context) = &config.context
                    && !parsed.contexts.iter().any(|c| &c.name == context)
                {
                    let known: Vec<&str> =
                        parsed.contexts.iter().map(|c| c.name.as_str()).collect();
                    return Err(super::BuildError::Kubeconfig {
                        name: name.to_owned(),
                        key: "context",
                        reason: format!(
                            "{context:?} is not a context of {} (it has: {})",
                            path.display(),
                            known.join(", ")
                        ),
                    });
                }
                if !config.allow_insecure_http
                    && let Some(server) =
                        plain_http_server_with_credentials(&parsed, config.context.as_deref())
                {
                    return Err(super::BuildError::Kubeconfig {
                        name: name.to_owned(),
                        key: "allow_insecure_http",
                        reason: insecure_http_reason(name, &server),
                    });
                }
                Some((path.clone(), parsed))
            }
            None => None,
        };
        Ok(Self {
            name: name.to_owned(),
            kubeconfig,
            context: config.context.clone(),
            timeout: config.timeout,
            poll_interval: config.poll_interval,
            allow_insecure_http: config.allow_insecure_http,
            client: OnceCell::new(),
            services: super::services_by_name(services),
            snapshots: std::sync::OnceLock::new(),
        })
    }

    /// A Deployment named directly (a restart, a handle), its version read from images.
    fn deployment_named(&self, namespace: &str, name: &str) -> DeploymentRef {
        DeploymentRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            version_from: VersionFrom::Image,
        }
    }

    fn deployment_ref(&self, target: &Target) -> DeploymentRef {
        let service = self.services.get(&target.service);
        let (namespace, name, version_from) = match service {
            Some(s) => (
                s.setting(&s.namespace, &target.environment, "default"),
                s.setting(&s.deployment, &target.environment, "{service}"),
                VersionFrom::parse(s.version_from.as_deref()),
            ),
            None => (
                "default".to_owned(),
                target.service.as_str().to_owned(),
                VersionFrom::Image,
            ),
        };
        DeploymentRef {
            namespace,
            name,
            version_from,
        }
    }

    async fn get_deployment(
        &self,
        deployment: &DeploymentRef,
        phase: Phase,
    ) -> Result<Deployment, BackendError> {
        let connection = self.connection().await?;
        let api: Api<Deployment> =
            Api::namespaced(connection.client.clone(), &deployment.namespace);
        api.get(&deployment.name)
            .await
            .map_err(|e| self.kube_error(&e, connection, "get deployments", deployment, phase))
    }

    /// The ReplicaSets the Deployment controls, by revision, oldest first.
    async fn revisions(
        &self,
        deployment: &DeploymentRef,
        object: &Deployment,
    ) -> Result<Vec<RevisionSet>, BackendError> {
        let connection = self.connection().await?;
        let api: Api<ReplicaSet> =
            Api::namespaced(connection.client.clone(), &deployment.namespace);
        let selector = selector_of(object);
        let mut params = ListParams::default();
        if !selector.is_empty() {
            params = params.labels(&selector);
        }
        let list = api.list(&params).await.map_err(|e| {
            self.kube_error(&e, connection, "list replicasets", deployment, Phase::Read)
        })?;
        let uid = object.metadata.uid.clone().unwrap_or_default();
        let mut sets: Vec<RevisionSet> = list
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata.owner_references.iter().flatten().any(|owner| {
                    owner.controller == Some(true) && owner.uid == uid && owner.kind == "Deployment"
                })
            })
            .filter_map(revision_set)
            .collect();
        sets.sort_by_key(|s| s.revision);
        Ok(sets)
    }

    fn deploys(
        &self,
        target: &Target,
        deployment: &DeploymentRef,
        object: &Deployment,
        sets: &[RevisionSet],
    ) -> Vec<Deploy> {
        let current = current_revision_number(object, sets);
        let status = match rollout_status(object) {
            Rollout::Complete(_) => DeployStatus::Succeeded,
            Rollout::DeadlineExceeded(_) => DeployStatus::Failed,
            Rollout::Progressing(_) => DeployStatus::Started,
        };
        revision_deploys(target, deployment, sets, current, status)
    }

    /// Patches the Deployment to the target template; `Ok(None)` when it already runs it.
    async fn patch_to(
        &self,
        deployment: &DeploymentRef,
        object: &Deployment,
        target: &RevisionSet,
    ) -> Result<Option<Deployment>, BackendError> {
        let connection = self.connection().await?;
        let current_template = object
            .spec
            .as_ref()
            .map(|spec| template_value(&spec.template))
            .unwrap_or(Value::Null);
        if current_template == target.template {
            return Ok(None);
        }
        let current_annotations: BTreeMap<String, String> =
            object.metadata.annotations.clone().unwrap_or_default();
        let mut annotations: BTreeMap<String, String> = current_annotations
            .iter()
            .filter(|(k, _)| KEPT_ANNOTATIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        annotations.extend(
            target
                .annotations
                .iter()
                .filter(|(k, _)| !KEPT_ANNOTATIONS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let mut metadata = Map::new();
        metadata.insert(
            "resourceVersion".into(),
            json!(object.metadata.resource_version.clone().unwrap_or_default()),
        );
        let annotations_patch = merge_patch(&json!(current_annotations), &json!(annotations));
        if annotations_patch.as_object().is_some_and(|m| !m.is_empty()) {
            metadata.insert("annotations".into(), annotations_patch);
        }
        let patch = json!({
            "metadata": metadata,
            "spec": { "template": merge_patch(&current_template, &target.template) },
        });
        let api: Api<Deployment> =
            Api::namespaced(connection.client.clone(), &deployment.namespace);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        api.patch(&deployment.name, &params, &Patch::Merge(&patch))
            .await
            .map(Some)
            .map_err(|e| {
                self.kube_error(
                    &e,
                    connection,
                    "patch deployments",
                    deployment,
                    Phase::Patch,
                )
            })
    }
}

#[async_trait]
impl DeployBackend for KubernetesBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            any_revision: true,
            config_diffs: true,
            own_history: true,
            resumable: true,
        }
    }

    async fn history(&self, target: &Target) -> Result<Vec<Deploy>, BackendError> {
        let deployment = self.deployment_ref(target);
        let object = self.get_deployment(&deployment, Phase::Read).await?;
        let sets = self.revisions(&deployment, &object).await?;
        Ok(self.deploys(target, &deployment, &object, &sets))
    }

    async fn current(&self, target: &Target) -> Result<Option<Revision>, BackendError> {
        let deployment = self.deployment_ref(target);
        let object = self.get_deployment(&deployment, Phase::Read).await?;
        let sets = self.revisions(&deployment, &object).await?;
        let current = current_revision_number(&object, &sets).map(|r| r.to_string());
        Ok(self
            .deploys(target, &deployment, &object, &sets)
            .into_iter()
            .find(|d| d.revision.is_some() && d.revision == current)
            .map(|d| d.as_revision()))
    }

    async fn instances_started(
        &self,
        target: &Target,
    ) -> Result<Option<Vec<chrono::DateTime<Utc>>>, BackendError> {
        self.pods_started(&self.deployment_ref(target))
            .await
            .map(Some)
    }

    async fn restore_offer(
        &self,
        target: &Target,
        change: &Deploy,
    ) -> Result<Option<RestoreOffer>, BackendError> {
        self.offer_restore(target, change).await
    }

    async fn caveats(&self, target: &Target, to: &Revision) -> Result<Vec<Caveat>, BackendError> {
        let deployment = self.deployment_ref(target);
        let object = self.get_deployment(&deployment, Phase::Read).await?;
        let mut caveats = Vec::new();
        if object.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            caveats.push(Caveat {
                message: format!(
                    "{deployment} is paused; resume it first (kubectl rollout resume \
                     deployment/{} -n {}) and ask for a fresh plan.",
                    deployment.name, deployment.namespace
                ),
                blocking: true,
                remedy: None,
            });
        }
        let sets = self.revisions(&deployment, &object).await?;
        if !sets.iter().any(|s| s.revision.to_string() == to.id) {
            caveats.push(Caveat {
                message: format!(
                    "Revision {} of {deployment} no longer exists (revisionHistoryLimit); deploy \
                     {} again instead.",
                    to.id, to.version
                ),
                blocking: true,
                remedy: None,
            });
        }
        if let Some(owner) = managed_by(&object.metadata) {
            caveats.push(Caveat {
                message: format!(
                    "{deployment} is managed by {owner}: its next sync or upgrade will replace \
                     the rolled-back template. Revert the change there too."
                ),
                blocking: false,
                remedy: None,
            });
        }
        Ok(caveats)
    }

    async fn rollback(&self, call: &RollbackCall) -> Result<Operation, BackendError> {
        if call.action == Action::RestoreConfig {
            return self.restore(call).await;
        }
        let deployment = self.deployment_ref(&call.target);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let object = self.get_deployment(&deployment, Phase::Read).await?;
            if object.spec.as_ref().and_then(|s| s.paused) == Some(true) {
                return Err(BackendError::new(
                    BackendErrorKind::Refused,
                    format!(
                        "{deployment} is paused, and a paused Deployment cannot be rolled back; \
                         nothing was rolled back. Resume it (kubectl rollout resume \
                         deployment/{} -n {}), then ask for a fresh plan",
                        deployment.name, deployment.namespace
                    ),
                ));
            }
            let sets = self.revisions(&deployment, &object).await?;
            let running = current_revision_number(&object, &sets).map(|r| r.to_string());
            if running.as_deref() != Some(call.from.id.as_str()) {
                return Err(BackendError::new(
                    BackendErrorKind::Conflict,
                    format!(
                        "{deployment} was changed to revision {} while breakwater was rolling it \
                         back from revision {}; nothing was rolled back. Check `kubectl rollout \
                         history deployment/{} -n {}`, then ask for a fresh plan",
                        running.unwrap_or_else(|| "?".to_owned()),
                        call.from.id,
                        deployment.name,
                        deployment.namespace
                    ),
                ));
            }
            let Some(target) = sets.iter().find(|s| s.revision.to_string() == call.to.id) else {
                return Err(BackendError::new(
                    BackendErrorKind::NotFound,
                    format!(
                        "revision {} ({}) of {deployment} no longer exists: its ReplicaSet was \
                         removed (revisionHistoryLimit); nothing was rolled back. Deploy {} again \
                         through your pipeline instead",
                        call.to.id, call.to.version, call.to.version
                    ),
                ));
            };
            let handle = Handle {
                namespace: deployment.namespace.clone(),
                deployment: deployment.name.clone(),
                revision: call.to.id.clone(),
                template: target.template.clone(),
                restored: None,
            };
            let operation = |finished| Operation {
                target: call.target.clone(),
                to: call.to.clone(),
                started_at: Utc::now(),
                handle: serde_json::to_value(&handle).unwrap_or(Value::Null),
                finished,
            };
            match self.patch_to(&deployment, &object, target).await {
                Ok(Some(_)) => {
                    tracing::info!(backend = %self.name, %deployment, revision = %call.to.id, "patched the Deployment back");
                    return Ok(operation(None));
                }
                // Someone already applied that template (another rollback, kubectl): the
                // rollout it started is still to be observed, so it is followed like ours
                // rather than reported done.
                Ok(None) => {
                    tracing::info!(backend = %self.name, %deployment, revision = %call.to.id, "the Deployment already has the target template; following its rollout");
                    return Ok(operation(None));
                }
                // Something else wrote the Deployment (an autoscaler changing replicas is
                // common): read it again and retry once if it still runs what was shown.
                Err(error) if error.kind == BackendErrorKind::Conflict && attempt < 2 => {
                    tracing::info!(backend = %self.name, %deployment, "resourceVersion conflict; reading the Deployment again");
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn wait(
        &self,
        operation: &Operation,
        progress: ProgressFn<'_>,
    ) -> Result<Outcome, BackendError> {
        if let Some(outcome) = &operation.finished {
            return Ok(outcome.clone());
        }
        let handle: Handle = serde_json::from_value(operation.handle.clone()).map_err(|_| {
            BackendError::new(
                BackendErrorKind::Protocol,
                format!(
                    "this Kubernetes rollback of {} has no readable handle, so breakwater cannot \
                     follow it; check `kubectl rollout status`",
                    operation.target
                ),
            )
        })?;
        let deployment = DeploymentRef {
            namespace: handle.namespace.clone(),
            name: handle.deployment.clone(),
            version_from: VersionFrom::Image,
        };
        let follow = Follow {
            backend: &self.name,
            subject: &deployment,
            every: self.poll_interval,
            within: self.timeout,
            tolerated_read_failures: FOLLOW_READ_FAILURES,
        };
        // The same rollout follows a rollback and the restart after a ConfigMap restore;
        // only the words differ.
        let (followed, done, during, rollout, broken) = match &handle.restored {
            None => (
                format!("the rollback to revision {}", handle.revision),
                format!("rolled out the template of revision {}", handle.revision),
                format!("rolling back to revision {}", handle.revision),
                format!(
                    "the rollout of {deployment} back to revision {}",
                    handle.revision
                ),
                "the earlier revision may be broken too",
            ),
            Some(config_map) => (
                format!("the restart after restoring ConfigMap {config_map}"),
                format!(
                    "restarted with ConfigMap {config_map} restored to its state {}",
                    handle.revision
                ),
                format!("restarting after ConfigMap {config_map} was restored"),
                format!("the restart of {deployment} after restoring ConfigMap {config_map}"),
                "the restored values may be broken too",
            ),
        };
        follow
            .until(
                progress,
                || async {
                    let object = self.get_deployment(&deployment, Phase::Follow).await?;
                    let template = object
                        .spec
                        .as_ref()
                        .map(|spec| template_value(&spec.template))
                        .unwrap_or(Value::Null);
                    if template != handle.template {
                        return Ok(Look::Done(Outcome::Failed(format!(
                            "{deployment} was changed again by someone else while {followed} \
                             was followed; check `kubectl rollout history deployment/{} -n {}` \
                             to see what runs now",
                            deployment.name, deployment.namespace
                        ))));
                    }
                    Ok(match rollout_status(&object) {
                        Rollout::Complete(detail) => Look::Done(Outcome::Succeeded(format!(
                            "{deployment} {done}: {detail}"
                        ))),
                        Rollout::DeadlineExceeded(message) => Look::Done(Outcome::Failed(format!(
                            "{deployment} exceeded its progress deadline {during}{}. \
                                 Its new pods are not becoming available: check `kubectl get \
                                 pods -n {}` and `kubectl describe deployment/{} -n {}`; \
                                 {broken}",
                            if message.is_empty() {
                                String::new()
                            } else {
                                format!(" ({message})")
                            },
                            deployment.namespace,
                            deployment.name,
                            deployment.namespace
                        ))),
                        Rollout::Progressing(line) => Look::running(line),
                    })
                },
                |last| {
                    BackendError::new(
                        BackendErrorKind::Timeout,
                        format!(
                            "{rollout} did not finish within {}{}; it may still be progressing. Check `kubectl rollout \
                             status deployment/{} -n {}` before retrying",
                            humantime::format_duration(self.timeout),
                            last.map(|l| format!(" (last seen: {l})"))
                                .unwrap_or_default(),
                            deployment.name,
                            deployment.namespace
                        ),
                    )
                },
            )
            .await
    }
}

impl std::fmt::Debug for KubernetesBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesBackend")
            .field("name", &self.name)
            .field(
                "kubeconfig",
                &self.kubeconfig.as_ref().map(|(path, _)| path),
            )
            .field("context", &self.context)
            .field("timeout", &self.timeout)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
