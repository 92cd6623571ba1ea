//! Store hot paths: durable audit appends (every button press and backend call waits for
//! one) and the "recent deploys of this target" query behind every alert summary, over a
//! registry of a million deploys.
//!
//! PostgreSQL cases run when `BREAKWATER_TEST_POSTGRES_URL` is set, each in a fresh schema
//! that is dropped afterwards.

use std::sync::Arc;

use breakwater::audit::{AuditEntry, AuditSealer, actions};
use breakwater::core::deploy::{
    Change, Deploy, DeploySource, DeployStatus, Environment, ServiceName, Target,
};
use breakwater::core::policy::{Actor, Principal};
use breakwater::store::{DeployQuery, PostgresStore, SqliteStore, Store};
use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::future::join_all;
use tokio::runtime::Runtime;

const SERVICES: usize = 40;
const ENVIRONMENTS: [&str; 5] = ["production", "staging", "canary", "qa", "dev"];
const DEPLOYS: usize = 1_000_000;
/// Deploys generated and inserted per transaction while seeding.
const SEED_CHUNK: usize = 50_000;
/// Concurrent appenders in the contended case, as in an alert storm.
const APPENDERS: usize = 8;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
}

fn target(index: usize) -> Target {
    Target::new(
        ServiceName::parse(&format!("service-{:03}", index / ENVIRONMENTS.len()))
            .expect("valid service"),
        Environment::parse(ENVIRONMENTS[index % ENVIRONMENTS.len()]).expect("valid environment"),
    )
}

/// Deploy `n` of the registry: targets take turns, so each has a long, interleaved history.
fn deploy(n: usize) -> Deploy {
    let targets = SERVICES * ENVIRONMENTS.len();
    let started_at = start() + Duration::seconds(i64::try_from(n).expect("fits") * 30);
    Deploy {
        target: target(n % targets),
        version: format!("v{}", n / targets),
        previous_version: (n >= targets).then(|| format!("v{}", n / targets - 1)),
        revision: None,
        commit: Some(format!("{n:040x}")),
        author: Some("ci-bot".to_owned()),
        description: Some("Routine release".to_owned()),
        url: Some(format!("https://ci.example/builds/{n}")),
        started_at,
        finished_at: Some(started_at + Duration::seconds(90)),
        status: DeployStatus::Succeeded,
        changes: vec![Change {
            commit: format!("{n:040x}"),
            author: Some("ada".to_owned()),
            message: "Tune connection pool".to_owned(),
        }],
        config_changes: Vec::new(),
        source: DeploySource::Api,
    }
}

fn entry(n: u64) -> AuditEntry {
    let actor = Actor::new(Principal::parse("slack:U0123").expect("valid"), "Ada");
    AuditEntry::new(actions::ROLLBACK_BACKEND_CALL, Utc::now())
        .actor(&actor)
        .target(&target(7))
        .details(serde_json::json!({ "n": n, "backend": "argocd", "status": 200 }))
}

fn bench_append(c: &mut Criterion, rt: &Runtime, name: &str, store: &Arc<dyn Store>) {
    let sealer = AuditSealer::new(Some(b"bench-audit-key".to_vec()));
    let mut group = c.benchmark_group("audit_append");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{name}/one_appender"), |b| {
        let mut n = 0;
        b.to_async(rt).iter(|| {
            n += 1;
            let (store, sealer, entry) = (store.clone(), &sealer, entry(n));
            async move { store.append_audit(&entry, sealer).await.expect("append") }
        });
    });
    group.throughput(Throughput::Elements(APPENDERS as u64));
    group.bench_function(format!("{name}/{APPENDERS}_appenders"), |b| {
        let mut n = 0;
        b.to_async(rt).iter(|| {
            n += 1;
            let appends: Vec<_> = (0..APPENDERS)
                .map(|_| {
                    let (store, sealer, entry) = (store.clone(), sealer.clone(), entry(n));
                    tokio::spawn(async move { store.append_audit(&entry, &sealer).await })
                })
                .collect();
            async move {
                for appended in join_all(appends).await {
                    appended.expect("task").expect("append");
                }
            }
        });
    });
    group.finish();
}

fn audit_append(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let sqlite = rt
        .block_on(SqliteStore::connect(&url))
        .expect("open sqlite");
    bench_append(
        c,
        &rt,
        "sqlite",
        &(Arc::new(sqlite.clone()) as Arc<dyn Store>),
    );
    rt.block_on(sqlite.close());

    let Ok(url) = std::env::var("BREAKWATER_TEST_POSTGRES_URL") else {
        eprintln!("skipping PostgreSQL: BREAKWATER_TEST_POSTGRES_URL not set");
        return;
    };
    let schema = format!("bw_bench_{}", std::process::id());
    let postgres = rt
        .block_on(PostgresStore::connect_in_schema(&url, &schema))
        .expect("open postgres");
    bench_append(
        c,
        &rt,
        "postgres",
        &(Arc::new(postgres.clone()) as Arc<dyn Store>),
    );
    rt.block_on(async {
        postgres.close().await;
        drop_schema(&url, &schema).await;
    });
}

async fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to drop schema");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut conn)
    .await
    .expect("drop bench schema");
}

fn deploy_query(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("deploys.db").display());
    let store = rt
        .block_on(SqliteStore::connect(&url))
        .expect("open sqlite");
    let seeding = std::time::Instant::now();
    for first in (0..DEPLOYS).step_by(SEED_CHUNK) {
        let chunk: Vec<Deploy> = (first..first + SEED_CHUNK).map(deploy).collect();
        rt.block_on(store.bulk_insert_deploys(&chunk))
            .expect("seed deploys");
    }
    eprintln!(
        "seeded {DEPLOYS} deploys across {} targets in {:.1?}",
        SERVICES * ENVIRONMENTS.len(),
        seeding.elapsed()
    );
    let store: Arc<dyn Store> = Arc::new(store);
    let busy = target(123);
    let recent = DeployQuery {
        service: Some(busy.service.clone()),
        environment: Some(busy.environment.clone()),
        limit: 20,
        ..DeployQuery::default()
    };
    let older = DeployQuery {
        before: Some(start() + Duration::days(3)),
        ..recent.clone()
    };
    let everything = DeployQuery {
        limit: 20,
        ..DeployQuery::default()
    };
    let found = rt.block_on(store.deploys(&recent)).expect("query");
    assert_eq!(found.len(), 20, "the target has a long history");

    let mut group = c.benchmark_group("deploys_1m");
    for (name, query) in [
        ("target_newest_20", &recent),
        ("target_before_20", &older),
        ("all_newest_20", &everything),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { store.deploys(query).await.expect("query") });
        });
    }
    group.finish();
}

criterion_group!(benches, audit_append, deploy_query);
criterion_main!(benches);
