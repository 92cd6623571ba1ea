//! The configuration: one TOML file, read and validated once at start-up into typed values.
//! Every problem is reported with its key path (`services[1].backend: …`), all of them at
//! once, and unknown keys are errors because a misspelt key silently ignored is a policy
//! silently not applied. Secrets are never inline: `"${ENV_VAR}"` or `{ file = "…" }`.
//!
//! This module holds the typed values and the loading entry points; `raw` the shapes as
//! written, `secrets` where secret values come from, `validate` the checks that turn one
//! into the other, `files` the files and programs `check-config` looks for, and `suggest`
//! the nearest known key for a misspelt one.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::core::alert::KnownService;
use crate::core::deploy::{Environment, ServiceName};
use crate::core::policy::{Policy, Principal};
use crate::core::repository::Repository;

mod files;
mod raw;
#[cfg(test)]
mod runner_identity_tests;
mod secrets;
mod suggest;
#[cfg(test)]
mod tests;
mod validate;

use secrets::{EnvSecrets, SecretResolver};
use validate::Validator;

/// Where `serve` looks when neither `--config` nor `$BREAKWATER_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config/breakwater.toml";

/// A secret value. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", read_message(path, source))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} problem(s) in the configuration:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Self::Read { path, source } => {
                vec![Problem {
                    path: String::new(),
                    message: read_message(path, source),
                }]
            }
            Self::Invalid(problems) => problems.clone(),
        }
    }
}

/// Why the configuration file cannot be read; a missing one says how to name another,
/// since the default path is relative to the directory breakwater was started in.
fn read_message(path: &Path, error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::NotFound {
        let place = match std::path::absolute(path) {
            Ok(absolute) if path.is_relative() => {
                format!("{} ({})", path.display(), absolute.display())
            }
            _ => path.display().to_string(),
        };
        format!(
            "configuration file {place} not found; pass --config FILE or set BREAKWATER_CONFIG \
             (default: {DEFAULT_CONFIG_PATH})"
        )
    } else {
        format!(
            "cannot read the configuration file {}: {}",
            path.display(),
            io_message(error)
        )
    }
}

/// An I/O error's words without the trailing "(os error N)", for messages to operators.
pub(crate) fn io_message(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

// ----------------------------------------------------------------------------------------
// The typed configuration.

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub api: ApiConfig,
    pub webhooks: WebhooksConfig,
    pub slack: Option<SlackConfig>,
    pub discord: Option<DiscordConfig>,
    pub console: ConsoleConfig,
    pub services: Vec<ServiceConfig>,
    pub backends: BTreeMap<String, BackendConfig>,
    pub policy: Policy,
    pub audit: AuditConfig,
    pub alerts: AlertsConfig,
    pub sources: SourcesConfig,
    /// Things that are allowed but probably not meant (printed by `check-config`).
    pub warnings: Vec<Problem>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The address people reach the bot at, for links to the console in messages.
    pub public_url: Option<Url>,
    /// This process's stable name on the rollbacks it runs (`server.runner_id`; default
    /// the host or pod name and the listen port). A restarted process with the same name
    /// takes its rollbacks left running back at once; others wait `heartbeat_timeout`.
    pub runner_id: String,
    /// How often running rollbacks' heartbeats are refreshed and dead runners' rollbacks
    /// looked for.
    pub heartbeat_interval: Duration,
    /// A running rollback whose runner has not heartbeaten for this long is adopted by
    /// another replica.
    pub heartbeat_timeout: Duration,
    /// How long a running rollback may take to finish on shutdown before it is recorded
    /// as interrupted.
    pub shutdown_grace: Duration,
    /// Limits on HTTP connections, so that idle or slow clients cannot use up the
    /// process's file descriptors.
    pub connections: ConnectionLimits,
}

/// How long a connection may take and how many may be open (`[server]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A client must send a request's complete headers within this time after starting
    /// it (or after the previous response); otherwise its connection is closed.
    pub header_read_timeout: Duration,
    /// A connection with nothing read or written for this long is closed gracefully, and
    /// dropped if it stays silent for as long again (a stalled upload).
    pub idle_timeout: Duration,
    /// Connections served at once. Beyond it, new connections are not accepted and wait
    /// in the kernel's listen backlog until one closes (the timeouts above free slots).
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: Secret,
}

#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// Bearer token for `/api/v1/deploys`; without it the deploy API is off.
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, Default)]
pub struct WebhooksConfig {
    /// Bearer token (or basic-auth password) for `/webhooks/*`; without it they are off.
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackMode {
    Socket,
    Http,
}

#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub mode: SlackMode,
    pub bot_token: Secret,
    pub app_token: Option<Secret>,
    pub signing_secret: Option<Secret>,
    pub api_url: Url,
    pub alert_channels: Vec<String>,
    /// The first pause before Socket Mode reconnects after a connection that failed or
    /// ended before Slack's `hello`; it doubles up to 30 s and resets after a healthy
    /// session.
    pub reconnect_backoff: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscordMode {
    Gateway,
    Http,
}

#[derive(Debug, Clone)]
pub struct DiscordConfig {
    pub mode: DiscordMode,
    pub token: Secret,
    pub application_id: Option<u64>,
    pub public_key: Option<String>,
    pub guild_id: Option<u64>,
    pub alert_channels: Vec<u64>,
    pub api_url: Url,
}

#[derive(Debug, Clone)]
pub struct ConsoleUser {
    pub name: String,
    /// An argon2id PHC string (`breakwater hash-password` prints one).
    pub password_hash: String,
    /// Signs in only from the machine itself (the demo's generated user).
    pub loopback_only: bool,
}

#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub enabled: bool,
    pub users: Vec<ConsoleUser>,
    /// A header set by a trusted reverse proxy that names the signed-in user (SSO).
    pub trusted_proxy_header: Option<String>,
    /// Addresses the trusted proxy header is accepted from.
    pub trusted_proxies: Vec<IpAddr>,
    pub session_ttl: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            users: Vec::new(),
            trusted_proxy_header: None,
            trusted_proxies: Vec::new(),
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: ServiceName,
    pub environments: Vec<Environment>,
    pub aliases: Vec<String>,
    /// The backend per environment (all the same unless `backend` was a table).
    pub backends: BTreeMap<String, String>,
    pub rollback_allowed: Option<Vec<Principal>>,
    pub owners: Vec<String>,
    pub slack_channel: Option<String>,
    pub discord_channel: Option<u64>,
    /// Backend-specific names, with `{service}` and `{environment}` placeholders.
    pub app: Option<String>,
    pub app_namespace: Option<String>,
    pub namespace: Option<String>,
    pub deployment: Option<String>,
    pub release: Option<String>,
    pub version_from: Option<String>,
    /// The Argo Rollouts `Rollout` object's name (`argo-rollouts` backends).
    pub rollout: Option<String>,
    /// `repository` (+ `repository_kind`): where commits and compares of its deploys link.
    pub repository: Option<Repository>,
    /// How deploy events from GitHub, GitLab and Flux name this service.
    pub sources: ServiceSources,
}

impl ServiceConfig {
    pub fn backend_for(&self, environment: &Environment) -> Option<&str> {
        self.backends.get(&environment.key()).map(String::as_str)
    }

    /// A backend-specific setting for one environment, placeholders filled; `default`
    /// when the service does not set it.
    pub fn setting(
        &self,
        value: &Option<String>,
        environment: &Environment,
        default: &str,
    ) -> String {
        let template = value.as_deref().unwrap_or(default);
        template
            .replace("{service}", self.name.as_str())
            .replace("{environment}", environment.as_str())
    }

    pub fn known(&self) -> KnownService {
        KnownService {
            name: self.name.clone(),
            aliases: self.aliases.clone(),
            environments: self.environments.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum BackendConfig {
    Webhook(WebhookBackendConfig),
    Command(CommandBackendConfig),
    Simulated(SimulatedBackendConfig),
    ArgoCd(ArgoCdBackendConfig),
    Kubernetes(KubernetesBackendConfig),
    Helm(HelmBackendConfig),
    /// Argo Rollouts: the same cluster connection settings as `kubernetes`.
    ArgoRollouts(KubernetesBackendConfig),
}

impl BackendConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Webhook(_) => "webhook",
            Self::Command(_) => "command",
            Self::Simulated(_) => "simulated",
            Self::ArgoCd(_) => "argocd",
            Self::Kubernetes(_) => "kubernetes",
            Self::Helm(_) => "helm",
            Self::ArgoRollouts(_) => "argo-rollouts",
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebhookBackendConfig {
    pub url: Url,
    pub secret: Secret,
    pub timeout: Duration,
    /// How often a `202 Accepted` rollback's `Location` is polled.
    pub poll_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct CommandBackendConfig {
    /// The program and its arguments; `{service}`, `{environment}`, `{from}`, `{to}`,
    /// `{to_revision}`, `{plan_id}` and `{requested_by}` are replaced per argument.
    pub argv: Vec<String>,
    pub timeout: Duration,
    pub working_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct SimulatedBackendConfig {
    pub delay: Duration,
    /// 0.0–1.0: the share of rollbacks that fail.
    pub failure_rate: f64,
    /// A canary shown halfway through, so the demo can show Abort rollout.
    pub canary: Option<SimulatedCanary>,
}

/// `canary = { service, stable, version, step, steps, weight }` of a simulated backend: an
/// Argo Rollouts canary of `version` over the stable `stable`, at `step` of `steps` with
/// `weight` % of the service's traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedCanary {
    pub service: ServiceName,
    pub stable: String,
    pub version: String,
    pub step: u32,
    pub steps: u32,
    pub weight: u32,
}

#[derive(Debug, Clone)]
pub struct ArgoCdBackendConfig {
    pub url: Url,
    pub token: Secret,
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
    pub allow_disable_autosync: bool,
    pub timeout: Duration,
    pub poll_interval: Duration,
    /// The operator accepts sending the token over a plain `http://` URL (and, with
    /// `cluster`, the kubeconfig's credentials to a plain `http://` API server).
    pub allow_insecure_http: bool,
    /// The cluster Argo CD deploys to, when `watch_config = true`: the ConfigMaps and
    /// Secrets of the workloads each Application manages are watched there, with the
    /// Kubernetes backend's keys (`kubeconfig`, `context`) and meaning.
    pub cluster: Option<KubernetesBackendConfig>,
}

#[derive(Debug, Clone)]
pub struct KubernetesBackendConfig {
    /// A kubeconfig path; without it, in-cluster configuration (or `$KUBECONFIG`).
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub timeout: Duration,
    pub poll_interval: Duration,
    /// The operator accepts sending the kubeconfig's credentials to a plain `http://` API
    /// server, which kubectl refuses.
    pub allow_insecure_http: bool,
    /// Watch the ConfigMaps and Secrets the services' pod templates reference and record
    /// in-place changes beside deploys (`watch_config`, default true).
    pub watch_config: bool,
}

#[derive(Debug, Clone)]
pub struct HelmBackendConfig {
    pub helm: PathBuf,
    pub kube_context: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct AuditConfig {
    /// HMAC key for the chain; without it the chain is plain SHA-256.
    pub key: Option<Secret>,
    /// `platform:channel` where the chain head is posted periodically, as an outside anchor.
    pub digest_channel: Option<String>,
    pub digest_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// Alerts for the same service and environment within this window share one thread.
    pub group_window: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            group_window: Duration::from_secs(10 * 60),
        }
    }
}

/// `[sources]`: deploy events from GitHub, GitLab and Flux. Each route is off until its
/// secret is set.
#[derive(Debug, Clone)]
pub struct SourcesConfig {
    /// `sources.github.secret`: the webhook secret GitHub signs deliveries with
    /// (`X-Hub-Signature-256`).
    pub github_secret: Option<Secret>,
    /// `sources.gitlab.token`: the secret token GitLab sends as `X-Gitlab-Token`.
    pub gitlab_token: Option<Secret>,
    /// `sources.flux.secret`: the `token` in the secret of Flux's `generic-hmac` Provider.
    pub flux_secret: Option<Secret>,
    /// `sources.flux.environment`: the environment of the cluster Flux runs in, for events
    /// whose namespace names none of the service's environments.
    pub flux_environment: Option<Environment>,
    /// `sources.flagger.token`: the token Flagger presents on `POST /webhooks/flagger/events`
    /// and `/webhooks/flagger/rollback` (`?token=` in the URL or `metadata.token`).
    pub flagger_token: Option<Secret>,
    /// `sources.flagger.environment`: the environment of the cluster Flagger runs in, for
    /// Canaries whose namespace names none of the service's environments.
    pub flagger_environment: Option<Environment>,
    /// `sources.flagger.rollback_timeout` (default 10 min): how long a press of Roll back
    /// canary waits for Flagger to call the rollback hook and report the canary Failed.
    pub flagger_rollback_timeout: Duration,
}

impl Default for SourcesConfig {
    fn default() -> Self {
        Self {
            github_secret: None,
            gitlab_token: None,
            flux_secret: None,
            flux_environment: None,
            flagger_token: None,
            flagger_environment: None,
            flagger_rollback_timeout: crate::core::bot::DEFAULT_ROLLBACK_TIMEOUT,
        }
    }
}

/// A service's names in deploy events (`[[services]]` keys). Flux keys are `NAME` or
/// `NAMESPACE/NAME` and may hold `{service}` and `{environment}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSources {
    /// `github_repository = "acme/checkout"`.
    pub github_repository: Option<String>,
    /// `gitlab_project = "acme/checkout"` (the project's full path).
    pub gitlab_project: Option<String>,
    pub flux_kustomization: Option<String>,
    pub flux_helmrelease: Option<String>,
    /// `flagger_canary = "NAMESPACE/NAME"`: the Flagger Canary that deploys the service.
    pub flagger_canary: Option<String>,
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse_with(
            &text,
            &EnvSecrets {
                base: base.to_owned(),
            },
        )
    }

    /// Validates TOML text, reading `${ENV}` secrets from the process environment and
    /// `{ file = … }` secrets relative to the current directory.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_with(
            text,
            &EnvSecrets {
                base: PathBuf::from("."),
            },
        )
    }

    fn parse_with(text: &str, secrets: &dyn SecretResolver) -> Result<Self, ConfigError> {
        let mut v = Validator::new(secrets);
        let config = v.config(text);
        match config {
            Some(mut config) if v.problems.is_empty() => {
                config.warnings = v.warnings;
                Ok(config)
            }
            _ => Err(ConfigError::Invalid(v.problems)),
        }
    }

    /// The configured service of that name (case-insensitive).
    pub fn service(&self, name: &ServiceName) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| &s.name == name)
    }

    /// A configuration with no platforms and nothing configured, for building on in code.
    pub fn empty(database_url: &str) -> Self {
        Self {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                public_url: None,
                runner_id: default_runner_id(SocketAddr::from(([127, 0, 0, 1], 8080))),
                heartbeat_interval: Duration::from_secs(5),
                heartbeat_timeout: Duration::from_secs(15),
                shutdown_grace: Duration::from_secs(30),
                connections: ConnectionLimits::default(),
            },
            database: DatabaseConfig {
                url: Secret::new(database_url),
            },
            api: ApiConfig::default(),
            webhooks: WebhooksConfig::default(),
            slack: None,
            discord: None,
            console: ConsoleConfig::default(),
            services: Vec::new(),
            backends: BTreeMap::new(),
            policy: Policy::default(),
            audit: AuditConfig {
                key: None,
                digest_channel: None,
                digest_interval: Duration::from_secs(24 * 3600),
            },
            alerts: AlertsConfig::default(),
            sources: SourcesConfig::default(),
            warnings: Vec::new(),
        }
    }
}

/// A key path: `join("services[1]", "backend")` is `services[1].backend`.
fn join(path: &str, key: &str) -> String {
    match (path.is_empty(), key.is_empty() || key == ".") {
        (_, true) => path.to_owned(),
        (true, false) => key.to_owned(),
        (false, false) if key.starts_with('[') => format!("{path}{key}"),
        (false, false) => format!("{path}.{key}"),
    }
}

/// The `{name}` placeholders in a template.
fn placeholders(template: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        found.push(rest[start + 1..start + end].to_owned());
        rest = &rest[start + end + 1..];
    }
    found
}

/// The default `server.runner_id`: the pod or host name (`$HOSTNAME`, else the kernel's host
/// name) and the listen port, stable across restarts of the same process on the same host
/// or pod. With port 0 (an ephemeral port, tests) the process id is added, since nothing
/// else tells two such processes apart.
pub fn default_runner_id(listen: SocketAddr) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "breakwater".to_owned());
    match listen.port() {
        0 => format!("{host}:0:{}", std::process::id()),
        port => format!("{host}:{port}"),
    }
}

// ----------------------------------------------------------------------------------------
// The configuration of the offline commands.

/// What `audit verify`, `audit export` and `backup` need: the database and the audit key.
/// Only `[database]` and `[audit]` are read, so these commands run from a backup job or an
/// auditor's shell without any chat or API secret in the environment, while a mistake in
/// those two sections is still reported with its key path.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub database: DatabaseConfig,
    pub audit: AuditConfig,
}

impl StoreConfig {
    /// Reads `[database]` and `[audit]` of a configuration file, ignoring the other sections.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse_with(
            &text,
            &EnvSecrets {
                base: base.to_owned(),
            },
        )
    }

    /// As [`StoreConfig::load`], from TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_with(
            text,
            &EnvSecrets {
                base: PathBuf::from("."),
            },
        )
    }

    fn parse_with(text: &str, secrets: &dyn SecretResolver) -> Result<Self, ConfigError> {
        let mut v = Validator::new(secrets);
        let mut table: toml::Table = match text.parse() {
            Ok(table) => table,
            Err(error) => {
                let error: toml::de::Error = error;
                return Err(ConfigError::Invalid(vec![Problem {
                    path: String::new(),
                    message: format!("invalid TOML: {}", error.message()),
                }]));
            }
        };
        let database = v.database(table.remove("database"));
        let audit = v.audit(table.remove("audit"));
        match database {
            Some(database) if v.problems.is_empty() => Ok(Self { database, audit }),
            _ => Err(ConfigError::Invalid(v.problems)),
        }
    }
}
