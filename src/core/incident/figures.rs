//! Figures over many incidents: how long detection, decision and recovery took, per
//! period and per service, for the console's recovery page.

use super::*;

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
