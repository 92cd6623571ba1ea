//! The one integration test binary: each module drives part of breakwater against real
//! protocols on loopback.

mod api;
mod backends;
mod backends_argocd;
mod backends_helm;
#[cfg(feature = "kubernetes")]
mod backends_kubernetes;
#[cfg(feature = "kubernetes")]
mod backends_rollouts;
mod cli;
#[cfg(feature = "kubernetes")]
mod config_changes;
mod console;
mod console_browser;
mod crash;
mod deploy_history;
#[cfg(feature = "kubernetes")]
mod deploy_manifests;
#[cfg(feature = "discord")]
mod discord;
#[cfg(feature = "discord")]
mod discord_gateway;
mod flagger;
mod incident;
mod operations;
mod outage;
#[cfg(feature = "discord")]
mod replicas;
mod rollback;
mod server_limits;
#[cfg(feature = "slack")]
mod slack;
mod sources;
mod store;
mod support;
mod threads;
