//! Alerts from every source in one shape, and the recognition of which service and
//! environment an alert is about: labels first (they are precise), then the text (people
//! and chat notifications write names in prose).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::deploy::{Environment, ServiceName, Target};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSource {
    Alertmanager,
    Grafana,
    Datadog,
    PagerDuty,
    Opsgenie,
    Sentry,
    /// A person wrote it in an alert channel.
    Person,
    /// Breakwater's own scripted alerts (the demo).
    Breakwater,
}

impl AlertSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Alertmanager => "alertmanager",
            Self::Grafana => "grafana",
            Self::Datadog => "datadog",
            Self::PagerDuty => "pagerduty",
            Self::Opsgenie => "opsgenie",
            Self::Sentry => "sentry",
            Self::Person => "person",
            Self::Breakwater => "breakwater",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "alertmanager" => Self::Alertmanager,
            "grafana" => Self::Grafana,
            "datadog" => Self::Datadog,
            "pagerduty" => Self::PagerDuty,
            "opsgenie" => Self::Opsgenie,
            "sentry" => Self::Sentry,
            "person" => Self::Person,
            "breakwater" => Self::Breakwater,
            _ => return None,
        })
    }

    /// Every source, for metrics that should show zeros rather than gaps.
    pub const ALL: [AlertSource; 8] = [
        Self::Alertmanager,
        Self::Grafana,
        Self::Datadog,
        Self::PagerDuty,
        Self::Opsgenie,
        Self::Sentry,
        Self::Person,
        Self::Breakwater,
    ];
}

impl fmt::Display for AlertSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Alertmanager => "Alertmanager",
            Self::Grafana => "Grafana",
            Self::Datadog => "Datadog",
            Self::PagerDuty => "PagerDuty",
            Self::Opsgenie => "Opsgenie",
            Self::Sentry => "Sentry",
            Self::Person => "a person",
            Self::Breakwater => "breakwater",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
    Unknown,
}

impl Severity {
    /// Reads the many spellings tools use (`P1`, `sev2`, `crit`, `high`, …).
    pub fn parse_lenient(raw: &str) -> Self {
        match raw.trim().to_lowercase().as_str() {
            "critical" | "crit" | "p1" | "sev1" | "sev-1" | "fatal" | "page" | "emergency"
            | "disaster" => Self::Critical,
            "error" | "err" | "high" | "major" | "p2" | "sev2" | "sev-2" | "alert" => Self::Error,
            "warning" | "warn" | "medium" | "minor" | "p3" | "sev3" | "sev-3" | "average" => {
                Self::Warning
            }
            "info" | "informational" | "low" | "p4" | "p5" | "sev4" | "sev5" | "notice" | "ok" => {
                Self::Info
            }
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_lowercase().as_str() {
            "firing" | "alerting" | "triggered" | "open" | "problem" => Some(Self::Firing),
            "resolved" | "ok" | "recovered" | "closed" => Some(Self::Resolved),
            _ => None,
        }
    }
}

/// An alert from any source. Parsers fill what the payload says; `service` and
/// `environment` are filled by [`Recognizer`] because only the configuration knows which
/// names are services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub source: AlertSource,
    pub service: Option<ServiceName>,
    pub environment: Option<Environment>,
    pub severity: Severity,
    pub status: AlertStatus,
    /// The alert's name as its tool calls it (`HighErrorRate`), or a short title.
    pub title: String,
    /// Longer human text: summary, description, the person's message.
    pub description: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub labels: BTreeMap<String, String>,
    /// Stable identity across firing and resolved notifications of the same alert.
    pub fingerprint: String,
    pub link: Option<String>,
}

impl Alert {
    /// A fingerprint for sources that do not send one: the same alert name and identifying
    /// labels give the same fingerprint when it fires and when it resolves.
    pub fn derive_fingerprint(
        source: &AlertSource,
        title: &str,
        labels: &BTreeMap<String, String>,
    ) -> String {
        let mut hasher = Sha256::new();
        hasher.update(source.as_str().as_bytes());
        hasher.update([0]);
        hasher.update(title.trim().to_lowercase().as_bytes());
        for (key, value) in labels {
            hasher.update([0]);
            hasher.update(key.as_bytes());
            hasher.update([b'=']);
            hasher.update(value.as_bytes());
        }
        hex::encode(&hasher.finalize()[..8])
    }

    pub fn target(&self) -> Option<Target> {
        Some(Target::new(
            self.service.clone()?,
            self.environment.clone()?,
        ))
    }
}

/// A configured service as recognition needs it.
#[derive(Debug, Clone)]
pub struct KnownService {
    pub name: ServiceName,
    pub aliases: Vec<String>,
    pub environments: Vec<Environment>,
}

impl KnownService {
    /// The configured environment `word` names, directly or through a common synonym
    /// (`prod` for `production`): the API accepts what alerts are matched with.
    pub fn environment_named(&self, word: &str) -> Option<Environment> {
        match_environment(self, word)
    }

    /// Whether `word` is this service's name or one of its aliases (case-insensitive).
    pub fn is_named(&self, word: &str) -> bool {
        let word = word.trim();
        self.name.as_str().eq_ignore_ascii_case(word)
            || self
                .aliases
                .iter()
                .any(|a| a.trim().eq_ignore_ascii_case(word))
    }
}

/// The label keys recognition reads a service name from, most specific first.
pub fn service_label_keys() -> &'static [&'static str] {
    SERVICE_LABELS
}

/// What recognition found. An environment is only reported for a recognised service and
/// only when it is one of that service's environments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recognition {
    pub service: Option<ServiceName>,
    pub environment: Option<Environment>,
}

/// Label keys that name a service, most specific first.
const SERVICE_LABELS: &[&str] = &[
    "service",
    "service_name",
    "app",
    "application",
    "app_kubernetes_io_name",
    "app.kubernetes.io/name",
    "deployment",
    "container",
    "job",
    "component",
];

/// Label keys that name an environment, most specific first.
const ENVIRONMENT_LABELS: &[&str] = &[
    "environment",
    "env",
    "stage",
    "tier",
    "namespace",
    "cluster",
];

/// Common spellings of environment names, so `prod` in an alert matches `production` in the
/// configuration and the other way round.
const ENVIRONMENT_SYNONYMS: &[&[&str]] = &[
    &["production", "prod", "prd", "live"],
    &["staging", "stage", "stg"],
    &["development", "dev"],
    &["qa", "test", "testing"],
];

/// Recognises service and environment from labels, then from text. Built once from the
/// configuration; cheap to share.
#[derive(Debug, Clone, Default)]
pub struct Recognizer {
    /// (lower-case name or alias, service index), longest first so `checkout-api` wins
    /// over `checkout`.
    service_names: Vec<(String, usize)>,
    services: Vec<KnownService>,
}

impl Recognizer {
    pub fn new(services: Vec<KnownService>) -> Self {
        let mut service_names = Vec::new();
        for (index, service) in services.iter().enumerate() {
            service_names.push((service.name.key(), index));
            for alias in &service.aliases {
                let alias = alias.trim().to_lowercase();
                if !alias.is_empty() {
                    service_names.push((alias, index));
                }
            }
        }
        service_names.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Self {
            service_names,
            services,
        }
    }

    pub fn services(&self) -> &[KnownService] {
        &self.services
    }

    pub fn service(&self, name: &ServiceName) -> Option<&KnownService> {
        self.services.iter().find(|s| &s.name == name)
    }

    /// Fills `alert.service` and `alert.environment` unless a parser already set them to
    /// known names.
    pub fn apply(&self, alert: &mut Alert) {
        let text = format!("{}\n{}", alert.title, alert.description);
        let found = self.recognize(&alert.labels, &text);
        alert.service = found.service;
        alert.environment = found.environment;
    }

    pub fn recognize(&self, labels: &BTreeMap<String, String>, text: &str) -> Recognition {
        let service_index = self
            .service_from_labels(labels)
            .or_else(|| self.service_from_text(text));
        let Some(index) = service_index else {
            return Recognition {
                service: None,
                environment: None,
            };
        };
        let service = &self.services[index];
        let environment = self
            .environment_from_labels(service, labels)
            .or_else(|| environment_from_text(service, text))
            .or_else(|| match service.environments.as_slice() {
                [only] => Some(only.clone()),
                _ => None,
            });
        Recognition {
            service: Some(service.name.clone()),
            environment,
        }
    }

    fn lookup_service(&self, value: &str) -> Option<usize> {
        let value = value.trim().to_lowercase();
        self.service_names
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, index)| *index)
    }

    fn service_from_labels(&self, labels: &BTreeMap<String, String>) -> Option<usize> {
        for key in SERVICE_LABELS {
            if let Some(index) = label(labels, key).and_then(|v| self.lookup_service(v)) {
                return Some(index);
            }
        }
        // Any other label whose whole value is a service name (e.g. `kubernetes_name`).
        labels.values().find_map(|value| self.lookup_service(value))
    }

    fn service_from_text(&self, text: &str) -> Option<usize> {
        let lower = text.to_lowercase();
        // Longest names are tried first; among names of equal length the earliest mention
        // wins.
        let mut best: Option<(usize, usize, usize)> = None; // (len, position, index)
        for (name, index) in &self.service_names {
            if let Some((len, _, _)) = best
                && name.len() < len
            {
                break;
            }
            if let Some(position) = find_whole_word(&lower, name) {
                let better = match best {
                    None => true,
                    Some((len, pos, _)) => name.len() > len || position < pos,
                };
                if better {
                    best = Some((name.len(), position, *index));
                }
            }
        }
        best.map(|(_, _, index)| index)
    }

    fn environment_from_labels(
        &self,
        service: &KnownService,
        labels: &BTreeMap<String, String>,
    ) -> Option<Environment> {
        for key in ENVIRONMENT_LABELS {
            if let Some(value) = label(labels, key) {
                if let Some(environment) = match_environment(service, value) {
                    return Some(environment);
                }
                // Namespaces and clusters are often `prod-eu1` or `checkout-production`.
                if let Some(environment) = environment_from_text(service, value) {
                    return Some(environment);
                }
            }
        }
        None
    }
}

fn label<'a>(labels: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// The configured environment a word stands for, directly or through a synonym.
fn match_environment(service: &KnownService, word: &str) -> Option<Environment> {
    let word = word.trim().to_lowercase();
    if let Some(env) = service.environments.iter().find(|e| e.key() == word) {
        return Some(env.clone());
    }
    let group = ENVIRONMENT_SYNONYMS
        .iter()
        .find(|group| group.contains(&word.as_str()))?;
    service
        .environments
        .iter()
        .find(|env| group.contains(&env.key().as_str()))
        .cloned()
}

fn environment_from_text(service: &KnownService, text: &str) -> Option<Environment> {
    let lower = text.to_lowercase();
    words(&lower).find_map(|(_, word)| match_environment(service, word))
}

/// Words of text: runs of letters, digits and `_`, with their byte offsets.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.char_indices()
        .filter(|(i, c)| {
            is_word_char(*c)
                && text[..*i]
                    .chars()
                    .next_back()
                    .is_none_or(|p| !is_word_char(p))
        })
        .map(move |(start, _)| {
            let end = text[start..]
                .char_indices()
                .find(|(_, c)| !is_word_char(*c))
                .map_or(text.len(), |(offset, _)| start + offset);
            (start, &text[start..end])
        })
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Position of `needle` in `haystack` where it stands as a whole word: not preceded or
/// followed by a letter, digit or `_`. Hyphens and dots separate words, so `checkout` is
/// found in `checkout-prod` but not in `checkouts`.
pub fn find_whole_word(haystack: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    let mut from = 0;
    while let Some(offset) = haystack[from..].find(needle) {
        let start = from + offset;
        let end = start + needle.len();
        let before_ok = haystack[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !is_word_char(c));
        let after_ok = haystack[end..]
            .chars()
            .next()
            .is_none_or(|c| !is_word_char(c));
        if before_ok && after_ok {
            return Some(start);
        }
        from = start + haystack[start..].chars().next().map_or(1, char::len_utf8);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, aliases: &[&str], envs: &[&str]) -> KnownService {
        KnownService {
            name: ServiceName::parse(name).expect("valid"),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            environments: envs
                .iter()
                .map(|e| Environment::parse(e).expect("valid"))
                .collect(),
        }
    }

    fn recognizer() -> Recognizer {
        Recognizer::new(vec![
            service("checkout", &["checkout-svc"], &["staging", "production"]),
            service("checkout-api", &[], &["production"]),
            service("payments", &["pay"], &["staging", "production"]),
        ])
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_take_precedence_over_text() {
        let found = recognizer().recognize(
            &labels(&[("service", "payments"), ("env", "prod")]),
            "checkout is down",
        );
        assert_eq!(
            found.service.map(|s| s.to_string()).as_deref(),
            Some("payments")
        );
        assert_eq!(
            found.environment.map(|e| e.to_string()).as_deref(),
            Some("production")
        );
    }

    #[test]
    fn plain_text_from_a_person_is_recognised() {
        let found = recognizer().recognize(&labels(&[]), "checkout prod is throwing 500s");
        assert_eq!(
            found.service.map(|s| s.to_string()).as_deref(),
            Some("checkout")
        );
        assert_eq!(
            found.environment.map(|e| e.to_string()).as_deref(),
            Some("production")
        );
    }

    #[test]
    fn names_match_only_as_whole_words() {
        let found = recognizer().recognize(&labels(&[]), "checkouts are slow in production");
        assert_eq!(found.service, None);
    }

    #[test]
    fn the_longest_matching_name_wins() {
        let found = recognizer().recognize(&labels(&[]), "5xx on checkout-api");
        assert_eq!(
            found.service.map(|s| s.to_string()).as_deref(),
            Some("checkout-api")
        );
    }

    #[test]
    fn aliases_are_recognised() {
        let found = recognizer().recognize(&labels(&[("app", "pay")]), "");
        assert_eq!(
            found.service.map(|s| s.to_string()).as_deref(),
            Some("payments")
        );
    }

    #[test]
    fn a_single_environment_is_implied() {
        let found = recognizer().recognize(&labels(&[]), "checkout-api latency");
        assert_eq!(
            found.environment.map(|e| e.to_string()).as_deref(),
            Some("production")
        );
    }

    #[test]
    fn an_ambiguous_environment_stays_unknown() {
        let found = recognizer().recognize(&labels(&[]), "checkout latency");
        assert_eq!(found.environment, None);
    }

    #[test]
    fn namespace_labels_containing_the_environment_are_read() {
        let found = recognizer().recognize(
            &labels(&[("job", "checkout"), ("namespace", "shop-staging")]),
            "",
        );
        assert_eq!(
            found.environment.map(|e| e.to_string()).as_deref(),
            Some("staging")
        );
    }

    #[test]
    fn whole_word_search_skips_partial_matches_and_finds_later_ones() {
        assert_eq!(
            find_whole_word("checkouts then checkout", "checkout"),
            Some(15)
        );
        assert_eq!(find_whole_word("précheckout", "checkout"), None);
    }

    #[test]
    fn fingerprints_are_stable_and_distinguish_labels() {
        let a = Alert::derive_fingerprint(&AlertSource::Grafana, "High", &labels(&[("a", "1")]));
        let b = Alert::derive_fingerprint(&AlertSource::Grafana, "high ", &labels(&[("a", "1")]));
        let c = Alert::derive_fingerprint(&AlertSource::Grafana, "High", &labels(&[("a", "2")]));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
