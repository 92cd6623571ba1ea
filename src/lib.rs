//! breakwater: an incident-response chat bot that answers an alert with the recent deploys
//! to the affected service and offers a one-click, audited rollback.
//!
//! # Layout
//!
//! - [`app`]: builds the whole application from a [`config::Config`] (store, audit log,
//!   backends, bot, chat adapters, HTTP listener) and runs it; tests and the demo swap in
//!   parts through `app::Overrides`.
//! - [`config`]: the TOML configuration, read and validated once into typed values.
//! - [`core`]: the platform-neutral domain (alerts, deploys, summaries, rollback plans,
//!   policy, incidents told after the fact), the bot that decides (`core::bot`, one file
//!   per job), and the ports it needs: `core::store` (the `Store` trait and its records),
//!   `core::chat` (the `Chat` trait and the hub), `core::audit` (the hash-chained audit
//!   log). It knows no Slack, Discord, SQL or HTTP; its errors name no library.
//! - [`alerts`]: parsers that turn webhook payloads and chat messages into alerts.
//! - [`backends`]: the deployment backends (Argo CD, Kubernetes, Argo Rollouts, Helm, webhook, command,
//!   simulated) and the registry that picks one per service and environment.
//! - [`store`]: the core's store port implemented on SQLite and PostgreSQL (queries by
//!   table group in `store::sql`, row types in `store::rows`).
//! - [`audit`]: `core::audit` under its old path.
//! - [`chat`]: the chat adapters (Slack, Discord, web console) and their outbound queue;
//!   each parses channel messages into alerts before it calls the bot.
//! - [`demo`]: `breakwater demo`: the bot on an embedded configuration with a scripted
//!   incident, for a first look without any accounts.
//! - [`sources`]: deploy events from GitHub, GitLab, Flux and Flagger: signature checks, payload
//!   parsers and the mapping of their names to configured services.
//! - [`http`]: the axum router: health, metrics, deploy API, alert webhooks, platform
//!   HTTP endpoints; and the accept loop that serves it with connection limits.
//! - [`metrics`]: the Prometheus metrics operators watch (alerts in, summaries out,
//!   rollbacks and their outcomes, backend and HTTP latency, incident durations), served
//!   at `/metrics`.
//! - `sync`: taking in-memory locks, the one place that decides what a poisoned lock means.
//! - `text`: cutting text to a size with `…`, for every platform limit.
//!
//! Data flows one way: adapters turn the outside world into core events, the core
//! decides, adapters render the core's replies.

pub mod alerts;
pub mod app;
pub use crate::core::audit;
pub mod backends;
pub mod chat;
pub mod config;
pub mod core;
pub mod demo;
pub mod http;
pub mod metrics;
pub mod sources;
pub mod store;
mod sync;
mod text;
