//! Deployment backends and the registry that chooses one for a service and environment.
//!
//! Each `[backends.NAME]` section becomes one [`DeployBackend`] held as an `Arc<dyn …>`;
//! a service names its backend per environment, and [`BackendRegistry::for_target`]
//! follows that mapping. Backends that keep no history of their own (webhook, command,
//! simulated) leave history and the current revision to the deploy registry.

#[cfg(feature = "kubernetes")]
pub mod argo_rollouts;
pub mod argocd;
pub mod command;
pub mod helm;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod simulated;
pub(crate) mod toolkit;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{BackendConfig, Config, ServiceConfig};
use crate::core::backend::DeployBackend;
use crate::core::deploy::{ServiceName, Target};

#[cfg(feature = "kubernetes")]
pub use argo_rollouts::ArgoRolloutsBackend;
pub use argocd::ArgoCdBackend;
pub use command::CommandBackend;
pub use helm::HelmBackend;
#[cfg(feature = "kubernetes")]
pub use kubernetes::KubernetesBackend;
pub use simulated::SimulatedBackend;
pub use webhook::WebhookBackend;

pub(crate) use toolkit::{error_chain, snippet};

/// Why the configured backends could not be built. Shown at start-up, before anything runs.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "backends.{name}: kind \"{kind}\" needs the \"{feature}\" cargo feature, which this \
         build of breakwater was compiled without; rebuild with --features {feature}"
    )]
    FeatureDisabled {
        name: String,
        kind: &'static str,
        feature: &'static str,
    },
    #[error("backends.{name}: cannot create an HTTP client: {source}")]
    HttpClient {
        name: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("backends.{name}.url: {url} cannot carry an API path; use an http(s) URL")]
    Url { name: String, url: String },
    #[error("backends.{name}.ca_file: cannot use {}: {reason}", path.display())]
    CaFile {
        name: String,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("backends.{name}.{key}: {reason}")]
    Kubeconfig {
        name: String,
        key: &'static str,
        reason: String,
    },
}

/// The configured backends by name, and which one serves each service and environment.
pub struct BackendRegistry {
    backends: BTreeMap<String, Arc<dyn DeployBackend>>,
    services: HashMap<ServiceName, ServiceConfig>,
    /// The simulated backends again with their concrete type, so the demo and tests can
    /// read what they were asked to do.
    simulated: BTreeMap<String, Arc<SimulatedBackend>>,
    /// The Kubernetes backends again, to hand them the store their ConfigMap snapshots
    /// are kept in.
    #[cfg(feature = "kubernetes")]
    kubernetes: Vec<Arc<KubernetesBackend>>,
}

impl BackendRegistry {
    /// Builds every `[backends.NAME]` section of a validated configuration.
    pub fn from_config(config: &Config) -> Result<Self, BuildError> {
        let mut backends: BTreeMap<String, Arc<dyn DeployBackend>> = BTreeMap::new();
        let mut simulated = BTreeMap::new();
        #[cfg(feature = "kubernetes")]
        let mut kubernetes = Vec::new();
        for (name, backend) in &config.backends {
            let built: Arc<dyn DeployBackend> = match backend {
                BackendConfig::Webhook(c) => Arc::new(WebhookBackend::new(name, c)?),
                BackendConfig::Command(c) => Arc::new(CommandBackend::new(name, c)),
                BackendConfig::Simulated(c) => {
                    let backend = Arc::new(SimulatedBackend::new(name, c));
                    simulated.insert(name.clone(), Arc::clone(&backend));
                    backend
                }
                BackendConfig::ArgoCd(c) => {
                    let backend = Arc::new(ArgoCdBackend::new(name, c, &config.services)?);
                    // Its cluster side keeps ConfigMap snapshots like a Kubernetes backend.
                    #[cfg(feature = "kubernetes")]
                    kubernetes.extend(backend.kubernetes());
                    backend
                }
                #[cfg(feature = "kubernetes")]
                BackendConfig::Kubernetes(c) => {
                    let backend = Arc::new(KubernetesBackend::new(name, c, &config.services)?);
                    kubernetes.push(Arc::clone(&backend));
                    backend
                }
                #[cfg(not(feature = "kubernetes"))]
                BackendConfig::Kubernetes(_) => {
                    return Err(BuildError::FeatureDisabled {
                        name: name.clone(),
                        kind: backend.kind(),
                        feature: "kubernetes",
                    });
                }
                BackendConfig::Helm(c) => Arc::new(HelmBackend::new(name, c, &config.services)),
                #[cfg(feature = "kubernetes")]
                BackendConfig::ArgoRollouts(c) => {
                    Arc::new(ArgoRolloutsBackend::new(name, c, &config.services)?)
                }
                #[cfg(not(feature = "kubernetes"))]
                BackendConfig::ArgoRollouts(_) => {
                    return Err(BuildError::FeatureDisabled {
                        name: name.clone(),
                        kind: backend.kind(),
                        feature: "kubernetes",
                    });
                }
            };
            backends.insert(name.clone(), built);
        }
        Ok(Self {
            backends,
            services: services_by_name(&config.services),
            simulated,
            #[cfg(feature = "kubernetes")]
            kubernetes,
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
            #[cfg(feature = "kubernetes")]
            kubernetes: Vec::new(),
        }
    }

    /// Tells the Kubernetes backends where the config watch keeps ConfigMap snapshots, so
    /// they can offer and run a Restore.
    pub fn keep_config_snapshots_in(&self, store: &Arc<dyn crate::store::Store>) {
        #[cfg(feature = "kubernetes")]
        for backend in &self.kubernetes {
            backend.keep_snapshots_in(Arc::clone(store));
        }
        #[cfg(not(feature = "kubernetes"))]
        let _ = store;
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

/// Credentials the configuration would send in clear text, each as `KEY.PATH: problem`,
/// for `check-config`. Argo CD URLs are checked with the rest of the configuration; a
/// Kubernetes backend's API server comes from its kubeconfig, read here when it exists (a
/// missing one is reported when breakwater starts).
pub fn credential_problems(config: &Config) -> Vec<String> {
    config
        .backends
        .iter()
        .filter_map(|backend| match backend {
            #[cfg(feature = "kubernetes")]
            (name, BackendConfig::Kubernetes(c) | BackendConfig::ArgoRollouts(c)) => {
                kubernetes::insecure_http_problem(name, c)
                    .map(|reason| format!("backends.{name}.allow_insecure_http: {reason}"))
            }
            // Without the feature a Kubernetes backend is refused when the registry is built.
            _ => None,
        })
        .collect()
}

pub(crate) fn services_by_name(services: &[ServiceConfig]) -> HashMap<ServiceName, ServiceConfig> {
    services
        .iter()
        .map(|service| (service.name.clone(), service.clone()))
        .collect()
}

/// One deployed state in a backend's history, oldest first, for [`distinct_versions`].
pub(crate) struct VersionSource<'a> {
    /// What was deployed; equal contents are the same state deployed again (a rollback).
    pub content: &'a str,
    /// The version as read: an image tag, an app or chart version.
    pub base: &'a str,
    /// The backend's revision number of the first deploy of this content.
    pub number: &'a str,
}

/// The version people see for each entry, oldest first. The core merges history by
/// version and offers the newest deploy *before* the suspect's version, so two different
/// states must never share one: a configuration-only change keeps its image tag, and
/// would otherwise hide behind the deploy it changed. The first content with a base keeps
/// it (so it still matches what CI reported); later different contents with the same
/// base become `BASE+rNUMBER`; a content deployed again keeps its first version.
pub(crate) fn distinct_versions(items: &[VersionSource<'_>]) -> Vec<String> {
    let mut by_content: HashMap<&str, String> = HashMap::new();
    let mut claimed: HashMap<&str, &str> = HashMap::new();
    items
        .iter()
        .map(|item| {
            if let Some(label) = by_content.get(item.content) {
                return label.clone();
            }
            let label = match claimed.get(item.base) {
                None => {
                    claimed.insert(item.base, item.content);
                    item.base.to_owned()
                }
                Some(_) => format!("{}+r{}", item.base, item.number),
            };
            by_content.insert(item.content, label.clone());
            label
        })
        .collect()
}

/// The tag of a container image reference (`registry:5000/team/app:v1.4.0` → `v1.4.0`),
/// the first 12 hex digits of a digest-only reference, or `latest` when it names neither.
pub(crate) fn image_tag(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    if let Some((_, tag)) = last_segment.rsplit_once(':')
        && !tag.is_empty()
    {
        return tag.to_owned();
    }
    match digest {
        Some(digest) => {
            let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
            hex.chars().take(12).collect()
        }
        None => "latest".to_owned(),
    }
}

/// The name part of an image reference, without registry port, tag or digest.
pub(crate) fn image_name(image: &str) -> &str {
    let name = image.split('@').next().unwrap_or(image);
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(colon) => &name[..last_slash + colon],
        None => name,
    }
}

/// Shortens a Git commit id for display.
pub(crate) fn short_commit(revision: &str) -> &str {
    if revision.len() >= 12 && revision.chars().all(|c| c.is_ascii_hexdigit()) {
        &revision[..7]
    } else {
        revision
    }
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
    fn argocd_kubernetes_and_helm_sections_become_backends_of_their_kind() {
        let text = BACKENDS.to_owned()
            + r#"
            [backends.argo]
            kind = "argocd"
            url = "https://argocd.internal"
            token = { file = "Cargo.toml" }

            [backends.charts]
            kind = "helm"
        "#;
        let registry = BackendRegistry::from_config(&config(&text)).expect("built");
        assert_eq!(registry.get("argo").expect("argo").kind(), "argocd");
        assert_eq!(registry.get("charts").expect("charts").kind(), "helm");
    }

    #[test]
    fn a_kubernetes_section_needs_the_kubernetes_feature() {
        let text = BACKENDS.to_owned()
            + r#"
            [backends.cluster]
            kind = "kubernetes"
        "#;
        let built = BackendRegistry::from_config(&config(&text));
        if cfg!(feature = "kubernetes") {
            assert_eq!(
                built
                    .expect("built")
                    .get("cluster")
                    .expect("cluster")
                    .kind(),
                "kubernetes"
            );
        } else {
            let error = built.expect_err("refused");
            assert!(
                error.to_string().contains("--features kubernetes"),
                "{error}"
            );
        }
    }

    #[test]
    fn an_argo_rollouts_section_becomes_a_backend_of_its_kind() {
        let text = BACKENDS.to_owned()
            + r#"
            [backends.rollouts]
            kind = "argo-rollouts"
        "#;
        let built = BackendRegistry::from_config(&config(&text));
        if cfg!(feature = "kubernetes") {
            let registry = built.expect("built");
            assert_eq!(
                registry.get("rollouts").expect("rollouts").kind(),
                "argo-rollouts"
            );
        } else {
            let error = built.expect_err("refused");
            assert!(
                error.to_string().contains("--features kubernetes"),
                "{error}"
            );
        }
    }

    #[test]
    fn an_unreadable_argocd_ca_file_is_refused_naming_its_key() {
        let text = BACKENDS.to_owned()
            + r#"
            [backends.argo]
            kind = "argocd"
            url = "https://argocd.internal"
            token = { file = "Cargo.toml" }
            ca_file = "/nonexistent/ca.pem"
        "#;
        let error = BackendRegistry::from_config(&config(&text)).expect_err("refused");
        assert!(
            error
                .to_string()
                .starts_with("backends.argo.ca_file: cannot use /nonexistent/ca.pem"),
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
                canary: None,
            },
        ));
        let registry = BackendRegistry::from_parts(&config.services, [fake]);
        let backend = registry.for_target(&target("production")).expect("routed");
        assert_eq!(backend.kind(), "simulated");
        assert!(registry.for_target(&target("staging")).is_none());
    }

    #[test]
    fn image_tags_ignore_registry_ports_and_fall_back_to_digests() {
        assert_eq!(image_tag("ghcr.io/acme/checkout:v1.4.0"), "v1.4.0");
        assert_eq!(image_tag("registry:5000/checkout"), "latest");
        assert_eq!(image_tag("registry:5000/checkout:2.1"), "2.1");
        assert_eq!(
            image_tag("checkout@sha256:0123456789abcdef0123"),
            "0123456789ab"
        );
        assert_eq!(image_tag("checkout:v2@sha256:0123456789abcdef"), "v2");
        assert_eq!(
            image_name("registry:5000/team/checkout:v2"),
            "registry:5000/team/checkout"
        );
        assert_eq!(image_name("checkout@sha256:00"), "checkout");
    }

    fn versions(items: &[(&str, &str, &str)]) -> Vec<String> {
        let sources: Vec<VersionSource<'_>> = items
            .iter()
            .map(|(content, base, number)| VersionSource {
                content,
                base,
                number,
            })
            .collect();
        distinct_versions(&sources)
    }

    #[test]
    fn a_configuration_only_change_gets_a_version_of_its_own() {
        assert_eq!(
            versions(&[("a", "v1", "1"), ("b", "v2", "2"), ("c", "v2", "3")]),
            ["v1", "v2", "v2+r3"]
        );
    }

    #[test]
    fn a_state_deployed_again_keeps_its_first_version() {
        assert_eq!(
            versions(&[("a", "v1", "1"), ("b", "v1", "2"), ("a", "v1", "1")]),
            ["v1", "v1+r2", "v1"]
        );
    }
}
