//! `breakwater demo`: the whole bot on an embedded configuration, with no accounts
//! anywhere. SQLite in a temporary data directory, the web console as the chat, the
//! simulated backend with three services and a deploy history, and a scripted incident:
//! an alert shortly after start for the service deployed most recently, which resolves a
//! little while after someone rolls it back, so the verification line appears. Beside it,
//! an alert for a service in the middle of a canary, whose first button is Abort rollout;
//! it resolves a little while after the abort sends all traffic back to the stable version.
//! And an alert for a service whose Flagger Canary is in its analysis, whose first button is
//! Roll back canary; the demo plays Flagger's part in-process (it takes the armed request
//! as the rollback hook does, then reports the canary `Failed` as its event webhook would).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::app::{Application, Overrides};
use crate::audit::{AuditLog, actions};
use crate::chat::console::auth::hash_password;
use crate::config::{Config, ConfigError, ConsoleUser, Secret};
use crate::core::alert::{Alert, AlertSource, AlertStatus, Severity};
use crate::core::bot::{AlertHandled, Bot};
use crate::core::clock::SystemClock;
use crate::core::deploy::{
    Change, ConfigChange, Deploy, DeploySource, DeployStatus, Environment, ServiceName, Target,
};
use crate::core::rollback::PlanState;
use crate::store::{DeployQuery, Store, StoreError};

/// The embedded configuration (`config/demo.toml`).
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");
/// The console user the demo adds; it may sign in only from this machine.
pub const DEMO_USER: &str = "demo";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the embedded demo configuration is invalid: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot create the demo's data directory: {0}")]
    DataDir(#[source] std::io::Error),
    #[error("cannot hash the demo password: {0}")]
    Password(String),
    #[error("cannot open the demo database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start breakwater: {0:#}")]
    Start(anyhow::Error),
    #[error("breakwater stopped with an error: {0:#}")]
    Run(anyhow::Error),
}

/// How the demo runs; the defaults are what `breakwater demo` does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    /// Keep the database here instead of in a temporary directory.
    pub data_dir: Option<PathBuf>,
    /// When the scripted alert fires after start.
    pub alert_after: Duration,
    /// How long after a successful rollback the alert resolves.
    pub resolve_after: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: None,
            alert_after: Duration::from_secs(10),
            resolve_after: Duration::from_secs(20),
        }
    }
}

/// A started demo: listening, with its history seeded, and its incident not yet fired.
pub struct Demo {
    app: Application,
    bot: Bot,
    password: String,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    options: DemoOptions,
    incident: Target,
}

impl Demo {
    pub async fn build(options: DemoOptions) -> Result<Self, DemoError> {
        let (temp, data_dir) = match &options.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(DemoError::DataDir)?;
                (None, dir.clone())
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("breakwater-demo-")
                    .tempdir()
                    .map_err(DemoError::DataDir)?;
                let path = temp.path().to_owned();
                (Some(temp), path)
            }
        };
        let mut config = Config::parse(DEMO_CONFIG)?;
        config.server.listen = options.listen;
        // Bound first, so that the thread's links (the Incident page, the deploys) name the
        // address the demo really serves, also when the port was chosen by the system.
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| {
                DemoError::Start(
                    anyhow::Error::new(e)
                        .context(format!("listening on {} (server.listen)", options.listen)),
                )
            })?;
        if config.server.public_url.is_none() {
            config.server.public_url = Some(demo_public_url(&listener)?);
        }
        config.database.url = Secret::new(format!(
            "sqlite://{}",
            data_dir.join("breakwater.db").display()
        ));
        let password = generate_password();
        let hash = hash_password(&password).map_err(|e| DemoError::Password(e.to_string()))?;
        config.console.users.push(ConsoleUser {
            name: DEMO_USER.to_owned(),
            password_hash: hash,
            loopback_only: true,
        });
        let store = crate::store::connect(config.database.url.expose()).await?;
        let audit = AuditLog::new(
            store.clone(),
            crate::app::audit_sealer(&config.audit),
            Arc::new(SystemClock),
        );
        let incident = seed_history(&*store, &audit, Utc::now()).await?;
        seed_flagger_canary(&*store, Utc::now()).await?;
        let app = Application::build_with(
            config,
            Overrides {
                store: Some(store),
                listener: Some(listener),
                ..Overrides::default()
            },
        )
        .await
        .map_err(DemoError::Start)?;
        let bot = app.bot();
        Ok(Self {
            app,
            bot,
            password,
            data_dir,
            _temp: temp,
            options,
            incident,
        })
    }

    /// The console's address, to open in a browser.
    pub fn url(&self) -> String {
        format!("http://{}/console", self.app.local_addr())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.app.local_addr()
    }

    pub fn user(&self) -> &str {
        DEMO_USER
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn bot(&self) -> Bot {
        self.bot.clone()
    }

    /// The service and environment the scripted alert is about.
    pub fn incident(&self) -> &Target {
        &self.incident
    }

    /// The service and environment in the middle of a canary, with an alert of its own.
    pub fn canary(&self) -> String {
        format!("{} {}", CANARY.0, CANARY.1)
    }

    /// Serves, and plays the scripted incident, until `stop` completes.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DemoError> {
        let script_stop = CancellationToken::new();
        let script = {
            let stop = script_stop.clone();
            let bot = self.bot.clone();
            let target = self.incident.clone();
            let options = self.options.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = play_incidents(bot, target, options) => {}
                    () = stop.cancelled() => {}
                }
            })
        };
        let stopping = script_stop.clone();
        let result = self
            .app
            .run_until(async move {
                stop.await;
                stopping.cancel();
            })
            .await;
        script_stop.cancel();
        let _ = script.await;
        result.map_err(DemoError::Run)
    }
}

/// `http://ADDRESS`, with an unspecified address (`0.0.0.0`) read as this machine.
fn demo_public_url(listener: &tokio::net::TcpListener) -> Result<url::Url, DemoError> {
    let mut address = listener
        .local_addr()
        .map_err(|e| DemoError::Start(anyhow::Error::new(e)))?;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    url::Url::parse(&format!("http://{address}"))
        .map_err(|e| DemoError::Start(anyhow::Error::new(e)))
}

/// A password people can type: 16 letters and digits without look-alikes.
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..16)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
}

fn name(raw: &str) -> Result<ServiceName, StoreError> {
    ServiceName::parse(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn env(raw: &str) -> Result<Environment, StoreError> {
    Environment::parse(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

struct Seed {
    service: &'static str,
    environment: &'static str,
    version: &'static str,
    previous: Option<&'static str>,
    minutes_ago: i64,
    author: &'static str,
    commits: &'static [(&'static str, &'static str)],
    config: &'static [(&'static str, &'static str, &'static str)],
    /// Still rolling out (a canary): reported started, not finished.
    rolling_out: bool,
}

/// The service in the middle of a canary (`backends.canary` in `config/demo.toml`).
const CANARY: (&str, &str) = ("search", "production");

const HISTORY: &[Seed] = &[
    Seed {
        service: "checkout",
        environment: "production",
        version: "v2.13.0",
        previous: Some("v2.12.4"),
        minutes_ago: 3 * 24 * 60 + 95,
        author: "Maya Chen",
        commits: &[
            ("9c1e2f4", "Show delivery estimates in the cart"),
            ("3b7d0a1", "Cache shipping zones for 10 minutes"),
        ],
        config: &[],
        rolling_out: false,
    },
    Seed {
        service: "checkout",
        environment: "production",
        version: "v2.13.1",
        previous: Some("v2.13.0"),
        minutes_ago: 2 * 24 * 60 + 240,
        author: "Luis Ortega",
        commits: &[(
            "e4a5c77",
            "Fix rounding of discounts on multi-currency carts",
        )],
        config: &[],
        rolling_out: false,
    },
    Seed {
        service: "checkout",
        environment: "staging",
        version: "v2.14.0",
        previous: Some("v2.13.1"),
        minutes_ago: 5 * 60,
        author: "Priya Natarajan",
        commits: &[
            ("51f0b9e", "Batch inventory lookups when pricing a cart"),
            ("a2c4e60", "Bump pgx to 5.7.1"),
        ],
        config: &[("DB_POOL_MAX", "40", "8")],
        rolling_out: false,
    },
    Seed {
        service: "checkout",
        environment: "production",
        version: "v2.14.0",
        previous: Some("v2.13.1"),
        minutes_ago: 26,
        author: "Priya Natarajan",
        commits: &[
            ("51f0b9e", "Batch inventory lookups when pricing a cart"),
            ("a2c4e60", "Bump pgx to 5.7.1"),
        ],
        config: &[
            ("DB_POOL_MAX", "40", "8"),
            ("PAYMENTS_API_TOKEN", "old", "new"),
        ],
        rolling_out: false,
    },
    Seed {
        service: "payments",
        environment: "production",
        version: "v5.2.0",
        previous: Some("v5.1.3"),
        minutes_ago: 4 * 24 * 60 + 30,
        author: "Sam Okafor",
        commits: &[(
            "0d9e8f1",
            "Retry card authorisations once on gateway timeouts",
        )],
        config: &[],
        rolling_out: false,
    },
    Seed {
        service: "payments",
        environment: "production",
        version: "v5.3.0",
        previous: Some("v5.2.0"),
        minutes_ago: 24 * 60 + 10,
        author: "Sam Okafor",
        commits: &[("77aa120", "Support SEPA instant transfers")],
        config: &[],
        rolling_out: false,
    },
    Seed {
        service: "payments",
        environment: "production",
        version: "v5.3.1",
        previous: Some("v5.3.0"),
        minutes_ago: 6 * 60 + 45,
        author: "Aiko Tanaka",
        commits: &[("c0ffee1", "Log gateway latency per acquirer")],
        config: &[],
        rolling_out: false,
    },
    Seed {
        service: "search",
        environment: "production",
        version: "v0.41.0",
        previous: Some("v0.40.2"),
        minutes_ago: 2 * 24 * 60 + 15,
        author: "Noor Haddad",
        commits: &[("5e5e5e5", "Rank exact SKU matches first")],
        config: &[],
        rolling_out: false,
    },
    Seed {
        service: "search",
        environment: "production",
        version: "v0.42.0",
        previous: Some("v0.41.0"),
        minutes_ago: 9 * 60 + 20,
        author: "Noor Haddad",
        commits: &[("9a8b7c6", "Typo tolerance for product names")],
        config: &[],
        rolling_out: false,
    },
    Seed {
        service: "search",
        environment: "production",
        version: "v0.43.0",
        previous: Some("v0.42.0"),
        minutes_ago: 14,
        author: "Noor Haddad",
        commits: &[("d1ce5ab", "Query both index shards in parallel")],
        config: &[("SEARCH_SHARD_TIMEOUT_MS", "800", "2500")],
        rolling_out: true,
    },
];

/// A ConfigMap edited in place, as the Kubernetes config watch records it: payments'
/// gateway timeout cut to a tenth 40 minutes ago, its newest change and so the suspect of
/// any alert about payments production.
struct ConfigEdit {
    service: &'static str,
    environment: &'static str,
    config_map: &'static str,
    resource_version: &'static str,
    manager: &'static str,
    minutes_ago: i64,
    keys: &'static [(&'static str, &'static str, &'static str)],
}

const CONFIG_EDITS: &[ConfigEdit] = &[ConfigEdit {
    service: "payments",
    environment: "production",
    config_map: "payments-env",
    resource_version: "48213",
    manager: "kubectl-edit",
    minutes_ago: 40,
    keys: &[("GATEWAY_TIMEOUT_MS", "3000", "300")],
}];

/// Records the demo's deploy history (unless the data directory already has one), audited
/// as CI's reports would be, and returns the target deployed most recently: the scripted
/// alert's subject.
async fn seed_history(
    store: &dyn Store,
    audit: &AuditLog,
    now: DateTime<Utc>,
) -> Result<Target, StoreError> {
    let newest = HISTORY
        .iter()
        .filter(|seed| !seed.rolling_out)
        .min_by_key(|seed| seed.minutes_ago)
        .map(|seed| (seed.service, seed.environment))
        .unwrap_or(("checkout", "production"));
    let incident = Target::new(name(newest.0)?, env(newest.1)?);
    let known = store
        .deploys(&DeployQuery {
            limit: 1,
            ..DeployQuery::default()
        })
        .await?;
    if !known.is_empty() {
        return Ok(incident);
    }
    for seed in HISTORY {
        let started_at = now - chrono::Duration::minutes(seed.minutes_ago);
        let deploy = Deploy {
            target: Target::new(name(seed.service)?, env(seed.environment)?),
            version: seed.version.to_owned(),
            previous_version: seed.previous.map(str::to_owned),
            revision: None,
            commit: seed.commits.first().map(|(sha, _)| (*sha).to_owned()),
            author: Some(seed.author.to_owned()),
            description: None,
            url: None,
            started_at,
            finished_at: (!seed.rolling_out).then(|| started_at + chrono::Duration::minutes(3)),
            status: if seed.rolling_out {
                DeployStatus::Started
            } else {
                DeployStatus::Succeeded
            },
            changes: seed
                .commits
                .iter()
                .map(|(sha, message)| Change {
                    commit: (*sha).to_owned(),
                    author: Some(seed.author.to_owned()),
                    message: (*message).to_owned(),
                })
                .collect(),
            config_changes: seed
                .config
                .iter()
                .map(|(key, old, new)| {
                    ConfigChange {
                        key: (*key).to_owned(),
                        old: Some((*old).to_owned()),
                        new: Some((*new).to_owned()),
                    }
                    .masked()
                })
                .collect(),
            source: DeploySource::Api,
        };
        let recorded = store.record_deploy(&deploy).await?;
        audit
            .append(
                audit
                    .entry(actions::DEPLOY_RECORDED)
                    .target(&recorded.deploy.target)
                    .details(serde_json::json!({
                        "deploy": recorded.id,
                        "version": recorded.deploy.version,
                        "status": recorded.deploy.status.as_str(),
                        "author": recorded.deploy.author,
                        "commit": recorded.deploy.commit,
                    })),
            )
            .await?;
    }
    for edit in CONFIG_EDITS {
        let at = now - chrono::Duration::minutes(edit.minutes_ago);
        let change = Deploy {
            target: Target::new(name(edit.service)?, env(edit.environment)?),
            version: format!("configmap/{}@{}", edit.config_map, edit.resource_version),
            previous_version: None,
            revision: None,
            commit: None,
            author: Some(edit.manager.to_owned()),
            description: Some(format!("ConfigMap {} changed", edit.config_map)),
            url: None,
            started_at: at,
            finished_at: Some(at),
            status: DeployStatus::Succeeded,
            changes: Vec::new(),
            config_changes: edit
                .keys
                .iter()
                .map(|(key, old, new)| {
                    ConfigChange {
                        key: (*key).to_owned(),
                        old: Some((*old).to_owned()),
                        new: Some((*new).to_owned()),
                    }
                    .masked()
                })
                .collect(),
            source: DeploySource::ConfigChange,
        };
        let recorded = store.record_deploy(&change).await?;
        audit
            .append(
                audit
                    .entry(actions::CONFIG_CHANGE_RECORDED)
                    .target(&recorded.deploy.target)
                    .details(serde_json::json!({
                        "deploy": recorded.id,
                        "object": recorded.deploy.description,
                        "version": recorded.deploy.version,
                        "manager": recorded.deploy.author,
                        "at": at.to_rfc3339(),
                    })),
            )
            .await?;
    }
    Ok(incident)
}

fn incident_alert(target: &Target, status: AlertStatus, now: DateTime<Utc>) -> Alert {
    let description = format!(
        "5xx responses on {target} are at 12.4% over the last 5 minutes (threshold 2%). \
         Most failures: \"pq: sorry, too many clients already\".",
    );
    demo_alert(target, "HighErrorRate", description, status, now)
}

fn canary_alert(target: &Target, status: AlertStatus, now: DateTime<Utc>) -> Alert {
    let description = format!(
        "p99 latency of {target} is 2.4 s over the last 5 minutes (threshold 800 ms), since \
         the canary took a share of the traffic."
    );
    demo_alert(target, "HighLatency", description, status, now)
}

fn demo_alert(
    target: &Target,
    title: &str,
    description: String,
    status: AlertStatus,
    now: DateTime<Utc>,
) -> Alert {
    let labels: BTreeMap<String, String> = [
        ("alertname", title),
        ("service", target.service.as_str()),
        ("env", target.environment.as_str()),
        ("severity", "critical"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let fingerprint = Alert::derive_fingerprint(&AlertSource::Breakwater, title, &labels);
    Alert {
        source: AlertSource::Breakwater,
        service: Some(target.service.clone()),
        environment: Some(target.environment.clone()),
        severity: Severity::Critical,
        status,
        title: title.to_owned(),
        description,
        // The alert started firing a few minutes before it was delivered.
        started_at: now - chrono::Duration::minutes(4),
        ended_at: (status == AlertStatus::Resolved).then_some(now),
        labels,
        fingerprint,
        link: None,
    }
}

/// The scripted incidents, side by side: the latest deploy's, and the canary's.
async fn play_incidents(bot: Bot, target: Target, options: DemoOptions) {
    let canary = match (name(CANARY.0), env(CANARY.1)) {
        (Ok(service), Ok(environment)) => Target::new(service, environment),
        _ => return play_incident(bot, target, options, incident_alert).await,
    };
    let flagger = match (name(FLAGGER.0), env(FLAGGER.1)) {
        (Ok(service), Ok(environment)) => Target::new(service, environment),
        _ => return,
    };
    tokio::join!(
        play_incident(bot.clone(), target, options.clone(), incident_alert),
        play_incident(bot.clone(), canary, options.clone(), canary_alert),
        play_incident(bot.clone(), flagger, options, flagger_alert),
        play_flagger(bot),
    );
}

/// A scripted incident: the alert fires; once the action offered for it (a rollback, or
/// the canary's abort) succeeds, the alert resolves a little later.
async fn play_incident(
    bot: Bot,
    target: Target,
    options: DemoOptions,
    alert: fn(&Target, AlertStatus, DateTime<Utc>) -> Alert,
) {
    tokio::time::sleep(options.alert_after).await;
    let fired = alert(&target, AlertStatus::Firing, Utc::now());
    let started_at = fired.started_at;
    let group = match bot.handle_webhook_alerts(vec![fired]).await {
        Ok(handled) => match handled.first() {
            Some(AlertHandled::Recorded { group_id, .. }) => *group_id,
            other => {
                tracing::warn!(?other, "the demo alert was not recorded as new");
                return;
            }
        },
        Err(error) => {
            tracing::error!(%error, "the demo could not raise its alert");
            return;
        }
    };
    tracing::info!(%target, "demo: an alert is firing; open the console to act on it");
    let mut every = tokio::time::interval(Duration::from_millis(500));
    loop {
        every.tick().await;
        match bot.store().plans_for_group(group).await {
            Ok(plans) if plans.iter().any(|p| p.state == PlanState::Succeeded) => break,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "demo: cannot read the rollback's state"),
        }
    }
    tokio::time::sleep(options.resolve_after).await;
    let mut resolved = alert(&target, AlertStatus::Resolved, Utc::now());
    resolved.started_at = started_at;
    if let Err(error) = bot.handle_webhook_alerts(vec![resolved]).await {
        tracing::error!(%error, "the demo could not resolve its alert");
    }
}

mod flagger;
use flagger::*;

#[cfg(test)]
mod tests;
