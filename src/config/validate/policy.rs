//! `[policy]`, `[audit]` and `[alerts]`: who may roll back, when, and how it is recorded.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Validator;
use crate::config::raw::{RawAlerts, RawAudit, RawPolicy};
use crate::config::{AlertsConfig, AuditConfig, ServiceConfig, join};
use crate::core::deploy::{Environment, ServiceName};
use crate::core::policy::{FreezeWindow, Policy};

impl Validator<'_> {
    pub(super) fn time(&mut self, path: &str, raw: &str) -> Option<DateTime<Utc>> {
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

    pub(super) fn policy(
        &mut self,
        value: Option<toml::Value>,
        services: &[ServiceConfig],
    ) -> Policy {
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

    /// Also read alone by `StoreConfig`, hence visible to the whole config module.
    pub(in crate::config) fn audit(&mut self, value: Option<toml::Value>) -> AuditConfig {
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

    pub(super) fn alerts(&mut self, value: Option<toml::Value>) -> AlertsConfig {
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
}
