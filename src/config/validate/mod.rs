//! Validation: turns the TOML table into the typed `Config`, reporting every problem with
//! its key path instead of stopping at the first. This module holds the walk over the
//! sections and the checks they share; each submodule adds one `impl Validator` block for
//! the sections it checks.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::de::DeserializeOwned;
use url::Url;

use super::secrets::SecretResolver;
use super::{ApiConfig, Config, Problem, WebhooksConfig, join, suggest};
use crate::core::policy::Principal;

mod backends;
mod chat;
mod policy;
mod server;
mod services;
mod sources;

pub(super) struct Validator<'a> {
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<Problem>,
    pub(super) secrets: &'a dyn SecretResolver,
    /// Every `[backends.NAME]` written, with its kind when that is one breakwater knows,
    /// including those with problems: a service naming a broken backend is not told the
    /// backend does not exist (one mistake, one problem).
    declared_backends: BTreeMap<String, Option<String>>,
    /// The names of every `[[services]]` written, valid or not, in lower case.
    declared_services: HashSet<String>,
}

const SECTIONS: &[&str] = &[
    "server", "database", "api", "webhooks", "slack", "discord", "console", "services", "backends",
    "policy", "audit", "alerts", "sources",
];

impl<'a> Validator<'a> {
    pub(super) fn new(secrets: &'a dyn SecretResolver) -> Self {
        Self {
            problems: Vec::new(),
            warnings: Vec::new(),
            secrets,
            declared_backends: BTreeMap::new(),
            declared_services: HashSet::new(),
        }
    }

    pub(super) fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Deserializes one value, reporting unknown keys (with the nearest known one) and the
    /// first type error by path. A required key reported missing because it was misspelt
    /// is reported once, as the misspelling.
    fn section<T: DeserializeOwned>(&mut self, path: &str, value: toml::Value) -> Option<T> {
        let mut unknown: Vec<(String, String, Option<&'static str>)> = Vec::new();
        let mut record = |p: serde_ignored::Path<'_>| {
            let steps = suggest::steps(&p);
            let (word, known) = match steps.split_last() {
                Some((suggest::Step::Key(word), parents)) => {
                    (word.clone(), suggest::known_keys::<T>(parents))
                }
                _ => (p.to_string(), None),
            };
            let nearest = known.and_then(|known| suggest::nearest(&word, known));
            let message = suggest::unknown_key_message(&word, known);
            unknown.push((p.to_string(), message, nearest));
        };
        let result: Result<T, _> =
            serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut record));
        let suggested: Vec<&'static str> = unknown.iter().filter_map(|(_, _, n)| *n).collect();
        for (key, message, _) in unknown {
            self.problem(join(path, &key), message);
        }
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                let at = error.path().to_string();
                let message = error.inner().message().to_owned();
                let misspelt = suggested
                    .iter()
                    .any(|key| message == format!("missing field `{key}`"));
                if !misspelt {
                    self.problem(join(path, &at), message);
                }
                None
            }
        }
    }

    pub(super) fn config(&mut self, text: &str) -> Option<Config> {
        let mut table: toml::Table = match text.parse() {
            Ok(table) => table,
            Err(error) => {
                let message = error.message().to_owned();
                let location = error
                    .span()
                    .map(|span| {
                        let line = text[..span.start].matches('\n').count() + 1;
                        format!("line {line}: ")
                    })
                    .unwrap_or_default();
                self.problem("", format!("{location}invalid TOML: {message}"));
                return None;
            }
        };
        let keys: Vec<String> = table.keys().cloned().collect();
        for key in keys {
            if !SECTIONS.contains(&key.as_str()) {
                let message = match suggest::nearest(&key, SECTIONS) {
                    Some(section) => format!("unknown section `{key}` — did you mean `{section}`?"),
                    None => format!("unknown section (known: {})", SECTIONS.join(", ")),
                };
                self.problem(key.clone(), message);
            }
        }
        let mut take = |name: &str| table.remove(name);

        let server = self.server(take("server"));
        let database = self.database(take("database"));
        let api = ApiConfig {
            token: self.token_section("api", take("api")),
        };
        let webhooks = WebhooksConfig {
            token: self.token_section("webhooks", take("webhooks")),
        };
        let slack = take("slack").and_then(|v| self.slack(v));
        let discord = take("discord").and_then(|v| self.discord(v));
        let console = self.console(take("console"));
        let backends = self.backends(take("backends"));
        let services = self.services(take("services"), &backends);
        let policy = self.policy(take("policy"), &services);
        let audit = self.audit(take("audit"));
        let alerts = self.alerts(take("alerts"));
        let sources = self.sources(take("sources"));
        self.service_source_keys(&services, &sources);

        if let Some(slack) = &slack {
            for service in &services {
                if service.slack_channel.is_none() && slack.alert_channels.is_empty() {
                    self.warn(
                        format!("services.{}", service.name),
                        "no slack_channel and no slack.alert_channels: webhook alerts for it are not posted on Slack",
                    );
                }
            }
        }
        if policy.rollback_allowed.is_empty()
            && services.iter().all(|s| s.rollback_allowed.is_none())
            && !services.is_empty()
        {
            self.warn("policy.rollback_allowed", "is empty: nobody can roll back");
        }

        Some(Config {
            server: server?,
            database: database?,
            api,
            webhooks,
            slack,
            discord,
            console,
            services,
            backends,
            policy,
            audit,
            alerts,
            sources,
            warnings: Vec::new(),
        })
    }

    fn duration(&mut self, path: &str, raw: Option<&str>, default: Duration) -> Duration {
        let Some(raw) = raw else { return default };
        match humantime::parse_duration(raw) {
            Ok(duration) if duration.is_zero() => {
                self.problem(path, "must be longer than zero");
                default
            }
            Ok(duration) => duration,
            Err(error) => {
                self.problem(
                    path,
                    format!("{raw:?} is not a duration like \"30s\", \"15m\" or \"6h\" ({error})"),
                );
                default
            }
        }
    }

    fn url(&mut self, path: &str, raw: &str) -> Option<Url> {
        match Url::parse(raw) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            Ok(_) => {
                self.problem(path, format!("{raw:?} must be an http:// or https:// URL"));
                None
            }
            Err(error) => {
                self.problem(path, format!("{raw:?} is not a URL ({error})"));
                None
            }
        }
    }

    /// A base URL with a trailing slash, so joining method names keeps its path.
    fn base_url(&mut self, path: &str, raw: Option<&str>, default: &str) -> Url {
        let raw = raw.unwrap_or(default);
        let mut url = self.url(path, raw).unwrap_or_else(|| {
            Url::parse(default).unwrap_or_else(|_| unreachable!("default URLs are valid"))
        });
        if !url.path().ends_with('/') {
            let with_slash = format!("{}/", url.path());
            url.set_path(&with_slash);
        }
        url
    }

    fn principals(&mut self, path: &str, list: &[String]) -> Vec<Principal> {
        list.iter()
            .enumerate()
            .filter_map(|(i, raw)| match Principal::parse(raw) {
                Ok(principal) => Some(principal),
                Err(error) => {
                    self.problem(format!("{path}[{i}]"), error.to_string());
                    None
                }
            })
            .collect()
    }
}

fn is_slack_channel_id(id: &str) -> bool {
    id.len() >= 9
        && id.len() <= 20
        && matches!(id.as_bytes()[0], b'C' | b'G' | b'D')
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}
