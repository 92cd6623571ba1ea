//! The chat platforms, `[slack]` and `[discord]`, and the web console's `[console]`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use super::{Validator, is_slack_channel_id};
use crate::config::raw::{RawConsole, RawDiscord, RawSlack};
use crate::config::{
    ConsoleConfig, ConsoleUser, DiscordConfig, DiscordMode, SlackConfig, SlackMode, join,
};
use crate::core::policy::Principal;

impl Validator<'_> {
    pub(super) fn slack(&mut self, value: toml::Value) -> Option<SlackConfig> {
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

    pub(super) fn snowflake(&mut self, path: &str, value: &toml::Value) -> Option<u64> {
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

    pub(super) fn discord(&mut self, value: toml::Value) -> Option<DiscordConfig> {
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

    pub(super) fn console(&mut self, value: Option<toml::Value>) -> ConsoleConfig {
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
}
