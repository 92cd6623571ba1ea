//! `[sources]` (the deploy-event webhooks' secrets) and the keys in `[[services]]` that
//! tie a service to the repository, Flux object or Flagger canary those events name.

use std::collections::HashMap;

use super::Validator;
use crate::config::raw::{RawService, RawSources};
use crate::config::{ServiceConfig, ServiceSources, SourcesConfig, join, placeholders};
use crate::core::deploy::{Environment, ServiceName};

impl Validator<'_> {
    pub(super) fn sources(&mut self, value: Option<toml::Value>) -> SourcesConfig {
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

    /// `github_repository`, `gitlab_project`, `flux_kustomization`, `flux_helmrelease`,
    /// `flagger_canary`.
    pub(super) fn service_sources(&mut self, path: &str, raw: &RawService) -> ServiceSources {
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
    pub(super) fn service_source_keys(
        &mut self,
        services: &[ServiceConfig],
        sources: &SourcesConfig,
    ) {
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
