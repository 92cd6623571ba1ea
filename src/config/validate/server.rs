//! `[server]`, `[database]` and the token-only sections `[api]` and `[webhooks]`.

use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

use super::Validator;
use crate::config::raw::{RawDatabase, RawServer, RawTokenSection};
use crate::config::{ConnectionLimits, DatabaseConfig, Secret, ServerConfig, default_runner_id};

impl Validator<'_> {
    /// `server.runner_id`, `server.heartbeat_interval` and `server.heartbeat_timeout`.
    pub(super) fn runner(
        &mut self,
        raw: &RawServer,
        listen: SocketAddr,
    ) -> (String, Duration, Duration) {
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

    pub(super) fn server(&mut self, value: Option<toml::Value>) -> Option<ServerConfig> {
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

    /// Also read alone by `StoreConfig`, hence visible to the whole config module.
    pub(in crate::config) fn database(
        &mut self,
        value: Option<toml::Value>,
    ) -> Option<DatabaseConfig> {
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

    pub(super) fn token_section(
        &mut self,
        name: &str,
        value: Option<toml::Value>,
    ) -> Option<Secret> {
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
}
