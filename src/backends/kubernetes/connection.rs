//! The client for the configured cluster, and the refusal to send a kubeconfig's
//! credentials to a plain `http://` API server, as kubectl refuses it.

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::{Connection, KubernetesBackend, error_chain};
use crate::config::KubernetesBackendConfig;
use crate::core::backend::{BackendError, BackendErrorKind};

impl KubernetesBackend {
    /// The client for the configured cluster, built once; shared with the Argo Rollouts
    /// backend, which uses the same connection settings.
    pub(crate) async fn connection(&self) -> Result<&Connection, BackendError> {
        self.client
            .get_or_try_init(|| async {
                let name = &self.name;
                let options = KubeConfigOptions {
                    context: self.context.clone(),
                    ..KubeConfigOptions::default()
                };
                let config = match &self.kubeconfig {
                    Some((path, kubeconfig)) => kube::Config::from_custom_kubeconfig(
                        kubeconfig.clone(),
                        &options,
                    )
                    .await
                    .map_err(|e| {
                        format!(
                            "cannot use the kubeconfig {} ({}); check backends.{name}.kubeconfig \
                                     and context",
                            path.display(),
                            error_chain(&e)
                        )
                    }),
                    None if self.context.is_some() => {
                        kube::Config::from_kubeconfig(&options).await.map_err(|e| {
                            format!(
                                "cannot load context {:?} from the default kubeconfig ({}); \
                                 check backends.{name}.context or set kubeconfig",
                                self.context.as_deref().unwrap_or_default(),
                                error_chain(&e)
                            )
                        })
                    }
                    None => match kube::Config::incluster() {
                        Ok(config) => Ok(config),
                        Err(_) => kube::Config::infer().await.map_err(|e| {
                            format!(
                                "found no in-cluster service account and no kubeconfig ({}); run \
                                 breakwater in the cluster or set backends.{name}.kubeconfig",
                                error_chain(&e)
                            )
                        }),
                    },
                }?;
                let cluster_url = config.cluster_url.to_string();
                if !self.allow_insecure_http
                    && config.cluster_url.scheme_str() == Some("http")
                    && sends_credentials(&config.auth_info)
                {
                    tracing::error!(backend = %name, %cluster_url, "refusing to send Kubernetes credentials over plain HTTP; set backends.{name}.allow_insecure_http = true to allow it");
                    return Err(insecure_http_reason(name, &cluster_url));
                }
                let client = kube::Client::try_from(config).map_err(|e| {
                    format!(
                        "cannot build a Kubernetes client for {cluster_url} ({}); check \
                         backends.{name}",
                        error_chain(&e)
                    )
                })?;
                Ok(Connection {
                    client,
                    cluster_url,
                })
            })
            .await
            .map_err(|message: String| {
                BackendError::new(
                    BackendErrorKind::Unavailable,
                    format!("{message}; nothing was changed"),
                )
            })
    }
}

/// Whether a kubeconfig user authenticates with something a plain-HTTP hop could read
/// and replay: a bearer token, a password, or a plugin that produces one.
pub(super) fn sends_credentials(auth: &kube::config::AuthInfo) -> bool {
    auth.token.is_some()
        || auth.token_file.is_some()
        || auth.password.is_some()
        || auth.exec.is_some()
        || auth.auth_provider.is_some()
}

/// The `http://` server of the kubeconfig context breakwater will use, when its user
/// sends credentials (kubectl refuses a bearer token over plain HTTP).
pub(super) fn plain_http_server_with_credentials(
    kubeconfig: &Kubeconfig,
    context: Option<&str>,
) -> Option<String> {
    let context_name = context.or(kubeconfig.current_context.as_deref())?;
    let context = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)?
        .context
        .as_ref()?;
    let server = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)?
        .cluster
        .as_ref()?
        .server
        .clone()?;
    if !server.to_ascii_lowercase().starts_with("http://") {
        return None;
    }
    let user = context.user.as_deref()?;
    let auth = kubeconfig
        .auth_infos
        .iter()
        .find(|a| a.name == user)?
        .auth_info
        .as_ref()?;
    sends_credentials(auth).then_some(server)
}

/// Why this backend's kubeconfig would send credentials over plain HTTP, when it exists,
/// reads, and would.
pub(crate) fn insecure_http_problem(
    name: &str,
    config: &KubernetesBackendConfig,
) -> Option<String> {
    if config.allow_insecure_http {
        return None;
    }
    let kubeconfig = Kubeconfig::read_from(config.kubeconfig.as_ref()?).ok()?;
    plain_http_server_with_credentials(&kubeconfig, config.context.as_deref())
        .map(|server| insecure_http_reason(name, &server))
}

pub(super) fn insecure_http_reason(name: &str, server: &str) -> String {
    format!(
        "the API server {server} is plain http://, so its credentials (a bearer token) would \
         travel in clear text, which kubectl refuses; use https://, or set \
         backends.{name}.allow_insecure_http = true to accept that on a trusted network"
    )
}
