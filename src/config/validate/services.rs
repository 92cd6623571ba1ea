//! `[[services]]`: names, environments, the backend per environment and the keys that
//! backend needs, owners and channels.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Validator, is_slack_channel_id};
use crate::config::raw::RawService;
use crate::config::{BackendConfig, ServiceConfig, join, placeholders};
use crate::core::deploy::{Environment, ServiceName};
use crate::core::repository::{Repository, RepositoryError};

impl Validator<'_> {
    pub(super) fn services(
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

    pub(super) fn service_backends(
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
    pub(super) fn service_backend_keys(
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
}
