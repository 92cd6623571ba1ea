//! Rollback plans: the exact rollback a person was shown (target, from, to), identified by
//! an opaque id that is all a button carries. The plan's state only moves forward, and the
//! store makes each move a conditional update so that concurrent presses run it once.
//!
//! ```text
//! offered ──▶ confirmed ──▶ running ──▶ succeeded | failed | interrupted
//!    │            │            └──────▶ stale (deployed again since it was offered)
//!    └────────────┴──▶ expired | dismissed
//! ```

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::backend::{Action, Operation};
use super::deploy::{Revision, Target};
use super::message::MessageRef;
use super::policy::Actor;

/// 128 random bits, shown as 32 lower-case hex digits. Unguessable, so a forged or
/// replayed button payload cannot name a plan it was not given.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PlanId([u8; 16]);

impl PlanId {
    pub fn generate() -> Self {
        Self(rand::random())
    }

    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != 32
            || !raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(raw, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Display for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlanId({self})")
    }
}

impl TryFrom<String> for PlanId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or_else(|| format!("invalid plan id {value:?}"))
    }
}

impl From<PlanId> for String {
    fn from(value: PlanId) -> String {
        value.to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    /// Shown with a button; nobody has acted yet.
    Offered,
    /// Approved by one person where the two-person rule needs a second.
    Confirmed,
    Running,
    Succeeded,
    Failed,
    /// The target was deployed again after the plan was offered; nothing was run.
    Stale,
    Expired,
    /// Someone marked the alert "not deploy-related".
    Dismissed,
    /// Breakwater stopped while the rollback ran and could not follow it to an outcome.
    Interrupted,
}

impl PlanState {
    pub const ALL: [PlanState; 9] = [
        Self::Offered,
        Self::Confirmed,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Stale,
        Self::Expired,
        Self::Dismissed,
        Self::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offered => "offered",
            Self::Confirmed => "confirmed",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Stale => "stale",
            Self::Expired => "expired",
            Self::Dismissed => "dismissed",
            Self::Interrupted => "interrupted",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == raw)
    }

    /// States from which a press can still start the rollback.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Offered | Self::Confirmed)
    }

    pub fn is_final(self) -> bool {
        !matches!(self, Self::Offered | Self::Confirmed | Self::Running)
    }
}

impl fmt::Display for PlanState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rollback offered to people: exactly this target, from this revision to that one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackPlan {
    pub id: PlanId,
    pub target: Target,
    pub from: Revision,
    pub to: Revision,
    /// Why it was offered ("HighErrorRate firing 18 min after v42").
    pub reason: String,
    /// The alert group whose thread shows the plan, if it came from an alert.
    pub alert_group: Option<i64>,
    pub offered_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The message holding the button, updated in place with progress and outcome.
    pub message: Option<MessageRef>,
    /// Who asked for the plan with a command, if someone did.
    pub requested_by: Option<Actor>,
    pub state: PlanState,
    pub approved_by: Option<Actor>,
    pub started_by: Option<Actor>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The outcome in words, as shown to people.
    pub outcome: Option<String>,
    /// What a backend needs to follow a running rollback after a restart.
    pub operation: Option<Operation>,
    /// When the alert's resolution (or its still firing) was reported after a rollback.
    pub verified_at: Option<DateTime<Utc>>,
    /// What confirming the plan does (a rollback unless the backend offered another action).
    pub action: Action,
}

impl RollbackPlan {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}

/// The changes a conditional transition writes along with the new state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanPatch {
    pub approved_by: Option<Actor>,
    pub started_by: Option<Actor>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    /// The process that will follow the rollback (set with `running`); its heartbeat
    /// starts at the transition.
    pub runner: Option<String>,
}

/// A pending second step ("Confirm"/"Cancel") for one person's press, where the platform
/// has no native confirmation dialog. Only that person can complete it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confirmation {
    pub id: PlanId,
    pub plan: PlanId,
    pub actor: Actor,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The press was "Disable auto-sync and roll back": confirming carries that consent on.
    #[serde(default)]
    pub disable_auto_sync: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_ids_are_32_hex_digits_and_parse_back() {
        let id = PlanId::generate();
        let shown = id.to_string();
        assert_eq!(shown.len(), 32);
        assert_eq!(PlanId::parse(&shown), Some(id));
    }

    #[test]
    fn plan_ids_differ() {
        assert_ne!(PlanId::generate(), PlanId::generate());
    }

    #[test]
    fn malformed_plan_ids_are_rejected() {
        assert_eq!(PlanId::parse("ABCDEF00000000000000000000000000"), None);
        assert_eq!(PlanId::parse("1234"), None);
        assert_eq!(PlanId::parse("zz345678901234567890123456789012"), None);
    }

    #[test]
    fn only_offered_and_confirmed_plans_are_open() {
        let open: Vec<_> = PlanState::ALL.into_iter().filter(|s| s.is_open()).collect();
        assert_eq!(open, vec![PlanState::Offered, PlanState::Confirmed]);
    }
}
