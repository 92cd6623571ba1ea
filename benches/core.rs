//! The core's hot paths: the deploy summary an alert gets (registry query, backend merge,
//! correlation) over a registry of a million deploys, and audit chain verification.
//! Run with `cargo bench --bench core`.

use std::collections::BTreeMap;
use std::sync::Arc;

use breakwater::audit::{
    AuditEntry, AuditLog, AuditRecord, AuditSealer, ChainVerifier, GENESIS_HASH, actions,
};
use breakwater::backends::BackendRegistry;
use breakwater::chat::ChatHub;
use breakwater::config::{ServiceConfig, SimulatedBackendConfig};
use breakwater::core::alert::{Alert, AlertSource, AlertStatus, KnownService, Severity};
use breakwater::core::backend::DeployBackend;
use breakwater::core::bot::{Bot, BotParts, BotSettings};
use breakwater::core::clock::SystemClock;
use breakwater::core::deploy::{
    Change, ConfigChange, Deploy, DeploySource, DeployStatus, Environment, ServiceName, Target,
};
use breakwater::metrics::Metrics;
use breakwater::store::{SqliteStore, Store};
use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SERVICES: usize = 200;
const DEPLOYS: usize = 1_000_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn target(service: usize) -> Target {
    Target::new(
        ServiceName::parse(&format!("service-{service:03}")).expect("name"),
        Environment::parse("production").expect("env"),
    )
}

fn deploy(service: usize, n: usize, finished: DateTime<Utc>) -> Deploy {
    Deploy {
        target: target(service),
        version: format!("v{n}"),
        previous_version: n.checked_sub(1).map(|p| format!("v{p}")),
        revision: None,
        commit: Some(format!("{n:040x}")),
        author: Some("ada".into()),
        description: Some("routine deploy".into()),
        url: None,
        started_at: finished - Duration::minutes(3),
        finished_at: Some(finished),
        status: DeployStatus::Succeeded,
        changes: (0..3)
            .map(|c| Change {
                commit: format!("{c:07x}"),
                author: None,
                message: "fix".into(),
            })
            .collect(),
        config_changes: vec![ConfigChange {
            key: "POOL".into(),
            old: Some("10".into()),
            new: Some("20".into()),
        }],
        source: DeploySource::Api,
    }
}

fn services() -> Vec<ServiceConfig> {
    (0..SERVICES)
        .map(|i| ServiceConfig {
            name: target(i).service,
            environments: vec![Environment::parse("production").expect("env")],
            aliases: vec![],
            backends: [("production".to_owned(), "sim".to_owned())]
                .into_iter()
                .collect(),
            rollback_allowed: None,
            owners: vec![],
            slack_channel: None,
            discord_channel: None,
            app: None,
            app_namespace: None,
            namespace: None,
            deployment: None,
            release: None,
            version_from: None,
            rollout: None,
            repository: None,
            sources: Default::default(),
        })
        .collect()
}

/// A SQLite registry of a million deploys: 5,000 per service, one every 20 minutes.
async fn seeded_store(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::connect(&format!("sqlite://{}", dir.join("bench.db").display()))
        .await
        .expect("open");
    let per_service = DEPLOYS / SERVICES;
    let end = now();
    let mut batch = Vec::with_capacity(50_000);
    for n in 0..per_service {
        for service in 0..SERVICES {
            batch.push(deploy(
                service,
                n,
                end - Duration::minutes(20 * (per_service - n) as i64),
            ));
            if batch.len() == 50_000 {
                store.bulk_insert_deploys(&batch).await.expect("seed");
                batch.clear();
            }
        }
    }
    store.bulk_insert_deploys(&batch).await.expect("seed");
    store
}

fn bench_summary(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(rt.block_on(seeded_store(dir.path())));
    let services = services();
    let simulated: Arc<dyn DeployBackend> =
        Arc::new(breakwater::backends::simulated::SimulatedBackend::new(
            "sim",
            &SimulatedBackendConfig {
                delay: std::time::Duration::ZERO,
                failure_rate: 0.0,
                canary: None,
            },
        ));
    let registry = BackendRegistry::from_parts(&services, [simulated]);
    let clock = Arc::new(SystemClock);
    let bot = Bot::new(BotParts {
        settings: BotSettings {
            services: services
                .iter()
                .map(ServiceConfig::known)
                .collect::<Vec<KnownService>>(),
            ..BotSettings::default()
        },
        store: store.clone(),
        audit: AuditLog::new(store, AuditSealer::new(None), clock.clone()),
        backends: Arc::new(registry),
        chats: ChatHub::new(),
        clock,
        metrics: Arc::new(Metrics::new()),
    });
    let alert = Alert {
        source: AlertSource::Alertmanager,
        service: Some(target(17).service),
        environment: Some(target(17).environment),
        severity: Severity::Critical,
        status: AlertStatus::Firing,
        title: "HighErrorRate".into(),
        description: String::new(),
        started_at: now() - Duration::minutes(5),
        ended_at: None,
        labels: BTreeMap::new(),
        fingerprint: "f".into(),
        link: None,
    };
    let mut group = c.benchmark_group("summary");
    group.throughput(Throughput::Elements(1));
    group.bench_function("build_summary over 1,000,000 deploys", |b| {
        b.to_async(&rt)
            .iter(|| async { bot.build_summary(&alert).await });
    });
    group.finish();
}

fn chain(n: i64) -> Vec<AuditRecord> {
    let sealer = AuditSealer::new(Some(b"0123456789abcdef0123456789abcdef".to_vec()));
    let mut prev = GENESIS_HASH.to_owned();
    let at = now();
    (1..=n)
        .map(|seq| {
            let record = AuditEntry::new(actions::ROLLBACK_REQUESTED, at)
                .details(serde_json::json!({"plan": "0123456789abcdef0123456789abcdef", "from": "v42", "to": "v41", "channel": "slack:C0123"}))
                .into_record(seq, prev.clone(), &sealer);
            prev.clone_from(&record.hash);
            record
        })
        .collect()
}

/// Enough durable records for `audit verify` to read several pages.
const VERIFY_RECORDS: u64 = 30_000;

fn bench_verify(c: &mut Criterion) {
    let records = chain(100_000);
    let sealer = AuditSealer::new(Some(b"0123456789abcdef0123456789abcdef".to_vec()));
    let mut group = c.benchmark_group("audit verify");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("chain check, 100k records in memory", |b| {
        b.iter(|| {
            let mut verifier = ChainVerifier::new(&sealer);
            for record in &records {
                verifier.check(record).expect("intact");
            }
            verifier.count()
        });
    });

    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(rt.block_on(async {
        SqliteStore::connect(&format!(
            "sqlite://{}",
            dir.path().join("audit.db").display()
        ))
        .await
        .expect("open")
    }));
    let log = AuditLog::new(store.clone(), sealer.clone(), Arc::new(SystemClock));
    rt.block_on(async {
        for i in 0..VERIFY_RECORDS {
            let entry = log
                .entry(actions::ALERT_RECEIVED)
                .details(serde_json::json!({"n": i, "title": "HighErrorRate"}));
            log.append(entry).await.expect("append");
        }
    });
    group.throughput(Throughput::Elements(VERIFY_RECORDS));
    group.bench_function("audit verify from SQLite, 30k records (3 pages)", |b| {
        b.to_async(&rt)
            .iter(|| async { log.verify().await.expect("verify").count });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench_summary, bench_verify
}
criterion_main!(benches);
