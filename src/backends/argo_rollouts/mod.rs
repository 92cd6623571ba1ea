//! The Argo Rollouts backend: a `Rollout`'s history from the ReplicaSets it owns, its
//! state (phase, strategy, canary step and weight, stable and canary versions, aborted)
//! in the bot's words, and roll back as `kubectl argo rollouts undo --to-revision` does it.
//!
//! # History
//!
//! Argo Rollouts numbers every pod template it rolled out with the
//! `rollout.argoproj.io/revision` annotation on a ReplicaSet it controls; an undo reuses
//! the old ReplicaSet under the next number. Versions, descriptions and configuration
//! differences are computed exactly as for Deployments (shared with the `kubernetes`
//! backend), so both read the same.
//!
//! # Roll back
//!
//! `spec.template` becomes the target ReplicaSet's template without its
//! `pod-template-hash` label, in one JSON merge patch carrying the `resourceVersion` read
//! just before: a 409 means someone else wrote the Rollout, and the rollback is refused so
//! a fresh plan is offered (unlike Deployments, no retry: a Rollout in a canary is written
//! by its controller at every step, and the person must see what runs now). A Rollout
//! using `workloadRef` has no template of its own and is refused. Success is claimed only
//! when the controller observed the change, reports `Healthy` and the target's ReplicaSet
//! is stable; `Degraded` or an abort ends the follow as failed, with the controller's
//! message.
//!
//! # Permissions
//!
//! `get`, `list`, `watch` on `rollouts` (argoproj.io) and `replicasets`, `patch` on
//! `rollouts`; `deploy/kubernetes/rbac.yaml` has the Role.

mod abort;
mod errors;
mod state;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::kubernetes::template::{merge_patch, remove_label, template_value};
use super::kubernetes::{
    Connection, DeploymentRef, KubernetesBackend, RevisionSet, VersionFrom, managed_by,
    numbered_revision_set, revision_deploys,
};
use super::toolkit::{Follow, Look, error_chain, snippet};
use crate::config::{KubernetesBackendConfig, ServiceConfig};
use crate::core::backend::{
    Action, BackendError, BackendErrorKind, Capabilities, Caveat, DeployBackend, Operation,
    Outcome, ProgressFn, RollbackCall,
};
use crate::core::deploy::{Deploy, DeployStatus, Revision, ServiceName, Target};
use crate::core::summary::Offer;

const REVISION: &str = "rollout.argoproj.io/revision";
/// The label Argo Rollouts tells its ReplicaSets apart by (not Deployments' `pod-template-hash`).
const POD_TEMPLATE_HASH: &str = "rollouts-pod-template-hash";
const FIELD_MANAGER: &str = "breakwater";
/// Status reads that may fail in a row while following before breakwater gives up.
const FOLLOW_READ_FAILURES: u32 = 5;

pub struct ArgoRolloutsBackend {
    name: String,
    /// The cluster connection, built from the same settings as a `kubernetes` backend.
    cluster: KubernetesBackend,
    timeout: Duration,
    poll_interval: Duration,
    services: HashMap<ServiceName, ServiceConfig>,
}

/// The Rollout a target maps to.
#[derive(Debug, Clone)]
struct RolloutRef(DeploymentRef);

impl std::fmt::Display for RolloutRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rollout/{} in namespace {}",
            self.0.name, self.0.namespace
        )
    }
}

/// One revision and the pod-template hash Argo Rollouts names its ReplicaSet by.
#[derive(Debug, Clone)]
struct RolloutRevision {
    set: RevisionSet,
    hash: String,
    /// Pods of this ReplicaSet that are available: after an abort, the stable one's serve
    /// all traffic once the canary's are gone.
    available: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Strategy {
    Canary { steps: Vec<Value> },
    BlueGreen,
    Unknown,
}

/// What the Rollout's status says, read once.
#[derive(Debug, Clone)]
struct State {
    phase: String,
    message: Option<String>,
    strategy: Strategy,
    step_index: Option<usize>,
    canary_weight: Option<i64>,
    stable_hash: Option<String>,
    current_hash: Option<String>,
    aborted: bool,
    /// Analysis runs (canary step, background, blue-green pre- and post-promotion) that
    /// failed, errored or were inconclusive: the usual reason a rollout stops.
    failed_analyses: Vec<FailedAnalysis>,
    /// The controller has seen the current spec (`status.observedGeneration`).
    observed: bool,
    /// `spec.replicas`: how many pods the stable ReplicaSet needs to serve all traffic.
    desired: i64,
}

/// An analysis run that said no, as the Rollout's status reports it
/// (`RolloutAnalysisRunStatus`: name, status, message).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FailedAnalysis {
    name: String,
    status: String,
    message: String,
}

/// What is stored with the plan to follow a rollback, also after a restart.
#[derive(Debug, Serialize, Deserialize)]
struct Handle {
    namespace: String,
    rollout: String,
    revision: String,
    /// The pod-template hash of the ReplicaSet rolled back to: stable once it is done.
    hash: String,
    /// The pod template rolled back to; a different one means someone deployed since.
    template: Value,
}

/// What is stored with the plan to follow an abort, also after a restart.
#[derive(Debug, Serialize, Deserialize)]
struct AbortHandle {
    namespace: String,
    rollout: String,
    /// The ReplicaSet that must end up serving all traffic, and its version.
    stable_hash: String,
    stable_version: String,
    /// The aborted ReplicaSet, whose pods must stop serving, and its version.
    canary_hash: String,
    canary_version: String,
    /// The Rollout's template when aborted; a different one means someone changed it since.
    template: Value,
}

/// The two kinds of operation this backend follows, told apart by their fields.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Followed {
    Abort(AbortHandle),
    Undo(Handle),
}

fn rollout_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: "argoproj.io/v1alpha1".to_owned(),
        kind: "Rollout".to_owned(),
        plural: "rollouts".to_owned(),
    }
}

impl ArgoRolloutsBackend {
    pub fn new(
        name: &str,
        config: &KubernetesBackendConfig,
        services: &[ServiceConfig],
    ) -> Result<Self, super::BuildError> {
        Ok(Self {
            name: name.to_owned(),
            cluster: KubernetesBackend::new(name, config, services)?,
            timeout: config.timeout,
            poll_interval: config.poll_interval,
            services: super::services_by_name(services),
        })
    }

    fn rollout_ref(&self, target: &Target) -> RolloutRef {
        let service = self.services.get(&target.service);
        RolloutRef(match service {
            Some(s) => DeploymentRef {
                namespace: s.setting(&s.namespace, &target.environment, "default"),
                name: s.setting(&s.rollout, &target.environment, "{service}"),
                version_from: VersionFrom::parse(s.version_from.as_deref()),
            },
            None => DeploymentRef {
                namespace: "default".to_owned(),
                name: target.service.as_str().to_owned(),
                version_from: VersionFrom::Image,
            },
        })
    }

    async fn get_rollout(
        &self,
        rollout: &RolloutRef,
        consequence: &str,
    ) -> Result<DynamicObject, BackendError> {
        let connection = self.cluster.connection().await?;
        let api: Api<DynamicObject> = Api::namespaced_with(
            connection.client.clone(),
            &rollout.0.namespace,
            &rollout_resource(),
        );
        api.get(&rollout.0.name)
            .await
            .map_err(|e| self.kube_error(&e, connection, "get rollouts", rollout, consequence))
    }

    /// The ReplicaSets the Rollout controls, by revision, oldest first.
    async fn revisions(
        &self,
        rollout: &RolloutRef,
        object: &DynamicObject,
    ) -> Result<Vec<RolloutRevision>, BackendError> {
        let connection = self.cluster.connection().await?;
        let api: Api<ReplicaSet> = Api::namespaced(connection.client.clone(), &rollout.0.namespace);
        let selector = object
            .data
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let mut params = ListParams::default();
        if !selector.is_empty() {
            params = params.labels(&selector);
        }
        let list = api.list(&params).await.map_err(|e| {
            self.kube_error(
                &e,
                connection,
                "list replicasets",
                rollout,
                "nothing was changed",
            )
        })?;
        let uid = object.metadata.uid.clone().unwrap_or_default();
        let mut revisions: Vec<RolloutRevision> = list
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata.owner_references.iter().flatten().any(|owner| {
                    owner.controller == Some(true) && owner.uid == uid && owner.kind == "Rollout"
                })
            })
            .filter_map(|rs| {
                let hash = rs
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(POD_TEMPLATE_HASH))
                    .cloned()
                    .unwrap_or_default();
                let available = rs
                    .status
                    .as_ref()
                    .and_then(|status| status.available_replicas)
                    .map_or(0, i64::from);
                let mut set = numbered_revision_set(rs, REVISION)?;
                remove_label(&mut set.template, POD_TEMPLATE_HASH);
                Some(RolloutRevision {
                    set,
                    hash,
                    available,
                })
            })
            .collect();
        revisions.sort_by_key(|r| r.set.revision);
        Ok(revisions)
    }

    fn deploys(
        &self,
        target: &Target,
        rollout: &RolloutRef,
        object: &DynamicObject,
        revisions: &[RolloutRevision],
    ) -> Vec<Deploy> {
        let sets: Vec<RevisionSet> = revisions.iter().map(|r| r.set.clone()).collect();
        let state = State::of(object);
        let status = if state.aborted || state.phase == "Degraded" {
            DeployStatus::Failed
        } else if state.phase == "Healthy" && state.observed {
            DeployStatus::Succeeded
        } else {
            DeployStatus::Started
        };
        revision_deploys(
            target,
            &rollout.0,
            &sets,
            current_revision_number(object, revisions),
            status,
        )
    }

    /// What the Rollout is doing now, in the bot's words, with versions for its hashes.
    fn describe(
        &self,
        rollout: &RolloutRef,
        state: &State,
        revisions: &[RolloutRevision],
        deploys: &[Deploy],
    ) -> String {
        let version_of = |hash: Option<&String>| -> Option<String> {
            let hash = hash?;
            let revision = revisions.iter().find(|r| &r.hash == hash)?;
            let number = revision.set.revision.to_string();
            deploys
                .iter()
                .find(|d| d.revision.as_deref() == Some(number.as_str()))
                .map(|d| d.version.clone())
        };
        let stable = version_of(state.stable_hash.as_ref()).unwrap_or_else(|| "?".to_owned());
        let new = version_of(state.current_hash.as_ref()).unwrap_or_else(|| "?".to_owned());
        let strategy = match &state.strategy {
            Strategy::Canary { .. } => "canary",
            Strategy::BlueGreen => "blue-green",
            Strategy::Unknown => "rollout",
        };
        let mut text = format!("{rollout} ({strategy}): ");
        if state.aborted {
            text.push_str(&format!(
                "the rollout of {new} was aborted, so all traffic is back on the stable \
                 version {stable}; the Rollout still holds {new}'s template and will try it \
                 again if it is retried."
            ));
        } else if state.phase == "Healthy" {
            text.push_str(&format!(
                "healthy, {stable} is stable and serves all traffic."
            ));
        } else {
            let doing = match state.phase.as_str() {
                "Paused" => "paused",
                "Degraded" => "degraded",
                _ => "in progress",
            };
            text.push_str(&format!("{doing}, moving from stable {stable} to {new}"));
            if let Strategy::Canary { steps } = &state.strategy
                && !steps.is_empty()
            {
                let step = state.step_index.unwrap_or(0).min(steps.len());
                text.push_str(&format!(
                    ", step {} of {}",
                    (step + 1).min(steps.len()),
                    steps.len()
                ));
            }
            if let Some(weight) = state.weight() {
                text.push_str(&format!(", {weight} % of traffic on {new}"));
            }
            if state.strategy == Strategy::BlueGreen {
                text.push_str(&format!(" ({new} is the preview, {stable} stays active)"));
            }
            text.push('.');
            if state.phase == "Paused" {
                text.push_str(" It waits for someone to promote it.");
            }
        }
        if !state.failed_analyses.is_empty() {
            let runs: Vec<String> = state
                .failed_analyses
                .iter()
                .map(ToString::to_string)
                .collect();
            text.push_str(&format!(" Failing analysis: {}.", runs.join("; ")));
        }
        // An abort caused by analysis repeats the failing metric: say it once.
        if let Some(message) = state.message.as_deref().filter(|m| !m.is_empty())
            && (state.aborted || state.phase == "Degraded")
            && !state
                .failed_analyses
                .iter()
                .any(|run| !run.message.is_empty() && message.contains(run.message.as_str()))
        {
            text.push_str(&format!(" Argo Rollouts says: {}", snippet(message, 300)));
        }
        text
    }

    /// Patches the Rollout's template to the target's; `Ok(false)` when it already has it.
    async fn patch_to(
        &self,
        rollout: &RolloutRef,
        object: &DynamicObject,
        target: &RolloutRevision,
    ) -> Result<bool, BackendError> {
        let connection = self.cluster.connection().await?;
        let current = rollout_template(object);
        if current == target.set.template {
            return Ok(false);
        }
        let patch = json!({
            "metadata": {
                "resourceVersion": object.metadata.resource_version.clone().unwrap_or_default(),
            },
            "spec": { "template": merge_patch(&current, &target.set.template) },
        });
        let api: Api<DynamicObject> = Api::namespaced_with(
            connection.client.clone(),
            &rollout.0.namespace,
            &rollout_resource(),
        );
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        api.patch(&rollout.0.name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| true)
            .map_err(|e| {
                self.kube_error(
                    &e,
                    connection,
                    "patch rollouts",
                    rollout,
                    "the rollback may or may not have been applied",
                )
            })
    }
}

/// The Rollout's pod template, as the ReplicaSets' are compared.
fn rollout_template(object: &DynamicObject) -> Value {
    object
        .data
        .pointer("/spec/template")
        .cloned()
        .and_then(|t| serde_json::from_value::<PodTemplateSpec>(t).ok())
        .map(|t| template_value(&t))
        .unwrap_or(Value::Null)
}

/// The revision the Rollout runs (or is rolling out): its revision annotation, else the
/// newest set.
fn current_revision_number(object: &DynamicObject, revisions: &[RolloutRevision]) -> Option<i64> {
    object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .filter(|r| revisions.iter().any(|s| s.set.revision == *r))
        .or_else(|| revisions.last().map(|s| s.set.revision))
}

fn workload_ref_error(rollout: &RolloutRef) -> BackendError {
    BackendError::new(
        BackendErrorKind::Refused,
        format!(
            "{rollout} takes its pod template from a workloadRef, so undoing it means changing \
             that workload; nothing was rolled back. Roll back the referenced Deployment's \
             template instead"
        ),
    )
}

#[async_trait]
impl DeployBackend for ArgoRolloutsBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "argo-rollouts"
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
        let rollout = self.rollout_ref(target);
        let object = self.get_rollout(&rollout, "nothing was changed").await?;
        let revisions = self.revisions(&rollout, &object).await?;
        Ok(self.deploys(target, &rollout, &object, &revisions))
    }

    async fn current(&self, target: &Target) -> Result<Option<Revision>, BackendError> {
        let rollout = self.rollout_ref(target);
        let object = self.get_rollout(&rollout, "nothing was changed").await?;
        let revisions = self.revisions(&rollout, &object).await?;
        let current = current_revision_number(&object, &revisions).map(|r| r.to_string());
        Ok(self
            .deploys(target, &rollout, &object, &revisions)
            .into_iter()
            .find(|d| d.revision.is_some() && d.revision == current)
            .map(|d| d.as_revision()))
    }

    async fn instead_of_rollback(
        &self,
        target: &Target,
        offer: &Offer,
    ) -> Result<Option<Offer>, BackendError> {
        let rollout = self.rollout_ref(target);
        let object = self.get_rollout(&rollout, "nothing was changed").await?;
        let state = State::of(&object);
        if !state.abortable() {
            return Ok(None);
        }
        let revisions = self.revisions(&rollout, &object).await?;
        let deploys = self.deploys(target, &rollout, &object, &revisions);
        let deploy_of = |number: Option<i64>| {
            let number = number?.to_string();
            deploys
                .iter()
                .find(|d| d.revision.as_deref() == Some(number.as_str()))
        };
        let canary = deploy_of(current_revision_number(&object, &revisions));
        let stable = deploy_of(
            revisions
                .iter()
                .find(|r| Some(&r.hash) == state.stable_hash.as_ref())
                .map(|r| r.set.revision),
        );
        let (Some(canary), Some(stable)) = (canary, stable) else {
            return Ok(None);
        };
        Ok(Some(Offer {
            from: canary.as_revision(),
            to: stable.as_revision(),
            suspect_version: offer.suspect_version.clone(),
            reason: format!(
                "{} is rolling out as a canary; aborting sends all traffic back to the stable {} \
                 at once",
                canary.version, stable.version
            ),
            to_url: stable.url.clone(),
            action: Action::AbortRollout,
        }))
    }

    async fn caveats(&self, target: &Target, to: &Revision) -> Result<Vec<Caveat>, BackendError> {
        let rollout = self.rollout_ref(target);
        let object = self.get_rollout(&rollout, "nothing was changed").await?;
        let revisions = self.revisions(&rollout, &object).await?;
        let deploys = self.deploys(target, &rollout, &object, &revisions);
        let note = |message: String, blocking: bool| Caveat {
            message,
            blocking,
            remedy: None,
        };
        let state = State::of(&object);
        let mut caveats = vec![note(
            self.describe(&rollout, &state, &revisions, &deploys),
            false,
        )];
        // While a canary rolls out the offer is an abort, which writes only the status; a
        // template from a workloadRef stops the rollback that may follow, at its own press.
        if object.data.pointer("/spec/workloadRef").is_some() && !state.abortable() {
            caveats.push(note(workload_ref_error(&rollout).message, true));
        }
        if !revisions
            .iter()
            .any(|r| r.set.revision.to_string() == to.id)
        {
            caveats.push(note(
                format!(
                    "Revision {} of {rollout} no longer exists (revisionHistoryLimit); deploy {} \
                     again instead.",
                    to.id, to.version
                ),
                true,
            ));
        }
        if let Some(owner) = managed_by(&object.metadata) {
            caveats.push(note(
                if state.abortable() {
                    format!(
                        "{rollout} is managed by {owner}: an abort changes only the Rollout's \
                         status, which a sync leaves alone, but the rollback after it changes \
                         the template, which the next sync replaces. Revert the change there too."
                    )
                } else {
                    format!(
                        "{rollout} is managed by {owner}: its next sync will replace the \
                         rolled-back template. Revert the change there too."
                    )
                },
                false,
            ));
        }
        Ok(caveats)
    }

    async fn rollback(&self, call: &RollbackCall) -> Result<Operation, BackendError> {
        if call.action == Action::AbortRollout {
            return self.abort(call).await;
        }
        let rollout = self.rollout_ref(&call.target);
        let object = self
            .get_rollout(&rollout, "nothing was rolled back")
            .await?;
        if object.data.pointer("/spec/workloadRef").is_some() {
            return Err(workload_ref_error(&rollout));
        }
        let revisions = self.revisions(&rollout, &object).await?;
        let running = current_revision_number(&object, &revisions).map(|r| r.to_string());
        if running.as_deref() != Some(call.from.id.as_str()) {
            return Err(BackendError::new(
                BackendErrorKind::Conflict,
                format!(
                    "{rollout} was changed to revision {} while breakwater was rolling it back \
                     from revision {}; nothing was rolled back. Check `kubectl argo rollouts get \
                     rollout {} -n {}`, then ask for a fresh plan",
                    running.unwrap_or_else(|| "?".to_owned()),
                    call.from.id,
                    rollout.0.name,
                    rollout.0.namespace
                ),
            ));
        }
        let Some(target) = revisions
            .iter()
            .find(|r| r.set.revision.to_string() == call.to.id)
        else {
            return Err(BackendError::new(
                BackendErrorKind::NotFound,
                format!(
                    "revision {} ({}) of {rollout} no longer exists: its ReplicaSet was removed \
                     (revisionHistoryLimit); nothing was rolled back. Deploy {} again through \
                     your pipeline instead",
                    call.to.id, call.to.version, call.to.version
                ),
            ));
        };
        let patched = self.patch_to(&rollout, &object, target).await?;
        tracing::info!(backend = %self.name, %rollout, revision = %call.to.id, patched, "rolling the Rollout back; following it");
        let handle = Handle {
            namespace: rollout.0.namespace.clone(),
            rollout: rollout.0.name.clone(),
            revision: call.to.id.clone(),
            hash: target.hash.clone(),
            template: target.set.template.clone(),
        };
        Ok(Operation {
            target: call.target.clone(),
            to: call.to.clone(),
            started_at: Utc::now(),
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
        let followed: Followed =
            serde_json::from_value(operation.handle.clone()).map_err(|_| {
                BackendError::new(
                    BackendErrorKind::Protocol,
                    format!(
                        "this Argo Rollouts operation on {} has no readable handle, so \
                         breakwater cannot follow it; check `kubectl argo rollouts get rollout`",
                        operation.target
                    ),
                )
            })?;
        let handle = match followed {
            Followed::Abort(handle) => return self.wait_abort(&handle, progress).await,
            Followed::Undo(handle) => handle,
        };
        let rollout = RolloutRef(DeploymentRef {
            namespace: handle.namespace.clone(),
            name: handle.rollout.clone(),
            version_from: VersionFrom::Image,
        });
        let follow = Follow {
            backend: &self.name,
            subject: &rollout,
            every: self.poll_interval,
            within: self.timeout,
            tolerated_read_failures: FOLLOW_READ_FAILURES,
        };
        let revision = &handle.revision;
        follow
            .until(
                progress,
                || async {
                    let object = self
                        .get_rollout(&rollout, "the rollback may still be running")
                        .await?;
                    if rollout_template(&object) != handle.template {
                        return Ok(Look::Done(Outcome::Failed(format!(
                            "{rollout} was changed again by someone else while the rollback to \
                             revision {revision} was followed; check `kubectl argo rollouts get \
                             rollout {} -n {}` to see what runs now",
                            rollout.0.name, rollout.0.namespace
                        ))));
                    }
                    let state = State::of(&object);
                    if !state.observed {
                        return Ok(Look::running(format!(
                            "waiting for Argo Rollouts to observe the new template of {rollout}"
                        )));
                    }
                    let said = state
                        .message
                        .as_deref()
                        .map(|m| format!(": {}", snippet(m, 300)))
                        .unwrap_or_default();
                    Ok(if state.aborted {
                        Look::Done(Outcome::Failed(format!(
                            "{rollout} aborted the rollout back to revision {revision}{said}. \
                             Traffic stays on the stable version; check `kubectl argo rollouts \
                             get rollout {} -n {}`",
                            rollout.0.name, rollout.0.namespace
                        )))
                    } else if state.phase == "Degraded" {
                        Look::Done(Outcome::Failed(format!(
                            "{rollout} is degraded rolling back to revision {revision}{said}. \
                             Check `kubectl argo rollouts get rollout {} -n {}`; the earlier \
                             revision may be broken too",
                            rollout.0.name, rollout.0.namespace
                        )))
                    } else if state.phase == "Healthy"
                        && state.stable_hash.as_deref() == Some(handle.hash.as_str())
                    {
                        Look::Done(Outcome::Succeeded(format!(
                            "{rollout} is healthy with the template of revision {revision} \
                             stable, serving all traffic"
                        )))
                    } else {
                        let step = match (&state.strategy, state.step_index) {
                            (Strategy::Canary { steps }, Some(i)) if !steps.is_empty() => {
                                format!(", step {} of {}", (i + 1).min(steps.len()), steps.len())
                            }
                            _ => String::new(),
                        };
                        Look::running(format!("{rollout} is {}{step}", state.phase.to_lowercase()))
                    })
                },
                |last| {
                    BackendError::new(
                        BackendErrorKind::Timeout,
                        format!(
                            "the rollback of {rollout} to revision {revision} did not finish \
                             within {}{}; it may still be progressing. Check `kubectl argo \
                             rollouts get rollout {} -n {}` before retrying",
                            humantime::format_duration(self.timeout),
                            last.map(|l| format!(" (last seen: {l})"))
                                .unwrap_or_default(),
                            rollout.0.name,
                            rollout.0.namespace
                        ),
                    )
                },
            )
            .await
    }
}

impl std::fmt::Debug for ArgoRolloutsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgoRolloutsBackend")
            .field("name", &self.name)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
