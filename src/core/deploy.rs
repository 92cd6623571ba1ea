//! Deploys as the bot understands them: what went out, to where, by whom, with which code
//! and configuration changes. Secrets in configuration changes are masked on the way in so
//! the store never holds them.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a masked configuration value is replaced with.
pub const MASKED: &str = "••••••";

/// A name the operator configured for a service or an environment. Case is kept for
/// display; comparisons are case-insensitive because alert labels are not consistent.
macro_rules! name_type {
    ($name:ident, $what:literal) => {
        #[derive(Clone, Debug, Eq, Serialize, Deserialize, PartialOrd, Ord)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Accepts 1–100 characters of letters, digits, `-`, `_`, `.` and `/`.
            pub fn parse(raw: &str) -> Result<Self, NameError> {
                let trimmed = raw.trim();
                if trimmed.is_empty() {
                    return Err(NameError {
                        what: $what,
                        value: raw.to_owned(),
                        reason: "is empty",
                    });
                }
                if trimmed.chars().count() > 100 {
                    return Err(NameError {
                        what: $what,
                        value: raw.to_owned(),
                        reason: "is longer than 100 characters",
                    });
                }
                if !trimmed
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                {
                    return Err(NameError {
                        what: $what,
                        value: raw.to_owned(),
                        reason: "may only contain letters, digits, '-', '_', '.' and '/'",
                    });
                }
                Ok(Self(trimmed.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The lower-case form used for matching and as a storage key.
            pub fn key(&self) -> String {
                self.0.to_lowercase()
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.eq_ignore_ascii_case(&other.0)
            }
        }

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.0.to_lowercase().hash(state)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

name_type!(ServiceName, "service name");
name_type!(Environment, "environment");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} {reason}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// A service in one environment: the unit that is deployed and rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub service: ServiceName,
    pub environment: Environment,
}

impl Target {
    pub fn new(service: ServiceName, environment: Environment) -> Self {
        Self {
            service,
            environment,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.service, self.environment)
    }
}

/// A point in a target's history that a rollback can return to. `id` is what the backend
/// needs (an Argo CD history id, a ReplicaSet revision, a Helm revision, or the version
/// itself for registry-backed backends); `version` is what people recognise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub id: String,
    pub version: String,
}

impl Revision {
    /// A revision whose backend id is the version itself.
    pub fn version(version: impl Into<String>) -> Self {
        let version = version.into();
        Self {
            id: version.clone(),
            version,
        }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.id == self.version {
            f.write_str(&self.version)
        } else {
            write!(f, "{} (revision {})", self.version, self.id)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployStatus {
    Started,
    Succeeded,
    Failed,
}

impl DeployStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "started" => Some(Self::Started),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// Where the bot learned about a deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploySource {
    /// Reported by CI/CD to `POST /api/v1/deploys`.
    Api,
    /// Read from a deployment backend's own history (Argo CD, Kubernetes, Helm).
    Backend,
    /// A rollback breakwater itself performed.
    Rollback,
    /// A ConfigMap or Secret the service's pods read was changed in place (seen by a
    /// Kubernetes watch): no deploy happened, yet what runs may behave differently. Never
    /// a rollback target; `description` names the object, `author` the field manager.
    ConfigChange,
    /// A GitHub `deployment` / `deployment_status` webhook.
    Github,
    /// A GitLab deployment event.
    Gitlab,
    /// A Flux notification-controller event.
    Flux,
    /// Argo CD notifications posting to `POST /api/v1/deploys` with `"source": "argocd"`.
    Argocd,
    /// A Flagger canary event.
    Flagger,
}

impl DeploySource {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Backend => "backend",
            Self::Rollback => "rollback",
            Self::ConfigChange => "config_change",
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Flux => "flux",
            Self::Argocd => "argocd",
            Self::Flagger => "flagger",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "api" => Some(Self::Api),
            "backend" => Some(Self::Backend),
            "rollback" => Some(Self::Rollback),
            "config_change" => Some(Self::ConfigChange),
            "github" => Some(Self::Github),
            "gitlab" => Some(Self::Gitlab),
            "flux" => Some(Self::Flux),
            "argocd" => Some(Self::Argocd),
            "flagger" => Some(Self::Flagger),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    #[serde(default)]
    pub commit: String,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub message: String,
}

/// One configuration key that changed with a deploy. `None` means absent (added/removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub key: String,
    #[serde(default)]
    pub old: Option<String>,
    #[serde(default)]
    pub new: Option<String>,
}

impl ConfigChange {
    /// Keys whose values must never be shown or stored: anything that looks like a
    /// secret, token, password or key.
    pub fn key_looks_secret(key: &str) -> bool {
        let upper = key.to_uppercase();
        ["SECRET", "TOKEN", "PASSWORD", "KEY"]
            .iter()
            .any(|pattern| upper.contains(pattern))
    }

    /// The change with values replaced by [`MASKED`] when the key looks secret.
    pub fn masked(self) -> Self {
        if !Self::key_looks_secret(&self.key) {
            return self;
        }
        let mask = |value: Option<String>| value.map(|_| MASKED.to_owned());
        Self {
            key: self.key,
            old: mask(self.old),
            new: mask(self.new),
        }
    }
}

/// A deploy as recorded: reported by CI, read from a backend, or a rollback we ran.
/// Serialized flat (`service`, `environment`, …), as the deploy API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deploy {
    #[serde(flatten)]
    pub target: Target,
    pub version: String,
    pub previous_version: Option<String>,
    /// The backend's own id for this revision, when it differs from the version.
    pub revision: Option<String>,
    pub commit: Option<String>,
    pub author: Option<String>,
    pub description: Option<String>,
    pub url: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: DeployStatus,
    pub changes: Vec<Change>,
    pub config_changes: Vec<ConfigChange>,
    pub source: DeploySource,
}

impl Deploy {
    /// The revision a rollback would name to return to this deploy.
    pub fn as_revision(&self) -> Revision {
        Revision {
            id: self
                .revision
                .clone()
                .unwrap_or_else(|| self.version.clone()),
            version: self.version.clone(),
        }
    }

    /// When the deploy took effect: its finish, or its start while it is still rolling out.
    pub fn effective_at(&self) -> DateTime<Utc> {
        self.finished_at.unwrap_or(self.started_at)
    }

    /// A ConfigMap or Secret changed in place: shown beside deploys, never rolled back to.
    pub fn is_config_change(&self) -> bool {
        self.source == DeploySource::ConfigChange
    }

    pub fn is_in_progress(&self) -> bool {
        self.status == DeployStatus::Started && self.finished_at.is_none()
    }

    /// Masks secret-looking configuration values; called on every way in.
    pub fn with_secrets_masked(mut self) -> Self {
        self.config_changes = self
            .config_changes
            .into_iter()
            .map(ConfigChange::masked)
            .collect();
        self
    }

    /// Merges what a backend knows about the same version into a reported deploy, so a
    /// version appears once: reported fields win, the backend fills the gaps.
    pub fn merge_backend(&mut self, from_backend: &Deploy) {
        if self.revision.is_none() {
            self.revision.clone_from(&from_backend.revision);
        }
        fill(&mut self.commit, &from_backend.commit);
        fill(&mut self.author, &from_backend.author);
        fill(&mut self.description, &from_backend.description);
        fill(&mut self.url, &from_backend.url);
        fill(&mut self.previous_version, &from_backend.previous_version);
        if self.finished_at.is_none() {
            self.finished_at = from_backend.finished_at;
        }
        if self.config_changes.is_empty() {
            self.config_changes.clone_from(&from_backend.config_changes);
        }
        if self.changes.is_empty() {
            self.changes.clone_from(&from_backend.changes);
        }
        // CI reports a deploy as succeeded once it applied it; the backend saw whether the
        // rollout then failed or got stuck (a progress deadline, a `helm --wait` timeout).
        if from_backend.status == DeployStatus::Failed {
            self.status = DeployStatus::Failed;
        }
    }
}

/// What a later report about a known deploy carries. Absent fields leave the recorded
/// ones alone: a pipeline that re-posts only `"status": "succeeded"` must not move the
/// deploy's finish to "now" and make a days-old deploy look like the cause of today's
/// incident.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeployUpdate {
    pub previous_version: Option<String>,
    pub commit: Option<String>,
    pub author: Option<String>,
    pub description: Option<String>,
    pub url: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: Option<DeployStatus>,
    /// `None` (or an empty list in a report) keeps the recorded list.
    pub changes: Option<Vec<Change>>,
    pub config_changes: Option<Vec<ConfigChange>>,
    /// The description says how far the deploy has got (a Flagger canary's phase and
    /// weight), so a later report replaces it instead of only filling it.
    pub description_is_progress: bool,
}

/// One field an update changed, as the audit log shows it: `field: old → new`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: &'static str,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Why an update cannot apply to the recorded deploy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("finished_at: {finished} is before the recorded started_at {started}")]
    FinishedBeforeStart {
        finished: DateTime<Utc>,
        started: DateTime<Utc>,
    },
}

impl Deploy {
    /// This deploy with `update` applied, and what changed. A carried status or finish
    /// replaces the recorded one; without a finish, `finished_at` is filled with `now` only
    /// when none was recorded and the status becomes final. Other fields are filled where
    /// empty.
    pub fn updated(
        &self,
        update: &DeployUpdate,
        now: DateTime<Utc>,
    ) -> Result<(Deploy, Vec<FieldChange>), UpdateError> {
        let mut next = self.clone();
        let mut changed = Vec::new();
        // Descriptive fields are filled where empty, never rewritten: who deployed which
        // commit is settled by the first report that said so.
        let mut text = |field: &'static str, slot: &mut Option<String>, new: &Option<String>| {
            if let Some(new) = new
                && slot.is_none()
            {
                changed.push(FieldChange {
                    field,
                    old: slot.clone(),
                    new: Some(new.clone()),
                });
                *slot = Some(new.clone());
            }
        };
        text(
            "previous_version",
            &mut next.previous_version,
            &update.previous_version,
        );
        text("commit", &mut next.commit, &update.commit);
        text("author", &mut next.author, &update.author);
        if !update.description_is_progress {
            text("description", &mut next.description, &update.description);
        }
        text("url", &mut next.url, &update.url);
        if update.description_is_progress
            && update.description.is_some()
            && update.description != next.description
        {
            changed.push(FieldChange {
                field: "description",
                old: next.description.clone(),
                new: update.description.clone(),
            });
            next.description = update.description.clone();
        }
        if let Some(status) = update.status
            && status != next.status
        {
            changed.push(FieldChange {
                field: "status",
                old: Some(next.status.as_str().to_owned()),
                new: Some(status.as_str().to_owned()),
            });
            next.status = status;
        }
        let finished_at = match update.finished_at {
            Some(finished) if finished < next.started_at => {
                return Err(UpdateError::FinishedBeforeStart {
                    finished,
                    started: next.started_at,
                });
            }
            Some(finished) => Some(finished),
            None if next.finished_at.is_none() && next.status != DeployStatus::Started => {
                Some(now.max(next.started_at))
            }
            None => next.finished_at,
        };
        if finished_at != next.finished_at {
            changed.push(FieldChange {
                field: "finished_at",
                old: next.finished_at.map(|t| t.to_rfc3339()),
                new: finished_at.map(|t| t.to_rfc3339()),
            });
            next.finished_at = finished_at;
        }
        if let Some(changes) = &update.changes
            && next.changes.is_empty()
            && !changes.is_empty()
        {
            changed.push(FieldChange {
                field: "changes",
                old: Some(format!("{} commits", next.changes.len())),
                new: Some(format!("{} commits", changes.len())),
            });
            next.changes.clone_from(changes);
        }
        if let Some(config_changes) = &update.config_changes
            && next.config_changes.is_empty()
            && !config_changes.is_empty()
        {
            changed.push(FieldChange {
                field: "config_changes",
                old: Some(format!("{} keys", next.config_changes.len())),
                new: Some(format!("{} keys", config_changes.len())),
            });
            next.config_changes.clone_from(config_changes);
        }
        Ok((next, changed))
    }
}

fn fill(slot: &mut Option<String>, other: &Option<String>) {
    if slot.is_none() {
        slot.clone_from(other);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(finished_at: Option<DateTime<Utc>>, status: DeployStatus) -> Deploy {
        Deploy {
            target: Target::new(
                ServiceName::parse("checkout").expect("ok"),
                Environment::parse("production").expect("ok"),
            ),
            version: "v42".into(),
            previous_version: Some("v41".into()),
            revision: None,
            commit: Some("abc".into()),
            author: Some("ada".into()),
            description: None,
            url: None,
            started_at: time("2026-11-26T10:00:00Z"),
            finished_at,
            status,
            changes: Vec::new(),
            config_changes: Vec::new(),
            source: DeploySource::Api,
        }
    }

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid")
            .with_timezone(&Utc)
    }

    #[test]
    fn an_update_with_only_a_status_keeps_the_recorded_finish() {
        let finished = time("2026-11-26T10:05:00Z");
        let deploy = recorded(Some(finished), DeployStatus::Failed);
        let update = DeployUpdate {
            status: Some(DeployStatus::Succeeded),
            ..DeployUpdate::default()
        };
        let (next, changed) = deploy
            .updated(&update, time("2026-11-29T03:00:00Z"))
            .expect("applies");
        assert_eq!(next.finished_at, Some(finished));
        assert_eq!(next.status, DeployStatus::Succeeded);
        assert_eq!(next.author.as_deref(), Some("ada"));
        assert_eq!(
            changed,
            vec![FieldChange {
                field: "status",
                old: Some("failed".into()),
                new: Some("succeeded".into()),
            }]
        );
    }

    #[test]
    fn a_progress_description_is_replaced_and_another_only_filled() {
        let mut deploy = recorded(None, DeployStatus::Started);
        deploy.description = Some("canary Progressing, 10 % of traffic".into());
        let mut update = DeployUpdate {
            description: Some("canary Progressing, 20 % of traffic".into()),
            ..DeployUpdate::default()
        };
        let now = time("2026-11-26T10:07:00Z");
        let (kept, changed) = deploy.updated(&update, now).expect("applies");
        assert_eq!(kept.description, deploy.description);
        assert!(changed.is_empty());
        update.description_is_progress = true;
        let (next, changed) = deploy.updated(&update, now).expect("applies");
        assert_eq!(next.description, update.description);
        assert_eq!(changed.len(), 1);
    }

    #[test]
    fn a_final_status_fills_an_empty_finish_with_now() {
        let deploy = recorded(None, DeployStatus::Started);
        let now = time("2026-11-26T10:07:00Z");
        let update = DeployUpdate {
            status: Some(DeployStatus::Succeeded),
            ..DeployUpdate::default()
        };
        let (next, changed) = deploy.updated(&update, now).expect("applies");
        assert_eq!(next.finished_at, Some(now));
        assert_eq!(changed.len(), 2);
    }

    #[test]
    fn an_update_finishing_before_the_recorded_start_is_refused() {
        let deploy = recorded(None, DeployStatus::Started);
        let update = DeployUpdate {
            finished_at: Some(time("2026-11-26T09:00:00Z")),
            ..DeployUpdate::default()
        };
        assert!(
            deploy
                .updated(&update, time("2026-11-26T10:07:00Z"))
                .is_err()
        );
    }

    #[test]
    fn names_compare_case_insensitively() {
        assert_eq!(
            ServiceName::parse("Checkout").ok(),
            ServiceName::parse("checkout").ok()
        );
    }

    #[test]
    fn names_reject_spaces_and_empty() {
        assert!(ServiceName::parse("check out").is_err());
        assert!(Environment::parse("  ").is_err());
    }

    #[test]
    fn secret_looking_keys_are_masked() {
        let change = ConfigChange {
            key: "STRIPE_API_KEY".into(),
            old: Some("sk_live_1".into()),
            new: Some("sk_live_2".into()),
        }
        .masked();
        assert_eq!(change.old.as_deref(), Some(MASKED));
        assert_eq!(change.new.as_deref(), Some(MASKED));
    }

    #[test]
    fn ordinary_keys_keep_their_values() {
        let change = ConfigChange {
            key: "DB_POOL_SIZE".into(),
            old: Some("20".into()),
            new: Some("2".into()),
        }
        .masked();
        assert_eq!(change.new.as_deref(), Some("2"));
    }

    #[test]
    fn masking_keeps_absence_visible() {
        let change = ConfigChange {
            key: "db_password".into(),
            old: None,
            new: Some("hunter2".into()),
        }
        .masked();
        assert_eq!(change.old, None);
        assert_eq!(change.new.as_deref(), Some(MASKED));
    }
}
