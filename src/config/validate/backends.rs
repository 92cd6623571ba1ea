//! `[backends.NAME]`: each kind's own keys, and every name recorded (even a broken one) so
//! that services naming it are not told it does not exist.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::Validator;
use crate::config::raw::{
    RawArgoCdBackend, RawCommandBackend, RawHelmBackend, RawKubernetesBackend, RawSimulatedBackend,
    RawWebhookBackend,
};
use crate::config::{
    ArgoCdBackendConfig, BackendConfig, CommandBackendConfig, HelmBackendConfig,
    KubernetesBackendConfig, SimulatedBackendConfig, SimulatedCanary, WebhookBackendConfig, join,
    placeholders,
};
use crate::core::deploy::ServiceName;

impl Validator<'_> {
    pub(super) fn backends(
        &mut self,
        value: Option<toml::Value>,
    ) -> BTreeMap<String, BackendConfig> {
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

    pub(super) fn webhook_backend(
        &mut self,
        path: &str,
        body: toml::Value,
    ) -> Option<BackendConfig> {
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

    pub(super) fn command_backend(
        &mut self,
        path: &str,
        body: toml::Value,
    ) -> Option<BackendConfig> {
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

    pub(super) fn simulated_backend(
        &mut self,
        path: &str,
        body: toml::Value,
    ) -> Option<BackendConfig> {
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

    pub(super) fn argocd_backend(
        &mut self,
        path: &str,
        body: toml::Value,
    ) -> Option<BackendConfig> {
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
            cluster: raw.watch_config.then(|| KubernetesBackendConfig {
                kubeconfig: raw.kubeconfig.map(PathBuf::from),
                context: raw.context,
                timeout,
                poll_interval,
                allow_insecure_http: raw.allow_insecure_http,
                watch_config: true,
            }),
        }))
    }

    pub(super) fn kubernetes_backend(
        &mut self,
        path: &str,
        body: toml::Value,
    ) -> Option<BackendConfig> {
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

    pub(super) fn helm_backend(&mut self, path: &str, body: toml::Value) -> Option<BackendConfig> {
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
}
