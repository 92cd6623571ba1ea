//! The configuration's shapes as written in TOML, before validation. Scalars that need
//! parsing stay strings here so that a bad value is reported with its path instead of
//! stopping the whole parse; [`super::validate`] turns them into the typed values.

use serde::Deserialize;

#[derive(Deserialize, Default)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) public_url: Option<String>,
    pub(super) runner_id: Option<String>,
    pub(super) heartbeat_interval: Option<String>,
    pub(super) heartbeat_timeout: Option<String>,
    pub(super) shutdown_grace: Option<String>,
    pub(super) header_read_timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) max_connections: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawDatabase {
    pub(super) url: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawTokenSection {
    pub(super) token: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawSlack {
    pub(super) mode: Option<String>,
    pub(super) bot_token: Option<toml::Value>,
    pub(super) app_token: Option<toml::Value>,
    pub(super) signing_secret: Option<toml::Value>,
    pub(super) api_url: Option<String>,
    #[serde(default)]
    pub(super) alert_channels: Vec<String>,
    pub(super) reconnect_backoff: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawDiscord {
    pub(super) mode: Option<String>,
    pub(super) token: Option<toml::Value>,
    pub(super) application_id: Option<toml::Value>,
    pub(super) public_key: Option<String>,
    pub(super) guild_id: Option<toml::Value>,
    #[serde(default)]
    pub(super) alert_channels: Vec<toml::Value>,
    pub(super) api_url: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawConsoleUser {
    pub(super) name: String,
    pub(super) password_hash: toml::Value,
    #[serde(default)]
    pub(super) loopback_only: bool,
}

#[derive(Deserialize, Default)]
pub(super) struct RawConsole {
    pub(super) enabled: Option<bool>,
    #[serde(default)]
    pub(super) users: Vec<RawConsoleUser>,
    pub(super) trusted_proxy_header: Option<String>,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<String>,
    pub(super) session_ttl: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawService {
    pub(super) name: String,
    #[serde(default)]
    pub(super) environments: Vec<String>,
    #[serde(default)]
    pub(super) aliases: Vec<String>,
    pub(super) backend: Option<toml::Value>,
    pub(super) rollback_allowed: Option<Vec<String>>,
    #[serde(default)]
    pub(super) owners: Vec<String>,
    pub(super) slack_channel: Option<String>,
    pub(super) discord_channel: Option<toml::Value>,
    pub(super) app: Option<String>,
    pub(super) app_namespace: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) deployment: Option<String>,
    pub(super) release: Option<String>,
    pub(super) version_from: Option<String>,
    pub(super) rollout: Option<String>,
    pub(super) repository: Option<String>,
    pub(super) repository_kind: Option<String>,
    pub(super) github_repository: Option<String>,
    pub(super) gitlab_project: Option<String>,
    pub(super) flux_kustomization: Option<String>,
    pub(super) flux_helmrelease: Option<String>,
    pub(super) flagger_canary: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawWebhookBackend {
    pub(super) url: String,
    pub(super) secret: toml::Value,
    pub(super) timeout: Option<String>,
    pub(super) poll_interval: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawCommandBackend {
    pub(super) argv: Vec<String>,
    pub(super) timeout: Option<String>,
    pub(super) working_dir: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawSimulatedBackend {
    pub(super) delay: Option<String>,
    pub(super) failure_rate: Option<f64>,
    pub(super) canary: Option<RawSimulatedCanary>,
}

#[derive(Deserialize)]
pub(super) struct RawSimulatedCanary {
    pub(super) service: String,
    pub(super) stable: String,
    pub(super) version: String,
    pub(super) step: u32,
    pub(super) steps: u32,
    pub(super) weight: u32,
}

#[derive(Deserialize)]
pub(super) struct RawArgoCdBackend {
    pub(super) url: String,
    pub(super) token: toml::Value,
    pub(super) ca_file: Option<String>,
    #[serde(default)]
    pub(super) insecure: bool,
    #[serde(default)]
    pub(super) allow_disable_autosync: bool,
    pub(super) timeout: Option<String>,
    pub(super) poll_interval: Option<String>,
    #[serde(default)]
    pub(super) allow_insecure_http: bool,
    pub(super) kubeconfig: Option<String>,
    pub(super) context: Option<String>,
    /// Off by default: the cluster may not be reachable from breakwater.
    #[serde(default)]
    pub(super) watch_config: bool,
}

#[derive(Deserialize, Default)]
pub(super) struct RawKubernetesBackend {
    pub(super) kubeconfig: Option<String>,
    pub(super) context: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) poll_interval: Option<String>,
    #[serde(default)]
    pub(super) allow_insecure_http: bool,
    pub(super) watch_config: Option<bool>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawHelmBackend {
    pub(super) helm: Option<String>,
    pub(super) kube_context: Option<String>,
    pub(super) kubeconfig: Option<String>,
    pub(super) timeout: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawFreeze {
    pub(super) start: String,
    pub(super) end: String,
    #[serde(default)]
    pub(super) services: Vec<String>,
    #[serde(default)]
    pub(super) environments: Vec<String>,
    pub(super) reason: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawPolicy {
    #[serde(default)]
    pub(super) rollback_allowed: Vec<String>,
    #[serde(default)]
    pub(super) channels: Vec<String>,
    pub(super) lookback: Option<String>,
    pub(super) plan_ttl: Option<String>,
    pub(super) cooldown: Option<String>,
    #[serde(default)]
    pub(super) freeze: Vec<RawFreeze>,
    #[serde(default)]
    pub(super) two_person: Vec<String>,
    pub(super) verify_window: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawAudit {
    pub(super) key: Option<toml::Value>,
    pub(super) digest_channel: Option<String>,
    pub(super) digest_interval: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawAlerts {
    pub(super) group_window: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawSources {
    pub(super) github: Option<RawSecretSource>,
    pub(super) gitlab: Option<RawTokenSource>,
    pub(super) flux: Option<RawFluxSource>,
    pub(super) flagger: Option<RawFlaggerSource>,
}

#[derive(Deserialize)]
pub(super) struct RawFlaggerSource {
    pub(super) token: toml::Value,
    pub(super) environment: Option<String>,
    pub(super) rollback_timeout: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawSecretSource {
    pub(super) secret: toml::Value,
}

#[derive(Deserialize)]
pub(super) struct RawTokenSource {
    pub(super) token: toml::Value,
}

#[derive(Deserialize)]
pub(super) struct RawFluxSource {
    pub(super) secret: toml::Value,
    pub(super) environment: Option<String>,
}
