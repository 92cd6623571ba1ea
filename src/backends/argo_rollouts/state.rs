//! A Rollout's status read into the bot's terms: phase, strategy, canary step and weight,
//! and the analysis run that failed it.

use super::*;

impl FailedAnalysis {
    pub(super) fn of(run: &Value) -> Option<Self> {
        let field = |key: &str| {
            run.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let status = field("status");
        matches!(status.as_str(), "Failed" | "Error" | "Inconclusive").then(|| Self {
            name: field("name"),
            status,
            message: snippet(&field("message"), 200),
        })
    }
}

impl std::fmt::Display for FailedAnalysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = match self.status.as_str() {
            "Failed" => "failed",
            "Error" => "could not measure (error)",
            _ => "was inconclusive",
        };
        write!(f, "analysis run {} {verdict}", self.name)?;
        if !self.message.is_empty() {
            write!(f, " ({})", self.message)?;
        }
        Ok(())
    }
}

impl State {
    pub(super) fn of(object: &DynamicObject) -> Self {
        let data = &object.data;
        let text = |pointer: &str| {
            data.pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let strategy = if let Some(canary) = data.pointer("/spec/strategy/canary") {
            Strategy::Canary {
                steps: canary
                    .get("steps")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            }
        } else if data.pointer("/spec/strategy/blueGreen").is_some() {
            Strategy::BlueGreen
        } else {
            Strategy::Unknown
        };
        let observed = match data.pointer("/status/observedGeneration") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let generation = object.metadata.generation.map(|g| g.to_string());
        Self {
            phase: text("/status/phase").unwrap_or_else(|| "Progressing".to_owned()),
            message: text("/status/message"),
            strategy,
            step_index: data
                .pointer("/status/currentStepIndex")
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok()),
            canary_weight: data
                .pointer("/status/canary/weights/canary/weight")
                .and_then(Value::as_i64),
            stable_hash: text("/status/stableRS"),
            current_hash: text("/status/currentPodHash"),
            aborted: data.pointer("/status/abort").and_then(Value::as_bool) == Some(true),
            failed_analyses: [
                "/status/canary/currentStepAnalysisRunStatus",
                "/status/canary/currentBackgroundAnalysisRunStatus",
                "/status/blueGreen/prePromotionAnalysisRunStatus",
                "/status/blueGreen/postPromotionAnalysisRunStatus",
            ]
            .iter()
            .filter_map(|pointer| data.pointer(pointer))
            .filter_map(FailedAnalysis::of)
            .collect(),
            observed: observed.is_some() && observed == generation,
            desired: data
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1),
        }
    }

    /// A canary update under way that an abort would stop: the new template is not yet
    /// stable and nobody aborted it. Blue-green updates are left to a rollback: until
    /// promotion the active service already sends all traffic to the stable version.
    pub(super) fn abortable(&self) -> bool {
        matches!(self.strategy, Strategy::Canary { .. })
            && !self.aborted
            && self.stable_hash.is_some()
            && self.current_hash.is_some()
            && self.stable_hash != self.current_hash
    }

    /// The share of traffic on the canary: what the traffic router reports, else the
    /// last `setWeight` step reached.
    pub(super) fn weight(&self) -> Option<i64> {
        if let Some(weight) = self.canary_weight {
            return Some(weight);
        }
        let Strategy::Canary { steps } = &self.strategy else {
            return None;
        };
        let reached = self.step_index?.min(steps.len().saturating_sub(1));
        steps
            .iter()
            .take(reached + 1)
            .filter_map(|step| step.get("setWeight").and_then(Value::as_i64))
            .next_back()
    }
}
