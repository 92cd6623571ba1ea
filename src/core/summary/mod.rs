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
    /// For a configuration change: whether the running instances have read it yet.
    pub pickup: Option<Pickup>,
}

/// Whether a configuration change made in place reached what runs. Pods read ConfigMaps
/// and Secrets through environment variables when their containers start, so a change
/// made after every running pod started is not what they run yet, and one made before
/// a restart has been live since that restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pickup {
    /// Every running instance started before the change.
    NotYet,
    /// Every running instance started after the change, the first of them at this time.
    Live(DateTime<Utc>),
    /// Some running instances started after the change, the first of them at `since`.
    Partly {
        picked: usize,
        of: usize,
        since: DateTime<Utc>,
    },
}

impl Pickup {
    /// How a change made at `changed_at` stands against the running instances' start
    /// times; `None` when nothing runs.
    pub fn of(changed_at: DateTime<Utc>, started: &[DateTime<Utc>]) -> Option<Self> {
        let after: Vec<DateTime<Utc>> = started
            .iter()
            .copied()
            .filter(|start| *start >= changed_at)
            .collect();
        let first = after.iter().min().copied();
        match first {
            _ if started.is_empty() => None,
            None => Some(Self::NotYet),
            Some(first) if after.len() == started.len() => Some(Self::Live(first)),
            Some(since) => Some(Self::Partly {
                picked: after.len(),
                of: started.len(),
                since,
            }),
        }
    }
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
    /// When each running instance of the target started, when the backend can tell: says
    /// whether configuration changes have been picked up.
    pub instances_started: Option<&'a [DateTime<Utc>]>,
}

/// The age of a deploy relative to the alert, naming the end it is measured from:
/// "finished 19 min before the alert", or "started 3 min before the alert" for a deploy
/// with no finish time, "rolling out, started …" for one still in progress.
pub fn deploy_age(deploy: &Deploy, alert: DateTime<Utc>) -> String {
    match deploy.finished_at {
        _ if deploy.is_config_change() => format!(
            "changed {}",
            relative_to_alert(deploy.effective_at(), alert)
        ),
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

    // Configuration changes compete for the suspect mark but are never what a rollback
    // returns to, nor what ran before a deploy.
    let code_history: Vec<Deploy> = input
        .history
        .iter()
        .filter(|d| !d.is_config_change())
        .cloned()
        .collect();
    let entries: Vec<DeployEntry> = window
        .iter()
        .take(MAX_DEPLOYS)
        .map(|deploy| DeployEntry {
            relative: deploy_age(deploy, alert_at),
            compare_from: (!deploy.is_config_change())
                .then(|| ran_before(&code_history, deploy))
                .flatten(),
            suspect: suspect.is_some_and(|s| std::ptr::eq(s, *deploy)),
            after_alert: deploy.started_at > alert_at,
            pickup: deploy
                .is_config_change()
                .then_some(input.instances_started)
                .flatten()
                .and_then(|started| Pickup::of(deploy.effective_at(), started)),
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
        Some(suspect) if suspect.is_config_change() => (
            None,
            Some(format!(
                "The suspect is a configuration change ({}); rolling back the code would not undo it.",
                suspect.description.as_deref().unwrap_or(&suspect.version)
            )),
        ),
        Some(suspect) => offer_for(&code_history, suspect, input.current.clone(), input.target),
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
mod tests;
