//! Deployment backends and the registry that chooses one for a service and environment.
//!
//! Each `[backends.NAME]` section becomes one [`DeployBackend`] held as an `Arc<dyn …>`;
//! a service names its backend per environment, and [`BackendRegistry::for_target`]
//! follows that mapping. Backends that keep no history of their own (webhook, command,
//! simulated) leave history and the current revision to the deploy registry.

pub mod command;
pub mod simulated;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{BackendConfig, Config, ServiceConfig};
use crate::core::backend::DeployBackend;
use crate::core::deploy::{ServiceName, Target};

pub use command::CommandBackend;
pub use simulated::SimulatedBackend;
pub use webhook::WebhookBackend;

/// Why the configured backends could not be built. Shown at start-up, before anything runs.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "backends.{name}: kind \"{kind}\" is not available in this version of breakwater yet; \
         use a webhook or command backend for now"
    )]
    KindNotAvailable { name: String, kind: &'static str },
    #[error("backends.{name}: cannot create an HTTP client: {source}")]
    HttpClient {
        name: String,
        #[source]
        source: reqwest::Error,
    },
}

/// The configured backends by name, and which one serves each service and environment.
pub struct BackendRegistry {
    backends: BTreeMap<String, Arc<dyn DeployBackend>>,
    services: HashMap<ServiceName, ServiceConfig>,
    /// The simulated backends again with their concrete type, so the demo and tests can
    /// read what they were asked to do.
    simulated: BTreeMap<String, Arc<SimulatedBackend>>,
}

impl BackendRegistry {
    /// Builds every `[backends.NAME]` section of a validated configuration.
    pub fn from_config(config: &Config) -> Result<Self, BuildError> {
        let mut backends: BTreeMap<String, Arc<dyn DeployBackend>> = BTreeMap::new();
        let mut simulated = BTreeMap::new();
        for (name, backend) in &config.backends {
            let built: Arc<dyn DeployBackend> = match backend {
                BackendConfig::Webhook(c) => Arc::new(WebhookBackend::new(name, c)?),
                BackendConfig::Command(c) => Arc::new(CommandBackend::new(name, c)),
                BackendConfig::Simulated(c) => {
                    let backend = Arc::new(SimulatedBackend::new(name, c));
                    simulated.insert(name.clone(), Arc::clone(&backend));
                    backend
                }
                BackendConfig::ArgoCd(_) => return Err(not_available(name, backend)),
                BackendConfig::Kubernetes(_) => return Err(not_available(name, backend)),
                BackendConfig::Helm(_) => return Err(not_available(name, backend)),
            };
            backends.insert(name.clone(), built);
        }
        Ok(Self {
            backends,
            services: services_by_name(&config.services),
            simulated,
        })
    }

    /// A registry of ready-made backends (fakes in tests), keyed by their
    /// [`DeployBackend::name`]; services route to them by that name. A service whose
    /// backend is missing simply has none.
    pub fn from_parts(
        services: &[ServiceConfig],
        backends: impl IntoIterator<Item = Arc<dyn DeployBackend>>,
    ) -> Self {
        Self {
            backends: backends
                .into_iter()
                .map(|backend| (backend.name().to_owned(), backend))
                .collect(),
            services: services_by_name(services),
            simulated: BTreeMap::new(),
        }
    }

    /// The backend configured as `[backends.NAME]`; used to resume a rollback whose plan
    /// recorded the backend's name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn DeployBackend>> {
        self.backends.get(name).cloned()
    }

    /// The backend that deploys this service in this environment, if it is configured.
    pub fn for_target(&self, target: &Target) -> Option<Arc<dyn DeployBackend>> {
        let service = self.services.get(&target.service)?;
        self.get(service.backend_for(&target.environment)?)
    }

    /// A simulated backend built from the configuration, with its call records.
    pub fn simulated(&self, name: &str) -> Option<Arc<SimulatedBackend>> {
        self.simulated.get(name).cloned()
    }

    /// The configured backend names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.backends.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for BackendRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.backends.iter().map(|(name, b)| (name, b.kind())))
            .finish()
    }
}

fn services_by_name(services: &[ServiceConfig]) -> HashMap<ServiceName, ServiceConfig> {
    services
        .iter()
        .map(|service| (service.name.clone(), service.clone()))
        .collect()
}

fn not_available(name: &str, backend: &BackendConfig) -> BuildError {
    BuildError::KindNotAvailable {
        name: name.to_owned(),
        kind: backend.kind(),
    }
}

/// At most `max` characters of `text` with whitespace runs collapsed, so a backend's
/// answer (an HTML error page, a stack trace) fits in a chat message.
pub(crate) fn snippet(text: &str, max: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

impl crate::core::backend::BackendDirectory for BackendRegistry {
    fn for_target(&self, target: &Target) -> Option<Arc<dyn DeployBackend>> {
        BackendRegistry::for_target(self, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::deploy::Environment;

    fn config(backends: &str) -> Config {
        let text = format!(
            r#"
            {backends}

            [[services]]
            name = "checkout"
            environments = ["staging", "production"]
            backend = {{ staging = "sim", production = "hook" }}
            "#
        );
        Config::parse(&text).expect("valid config")
    }

    const BACKENDS: &str = r#"
        [backends.sim]
        kind = "simulated"
        delay = "0s"

        [backends.hook]
        kind = "webhook"
        url = "http://127.0.0.1:9/rollback"
        secret = { file = "Cargo.toml" }

        [backends.script]
        kind = "command"
        argv = ["/bin/true"]
    "#;

    fn target(env: &str) -> Target {
        Target::new(
            ServiceName::parse("Checkout").expect("name"),
            Environment::parse(env).expect("env"),
        )
    }

    #[test]
    fn each_section_becomes_a_backend_of_its_kind() {
        let registry = BackendRegistry::from_config(&config(BACKENDS)).expect("built");
        assert_eq!(
            registry.names().collect::<Vec<_>>(),
            ["hook", "script", "sim"]
        );
        assert_eq!(registry.get("hook").expect("hook").kind(), "webhook");
        assert_eq!(registry.get("script").expect("script").kind(), "command");
        assert_eq!(registry.get("sim").expect("sim").kind(), "simulated");
        assert!(registry.simulated("sim").is_some());
        assert!(registry.get("nope").is_none());
    }

    #[test]
    fn targets_route_per_environment_case_insensitively() {
        let registry = BackendRegistry::from_config(&config(BACKENDS)).expect("built");
        let staging = registry.for_target(&target("STAGING")).expect("staging");
        assert_eq!(staging.name(), "sim");
        let production = registry.for_target(&target("production")).expect("prod");
        assert_eq!(production.name(), "hook");
        assert!(registry.for_target(&target("qa")).is_none());
        let unknown = Target::new(
            ServiceName::parse("search").expect("name"),
            Environment::parse("production").expect("env"),
        );
        assert!(registry.for_target(&unknown).is_none());
    }

    #[test]
    fn kinds_not_built_yet_are_refused_with_their_name() {
        let text = BACKENDS.to_owned()
            + r#"
            [backends.argo]
            kind = "argocd"
            url = "https://argocd.internal"
            token = { file = "Cargo.toml" }
        "#;
        let error = BackendRegistry::from_config(&config(&text)).expect_err("not available");
        assert!(matches!(
            &error,
            BuildError::KindNotAvailable { name, kind: "argocd" } if name == "argo"
        ));
        assert!(
            error
                .to_string()
                .starts_with("backends.argo: kind \"argocd\""),
            "{error}"
        );
    }

    #[test]
    fn prebuilt_backends_are_routed_by_their_name() {
        let config = config(BACKENDS);
        let fake: Arc<dyn DeployBackend> = Arc::new(SimulatedBackend::new(
            "hook",
            &crate::config::SimulatedBackendConfig {
                delay: std::time::Duration::ZERO,
                failure_rate: 0.0,
            },
        ));
        let registry = BackendRegistry::from_parts(&config.services, [fake]);
        let backend = registry.for_target(&target("production")).expect("routed");
        assert_eq!(backend.kind(), "simulated");
        assert!(registry.for_target(&target("staging")).is_none());
    }

    #[test]
    fn snippets_collapse_whitespace_and_stop_at_the_limit() {
        assert_eq!(snippet("  a\n\n b  ", 10), "a b");
        assert_eq!(snippet("abcdefghijkl", 5), "abcd…");
        assert_eq!(snippet("ééééé", 5), "ééééé");
    }
}
