//! Incidents after the fact: one alert group (one service and environment, from its first
//! alert to its resolution or to being marked not deploy-related) told as one story. The
//! timeline is computed from the audit log, which stays the source of truth, plus the
//! store's deploys before the alert; nothing here is invented, and a chain that does not
//! verify is said at the top. Rendering goes to a core [`Message`] (chat), Markdown (the
//! postmortem draft) and JSON.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::core::audit::{AuditLog, AuditQuery, AuditRecord, actions};
use crate::core::deploy::{ConfigChange, Deploy, DeploySource};
use crate::core::message::{Message, RichText, Section, Tone};
use crate::core::rollback::RollbackPlan;
use crate::core::store::{AlertGroup, DeployQuery, IncidentHistory, Store, StoreError};
use crate::core::summary::human_span;

/// How far before the first alert deploys and config changes count as suspects.
const SUSPECT_WINDOW_HOURS: i64 = 24;
/// At most this many deploys before the alert are listed.
const SUSPECT_DEPLOYS: u32 = 3;
/// Audit records are read backwards in pages of this size until the group's opening.
const PAGE: u32 = 500;

/// One line of a timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    /// Seconds from the first alert; negative for what came before it.
    pub offset_seconds: i64,
    /// Who acted: a person's name, or `breakwater`, or the deploy's author.
    pub actor: String,
    /// The audit action (`rollback.requested`) or `deploy` for a deploy from the store.
    pub kind: String,
    pub text: String,
    /// The audit record's sequence number; `None` for a deploy from the store.
    pub seq: Option<i64>,
}

impl TimelineEntry {
    /// "+4 min", "-2 h 5 min", "+0 s".
    pub fn offset(&self) -> String {
        let sign = if self.offset_seconds < 0 { "-" } else { "+" };
        format!("{sign}{}", human_span(self.offset_seconds.unsigned_abs()))
    }
}

/// The durations of an incident, in seconds; `None` where the event did not happen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Durations {
    pub alert_to_summary: Option<u64>,
    pub alert_to_first_press: Option<u64>,
    pub press_to_rollback_finished: Option<u64>,
    pub rollback_finished_to_resolved: Option<u64>,
    pub alert_to_resolved: Option<u64>,
}

/// The first audit record of each kind that a duration is measured between.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Milestones {
    pub first_alert: Option<(i64, DateTime<Utc>)>,
    pub summary_posted: Option<(i64, DateTime<Utc>)>,
    pub first_press: Option<(i64, DateTime<Utc>)>,
    pub rollback_finished: Option<(i64, DateTime<Utc>)>,
    pub resolved: Option<(i64, DateTime<Utc>)>,
    /// Marked not deploy-related, which ends the incident when it comes before the
    /// resolution (a resolution after it is then not the incident's).
    pub dismissed: Option<(i64, DateTime<Utc>)>,
}

/// The audit actions the milestones are read from: all a reader of many incidents needs.
pub const MILESTONE_ACTIONS: [&str; 6] = [
    actions::ALERT_RECEIVED,
    actions::ALERT_RESOLVED,
    actions::SUMMARY_POSTED,
    actions::SUMMARY_DISMISSED,
    actions::ROLLBACK_REQUESTED,
    actions::ROLLBACK_SUCCEEDED,
];

/// The milestones of one incident from its audit records in sequence order; the one place
/// durations are measured from, for the timeline, the histograms and the console's
/// figures alike. `resolved_at` is when the store marked the group resolved: the group
/// resolved with the first resolution recorded at or after it (the notification that
/// brought its firing count to zero).
pub fn milestones(records: &[AuditRecord], resolved_at: Option<DateTime<Utc>>) -> Milestones {
    let mut marks = Milestones::default();
    for record in records {
        let mark = Some((record.seq, record.at));
        let slot = match record.action.as_str() {
            actions::ALERT_RECEIVED => &mut marks.first_alert,
            actions::SUMMARY_POSTED => &mut marks.summary_posted,
            actions::ROLLBACK_REQUESTED => &mut marks.first_press,
            actions::ROLLBACK_SUCCEEDED => &mut marks.rollback_finished,
            actions::SUMMARY_DISMISSED => &mut marks.dismissed,
            actions::ALERT_RESOLVED => match resolved_at {
                Some(resolved_at) if record.at >= resolved_at => &mut marks.resolved,
                _ => continue,
            },
            _ => continue,
        };
        if slot.is_none() {
            *slot = mark;
        }
    }
    if let (Some((dismissed, _)), Some((resolved, _))) = (marks.dismissed, marks.resolved)
        && dismissed < resolved
    {
        marks.resolved = None;
    }
    marks
}

impl Milestones {
    pub fn durations(&self) -> Durations {
        let between =
            |from: &Option<(i64, DateTime<Utc>)>, to: &Option<(i64, DateTime<Utc>)>| match (
                from, to,
            ) {
                (Some((_, from)), Some((_, to))) => {
                    Some((*to - *from).num_seconds().max(0).unsigned_abs())
                }
                _ => None,
            };
        Durations {
            alert_to_summary: between(&self.first_alert, &self.summary_posted),
            alert_to_first_press: between(&self.first_alert, &self.first_press),
            press_to_rollback_finished: between(&self.first_press, &self.rollback_finished),
            rollback_finished_to_resolved: between(&self.rollback_finished, &self.resolved),
            alert_to_resolved: between(&self.first_alert, &self.resolved),
        }
    }
}

/// Whether the audit chain verified when the timeline was computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ChainState {
    Verified,
    Broken {
        problem: String,
    },
    /// Not checked (metrics observation reads the timeline without recomputing the chain).
    Unchecked,
}

/// An incident with its timeline, suspect change and durations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    /// The alert group's id.
    pub id: i64,
    pub title: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub opened_at: DateTime<Utc>,
    /// When and how it ended; `None` while it is open.
    pub ended: Option<Ended>,
    pub alert_count: i64,
    pub chain: ChainState,
    pub timeline: Vec<TimelineEntry>,
    /// The deploy the summary named as suspect, with its commits and masked config diff.
    pub suspect: Option<Deploy>,
    pub durations: Durations,
    #[serde(skip)]
    pub milestones: Milestones,
}

/// How an incident ended: its alerts resolved, or someone marked it not deploy-related
/// (which ends it even if its alerts fire on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ended {
    pub at: DateTime<Utc>,
    pub how: Ending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Resolved,
    NotDeployRelated,
}

/// What the timeline is computed from.
#[derive(Debug, Clone)]
pub struct IncidentFacts {
    pub group: AlertGroup,
    /// Every audit record of the group and its plans, in sequence order.
    pub records: Vec<AuditRecord>,
    /// Deploys of the target before the first alert, any order.
    pub deploys: Vec<Deploy>,
    pub chain: ChainState,
}

/// Reads the facts of alert group `id` from the store and the audit log; `None` for an
/// unknown id. `verify` recomputes the whole chain first (the reader's view); metrics
/// observation skips it.
pub async fn load(
    store: &Arc<dyn Store>,
    audit: &AuditLog,
    id: i64,
    verify: bool,
) -> Result<Option<Incident>, StoreError> {
    let Some(group) = store.alert_group(id).await? else {
        return Ok(None);
    };
    let chain = if verify {
        match audit.verify().await?.problem {
            None => ChainState::Verified,
            Some(problem) => ChainState::Broken {
                problem: problem.to_string(),
            },
        }
    } else {
        ChainState::Unchecked
    };
    let plans = store.plans_for_group(id).await?;
    let records = group_records(audit, &group, &plans).await?;
    let deploys = match &group.target {
        Some(target) => {
            store
                .deploys(&DeployQuery {
                    service: Some(target.service.clone()),
                    environment: Some(target.environment.clone()),
                    since: Some(group.opened_at - chrono::Duration::hours(SUSPECT_WINDOW_HOURS)),
                    before: Some(group.opened_at),
                    limit: SUSPECT_DEPLOYS,
                })
                .await?
        }
        None => Vec::new(),
    };
    Ok(Some(build(IncidentFacts {
        group,
        records,
        deploys,
        chain,
    })))
}

/// The id of the latest incident, of `service` when given.
pub async fn latest(
    store: &Arc<dyn Store>,
    service: Option<&str>,
) -> Result<Option<i64>, StoreError> {
    // Bounded: the latest incident of a service is among the most recent groups.
    let groups = store.recent_alert_groups(200).await?;
    Ok(groups
        .iter()
        .filter(|g| {
            service.is_none_or(|service| {
                g.target
                    .as_ref()
                    .is_some_and(|t| t.service.as_str().eq_ignore_ascii_case(service))
            })
        })
        .max_by_key(|g| (g.opened_at, g.id))
        .map(|g| g.id))
}

/// The group's records: those naming the group, and those naming one of its plans. Read
/// newest first, filtered by the group's service, back to a little before its opening.
async fn group_records(
    audit: &AuditLog,
    group: &AlertGroup,
    plans: &[RollbackPlan],
) -> Result<Vec<AuditRecord>, StoreError> {
    let plan_ids: HashSet<String> = plans.iter().map(|p| p.id.to_string()).collect();
    let oldest = group.opened_at - chrono::Duration::minutes(5);
    let mut kept = Vec::new();
    let mut before_seq = None;
    loop {
        let page = audit
            .search(&AuditQuery {
                service: group.target.as_ref().map(|t| t.service.to_string()),
                before_seq,
                limit: PAGE,
                ..AuditQuery::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        before_seq = Some(last.seq);
        let done = last.at < oldest;
        kept.extend(page.into_iter().filter(|r| {
            let details = r.details_value();
            details.get("group").and_then(serde_json::Value::as_i64) == Some(group.id)
                || details
                    .get("plan")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|plan| plan_ids.contains(plan))
        }));
        if done {
            break;
        }
    }
    kept.sort_by_key(|r| r.seq);
    Ok(kept)
}

/// Computes the incident from its facts.
pub fn build(facts: IncidentFacts) -> Incident {
    let IncidentFacts {
        group,
        records,
        deploys,
        chain,
    } = facts;
    let milestones = milestones(&records, group.resolved_at);
    let suspect_version = records
        .iter()
        .find(|r| r.action == actions::SUMMARY_POSTED)
        .and_then(|r| text(r, "suspect"));
    let confirmed_plans: HashSet<String> = records
        .iter()
        .filter(|r| r.action == actions::ROLLBACK_CONFIRMATION_REQUESTED)
        .filter_map(|r| text(r, "plan"))
        .collect();
    let start = milestones
        .first_alert
        .map(|(_, at)| at)
        .unwrap_or(group.opened_at);
    let suspect = suspect_version.as_ref().and_then(|version| {
        deploys
            .iter()
            .find(|d| &d.version == version)
            .cloned()
            .map(|mut d| {
                d.config_changes = d
                    .config_changes
                    .into_iter()
                    .map(ConfigChange::masked)
                    .collect();
                d
            })
    });
    let mut timeline: Vec<TimelineEntry> = deploys
        .iter()
        .map(|deploy| {
            let kind = if deploy.source == DeploySource::Rollback {
                "Rollback to"
            } else {
                "Deploy"
            };
            let mut text = format!("{kind} {} of {}", deploy.version, deploy.target);
            if let Some(previous) = &deploy.previous_version {
                let _ = write!(text, " (from {previous})");
            }
            if !deploy.changes.is_empty() {
                let _ = write!(text, ", {} commit(s)", deploy.changes.len());
            }
            if !deploy.config_changes.is_empty() {
                let keys: Vec<&str> = deploy
                    .config_changes
                    .iter()
                    .map(|c| c.key.as_str())
                    .collect();
                let _ = write!(text, "; config changed: {}", keys.join(", "));
            }
            if suspect_version.as_deref() == Some(deploy.version.as_str()) {
                text.push_str(" — suspect");
            }
            TimelineEntry {
                at: deploy.started_at,
                offset_seconds: (deploy.started_at - start).num_seconds(),
                actor: deploy
                    .author
                    .clone()
                    .unwrap_or_else(|| "unknown".to_owned()),
                kind: "deploy".to_owned(),
                text,
                seq: None,
            }
        })
        .collect();
    let mut first_alert_seen = false;
    for record in &records {
        let Some(text) = describe(record, &mut first_alert_seen, &milestones, &confirmed_plans)
        else {
            continue;
        };
        timeline.push(TimelineEntry {
            at: record.at,
            offset_seconds: (record.at - start).num_seconds(),
            actor: if record.actor_name.is_empty() {
                "breakwater".to_owned()
            } else {
                record.actor_name.clone()
            },
            kind: record.action.clone(),
            text,
            seq: Some(record.seq),
        });
    }
    // Deploys first (they happened before), then the records in chain order.
    timeline.sort_by_key(|e| (e.seq.is_some(), e.seq, e.at));
    Incident {
        id: group.id,
        title: incident_title(&group),
        service: group.target.as_ref().map(|t| t.service.to_string()),
        environment: group.target.as_ref().map(|t| t.environment.to_string()),
        opened_at: group.opened_at,
        ended: match (milestones.resolved, milestones.dismissed) {
            (Some((_, at)), _) => Some(Ended {
                at,
                how: Ending::Resolved,
            }),
            (None, Some((_, at))) => Some(Ended {
                at,
                how: Ending::NotDeployRelated,
            }),
            (None, None) => None,
        },
        alert_count: group.alert_count,
        chain,
        timeline,
        suspect,
        durations: milestones.durations(),
        milestones,
    }
}

/// "HighErrorRate on checkout production".
fn incident_title(group: &AlertGroup) -> String {
    match &group.target {
        Some(target) => format!("{} on {target}", group.title),
        None => group.title.clone(),
    }
}

fn text(record: &AuditRecord, key: &str) -> Option<String> {
    record
        .details_value()
        .get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// A version out of a detail that is either a string or a revision object.
fn version(record: &AuditRecord, key: &str) -> String {
    let details = record.details_value();
    match details.get(key) {
        Some(serde_json::Value::String(version)) => version.clone(),
        Some(value) => value
            .get("version")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?")
            .to_owned(),
        None => "?".to_owned(),
    }
}

/// The words for one audit record, or `None` for records that add nothing to the story.
fn describe(
    record: &AuditRecord,
    first_alert_seen: &mut bool,
    milestones: &Milestones,
    confirmed_plans: &HashSet<String>,
) -> Option<String> {
    let title = text(record, "title").unwrap_or_default();
    let from_to = || format!("{} → {}", version(record, "from"), version(record, "to"));
    Some(match record.action.as_str() {
        actions::ALERT_RECEIVED => {
            let severity = text(record, "severity").unwrap_or_default();
            if std::mem::replace(first_alert_seen, true) {
                format!("Grouped alert: {title} ({severity})")
            } else {
                format!("First alert: {title} ({severity})")
            }
        }
        actions::ALERT_RESOLVED => {
            if milestones.resolved.map(|(seq, _)| seq) == Some(record.seq) {
                format!("Alert resolved: {title}; incident resolved")
            } else {
                format!("Alert resolved: {title}")
            }
        }
        actions::SUMMARY_POSTED => {
            let platform = text(record, "platform").unwrap_or_default();
            match text(record, "suspect") {
                Some(suspect) => format!("Summary posted on {platform}, suspect {suspect}"),
                None => format!("Summary posted on {platform}"),
            }
        }
        actions::SUMMARY_DISMISSED => {
            let ends = milestones.resolved.is_none()
                && milestones.dismissed.map(|(seq, _)| seq) == Some(record.seq);
            if ends {
                "Marked not deploy-related; incident ended".to_owned()
            } else {
                "Marked not deploy-related".to_owned()
            }
        }
        actions::ROLLBACK_OFFERED => format!("Rollback offered: {}", from_to()),
        actions::ROLLBACK_REQUESTED => format!("Pressed Roll back ({})", from_to()),
        actions::ROLLBACK_DENIED => format!(
            "Refused: {}",
            text(record, "message").unwrap_or_else(|| "no reason recorded".to_owned())
        ),
        actions::ROLLBACK_CONFIRMATION_REQUESTED => format!("Asked to confirm {}", from_to()),
        actions::ROLLBACK_APPROVED => format!("Approved {} (first of two people)", from_to()),
        actions::ROLLBACK_CANCELLED => "Rollback cancelled".to_owned(),
        actions::ROLLBACK_EXPIRED => "Rollback offer expired".to_owned(),
        actions::ROLLBACK_STARTED => {
            // On platforms with a Confirm step the start is the confirm press.
            let confirmed = text(record, "plan").is_some_and(|p| confirmed_plans.contains(&p));
            format!(
                "{} on {} ({})",
                if confirmed {
                    "Confirmed; rollback started"
                } else {
                    "Rollback started"
                },
                text(record, "backend").unwrap_or_default(),
                from_to()
            )
        }
        actions::ROLLBACK_PROGRESS => format!(
            "Backend progress: {}",
            text(record, "line").unwrap_or_default()
        ),
        actions::ROLLBACK_BACKEND_CALL => {
            let backend = text(record, "backend").unwrap_or_default();
            let details = record.details_value();
            if details.get("ok").and_then(serde_json::Value::as_bool) == Some(true) {
                format!("Backend {backend} accepted the rollback")
            } else {
                format!(
                    "Backend {backend} refused the rollback: {}",
                    text(record, "error").unwrap_or_default()
                )
            }
        }
        actions::ROLLBACK_SUCCEEDED | actions::ROLLBACK_FAILED => {
            let took = record
                .details_value()
                .get("took_ms")
                .and_then(serde_json::Value::as_u64)
                .map(|ms| format!(" in {}", human_span(ms / 1000)))
                .unwrap_or_default();
            let outcome = if record.action == actions::ROLLBACK_SUCCEEDED {
                "succeeded"
            } else {
                "failed"
            };
            let mut line = format!("Rollback {outcome} ({}){took}", from_to());
            if let Some(detail) = text(record, "detail") {
                let _ = write!(line, ": {detail}");
            }
            line
        }
        actions::ROLLBACK_STALE => "Rollback refused: the target moved on".to_owned(),
        actions::ROLLBACK_INTERRUPTED => "Rollback interrupted".to_owned(),
        actions::ROLLBACK_VERIFIED | actions::ROLLBACK_NOT_RESOLVED => {
            text(record, "message").unwrap_or_else(|| record.action.clone())
        }
        _ => return None,
    })
}

/// The names people read for the intervals, in the order of [`Durations::values`].
pub const INTERVAL_NAMES: [&str; 5] = [
    "Alert → summary posted",
    "Alert → first press",
    "Press → rollback finished",
    "Rollback finished → resolved",
    "Alert → resolved",
];

impl Durations {
    /// The intervals in the order of [`INTERVAL_NAMES`].
    pub fn values(&self) -> [Option<u64>; 5] {
        [
            self.alert_to_summary,
            self.alert_to_first_press,
            self.press_to_rollback_finished,
            self.rollback_finished_to_resolved,
            self.alert_to_resolved,
        ]
    }
}

/// The durations with the names people read, in the order of the draft.
pub fn duration_rows(durations: &Durations) -> [(&'static str, Option<u64>); 5] {
    let values = durations.values();
    std::array::from_fn(|i| (INTERVAL_NAMES[i], values[i]))
}

mod figures;
mod report;

pub use figures::*;
pub use report::*;

#[cfg(test)]
mod tests;
