//! Correlation of an alert with the deploys to its target: which deploys happened in the
//! lookback window before it (and which are still rolling out), how long before the alert
//! each one finished, which one is the suspect, and which revision a rollback would return
//! to. Pure functions of their inputs, so the rules are tested without a store or backend.

use chrono::{DateTime, Utc};

use super::alert::{Alert, Severity};
use super::backend::{Action, Caveat};
use super::deploy::{Deploy, DeployStatus, Revision, ServiceName, Target};

/// At most this many commits are listed per deploy.
pub const MAX_COMMITS: usize = 5;
/// At most this many deploys are listed in a summary.
pub const MAX_DEPLOYS: usize = 8;

/// What the bot knows about an alert's target, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub alert_title: String,
    pub alert_started_at: DateTime<Utc>,
    pub severity: Severity,
    pub link: Option<String>,
    pub body: SummaryBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SummaryBody {
    /// The alert names no configured service.
    UnknownService {
        known: Vec<ServiceName>,
        /// The alert's labels a service is read from (`service=ledger`), as it carried
        /// them, so the operator sees why nothing matched.
        looked_at: Vec<(String, String)>,
    },
    /// The service is known but the environment could not be told.
    UnknownEnvironment {
        service: ServiceName,
        known: Vec<String>,
    },
    Deploys(Box<DeploySummary>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeploySummary {
    pub target: Target,
    /// Newest first.
    pub entries: Vec<DeployEntry>,
    /// Deploys in the window that did not fit in `entries`.
    pub more: usize,
    /// The newest deploy before the window, named when the window is empty.
    pub last_before_window: Option<Deploy>,
    pub lookback: std::time::Duration,
    /// What runs now, if known.
    pub current: Option<Revision>,
    /// The rollback the bot offers, if any.
    pub offer: Option<Offer>,
    /// Why no rollback is offered, when none is.
    pub no_offer_reason: Option<String>,
    /// Said when the latest rollout failed but runs (the suspect), with the revision
    /// that ran healthy before it.
    pub failed_rollout: Option<String>,
    pub caveats: Vec<Caveat>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeployEntry {
    pub deploy: Deploy,
    /// Finished (or started, while rolling out) relative to the alert, in words that say
    /// which end of the deploy is meant: "finished 19 min before the alert".
    pub relative: String,
    /// What ran before this deploy, as a git ref (its commit, else its version), for a
    /// from → to compare link.
    pub compare_from: Option<String>,
    pub suspect: bool,
    pub after_alert: bool,
}

/// A rollback worth offering: from what runs now to the deploy before the suspect.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub from: Revision,
    pub to: Revision,
    /// The suspect deploy's version, for the reason line.
    pub suspect_version: String,
    pub reason: String,
    /// The deploy being returned to, for its link.
    pub to_url: Option<String>,
    /// What the button does: a rollback unless the backend offered another action.
    pub action: Action,
}

/// Inputs for [`summarize`].
#[derive(Debug, Clone)]
pub struct SummaryInput<'a> {
    pub alert: &'a Alert,
    pub target: &'a Target,
    /// Every known deploy of the target, newest first by start; enough history to find the
    /// predecessor of the suspect (the registry merged with the backend's own history).
    pub history: &'a [Deploy],
    pub lookback: std::time::Duration,
    pub current: Option<Revision>,
    pub caveats: Vec<Caveat>,
}

/// The age of a deploy relative to the alert, naming the end it is measured from:
/// "finished 19 min before the alert", or "started 3 min before the alert" for a deploy
/// with no finish time, "rolling out, started …" for one still in progress.
pub fn deploy_age(deploy: &Deploy, alert: DateTime<Utc>) -> String {
    match deploy.finished_at {
        _ if deploy.is_in_progress() => format!(
            "rolling out, started {}",
            relative_to_alert(deploy.started_at, alert)
        ),
        Some(finished) => format!("finished {}", relative_to_alert(finished, alert)),
        None => format!("started {}", relative_to_alert(deploy.started_at, alert)),
    }
}

/// The ref that ran before `deploy`: the deploy its report names as `previous_version`,
/// else the newest successful one that finished before it started. Its commit when known,
/// else its version (a tag, as most pipelines name them).
fn ran_before(history: &[Deploy], deploy: &Deploy) -> Option<String> {
    let earlier = |d: &&Deploy| {
        d.status == DeployStatus::Succeeded
            && d.version != deploy.version
            && d.effective_at() <= deploy.started_at
    };
    match &deploy.previous_version {
        Some(previous) if *previous != deploy.version => Some(
            history
                .iter()
                .find(|d| d.version == *previous)
                .and_then(|d| d.commit.clone())
                .unwrap_or_else(|| previous.clone()),
        ),
        _ => history
            .iter()
            .find(earlier)
            .map(|d| d.commit.clone().unwrap_or_else(|| d.version.clone())),
    }
}

/// "18 min before the alert", "2 h 5 min before the alert", "3 min after the alert".
pub fn relative_to_alert(at: DateTime<Utc>, alert: DateTime<Utc>) -> String {
    let seconds = (alert - at).num_seconds();
    if seconds.abs() < 60 {
        return "less than a minute from the alert".to_owned();
    }
    let words = human_span(seconds.unsigned_abs());
    if seconds > 0 {
        format!("{words} before the alert")
    } else {
        format!("{words} after the alert")
    }
}

/// A length of time in the words people use in an incident: "45 s", "18 min",
/// "2 h 5 min", "3 days".
pub fn human_span(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..172_800 => {
            let minutes = (seconds % 3600) / 60;
            if minutes == 0 {
                format!("{} h", seconds / 3600)
            } else {
                format!("{} h {minutes} min", seconds / 3600)
            }
        }
        _ => format!("{} days", seconds / 86_400),
    }
}

/// Builds the summary for a firing alert about a known target.
pub fn summarize(input: SummaryInput<'_>) -> Summary {
    let alert_at = input.alert.started_at;
    // The alert's time came from outside: shift it without risking an overflow panic.
    let window_start = crate::core::clock::saturating_sub(
        alert_at,
        chrono::Duration::from_std(input.lookback).unwrap_or(chrono::Duration::hours(6)),
    );
    let in_window = |d: &Deploy| {
        d.is_in_progress() || d.started_at > alert_at || d.effective_at() >= window_start
    };
    let window: Vec<&Deploy> = input.history.iter().filter(|d| in_window(d)).collect();

    // A rollout that failed or got stuck but changed what runs (a Deployment past its
    // progress deadline, a `helm upgrade --wait` that timed out with its manifests applied)
    // is the prime suspect: it is what `kubectl rollout undo` and `helm rollback` undo.
    let live_failure = window
        .iter()
        .filter(|d| d.started_at <= alert_at)
        .filter(|d| is_live_failure(d, input.current.as_ref()))
        .max_by_key(|d| d.effective_at())
        .copied();
    let suspect = live_failure.or_else(|| {
        window
            .iter()
            .filter(|d| d.started_at <= alert_at)
            .filter(|d| {
                d.is_in_progress()
                    || (d.status == DeployStatus::Succeeded
                        && d.finished_at.is_none_or(|f| f <= alert_at))
            })
            .max_by_key(|d| d.effective_at())
            .copied()
    });

    let entries: Vec<DeployEntry> = window
        .iter()
        .take(MAX_DEPLOYS)
        .map(|deploy| DeployEntry {
            relative: deploy_age(deploy, alert_at),
            compare_from: ran_before(input.history, deploy),
            suspect: suspect.is_some_and(|s| std::ptr::eq(s, *deploy)),
            after_alert: deploy.started_at > alert_at,
            deploy: (*deploy).clone(),
        })
        .collect();
    let more = window.len().saturating_sub(entries.len());

    let last_before_window = if window.is_empty() {
        input
            .history
            .iter()
            .find(|d| d.effective_at() < window_start)
            .cloned()
    } else {
        None
    };

    let (offer, no_offer_reason) = match suspect {
        None if window.is_empty() => (
            None,
            Some(format!(
                "No deploys to {} in the {} before the alert.",
                input.target,
                human_span(input.lookback.as_secs())
            )),
        ),
        None => (
            None,
            Some("No deploy finished before the alert started, so none is suspect.".to_owned()),
        ),
        Some(suspect) => offer_for(input.history, suspect, input.current.clone(), input.target),
    };
    let failed_rollout = live_failure.map(|failed| {
        let healthy_before = offer
            .as_ref()
            .map(|o| {
                format!(
                    " {} is the last revision that ran healthy before it.",
                    o.to.version
                )
            })
            .unwrap_or_default();
        format!(
            "The latest rollout, {}, failed ({}) and is what runs now.{healthy_before}",
            failed.version,
            deploy_age(failed, alert_at)
        )
    });

    Summary {
        alert_title: input.alert.title.clone(),
        alert_started_at: alert_at,
        severity: input.alert.severity,
        link: input.alert.link.clone(),
        body: SummaryBody::Deploys(Box::new(DeploySummary {
            target: input.target.clone(),
            entries,
            more,
            last_before_window,
            lookback: input.lookback,
            current: input.current,
            offer,
            no_offer_reason,
            failed_rollout,
            caveats: input.caveats,
        })),
    }
}

/// A deploy whose rollout failed (or got stuck) and which is nevertheless what runs now:
/// it changed what runs, unlike a CI deploy that failed before touching anything.
fn is_live_failure(deploy: &Deploy, current: Option<&Revision>) -> bool {
    deploy.status == DeployStatus::Failed
        && current.is_some_and(|c| {
            c.version == deploy.version || deploy.revision.as_deref() == Some(c.id.as_str())
        })
}

/// The rollback from what runs now to the newest successful deploy before the suspect.
fn offer_for(
    history: &[Deploy],
    suspect: &Deploy,
    current: Option<Revision>,
    target: &Target,
) -> (Option<Offer>, Option<String>) {
    let Some(current) = current else {
        return (
            None,
            Some(format!(
                "The current revision of {target} is unknown, so no rollback is offered."
            )),
        );
    };
    // The report's own `previous_version` says what ran before the suspect; the deploy
    // before it by start time may be an older one (a report missed, a redeploy).
    if let Some(previous) = &suspect.previous_version
        && *previous != suspect.version
    {
        let named = history.iter().find(|d| {
            d.status == DeployStatus::Succeeded
                && d.version == *previous
                && !std::ptr::eq(*d, suspect)
        });
        return match named {
            Some(named) => offer_to(named, suspect, current, target),
            None if history.iter().any(|d| {
                d.status == DeployStatus::Succeeded
                    && d.version != suspect.version
                    && d.effective_at() <= suspect.started_at
            }) =>
            {
                (
                    None,
                    Some(format!(
                        "The report of {} names {previous} as the version before it, but no successful deploy of {previous} to {target} is in the history, so no rollback is offered.",
                        suspect.version
                    )),
                )
            }
            None if *previous != current.version => (
                Some(Offer {
                    from: current,
                    to: Revision::version(previous.clone()),
                    suspect_version: suspect.version.clone(),
                    reason: format!(
                        "{} is the suspect; {previous} ran before it",
                        suspect.version
                    ),
                    to_url: None,
                    action: Action::Rollback,
                }),
                None,
            ),
            None => (
                None,
                Some(format!(
                    "{target} already runs {previous}, the version before the suspect."
                )),
            ),
        };
    }
    let predecessor = history.iter().find(|d| {
        d.status == DeployStatus::Succeeded
            && d.version != suspect.version
            && d.effective_at() <= suspect.started_at
            && !std::ptr::eq(*d, suspect)
    });
    let Some(predecessor) = predecessor else {
        return match &suspect.previous_version {
            Some(previous) if *previous != current.version => (
                Some(Offer {
                    from: current,
                    to: Revision::version(previous.clone()),
                    suspect_version: suspect.version.clone(),
                    reason: format!(
                        "{} is the suspect; {previous} ran before it",
                        suspect.version
                    ),
                    to_url: None,
                    action: Action::Rollback,
                }),
                None,
            ),
            _ => (
                None,
                Some(format!(
                    "No earlier successful deploy of {target} is known to roll back to."
                )),
            ),
        };
    };
    offer_to(predecessor, suspect, current, target)
}

/// The rollback from what runs now back to `predecessor`, unless that already runs.
fn offer_to(
    predecessor: &Deploy,
    suspect: &Deploy,
    current: Revision,
    target: &Target,
) -> (Option<Offer>, Option<String>) {
    let to = predecessor.as_revision();
    if to.version == current.version {
        return (
            None,
            Some(format!(
                "{target} already runs {}, the version before the suspect.",
                to.version
            )),
        );
    }
    (
        Some(Offer {
            reason: format!(
                "{} is the suspect; {} ran before it",
                suspect.version, to.version
            ),
            from: current,
            to,
            suspect_version: suspect.version.clone(),
            to_url: predecessor.url.clone(),
            action: Action::Rollback,
        }),
        None,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::core::alert::{AlertSource, AlertStatus};
    use crate::core::deploy::{DeploySource, Environment};

    fn at(minutes_from_alert: i64) -> DateTime<Utc> {
        alert_time() + chrono::Duration::minutes(minutes_from_alert)
    }

    fn alert_time() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-29T03:00:00Z")
            .expect("valid")
            .with_timezone(&Utc)
    }

    fn target() -> Target {
        Target::new(
            ServiceName::parse("checkout").expect("ok"),
            Environment::parse("production").expect("ok"),
        )
    }

    fn deploy(version: &str, finished_minutes_from_alert: i64) -> Deploy {
        Deploy {
            target: target(),
            version: version.into(),
            previous_version: None,
            revision: None,
            commit: Some(format!("{version}-sha")),
            author: Some("ada".into()),
            description: None,
            url: None,
            started_at: at(finished_minutes_from_alert - 3),
            finished_at: Some(at(finished_minutes_from_alert)),
            status: DeployStatus::Succeeded,
            changes: vec![],
            config_changes: vec![],
            source: DeploySource::Api,
        }
    }

    fn alert() -> Alert {
        Alert {
            source: AlertSource::Alertmanager,
            service: None,
            environment: None,
            severity: Severity::Critical,
            status: AlertStatus::Firing,
            title: "HighErrorRate".into(),
            description: String::new(),
            started_at: alert_time(),
            ended_at: None,
            labels: BTreeMap::new(),
            fingerprint: "f".into(),
            link: None,
        }
    }

    fn summarize_history(history: &[Deploy], current: Option<&str>) -> DeploySummary {
        let alert = alert();
        let target = target();
        let summary = summarize(SummaryInput {
            alert: &alert,
            target: &target,
            history,
            lookback: std::time::Duration::from_secs(6 * 3600),
            current: current.map(Revision::version),
            caveats: vec![],
        });
        match summary.body {
            SummaryBody::Deploys(deploys) => *deploys,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(
            relative_to_alert(at(-18), alert_time()),
            "18 min before the alert"
        );
        assert_eq!(
            relative_to_alert(at(-125), alert_time()),
            "2 h 5 min before the alert"
        );
        assert_eq!(
            relative_to_alert(at(3), alert_time()),
            "3 min after the alert"
        );
        assert_eq!(
            relative_to_alert(alert_time(), alert_time()),
            "less than a minute from the alert"
        );
    }

    #[test]
    fn the_latest_deploy_before_the_alert_is_the_suspect_and_its_predecessor_the_target() {
        let history = [
            deploy("v42", -18),
            deploy("v41", -200),
            deploy("v40", -2000),
        ];
        let summary = summarize_history(&history, Some("v42"));
        assert!(summary.entries[0].suspect);
        assert_eq!(
            summary.entries[0].relative,
            "finished 18 min before the alert"
        );
        let offer = summary.offer.expect("offer");
        assert_eq!(
            (offer.from.version.as_str(), offer.to.version.as_str()),
            ("v42", "v41")
        );
    }

    #[test]
    fn a_deploy_still_rolling_out_is_the_suspect() {
        let mut rolling = deploy("v43", 5);
        rolling.started_at = at(-2);
        rolling.finished_at = None;
        rolling.status = DeployStatus::Started;
        let history = [rolling, deploy("v42", -60)];
        let summary = summarize_history(&history, Some("v43"));
        assert!(summary.entries[0].suspect);
        assert!(summary.entries[0].relative.starts_with("rolling out"));
        assert_eq!(summary.offer.expect("offer").to.version, "v42");
    }

    #[test]
    fn deploys_after_the_alert_are_listed_but_never_suspect() {
        let history = [deploy("v43", 10), deploy("v42", -18), deploy("v41", -100)];
        let summary = summarize_history(&history, Some("v43"));
        assert!(summary.entries[0].after_alert && !summary.entries[0].suspect);
        assert!(summary.entries[1].suspect);
        let offer = summary.offer.expect("offer");
        assert_eq!(
            (offer.from.version.as_str(), offer.to.version.as_str()),
            ("v43", "v41")
        );
    }

    #[test]
    fn failed_deploys_are_not_suspects_nor_targets() {
        let mut failed = deploy("v43", -5);
        failed.status = DeployStatus::Failed;
        let history = [failed, deploy("v42", -30), deploy("v41", -300)];
        let summary = summarize_history(&history, Some("v42"));
        assert!(!summary.entries[0].suspect && summary.entries[1].suspect);
        assert_eq!(summary.offer.expect("offer").to.version, "v41");
    }

    #[test]
    fn a_failed_rollout_that_runs_is_the_prime_suspect_and_the_offer_is_the_last_healthy_one() {
        let mut stuck = deploy("v1.2.0", -10);
        stuck.status = DeployStatus::Failed;
        let history = [stuck, deploy("v1.1.0", -120), deploy("v1.0.0", -2000)];
        let summary = summarize_history(&history, Some("v1.2.0"));
        assert!(summary.entries[0].suspect && !summary.entries[1].suspect);
        let offer = summary.offer.expect("offer");
        assert_eq!(
            (offer.from.version.as_str(), offer.to.version.as_str()),
            ("v1.2.0", "v1.1.0")
        );
        let said = summary.failed_rollout.expect("said");
        assert!(
            said.starts_with("The latest rollout, v1.2.0, failed"),
            "{said}"
        );
        assert!(
            said.contains("v1.1.0 is the last revision that ran healthy"),
            "{said}"
        );
    }

    #[test]
    fn an_empty_window_names_the_last_deploy_outside_it() {
        let history = [deploy("v41", -60 * 24)];
        let summary = summarize_history(&history, Some("v41"));
        assert!(summary.entries.is_empty());
        assert_eq!(
            summary.last_before_window.map(|d| d.version).as_deref(),
            Some("v41")
        );
        assert!(summary.offer.is_none());
        assert!(
            summary
                .no_offer_reason
                .expect("reason")
                .starts_with("No deploys to checkout production")
        );
    }

    #[test]
    fn no_offer_without_a_known_current_revision() {
        let history = [deploy("v42", -18), deploy("v41", -200)];
        let summary = summarize_history(&history, None);
        assert!(summary.offer.is_none());
    }

    #[test]
    fn no_offer_when_the_target_already_runs_the_predecessor() {
        let history = [deploy("v42", -18), deploy("v41", -200)];
        let summary = summarize_history(&history, Some("v41"));
        assert!(summary.offer.is_none());
    }

    #[test]
    fn the_previous_version_reported_with_the_suspect_is_used_without_history() {
        let mut only = deploy("v42", -18);
        only.previous_version = Some("v41".into());
        let summary = summarize_history(&[only], Some("v42"));
        assert_eq!(summary.offer.expect("offer").to.version, "v41");
    }

    #[test]
    fn the_offered_target_follows_the_reported_previous_version_over_start_order() {
        // v41 was reported after v42 (a late report, or a redeploy of an old version), but
        // v43's report says it replaced v42.
        let mut suspect = deploy("v43", -10);
        suspect.previous_version = Some("v42".into());
        let history = [suspect, deploy("v41", -60), deploy("v42", -120)];
        let summary = summarize_history(&history, Some("v43"));
        let offer = summary.offer.expect("offer");
        assert_eq!(offer.to.version, "v42");
        assert_eq!(offer.reason, "v43 is the suspect; v42 ran before it");
    }

    #[test]
    fn a_reported_previous_version_missing_from_history_is_named_instead_of_another_offer() {
        let mut suspect = deploy("v43", -10);
        suspect.previous_version = Some("v42".into());
        let history = [suspect, deploy("v41", -60)];
        let summary = summarize_history(&history, Some("v43"));
        assert!(summary.offer.is_none());
        let reason = summary.no_offer_reason.expect("a reason");
        assert!(
            reason.contains("names v42 as the version before it") && reason.contains("v42"),
            "{reason}"
        );
    }

    #[test]
    fn an_alert_at_the_edge_of_time_does_not_panic_the_summary() {
        let mut alert = alert();
        alert.started_at = DateTime::<Utc>::MIN_UTC;
        let target = target();
        let history = [deploy("v42", -18)];
        let summary = summarize(SummaryInput {
            alert: &alert,
            target: &target,
            history: &history,
            lookback: std::time::Duration::from_secs(6 * 3600),
            current: None,
            caveats: vec![],
        });
        assert!(matches!(summary.body, SummaryBody::Deploys(_)));
    }

    #[test]
    fn long_windows_are_cut_with_a_count() {
        let history: Vec<Deploy> = (0..12)
            .map(|i| deploy(&format!("v{}", 100 - i), -10 - i * 10))
            .collect();
        let summary = summarize_history(&history, Some("v100"));
        assert_eq!(summary.entries.len(), MAX_DEPLOYS);
        assert_eq!(summary.more, 4);
    }

    #[test]
    fn an_age_names_the_end_of_the_deploy_it_is_measured_from() {
        let finished = deploy("v42", -19);
        assert_eq!(
            deploy_age(&finished, alert_time()),
            "finished 19 min before the alert"
        );
        let mut unfinished = deploy("v42", -19);
        unfinished.finished_at = None;
        unfinished.started_at = at(-25);
        assert_eq!(
            deploy_age(&unfinished, alert_time()),
            "started 25 min before the alert"
        );
        unfinished.status = DeployStatus::Started;
        assert_eq!(
            deploy_age(&unfinished, alert_time()),
            "rolling out, started 25 min before the alert"
        );
    }

    #[test]
    fn each_entry_knows_what_ran_before_it_for_a_compare_link() {
        let mut v43 = deploy("v43", -10);
        v43.previous_version = Some("v42".into());
        let history = [v43, deploy("v42", -60), deploy("v41", -120)];
        let summary = summarize_history(&history, Some("v43"));
        let from: Vec<Option<&str>> = summary
            .entries
            .iter()
            .map(|e| e.compare_from.as_deref())
            .collect();
        assert_eq!(from, [Some("v42-sha"), Some("v41-sha"), None]);
    }
}
