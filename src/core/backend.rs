//! The port to deployment systems. A backend reads a target's history and current
//! revision, starts a rollback to a named revision and follows it to an outcome. The core
//! never knows whether that is Argo CD, Kubernetes, Helm, a webhook or a command.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::deploy::{ConfigChange, Deploy, Revision, Target};
use super::policy::Actor;
use super::rollback::PlanId;
use super::summary::Offer;

/// What a backend can and cannot do, so the core offers only what will work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Can return to any revision in its history, not only the one before the current.
    pub any_revision: bool,
    /// Its history carries configuration differences between revisions.
    pub config_diffs: bool,
    /// Keeps its own history and knows the current revision. Without it, history and the
    /// current revision come from the deploy registry (`POST /api/v1/deploys`).
    pub own_history: bool,
    /// A rollback it started can be followed again after breakwater restarts.
    pub resumable: bool,
}

/// Something the person deciding should know before rolling back, shown in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caveat {
    pub message: String,
    /// The rollback cannot work as offered (for example Argo CD auto-sync would revert it).
    pub blocking: bool,
    /// A separately confirmed action that removes the blocker, when configuration allows it.
    pub remedy: Option<Remedy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    DisableAutoSync,
}

/// What a confirmed press asks the backend to do. A plan carries one, so that every action
/// a backend offers in place of a plain rollback (aborting a canary, restoring a
/// ConfigMap) goes through the same policy, confirmation, exactly-once start, audit and
/// follow as a rollback does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Return the target to the plan's `to` revision.
    #[default]
    Rollback,
    /// Write a ConfigMap changed in place back to the kept state `to` names, if it still
    /// holds what `from` names, then restart the workload so its pods read it.
    RestoreConfig,
    /// Stop a staged rollout (an Argo Rollouts canary or blue-green update) and send all
    /// traffic back to the stable `to` revision at once; the target keeps `from` as its
    /// template, so a rollback to `to` usually follows.
    AbortRollout,
    /// Ask Flagger to roll a Canary back: its `rollback` hook is answered 2xx once, and
    /// Flagger sends all traffic back to the primary (`to`) and scales the canary (`from`)
    /// down. No backend is called and no revision deployed; the outcome is Flagger's
    /// `Failed` event.
    RollbackCanary,
}

impl Action {
    /// The stored and audited name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rollback => "rollback",
            Self::RestoreConfig => "restore_config",
            Self::AbortRollout => "abort_rollout",
            Self::RollbackCanary => "rollback_canary",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "rollback" => Some(Self::Rollback),
            "restore_config" => Some(Self::RestoreConfig),
            "abort_rollout" => Some(Self::AbortRollout),
            "rollback_canary" => Some(Self::RollbackCanary),
            _ => None,
        }
    }

    /// Whether success means the target now runs the plan's `to` revision, so that it is
    /// recorded as a deploy and starts the rollback cooldown. An aborted rollout still
    /// holds the new template: nothing was deployed, and the rollback that should follow
    /// must not wait out a cooldown.
    pub fn changes_revision(self) -> bool {
        match self {
            Self::Rollback => true,
            // A restore changes configuration, recorded by the watch as a config change.
            // A canary rolled back by Flagger leaves the primary as it was.
            Self::RestoreConfig | Self::AbortRollout | Self::RollbackCanary => false,
        }
    }
}

/// A configuration change the backend can undo in place: a ConfigMap written back to the
/// snapshot kept from before the change, then the workload restarted so its pods read it.
/// Offered when such a change is the suspect.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreOffer {
    /// The object as people call it ("checkout-env").
    pub object: String,
    /// When the suspect change was made: the restore returns to the state before it.
    pub before: DateTime<Utc>,
    /// What the object holds now: its `id` is what the backend checks is still there
    /// (a resourceVersion) before writing.
    pub from: Revision,
    /// The kept state to write back: its `id` names the snapshot.
    pub to: Revision,
    /// The keys that will change, from now to restored, masked by the usual rules.
    pub changes: Vec<ConfigChange>,
    /// What the person should know first (a GitOps tool that will undo it).
    pub caveats: Vec<Caveat>,
}

/// Everything a backend is told when asked to roll back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackCall {
    pub plan_id: PlanId,
    pub target: Target,
    pub from: Revision,
    pub to: Revision,
    pub requested_by: Actor,
    pub reason: String,
    /// The person explicitly confirmed turning automated sync off first.
    pub disable_auto_sync: bool,
    /// What to do; backends that offer nothing but rollbacks see only `Action::Rollback`.
    pub action: Action,
}

/// The outcome of a finished rollback, in words for the on-call engineer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded(String),
    Failed(String),
}

/// A rollback the backend accepted. `handle` is what the backend needs to follow it,
/// stored with the plan so that a restarted breakwater can keep following; `finished`
/// is set when the backend finished synchronously.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub target: Target,
    pub to: Revision,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub handle: serde_json::Value,
    #[serde(default)]
    pub finished: Option<Outcome>,
}

/// Receives progress lines while a rollback is followed ("2/3 replicas updated").
pub type ProgressFn<'a> = &'a (dyn Fn(String) + Send + Sync);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendErrorKind {
    /// Credentials rejected (401/403).
    Unauthorized,
    /// The application, deployment, release or revision does not exist.
    NotFound,
    /// The backend refused the request (auto-sync on, validation failed).
    Refused,
    /// Someone else changed the target at the same time (optimistic concurrency).
    Conflict,
    Timeout,
    /// Network failure, 5xx, or a command that would not start.
    Unavailable,
    /// The backend answered something breakwater does not understand.
    Protocol,
    /// The backend cannot do this at all (for example history from a webhook).
    Unsupported,
}

impl BackendErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::Refused => "refused",
            Self::Conflict => "conflict",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Protocol => "protocol",
            Self::Unsupported => "unsupported",
        }
    }
}

/// A backend failure with a message that tells the on-call engineer what happened and
/// what to do next; it is shown to people as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BackendError {
    pub kind: BackendErrorKind,
    pub message: String,
}

impl BackendError {
    pub fn new(kind: BackendErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn timeout(after: Duration, what: &str) -> Self {
        Self::new(
            BackendErrorKind::Timeout,
            format!(
                "{what} did not finish within {}; check the deployment system before retrying",
                humantime::format_duration(after)
            ),
        )
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(BackendErrorKind::Unsupported, message)
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A deployment system breakwater can roll back with. Implementations hold their own
/// per-service settings (application names, namespaces, releases) from the configuration.
#[async_trait]
pub trait DeployBackend: Send + Sync {
    /// The configured name (`[backends.NAME]`).
    fn name(&self) -> &str;

    /// The kind (`argocd`, `kubernetes`, `argo-rollouts`, `helm`, `webhook`, `command`, `simulated`).
    fn kind(&self) -> &'static str;

    fn capabilities(&self) -> Capabilities;

    /// Newest first. Backends without `own_history` return an empty list.
    async fn history(&self, target: &Target) -> Result<Vec<Deploy>, BackendError>;

    /// What runs now. Backends without `own_history` return `Ok(None)` and the registry
    /// answers instead.
    async fn current(&self, target: &Target) -> Result<Option<Revision>, BackendError>;

    /// The action to offer in place of the summary's plain rollback, when the backend knows
    /// a better first move for what it sees now (aborting a canary still rolling out
    /// rather than rolling back through it). `Ok(None)` keeps the rollback.
    async fn instead_of_rollback(
        &self,
        _target: &Target,
        _offer: &Offer,
    ) -> Result<Option<Offer>, BackendError> {
        Ok(None)
    }

    /// What the person should know before rolling back to `to`.
    async fn caveats(&self, _target: &Target, _to: &Revision) -> Result<Vec<Caveat>, BackendError> {
        Ok(Vec::new())
    }

    /// When each running instance of the target started (for Kubernetes, its pods'
    /// containers), so a summary can say whether a configuration change made in place
    /// has been read yet. `Ok(None)` when the backend cannot tell.
    async fn instances_started(
        &self,
        _target: &Target,
    ) -> Result<Option<Vec<DateTime<Utc>>>, BackendError> {
        Ok(None)
    }

    /// The restore to offer when `change` (a configuration change made in place) is the
    /// suspect; `Ok(None)` when the backend cannot undo it (a Secret, no state kept from
    /// before it, or the object already holds that state again).
    async fn restore_offer(
        &self,
        _target: &Target,
        _change: &Deploy,
    ) -> Result<Option<RestoreOffer>, BackendError> {
        Ok(None)
    }

    /// Starts the rollback. Returning means the backend accepted it, not that it is done.
    async fn rollback(&self, call: &RollbackCall) -> Result<Operation, BackendError>;

    /// Follows an accepted rollback to its outcome, within the backend's timeout. Also
    /// called after a restart for operations of resumable backends.
    async fn wait(
        &self,
        operation: &Operation,
        progress: ProgressFn<'_>,
    ) -> Result<Outcome, BackendError>;
}

/// Finds the backend that deploys a target; implemented by the configured registry.
pub trait BackendDirectory: Send + Sync {
    fn for_target(&self, target: &Target) -> Option<std::sync::Arc<dyn DeployBackend>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_reads_back_what_it_stores() {
        for action in [
            Action::Rollback,
            Action::RestoreConfig,
            Action::AbortRollout,
            Action::RollbackCanary,
        ] {
            assert_eq!(Action::parse(action.as_str()), Some(action));
            assert_eq!(
                serde_json::to_value(action).expect("serializes"),
                serde_json::json!(action.as_str())
            );
        }
    }

    #[test]
    fn an_unknown_stored_action_is_not_taken_for_a_rollback() {
        assert_eq!(Action::parse("explode"), None);
    }
}
