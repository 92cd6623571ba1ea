//! The configuration: one TOML file, read and validated once at start-up into typed values.
//! Every problem is reported with its key path (`services[1].backend: …`), all of them at
//! once, and unknown keys are errors because a misspelt key silently ignored is a policy
//! silently not applied. Secrets are never inline: `"${ENV_VAR}"` or `{ file = "…" }`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::core::alert::KnownService;
use crate::core::deploy::{Environment, ServiceName};
use crate::core::policy::{FreezeWindow, Policy, Principal};
use crate::core::repository::{Repository, RepositoryError};

mod files;
mod suggest;

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
    /// The operator accepts sending the token over a plain `http://` URL.
    pub allow_insecure_http: bool,
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

// ----------------------------------------------------------------------------------------
// Secrets.

trait SecretResolver {
    fn env(&self, name: &str) -> Option<String>;
    fn file(&self, path: &str) -> Result<String, String>;
}

struct EnvSecrets {
    base: PathBuf,
}

impl SecretResolver for EnvSecrets {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn file(&self, path: &str) -> Result<String, String> {
        let path = Path::new(path);
        let full = if path.is_absolute() {
            path.to_owned()
        } else {
            self.base.join(path)
        };
        std::fs::read_to_string(&full)
            .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!("secret file {} does not exist", full.display())
                }
                _ => format!(
                    "cannot read secret file {}: {}",
                    full.display(),
                    io_message(&e)
                ),
            })
    }
}

// ----------------------------------------------------------------------------------------
// Raw shapes, as written in TOML. Scalars that need parsing stay strings here so that a
// bad value is reported with its path instead of stopping the whole parse.

#[derive(Deserialize, Default)]
struct RawServer {
    listen: Option<String>,
    public_url: Option<String>,
    runner_id: Option<String>,
    heartbeat_interval: Option<String>,
    heartbeat_timeout: Option<String>,
    shutdown_grace: Option<String>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
struct RawDatabase {
    url: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
struct RawTokenSection {
    token: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
struct RawSlack {
    mode: Option<String>,
    bot_token: Option<toml::Value>,
    app_token: Option<toml::Value>,
    signing_secret: Option<toml::Value>,
    api_url: Option<String>,
    #[serde(default)]
    alert_channels: Vec<String>,
    reconnect_backoff: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawDiscord {
    mode: Option<String>,
    token: Option<toml::Value>,
    application_id: Option<toml::Value>,
    public_key: Option<String>,
    guild_id: Option<toml::Value>,
    #[serde(default)]
    alert_channels: Vec<toml::Value>,
    api_url: Option<String>,
}

#[derive(Deserialize)]
struct RawConsoleUser {
    name: String,
    password_hash: toml::Value,
    #[serde(default)]
    loopback_only: bool,
}

#[derive(Deserialize, Default)]
struct RawConsole {
    enabled: Option<bool>,
    #[serde(default)]
    users: Vec<RawConsoleUser>,
    trusted_proxy_header: Option<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    session_ttl: Option<String>,
}

#[derive(Deserialize)]
struct RawService {
    name: String,
    #[serde(default)]
    environments: Vec<String>,
    #[serde(default)]
    aliases: Vec<String>,
    backend: Option<toml::Value>,
    rollback_allowed: Option<Vec<String>>,
    #[serde(default)]
    owners: Vec<String>,
    slack_channel: Option<String>,
    discord_channel: Option<toml::Value>,
    app: Option<String>,
    app_namespace: Option<String>,
    namespace: Option<String>,
    deployment: Option<String>,
    release: Option<String>,
    version_from: Option<String>,
    rollout: Option<String>,
    repository: Option<String>,
    repository_kind: Option<String>,
    github_repository: Option<String>,
    gitlab_project: Option<String>,
    flux_kustomization: Option<String>,
    flux_helmrelease: Option<String>,
    flagger_canary: Option<String>,
}

#[derive(Deserialize)]
struct RawWebhookBackend {
    url: String,
    secret: toml::Value,
    timeout: Option<String>,
    poll_interval: Option<String>,
}

#[derive(Deserialize)]
struct RawCommandBackend {
    argv: Vec<String>,
    timeout: Option<String>,
    working_dir: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawSimulatedBackend {
    delay: Option<String>,
    failure_rate: Option<f64>,
    canary: Option<RawSimulatedCanary>,
}

#[derive(Deserialize)]
struct RawSimulatedCanary {
    service: String,
    stable: String,
    version: String,
    step: u32,
    steps: u32,
    weight: u32,
}

#[derive(Deserialize)]
struct RawArgoCdBackend {
    url: String,
    token: toml::Value,
    ca_file: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    allow_disable_autosync: bool,
    timeout: Option<String>,
    poll_interval: Option<String>,
    #[serde(default)]
    allow_insecure_http: bool,
}

#[derive(Deserialize, Default)]
struct RawKubernetesBackend {
    kubeconfig: Option<String>,
    context: Option<String>,
    timeout: Option<String>,
    poll_interval: Option<String>,
    #[serde(default)]
    allow_insecure_http: bool,
    watch_config: Option<bool>,
}

#[derive(Deserialize, Default)]
struct RawHelmBackend {
    helm: Option<String>,
    kube_context: Option<String>,
    kubeconfig: Option<String>,
    timeout: Option<String>,
}

#[derive(Deserialize)]
struct RawFreeze {
    start: String,
    end: String,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    environments: Vec<String>,
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawPolicy {
    #[serde(default)]
    rollback_allowed: Vec<String>,
    #[serde(default)]
    channels: Vec<String>,
    lookback: Option<String>,
    plan_ttl: Option<String>,
    cooldown: Option<String>,
    #[serde(default)]
    freeze: Vec<RawFreeze>,
    #[serde(default)]
    two_person: Vec<String>,
    verify_window: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawAudit {
    key: Option<toml::Value>,
    digest_channel: Option<String>,
    digest_interval: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawAlerts {
    group_window: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawSources {
    github: Option<RawSecretSource>,
    gitlab: Option<RawTokenSource>,
    flux: Option<RawFluxSource>,
    flagger: Option<RawFlaggerSource>,
}

#[derive(Deserialize)]
struct RawFlaggerSource {
    token: toml::Value,
    environment: Option<String>,
    rollback_timeout: Option<String>,
}

#[derive(Deserialize)]
struct RawSecretSource {
    secret: toml::Value,
}

#[derive(Deserialize)]
struct RawTokenSource {
    token: toml::Value,
}

#[derive(Deserialize)]
struct RawFluxSource {
    secret: toml::Value,
    environment: Option<String>,
}

// ----------------------------------------------------------------------------------------
// Validation.

struct Validator<'a> {
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
    secrets: &'a dyn SecretResolver,
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

fn join(path: &str, key: &str) -> String {
    match (path.is_empty(), key.is_empty() || key == ".") {
        (_, true) => path.to_owned(),
        (true, false) => key.to_owned(),
        (false, false) if key.starts_with('[') => format!("{path}{key}"),
        (false, false) => format!("{path}.{key}"),
    }
}

impl<'a> Validator<'a> {
    fn new(secrets: &'a dyn SecretResolver) -> Self {
        Self {
            problems: Vec::new(),
            warnings: Vec::new(),
            secrets,
            declared_backends: BTreeMap::new(),
            declared_services: HashSet::new(),
        }
    }

    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
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

    fn config(&mut self, text: &str) -> Option<Config> {
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

    /// `server.runner_id`, `server.heartbeat_interval` and `server.heartbeat_timeout`.
    fn runner(&mut self, raw: &RawServer, listen: SocketAddr) -> (String, Duration, Duration) {
        let runner_id = match raw.runner_id.as_deref() {
            None => default_runner_id(listen),
            Some(id)
                if !id.is_empty()
                    && id.len() <= 100
                    && id.chars().all(|c| c.is_ascii_graphic()) =>
            {
                id.to_owned()
            }
            Some(id) => {
                self.problem(
                    "server.runner_id",
                    format!("{id:?} must be 1–100 printable ASCII characters without spaces"),
                );
                default_runner_id(listen)
            }
        };
        let problems_before = self.problems.len();
        let interval = self.duration(
            "server.heartbeat_interval",
            raw.heartbeat_interval.as_deref(),
            Duration::from_secs(5),
        );
        let timeout = self.duration(
            "server.heartbeat_timeout",
            raw.heartbeat_timeout.as_deref(),
            Duration::from_secs(15),
        );
        // Compared only when both were read: a bad one is already reported.
        if timeout < interval * 2 && self.problems.len() == problems_before {
            self.problem(
                "server.heartbeat_timeout",
                format!(
                    "{timeout:?} must be at least twice server.heartbeat_interval ({interval:?}), \
                     or one late heartbeat hands a live rollback to another replica"
                ),
            );
        }
        (runner_id, interval, timeout)
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

    fn secret(&mut self, path: &str, value: &toml::Value) -> Option<Secret> {
        const HOW: &str =
            "secrets are written as \"${ENV_VAR}\" or { file = \"/run/secrets/name\" }";
        match value {
            toml::Value::String(raw) => {
                let Some(name) = raw.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
                    self.problem(path, format!("must not be written inline; {HOW}"));
                    return None;
                };
                match self.secrets.env(name) {
                    Some(value) if !value.is_empty() => Some(Secret(value)),
                    Some(_) => {
                        self.problem(path, format!("environment variable {name} is empty"));
                        None
                    }
                    None => {
                        self.problem(path, format!("environment variable {name} is not set"));
                        None
                    }
                }
            }
            toml::Value::Table(table) if table.len() == 1 && table.contains_key("file") => {
                match table.get("file") {
                    Some(toml::Value::String(file)) => match self.secrets.file(file) {
                        Ok(value) if !value.is_empty() => Some(Secret(value)),
                        Ok(_) => {
                            self.problem(path, format!("secret file {file} is empty"));
                            None
                        }
                        Err(error) => {
                            self.problem(path, error);
                            None
                        }
                    },
                    _ => {
                        self.problem(join(path, "file"), "must be a path");
                        None
                    }
                }
            }
            _ => {
                self.problem(path, HOW);
                None
            }
        }
    }

    fn optional_secret(&mut self, path: &str, value: Option<&toml::Value>) -> Option<Secret> {
        value.and_then(|v| self.secret(path, v))
    }

    fn server(&mut self, value: Option<toml::Value>) -> Option<ServerConfig> {
        let raw: RawServer = match value {
            Some(value) => self.section("server", value)?,
            None => RawServer::default(),
        };
        let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:8080");
        let listen = match listen.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                self.problem(
                    "server.listen",
                    format!("{listen:?} is not an address like 127.0.0.1:8080"),
                );
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        };
        let public_url = raw
            .public_url
            .as_deref()
            .and_then(|u| self.url("server.public_url", u));
        let (runner_id, heartbeat_interval, heartbeat_timeout) = self.runner(&raw, listen);
        let shutdown_grace = self.duration(
            "server.shutdown_grace",
            raw.shutdown_grace.as_deref(),
            Duration::from_secs(30),
        );
        let defaults = ConnectionLimits::default();
        let connections = ConnectionLimits {
            header_read_timeout: self.duration(
                "server.header_read_timeout",
                raw.header_read_timeout.as_deref(),
                defaults.header_read_timeout,
            ),
            idle_timeout: self.duration(
                "server.idle_timeout",
                raw.idle_timeout.as_deref(),
                defaults.idle_timeout,
            ),
            max_connections: match raw.max_connections {
                None => defaults.max_connections,
                Some(toml::Value::Integer(n)) if (1..=1_000_000).contains(&n) => {
                    usize::try_from(n).unwrap_or(defaults.max_connections)
                }
                Some(other) => {
                    self.problem(
                        "server.max_connections",
                        format!("{other} is not a number of connections from 1 to 1000000"),
                    );
                    defaults.max_connections
                }
            },
        };
        Some(ServerConfig {
            listen,
            public_url,
            runner_id,
            heartbeat_interval,
            heartbeat_timeout,
            shutdown_grace,
            connections,
        })
    }

    fn database(&mut self, value: Option<toml::Value>) -> Option<DatabaseConfig> {
        let raw: RawDatabase = match value {
            Some(value) => self.section("database", value)?,
            None => RawDatabase::default(),
        };
        let url = match raw.url {
            None => Secret::new("sqlite://breakwater.db"),
            Some(toml::Value::String(url)) if !url.starts_with("${") => {
                if let Ok(parsed) = Url::parse(&url)
                    && parsed.password().is_some()
                {
                    self.problem(
                        "database.url",
                        "contains a password: write the whole URL as \"${DATABASE_URL}\" or { file = … }",
                    );
                }
                Secret::new(url)
            }
            Some(other) => self.secret("database.url", &other)?,
        };
        let scheme_ok = ["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|s| url.expose().starts_with(s));
        if !scheme_ok {
            self.problem("database.url", "must start with sqlite:// or postgres://");
        }
        Some(DatabaseConfig { url })
    }

    fn token_section(&mut self, name: &str, value: Option<toml::Value>) -> Option<Secret> {
        let raw: RawTokenSection = self.section(name, value?)?;
        let path = format!("{name}.token");
        let token = self.optional_secret(&path, raw.token.as_ref());
        if let Some(token) = &token
            && token.expose().len() < 16
        {
            self.problem(
                path,
                "is shorter than 16 characters; use a long random token",
            );
        }
        token
    }

    fn slack(&mut self, value: toml::Value) -> Option<SlackConfig> {
        let raw: RawSlack = self.section("slack", value)?;
        // With a mode that is not one, what that mode would require is not asked for too.
        let mut mode_known = true;
        let mode = match raw.mode.as_deref().unwrap_or("socket") {
            "socket" => SlackMode::Socket,
            "http" => SlackMode::Http,
            other => {
                self.problem(
                    "slack.mode",
                    format!("{other:?} must be \"socket\" or \"http\""),
                );
                mode_known = false;
                SlackMode::Socket
            }
        };
        let bot_token = match &raw.bot_token {
            Some(v) => self.secret("slack.bot_token", v),
            None => {
                self.problem("slack.bot_token", "is required (the xoxb- token)");
                None
            }
        };
        if let Some(token) = &bot_token
            && !token.expose().starts_with("xoxb-")
        {
            self.problem("slack.bot_token", "must be a bot token starting with xoxb-");
        }
        let app_token = self.optional_secret("slack.app_token", raw.app_token.as_ref());
        if mode == SlackMode::Socket && mode_known {
            match &app_token {
                None if raw.app_token.is_none() => self.problem(
                    "slack.app_token",
                    "is required in socket mode (the xapp- token)",
                ),
                Some(token) if !token.expose().starts_with("xapp-") => self.problem(
                    "slack.app_token",
                    "must be an app-level token starting with xapp-",
                ),
                _ => {}
            }
        }
        let signing_secret =
            self.optional_secret("slack.signing_secret", raw.signing_secret.as_ref());
        if mode == SlackMode::Http && raw.signing_secret.is_none() {
            self.problem("slack.signing_secret", "is required in http mode");
        }
        let api_url = self.base_url(
            "slack.api_url",
            raw.api_url.as_deref(),
            "https://slack.com/api/",
        );
        for (i, channel) in raw.alert_channels.iter().enumerate() {
            if !is_slack_channel_id(channel) {
                self.problem(
                    format!("slack.alert_channels[{i}]"),
                    format!("{channel:?} is not a channel id like C0123ABCD"),
                );
            }
        }
        let reconnect_backoff = self.duration(
            "slack.reconnect_backoff",
            raw.reconnect_backoff.as_deref(),
            Duration::from_secs(1),
        );
        Some(SlackConfig {
            mode,
            bot_token: bot_token?,
            app_token,
            signing_secret,
            api_url,
            alert_channels: raw.alert_channels,
            reconnect_backoff,
        })
    }

    fn snowflake(&mut self, path: &str, value: &toml::Value) -> Option<u64> {
        let parsed = match value {
            toml::Value::Integer(n) => u64::try_from(*n).ok(),
            toml::Value::String(s) => s.parse::<u64>().ok(),
            _ => None,
        };
        if parsed.is_none_or(|n| n == 0) {
            self.problem(
                path,
                "must be a Discord id (a number, best written as a string)",
            );
            return None;
        }
        parsed
    }

    fn discord(&mut self, value: toml::Value) -> Option<DiscordConfig> {
        let raw: RawDiscord = self.section("discord", value)?;
        let mode = match raw.mode.as_deref().unwrap_or("gateway") {
            "gateway" => DiscordMode::Gateway,
            "http" => DiscordMode::Http,
            other => {
                self.problem(
                    "discord.mode",
                    format!("{other:?} must be \"gateway\" or \"http\""),
                );
                DiscordMode::Gateway
            }
        };
        let token = match &raw.token {
            Some(v) => self.secret("discord.token", v),
            None => {
                self.problem("discord.token", "is required (the bot token)");
                None
            }
        };
        let application_id = raw
            .application_id
            .as_ref()
            .and_then(|v| self.snowflake("discord.application_id", v));
        let guild_id = raw
            .guild_id
            .as_ref()
            .and_then(|v| self.snowflake("discord.guild_id", v));
        let alert_channels = raw
            .alert_channels
            .iter()
            .enumerate()
            .filter_map(|(i, v)| self.snowflake(&format!("discord.alert_channels[{i}]"), v))
            .collect();
        if let Some(key) = &raw.public_key {
            let valid = key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit());
            if !valid {
                self.problem(
                    "discord.public_key",
                    "must be the application's 64-hex-digit public key",
                );
            }
        }
        if mode == DiscordMode::Http {
            if raw.public_key.is_none() {
                self.problem("discord.public_key", "is required in http mode");
            }
            if raw.application_id.is_none() {
                self.problem("discord.application_id", "is required in http mode");
            }
        }
        let api_url = self.base_url(
            "discord.api_url",
            raw.api_url.as_deref(),
            "https://discord.com/api/",
        );
        Some(DiscordConfig {
            mode,
            token: token?,
            application_id,
            public_key: raw.public_key,
            guild_id,
            alert_channels,
            api_url,
        })
    }

    fn console(&mut self, value: Option<toml::Value>) -> ConsoleConfig {
        let Some(value) = value else {
            return ConsoleConfig::default();
        };
        let Some(raw) = self.section::<RawConsole>("console", value) else {
            return ConsoleConfig::default();
        };
        let mut users = Vec::new();
        let mut seen = HashSet::new();
        for (i, user) in raw.users.into_iter().enumerate() {
            let path = format!("console.users[{i}]");
            if Principal::parse(&format!("console:{}", user.name)).is_err() {
                self.problem(
                    join(&path, "name"),
                    format!("{:?} is not a valid user name", user.name),
                );
            }
            if !seen.insert(user.name.clone()) {
                self.problem(
                    join(&path, "name"),
                    format!("{:?} appears twice", user.name),
                );
            }
            let hash = match &user.password_hash {
                toml::Value::String(hash) if !hash.starts_with("${") => Some(hash.clone()),
                other => self
                    .secret(&join(&path, "password_hash"), other)
                    .map(|s| s.0),
            };
            if let Some(hash) = hash {
                if !hash.starts_with("$argon2id$") {
                    self.problem(
                        join(&path, "password_hash"),
                        "must be an argon2id hash (run `breakwater hash-password`)",
                    );
                }
                users.push(ConsoleUser {
                    name: user.name,
                    password_hash: hash,
                    loopback_only: user.loopback_only,
                });
            }
        }
        let trusted_proxies = raw
            .trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(i, raw)| match raw.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.problem(
                        format!("console.trusted_proxies[{i}]"),
                        format!("{raw:?} is not an IP address"),
                    );
                    None
                }
            })
            .collect::<Vec<_>>();
        if raw.trusted_proxy_header.is_some() && raw.trusted_proxies.is_empty() {
            self.problem(
                "console.trusted_proxies",
                "is required with trusted_proxy_header: the header is only believed from these addresses",
            );
        }
        let enabled = raw.enabled.unwrap_or(true);
        if enabled && users.is_empty() && raw.trusted_proxy_header.is_none() {
            self.warn(
                "console",
                "is enabled with no users and no trusted_proxy_header: nobody can sign in",
            );
        }
        ConsoleConfig {
            enabled,
            users,
            trusted_proxy_header: raw.trusted_proxy_header,
            trusted_proxies,
            session_ttl: self.duration(
                "console.session_ttl",
                raw.session_ttl.as_deref(),
                Duration::from_secs(12 * 3600),
            ),
        }
    }

    fn backends(&mut self, value: Option<toml::Value>) -> BTreeMap<String, BackendConfig> {
        const KINDS: &[&str] = &[
            "webhook",
            "command",
            "simulated",
            "argocd",
            "kubernetes",
            "helm",
            "argo-rollouts",
        ];
        let mut backends = BTreeMap::new();
        let Some(value) = value else { return backends };
        let toml::Value::Table(table) = value else {
            self.problem("backends", "must be a table of [backends.NAME] sections");
            return backends;
        };
        for (name, value) in table {
            let path = format!("backends.{name}");
            self.declared_backends.insert(name.clone(), None);
            let toml::Value::Table(mut body) = value else {
                self.problem(path, "must be a table with a kind");
                continue;
            };
            let kind = match body.remove("kind") {
                Some(toml::Value::String(kind)) => kind,
                Some(_) | None => {
                    self.problem(
                        join(&path, "kind"),
                        "is required: argocd, kubernetes, helm, webhook, command, simulated or argo-rollouts",
                    );
                    continue;
                }
            };
            let body = toml::Value::Table(body);
            if KINDS.contains(&kind.as_str()) {
                self.declared_backends
                    .insert(name.clone(), Some(kind.clone()));
            }
            let backend = match kind.as_str() {
                "webhook" => self.webhook_backend(&path, body),
                "command" => self.command_backend(&path, body),
                "simulated" => self.simulated_backend(&path, body),
                "argocd" => self.argocd_backend(&path, body),
                "kubernetes" => self.kubernetes_backend(&path, body),
                "helm" => self.helm_backend(&path, body),
                "argo-rollouts" => {
                    self.kubernetes_backend(&path, body)
                        .map(|backend| match backend {
                            BackendConfig::Kubernetes(c) => BackendConfig::ArgoRollouts(c),
                            other => other,
                        })
                }
                other => {
                    self.problem(
                        join(&path, "kind"),
                        format!("{other:?} is not one of argocd, kubernetes, helm, webhook, command, simulated, argo-rollouts"),
                    );
                    None
                }
            };
            if let Some(backend) = backend {
                backends.insert(name, backend);
            }
        }
        backends
    }

    fn webhook_backend(&mut self, path: &str, body: toml::Value) -> Option<BackendConfig> {
        let raw: RawWebhookBackend = self.section(path, body)?;
        let url = self.url(&join(path, "url"), &raw.url);
        let secret = self.secret(&join(path, "secret"), &raw.secret);
        let timeout = self.duration(
            &join(path, "timeout"),
            raw.timeout.as_deref(),
            Duration::from_secs(600),
        );
        let poll_interval = self.duration(
            &join(path, "poll_interval"),
            raw.poll_interval.as_deref(),
            Duration::from_secs(2),
        );
        Some(BackendConfig::Webhook(WebhookBackendConfig {
            url: url?,
            secret: secret?,
            timeout,
            poll_interval,
        }))
    }

    fn command_backend(&mut self, path: &str, body: toml::Value) -> Option<BackendConfig> {
        let raw: RawCommandBackend = self.section(path, body)?;
        if raw.argv.is_empty() || raw.argv[0].trim().is_empty() {
            self.problem(
                join(path, "argv"),
                "must name a program, e.g. [\"/usr/local/bin/rollback\", \"{service}\", \"{to}\"]",
            );
        }
        const PLACEHOLDERS: &[&str] = &[
            "service",
            "environment",
            "from",
            "to",
            "to_revision",
            "from_revision",
            "plan_id",
            "requested_by",
            "reason",
        ];
        for (i, arg) in raw.argv.iter().enumerate() {
            for placeholder in placeholders(arg) {
                if !PLACEHOLDERS.contains(&placeholder.as_str()) {
                    self.problem(
                        format!("{path}.argv[{i}]"),
                        format!(
                            "unknown placeholder {{{placeholder}}} (known: {})",
                            PLACEHOLDERS.join(", ")
                        ),
                    );
                }
            }
        }
        let timeout = self.duration(
            &join(path, "timeout"),
            raw.timeout.as_deref(),
            Duration::from_secs(600),
        );
        Some(BackendConfig::Command(CommandBackendConfig {
            argv: raw.argv,
            timeout,
            working_dir: raw.working_dir.map(PathBuf::from),
        }))
    }

    fn simulated_backend(&mut self, path: &str, body: toml::Value) -> Option<BackendConfig> {
        let raw: RawSimulatedBackend = self.section(path, body)?;
        let delay = match raw.delay.as_deref() {
            Some("0s") | Some("0") => Duration::ZERO,
            other => self.duration(&join(path, "delay"), other, Duration::from_secs(3)),
        };
        let failure_rate = raw.failure_rate.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&failure_rate) {
            self.problem(join(path, "failure_rate"), "must be between 0.0 and 1.0");
        }
        let canary = raw.canary.and_then(|canary| {
            let at = join(path, "canary");
            if canary.steps == 0 || !(1..=canary.steps).contains(&canary.step) {
                self.problem(join(&at, "step"), "must be between 1 and steps");
            }
            if canary.weight > 100 {
                self.problem(join(&at, "weight"), "must be a share of traffic, 0–100");
            }
            if canary.stable == canary.version {
                self.problem(join(&at, "version"), "must differ from stable");
            }
            match ServiceName::parse(&canary.service) {
                Ok(service) => Some(SimulatedCanary {
                    service,
                    stable: canary.stable,
                    version: canary.version,
                    step: canary.step,
                    steps: canary.steps,
                    weight: canary.weight,
                }),
                Err(error) => {
                    self.problem(join(&at, "service"), error.to_string());
                    None
                }
            }
        });
        Some(BackendConfig::Simulated(SimulatedBackendConfig {
            delay,
            failure_rate,
            canary,
        }))
    }

    fn argocd_backend(&mut self, path: &str, body: toml::Value) -> Option<BackendConfig> {
        let raw: RawArgoCdBackend = self.section(path, body)?;
        let url = self.url(&join(path, "url"), &raw.url);
        let token = self.secret(&join(path, "token"), &raw.token);
        // A bearer token over plain HTTP can be read and replayed by anyone on the path.
        if url.as_ref().is_some_and(|u| u.scheme() == "http") && !raw.allow_insecure_http {
            self.problem(
                join(path, "url"),
                format!(
                    "{:?} is plain http://, which would send {} in clear text; use https://, \
                     or set {} = true to accept that on a trusted network",
                    raw.url,
                    join(path, "token"),
                    join(path, "allow_insecure_http")
                ),
            );
        }
        if raw.insecure && raw.ca_file.is_some() {
            self.problem(
                join(path, "insecure"),
                "cannot be combined with ca_file; trust the CA instead",
            );
        }
        let timeout = self.duration(
            &join(path, "timeout"),
            raw.timeout.as_deref(),
            Duration::from_secs(600),
        );
        let poll_interval = self.duration(
            &join(path, "poll_interval"),
            raw.poll_interval.as_deref(),
            Duration::from_secs(3),
        );
        Some(BackendConfig::ArgoCd(ArgoCdBackendConfig {
            url: url?,
            token: token?,
            ca_file: raw.ca_file.map(PathBuf::from),
            insecure: raw.insecure,
            allow_disable_autosync: raw.allow_disable_autosync,
            timeout,
            poll_interval,
            allow_insecure_http: raw.allow_insecure_http,
        }))
    }

    fn kubernetes_backend(&mut self, path: &str, body: toml::Value) -> Option<BackendConfig> {
        let raw: RawKubernetesBackend = self.section(path, body)?;
        let timeout = self.duration(
            &join(path, "timeout"),
            raw.timeout.as_deref(),
            Duration::from_secs(600),
        );
        let poll_interval = self.duration(
            &join(path, "poll_interval"),
            raw.poll_interval.as_deref(),
            Duration::from_secs(2),
        );
        Some(BackendConfig::Kubernetes(KubernetesBackendConfig {
            kubeconfig: raw.kubeconfig.map(PathBuf::from),
            context: raw.context,
            timeout,
            poll_interval,
            allow_insecure_http: raw.allow_insecure_http,
            watch_config: raw.watch_config.unwrap_or(true),
        }))
    }

    fn helm_backend(&mut self, path: &str, body: toml::Value) -> Option<BackendConfig> {
        let raw: RawHelmBackend = self.section(path, body)?;
        let timeout = self.duration(
            &join(path, "timeout"),
            raw.timeout.as_deref(),
            Duration::from_secs(600),
        );
        Some(BackendConfig::Helm(HelmBackendConfig {
            helm: PathBuf::from(raw.helm.unwrap_or_else(|| "helm".to_owned())),
            kube_context: raw.kube_context,
            kubeconfig: raw.kubeconfig.map(PathBuf::from),
            timeout,
        }))
    }

    fn services(
        &mut self,
        value: Option<toml::Value>,
        backends: &BTreeMap<String, BackendConfig>,
    ) -> Vec<ServiceConfig> {
        let mut services: Vec<ServiceConfig> = Vec::new();
        let Some(value) = value else { return services };
        let toml::Value::Array(items) = value else {
            self.problem("services", "must be an array of [[services]] tables");
            return services;
        };
        let mut names_seen: HashMap<String, String> = HashMap::new();
        for (i, item) in items.into_iter().enumerate() {
            let path = format!("services[{i}]");
            if let Some(name) = item.get("name").and_then(toml::Value::as_str) {
                self.declared_services.insert(name.to_lowercase());
            }
            let Some(raw) = self.section::<RawService>(&path, item) else {
                continue;
            };
            let name = match ServiceName::parse(&raw.name) {
                Ok(name) => name,
                Err(error) => {
                    self.problem(join(&path, "name"), error.to_string());
                    continue;
                }
            };
            let path = format!("services[{i}] ({name})");
            let mut claim = |v: &mut Self, word: String, what: &str| {
                let key = word.to_lowercase();
                if let Some(owner) = names_seen.get(&key) {
                    v.problem(
                        join(&path, what),
                        format!("{word:?} is already used by {owner}"),
                    );
                } else {
                    names_seen.insert(key, format!("service {name}"));
                }
            };
            claim(self, name.to_string(), "name");
            for alias in &raw.aliases {
                if alias.trim().is_empty() {
                    self.problem(join(&path, "aliases"), "contains an empty alias");
                } else {
                    claim(self, alias.clone(), "aliases");
                }
            }
            let mut environments = Vec::new();
            for (j, env) in raw.environments.iter().enumerate() {
                match Environment::parse(env) {
                    Ok(env) if environments.contains(&env) => self.problem(
                        format!("{path}.environments[{j}]"),
                        format!("{env} appears twice"),
                    ),
                    Ok(env) => environments.push(env),
                    Err(error) => {
                        self.problem(format!("{path}.environments[{j}]"), error.to_string())
                    }
                }
            }
            if raw.environments.is_empty() {
                self.problem(
                    join(&path, "environments"),
                    "is required: the environments it runs in, e.g. [\"staging\", \"production\"]",
                );
            }
            let sources = self.service_sources(&path, &raw);
            let service_backends =
                self.service_backends(&path, raw.backend.as_ref(), &environments, backends);
            let rollback_allowed = raw
                .rollback_allowed
                .map(|list| self.principals(&join(&path, "rollback_allowed"), &list));
            let discord_channel = raw
                .discord_channel
                .as_ref()
                .and_then(|v| self.snowflake(&join(&path, "discord_channel"), v));
            if let Some(channel) = &raw.slack_channel
                && !is_slack_channel_id(channel)
            {
                self.problem(
                    join(&path, "slack_channel"),
                    format!("{channel:?} is not a channel id like C0123ABCD"),
                );
            }
            let repository = match (&raw.repository, &raw.repository_kind) {
                (Some(url), kind) => Repository::parse(url, kind.as_deref())
                    .map_err(|error| {
                        let key = match error {
                            RepositoryError::BadKind(_) => "repository_kind",
                            _ => "repository",
                        };
                        self.problem(join(&path, key), error.to_string());
                    })
                    .ok(),
                (None, Some(_)) => {
                    self.problem(
                        join(&path, "repository_kind"),
                        "is set but repository is not: set repository = \"https://HOST/OWNER/NAME\"",
                    );
                    None
                }
                (None, None) => None,
            };
            let service = ServiceConfig {
                name,
                environments,
                aliases: raw.aliases,
                backends: service_backends,
                rollback_allowed,
                owners: raw.owners,
                slack_channel: raw.slack_channel,
                discord_channel,
                app: raw.app,
                app_namespace: raw.app_namespace,
                namespace: raw.namespace,
                deployment: raw.deployment,
                release: raw.release,
                version_from: raw.version_from,
                rollout: raw.rollout,
                repository,
                sources,
            };
            self.service_backend_keys(&path, &service, backends);
            services.push(service);
        }
        services
    }

    fn service_backends(
        &mut self,
        path: &str,
        value: Option<&toml::Value>,
        environments: &[Environment],
        backends: &BTreeMap<String, BackendConfig>,
    ) -> BTreeMap<String, String> {
        let mut chosen = BTreeMap::new();
        let path = join(path, "backend");
        let check = |v: &mut Self, at: &str, name: &str| -> bool {
            // A backend with problems of its own is still the one meant.
            if backends.contains_key(name) || v.declared_backends.contains_key(name) {
                true
            } else {
                let known: Vec<&str> = backends.keys().map(String::as_str).collect();
                v.problem(
                    at,
                    format!(
                        "{name:?} is not a configured backend (known: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                false
            }
        };
        match value {
            None => self.problem(path, "is required: the name of a [backends.NAME] section"),
            Some(toml::Value::String(name)) => {
                if check(self, &path, name) {
                    for env in environments {
                        chosen.insert(env.key(), name.clone());
                    }
                }
            }
            Some(toml::Value::Table(table)) => {
                for (env, name) in table {
                    let at = join(&path, env);
                    let Some(env) = environments.iter().find(|e| e.key() == env.to_lowercase())
                    else {
                        self.problem(at, "is not one of the service's environments");
                        continue;
                    };
                    match name {
                        toml::Value::String(name) => {
                            if check(self, &at, name) {
                                chosen.insert(env.key(), name.clone());
                            }
                        }
                        _ => self.problem(at, "must be a backend name"),
                    }
                }
                for env in environments {
                    if !chosen.contains_key(&env.key())
                        && table.keys().all(|k| k.to_lowercase() != env.key())
                    {
                        self.problem(
                            path.clone(),
                            format!("names no backend for environment {env}"),
                        );
                    }
                }
            }
            Some(_) => self.problem(
                path,
                "must be a backend name or a table of environment = backend name",
            ),
        }
        chosen
    }

    /// Backend-specific service keys must fit the backend kinds the service uses.
    fn service_backend_keys(
        &mut self,
        path: &str,
        service: &ServiceConfig,
        backends: &BTreeMap<String, BackendConfig>,
    ) {
        let mut kinds: HashSet<String> = HashSet::new();
        // Whether the kinds are known: not when a backend is unnamed, misnamed or of an
        // unknown kind, already reported, so the service's keys cannot be judged by them.
        let mut judged = service.backends.len() >= service.environments.len();
        for name in service.backends.values() {
            match (backends.get(name), self.declared_backends.get(name)) {
                (Some(backend), _) => {
                    kinds.insert(backend.kind().to_owned());
                }
                (None, Some(Some(kind))) => {
                    kinds.insert(kind.clone());
                }
                (None, _) => judged = false,
            }
        }
        let keys: [(&str, bool, &[&str]); 7] = [
            ("app", service.app.is_some(), &["argocd"]),
            (
                "app_namespace",
                service.app_namespace.is_some(),
                &["argocd"],
            ),
            (
                "namespace",
                service.namespace.is_some(),
                &["kubernetes", "helm", "argo-rollouts"],
            ),
            ("deployment", service.deployment.is_some(), &["kubernetes"]),
            ("release", service.release.is_some(), &["helm"]),
            (
                "version_from",
                service.version_from.is_some(),
                &["kubernetes", "argo-rollouts"],
            ),
            ("rollout", service.rollout.is_some(), &["argo-rollouts"]),
        ];
        for (key, set, fits) in keys {
            if set && judged && !kinds.iter().any(|kind| fits.contains(&kind.as_str())) {
                self.problem(
                    join(path, key),
                    format!("only applies to {} backends", fits.join(" and ")),
                );
            }
        }
        for (key, value) in [
            ("app", &service.app),
            ("app_namespace", &service.app_namespace),
            ("namespace", &service.namespace),
            ("deployment", &service.deployment),
            ("release", &service.release),
            ("rollout", &service.rollout),
        ] {
            if let Some(value) = value {
                for placeholder in placeholders(value) {
                    if placeholder != "service" && placeholder != "environment" {
                        self.problem(join(path, key), format!("unknown placeholder {{{placeholder}}} (known: service, environment)"));
                    }
                }
            }
        }
        if let Some(from) = &service.version_from {
            let ok =
                from == "image" || from.starts_with("label:") || from.starts_with("annotation:");
            if !ok {
                self.problem(
                    join(path, "version_from"),
                    "must be \"image\", \"label:NAME\" or \"annotation:NAME\"",
                );
            }
        }
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

    fn time(&mut self, path: &str, raw: &str) -> Option<DateTime<Utc>> {
        match DateTime::parse_from_rfc3339(raw) {
            Ok(time) => Some(time.with_timezone(&Utc)),
            Err(_) => {
                self.problem(
                    path,
                    format!("{raw:?} is not an RFC 3339 time like 2026-12-24T00:00:00Z"),
                );
                None
            }
        }
    }

    fn policy(&mut self, value: Option<toml::Value>, services: &[ServiceConfig]) -> Policy {
        let defaults = Policy::default();
        let raw: RawPolicy = match value {
            Some(value) => self.section("policy", value).unwrap_or_default(),
            None => RawPolicy::default(),
        };
        let rollback_allowed = self.principals("policy.rollback_allowed", &raw.rollback_allowed);
        for (i, channel) in raw.channels.iter().enumerate() {
            let valid = channel.split_once(':').is_some_and(|(platform, id)| {
                crate::core::message::Platform::parse(platform).is_some() && !id.is_empty()
            });
            if !valid {
                self.problem(
                    format!("policy.channels[{i}]"),
                    format!("{channel:?} must look like slack:C0123, discord:987 or console:*"),
                );
            }
        }
        let known_env = |env: &Environment| services.iter().any(|s| s.environments.contains(env));
        let mut two_person = Vec::new();
        for (i, env) in raw.two_person.iter().enumerate() {
            match Environment::parse(env) {
                Ok(env) => {
                    if !services.is_empty() && !known_env(&env) {
                        self.warn(
                            format!("policy.two_person[{i}]"),
                            format!("{env} is not an environment of any service"),
                        );
                    }
                    two_person.push(env);
                }
                Err(error) => self.problem(format!("policy.two_person[{i}]"), error.to_string()),
            }
        }
        let mut freezes = Vec::new();
        for (i, freeze) in raw.freeze.iter().enumerate() {
            let path = format!("policy.freeze[{i}]");
            let start = self.time(&join(&path, "start"), &freeze.start);
            let end = self.time(&join(&path, "end"), &freeze.end);
            let freeze_services = freeze
                .services
                .iter()
                .filter_map(|s| match ServiceName::parse(s) {
                    // A service with problems of its own is still the one meant.
                    Ok(name)
                        if services.iter().any(|c| c.name == name)
                            || self.declared_services.contains(&s.to_lowercase()) =>
                    {
                        Some(name)
                    }
                    Ok(name) => {
                        self.problem(
                            join(&path, "services"),
                            format!("{name} is not a configured service"),
                        );
                        None
                    }
                    Err(error) => {
                        self.problem(join(&path, "services"), error.to_string());
                        None
                    }
                })
                .collect();
            let environments = freeze
                .environments
                .iter()
                .filter_map(|e| match Environment::parse(e) {
                    Ok(env) => Some(env),
                    Err(error) => {
                        self.problem(join(&path, "environments"), error.to_string());
                        None
                    }
                })
                .collect();
            if let (Some(start), Some(end)) = (start, end) {
                if end <= start {
                    self.problem(join(&path, "end"), "must be after start");
                }
                freezes.push(FreezeWindow {
                    start,
                    end,
                    services: freeze_services,
                    environments,
                    reason: freeze
                        .reason
                        .clone()
                        .unwrap_or_else(|| "change freeze".to_owned()),
                });
            }
        }
        let service_rollback_allowed = services
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.rollback_allowed.clone()?)))
            .collect();
        Policy {
            rollback_allowed,
            service_rollback_allowed,
            channels: raw.channels,
            lookback: self.duration(
                "policy.lookback",
                raw.lookback.as_deref(),
                defaults.lookback,
            ),
            plan_ttl: self.duration(
                "policy.plan_ttl",
                raw.plan_ttl.as_deref(),
                defaults.plan_ttl,
            ),
            cooldown: match raw.cooldown.as_deref() {
                Some("0s") | Some("0") => Duration::ZERO,
                other => self.duration("policy.cooldown", other, defaults.cooldown),
            },
            freezes,
            two_person,
            verify_window: self.duration(
                "policy.verify_window",
                raw.verify_window.as_deref(),
                defaults.verify_window,
            ),
        }
    }

    fn audit(&mut self, value: Option<toml::Value>) -> AuditConfig {
        let raw: RawAudit = match value {
            Some(value) => self.section("audit", value).unwrap_or_default(),
            None => RawAudit::default(),
        };
        let key = self.optional_secret("audit.key", raw.key.as_ref());
        if let Some(key) = &key
            && key.expose().len() < 32
        {
            self.problem(
                "audit.key",
                "is shorter than 32 characters; use at least 32 random bytes",
            );
        }
        if let Some(channel) = &raw.digest_channel {
            let valid = channel.split_once(':').is_some_and(|(platform, id)| {
                matches!(platform, "slack" | "discord") && !id.is_empty()
            });
            if !valid {
                self.problem(
                    "audit.digest_channel",
                    format!("{channel:?} must look like slack:C0123 or discord:987"),
                );
            }
        }
        AuditConfig {
            key,
            digest_channel: raw.digest_channel,
            digest_interval: self.duration(
                "audit.digest_interval",
                raw.digest_interval.as_deref(),
                Duration::from_secs(24 * 3600),
            ),
        }
    }

    fn alerts(&mut self, value: Option<toml::Value>) -> AlertsConfig {
        let raw: RawAlerts = match value {
            Some(value) => self.section("alerts", value).unwrap_or_default(),
            None => RawAlerts::default(),
        };
        AlertsConfig {
            group_window: self.duration(
                "alerts.group_window",
                raw.group_window.as_deref(),
                AlertsConfig::default().group_window,
            ),
        }
    }

    fn sources(&mut self, value: Option<toml::Value>) -> SourcesConfig {
        let raw: RawSources = match value {
            Some(value) => self.section("sources", value).unwrap_or_default(),
            None => RawSources::default(),
        };
        let github_secret = raw
            .github
            .and_then(|github| self.long_secret("sources.github.secret", &github.secret));
        let gitlab_token = raw
            .gitlab
            .and_then(|gitlab| self.long_secret("sources.gitlab.token", &gitlab.token));
        let (flux_secret, flux_environment) = match raw.flux {
            None => (None, None),
            Some(flux) => {
                let secret = self.long_secret("sources.flux.secret", &flux.secret);
                let environment = flux
                    .environment
                    .and_then(|raw| match Environment::parse(&raw) {
                        Ok(environment) => Some(environment),
                        Err(error) => {
                            self.problem("sources.flux.environment", error.to_string());
                            None
                        }
                    });
                (secret, environment)
            }
        };
        let default_timeout = crate::core::bot::DEFAULT_ROLLBACK_TIMEOUT;
        let (flagger_token, flagger_environment, flagger_rollback_timeout) = match raw.flagger {
            None => (None, None, default_timeout),
            Some(flagger) => {
                let token = self.long_secret("sources.flagger.token", &flagger.token);
                let environment = flagger.environment.and_then(|raw| {
                    Environment::parse(&raw)
                        .map_err(|error| {
                            self.problem("sources.flagger.environment", error.to_string())
                        })
                        .ok()
                });
                let timeout = self.duration(
                    "sources.flagger.rollback_timeout",
                    flagger.rollback_timeout.as_deref(),
                    default_timeout,
                );
                (token, environment, timeout)
            }
        };
        SourcesConfig {
            github_secret,
            gitlab_token,
            flux_secret,
            flux_environment,
            flagger_token,
            flagger_environment,
            flagger_rollback_timeout,
        }
    }

    /// A secret that authenticates a sender: at least 16 characters, since anyone who
    /// guesses it can write deploys into the registry.
    fn long_secret(&mut self, path: &str, value: &toml::Value) -> Option<Secret> {
        let secret = self.secret(path, value)?;
        if secret.expose().len() < 16 {
            self.problem(
                path,
                "is shorter than 16 characters; use a long random secret",
            );
        }
        Some(secret)
    }

    /// `github_repository`, `gitlab_project`, `flux_kustomization`, `flux_helmrelease`,
    /// `flagger_canary`.
    fn service_sources(&mut self, path: &str, raw: &RawService) -> ServiceSources {
        let check = |v: &mut Self, key: &str, value: &Option<String>, shape: Shape| {
            let value = value.as_deref()?.trim();
            let segments: Vec<&str> = value.split('/').collect();
            let fits = match shape {
                Shape::OwnerName => segments.len() == 2,
                Shape::GroupPath => segments.len() >= 2,
                Shape::FluxObject => segments.len() <= 2,
            };
            let allowed = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '{' | '}');
            if !fits
                || segments
                    .iter()
                    .any(|s| s.is_empty() || !s.chars().all(allowed))
            {
                v.problem(join(path, key), format!("{value:?} {}", shape.expected()));
                return None;
            }
            for placeholder in placeholders(value) {
                if shape != Shape::FluxObject
                    || (placeholder != "service" && placeholder != "environment")
                {
                    v.problem(
                        join(path, key),
                        format!("unknown placeholder {{{placeholder}}}"),
                    );
                }
            }
            Some(value.to_owned())
        };
        ServiceSources {
            github_repository: check(
                self,
                "github_repository",
                &raw.github_repository,
                Shape::OwnerName,
            ),
            gitlab_project: check(
                self,
                "gitlab_project",
                &raw.gitlab_project,
                Shape::GroupPath,
            ),
            flux_kustomization: check(
                self,
                "flux_kustomization",
                &raw.flux_kustomization,
                Shape::FluxObject,
            ),
            flux_helmrelease: check(
                self,
                "flux_helmrelease",
                &raw.flux_helmrelease,
                Shape::FluxObject,
            ),
            flagger_canary: check(
                self,
                "flagger_canary",
                &raw.flagger_canary,
                Shape::FluxObject,
            ),
        }
    }

    /// A repository or project names one service: an event for it must not have to guess.
    /// A key for a source that is off is allowed but probably not meant.
    fn service_source_keys(&mut self, services: &[ServiceConfig], sources: &SourcesConfig) {
        let mut seen: HashMap<(&str, String), &ServiceName> = HashMap::new();
        for service in services {
            let keys = &service.sources;
            for (key, set, source_on, setting) in [
                (
                    "github_repository",
                    keys.github_repository.is_some(),
                    sources.github_secret.is_some(),
                    "sources.github.secret",
                ),
                (
                    "gitlab_project",
                    keys.gitlab_project.is_some(),
                    sources.gitlab_token.is_some(),
                    "sources.gitlab.token",
                ),
                (
                    "flux_kustomization",
                    keys.flux_kustomization.is_some(),
                    sources.flux_secret.is_some(),
                    "sources.flux.secret",
                ),
                (
                    "flux_helmrelease",
                    keys.flux_helmrelease.is_some(),
                    sources.flux_secret.is_some(),
                    "sources.flux.secret",
                ),
                (
                    "flagger_canary",
                    keys.flagger_canary.is_some(),
                    sources.flagger_token.is_some(),
                    "sources.flagger.token",
                ),
            ] {
                if set && !source_on {
                    self.warn(
                        format!("services.{}.{key}", service.name),
                        format!("is set but {setting} is not: these deploy events are off"),
                    );
                }
            }
            for (key, value) in [
                ("github_repository", &keys.github_repository),
                ("gitlab_project", &keys.gitlab_project),
            ] {
                let Some(value) = value else { continue };
                match seen.get(&(key, value.to_lowercase())) {
                    Some(owner) => self.problem(
                        format!("services.{}.{key}", service.name),
                        format!("{value:?} is already used by service {owner}"),
                    ),
                    None => {
                        seen.insert((key, value.to_lowercase()), &service.name);
                    }
                }
            }
        }
    }
}

/// The shapes of the `[[services]]` keys that name a service in deploy events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    OwnerName,
    GroupPath,
    FluxObject,
}

impl Shape {
    fn expected(self) -> &'static str {
        match self {
            Self::OwnerName => "must be OWNER/REPOSITORY, e.g. \"acme/checkout\"",
            Self::GroupPath => "must be the project's full path, e.g. \"acme/checkout\"",
            Self::FluxObject => {
                "must be NAME or NAMESPACE/NAME, e.g. \"checkout\" or \"apps/checkout-{environment}\""
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeSecrets;

    impl SecretResolver for FakeSecrets {
        fn env(&self, name: &str) -> Option<String> {
            match name {
                "SLACK_BOT_TOKEN" => Some("xoxb-123".into()),
                "SLACK_APP_TOKEN" => Some("xapp-123".into()),
                "API_TOKEN" => Some("0123456789abcdef0123".into()),
                "HOOK_SECRET" => Some("hook-secret".into()),
                "EMPTY" => Some(String::new()),
                _ => None,
            }
        }

        fn file(&self, path: &str) -> Result<String, String> {
            match path {
                "/run/secrets/audit" => Ok("k".repeat(40)),
                _ => Err(format!("cannot read secret file {path}: not found")),
            }
        }
    }

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        Config::parse_with(text, &FakeSecrets)
            .map_err(|e| e.problems().into_iter().map(|p| p.to_string()).collect())
    }

    const VALID: &str = r#"
        [server]
        listen = "0.0.0.0:9000"

        [database]
        url = "sqlite://data/breakwater.db"

        [api]
        token = "${API_TOKEN}"

        [slack]
        bot_token = "${SLACK_BOT_TOKEN}"
        app_token = "${SLACK_APP_TOKEN}"
        alert_channels = ["C0123ABCD"]

        [backends.deployer]
        kind = "webhook"
        url = "https://deployer.internal/rollback"
        secret = "${HOOK_SECRET}"
        timeout = "5m"

        [[services]]
        name = "checkout"
        environments = ["staging", "production"]
        aliases = ["checkout-svc"]
        backend = "deployer"

        [policy]
        rollback_allowed = ["slack:usergroup:S0123", "console:alice"]
        lookback = "3h"
        two_person = ["production"]

        [[policy.freeze]]
        start = "2026-12-24T00:00:00Z"
        end = "2026-12-27T00:00:00Z"
        environments = ["production"]
        reason = "holidays"

        [audit]
        key = { file = "/run/secrets/audit" }
    "#;

    #[test]
    fn a_complete_configuration_loads() {
        let config = parse(VALID).expect("valid");
        assert_eq!(config.server.listen.port(), 9000);
        assert_eq!(config.policy.lookback, Duration::from_secs(3 * 3600));
        assert_eq!(
            config.services[0].backend_for(&Environment::parse("production").expect("ok")),
            Some("deployer")
        );
        assert_eq!(config.policy.freezes.len(), 1);
        assert!(config.audit.key.is_some());
        assert_eq!(
            config.slack.expect("slack").api_url.as_str(),
            "https://slack.com/api/"
        );
    }

    #[test]
    fn an_empty_file_uses_defaults() {
        let config = parse("").expect("valid");
        assert_eq!(config.database.url.expose(), "sqlite://breakwater.db");
        assert_eq!(config.policy.lookback, Duration::from_secs(6 * 3600));
    }

    #[test]
    fn unknown_keys_are_reported_with_their_path() {
        let problems =
            parse(&VALID.replace("lookback = \"3h\"", "lookbak = \"3h\"")).expect_err("invalid");
        assert_eq!(
            problems,
            vec!["policy.lookbak: unknown key `lookbak` — did you mean `lookback`?".to_owned()]
        );
    }

    #[test]
    fn an_unknown_key_far_from_any_known_one_lists_the_known_keys() {
        let problems =
            parse(&VALID.replace("timeout = \"5m\"", "colour = \"red\"")).expect_err("invalid");
        assert_eq!(
            problems,
            vec![
                "backends.deployer.colour: unknown key `colour` (known: url, secret, timeout, \
                 poll_interval)"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn a_misspelt_required_key_is_one_problem_not_two() {
        let problems =
            parse(&VALID.replace("secret = \"${HOOK_SECRET}\"", "secrt = \"${HOOK_SECRET}\""))
                .expect_err("invalid");
        assert_eq!(
            problems,
            vec![
                "backends.deployer.secrt: unknown key `secrt` — did you mean `secret`?".to_owned()
            ]
        );
    }

    #[test]
    fn a_service_naming_a_backend_with_a_bad_key_is_not_told_the_backend_is_missing() {
        let problems =
            parse(&VALID.replace("timeout = \"5m\"", "timeout = 5")).expect_err("invalid");
        assert_eq!(
            problems.len(),
            1,
            "only the bad key is a problem: {problems:?}"
        );
        assert!(
            problems[0].starts_with("backends.deployer.timeout:"),
            "{problems:?}"
        );
    }

    #[test]
    fn an_unset_secret_is_one_problem_and_keys_still_fit_their_backend() {
        let text = VALID.replace(
            "[backends.deployer]\n        kind = \"webhook\"\n        url = \"https://deployer.internal/rollback\"\n        secret = \"${HOOK_SECRET}\"\n        timeout = \"5m\"",
            "[backends.deployer]\n        kind = \"argocd\"\n        url = \"https://argocd.internal\"\n        token = \"${ARGOCD_TOKEN}\"",
        )
        .replace("backend = \"deployer\"", "backend = \"deployer\"\n        app = \"checkout-{environment}\"");
        let problems = parse(&text).expect_err("invalid");
        assert_eq!(
            problems,
            vec![
                "backends.deployer.token: environment variable ARGOCD_TOKEN is not set".to_owned()
            ]
        );
    }

    #[test]
    fn a_freeze_naming_a_service_with_a_problem_is_not_told_the_service_is_missing() {
        let text = VALID
            .replace("aliases = [\"checkout-svc\"]", "aliases = \"checkout-svc\"")
            .replace(
                "environments = [\"production\"]\n        reason",
                "services = [\"checkout\"]\n        reason",
            );
        let problems = parse(&text).expect_err("invalid");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("services[0].aliases:"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_misspelt_slack_mode_is_not_then_held_to_socket_mode() {
        let problems = parse(&VALID.replace(
            "app_token = \"${SLACK_APP_TOKEN}\"",
            "mode = \"htpp\"\n        signing_secret = \"${HOOK_SECRET}\"",
        ))
        .expect_err("invalid");
        assert_eq!(
            problems,
            vec!["slack.mode: \"htpp\" must be \"socket\" or \"http\"".to_owned()]
        );
    }

    #[test]
    fn a_bad_heartbeat_interval_is_not_then_compared_with_the_timeout() {
        let problems = parse(&VALID.replace(
            "listen = \"0.0.0.0:9000\"",
            "listen = \"0.0.0.0:9000\"\n        heartbeat_interval = \"often\"\n        heartbeat_timeout = \"8s\"",
        ))
        .expect_err("invalid");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("server.heartbeat_interval:"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_bad_trusted_proxy_is_not_then_reported_missing() {
        let problems = parse(&format!(
            "{VALID}\n[console]\ntrusted_proxy_header = \"X-User\"\ntrusted_proxies = [\"proxy\"]\n"
        ))
        .expect_err("invalid");
        assert_eq!(
            problems,
            vec!["console.trusted_proxies[0]: \"proxy\" is not an IP address".to_owned()]
        );
    }

    #[test]
    fn a_misspelt_section_is_answered_with_the_nearest_one() {
        let problems = parse("[servr]\nlisten = \"x\"").expect_err("invalid");
        assert_eq!(
            problems,
            vec!["servr: unknown section `servr` — did you mean `server`?".to_owned()]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = VALID
            .replace("lookback = \"3h\"", "lookback = \"three hours\"")
            .replace("backend = \"deployer\"", "backend = \"argo\"")
            .replace("\"console:alice\"", "\"alice\"");
        let problems = parse(&text).expect_err("invalid");
        assert!(
            problems.iter().any(|p| p.starts_with("policy.lookback:")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("services[0] (checkout).backend:")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("policy.rollback_allowed[1]:")),
            "{problems:?}"
        );
    }

    #[test]
    fn inline_secrets_are_refused() {
        let problems = parse(&VALID.replace("\"${API_TOKEN}\"", "\"hunter2hunter2hunter2\""))
            .expect_err("invalid");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("api.token: must not be written inline")),
            "{problems:?}"
        );
    }

    #[test]
    fn missing_environment_variables_are_named() {
        let problems = parse(&VALID.replace("${API_TOKEN}", "${NOPE}")).expect_err("invalid");
        assert!(
            problems.contains(&"api.token: environment variable NOPE is not set".to_owned()),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_sections_are_reported() {
        let problems = parse("[servr]\nlisten = \"x\"").expect_err("invalid");
        assert!(
            problems[0].starts_with("servr: unknown section"),
            "{problems:?}"
        );
    }

    #[test]
    fn toml_syntax_errors_name_the_line() {
        let problems = parse("[server]\nlisten = ").expect_err("invalid");
        assert!(
            problems[0].starts_with("line 2: invalid TOML"),
            "{problems:?}"
        );
    }

    #[test]
    fn socket_mode_needs_an_app_token() {
        let problems =
            parse(&VALID.replace("app_token = \"${SLACK_APP_TOKEN}\"", "")).expect_err("invalid");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("slack.app_token: is required")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_backend_per_environment_is_accepted() {
        let text = VALID.replace(
            "backend = \"deployer\"",
            "backend = { staging = \"deployer\", production = \"deployer\" }",
        );
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn backend_keys_must_fit_the_backend_kind() {
        let text = VALID.replace(
            "backend = \"deployer\"",
            "backend = \"deployer\"\nrelease = \"checkout\"",
        );
        let problems = parse(&text).expect_err("invalid");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("release: only applies to helm")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_argo_rollouts_backend_takes_the_kubernetes_connection_settings_and_a_rollout_name() {
        let text = VALID
            .replace(
                "backend = \"deployer\"",
                "backend = \"rollouts\"\nnamespace = \"shop\"\nrollout = \"{service}-canary\"",
            )
            .replace(
                "[[services]]",
                "[backends.rollouts]\nkind = \"argo-rollouts\"\ncontext = \"prod\"\ntimeout = \"3m\"\n\n[[services]]",
            );
        let config = parse(&text).expect("valid");
        let Some(BackendConfig::ArgoRollouts(rollouts)) = config.backends.get("rollouts") else {
            panic!("{:?}", config.backends);
        };
        assert_eq!(rollouts.context.as_deref(), Some("prod"));
        assert_eq!(rollouts.timeout, Duration::from_secs(180));
        assert_eq!(
            config.services[0].rollout.as_deref(),
            Some("{service}-canary")
        );
        let text = VALID.replace(
            "backend = \"deployer\"",
            "backend = \"deployer\"\nrollout = \"checkout\"",
        );
        let problems = parse(&text).expect_err("invalid");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("rollout: only applies to argo-rollouts")),
            "{problems:?}"
        );
    }

    #[test]
    fn duplicate_service_names_and_aliases_are_refused() {
        let text = format!(
            "{VALID}\n[[services]]\nname = \"checkout-svc\"\nenvironments = [\"production\"]\nbackend = \"deployer\"\n"
        );
        let problems = parse(&text).expect_err("invalid");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("already used by service checkout")),
            "{problems:?}"
        );
    }

    #[test]
    fn templates_fill_service_and_environment() {
        let config = parse(VALID).expect("valid");
        let service = &config.services[0];
        let env = Environment::parse("production").expect("ok");
        assert_eq!(
            service.setting(&Some("{service}-{environment}".into()), &env, "x"),
            "checkout-production"
        );
        assert_eq!(service.setting(&None, &env, "{service}"), "checkout");
    }

    #[test]
    fn server_connection_limits_have_defaults_and_are_validated() {
        let config = parse(VALID).expect("valid");
        assert_eq!(config.server.connections, ConnectionLimits::default());
        let text = VALID.replace(
            "[server]",
            "[server]\nheader_read_timeout = \"5s\"\nidle_timeout = \"30s\"\nmax_connections = 64",
        );
        let limits = parse(&text).expect("valid").server.connections;
        assert_eq!(limits.header_read_timeout, Duration::from_secs(5));
        assert_eq!(limits.idle_timeout, Duration::from_secs(30));
        assert_eq!(limits.max_connections, 64);
        let text = VALID.replace("[server]", "[server]\nmax_connections = 0");
        let problems = parse(&text).expect_err("invalid");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("server.max_connections")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_service_repository_is_read_with_its_kind_inferred_from_the_host() {
        let text = VALID.replace(
            "backend = \"deployer\"",
            "backend = \"deployer\"\nrepository = \"https://github.com/acme/checkout\"",
        );
        let config = parse(&text).expect("valid");
        let repository = config.services[0].repository.as_ref().expect("set");
        assert_eq!(
            repository.commit_url("abc123").as_deref(),
            Some("https://github.com/acme/checkout/commit/abc123")
        );
    }

    #[test]
    fn a_self_hosted_repository_without_a_kind_is_refused_naming_the_key() {
        let text = VALID.replace(
            "backend = \"deployer\"",
            "backend = \"deployer\"\nrepository = \"https://git.acme.internal/acme/checkout\"",
        );
        let problems = parse(&text).expect_err("invalid");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("services[0] (checkout).repository:")
                    && p.contains("repository_kind")),
            "{problems:?}"
        );
    }

    #[test]
    fn deploy_sources_and_service_keys_are_read() {
        let text = VALID.replace(
            "backend = \"deployer\"",
            "backend = \"deployer\"\ngithub_repository = \"acme/checkout\"\nflux_helmrelease = \"apps/checkout-{environment}\"",
        ) + "\n[sources.github]\nsecret = \"${API_TOKEN}\"\n[sources.flux]\nsecret = \"${API_TOKEN}\"\nenvironment = \"production\"\n";
        let config = parse(&text).expect("valid");
        assert!(config.sources.github_secret.is_some());
        assert!(config.sources.gitlab_token.is_none());
        assert_eq!(
            config
                .sources
                .flux_environment
                .as_ref()
                .map(Environment::as_str),
            Some("production")
        );
        assert_eq!(
            config.services[0].sources.github_repository.as_deref(),
            Some("acme/checkout")
        );
    }

    #[test]
    fn a_short_source_secret_and_misshapen_service_keys_are_refused() {
        let text = VALID.replace(
            "backend = \"deployer\"",
            "backend = \"deployer\"\ngithub_repository = \"checkout\"\nflux_kustomization = \"a/b/c\"",
        ) + "\n[sources.gitlab]\ntoken = \"${HOOK_SECRET}\"\n";
        let problems = parse(&text).expect_err("invalid");
        for expected in [
            "sources.gitlab.token: is shorter than 16 characters",
            "github_repository: \"checkout\" must be OWNER/REPOSITORY",
            "flux_kustomization: \"a/b/c\" must be NAME or NAMESPACE/NAME",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected}: {problems:?}"
            );
        }
    }

    #[test]
    fn a_service_key_for_a_source_that_is_off_is_a_warning() {
        let text = VALID.replace(
            "backend = \"deployer\"",
            "backend = \"deployer\"\ngitlab_project = \"acme/shop/checkout\"",
        );
        let config = Config::parse_with(&text, &FakeSecrets).expect("valid");
        assert!(
            config.warnings.iter().any(|w| w
                .to_string()
                .contains("gitlab_project: is set but sources.gitlab.token is not")),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn one_repository_cannot_name_two_services() {
        let text = VALID.replace(
            "backend = \"deployer\"",
            "backend = \"deployer\"\ngithub_repository = \"acme/shop\"",
        ) + "\n[[services]]\nname = \"payments\"\nenvironments = [\"production\"]\nbackend = \"deployer\"\ngithub_repository = \"Acme/Shop\"\n";
        let problems = parse(&text).expect_err("invalid");
        assert!(
            problems.iter().any(|p| p
                .contains("github_repository: \"Acme/Shop\" is already used by service checkout")),
            "{problems:?}"
        );
    }
}

#[cfg(test)]
mod runner_identity_tests {
    use super::*;

    struct NoSecrets;

    impl SecretResolver for NoSecrets {
        fn env(&self, _name: &str) -> Option<String> {
            None
        }

        fn file(&self, path: &str) -> Result<String, String> {
            Err(format!("cannot read secret file {path}: not found"))
        }
    }

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        Config::parse_with(text, &NoSecrets)
            .map_err(|e| e.problems().into_iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn the_runner_id_defaults_to_the_host_and_listen_port() {
        let config = parse("[server]\nlisten = \"127.0.0.1:9000\"\n").expect("valid");
        assert!(
            config.server.runner_id.ends_with(":9000"),
            "{}",
            config.server.runner_id
        );
        assert_eq!(config.server.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(config.server.heartbeat_timeout, Duration::from_secs(15));
    }

    #[test]
    fn an_explicit_runner_id_and_heartbeat_are_taken() {
        let config = parse(
            "[server]\nrunner_id = \"breakwater-0\"\nheartbeat_interval = \"2s\"\nheartbeat_timeout = \"6s\"\n",
        )
        .expect("valid");
        assert_eq!(config.server.runner_id, "breakwater-0");
        assert_eq!(config.server.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(config.server.heartbeat_timeout, Duration::from_secs(6));
    }

    #[test]
    fn a_heartbeat_timeout_shorter_than_two_intervals_is_refused() {
        let problems =
            parse("[server]\nheartbeat_interval = \"10s\"\nheartbeat_timeout = \"15s\"\n")
                .expect_err("invalid");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("server.heartbeat_timeout:")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_runner_id_with_spaces_is_refused() {
        let problems = parse("[server]\nrunner_id = \"two words\"\n").expect_err("invalid");
        assert!(
            problems.iter().any(|p| p.starts_with("server.runner_id:")),
            "{problems:?}"
        );
    }
}
