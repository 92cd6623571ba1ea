//! The simulated backend: behaves like a Kubernetes rollout without touching anything, for
//! `breakwater demo` and for tests of everything above the backend.
//!
//! A rollback is accepted at once; following it reports ReplicaSet progress spread over
//! `delay` and ends in success, or in a failure at `failure_rate` (decided when the
//! rollback starts and kept in the operation's handle, so a resumed follow ends the same
//! way). History and the current revision come from the deploy registry, as for a webhook.
//!
//! With `canary`, one service is shown as an Argo Rollouts canary halfway through, as the
//! `argo-rollouts` backend shows one: its new version is what runs (the Rollout's
//! template), the summary says the step and share of traffic, and the first button is
//! Abort rollout. An abort is followed as traffic drains back to the stable version; the
//! canary then stays aborted, still the template, until the rollback offered after it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{SimulatedBackendConfig, SimulatedCanary};
use crate::core::backend::{
    Action, BackendError, BackendErrorKind, Capabilities, Caveat, DeployBackend, Operation,
    Outcome, ProgressFn, RollbackCall,
};
use crate::core::deploy::{Deploy, Revision, Target};
use crate::core::summary::Offer;

/// How many past calls are kept for inspection.
const RECENT_CALLS: usize = 20;
const REPLICAS: u32 = 3;

pub struct SimulatedBackend {
    name: String,
    delay: Duration,
    failure_rate: f64,
    calls: Mutex<Calls>,
    canary: Option<SimulatedCanary>,
    /// Where the simulated canary stands; in memory, like the rest of the simulation.
    canary_phase: Mutex<CanaryPhase>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CanaryPhase {
    RollingOut,
    Aborted,
    RolledBack,
}

#[derive(Default)]
struct Calls {
    count: u64,
    recent: VecDeque<RollbackCall>,
}

#[derive(Deserialize)]
struct Handle {
    from: String,
    fails: bool,
    #[serde(default)]
    action: Action,
}

impl SimulatedBackend {
    pub fn new(name: &str, config: &SimulatedBackendConfig) -> Self {
        Self {
            name: name.to_owned(),
            delay: config.delay,
            failure_rate: config.failure_rate,
            calls: Mutex::new(Calls::default()),
            canary: config.canary.clone(),
            canary_phase: Mutex::new(CanaryPhase::RollingOut),
        }
    }

    /// The simulated canary of `target`'s service, with where it stands.
    fn canary_of(&self, target: &Target) -> Option<(&SimulatedCanary, CanaryPhase)> {
        let canary = self
            .canary
            .as_ref()
            .filter(|c| c.service == target.service)?;
        let phase = *crate::sync::lock(&self.canary_phase);
        Some((canary, phase))
    }

    fn set_canary_phase(&self, target: &Target, phase: CanaryPhase) {
        if self.canary_of(target).is_some() {
            *crate::sync::lock(&self.canary_phase) = phase;
        }
    }

    /// How many rollbacks were started since this backend was built.
    pub fn rollback_count(&self) -> u64 {
        self.lock().count
    }

    /// The most recent rollback calls, oldest first (at most twenty).
    pub fn recent_calls(&self) -> Vec<RollbackCall> {
        self.lock().recent.iter().cloned().collect()
    }

    pub fn last_call(&self) -> Option<RollbackCall> {
        self.lock().recent.back().cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        crate::sync::lock(&self.calls)
    }

    fn fails(&self) -> bool {
        // `random()` is in [0, 1): a rate of 0.0 never fails and 1.0 always does.
        rand::random::<f64>() < self.failure_rate
    }
}

/// A ReplicaSet name like Kubernetes would give it, stable for a service and version.
fn replica_set(target: &Target, version: &str) -> String {
    let digest = Sha256::digest(format!("{}/{version}", target.service.key()));
    format!("{}-{}", target.service.key(), &hex::encode(digest)[..10])
}

#[async_trait]
impl DeployBackend for SimulatedBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "simulated"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            any_revision: true,
            config_diffs: false,
            // Only to say what a simulated canary runs; history stays the registry's.
            own_history: self.canary.is_some(),
            resumable: true,
        }
    }

    async fn history(&self, _target: &Target) -> Result<Vec<Deploy>, BackendError> {
        Ok(Vec::new())
    }

    async fn current(&self, target: &Target) -> Result<Option<Revision>, BackendError> {
        // A canary's template is its new version, aborted or not; after the rollback the
        // registry's record of it answers.
        Ok(match self.canary_of(target) {
            Some((canary, CanaryPhase::RollingOut | CanaryPhase::Aborted)) => {
                Some(Revision::version(canary.version.clone()))
            }
            _ => None,
        })
    }

    async fn instead_of_rollback(
        &self,
        target: &Target,
        offer: &Offer,
    ) -> Result<Option<Offer>, BackendError> {
        let Some((canary, CanaryPhase::RollingOut)) = self.canary_of(target) else {
            return Ok(None);
        };
        if offer.from.version != canary.version {
            return Ok(None);
        }
        Ok(Some(Offer {
            to: Revision::version(canary.stable.clone()),
            reason: format!(
                "{} is rolling out as a canary; aborting sends all traffic back to the stable {} \
                 at once",
                canary.version, canary.stable
            ),
            action: Action::AbortRollout,
            ..offer.clone()
        }))
    }

    async fn caveats(&self, target: &Target, _to: &Revision) -> Result<Vec<Caveat>, BackendError> {
        let message = match self.canary_of(target) {
            Some((canary, CanaryPhase::RollingOut)) => format!(
                "simulated rollout of {} (canary): in progress, moving from stable {} to {}, \
                 step {} of {}, {} % of traffic on {}.",
                target,
                canary.stable,
                canary.version,
                canary.step,
                canary.steps,
                canary.weight,
                canary.version
            ),
            Some((canary, CanaryPhase::Aborted)) => format!(
                "simulated rollout of {} (canary): the rollout of {} was aborted, so all traffic \
                 is back on the stable version {}; the Rollout still holds {}'s template and will \
                 try it again if it is retried.",
                target, canary.version, canary.stable, canary.version
            ),
            _ => return Ok(Vec::new()),
        };
        Ok(vec![Caveat {
            message,
            blocking: false,
            remedy: None,
        }])
    }

    async fn rollback(&self, call: &RollbackCall) -> Result<Operation, BackendError> {
        {
            let mut calls = self.lock();
            calls.count += 1;
            if calls.recent.len() == RECENT_CALLS {
                calls.recent.pop_front();
            }
            calls.recent.push_back(call.clone());
        }
        Ok(Operation {
            target: call.target.clone(),
            to: call.to.clone(),
            started_at: Utc::now(),
            handle: serde_json::json!({
                "from": call.from.version,
                "fails": self.fails(),
                "action": call.action,
            }),
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
        let handle: Handle = serde_json::from_value(operation.handle.clone()).map_err(|_| {
            BackendError::new(
                BackendErrorKind::Protocol,
                format!(
                    "this simulated rollback of {} has no readable handle; nothing real was \
                     changed, start a new one",
                    operation.target
                ),
            )
        })?;
        let target = &operation.target;
        let to = &operation.to.version;
        if handle.action == Action::AbortRollout {
            return Ok(self.follow_abort(operation, &handle, progress).await);
        }
        let new_rs = replica_set(target, to);
        let old_rs = replica_set(target, &handle.from);
        let mut steps: Vec<String> = (1..=REPLICAS)
            .map(|ready| format!("Scaling up new ReplicaSet {new_rs} ({to}) {ready}/{REPLICAS}"))
            .collect();
        steps.push(format!(
            "Waiting for readiness checks: {REPLICAS}/{REPLICAS} pods ready"
        ));
        steps.push(format!(
            "Scaling down old ReplicaSet {old_rs} ({}) 0/{REPLICAS}",
            handle.from
        ));
        let pause = self.delay / (steps.len() as u32 + 1);
        // A failing rollout gets one new pod up, then the second never becomes ready.
        let shown = if handle.fails { 2 } else { steps.len() };
        for step in steps.into_iter().take(shown) {
            tokio::time::sleep(pause).await;
            progress(step);
        }
        tokio::time::sleep(pause).await;
        if handle.fails {
            let pod = format!("{new_rs}-{}", &new_rs[new_rs.len() - 5..]);
            Ok(Outcome::Failed(format!(
                "ReplicaSet {new_rs} ({to}) did not become ready: pod {pod} is in \
                 CrashLoopBackOff (readiness probe failed: HTTP probe failed with statuscode: \
                 503); 1/{REPLICAS} new pods ready, the old ReplicaSet {old_rs} ({}) is still \
                 serving",
                handle.from
            )))
        } else {
            self.set_canary_phase(target, CanaryPhase::RolledBack);
            Ok(Outcome::Succeeded(format!(
                "{target} is running {to}: {REPLICAS}/{REPLICAS} pods ready"
            )))
        }
    }
}

impl SimulatedBackend {
    /// An abort as the `argo-rollouts` backend follows one: the canary's weight drops to
    /// zero, its pods go, and the stable ReplicaSet serves everything.
    async fn follow_abort(
        &self,
        operation: &Operation,
        handle: &Handle,
        progress: ProgressFn<'_>,
    ) -> Outcome {
        let target = &operation.target;
        let stable = &operation.to.version;
        let canary = &handle.from;
        let stable_rs = replica_set(target, stable);
        let canary_rs = replica_set(target, canary);
        let steps = [
            format!("Rollout aborted: setting the canary weight of {canary} to 0 %"),
            format!("Scaling down canary ReplicaSet {canary_rs} ({canary}) 0/1"),
            format!("Stable ReplicaSet {stable_rs} ({stable}) {REPLICAS}/{REPLICAS} pods ready"),
        ];
        let pause = self.delay / (steps.len() as u32 + 1);
        let shown = if handle.fails { 1 } else { steps.len() };
        for step in steps.into_iter().take(shown) {
            tokio::time::sleep(pause).await;
            progress(step);
        }
        tokio::time::sleep(pause).await;
        if handle.fails {
            return Outcome::Failed(format!(
                "the traffic router did not take the canary weight of {canary} to 0 % (simulated \
                 failure); the Rollout is aborted, check it before acting again"
            ));
        }
        self.set_canary_phase(target, CanaryPhase::Aborted);
        Outcome::Succeeded(format!(
            "the stable ReplicaSet {stable_rs} ({stable}) serves all traffic with \
             {REPLICAS}/{REPLICAS} pods available, the canary {canary} gets none"
        ))
    }
}

impl std::fmt::Debug for SimulatedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedBackend")
            .field("name", &self.name)
            .field("delay", &self.delay)
            .field("failure_rate", &self.failure_rate)
            .field("rollback_count", &self.rollback_count())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::core::backend::Action;
    use crate::core::deploy::{Environment, ServiceName};
    use crate::core::policy::{Actor, Principal};
    use crate::core::rollback::PlanId;

    fn backend(failure_rate: f64) -> SimulatedBackend {
        SimulatedBackend::new(
            "sim",
            &SimulatedBackendConfig {
                delay: Duration::from_millis(20),
                failure_rate,
                canary: None,
            },
        )
    }

    fn call(to: &str) -> RollbackCall {
        RollbackCall {
            plan_id: PlanId::generate(),
            target: Target::new(
                ServiceName::parse("checkout").expect("name"),
                Environment::parse("production").expect("env"),
            ),
            from: Revision::version("v1.4.0"),
            to: Revision::version(to),
            requested_by: Actor::new(Principal::parse("console:alice").expect("p"), "Alice"),
            reason: "HighErrorRate".into(),
            disable_auto_sync: false,
            action: Action::Rollback,
        }
    }

    async fn run(backend: &SimulatedBackend, call: &RollbackCall) -> (Outcome, Vec<String>) {
        let lines = Mutex::new(Vec::new());
        let record = |line: String| lines.lock().expect("lock").push(line);
        let operation = backend.rollback(call).await.expect("accepted");
        assert!(operation.finished.is_none());
        let outcome = backend.wait(&operation, &record).await.expect("followed");
        (outcome, lines.into_inner().expect("lock"))
    }

    #[tokio::test]
    async fn never_failing_rollbacks_succeed_with_progress() {
        let backend = backend(0.0);
        let (outcome, lines) = run(&backend, &call("v1.3.2")).await;
        assert_eq!(
            outcome,
            Outcome::Succeeded("checkout production is running v1.3.2: 3/3 pods ready".into())
        );
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(lines[0].starts_with("Scaling up new ReplicaSet checkout-"));
        assert!(lines[0].ends_with("(v1.3.2) 1/3"), "{lines:?}");
        assert!(lines[4].starts_with("Scaling down old ReplicaSet"));
    }

    #[tokio::test]
    async fn always_failing_rollbacks_fail_realistically() {
        let backend = backend(1.0);
        let (outcome, lines) = run(&backend, &call("v1.3.2")).await;
        let Outcome::Failed(message) = outcome else {
            panic!("expected a failure, got {outcome:?}");
        };
        assert!(message.contains("CrashLoopBackOff"), "{message}");
        assert_eq!(lines.len(), 2, "{lines:?}");
    }

    #[tokio::test]
    async fn calls_are_counted_and_the_latest_kept() {
        let backend = backend(0.0);
        for i in 0..25 {
            backend
                .rollback(&call(&format!("v1.{i}")))
                .await
                .expect("accepted");
        }
        assert_eq!(backend.rollback_count(), 25);
        let recent = backend.recent_calls();
        assert_eq!(recent.len(), RECENT_CALLS);
        assert_eq!(recent[0].to.version, "v1.5");
        assert_eq!(backend.last_call().expect("last").to.version, "v1.24");
    }

    #[tokio::test]
    async fn a_resumed_operation_ends_as_decided_at_the_start() {
        let backend = backend(1.0);
        let operation = backend.rollback(&call("v1.3.2")).await.expect("accepted");
        let stored = serde_json::to_string(&operation).expect("json");
        let restored: Operation = serde_json::from_str(&stored).expect("json");
        let fresh = SimulatedBackend::new(
            "sim",
            &SimulatedBackendConfig {
                delay: Duration::ZERO,
                failure_rate: 0.0,
                canary: None,
            },
        );
        let outcome = fresh.wait(&restored, &|_| {}).await.expect("followed");
        assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    }

    fn canary_backend() -> SimulatedBackend {
        SimulatedBackend::new(
            "canary",
            &SimulatedBackendConfig {
                delay: Duration::from_millis(20),
                failure_rate: 0.0,
                canary: Some(SimulatedCanary {
                    service: ServiceName::parse("checkout").expect("name"),
                    stable: "v1.3.2".into(),
                    version: "v1.4.0".into(),
                    step: 3,
                    steps: 8,
                    weight: 20,
                }),
            },
        )
    }

    #[tokio::test]
    async fn a_canary_offers_an_abort_then_stays_the_template_until_rolled_back() {
        let backend = canary_backend();
        let target = call("v1.3.2").target;
        let offer = Offer {
            from: Revision::version("v1.4.0"),
            to: Revision::version("v1.3.2"),
            suspect_version: "v1.4.0".into(),
            reason: "v1.4.0 is the suspect".into(),
            to_url: None,
            action: Action::Rollback,
        };
        let abort = backend
            .instead_of_rollback(&target, &offer)
            .await
            .expect("read")
            .expect("an abort is offered");
        assert_eq!(abort.action, Action::AbortRollout);
        assert_eq!(abort.to.version, "v1.3.2");

        let (outcome, lines) = run(
            &backend,
            &RollbackCall {
                action: Action::AbortRollout,
                ..call("v1.3.2")
            },
        )
        .await;

        assert!(
            matches!(&outcome, Outcome::Succeeded(d) if d.contains("serves all traffic")),
            "{outcome:?}"
        );
        assert!(
            lines[0].contains("canary weight of v1.4.0 to 0 %"),
            "{lines:?}"
        );
        assert_eq!(
            backend.current(&target).await.expect("current"),
            Some(Revision::version("v1.4.0")),
            "an aborted canary is still the template"
        );
        assert_eq!(
            backend
                .instead_of_rollback(&target, &offer)
                .await
                .expect("read"),
            None,
            "once aborted, the rollback is what is left"
        );
        run(&backend, &call("v1.3.2")).await;
        assert_eq!(backend.current(&target).await.expect("current"), None);
    }
}
