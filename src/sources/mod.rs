//! Deploy events from the systems teams already run: GitHub `deployment` and
//! `deployment_status` webhooks ([`github`]), GitLab deployment events ([`gitlab`]) and the
//! Flux notification-controller's `generic-hmac` provider ([`flux`]), Flagger's event webhook
//! ([`flagger`]). (Argo CD needs no parser: its notifications template posts to
//! `POST /api/v1/deploys`.)
//!
//! Each module checks the sender's signature or token (`verify`, before the body is read)
//! and parses one delivery into a [`Parsed`]: a deploy event, something that is not a deploy (answered 202 with the reason,
//! so the sender does not retry it), or GitHub's ping. [`route`] then maps the names the
//! event carries to a configured service and environment: the explicit `[[services]]` keys
//! (`github_repository`, `gitlab_project`, `flux_kustomization`, `flux_helmrelease`,
//! `flagger_canary`) first,
//! then the service's name or aliases. An event that maps to nothing is [`Unrouted`]: the
//! HTTP layer audits and counts it instead of dropping it. Nothing here knows HTTP
//! frameworks; `http.rs` wires the routes and records deploys the way
//! `POST /api/v1/deploys` does.

pub mod flagger;
pub mod flux;
pub mod github;
pub mod gitlab;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::config::{Config, Secret, ServiceConfig};
use crate::core::deploy::{Change, DeploySource, DeployStatus, Environment, ServiceName};

/// The longest free text (a commit title, a Flux message) kept as a deploy's description.
const MAX_DESCRIPTION: usize = 500;

/// Where a deploy event came from; also the `source` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Github,
    Gitlab,
    Flux,
    Flagger,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Flux => "flux",
            Self::Flagger => "flagger",
        }
    }

    /// What the deploys this source reports are stored as.
    pub fn deploy_source(self) -> DeploySource {
        match self {
            Self::Github => DeploySource::Github,
            Self::Gitlab => DeploySource::Gitlab,
            Self::Flux => DeploySource::Flux,
            Self::Flagger => DeploySource::Flagger,
        }
    }

    /// How people name the source.
    pub fn name(self) -> &'static str {
        match self {
            Self::Github => "GitHub",
            Self::Gitlab => "GitLab",
            Self::Flux => "Flux",
            Self::Flagger => "Flagger",
        }
    }

    /// Whether the source's descriptions say how far a deploy has got (a canary's phase and
    /// weight), so each event replaces the last one's.
    pub fn reports_progress(self) -> bool {
        self == Self::Flagger
    }

    /// The setting that turns the source on.
    pub fn secret_key(self) -> &'static str {
        match self {
            Self::Github => "sources.github.secret",
            Self::Gitlab => "sources.gitlab.token",
            Self::Flux => "sources.flux.secret",
            Self::Flagger => "sources.flagger.token",
        }
    }
}

/// Why a delivery was refused before its body was read (answered 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A credential that is not a header (Flagger's token).
    #[error("missing {0}")]
    Absent(&'static str),
    #[error("{0} is not sha256=<64 hex digits>")]
    Malformed(&'static str),
    #[error("invalid {0}")]
    Forged(&'static str),
}

/// Why a delivery's body cannot be used: unreadable (400) or holding values breakwater
/// refuses (422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(String),
}

/// What one authenticated delivery said.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// GitHub's `ping` when a webhook is created.
    Ping,
    /// Not a deploy (another event type, progress noise); the reason is answered.
    Ignored(String),
    Deploy(Box<DeployEvent>),
}

/// How a later event about the same deploy finds the one recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// Every event of the deploy carries the same start (GitHub's `deployment.created_at`).
    SameStart,
    /// Events carry only the time of their own change (GitLab, Flux): the newest deploy of
    /// the same version is the one they are about.
    LatestOfVersion,
}

/// What names a deploy's service, as the source sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A GitHub repository or GitLab project path: `acme/checkout`.
    Repository(String),
    /// A Flux Kustomization or HelmRelease.
    FluxObject {
        kind: flux::Kind,
        namespace: String,
        name: String,
    },
    /// A Flagger Canary.
    FlaggerCanary { namespace: String, name: String },
}

impl Subject {
    /// The name a service would be called by when no explicit key maps it: the repository's
    /// last path segment, or the Flux object's name.
    fn short_name(&self) -> &str {
        match self {
            Self::Repository(path) => path.rsplit('/').next().unwrap_or(path),
            Self::FluxObject { name, .. } | Self::FlaggerCanary { name, .. } => name,
        }
    }
}

/// One deploy as a source reported it, before it is matched to a configured service.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployEvent {
    pub source: Source,
    pub subject: Subject,
    /// The environment name the source gave (GitHub and GitLab environments).
    pub environment: Option<String>,
    /// A second name for the environment, tried after `environment`: GitLab's tier, the
    /// Flux object's namespace.
    pub environment_hint: Option<String>,
    pub version: String,
    pub commit: Option<String>,
    pub author: Option<String>,
    pub description: Option<String>,
    pub url: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: DeployStatus,
    pub changes: Vec<Change>,
    pub identity: Identity,
}

impl DeployEvent {
    /// What the audit log records of an event that could not be routed.
    pub fn seen(&self) -> serde_json::Value {
        let mut seen = match &self.subject {
            Subject::Repository(path) => serde_json::json!({ "repository": path }),
            Subject::FluxObject {
                kind,
                namespace,
                name,
            } => serde_json::json!({
                "kind": kind.as_str(),
                "namespace": namespace,
                "name": name,
            }),
            Subject::FlaggerCanary { namespace, name } => serde_json::json!({
                "kind": "Canary",
                "namespace": namespace,
                "name": name,
            }),
        };
        if let Some(object) = seen.as_object_mut() {
            if let Some(environment) = &self.environment {
                object.insert("environment".into(), environment.clone().into());
            }
            if let (Source::Gitlab, Some(tier)) = (self.source, &self.environment_hint) {
                object.insert("environment_tier".into(), tier.clone().into());
            }
            object.insert("version".into(), self.version.clone().into());
        }
        seen
    }
}

/// The configured service and environment an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub service: ServiceName,
    pub environment: Environment,
}

/// An event that maps to no configured service or environment, with the setting to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrouted {
    pub reason: String,
}

/// Maps an event to a configured service and environment: the explicit `[[services]]`
/// key of its source first, then a service named (or aliased) like the repository or the
/// Flux object; the environment from a Flux key's `{environment}`, else the event's
/// environment name (with the usual synonyms, `prod` for `production`), else its hint,
/// else (Flux) `sources.flux.environment`.
pub fn route(config: &Config, event: &DeployEvent) -> Result<Routed, Unrouted> {
    let explicit = config
        .services
        .iter()
        .find_map(|service| explicit_match(service, event).map(|env| (service, env)));
    let (service, keyed_environment) = match explicit {
        Some((service, environment)) => (service, environment),
        None => {
            let name = event.subject.short_name();
            let named = config.services.iter().find(|s| s.known().is_named(name));
            match named {
                Some(service) => (service, None),
                None => return Err(no_service(event)),
            }
        }
    };
    if let Some(environment) = keyed_environment {
        return Ok(Routed {
            service: service.name.clone(),
            environment,
        });
    }
    let known = service.known();
    let from_flux_setting = match event.source {
        Source::Flux => config.sources.flux_environment.as_ref(),
        Source::Flagger => config.sources.flagger_environment.as_ref(),
        Source::Github | Source::Gitlab => None,
    };
    let environment = [
        event.environment.as_deref(),
        event.environment_hint.as_deref(),
        from_flux_setting.map(Environment::as_str),
    ]
    .into_iter()
    .flatten()
    .find_map(|word| known.environment_named(word));
    match environment {
        Some(environment) => Ok(Routed {
            service: service.name.clone(),
            environment,
        }),
        None => Err(no_environment(service, event)),
    }
}

/// Whether `service`'s key for the event's source names the event's subject; with the
/// environment the key names when it has an `{environment}` placeholder.
fn explicit_match(service: &ServiceConfig, event: &DeployEvent) -> Option<Option<Environment>> {
    let keys = &service.sources;
    match (&event.subject, event.source) {
        (Subject::Repository(path), Source::Github) => keys
            .github_repository
            .as_deref()
            .filter(|key| key.eq_ignore_ascii_case(path))
            .map(|_| None),
        (Subject::Repository(path), Source::Gitlab) => keys
            .gitlab_project
            .as_deref()
            .filter(|key| key.eq_ignore_ascii_case(path))
            .map(|_| None),
        (
            Subject::FluxObject {
                kind,
                namespace,
                name,
            },
            _,
        ) => {
            let pattern = match kind {
                flux::Kind::Kustomization => keys.flux_kustomization.as_ref(),
                flux::Kind::HelmRelease => keys.flux_helmrelease.as_ref(),
            }?;
            object_match(service, pattern, namespace, name)
        }
        (Subject::FlaggerCanary { namespace, name }, _) => {
            let pattern = keys.flagger_canary.as_ref()?;
            object_match(service, pattern, namespace, name)
        }
        (Subject::Repository(_), Source::Flux | Source::Flagger) => None,
    }
}

/// Whether a Kubernetes object key (`NAME` or `NAMESPACE/NAME`, with `{service}` and
/// `{environment}`) of `service` names the object; with the environment it names when
/// the key has an `{environment}` placeholder.
fn object_match(
    service: &ServiceConfig,
    pattern: &str,
    namespace: &str,
    name: &str,
) -> Option<Option<Environment>> {
    let qualified = format!("{namespace}/{name}");
    let pattern = pattern.to_owned();
    let mut matching = service.environments.iter().filter(|env| {
        let expected = service.setting(&Some(pattern.clone()), env, "");
        expected.eq_ignore_ascii_case(name) || expected.eq_ignore_ascii_case(&qualified)
    });
    let first = matching.next()?.clone();
    // Without `{environment}` every environment expands alike: the key names the
    // service only.
    Some(pattern.contains("{environment}").then_some(first))
}

fn no_service(event: &DeployEvent) -> Unrouted {
    let name = event.subject.short_name();
    let reason = match (&event.subject, event.source) {
        (Subject::Repository(path), Source::Github) => format!(
            "no [[services]] entry has github_repository = \"{path}\" and no service or alias is named \"{name}\""
        ),
        (Subject::Repository(path), _) => format!(
            "no [[services]] entry has gitlab_project = \"{path}\" and no service or alias is named \"{name}\""
        ),
        (
            Subject::FluxObject {
                kind, namespace, ..
            },
            _,
        ) => format!(
            "no [[services]] entry has {} = \"{namespace}/{name}\" (or \"{name}\") and no service or alias is named \"{name}\"",
            kind.service_key()
        ),
        (Subject::FlaggerCanary { namespace, .. }, _) => format!(
            "no [[services]] entry has flagger_canary = \"{namespace}/{name}\" (or \"{name}\") and no service or alias is named \"{name}\""
        ),
    };
    Unrouted { reason }
}

fn no_environment(service: &ServiceConfig, event: &DeployEvent) -> Unrouted {
    let known = service
        .environments
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let tried: Vec<&str> = [
        event.environment.as_deref(),
        event.environment_hint.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let tried = if tried.is_empty() {
        "no environment name".to_owned()
    } else {
        format!("\"{}\"", tried.join("\", \""))
    };
    let fix = match event.source {
        Source::Flux => {
            "; name the environment in the service's flux key with {environment} or set sources.flux.environment"
        }
        Source::Flagger => {
            "; name the environment in the service's flagger_canary key with {environment} or set sources.flagger.environment"
        }
        Source::Github | Source::Gitlab => "; name the environment like one of them",
    };
    Unrouted {
        reason: format!(
            "the event is for {} but {tried} is none of its environments ({known}){fix}",
            service.name
        ),
    }
}

/// Checks a `sha256=<hex>` HMAC-SHA256 of the body keyed with `secret` (GitHub's
/// `X-Hub-Signature-256`, Flux's `X-Signature`) in constant time. The signature helper is
/// the one the webhook backend signs its own requests with.
pub fn verify_sha256(
    header: &'static str,
    presented: Option<&str>,
    secret: &Secret,
    body: &[u8],
) -> Result<(), AuthError> {
    let presented = presented.ok_or(AuthError::Missing(header))?.trim();
    let digest = presented
        .strip_prefix("sha256=")
        .filter(|hex| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or(AuthError::Malformed(header))?;
    let expected = crate::backends::webhook::signature(secret.expose().as_bytes(), body);
    let presented = format!("sha256={}", digest.to_ascii_lowercase());
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::Forged(header))
    }
}

/// Compares a presented token with the configured one in constant time.
pub fn token_matches(presented: &str, expected: &Secret) -> bool {
    presented
        .as_bytes()
        .ct_eq(expected.expose().as_bytes())
        .into()
}

/// Reads a JSON body; a type error names the field's path (`deployment.created_at: …`).
fn read_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, PayloadError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        if path == "." || path.is_empty() {
            PayloadError::Malformed(format!("malformed JSON: {}", error.inner()))
        } else {
            PayloadError::Malformed(format!("{path}: {}", error.inner()))
        }
    })
}

/// What people call a deployed commit: the ref when it is a tag or looks like a version
/// (`v1.4.2`), else the branch and the short commit (`main@9f3c2ab`), else the short commit.
fn version_of(reference: Option<&str>, sha: Option<&str>) -> Option<String> {
    let short = sha.map(short_sha);
    let reference = reference.map(str::trim).filter(|r| !r.is_empty());
    let Some(reference) = reference else {
        return short;
    };
    let is_tag = reference.starts_with("refs/tags/");
    let name = reference
        .strip_prefix("refs/heads/")
        .or_else(|| reference.strip_prefix("refs/tags/"))
        .unwrap_or(reference);
    let names_the_commit = sha
        .is_some_and(|sha| name.len() >= 7 && sha.to_lowercase().starts_with(&name.to_lowercase()));
    let looks_like_version = name
        .strip_prefix(['v', 'V'])
        .unwrap_or(name)
        .starts_with(|c: char| c.is_ascii_digit());
    match short {
        _ if names_the_commit => short,
        _ if is_tag || looks_like_version => Some(name.to_owned()),
        Some(short) => Some(format!("{name}@{short}")),
        None => Some(name.to_owned()),
    }
}

/// The first seven characters of a commit id, as Git shows it.
fn short_sha(sha: &str) -> String {
    sha.chars().take(7).collect()
}

/// Trimmed text, `None` when empty; clipped to `max` characters.
fn text(value: Option<&str>, max: usize) -> Option<String> {
    let value = value?.trim();
    if value.is_empty() {
        return None;
    }
    if value.chars().count() <= max {
        return Some(value.to_owned());
    }
    let mut clipped: String = value.chars().take(max.saturating_sub(1)).collect();
    clipped.push('…');
    Some(clipped)
}

/// A link people can open: http(s) only, else dropped (it is a convenience, not a reason
/// to refuse a deploy).
fn link(value: Option<&str>) -> Option<String> {
    let value = value?.trim();
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Some(value.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_the_version() {
        assert_eq!(
            version_of(Some("refs/tags/v1.4.2"), Some("9f3c2ab0c4")),
            Some("v1.4.2".into())
        );
        assert_eq!(
            version_of(Some("2.0.1"), Some("9f3c2ab0c4")),
            Some("2.0.1".into())
        );
    }

    #[test]
    fn a_branch_is_named_with_the_short_commit() {
        assert_eq!(
            version_of(Some("main"), Some("9f3c2ab0c4d5")),
            Some("main@9f3c2ab".into())
        );
    }

    #[test]
    fn a_ref_that_is_the_commit_gives_the_short_commit() {
        assert_eq!(
            version_of(Some("9f3c2ab0c4d5e6"), Some("9f3c2ab0c4d5e6f7")),
            Some("9f3c2ab".into())
        );
        assert_eq!(version_of(None, Some("9f3c2ab0c4")), Some("9f3c2ab".into()));
    }

    #[test]
    fn a_signature_over_the_body_with_the_secret_is_accepted() {
        let secret = Secret::new("It's a Secret to Everybody");
        let body = b"Hello, World!";
        // The example from GitHub's documentation on validating webhook deliveries.
        let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            verify_sha256("X-Hub-Signature-256", Some(signature), &secret, body),
            Ok(())
        );
    }

    #[test]
    fn a_signature_over_another_body_is_forged() {
        let secret = Secret::new("It's a Secret to Everybody");
        let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            verify_sha256("X-Signature", Some(signature), &secret, b"Hello, World?"),
            Err(AuthError::Forged("X-Signature"))
        );
    }

    #[test]
    fn a_missing_or_malformed_signature_is_refused() {
        let secret = Secret::new("secret");
        assert_eq!(
            verify_sha256("X-Signature", None, &secret, b"{}"),
            Err(AuthError::Missing("X-Signature"))
        );
        assert_eq!(
            verify_sha256("X-Signature", Some("sha1=abc"), &secret, b"{}"),
            Err(AuthError::Malformed("X-Signature"))
        );
    }

    fn config() -> Config {
        Config::parse(
            r#"
            [backends.sim]
            kind = "simulated"

            [[services]]
            name = "checkout"
            environments = ["staging", "production"]
            backend = "sim"

            [[services]]
            name = "storefront"
            environments = ["staging", "production"]
            aliases = ["shop"]
            backend = "sim"
            flux_kustomization = "storefront"
            "#,
        )
        .expect("valid configuration")
    }

    fn event(source: Source, subject: Subject, environment: Option<&str>) -> DeployEvent {
        DeployEvent {
            source,
            subject,
            environment: environment.map(str::to_owned),
            environment_hint: None,
            version: "v1".into(),
            commit: None,
            author: None,
            description: None,
            url: None,
            started_at: None,
            finished_at: None,
            status: DeployStatus::Succeeded,
            changes: Vec::new(),
            identity: Identity::SameStart,
        }
    }

    fn flux_event(namespace: &str) -> DeployEvent {
        let mut event = event(
            Source::Flux,
            Subject::FluxObject {
                kind: flux::Kind::Kustomization,
                namespace: namespace.into(),
                name: "storefront".into(),
            },
            None,
        );
        event.environment_hint = Some(namespace.into());
        event
    }

    #[test]
    fn a_repository_named_like_an_alias_routes_to_its_service_with_environment_synonyms() {
        let routed = route(
            &config(),
            &event(
                Source::Github,
                Subject::Repository("acme/shop".into()),
                Some("prod"),
            ),
        )
        .expect("routed");
        assert_eq!(routed.service.as_str(), "storefront");
        assert_eq!(routed.environment.as_str(), "production");
    }

    #[test]
    fn a_flux_namespace_that_names_no_environment_falls_back_to_the_configured_one() {
        let mut config = config();
        let unrouted = route(&config, &flux_event("flux-system")).expect_err("no environment");
        assert!(
            unrouted.reason.contains("sources.flux.environment"),
            "{}",
            unrouted.reason
        );
        config.sources.flux_environment = Environment::parse("production").ok();
        let routed = route(&config, &flux_event("flux-system")).expect("routed");
        assert_eq!(routed.environment.as_str(), "production");
        // A namespace that names an environment wins over the setting.
        let routed = route(&config, &flux_event("staging")).expect("routed");
        assert_eq!(routed.environment.as_str(), "staging");
    }

    #[test]
    fn a_repository_no_service_is_named_like_is_unrouted_naming_the_key() {
        let unrouted = route(
            &config(),
            &event(
                Source::Gitlab,
                Subject::Repository("acme/ledger".into()),
                Some("production"),
            ),
        )
        .expect_err("unrouted");
        assert!(
            unrouted.reason.contains("gitlab_project = \"acme/ledger\""),
            "{}",
            unrouted.reason
        );
    }

    #[test]
    fn long_text_is_clipped_with_an_ellipsis() {
        assert_eq!(text(Some("  abcdef "), 4), Some("abc…".into()));
        assert_eq!(text(Some("   "), 4), None);
    }
}
