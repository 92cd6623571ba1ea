//! Parsers that turn what alerting tools send into [`Alert`](crate::core::alert::Alert)s:
//! the webhook payloads Alertmanager and Grafana POST to breakwater, and the messages tools
//! and people post in alert channels.
//!
//! Parsers fill in what the source states (title, description, severity, status, labels,
//! link, a fingerprint that is the same for an alert's firing and resolved notifications)
//! and leave `service` and `environment` empty: only the configuration knows which names
//! are services, so [`Recognizer`](crate::core::alert::Recognizer) fills them later from
//! the labels, then the text. That is why parsers put every useful name into `labels`,
//! `title` or `description`, and strip chat markup that would hide a name from matching.
//!
//! - [`webhook`]: Alertmanager (version 4) and Grafana (version 1) webhook payloads;
//!   malformed payloads are refused with a [`PayloadError`] naming the field.
//! - [`channel`]: Slack and Discord messages from Alertmanager, Grafana, Datadog,
//!   PagerDuty, Opsgenie, Sentry, other bots and people.
//!
//! No parser panics on any input; tests feed them truncated and corrupted payloads.

pub mod channel;
mod markup;
pub mod webhook;

pub use channel::parse_channel_message;
pub use webhook::{PayloadError, parse_alertmanager, parse_grafana};

/// Fixtures and helpers shared by the parsers' tests.
#[cfg(test)]
pub(crate) mod tests {
    use crate::core::alert::{KnownService, Recognizer};
    use crate::core::deploy::{Environment, ServiceName};

    pub(crate) const ALERTMANAGER_FIRING: &str =
        include_str!("../../tests/fixtures/alerts/alertmanager_firing.json");
    pub(crate) const ALERTMANAGER_RESOLVED: &str =
        include_str!("../../tests/fixtures/alerts/alertmanager_resolved.json");
    pub(crate) const GRAFANA_FIRING: &str =
        include_str!("../../tests/fixtures/alerts/grafana_firing.json");

    /// The services a small shop configures: `checkout` in two environments, and `payments`
    /// so that recognition has something to confuse it with.
    pub(crate) fn recognizer() -> Recognizer {
        let service = |name: &str, envs: &[&str]| KnownService {
            name: ServiceName::parse(name).expect("valid service name"),
            aliases: Vec::new(),
            environments: envs
                .iter()
                .map(|e| Environment::parse(e).expect("valid environment"))
                .collect(),
        };
        Recognizer::new(vec![
            service("checkout", &["staging", "production"]),
            service("payments", &["staging", "production"]),
        ])
    }
}
