//! Builds everything from a [`Config`] and runs it: store, audit log, backends, the bot,
//! the chat adapters and the HTTP listener. Tests build the same application with fakes
//! swapped in through [`Overrides`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::{AuditLog, AuditSealer};
use crate::backends::BackendRegistry;
use crate::chat::{Chat, ChatHub};
use crate::config::{Config, ServiceConfig};
use crate::core::backend::BackendDirectory;
use crate::core::bot::{Bot, BotParts, BotSettings};
use crate::core::clock::{Clock, SystemClock};
use crate::core::repository::{ConsoleLinks, ServiceLinks};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::store::Store;

/// Replacements for the parts the configuration would build; for tests and the demo.
#[derive(Default)]
pub struct Overrides {
    pub store: Option<Arc<dyn Store>>,
    pub backends: Option<Arc<dyn BackendDirectory>>,
    pub clock: Option<Arc<dyn Clock>>,
    /// Chat adapters registered in addition to the configured ones.
    pub chats: Vec<Arc<dyn Chat>>,
    /// How often maintenance runs (expiry, verification, digests); default 15 s.
    pub maintenance_every: Option<Duration>,
    /// Settings the configuration does not expose (grouping delay, confirmation TTL).
    pub tune: Option<fn(&mut BotSettings)>,
    /// A listener already bound (instead of binding `server.listen`), so that a caller
    /// knows the address before building, e.g. to link to it in messages.
    pub listener: Option<TcpListener>,
}

/// A built application, listening but not yet serving.
pub struct Application {
    config: Arc<Config>,
    bot: Bot,
    listener: TcpListener,
    router: axum::Router,
    metrics: Arc<Metrics>,
    /// Adapter tasks (websocket clients, queues), stopped after the bot has shut down.
    adapters: TaskTracker,
    adapters_stop: CancellationToken,
    maintenance_every: Duration,
}

/// A configured chat platform whose adapter this binary was built without would otherwise
/// be ignored without a word; refuse to start instead, naming the section and the feature.
fn refuse_platforms_not_built(config: &Config) -> anyhow::Result<()> {
    #[cfg(not(feature = "slack"))]
    if config.slack.is_some() {
        anyhow::bail!(
            "[slack] is configured but this breakwater was built without the `slack` feature: \
             rebuild with it or remove [slack]"
        );
    }
    #[cfg(not(feature = "discord"))]
    if config.discord.is_some() {
        anyhow::bail!(
            "[discord] is configured but this breakwater was built without the `discord` \
             feature: rebuild with it or remove [discord]"
        );
    }
    let _ = config;
    Ok(())
}

/// Installs ring as the process-wide TLS provider once; several libraries build rustls
/// configurations and would otherwise disagree about the provider.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with(config, Overrides::default()).await
    }

    pub async fn build_with(config: Config, overrides: Overrides) -> anyhow::Result<Self> {
        install_tls_provider();
        http::raise_open_file_limit();
        refuse_platforms_not_built(&config)?;
        let config = Arc::new(config);
        let store = match overrides.store {
            Some(store) => store,
            // The error is already one line naming database.url, the cause and the fix.
            None => crate::store::connect(config.database.url.expose()).await?,
        };
        let clock: Arc<dyn Clock> = overrides.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let sealer = audit_sealer(&config.audit);
        let audit = AuditLog::new(store.clone(), sealer, clock.clone());
        let backends: Arc<dyn BackendDirectory> = match overrides.backends {
            Some(backends) => backends,
            None => {
                let registry = BackendRegistry::from_config(&config)
                    .context("building the deployment backends")?;
                #[cfg(feature = "kubernetes")]
                check_argocd_clusters(&config).await?;
                registry.keep_config_snapshots_in(&store);
                Arc::new(registry)
            }
        };
        let chats = ChatHub::new();
        let metrics = Arc::new(Metrics::new());
        let mut settings = BotSettings {
            services: config.services.iter().map(ServiceConfig::known).collect(),
            policy: config.policy.clone(),
            group_window: config.alerts.group_window,
            runner_id: Some(config.server.runner_id.clone()),
            heartbeat_interval: config.server.heartbeat_interval,
            heartbeat_timeout: config.server.heartbeat_timeout,
            digest: config
                .audit
                .digest_channel
                .clone()
                .map(|channel| (channel, config.audit.digest_interval)),
            links: config
                .services
                .iter()
                .map(|s| {
                    let links = ServiceLinks {
                        repository: s.repository.clone(),
                        owners: s.owners.clone(),
                    };
                    (s.name.clone(), links)
                })
                .collect(),
            // Only where the console serves those pages.
            console_links: config
                .server
                .public_url
                .as_ref()
                .filter(|_| config.console.enabled)
                .map(|url| ConsoleLinks::new(url.as_str())),
            flagger: flagger_settings(&config),
            ..BotSettings::default()
        };
        if let Some(tune) = overrides.tune {
            tune(&mut settings);
        }
        let bot = Bot::new(BotParts {
            settings,
            store,
            audit,
            backends,
            chats: chats.clone(),
            clock,
            metrics: metrics.clone(),
        });
        let state = AppState {
            bot: bot.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
        };
        let router = http::router(state);
        let adapters = TaskTracker::new();
        let adapters_stop = CancellationToken::new();
        for chat in overrides.chats {
            chats.register(chat);
        }
        #[cfg(feature = "slack")]
        let router = match &config.slack {
            Some(slack) => {
                let adapter = crate::chat::slack::SlackAdapter::new(
                    slack,
                    &config.services,
                    bot.clone(),
                    adapters.clone(),
                )
                .context("starting the Slack adapter ([slack])")?;
                chats.register(adapter.chat());
                adapter.start(&adapters, adapters_stop.clone());
                match adapter.router() {
                    Some(slack_routes) => router.merge(slack_routes),
                    None => router,
                }
            }
            None => router,
        };
        #[cfg(feature = "discord")]
        let router = match &config.discord {
            Some(discord) => {
                let adapter = crate::chat::discord::DiscordAdapter::new(
                    discord,
                    &config.services,
                    bot.clone(),
                    adapters.clone(),
                )
                .context("starting the Discord adapter ([discord])")?;
                chats.register(adapter.chat());
                adapter.start(&adapters, adapters_stop.clone());
                match adapter.router() {
                    Some(discord_routes) => router.merge(discord_routes),
                    None => router,
                }
            }
            None => router,
        };
        let router = if config.console.enabled {
            let console = crate::chat::console::ConsoleAdapter::new(&config, bot.clone());
            chats.register(console.chat());
            router.merge(console.router())
        } else {
            router
        };
        let router = http::finish(router, metrics.clone());
        let listener = match overrides.listener {
            Some(listener) => listener,
            None => TcpListener::bind(config.server.listen)
                .await
                .with_context(|| {
                    format!("listening on {} (server.listen)", config.server.listen)
                })?,
        };
        Ok(Self {
            config,
            bot,
            listener,
            router,
            metrics,
            adapters,
            adapters_stop,
            maintenance_every: overrides
                .maintenance_every
                .unwrap_or(Duration::from_secs(15)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.config.server.listen)
    }

    pub fn bot(&self) -> Bot {
        self.bot.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes. Running rollbacks get `server.shutdown_grace` to
    /// finish; the ones still running are recorded as interrupted.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            config,
            bot,
            listener,
            router,
            adapters,
            adapters_stop,
            maintenance_every,
            metrics,
        } = self;
        match bot.recover_at_start().await {
            Ok(0) => {}
            Ok(count) => tracing::info!(
                count,
                runner = bot.runner_id(),
                "followed up rollbacks left running by a previous run"
            ),
            Err(error) => tracing::error!(%error, "could not recover rollbacks left running"),
        }
        let maintenance_stop = CancellationToken::new();
        let heartbeat = {
            let bot = bot.clone();
            let stop = maintenance_stop.clone();
            tokio::spawn(async move { bot.run_heartbeat(stop).await })
        };
        let maintenance = {
            let bot = bot.clone();
            let stop = maintenance_stop.clone();
            tokio::spawn(async move { bot.run_maintenance(maintenance_every, stop).await })
        };
        let watches_stop = CancellationToken::new();
        #[cfg(feature = "kubernetes")]
        let watches = start_config_watches(&config, &bot, &watches_stop);
        tracing::info!(address = %listener.local_addr().map_or_else(|_| config.server.listen.to_string(), |a| a.to_string()), "breakwater is serving");
        http::serve(
            listener,
            router,
            config.server.connections,
            metrics.clone(),
            config.server.shutdown_grace,
            stop,
        )
        .await;
        tracing::info!("shutting down: letting running rollbacks finish");
        maintenance_stop.cancel();
        let _ = maintenance.await;
        let _ = heartbeat.await;
        watches_stop.cancel();
        #[cfg(feature = "kubernetes")]
        for watch in watches {
            let _ = watch.await;
        }
        bot.shutdown(config.server.shutdown_grace).await;
        adapters_stop.cancel();
        adapters.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), adapters.wait()).await;
        Ok(())
    }
}

/// Argo CD backends with `watch_config` build their cluster connection before start-up
/// completes: a cluster they cannot use is one clear error, not a warning much later.
#[cfg(feature = "kubernetes")]
async fn check_argocd_clusters(config: &Config) -> anyhow::Result<()> {
    for (name, backend) in &config.backends {
        if let crate::config::BackendConfig::ArgoCd(argocd) = backend
            && argocd.cluster.is_some()
        {
            crate::backends::ArgoCdBackend::new(name, argocd, &config.services)?
                .check_cluster()
                .await?;
        }
    }
    Ok(())
}

/// One task per Kubernetes or Argo CD backend with `watch_config`: its ConfigMap and Secret watches,
/// on their own tasks so a slow or refusing API server never holds up alerts.
#[cfg(feature = "kubernetes")]
fn start_config_watches(
    config: &Config,
    bot: &Bot,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    use crate::backends::kubernetes::config_watch::RegistrySink;
    use crate::config::BackendConfig;
    let sink = Arc::new(RegistrySink {
        store: bot.store().clone(),
        audit: bot.audit().clone(),
    });
    let mut watches = Vec::new();
    for (name, backend) in &config.backends {
        if let BackendConfig::ArgoCd(argocd) = backend {
            if argocd.cluster.is_some() {
                match crate::backends::ArgoCdBackend::new(name, argocd, &config.services) {
                    Ok(backend) => watches.push(tokio::spawn(
                        Arc::new(backend).watch_config(sink.clone(), stop.clone()),
                    )),
                    Err(error) => {
                        tracing::error!(backend = %name, %error, "not watching configuration changes");
                    }
                }
            }
            continue;
        }
        let BackendConfig::Kubernetes(kubernetes) = backend else {
            continue;
        };
        if !kubernetes.watch_config {
            continue;
        }
        match crate::backends::KubernetesBackend::new(name, kubernetes, &config.services) {
            Ok(backend) => {
                let backend = Arc::new(backend);
                watches.push(tokio::spawn(
                    backend.watch_config(sink.clone(), stop.clone()),
                ));
            }
            Err(error) => {
                tracing::error!(backend = %name, %error, "not watching configuration changes");
            }
        }
    }
    watches
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// The sealer `[audit] key` asks for: the server, `audit verify` and `audit export` must
/// seal and check with the same key, so all of them build it here.
pub fn audit_sealer(config: &crate::config::AuditConfig) -> AuditSealer {
    AuditSealer::new(
        config
            .key
            .as_ref()
            .map(|key| key.expose().as_bytes().to_vec()),
    )
}

/// The Canaries named by `flagger_canary` keys, per target. Only a key that names the
/// namespace (`NAMESPACE/NAME`) can be matched against Flagger's rollback hook payload,
/// so a bare `NAME` records events but offers no Roll back canary.
fn flagger_settings(config: &Config) -> crate::core::bot::FlaggerSettings {
    use crate::core::deploy::Target;
    let mut canaries = std::collections::HashMap::new();
    for service in &config.services {
        if service.sources.flagger_canary.is_none() {
            continue;
        }
        for environment in &service.environments {
            let key = service.setting(&service.sources.flagger_canary, environment, "");
            if let Some((namespace, name)) = key.split_once('/') {
                canaries.insert(
                    Target::new(service.name.clone(), environment.clone()),
                    crate::core::bot::CanaryName {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                    },
                );
            }
        }
    }
    crate::core::bot::FlaggerSettings {
        canaries,
        rollback_timeout: config.sources.flagger_rollback_timeout,
    }
}
