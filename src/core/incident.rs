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

use crate::audit::{AuditLog, AuditQuery, AuditRecord, actions};
use crate::core::deploy::{ConfigChange, Deploy, DeploySource};
use crate::core::message::{Message, RichText, Section, Tone};
use crate::core::rollback::RollbackPlan;
use crate::core::summary::human_span;
use crate::store::{AlertGroup, DeployQuery, IncidentHistory, Store, StoreError};

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

// --- figures over many incidents --------------------------------------------------------------

/// How far back the console's recovery figures look: this period and the one before it.
pub const FIGURES_PERIOD_DAYS: i64 = 30;
/// At most this many milestone records are read for the figures (two periods); past it the
/// oldest are left out and the figures say they are incomplete.
const FIGURES_RECORDS: u32 = 100_000;

/// Median and worst of one interval over the incidents of a period that measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Spread {
    pub measured: usize,
    /// The lower median: a duration some incident really took.
    pub median: u64,
    pub worst: u64,
}

/// The figures of one service over one period, in the order of [`INTERVAL_NAMES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeriodFigures {
    pub incidents: usize,
    pub intervals: [Option<Spread>; 5],
}

impl PeriodFigures {
    fn from_durations(durations: &[Durations]) -> Self {
        let intervals = std::array::from_fn(|i| {
            let mut values: Vec<u64> = durations.iter().filter_map(|d| d.values()[i]).collect();
            values.sort_unstable();
            let worst = *values.last()?;
            Some(Spread {
                measured: values.len(),
                median: values[(values.len() - 1) / 2],
                worst,
            })
        });
        Self {
            incidents: durations.len(),
            intervals,
        }
    }
}

/// A service's recovery figures: the last period and the one before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceFigures {
    pub recent: PeriodFigures,
    pub before: PeriodFigures,
}

/// Recovery figures per service, computed from one consistent read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryFigures {
    pub by_service: std::collections::BTreeMap<String, ServiceFigures>,
    /// Not every record of the two periods was read; the older period is incomplete.
    pub incomplete: bool,
}

/// Each incident of the history with its durations, measured by [`milestones`] exactly as
/// an incident's own timeline measures them.
pub fn history_durations(history: &IncidentHistory) -> Vec<(&AlertGroup, Durations)> {
    let group_of_plan: std::collections::HashMap<String, i64> = history
        .plans
        .iter()
        .map(|(plan, group)| (plan.to_string(), *group))
        .collect();
    let mut by_group: std::collections::HashMap<i64, Vec<AuditRecord>> =
        std::collections::HashMap::new();
    for record in &history.records {
        let details = record.details_value();
        let group = details
            .get("group")
            .and_then(serde_json::Value::as_i64)
            .or_else(|| {
                details
                    .get("plan")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|plan| group_of_plan.get(plan).copied())
            });
        if let Some(group) = group {
            by_group.entry(group).or_default().push(record.clone());
        }
    }
    history
        .groups
        .iter()
        .map(|group| {
            let records = by_group.get(&group.id).map(Vec::as_slice).unwrap_or(&[]);
            (group, milestones(records, group.resolved_at).durations())
        })
        .collect()
}

/// The figures of the last [`FIGURES_PERIOD_DAYS`] days and the period before, per service,
/// from incidents opened in them.
pub fn figures(history: &IncidentHistory, now: DateTime<Utc>) -> RecoveryFigures {
    let recent_since = now - chrono::Duration::days(FIGURES_PERIOD_DAYS);
    let before_since = recent_since - chrono::Duration::days(FIGURES_PERIOD_DAYS);
    let mut split: std::collections::BTreeMap<String, (Vec<Durations>, Vec<Durations>)> =
        std::collections::BTreeMap::new();
    for (group, durations) in history_durations(history) {
        let Some(target) = &group.target else {
            continue;
        };
        let periods = split.entry(target.service.to_string()).or_default();
        if group.opened_at >= recent_since {
            periods.0.push(durations);
        } else if group.opened_at >= before_since {
            periods.1.push(durations);
        }
    }
    RecoveryFigures {
        by_service: split
            .into_iter()
            .map(|(service, (recent, before))| {
                (
                    service,
                    ServiceFigures {
                        recent: PeriodFigures::from_durations(&recent),
                        before: PeriodFigures::from_durations(&before),
                    },
                )
            })
            .collect(),
        incomplete: history.truncated,
    }
}

/// Reads the history of the last two periods in one consistent snapshot and computes the
/// figures.
pub async fn recovery_figures(
    store: &Arc<dyn Store>,
    now: DateTime<Utc>,
) -> Result<RecoveryFigures, StoreError> {
    let since = now - chrono::Duration::days(2 * FIGURES_PERIOD_DAYS);
    let history = store
        .incident_history(since, &MILESTONE_ACTIONS, FIGURES_RECORDS)
        .await?;
    Ok(figures(&history, now))
}

/// "open", "resolved" or "ended: not deploy-related".
pub fn state_words(incident: &Incident) -> &'static str {
    match incident.ended.as_ref().map(|e| e.how) {
        Some(Ending::Resolved) => "resolved",
        Some(Ending::NotDeployRelated) => "ended: not deploy-related",
        None => "open",
    }
}

fn chain_warning(chain: &ChainState) -> Option<String> {
    match chain {
        ChainState::Broken { problem } => Some(format!(
            "The audit chain does not verify ({problem}); this timeline may not be what happened."
        )),
        ChainState::Verified | ChainState::Unchecked => None,
    }
}

/// The timeline as a chat message. `link` is the console's Incident page, when known.
pub fn to_message(incident: &Incident, link: Option<String>) -> Message {
    let heading = format!(
        "Incident #{}: {} ({})",
        incident.id,
        incident.title,
        state_words(incident)
    );
    let mut sections = Vec::new();
    if let Some(warning) = chain_warning(&incident.chain) {
        sections.push(Section::Text {
            text: RichText::new().bold(warning),
        });
    }
    let lines: Vec<RichText> = incident
        .timeline
        .iter()
        .map(|e| {
            RichText::new()
                .code(e.at.format("%H:%M:%S").to_string())
                .plain(format!(" {} ", e.offset()))
                .plain(format!("{} — {}", e.text, e.actor))
        })
        .collect();
    sections.push(Section::Lines {
        lines: lines.clone(),
    });
    if let Some(link) = link {
        sections.push(Section::Context {
            text: RichText::new().link("Incident page and postmortem draft", link),
        });
    }
    let mut text = format!("{heading}, times UTC:\n");
    if let Some(warning) = chain_warning(&incident.chain) {
        text.push_str(&warning);
        text.push('\n');
    }
    text.push_str(
        &lines
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    Message {
        text,
        title: Some(heading),
        tone: if matches!(incident.chain, ChainState::Broken { .. }) {
            Tone::Warning
        } else {
            Tone::Info
        },
        sections,
        actions: vec![],
        status: None,
    }
}

/// Escapes text from outside for Markdown (table cells and prose).
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// "2 min (120 s)", or a dash for what did not happen.
pub fn seconds_words(seconds: Option<u64>) -> String {
    match seconds {
        None => "—".to_owned(),
        Some(s) if s < 60 => format!("{s} s"),
        Some(s) => format!("{} ({s} s)", human_span(s)),
    }
}

/// The postmortem draft in Markdown.
pub fn to_markdown(incident: &Incident) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Incident #{}: {}\n",
        incident.id,
        md(&incident.title)
    );
    if let Some(warning) = chain_warning(&incident.chain) {
        let _ = writeln!(out, "> **Warning:** {}\n", md(&warning));
    }
    let _ = writeln!(
        out,
        "- Opened: {}\n- State: {}\n- Alerts grouped: {}",
        incident.opened_at.format("%Y-%m-%d %H:%M:%S UTC"),
        state_words(incident),
        incident.alert_count
    );
    if let Some(ended) = &incident.ended {
        let _ = writeln!(out, "- Ended: {}", ended.at.format("%Y-%m-%d %H:%M:%S UTC"));
    }
    out.push_str("\n## Timeline\n\n| Time (UTC) | Offset | Actor | Event |\n|---|---|---|---|\n");
    for entry in &incident.timeline {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            entry.at.format("%Y-%m-%d %H:%M:%S"),
            entry.offset(),
            md(&entry.actor),
            md(&entry.text)
        );
    }
    out.push_str("\n## Suspect change\n\n");
    match &incident.suspect {
        None => out.push_str("No deploy was named as suspect.\n"),
        Some(deploy) => {
            let _ = writeln!(
                out,
                "Deploy {} of {} by {}, started {}.",
                md(&deploy.version),
                md(&deploy.target.to_string()),
                md(deploy.author.as_deref().unwrap_or("unknown")),
                deploy.started_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
            if let Some(commit) = &deploy.commit {
                let _ = writeln!(out, "Commit `{}`.", md(commit));
            }
            if !deploy.changes.is_empty() {
                out.push_str("\nCommits:\n\n");
                for change in &deploy.changes {
                    let _ = writeln!(
                        out,
                        "- `{}` {} ({})",
                        md(&change.commit.chars().take(12).collect::<String>()),
                        md(&change.message),
                        md(change.author.as_deref().unwrap_or("unknown"))
                    );
                }
            }
            if !deploy.config_changes.is_empty() {
                out.push_str(
                    "\nConfig changes (secrets masked):\n\n| Key | Old | New |\n|---|---|---|\n",
                );
                for change in &deploy.config_changes {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} |",
                        md(&change.key),
                        md(change.old.as_deref().unwrap_or("(absent)")),
                        md(change.new.as_deref().unwrap_or("(absent)"))
                    );
                }
            }
        }
    }
    out.push_str("\n## Durations\n\n| Interval | Took |\n|---|---|\n");
    for (name, seconds) in duration_rows(&incident.durations) {
        let _ = writeln!(out, "| {name} | {} |", seconds_words(seconds));
    }
    for heading in ["Impact", "Root cause", "What went well", "Action items"] {
        let _ = write!(out, "\n## {heading}\n\n");
    }
    out
}

/// The incident as pretty JSON (the same facts as the Markdown draft).
pub fn to_json(incident: &Incident) -> String {
    serde_json::to_string_pretty(incident).unwrap_or_else(|error| {
        // Serializing plain data cannot fail; say so rather than panic if it ever does.
        serde_json::json!({ "error": error.to_string() }).to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEntry, AuditSealer};
    use crate::core::deploy::{
        Change, DeploySource, DeployStatus, Environment, ServiceName, Target,
    };
    use crate::core::policy::{Actor, Principal};
    use crate::store::IncidentHistory;

    fn at(minutes: i64, seconds: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-29T15:00:00Z")
            .expect("valid")
            .with_timezone(&Utc)
            + chrono::Duration::minutes(minutes)
            + chrono::Duration::seconds(seconds)
    }

    fn target() -> Target {
        Target::new(
            ServiceName::parse("checkout").expect("name"),
            Environment::parse("production").expect("env"),
        )
    }

    fn alice() -> Actor {
        Actor::new(
            Principal::parse("slack:U0ALICE").expect("principal"),
            "alice",
        )
    }

    /// Records as the bot writes them for group 7 and plan `p1`.
    fn records() -> Vec<AuditRecord> {
        let sealer = AuditSealer::new(None);
        let entries = [
            AuditEntry::new(actions::ALERT_RECEIVED, at(0, 0)).details(serde_json::json!({
                "group": 7, "title": "HighErrorRate", "severity": "critical"})),
            AuditEntry::new(actions::SUMMARY_POSTED, at(0, 20)).details(serde_json::json!({
                "group": 7, "platform": "slack", "plan": "p1", "suspect": "v42"})),
            AuditEntry::new(actions::ALERT_RECEIVED, at(1, 0)).details(serde_json::json!({
                "group": 7, "title": "HighLatency", "severity": "warning"})),
            AuditEntry::new(actions::ROLLBACK_REQUESTED, at(2, 0))
                .actor(&alice())
                .details(serde_json::json!({"plan": "p1", "from": {"version": "v42"}, "to": {"version": "v41"}})),
            AuditEntry::new(actions::ROLLBACK_STARTED, at(2, 5))
                .actor(&alice())
                .details(serde_json::json!({"plan": "p1", "backend": "deployer", "from": {"version": "v42"}, "to": {"version": "v41"}})),
            AuditEntry::new(actions::ROLLBACK_SUCCEEDED, at(4, 0)).details(serde_json::json!({
                "plan": "p1", "from": {"version": "v42"}, "to": {"version": "v41"}, "took_ms": 115_000})),
            AuditEntry::new(actions::ALERT_RESOLVED, at(9, 0)).details(serde_json::json!({
                "group": 7, "title": "HighErrorRate"})),
        ];
        let mut prev = crate::audit::GENESIS_HASH.to_owned();
        entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let record = e
                    .target(&target())
                    .into_record(i as i64 + 1, prev.clone(), &sealer);
                prev = record.hash.clone();
                record
            })
            .collect()
    }

    fn suspect_deploy() -> Deploy {
        Deploy {
            target: target(),
            version: "v42".into(),
            previous_version: Some("v41".into()),
            revision: None,
            commit: Some("a1b2c3d4e5f6a7b8".into()),
            author: Some("dana".into()),
            description: None,
            url: None,
            started_at: at(-18, 0),
            finished_at: None,
            status: DeployStatus::Succeeded,
            changes: vec![Change {
                commit: "a1b2c3d4e5f6a7b8".into(),
                author: Some("dana".into()),
                message: "Cache *all* the things".into(),
            }],
            config_changes: vec![ConfigChange {
                key: "db_password".into(),
                old: Some("old-secret".into()),
                new: Some("new-secret".into()),
            }],
            source: DeploySource::Api,
        }
    }

    fn facts(chain: ChainState) -> IncidentFacts {
        IncidentFacts {
            group: AlertGroup {
                id: 7,
                key: "checkout/production".into(),
                target: Some(target()),
                title: "HighErrorRate".into(),
                opened_at: at(0, 0),
                last_alert_at: at(1, 0),
                alert_count: 2,
                firing_count: 0,
                resolved_at: Some(at(9, 0)),
            },
            records: records(),
            deploys: vec![suspect_deploy()],
            chain,
        }
    }

    #[test]
    fn the_timeline_tells_the_incident_in_order_with_offsets_and_actors() {
        let incident = build(facts(ChainState::Verified));
        let lines: Vec<String> = incident
            .timeline
            .iter()
            .map(|e| format!("{} {} — {}", e.offset(), e.text, e.actor))
            .collect();
        assert_eq!(
            lines,
            [
                "-18 min Deploy v42 of checkout production (from v41), 1 commit(s); config changed: db_password — suspect — dana",
                "+0 s First alert: HighErrorRate (critical) — breakwater",
                "+20 s Summary posted on slack, suspect v42 — breakwater",
                "+1 min Grouped alert: HighLatency (warning) — breakwater",
                "+2 min Pressed Roll back (v42 → v41) — alice",
                "+2 min Rollback started on deployer (v42 → v41) — alice",
                "+4 min Rollback succeeded (v42 → v41) in 1 min — breakwater",
                "+9 min Alert resolved: HighErrorRate; incident resolved — breakwater",
            ]
        );
        assert_eq!(incident.title, "HighErrorRate on checkout production");
    }

    #[test]
    fn durations_are_measured_between_the_first_records_of_each_kind() {
        let incident = build(facts(ChainState::Verified));
        assert_eq!(
            incident.durations,
            Durations {
                alert_to_summary: Some(20),
                alert_to_first_press: Some(120),
                press_to_rollback_finished: Some(120),
                rollback_finished_to_resolved: Some(300),
                alert_to_resolved: Some(540),
            }
        );
    }

    #[test]
    fn an_unresolved_incident_has_no_resolution_durations() {
        let mut facts = facts(ChainState::Verified);
        facts.group.resolved_at = None;
        let incident = build(facts);
        assert_eq!(incident.durations.alert_to_resolved, None);
        assert_eq!(incident.durations.rollback_finished_to_resolved, None);
        assert!(!to_markdown(&incident).contains("incident resolved"));
    }

    #[test]
    fn the_markdown_draft_has_the_suspect_change_masked_durations_and_empty_sections() {
        let markdown = to_markdown(&build(facts(ChainState::Verified)));
        assert!(markdown.starts_with("# Incident #7: HighErrorRate on checkout production\n"));
        assert!(
            markdown.contains(
                "| 2026-11-29 15:02:00 | +2 min | alice | Pressed Roll back (v42 → v41) |"
            ),
            "{markdown}"
        );
        assert!(
            markdown.contains("- `a1b2c3d4e5f6` Cache \\*all\\* the things (dana)"),
            "{markdown}"
        );
        assert!(!markdown.contains("new-secret") && !markdown.contains("old-secret"));
        assert!(
            markdown.contains("| Alert → first press | 2 min (120 s) |"),
            "{markdown}"
        );
        assert!(
            markdown.ends_with(
                "## Impact\n\n\n## Root cause\n\n\n## What went well\n\n\n## Action items\n\n"
            ),
            "{markdown}"
        );
        assert!(!markdown.contains("Warning"));
    }

    #[test]
    fn a_chain_that_does_not_verify_is_said_at_the_top() {
        let incident = build(facts(ChainState::Broken {
            problem: "record 3: hash mismatch".into(),
        }));
        let markdown = to_markdown(&incident);
        let second_block = markdown.split("\n\n").nth(1).unwrap_or_default();
        assert!(
            second_block.starts_with(
                "> **Warning:** The audit chain does not verify (record 3: hash mismatch)"
            ),
            "{markdown}"
        );
        let message = to_message(&incident, None);
        assert_eq!(message.tone, Tone::Warning);
        assert!(
            message
                .text
                .lines()
                .nth(1)
                .unwrap_or_default()
                .starts_with("The audit chain does not verify")
        );
    }

    #[test]
    fn the_json_export_carries_the_timeline_and_durations() {
        let json: serde_json::Value =
            serde_json::from_str(&to_json(&build(facts(ChainState::Verified)))).expect("json");
        assert_eq!(json["id"], 7);
        assert_eq!(json["chain"]["state"], "verified");
        assert_eq!(json["durations"]["alert_to_resolved"], 540);
        assert_eq!(json["timeline"][4]["actor"], "alice");
        assert_eq!(
            json["suspect"]["config_changes"][0]["new"],
            crate::core::deploy::MASKED
        );
    }

    /// Seals `entries` after the fixture's records, continuing its chain.
    fn extend(records: &mut Vec<AuditRecord>, entries: Vec<AuditEntry>) {
        let sealer = AuditSealer::new(None);
        for entry in entries {
            let last = records.last().expect("records");
            let record =
                entry
                    .target(&target())
                    .into_record(last.seq + 1, last.hash.clone(), &sealer);
            records.push(record);
        }
    }

    #[test]
    fn marking_not_deploy_related_ends_the_incident_before_a_later_resolution() {
        let mut facts = facts(ChainState::Verified);
        // Dismissed at +1 min 30 s instead of rolled back; the alerts resolve at +9 min.
        facts.records.retain(|r| {
            ![
                actions::ROLLBACK_REQUESTED,
                actions::ROLLBACK_STARTED,
                actions::ROLLBACK_SUCCEEDED,
                actions::ALERT_RESOLVED,
            ]
            .contains(&r.action.as_str())
        });
        extend(
            &mut facts.records,
            vec![
                AuditEntry::new(actions::SUMMARY_DISMISSED, at(1, 30))
                    .actor(&alice())
                    .details(serde_json::json!({"plan": "p1"})),
                AuditEntry::new(actions::ALERT_RESOLVED, at(9, 0))
                    .details(serde_json::json!({"group": 7, "title": "HighErrorRate"})),
            ],
        );
        let incident = build(facts);
        assert_eq!(
            incident.ended,
            Some(Ended {
                at: at(1, 30),
                how: Ending::NotDeployRelated
            })
        );
        assert_eq!(incident.durations.alert_to_resolved, None);
        let texts: Vec<&str> = incident.timeline.iter().map(|e| e.text.as_str()).collect();
        assert!(
            texts.contains(&"Marked not deploy-related; incident ended"),
            "{texts:?}"
        );
        assert!(
            texts.contains(&"Alert resolved: HighErrorRate"),
            "{texts:?}"
        );
        assert!(to_markdown(&incident).contains("- State: ended: not deploy-related"));
    }

    #[test]
    fn a_confirm_step_and_backend_progress_are_told_as_they_were_audited() {
        let mut facts = facts(ChainState::Verified);
        let started = facts
            .records
            .iter()
            .position(|r| r.action == actions::ROLLBACK_STARTED)
            .expect("started");
        let mut tail = facts.records.split_off(started);
        extend(
            &mut facts.records,
            vec![
                AuditEntry::new(actions::ROLLBACK_CONFIRMATION_REQUESTED, at(2, 2))
                    .actor(&alice())
                    .details(serde_json::json!({"plan": "p1", "from": "v42", "to": "v41"})),
            ],
        );
        // The rest of the story after the confirmation, re-sealed in order.
        let mut rest: Vec<AuditEntry> = Vec::new();
        for record in tail.drain(..) {
            let mut entry =
                AuditEntry::new(&record.action, record.at).details(record.details_value());
            if record.action == actions::ROLLBACK_STARTED {
                entry = entry.actor(&alice());
                rest.push(entry);
                rest.push(
                    AuditEntry::new(actions::ROLLBACK_PROGRESS, at(3, 0))
                        .details(serde_json::json!({"plan": "p1", "line": "1/2 pods ready"})),
                );
                continue;
            }
            rest.push(entry);
        }
        extend(&mut facts.records, rest);
        let lines: Vec<String> = build(facts)
            .timeline
            .iter()
            .map(|e| format!("{} {} — {}", e.offset(), e.text, e.actor))
            .collect();
        assert!(
            lines.contains(&"+2 min Asked to confirm v42 → v41 — alice".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(
                &"+2 min Confirmed; rollback started on deployer (v42 → v41) — alice".to_owned()
            ),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"+3 min Backend progress: 1/2 pods ready — breakwater".to_owned()),
            "{lines:?}"
        );
    }

    fn group(id: i64, service: &str, opened_days_ago: i64, now: DateTime<Utc>) -> AlertGroup {
        let opened = now - chrono::Duration::days(opened_days_ago);
        AlertGroup {
            id,
            key: format!("{service}/production"),
            target: Some(Target::new(
                ServiceName::parse(service).expect("name"),
                Environment::parse("production").expect("env"),
            )),
            title: "HighErrorRate".into(),
            opened_at: opened,
            last_alert_at: opened,
            alert_count: 1,
            firing_count: 0,
            resolved_at: Some(opened + chrono::Duration::minutes(30)),
        }
    }

    #[test]
    fn figures_give_median_and_worst_per_period_as_each_incident_measured_them() {
        let now = at(0, 0);
        let sealer = AuditSealer::new(None);
        let mut history = IncidentHistory::default();
        let mut seq = 0;
        // checkout: resolved after 4, 10 and 6 min this period; after 20 min the period before.
        for (id, days_ago, minutes) in [(1, 2, 4), (2, 5, 10), (3, 20, 6), (4, 40, 20)] {
            let mut g = group(id, "checkout", days_ago, now);
            let resolved = g.opened_at + chrono::Duration::minutes(minutes);
            g.resolved_at = Some(resolved);
            for (action, when) in [
                (actions::ALERT_RECEIVED, g.opened_at),
                (actions::ALERT_RESOLVED, resolved),
            ] {
                seq += 1;
                history.records.push(
                    AuditEntry::new(action, when)
                        .details(serde_json::json!({"group": id}))
                        .into_record(seq, String::new(), &sealer),
                );
            }
            history.groups.push(g);
        }
        // Older than both periods: not counted.
        history.groups.push(group(5, "checkout", 70, now));
        history.records.sort_by_key(|r| r.at);

        let figures = figures(&history, now);
        let checkout = &figures.by_service["checkout"];
        assert_eq!(checkout.recent.incidents, 3);
        assert_eq!(
            checkout.recent.intervals[4],
            Some(Spread {
                measured: 3,
                median: 360,
                worst: 600
            })
        );
        assert_eq!(checkout.before.incidents, 1);
        assert_eq!(
            checkout.before.intervals[4],
            Some(Spread {
                measured: 1,
                median: 1200,
                worst: 1200
            })
        );
        assert_eq!(checkout.recent.intervals[1], None, "nobody pressed");
        assert!(!figures.incomplete);
    }

    #[test]
    fn figures_and_the_timeline_measure_an_incident_the_same_way() {
        let facts = facts(ChainState::Verified);
        // The store knows plans by their real ids; the fixture's records name plan `p1`.
        let plan = crate::core::rollback::PlanId::generate();
        let records = facts
            .records
            .iter()
            .filter(|r| MILESTONE_ACTIONS.contains(&r.action.as_str()))
            .cloned()
            .map(|mut r| {
                let mut details = r.details_value();
                if details.get("plan").is_some() {
                    details["plan"] = serde_json::json!(plan.to_string());
                    r.details = details.to_string();
                }
                r
            })
            .collect();
        let history = IncidentHistory {
            groups: vec![facts.group.clone()],
            plans: vec![(plan, 7)],
            records,
            truncated: false,
        };
        let measured = history_durations(&history);
        assert_eq!(measured.len(), 1);
        assert_eq!(measured[0].1, build(facts).durations);
    }

    #[test]
    fn records_of_other_kinds_add_no_lines() {
        let mut facts = facts(ChainState::Verified);
        let mut extra = facts.records[0].clone();
        extra.action = actions::CONSOLE_LOGIN.into();
        extra.seq = 99;
        facts.records.push(extra);
        assert_eq!(build(facts).timeline.len(), 8);
    }
}
