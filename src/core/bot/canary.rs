//! Flagger canaries: the **Roll back canary** offer while a Canary's analysis runs, and its
//! execution. Flagger cannot be told to stop from outside; it asks. Its `rollback` hook is
//! called on every analysis iteration and rolls the canary back when it answers 2xx, so a
//! confirmed press arms that answer in the store (`POST /webhooks/flagger/rollback` takes
//! it once) and the plan is followed through the canary run's deploy, which Flagger's
//! event webhook moves to `Failed` when traffic is back on the primary. Everything the
//! follow needs is in the store (the armed request, the run's deploy, the plan's
//! operation), so a restarted breakwater picks it up where it was.

use serde::{Deserialize, Serialize};

use super::*;
use crate::core::store::CanaryRollback;

/// The author of the deploys Flagger's event webhook records (`sources::flagger`): what
/// tells a canary run apart from the service's other deploys.
pub const FLAGGER_AUTHOR: &str = "Flagger";

/// How long a press waits for Flagger to take the rollback request and report `Failed`
/// when `sources.flagger.rollback_timeout` is not set. Flagger asks once per analysis
/// interval (a minute by default), so a few intervals fit.
pub const DEFAULT_ROLLBACK_TIMEOUT: Duration = Duration::from_secs(600);

/// How often a followed canary rollback looks at the store for Flagger's answer. The
/// event webhook writes there, possibly on another replica.
const CANARY_POLL: Duration = Duration::from_millis(250);

/// A Flagger Canary object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CanaryName {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for CanaryName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The Flagger part of [`BotSettings`].
#[derive(Debug, Clone)]
pub struct FlaggerSettings {
    /// The Canary that deploys each target (`flagger_canary = "NAMESPACE/NAME"`).
    pub canaries: HashMap<Target, CanaryName>,
    /// `sources.flagger.rollback_timeout`: how long a press waits for Flagger to take the
    /// request and report the canary `Failed`. The request expires with it, so Flagger
    /// never acts on a press breakwater has already reported as failed.
    pub rollback_timeout: Duration,
}

impl Default for FlaggerSettings {
    fn default() -> Self {
        Self {
            canaries: HashMap::new(),
            rollback_timeout: DEFAULT_ROLLBACK_TIMEOUT,
        }
    }
}

/// What a canary rollback's operation handle holds, to resume following it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CanaryHandle {
    flagger_canary: CanaryName,
    armed_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

/// Whether a deploy is a Flagger canary run.
fn is_canary_run(deploy: &Deploy) -> bool {
    deploy.author.as_deref() == Some(FLAGGER_AUTHOR)
}

/// The newest canary run of the target in `history`.
fn latest_run(history: &[Deploy]) -> Option<&Deploy> {
    history
        .iter()
        .filter(|d| is_canary_run(d))
        .max_by_key(|d| d.started_at)
}

/// Steps of a run after which Flagger no longer consults its rollback hook: it is
/// already rolling back, or promoting the canary it accepted.
const PAST_ANALYSIS: [&str; 3] = [
    "canary rolling back",
    "canary Promoting",
    "canary Finalising",
];

/// The run the canary's analysis is in now, if any: the newest run, still started and
/// not past its analysis.
fn running_analysis(history: &[Deploy]) -> Option<&Deploy> {
    latest_run(history).filter(|run| {
        run.status == DeployStatus::Started
            && !PAST_ANALYSIS.iter().any(|past| {
                run.description
                    .as_deref()
                    .is_some_and(|d| d.starts_with(past))
            })
    })
}

/// The Roll back canary offer for a target deployed by `canary` whose analysis is running
/// in `history`, or `None`. `to` is what the primary serves: the newest successful deploy
/// before the run, of another version.
pub fn canary_offer(canary: &CanaryName, history: &[Deploy]) -> Option<Offer> {
    let run = running_analysis(history)?;
    let primary = history
        .iter()
        .filter(|d| {
            d.status == DeployStatus::Succeeded
                && !d.is_config_change()
                && d.version != run.version
                && d.effective_at() <= run.started_at
        })
        .max_by_key(|d| d.effective_at())
        .map_or_else(
            || Revision {
                id: "primary".to_owned(),
                version: "the primary".to_owned(),
            },
            Deploy::as_revision,
        );
    let progress = run
        .description
        .clone()
        .unwrap_or_else(|| "canary in progress".to_owned());
    Some(Offer {
        from: run.as_revision(),
        to: primary,
        suspect_version: run.version.clone(),
        reason: format!("Flagger canary {canary}: {progress}"),
        to_url: None,
        action: Action::RollbackCanary,
    })
}

impl Bot {
    /// The Canary that deploys `target`, when one is configured.
    fn flagger_canary(&self, target: &Target) -> Option<&CanaryName> {
        self.inner.settings.flagger.canaries.get(target)
    }

    /// Offers Roll back canary in place of the summary's offer while the target's Canary
    /// is in its analysis: stopping the canary is the first move, and it needs no backend.
    pub(super) fn offer_canary_rollback(
        &self,
        target: &Target,
        history: &[Deploy],
        deploys: &mut DeploySummary,
    ) {
        let Some(canary) = self.flagger_canary(target) else {
            return;
        };
        if let Some(offer) = canary_offer(canary, history) {
            deploys.offer = Some(offer);
            deploys.no_offer_reason = None;
        }
    }

    /// Runs a confirmed Roll back canary: checks the canary is still in the run it was
    /// offered for, audits, arms Flagger's rollback hook and follows.
    pub(super) async fn execute_canary_rollback(&self, plan: RollbackPlan) {
        self.update_plan_message(&plan).await;
        let Some(canary) = self.flagger_canary(&plan.target).cloned() else {
            self.finish(
                &plan,
                Outcome::Failed(format!(
                    "{} has no flagger_canary configured any more. Nothing was changed.",
                    plan.target
                )),
            )
            .await;
            return;
        };
        let (history, _) = self.history(&plan.target, HistoryScope::Latest(20)).await;
        let run = latest_run(&history);
        let in_analysis = running_analysis(&history);
        if in_analysis.map(|r| r.as_revision().id) != Some(plan.from.id.clone()) {
            self.canary_went_stale(&plan, &canary, run.cloned(), in_analysis.cloned())
                .await;
            return;
        }
        let started = details::CanaryRollbackStarted {
            plan: plan.id.to_string(),
            from: &plan.from,
            to: &plan.to,
            action: plan.action.as_str(),
            backend: "flagger",
            kind: "flagger",
            namespace: &canary.namespace,
            canary: &canary.name,
        };
        let Some(actor) = self
            .audit_started(&plan, &started, "did not ask Flagger to roll back")
            .await
        else {
            return;
        };
        let armed_at = self.now();
        let expires_at = armed_at
            + chrono::Duration::from_std(self.inner.settings.flagger.rollback_timeout)
                .unwrap_or(chrono::Duration::minutes(10));
        let request = CanaryRollback {
            namespace: canary.namespace.clone(),
            name: canary.name.clone(),
            plan_id: plan.id.to_string(),
            requested_by: actor.name().to_owned(),
            armed_at,
            expires_at,
            taken_at: None,
        };
        if let Err(error) = self.inner.store.arm_canary_rollback(&request).await {
            tracing::error!(%error, plan = %plan.id, "could not arm the canary rollback");
            self.finish(
                &plan,
                Outcome::Failed(format!(
                    "breakwater could not store the rollback request for canary {canary}, so Flagger will not be told to roll back. Nothing was changed."
                )),
            )
            .await;
            return;
        }
        let armed = self.inner.audit.append(
            self.inner
                .audit
                .entry(actions::CANARY_ROLLBACK_ARMED)
                .actor(&actor)
                .target(&plan.target)
                .detail(&details::CanaryRollbackArmed {
                    plan: plan.id.to_string(),
                    namespace: &canary.namespace,
                    canary: &canary.name,
                    from: &plan.from,
                    expires_at,
                }),
        );
        if let Err(error) = armed.await {
            // rollback.started is durable; Flagger's take is audited on its own.
            tracing::error!(%error, plan = %plan.id, "could not audit canary_rollback.armed");
        }
        let handle = CanaryHandle {
            flagger_canary: canary,
            armed_at,
            expires_at,
        };
        let operation = Operation {
            target: plan.target.clone(),
            to: plan.to.clone(),
            started_at: armed_at,
            handle: serde_json::to_value(&handle).unwrap_or_default(),
            finished: None,
        };
        if let Err(error) = self
            .inner
            .store
            .set_plan_operation(&plan.id, &operation)
            .await
        {
            tracing::warn!(%error, "could not store the canary rollback operation");
        }
        self.follow_canary(&plan, handle).await;
    }

    /// Follows an armed canary rollback to Flagger's `Failed` event, or to the timeout.
    async fn follow_canary(&self, plan: &RollbackPlan, handle: CanaryHandle) {
        let canary = &handle.flagger_canary;
        let timeout = human_span(
            (handle.expires_at - handle.armed_at)
                .to_std()
                .unwrap_or_default()
                .as_secs(),
        );
        let mut taken_reported = false;
        let outcome = loop {
            let request = match self
                .inner
                .store
                .canary_rollback(&canary.namespace, &canary.name)
                .await
            {
                Ok(request) => request.filter(|r| r.plan_id == plan.id.to_string()),
                Err(error) => {
                    tracing::warn!(%error, plan = %plan.id, "could not read the canary rollback request; trying again");
                    None
                }
            };
            let taken_at = request.as_ref().and_then(|r| r.taken_at);
            if let (Some(at), false) = (taken_at, taken_reported) {
                taken_reported = true;
                let line = format!(
                    "Flagger took the rollback request at {}; waiting for it to report the canary Failed.",
                    at.format("%H:%M:%S UTC")
                );
                self.audit_progress(plan, &line).await;
                let mut shown = plan.clone();
                shown.outcome = Some(line);
                self.update_plan_message(&shown).await;
            }
            let run = self
                .inner
                .store
                .latest_deploy_of_version(&plan.target, &plan.from.version)
                .await
                .ok()
                .flatten()
                .filter(is_canary_run);
            match run.as_ref().map(|r| r.status) {
                Some(DeployStatus::Failed) => {
                    let how = if taken_at.is_some() {
                        "Flagger rolled the canary back".to_owned()
                    } else {
                        // Flagger's own analysis got there first; the request is withdrawn
                        // so that it cannot stop the next run.
                        self.withdraw_canary_rollback(plan, canary).await;
                        "Flagger's own analysis failed the canary before it took the request"
                            .to_owned()
                    };
                    break Outcome::Succeeded(format!(
                        "{how}: canary {canary} Failed, all traffic is back on the primary ({}) and {} is scaled down.",
                        plan.to.version, plan.from.version
                    ));
                }
                Some(DeployStatus::Succeeded) => {
                    self.withdraw_canary_rollback(plan, canary).await;
                    break Outcome::Failed(format!(
                        "Flagger promoted {} before it took the rollback request: it now serves all traffic of {}. Roll back through the deployment system if it must go.",
                        plan.from.version, plan.target
                    ));
                }
                _ => {}
            }
            if self.now() >= handle.expires_at {
                if taken_at.is_none() {
                    // Expired by the clock the bot reads; taken back so that a hook call
                    // arriving now is not answered yes after the press was reported failed.
                    self.withdraw_canary_rollback(plan, canary).await;
                }
                break Outcome::Failed(match taken_at {
                    None => format!(
                        "Flagger did not call breakwater's rollback hook for canary {canary} within {timeout}, so nothing was rolled back and the request was withdrawn. Check that the Canary's analysis has the `webhooks:` stanza with `type: rollback` and the URL of /webhooks/flagger/rollback (README, Flagger)."
                    ),
                    Some(at) => format!(
                        "Flagger took the rollback request at {} but reported no Failed event for canary {canary} within {timeout}. Check the Canary's status (kubectl describe canary) and that Flagger's event webhook points at /webhooks/flagger/events.",
                        at.format("%H:%M:%S UTC")
                    ),
                });
            }
            tokio::time::sleep(CANARY_POLL).await;
        };
        self.finish(plan, outcome).await;
    }

    /// Takes back a request Flagger has not taken, so that it cannot stop a later run or
    /// be answered after the press was reported: it is stored again already expired (the
    /// hook answers only unexpired requests).
    async fn withdraw_canary_rollback(&self, plan: &RollbackPlan, canary: &CanaryName) {
        let store = &self.inner.store;
        let armed = store
            .canary_rollback(&canary.namespace, &canary.name)
            .await
            .ok()
            .flatten()
            .filter(|r| r.plan_id == plan.id.to_string() && r.taken_at.is_none());
        if let Some(armed) = armed {
            let withdrawn = CanaryRollback {
                expires_at: armed.armed_at,
                ..armed
            };
            if let Err(error) = store.arm_canary_rollback(&withdrawn).await {
                tracing::warn!(%error, plan = %plan.id, "could not withdraw the canary rollback request; it expires on its own");
            }
        }
    }

    /// The canary is no longer in the run the plan was offered for: nothing is armed. A
    /// run in its analysis again gets a fresh Roll back canary; a promoted one a rollback.
    async fn canary_went_stale(
        &self,
        plan: &RollbackPlan,
        canary: &CanaryName,
        run: Option<Deploy>,
        in_analysis: Option<Deploy>,
    ) {
        let now = self.now();
        let what = match (&run, &in_analysis) {
            (_, Some(fresh)) => format!(
                "canary {canary} is in a new run ({}) since this was offered",
                fresh.version
            ),
            (Some(run), None) if run.version == plan.from.version => match run.status {
                DeployStatus::Failed => format!(
                    "canary {canary} already failed and Flagger rolled {} back",
                    plan.from.version
                ),
                DeployStatus::Succeeded => format!(
                    "Flagger already promoted {} (canary {canary} Succeeded)",
                    plan.from.version
                ),
                DeployStatus::Started => format!(
                    "canary {canary} is past its analysis ({})",
                    run.description.as_deref().unwrap_or("in progress")
                ),
            },
            _ => format!(
                "canary {canary} has no run of {} in progress",
                plan.from.version
            ),
        };
        let outcome = format!("{what}. Nothing was changed.");
        let patch = PlanPatch {
            finished_at: Some(now),
            outcome: Some(outcome),
            ..PlanPatch::default()
        };
        let result: Result<(), BotError> = async {
            let details = crate::core::audit::details_value(&details::CanaryRunChanged {
                plan: plan.id.to_string(),
                action: plan.action.as_str(),
                expected_from: &plan.from,
                current: run.as_ref().map(Deploy::as_revision),
                current_status: run.as_ref().map(|r| r.status.as_str()),
                to: &plan.to,
            });
            let Some(stale) = self.record_stale(plan, &patch, now, details).await? else {
                return Ok(());
            };
            let fresh = match (&run, in_analysis) {
                (_, Some(_)) => {
                    let (history, _) = self.history(&plan.target, HistoryScope::Latest(20)).await;
                    canary_offer(canary, &history)
                }
                (Some(run), None)
                    if run.status == DeployStatus::Succeeded
                        && plan.to.id != "primary"
                        && self.inner.backends.for_target(&plan.target).is_some() =>
                {
                    Some(Offer {
                        from: run.as_revision(),
                        to: plan.to.clone(),
                        suspect_version: run.version.clone(),
                        reason: format!(
                            "fresh plan after Flagger promoted {} on {}",
                            run.version, plan.target
                        ),
                        to_url: None,
                        action: Action::Rollback,
                    })
                }
                _ => None,
            };
            if let Some(offer) = fresh {
                let caveats = if offer.action == Action::Rollback {
                    FreshCaveats::FromBackend
                } else {
                    FreshCaveats::None
                };
                self.post_fresh_plan(&stale, &offer, stale.started_by.clone(), caveats)
                    .await?;
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::error!(%error, plan = %plan.id, "could not record the stale canary rollback");
        }
        lock(&self.inner.running).remove(&plan.id);
    }

    /// Resumes a canary rollback adopted after a restart: it is followed from the request
    /// in the store; one that never got armed is interrupted (nothing was asked of
    /// Flagger).
    pub(super) async fn resume_canary_rollback(&self, plan: RollbackPlan) {
        let handle = plan
            .operation
            .clone()
            .and_then(|operation| serde_json::from_value::<CanaryHandle>(operation.handle).ok());
        let handle = match handle {
            Some(handle) => Some(handle),
            // Armed, but stopped before the operation was stored.
            None => match self.flagger_canary(&plan.target).cloned() {
                Some(canary) => self
                    .inner
                    .store
                    .canary_rollback(&canary.namespace, &canary.name)
                    .await
                    .ok()
                    .flatten()
                    .filter(|r| r.plan_id == plan.id.to_string())
                    .map(|r| CanaryHandle {
                        flagger_canary: canary,
                        armed_at: r.armed_at,
                        expires_at: r.expires_at,
                    }),
                None => None,
            },
        };
        match handle {
            Some(handle) => {
                self.update_plan_message(&plan).await;
                self.follow_canary(&plan, handle).await;
            }
            None => {
                self.interrupt(
                    &plan,
                    "breakwater restarted before it asked Flagger to roll the canary back; nothing was changed. Press again if the canary must still go.",
                )
                .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 10, minute, 0)
            .single()
            .expect("valid time")
    }

    fn deploy(version: &str, minute: u32, status: DeployStatus, flagger: bool) -> Deploy {
        Deploy {
            target: Target::new(
                ServiceName::parse("podinfo").expect("name"),
                Environment::parse("production").expect("environment"),
            ),
            version: version.to_owned(),
            previous_version: None,
            revision: None,
            commit: None,
            author: Some(if flagger { FLAGGER_AUTHOR } else { "ci" }.to_owned()),
            description: flagger.then(|| "canary Progressing, 20 % of traffic".to_owned()),
            url: None,
            started_at: at(minute),
            finished_at: (status != DeployStatus::Started).then(|| at(minute + 1)),
            status,
            changes: Vec::new(),
            config_changes: Vec::new(),
            source: DeploySource::Api,
        }
    }

    fn canary() -> CanaryName {
        CanaryName {
            namespace: "production".into(),
            name: "podinfo".into(),
        }
    }

    #[test]
    fn a_canary_in_its_analysis_is_offered_back_to_the_primary() {
        let history = vec![
            deploy("5d7f8c9b6c", 20, DeployStatus::Started, true),
            deploy("4a1b2c3d4e", 5, DeployStatus::Succeeded, true),
        ];
        let offer = canary_offer(&canary(), &history).expect("offered");
        assert_eq!(offer.action, Action::RollbackCanary);
        assert_eq!(offer.from.version, "5d7f8c9b6c");
        assert_eq!(offer.to.version, "4a1b2c3d4e");
        assert_eq!(
            offer.reason,
            "Flagger canary production/podinfo: canary Progressing, 20 % of traffic"
        );
    }

    #[test]
    fn a_finished_canary_is_not_offered() {
        for status in [DeployStatus::Succeeded, DeployStatus::Failed] {
            let history = vec![
                deploy("5d7f8c9b6c", 20, status, true),
                deploy("4a1b2c3d4e", 5, DeployStatus::Succeeded, true),
            ];
            assert_eq!(canary_offer(&canary(), &history), None, "{status:?}");
        }
    }

    #[test]
    fn a_canary_past_its_analysis_is_not_offered() {
        let mut promoting = deploy("5d7f8c9b6c", 20, DeployStatus::Started, true);
        promoting.description =
            Some("canary Promoting: the primary takes the canary's spec".into());
        assert_eq!(canary_offer(&canary(), &[promoting]), None);
    }

    #[test]
    fn a_deploy_not_reported_by_flagger_is_not_a_canary_run() {
        let history = vec![deploy("5d7f8c9b6c", 20, DeployStatus::Started, false)];
        assert_eq!(canary_offer(&canary(), &history), None);
    }

    #[test]
    fn without_an_earlier_success_the_primary_is_named_as_such() {
        let history = vec![deploy("5d7f8c9b6c", 20, DeployStatus::Started, true)];
        let offer = canary_offer(&canary(), &history).expect("offered");
        assert_eq!(offer.to.version, "the primary");
    }
}
