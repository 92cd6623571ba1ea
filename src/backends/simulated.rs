//! The simulated backend: behaves like a Kubernetes rollout without touching anything, for
//! `breakwater demo` and for tests of everything above the backend.
//!
//! A rollback is accepted at once; following it reports ReplicaSet progress spread over
//! `delay` and ends in success, or in a failure at `failure_rate` (decided when the
//! rollback starts and kept in the operation's handle, so a resumed follow ends the same
//! way). History and the current revision come from the deploy registry, as for a webhook.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::SimulatedBackendConfig;
use crate::core::backend::{
    BackendError, BackendErrorKind, Capabilities, DeployBackend, Operation, Outcome, ProgressFn,
    RollbackCall,
};
use crate::core::deploy::{Deploy, Revision, Target};

/// How many past calls are kept for inspection.
const RECENT_CALLS: usize = 20;
const REPLICAS: u32 = 3;

pub struct SimulatedBackend {
    name: String,
    delay: Duration,
    failure_rate: f64,
    calls: Mutex<Calls>,
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
}

impl SimulatedBackend {
    pub fn new(name: &str, config: &SimulatedBackendConfig) -> Self {
        Self {
            name: name.to_owned(),
            delay: config.delay,
            failure_rate: config.failure_rate,
            calls: Mutex::new(Calls::default()),
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
            own_history: false,
            resumable: true,
        }
    }

    async fn history(&self, _target: &Target) -> Result<Vec<Deploy>, BackendError> {
        Ok(Vec::new())
    }

    async fn current(&self, _target: &Target) -> Result<Option<Revision>, BackendError> {
        Ok(None)
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
            handle: serde_json::json!({ "from": call.from.version, "fails": self.fails() }),
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
            Ok(Outcome::Succeeded(format!(
                "{target} is running {to}: {REPLICAS}/{REPLICAS} pods ready"
            )))
        }
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
            },
        );
        let outcome = fresh.wait(&restored, &|_| {}).await.expect("followed");
        assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    }
}
