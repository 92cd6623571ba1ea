//! The `Store` contract, run against SQLite always and against PostgreSQL when
//! `BREAKWATER_TEST_POSTGRES_URL` is set. Each test gets a fresh database: a file in a temp
//! dir, or a random schema.

use std::collections::BTreeMap;
use std::sync::Arc;

use breakwater::audit::{AuditEntry, AuditQuery, AuditSealer, ChainVerifier, GENESIS_HASH};
use breakwater::core::alert::{Alert, AlertSource, AlertStatus, Severity};
use breakwater::core::backend::Action;
use breakwater::core::deploy::{
    Change, ConfigChange, Deploy, DeploySource, DeployStatus, Environment, MASKED, Revision,
    ServiceName, Target,
};
use breakwater::core::message::{Message, MessageRef, Platform};
use breakwater::core::policy::{Actor, Principal};
use breakwater::core::rollback::{Confirmation, PlanId, PlanPatch, PlanState, RollbackPlan};
use breakwater::store::{
    self, CanaryRollback, ConfigObject, ConfigSnapshot, ConsolePlace, ConsoleSession, DeployQuery,
    GroupThread, PostgresStore, SqliteStore, Store, StoreError,
};
use chrono::{DateTime, Duration, Utc};
use futures::future::join_all;
use tempfile::TempDir;

// --- harness ---------------------------------------------------------------------------------

/// A store on a fresh database, and what it takes to open that database again.
struct TestStore {
    store: Arc<dyn Store>,
    backend: Backend,
}

enum Backend {
    Sqlite {
        store: SqliteStore,
        url: String,
        _dir: TempDir,
    },
    Postgres {
        store: PostgresStore,
        url: String,
        schema: String,
    },
}

impl TestStore {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("breakwater.db").display());
        let store = SqliteStore::connect(&url).await.expect("open sqlite");
        Self {
            store: Arc::new(store.clone()),
            backend: Backend::Sqlite {
                store,
                url,
                _dir: dir,
            },
        }
    }

    async fn postgres() -> Option<Self> {
        let Ok(url) = std::env::var("BREAKWATER_TEST_POSTGRES_URL") else {
            eprintln!("skipping: BREAKWATER_TEST_POSTGRES_URL not set");
            return None;
        };
        let schema = format!("bw_test_{}", PlanId::generate());
        let store = PostgresStore::connect_in_schema(&url, &schema)
            .await
            .expect("open postgres schema");
        Some(Self {
            store: Arc::new(store.clone()),
            backend: Backend::Postgres { store, url, schema },
        })
    }

    /// An independent store on the same database, as another process or replica has.
    async fn another(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::Sqlite { url, .. } => {
                Arc::new(SqliteStore::connect(url).await.expect("open sqlite again"))
            }
            Backend::Postgres { url, schema, .. } => Arc::new(
                PostgresStore::connect_in_schema(url, schema)
                    .await
                    .expect("open postgres schema again"),
            ),
        }
    }

    /// Closes every connection and opens the database again, as a restart does.
    async fn reopen(&mut self) {
        match &mut self.backend {
            Backend::Sqlite { store, url, .. } => {
                store.close().await;
                *store = SqliteStore::connect(url).await.expect("reopen sqlite");
                self.store = Arc::new(store.clone());
            }
            Backend::Postgres { store, url, schema } => {
                store.close().await;
                *store = PostgresStore::connect_in_schema(url, schema)
                    .await
                    .expect("reopen postgres schema");
                self.store = Arc::new(store.clone());
            }
        }
    }

    /// Records `alert` received `minute` minutes in, with a five-minute grouping window.
    async fn record(&self, alert: &Alert, minute: i64) -> store::RecordedAlert {
        record(&*self.store, alert, at(minute)).await
    }

    async fn finish(self) {
        match self.backend {
            Backend::Sqlite { store, .. } => store.close().await,
            Backend::Postgres { store, url, schema } => {
                store.close().await;
                drop_schema(&url, &schema).await;
            }
        }
    }
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
    .expect("drop test schema");
}

/// Instantiates each contract test once per database.
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let mut db = super::TestStore::sqlite().await;
                    super::$name(&mut db).await;
                    db.finish().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(mut db) = super::TestStore::postgres().await else {
                        return;
                    };
                    super::$name(&mut db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

store_tests!(
    a_new_deploy_is_created_and_reads_back,
    reposting_a_deploy_updates_it_instead_of_adding_one,
    a_repost_fills_empty_fields_and_keeps_known_ones,
    deploys_are_listed_newest_first,
    deploy_filters_match_names_case_insensitively,
    deploy_queries_honour_the_time_window_and_limit,
    the_latest_deploy_of_a_version_is_its_newest_start,
    secret_config_values_never_reach_the_store,
    a_firing_alert_opens_a_group_named_after_it,
    alerts_for_a_target_within_the_window_share_its_group,
    an_alert_after_the_window_opens_a_new_group,
    alerts_for_different_targets_are_grouped_apart,
    alerts_without_a_target_are_grouped_as_unknown,
    a_repeated_notification_is_not_a_new_alert,
    a_resolved_notification_resolves_its_firing_alert,
    a_group_resolves_when_its_last_alert_resolves,
    a_resolved_notification_for_an_unknown_alert_is_recorded_unresolved,
    a_repeated_resolved_notification_changes_nothing,
    a_resolved_group_is_not_joined_by_later_alerts,
    concurrent_alerts_for_one_target_share_one_group_with_exact_counts,
    recent_groups_are_listed_most_recent_first,
    recent_groups_are_drawn_from_when_their_first_alert_fired,
    a_group_remembers_its_threads_and_their_summaries,
    a_plan_reads_back_as_inserted,
    a_transition_happens_only_from_the_given_states,
    a_transition_writes_only_the_patch_fields_given,
    twenty_concurrent_starts_run_a_plan_exactly_once,
    a_running_plan_with_a_live_heartbeat_is_not_adopted,
    a_running_plan_whose_runner_went_quiet_is_adopted_by_exactly_one_process,
    a_restarted_runner_takes_back_its_running_plans_without_waiting_for_the_timeout,
    audit_verify_is_intact_while_other_processes_append,
    a_second_plan_of_a_running_target_is_refused_as_busy,
    a_running_plan_cannot_be_inserted_beside_another,
    a_target_is_free_again_once_its_rollback_finishes,
    an_expired_plan_cannot_start,
    plans_are_listed_by_state_and_by_group,
    the_last_finished_rollback_counts_only_succeeded_and_failed_plans,
    a_refused_rollback_or_an_abort_starts_no_cooldown,
    succeeded_plans_await_verification_until_verified,
    a_plan_is_verified_once,
    a_plan_keeps_its_message_and_operation,
    a_confirmation_is_taken_once_under_concurrency,
    a_confirmation_can_be_read_before_it_is_taken,
    a_confirmation_keeps_the_consent_to_disable_auto_sync,
    an_event_is_claimed_once_under_concurrency,
    pruning_forgets_only_claims_older_than_the_cutoff,
    an_empty_audit_log_has_no_head,
    the_first_audit_record_follows_the_genesis_hash,
    concurrent_appends_form_one_contiguous_verifiable_chain,
    appends_from_two_stores_on_one_database_form_one_chain,
    the_audit_head_tracks_the_last_record,
    audit_records_are_paged_in_sequence_order,
    audit_search_filters_by_service_actor_and_action,
    audit_search_pages_backwards_from_before_seq,
    an_audit_search_by_part_of_an_action_ignores_case_and_wildcards,
    audit_details_are_stored_as_the_exact_text_hashed,
    reopening_keeps_data_and_applies_no_migration_twice,
    console_messages_read_back_with_their_thread_and_audience,
    updating_a_console_message_raises_its_revision,
    the_console_channel_holds_the_newest_threads_with_their_replies,
    console_changes_are_listed_oldest_first_from_a_time,
    a_console_message_written_by_one_replica_is_read_by_another,
    a_console_session_is_found_until_it_expires,
    a_deleted_console_session_is_gone,
    expired_console_sessions_are_pruned,
    a_free_lease_is_taken_and_renewed_by_its_holder_only,
    an_expired_lease_is_taken_over_by_exactly_one_contender,
    a_released_lease_is_free_at_once,
    the_incident_history_holds_the_groups_opened_since_their_plans_and_the_asked_for_records,
    an_incident_history_over_its_limit_keeps_the_newest_records,
    a_config_snapshot_is_kept_once_per_resource_version,
    only_the_newest_config_snapshots_of_an_object_are_kept,
    an_armed_canary_rollback_is_taken_once,
    an_armed_canary_rollback_is_taken_by_exactly_one_of_concurrent_hooks,
    an_expired_canary_rollback_is_not_taken,
    a_new_press_re_arms_a_taken_canary_rollback,
);

// --- fixtures --------------------------------------------------------------------------------

/// Minutes after a fixed instant; whole minutes survive microsecond storage unchanged.
fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-29T03:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
        + Duration::minutes(minutes)
}

fn target(service: &str, environment: &str) -> Target {
    Target::new(
        ServiceName::parse(service).expect("valid service"),
        Environment::parse(environment).expect("valid environment"),
    )
}

fn checkout() -> Target {
    target("checkout", "production")
}

fn deploy(target: &Target, version: &str, started: DateTime<Utc>) -> Deploy {
    Deploy {
        target: target.clone(),
        version: version.to_owned(),
        previous_version: None,
        revision: None,
        commit: None,
        author: None,
        description: None,
        url: None,
        started_at: started,
        finished_at: None,
        status: DeployStatus::Started,
        changes: Vec::new(),
        config_changes: Vec::new(),
        source: DeploySource::Api,
    }
}

fn query(target: &Target) -> DeployQuery {
    DeployQuery {
        service: Some(target.service.clone()),
        environment: Some(target.environment.clone()),
        ..DeployQuery::default()
    }
}

fn alert(target: Option<&Target>, title: &str, started: DateTime<Utc>) -> Alert {
    Alert {
        source: AlertSource::Alertmanager,
        service: target.map(|t| t.service.clone()),
        environment: target.map(|t| t.environment.clone()),
        severity: Severity::Critical,
        status: AlertStatus::Firing,
        title: title.to_owned(),
        description: format!("{title} is firing"),
        started_at: started,
        ended_at: None,
        labels: BTreeMap::from([("alertname".to_owned(), title.to_owned())]),
        fingerprint: format!("fp-{title}"),
        link: Some("https://grafana.example/alert".to_owned()),
    }
}

/// A firing alert about checkout in production, started `minute` minutes in.
fn firing(title: &str, minute: i64) -> Alert {
    alert(Some(&checkout()), title, at(minute))
}

fn resolved(alert: &Alert, ended: DateTime<Utc>) -> Alert {
    Alert {
        status: AlertStatus::Resolved,
        ended_at: Some(ended),
        ..alert.clone()
    }
}

/// Records at `now` with a five-minute grouping window.
async fn record(store: &dyn Store, alert: &Alert, now: DateTime<Utc>) -> store::RecordedAlert {
    store
        .record_alert(alert, now - Duration::minutes(5), now)
        .await
        .expect("record alert")
}

fn actor(principal: &str, name: &str) -> Actor {
    Actor::new(Principal::parse(principal).expect("valid principal"), name)
}

/// What a backend answers when it accepts a rollback of checkout, with its `handle`.
fn accepted(handle: serde_json::Value) -> breakwater::core::backend::Operation {
    breakwater::core::backend::Operation {
        target: checkout(),
        to: Revision::version("v41"),
        started_at: at(1),
        handle,
        finished: None,
    }
}

fn plan(target: &Target) -> RollbackPlan {
    RollbackPlan {
        id: PlanId::generate(),
        target: target.clone(),
        from: Revision::version("v42"),
        to: Revision {
            id: "17".to_owned(),
            version: "v41".to_owned(),
        },
        reason: "HighErrorRate firing 18 min after v42".to_owned(),
        alert_group: None,
        offered_at: at(0),
        expires_at: at(30),
        message: None,
        requested_by: None,
        state: PlanState::Offered,
        approved_by: None,
        started_by: None,
        started_at: None,
        finished_at: None,
        outcome: None,
        operation: None,
        verified_at: None,
        action: Action::Rollback,
    }
}

fn start_patch(who: &Actor) -> PlanPatch {
    PlanPatch {
        started_by: Some(who.clone()),
        started_at: Some(at(5)),
        ..PlanPatch::default()
    }
}

fn finish_patch(when: DateTime<Utc>) -> PlanPatch {
    PlanPatch {
        finished_at: Some(when),
        outcome: Some("done".to_owned()),
        ..PlanPatch::default()
    }
}

async fn insert(store: &dyn Store, plan: &RollbackPlan) {
    store.insert_plan(plan).await.expect("insert plan");
}

async fn move_plan(
    store: &dyn Store,
    plan: &RollbackPlan,
    from: &[PlanState],
    to: PlanState,
    patch: &PlanPatch,
) -> Option<RollbackPlan> {
    store
        .transition_plan(&plan.id, from, to, patch, at(5))
        .await
        .expect("transition plan")
}

fn message(platform: Platform, channel: &str, id: &str) -> MessageRef {
    MessageRef {
        platform,
        channel: channel.to_owned(),
        id: id.to_owned(),
        thread: None,
    }
}

fn entry(action: &str, minute: i64) -> AuditEntry {
    AuditEntry::new(action, at(minute)).details(serde_json::json!({ "minute": minute }))
}

async fn verify_chain(store: &dyn Store, sealer: &AuditSealer) -> i64 {
    let mut verifier = ChainVerifier::new(sealer);
    for record in store.audit_records(0, 0).await.expect("read audit log") {
        verifier.check(&record).expect("chain link holds");
    }
    verifier
        .finish(store.audit_head().await.expect("read head"))
        .expect("head matches the chain");
    verifier.count()
}

// --- deploys ---------------------------------------------------------------------------------

async fn a_new_deploy_is_created_and_reads_back(db: &mut TestStore) {
    let mut deploy = deploy(&checkout(), "v42", at(0));
    deploy.commit = Some("abc123".to_owned());
    deploy.changes = vec![Change {
        commit: "abc123".to_owned(),
        author: Some("ada".to_owned()),
        message: "Raise pool size".to_owned(),
    }];
    deploy.config_changes = vec![ConfigChange {
        key: "DB_POOL_SIZE".to_owned(),
        old: Some("20".to_owned()),
        new: Some("2".to_owned()),
    }];

    let recorded = db.store.record_deploy(&deploy).await.expect("record");

    assert!(recorded.created);
    assert_eq!(recorded.deploy, deploy);
    let listed = db.store.deploys(&query(&checkout())).await.expect("list");
    assert_eq!(listed, vec![deploy]);
}

async fn reposting_a_deploy_updates_it_instead_of_adding_one(db: &mut TestStore) {
    let started = deploy(&checkout(), "v42", at(0));
    let first = db.store.record_deploy(&started).await.expect("record");
    let finished = Deploy {
        status: DeployStatus::Succeeded,
        finished_at: Some(at(3)),
        ..started.clone()
    };

    let second = db.store.record_deploy(&finished).await.expect("re-post");

    assert!(!second.created);
    assert_eq!(second.id, first.id);
    assert_eq!(second.deploy.status, DeployStatus::Succeeded);
    assert_eq!(second.deploy.finished_at, Some(at(3)));
    let listed = db.store.deploys(&query(&checkout())).await.expect("list");
    assert_eq!(listed, vec![second.deploy]);
}

async fn a_repost_fills_empty_fields_and_keeps_known_ones(db: &mut TestStore) {
    let mut first = deploy(&checkout(), "v42", at(0));
    first.author = Some("ada".to_owned());
    db.store.record_deploy(&first).await.expect("record");
    let mut second = deploy(&checkout(), "v42", at(0));
    second.author = Some("mallory".to_owned());
    second.commit = Some("abc123".to_owned());
    second.changes = vec![Change {
        commit: "abc123".to_owned(),
        author: None,
        message: "Fix".to_owned(),
    }];

    let merged = db
        .store
        .record_deploy(&second)
        .await
        .expect("re-post")
        .deploy;

    assert_eq!(merged.author.as_deref(), Some("ada"));
    assert_eq!(merged.commit.as_deref(), Some("abc123"));
    assert_eq!(merged.changes, second.changes);
}

async fn deploys_are_listed_newest_first(db: &mut TestStore) {
    for (version, minute) in [("v2", 20), ("v1", 10), ("v3", 30)] {
        db.store
            .record_deploy(&deploy(&checkout(), version, at(minute)))
            .await
            .expect("record");
    }

    let listed = db.store.deploys(&query(&checkout())).await.expect("list");

    let versions: Vec<_> = listed.iter().map(|d| d.version.as_str()).collect();
    assert_eq!(versions, ["v3", "v2", "v1"]);
}

async fn deploy_filters_match_names_case_insensitively(db: &mut TestStore) {
    let shown = target("Checkout", "Production");
    db.store
        .record_deploy(&deploy(&shown, "v42", at(0)))
        .await
        .expect("record");
    db.store
        .record_deploy(&deploy(&target("checkout", "staging"), "v43", at(1)))
        .await
        .expect("record");
    db.store
        .record_deploy(&deploy(&target("payments", "production"), "v7", at(2)))
        .await
        .expect("record");

    let listed = db.store.deploys(&query(&checkout())).await.expect("list");

    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, "v42");
    assert_eq!(
        listed[0].target.service.as_str(),
        "Checkout",
        "display case kept"
    );
    let all = db
        .store
        .deploys(&DeployQuery::default())
        .await
        .expect("list all");
    assert_eq!(all.len(), 3);
}

async fn deploy_queries_honour_the_time_window_and_limit(db: &mut TestStore) {
    for minute in 0..10 {
        db.store
            .record_deploy(&deploy(&checkout(), &format!("v{minute}"), at(minute)))
            .await
            .expect("record");
    }

    let window = DeployQuery {
        since: Some(at(3)),
        before: Some(at(7)),
        ..query(&checkout())
    };
    let limited = DeployQuery {
        limit: 2,
        ..query(&checkout())
    };

    let in_window = db.store.deploys(&window).await.expect("list");
    let versions: Vec<_> = in_window.iter().map(|d| d.version.as_str()).collect();
    assert_eq!(
        versions,
        ["v6", "v5", "v4", "v3"],
        "since inclusive, before exclusive"
    );
    let newest = db.store.deploys(&limited).await.expect("list");
    let versions: Vec<_> = newest.iter().map(|d| d.version.as_str()).collect();
    assert_eq!(versions, ["v9", "v8"]);
}

async fn the_latest_deploy_of_a_version_is_its_newest_start(db: &mut TestStore) {
    for minute in [0, 20, 10] {
        db.store
            .record_deploy(&deploy(&checkout(), "v42", at(minute)))
            .await
            .expect("record");
    }

    let latest = db
        .store
        .latest_deploy_of_version(&checkout(), "v42")
        .await
        .expect("query");
    let missing = db
        .store
        .latest_deploy_of_version(&checkout(), "v99")
        .await
        .expect("query");

    assert_eq!(latest.map(|d| d.started_at), Some(at(20)));
    assert_eq!(missing, None);
}

async fn secret_config_values_never_reach_the_store(db: &mut TestStore) {
    let mut deploy = deploy(&checkout(), "v42", at(0));
    deploy.config_changes = vec![ConfigChange {
        key: "STRIPE_API_KEY".to_owned(),
        old: Some("sk_live_1".to_owned()),
        new: Some("sk_live_2".to_owned()),
    }];

    db.store.record_deploy(&deploy).await.expect("record");

    let stored = db.store.deploys(&query(&checkout())).await.expect("list");
    assert_eq!(stored[0].config_changes[0].old.as_deref(), Some(MASKED));
    assert_eq!(stored[0].config_changes[0].new.as_deref(), Some(MASKED));
}

// --- alerts ----------------------------------------------------------------------------------

async fn a_firing_alert_opens_a_group_named_after_it(db: &mut TestStore) {
    let shown = target("Checkout", "Production");

    let recorded = db
        .record(&alert(Some(&shown), "HighErrorRate", at(0)), 1)
        .await;

    assert!(recorded.new_alert && recorded.new_group && !recorded.resolved);
    let group = recorded.group;
    assert_eq!(group.key, "checkout/production");
    assert_eq!(group.target, Some(shown));
    assert_eq!(group.title, "HighErrorRate");
    assert_eq!((group.opened_at, group.last_alert_at), (at(1), at(1)));
    assert_eq!((group.alert_count, group.firing_count), (1, 1));
    assert_eq!(group.resolved_at, None);
    assert_eq!(
        db.store.alert_group(group.id).await.expect("read"),
        Some(group)
    );
}

async fn alerts_for_a_target_within_the_window_share_its_group(db: &mut TestStore) {
    let first = db.record(&firing("HighErrorRate", 0), 0).await;

    let second = db.record(&firing("HighLatency", 3), 4).await;

    assert!(second.new_alert && !second.new_group);
    assert_eq!(second.group.id, first.group.id);
    assert_eq!(
        (second.group.alert_count, second.group.firing_count),
        (2, 2)
    );
    assert_eq!(second.group.last_alert_at, at(4));
    assert_eq!(
        second.group.title, "HighErrorRate",
        "the first alert names the group"
    );
}

async fn an_alert_after_the_window_opens_a_new_group(db: &mut TestStore) {
    let first = db.record(&firing("HighErrorRate", 0), 0).await;

    let later = db.record(&firing("HighLatency", 9), 10).await;

    assert!(later.new_group);
    assert_ne!(later.group.id, first.group.id);
}

async fn alerts_for_different_targets_are_grouped_apart(db: &mut TestStore) {
    let checkout = db.record(&firing("HighErrorRate", 0), 0).await;

    let payments = db
        .record(
            &alert(
                Some(&target("payments", "production")),
                "HighErrorRate2",
                at(0),
            ),
            1,
        )
        .await;

    assert!(payments.new_group);
    assert_ne!(payments.group.id, checkout.group.id);
    assert_eq!(payments.group.key, "payments/production");
}

async fn alerts_without_a_target_are_grouped_as_unknown(db: &mut TestStore) {
    let mut no_environment = firing("DiskFull", 0);
    no_environment.environment = None;

    let first = db.record(&alert(None, "Mystery", at(0)), 0).await;
    let second = db.record(&no_environment, 1).await;

    assert_eq!(first.group.key, "unknown");
    assert_eq!(first.group.target, None);
    assert_eq!(second.group.id, first.group.id);
}

async fn a_repeated_notification_is_not_a_new_alert(db: &mut TestStore) {
    let firing = firing("HighErrorRate", 0);
    let first = db.record(&firing, 0).await;

    let repeat = db.record(&firing, 2).await;

    assert!(!repeat.new_alert && !repeat.new_group && !repeat.resolved);
    assert_eq!(repeat.id, first.id);
    assert_eq!(repeat.group, first.group, "counts and times unchanged");
    let alerts = db.store.group_alerts(first.group.id).await.expect("alerts");
    assert_eq!(alerts.len(), 1);
}

async fn a_resolved_notification_resolves_its_firing_alert(db: &mut TestStore) {
    let errors = firing("HighErrorRate", 0);
    let latency = firing("HighLatency", 0);
    let first = db.record(&errors, 0).await;
    let second = db.record(&latency, 1).await;

    let resolution = db.record(&resolved(&errors, at(6)), 7).await;

    assert!(resolution.resolved && !resolution.new_alert && !resolution.new_group);
    assert_eq!(resolution.id, first.id);
    assert_eq!(
        (resolution.group.alert_count, resolution.group.firing_count),
        (2, 1)
    );
    assert_eq!(
        resolution.group.resolved_at, None,
        "HighLatency still fires"
    );
    let alerts = db.store.group_alerts(first.group.id).await.expect("alerts");
    let states: Vec<_> = alerts
        .iter()
        .map(|(id, a, s)| (*id, a.status, *s))
        .collect();
    assert_eq!(
        states,
        [
            (first.id, AlertStatus::Resolved, AlertStatus::Resolved),
            (second.id, AlertStatus::Firing, AlertStatus::Firing),
        ],
        "oldest first, with their current status"
    );
    assert_eq!(alerts[0].1.ended_at, Some(at(6)));
}

async fn a_group_resolves_when_its_last_alert_resolves(db: &mut TestStore) {
    let errors = firing("HighErrorRate", 0);
    let latency = firing("HighLatency", 0);
    db.record(&errors, 0).await;
    db.record(&latency, 1).await;
    db.record(&resolved(&errors, at(5)), 5).await;

    let last = db.record(&resolved(&latency, at(8)), 9).await;

    assert!(last.resolved);
    assert_eq!(last.group.firing_count, 0);
    assert_eq!(last.group.resolved_at, Some(at(9)));
}

async fn a_resolved_notification_for_an_unknown_alert_is_recorded_unresolved(db: &mut TestStore) {
    let stray = resolved(&firing("NeverSeen", 0), at(1));

    let recorded = db.record(&stray, 2).await;

    assert!(!recorded.resolved);
    assert!(recorded.new_alert);
    assert_eq!(recorded.group.firing_count, 0);
    let alerts = db
        .store
        .group_alerts(recorded.group.id)
        .await
        .expect("alerts");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].2, AlertStatus::Resolved);
}

async fn a_repeated_resolved_notification_changes_nothing(db: &mut TestStore) {
    let errors = firing("HighErrorRate", 0);
    db.record(&errors, 0).await;
    let first = db.record(&resolved(&errors, at(5)), 5).await;

    let again = db.record(&resolved(&errors, at(5)), 6).await;

    assert!(!again.resolved && !again.new_alert && !again.new_group);
    assert_eq!(again.id, first.id);
    assert_eq!(again.group, first.group);
}

async fn a_resolved_group_is_not_joined_by_later_alerts(db: &mut TestStore) {
    let errors = firing("HighErrorRate", 0);
    let first = db.record(&errors, 0).await;
    db.record(&resolved(&errors, at(1)), 1).await;

    let next = db.record(&firing("HighLatency", 2), 2).await;

    assert!(next.new_group);
    assert_ne!(next.group.id, first.group.id);
}

async fn concurrent_alerts_for_one_target_share_one_group_with_exact_counts(db: &mut TestStore) {
    let tasks = (0..20).map(|i| {
        let store = db.store.clone();
        tokio::spawn(async move {
            let alert = alert(Some(&checkout()), &format!("Alert{i}"), at(0));
            record(&*store, &alert, at(1)).await
        })
    });

    let recorded: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();

    assert_eq!(recorded.iter().filter(|r| r.new_group).count(), 1);
    let group_id = recorded[0].group.id;
    assert!(recorded.iter().all(|r| r.group.id == group_id));
    let group = db
        .store
        .alert_group(group_id)
        .await
        .expect("read")
        .expect("group");
    assert_eq!((group.alert_count, group.firing_count), (20, 20));
}

async fn recent_groups_are_listed_most_recent_first(db: &mut TestStore) {
    let mut ids = Vec::new();
    for (name, minute) in [("a", 0), ("b", 10), ("c", 20)] {
        let alert = alert(Some(&target(name, "production")), name, at(minute));
        ids.push(db.record(&alert, minute).await.group.id);
    }

    let recent = db.store.recent_alert_groups(2).await.expect("list");

    let listed: Vec<_> = recent.iter().map(|g| g.id).collect();
    assert_eq!(listed, [ids[2], ids[1]]);
}

async fn a_group_remembers_its_threads_and_their_summaries(db: &mut TestStore) {
    let group = db.record(&firing("HighErrorRate", 0), 0).await.group;
    let slack_alert = message(Platform::Slack, "C1", "1700000000.000100");
    let console_alert = message(Platform::Console, "alerts", "7");
    for alert_message in [&slack_alert, &console_alert] {
        db.store
            .add_group_thread(&GroupThread {
                group_id: group.id,
                alert_message: alert_message.clone(),
                summary: None,
                posted_by_bot: alert_message.platform == Platform::Console,
            })
            .await
            .expect("add thread");
    }
    let summary = MessageRef {
        thread: Some("1700000000.000100".to_owned()),
        ..message(Platform::Slack, "C1", "1700000000.000200")
    };

    db.store
        .set_group_summary(group.id, &slack_alert, &summary)
        .await
        .expect("set summary");

    let threads = db.store.group_threads(group.id).await.expect("threads");
    assert_eq!(
        threads,
        [
            GroupThread {
                group_id: group.id,
                alert_message: slack_alert,
                summary: Some(summary),
                posted_by_bot: false,
            },
            GroupThread {
                group_id: group.id,
                alert_message: console_alert,
                summary: None,
                posted_by_bot: true,
            },
        ]
    );
}

// --- plans -----------------------------------------------------------------------------------

async fn a_plan_reads_back_as_inserted(db: &mut TestStore) {
    let group = db.record(&firing("HighErrorRate", 0), 0).await.group;
    let plan = RollbackPlan {
        alert_group: Some(group.id),
        message: Some(message(Platform::Slack, "C1", "1.2")),
        requested_by: Some(actor("slack:U1", "Ada")),
        operation: Some(accepted(
            serde_json::json!({ "argocd": { "app": "checkout" } }),
        )),
        ..plan(&checkout())
    };

    db.store.insert_plan(&plan).await.expect("insert");

    assert_eq!(db.store.plan(&plan.id).await.expect("read"), Some(plan));
    assert_eq!(
        db.store.plan(&PlanId::generate()).await.expect("read"),
        None
    );
}

async fn a_transition_happens_only_from_the_given_states(db: &mut TestStore) {
    let plan = plan(&checkout());
    insert(&*db.store, &plan).await;
    let none = PlanPatch::default();

    let refused = move_plan(
        &*db.store,
        &plan,
        &[PlanState::Confirmed],
        PlanState::Dismissed,
        &none,
    )
    .await;
    let moved = move_plan(
        &*db.store,
        &plan,
        &[PlanState::Offered, PlanState::Confirmed],
        PlanState::Dismissed,
        &none,
    )
    .await;

    assert_eq!(refused, None);
    assert_eq!(moved.map(|p| p.state), Some(PlanState::Dismissed));
    let stored = db.store.plan(&plan.id).await.expect("read").expect("plan");
    assert_eq!(stored.state, PlanState::Dismissed);
}

async fn a_transition_writes_only_the_patch_fields_given(db: &mut TestStore) {
    let plan = plan(&checkout());
    insert(&*db.store, &plan).await;
    let approver = actor("slack:U1", "Ada");
    let starter = actor("slack:U2", "Grace");
    let approve = PlanPatch {
        approved_by: Some(approver.clone()),
        ..PlanPatch::default()
    };
    move_plan(
        &*db.store,
        &plan,
        &[PlanState::Offered],
        PlanState::Confirmed,
        &approve,
    )
    .await;

    let running = move_plan(
        &*db.store,
        &plan,
        &[PlanState::Confirmed],
        PlanState::Running,
        &start_patch(&starter),
    )
    .await
    .expect("started");

    assert_eq!(
        running.approved_by,
        Some(approver),
        "kept from the earlier patch"
    );
    assert_eq!(running.started_by, Some(starter));
    assert_eq!(running.started_at, Some(at(5)));
    assert_eq!((running.finished_at, running.outcome), (None, None));
}

async fn twenty_concurrent_starts_run_a_plan_exactly_once(db: &mut TestStore) {
    let plan = plan(&checkout());
    insert(&*db.store, &plan).await;
    let tasks = (0..20).map(|i| {
        let store = db.store.clone();
        let id = plan.id;
        tokio::spawn(async move {
            let presser = actor(&format!("slack:U{i}"), &format!("User {i}"));
            store
                .transition_plan(
                    &id,
                    &[PlanState::Offered, PlanState::Confirmed],
                    PlanState::Running,
                    &start_patch(&presser),
                    at(5),
                )
                .await
                .expect("transition")
        })
    });

    let outcomes: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();

    let winners: Vec<_> = outcomes.into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "exactly one press starts the rollback");
    let stored = db.store.plan(&plan.id).await.expect("read").expect("plan");
    assert_eq!(stored.state, PlanState::Running);
    assert_eq!(stored.started_by, winners[0].started_by);
}

async fn a_second_plan_of_a_running_target_is_refused_as_busy(db: &mut TestStore) {
    let first = plan(&checkout());
    let second = plan(&target("Checkout", "PRODUCTION"));
    insert(&*db.store, &first).await;
    insert(&*db.store, &second).await;
    let who = actor("slack:U1", "Ada");
    move_plan(
        &*db.store,
        &first,
        &[PlanState::Offered],
        PlanState::Running,
        &start_patch(&who),
    )
    .await
    .expect("first starts");

    let refused = db
        .store
        .transition_plan(
            &second.id,
            &[PlanState::Offered],
            PlanState::Running,
            &start_patch(&who),
            at(5),
        )
        .await;

    assert!(
        matches!(&refused, Err(StoreError::TargetBusy(t)) if *t == checkout()),
        "{refused:?}"
    );
    let stored = db
        .store
        .plan(&second.id)
        .await
        .expect("read")
        .expect("plan");
    assert_eq!(stored.state, PlanState::Offered);
}

async fn a_running_plan_cannot_be_inserted_beside_another(db: &mut TestStore) {
    let running = RollbackPlan {
        state: PlanState::Running,
        ..plan(&checkout())
    };
    let another = RollbackPlan {
        state: PlanState::Running,
        ..plan(&checkout())
    };
    insert(&*db.store, &running).await;

    let refused = db.store.insert_plan(&another).await;

    assert!(
        matches!(&refused, Err(StoreError::TargetBusy(t)) if *t == checkout()),
        "{refused:?}"
    );
    assert_eq!(db.store.plan(&another.id).await.expect("read"), None);
}

async fn a_target_is_free_again_once_its_rollback_finishes(db: &mut TestStore) {
    let first = plan(&checkout());
    let second = plan(&checkout());
    insert(&*db.store, &first).await;
    insert(&*db.store, &second).await;
    let who = actor("slack:U1", "Ada");
    move_plan(
        &*db.store,
        &first,
        &[PlanState::Offered],
        PlanState::Running,
        &start_patch(&who),
    )
    .await;
    move_plan(
        &*db.store,
        &first,
        &[PlanState::Running],
        PlanState::Succeeded,
        &finish_patch(at(8)),
    )
    .await;

    let started = move_plan(
        &*db.store,
        &second,
        &[PlanState::Offered],
        PlanState::Running,
        &start_patch(&who),
    )
    .await;

    assert_eq!(started.map(|p| p.state), Some(PlanState::Running));
}

async fn an_expired_plan_cannot_start(db: &mut TestStore) {
    let plan = plan(&checkout());
    insert(&*db.store, &plan).await;
    let who = actor("slack:U1", "Ada");

    let at_expiry = db
        .store
        .transition_plan(
            &plan.id,
            &[PlanState::Offered],
            PlanState::Running,
            &start_patch(&who),
            plan.expires_at,
        )
        .await
        .expect("transition");
    let expired = db
        .store
        .transition_plan(
            &plan.id,
            &[PlanState::Offered],
            PlanState::Expired,
            &PlanPatch::default(),
            at(31),
        )
        .await
        .expect("transition");

    assert_eq!(at_expiry, None);
    assert_eq!(
        expired.map(|p| p.state),
        Some(PlanState::Expired),
        "other moves still work"
    );
}

async fn plans_are_listed_by_state_and_by_group(db: &mut TestStore) {
    let group = db.record(&firing("HighErrorRate", 0), 0).await.group;
    let offered = RollbackPlan {
        alert_group: Some(group.id),
        ..plan(&checkout())
    };
    let confirmed = RollbackPlan {
        state: PlanState::Confirmed,
        offered_at: at(1),
        ..plan(&target("payments", "production"))
    };
    let dismissed = RollbackPlan {
        state: PlanState::Dismissed,
        alert_group: Some(group.id),
        offered_at: at(2),
        ..plan(&target("search", "production"))
    };
    for plan in [&offered, &confirmed, &dismissed] {
        insert(&*db.store, plan).await;
    }

    let open = db
        .store
        .plans_in_state(&[PlanState::Offered, PlanState::Confirmed])
        .await
        .expect("by state");
    let of_group = db.store.plans_for_group(group.id).await.expect("by group");

    let ids = |plans: &[RollbackPlan]| plans.iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(ids(&open), [offered.id, confirmed.id]);
    assert_eq!(ids(&of_group), [offered.id, dismissed.id]);
    assert!(db.store.plans_in_state(&[]).await.expect("none").is_empty());
}

async fn the_last_finished_rollback_counts_only_succeeded_and_failed_plans(db: &mut TestStore) {
    let operation = Some(accepted(serde_json::json!({"handle": "accepted"})));
    for (state, minute) in [
        (PlanState::Succeeded, 10),
        (PlanState::Failed, 20),
        (PlanState::Stale, 30),
    ] {
        let plan = RollbackPlan {
            state,
            finished_at: Some(at(minute)),
            operation: operation.clone(),
            ..plan(&checkout())
        };
        insert(&*db.store, &plan).await;
    }

    let last = db
        .store
        .last_rollback_finished(&checkout())
        .await
        .expect("query");
    let elsewhere = db
        .store
        .last_rollback_finished(&target("payments", "production"))
        .await
        .expect("query");

    assert_eq!(last, Some(at(20)));
    assert_eq!(elsewhere, None);
}

async fn a_refused_rollback_or_an_abort_starts_no_cooldown(db: &mut TestStore) {
    let succeeded = RollbackPlan {
        state: PlanState::Succeeded,
        finished_at: Some(at(10)),
        operation: Some(accepted(serde_json::json!({"handle": "accepted"}))),
        ..plan(&checkout())
    };
    let refused = RollbackPlan {
        state: PlanState::Failed,
        finished_at: Some(at(20)),
        ..plan(&checkout())
    };
    let aborted = RollbackPlan {
        state: PlanState::Succeeded,
        finished_at: Some(at(30)),
        operation: Some(accepted(serde_json::json!({"handle": "accepted"}))),
        action: Action::AbortRollout,
        ..plan(&checkout())
    };
    for plan in [&succeeded, &refused, &aborted] {
        insert(&*db.store, plan).await;
    }

    let last = db
        .store
        .last_rollback_finished(&checkout())
        .await
        .expect("query");

    assert_eq!(last, Some(at(10)));
}

async fn succeeded_plans_await_verification_until_verified(db: &mut TestStore) {
    let succeeded = RollbackPlan {
        state: PlanState::Succeeded,
        finished_at: Some(at(10)),
        ..plan(&checkout())
    };
    let failed = RollbackPlan {
        state: PlanState::Failed,
        finished_at: Some(at(10)),
        ..plan(&target("payments", "production"))
    };
    insert(&*db.store, &succeeded).await;
    insert(&*db.store, &failed).await;

    let awaiting = db.store.plans_awaiting_verification().await.expect("query");
    db.store
        .set_plan_verified(&succeeded.id, at(20))
        .await
        .expect("verify");
    let after = db.store.plans_awaiting_verification().await.expect("query");

    assert_eq!(
        awaiting.iter().map(|p| p.id).collect::<Vec<_>>(),
        [succeeded.id]
    );
    assert!(after.is_empty());
    let stored = db
        .store
        .plan(&succeeded.id)
        .await
        .expect("read")
        .expect("plan");
    assert_eq!(stored.verified_at, Some(at(20)));
}

async fn a_plan_is_verified_once(db: &mut TestStore) {
    let succeeded = RollbackPlan {
        state: PlanState::Succeeded,
        finished_at: Some(at(10)),
        ..plan(&checkout())
    };
    insert(&*db.store, &succeeded).await;

    let first = db.store.set_plan_verified(&succeeded.id, at(20)).await;
    let second = db.store.set_plan_verified(&succeeded.id, at(21)).await;

    assert!(first.expect("verify"));
    assert!(!second.expect("verify again"));
    let stored = db.store.plan(&succeeded.id).await.expect("read");
    assert_eq!(stored.expect("plan").verified_at, Some(at(20)));
}

async fn a_plan_keeps_its_message_and_operation(db: &mut TestStore) {
    let plan = plan(&checkout());
    insert(&*db.store, &plan).await;
    let posted = message(Platform::Discord, "987", "654");
    let operation = breakwater::core::backend::Operation {
        target: plan.target.clone(),
        to: plan.to.clone(),
        started_at: at(3),
        handle: serde_json::json!({ "release": "checkout", "revision": 17 }),
        finished: None,
    };

    db.store
        .set_plan_message(&plan.id, &posted)
        .await
        .expect("message");
    db.store
        .set_plan_operation(&plan.id, &operation)
        .await
        .expect("operation");

    let stored = db.store.plan(&plan.id).await.expect("read").expect("plan");
    assert_eq!(stored.message, Some(posted));
    assert_eq!(stored.operation, Some(operation));
}

// --- confirmations ---------------------------------------------------------------------------

fn confirmation() -> Confirmation {
    Confirmation {
        id: PlanId::generate(),
        plan: PlanId::generate(),
        actor: actor("discord:42", "Ada"),
        created_at: at(0),
        expires_at: at(5),
        disable_auto_sync: false,
    }
}

async fn a_confirmation_is_taken_once_under_concurrency(db: &mut TestStore) {
    let pending = confirmation();
    db.store
        .insert_confirmation(&pending)
        .await
        .expect("insert");
    let tasks = (0..20).map(|_| {
        let store = db.store.clone();
        let id = pending.id;
        tokio::spawn(async move { store.take_confirmation(&id).await.expect("take") })
    });

    let taken: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .filter_map(|r| r.expect("task"))
        .collect();

    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0], pending);
    assert_eq!(
        db.store.confirmation(&pending.id).await.expect("read"),
        None
    );
}

async fn a_confirmation_can_be_read_before_it_is_taken(db: &mut TestStore) {
    let pending = confirmation();
    db.store
        .insert_confirmation(&pending)
        .await
        .expect("insert");

    let read = db.store.confirmation(&pending.id).await.expect("read");

    assert_eq!(read, Some(pending.clone()));
    assert_eq!(
        db.store.take_confirmation(&pending.id).await.expect("take"),
        Some(pending)
    );
}

async fn a_confirmation_keeps_the_consent_to_disable_auto_sync(db: &mut TestStore) {
    let pending = Confirmation {
        disable_auto_sync: true,
        ..confirmation()
    };
    db.store
        .insert_confirmation(&pending)
        .await
        .expect("insert");

    let taken = db.store.take_confirmation(&pending.id).await.expect("take");

    assert_eq!(taken.map(|c| c.disable_auto_sync), Some(true));
}

// --- processed events ------------------------------------------------------------------------

async fn an_event_is_claimed_once_under_concurrency(db: &mut TestStore) {
    let tasks = (0..20).map(|_| {
        let store = db.store.clone();
        tokio::spawn(async move {
            store
                .claim_event("slack:Ev0123", at(0))
                .await
                .expect("claim")
        })
    });

    let claims: Vec<bool> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();

    assert_eq!(claims.iter().filter(|claimed| **claimed).count(), 1);
    assert!(
        db.store
            .claim_event("slack:Ev0124", at(0))
            .await
            .expect("claim")
    );
}

async fn pruning_forgets_only_claims_older_than_the_cutoff(db: &mut TestStore) {
    db.store.claim_event("old", at(0)).await.expect("claim");
    db.store.claim_event("new", at(10)).await.expect("claim");

    let pruned = db.store.prune_event_claims(at(5)).await.expect("prune");

    assert_eq!(pruned, 1);
    assert!(
        db.store.claim_event("old", at(11)).await.expect("claim"),
        "forgotten"
    );
    assert!(
        !db.store.claim_event("new", at(11)).await.expect("claim"),
        "kept"
    );
}

// --- audit -----------------------------------------------------------------------------------

async fn an_empty_audit_log_has_no_head(db: &mut TestStore) {
    assert_eq!(db.store.audit_head().await.expect("head"), None);
    assert!(
        db.store
            .audit_records(0, 10)
            .await
            .expect("records")
            .is_empty()
    );
}

async fn the_first_audit_record_follows_the_genesis_hash(db: &mut TestStore) {
    let sealer = AuditSealer::new(None);
    let who = actor("slack:U1", "Ada");

    let record = db
        .store
        .append_audit(
            &entry("rollback.started", 0).actor(&who).target(&checkout()),
            &sealer,
        )
        .await
        .expect("append");

    assert_eq!(record.seq, 1);
    assert_eq!(record.prev_hash, GENESIS_HASH);
    assert_eq!(record.hash, sealer.seal(&record));
    assert_eq!(
        (record.actor.as_str(), record.actor_name.as_str()),
        ("slack:U1", "Ada")
    );
    assert_eq!(
        (record.service.as_str(), record.environment.as_str()),
        ("checkout", "production")
    );
    assert_eq!(
        db.store.audit_records(0, 10).await.expect("records"),
        [record]
    );
}

async fn concurrent_appends_form_one_contiguous_verifiable_chain(db: &mut TestStore) {
    let sealer = AuditSealer::new(Some(b"audit-key".to_vec()));
    let tasks = (0..50).map(|i| {
        let store = db.store.clone();
        let sealer = sealer.clone();
        tokio::spawn(async move {
            store
                .append_audit(&entry("alert.received", i), &sealer)
                .await
                .expect("append")
                .seq
        })
    });

    let mut seqs: Vec<i64> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();

    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    assert_eq!(verify_chain(&*db.store, &sealer).await, 50);
}

async fn appends_from_two_stores_on_one_database_form_one_chain(db: &mut TestStore) {
    let sealer = AuditSealer::new(None);
    let other = db.another().await;
    let tasks = (0..40).map(|i| {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        let sealer = sealer.clone();
        tokio::spawn(async move {
            store
                .append_audit(&entry("alert.received", i), &sealer)
                .await
                .expect("append")
        })
    });

    for result in join_all(tasks).await {
        result.expect("task");
    }

    assert_eq!(verify_chain(&*db.store, &sealer).await, 40);
    assert_eq!(verify_chain(&*other, &sealer).await, 40);
}

async fn the_audit_head_tracks_the_last_record(db: &mut TestStore) {
    let sealer = AuditSealer::new(None);
    for minute in 0..3 {
        let last = db
            .store
            .append_audit(&entry("alert.received", minute), &sealer)
            .await
            .expect("append");

        let head = db.store.audit_head().await.expect("head");

        assert_eq!(head, Some((last.seq, last.hash)));
    }
}

async fn audit_records_are_paged_in_sequence_order(db: &mut TestStore) {
    let sealer = AuditSealer::new(None);
    for minute in 0..5 {
        db.store
            .append_audit(&entry("alert.received", minute), &sealer)
            .await
            .expect("append");
    }

    let page = db.store.audit_records(1, 3).await.expect("records");

    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3, 4]);
}

async fn audit_search_filters_by_service_actor_and_action(db: &mut TestStore) {
    let sealer = AuditSealer::new(None);
    let ada = actor("slack:U1", "Ada");
    let grace = actor("slack:U2", "Grace");
    let payments = target("payments", "production");
    let entries = [
        entry("rollback.started", 0).actor(&ada).target(&checkout()),
        entry("rollback.started", 1).actor(&grace).target(&payments),
        entry("rollback.succeeded", 2).target(&checkout()),
        entry("alert.received", 3).target(&checkout()),
    ];
    for entry in &entries {
        db.store.append_audit(entry, &sealer).await.expect("append");
    }
    let search = |query: AuditQuery| {
        let store = db.store.clone();
        async move {
            let found = store.audit_search(&query).await.expect("search");
            found.iter().map(|r| r.seq).collect::<Vec<_>>()
        }
    };

    let by_service = search(AuditQuery {
        service: Some("checkout".to_owned()),
        ..AuditQuery::default()
    })
    .await;
    let by_principal = search(AuditQuery {
        actor: Some("slack:U2".to_owned()),
        ..AuditQuery::default()
    })
    .await;
    let by_name = search(AuditQuery {
        actor: Some("Ada".to_owned()),
        ..AuditQuery::default()
    })
    .await;
    let by_action_and_service = search(AuditQuery {
        service: Some("checkout".to_owned()),
        action: Some("rollback.started".to_owned()),
        ..AuditQuery::default()
    })
    .await;

    assert_eq!(by_service, [4, 3, 1], "newest first");
    assert_eq!(by_principal, [2]);
    assert_eq!(by_name, [1]);
    assert_eq!(by_action_and_service, [1]);
}

async fn audit_search_pages_backwards_from_before_seq(db: &mut TestStore) {
    let sealer = AuditSealer::new(None);
    for minute in 0..6 {
        db.store
            .append_audit(&entry("alert.received", minute), &sealer)
            .await
            .expect("append");
    }

    let page = db
        .store
        .audit_search(&AuditQuery {
            before_seq: Some(5),
            limit: 2,
            ..AuditQuery::default()
        })
        .await
        .expect("search");

    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 3]);
}

async fn audit_details_are_stored_as_the_exact_text_hashed(db: &mut TestStore) {
    let sealer = AuditSealer::new(Some(b"audit-key".to_vec()));
    let details = serde_json::json!({
        "zeta": 1,
        "alpha": "naïve — “quoted” \u{1F680}",
        "nested": { "b": [1, 2.5, null], "a": true },
    });

    let appended = db
        .store
        .append_audit(
            &entry("rollback.backend_call", 0).details(details.clone()),
            &sealer,
        )
        .await
        .expect("append");

    let stored = db.store.audit_records(0, 1).await.expect("records");
    assert_eq!(stored[0].details, details.to_string());
    assert_eq!(stored[0], appended);
    assert_eq!(verify_chain(&*db.store, &sealer).await, 1);
}

// --- lifecycle -------------------------------------------------------------------------------

async fn reopening_keeps_data_and_applies_no_migration_twice(db: &mut TestStore) {
    let sealer = AuditSealer::new(None);
    db.store
        .record_deploy(&deploy(&checkout(), "v42", at(0)))
        .await
        .expect("record");
    db.store
        .append_audit(&entry("deploy.recorded", 0), &sealer)
        .await
        .expect("append");

    db.reopen().await;

    let deploys = db.store.deploys(&query(&checkout())).await.expect("list");
    assert_eq!(deploys.len(), 1);
    let next = db
        .store
        .append_audit(&entry("deploy.recorded", 1), &sealer)
        .await
        .expect("append after reopen");
    assert_eq!(next.seq, 2, "the chain continues where it was");
    assert_eq!(verify_chain(&*db.store, &sealer).await, 2);
}

// --- opening stores --------------------------------------------------------------------------

#[tokio::test]
async fn connect_opens_sqlite_creating_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("new.db");

    let store = store::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("connect");

    store.ping().await.expect("ping");
    assert!(path.exists());
}

#[tokio::test]
async fn connect_opens_an_in_memory_sqlite_database() {
    let store = store::connect("sqlite::memory:").await.expect("connect");

    let claimed = store.claim_event("e1", at(0)).await.expect("claim");

    assert!(claimed);
    assert!(!store.claim_event("e1", at(0)).await.expect("claim again"));
}

#[tokio::test]
async fn connect_refuses_other_schemes_without_echoing_credentials() {
    let refused = store::connect("mysql://root:hunter2@db/breakwater").await;

    let Err(error @ StoreError::UnsupportedUrl(_)) = refused else {
        panic!("expected UnsupportedUrl");
    };
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[tokio::test]
async fn a_postgres_schema_name_must_be_a_plain_identifier() {
    let refused =
        PostgresStore::connect_in_schema("postgres://nobody@127.0.0.1:1/none", "x; DROP").await;

    assert!(refused.is_err());
}

fn start_by(runner: &str) -> PlanPatch {
    PlanPatch {
        runner: Some(runner.to_owned()),
        ..start_patch(&actor("slack:U1", "Ada"))
    }
}

async fn a_running_plan_with_a_live_heartbeat_is_not_adopted(db: &mut TestStore) {
    let plan = plan(&checkout());
    insert(&*db.store, &plan).await;
    move_plan(
        &*db.store,
        &plan,
        &[PlanState::Offered],
        PlanState::Running,
        &start_by("replica-a"),
    )
    .await
    .expect("running");
    db.store
        .heartbeat_plans("replica-a", at(6))
        .await
        .expect("heartbeat");

    let adopted = db
        .store
        .adopt_running_plans("replica-b", at(5), at(7))
        .await
        .expect("adopt");

    assert!(adopted.is_empty(), "replica-a is alive: {adopted:?}");
}

async fn a_running_plan_whose_runner_went_quiet_is_adopted_by_exactly_one_process(
    db: &mut TestStore,
) {
    let plan = plan(&checkout());
    insert(&*db.store, &plan).await;
    move_plan(
        &*db.store,
        &plan,
        &[PlanState::Offered],
        PlanState::Running,
        &start_by("replica-a"),
    )
    .await
    .expect("running");
    let other = db.another().await;

    let (b, c) = tokio::join!(
        db.store.adopt_running_plans("replica-b", at(20), at(21)),
        other.adopt_running_plans("replica-c", at(20), at(21)),
    );

    let adopted: Vec<_> = b
        .expect("adopt b")
        .into_iter()
        .chain(c.expect("adopt c"))
        .collect();
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0].id, plan.id);
    assert_eq!(
        db.store
            .heartbeat_plans("replica-a", at(22))
            .await
            .expect("heartbeat"),
        0,
        "the old runner lost it"
    );
}

async fn a_restarted_runner_takes_back_its_running_plans_without_waiting_for_the_timeout(
    db: &mut TestStore,
) {
    let plan = plan(&checkout());
    insert(&*db.store, &plan).await;
    move_plan(
        &*db.store,
        &plan,
        &[PlanState::Offered],
        PlanState::Running,
        &start_by("host-a:8080"),
    )
    .await
    .expect("running");
    db.store
        .heartbeat_plans("host-a:8080", at(6))
        .await
        .expect("heartbeat");

    let others = db
        .store
        .reclaim_running_plans("host-b:8080", at(7))
        .await
        .expect("reclaim b");
    let own = db
        .store
        .reclaim_running_plans("host-a:8080", at(7))
        .await
        .expect("reclaim a");
    let adopted = db
        .store
        .adopt_running_plans("host-b:8080", at(6), at(7))
        .await
        .expect("adopt");

    assert!(others.is_empty(), "another runner's plan: {others:?}");
    assert_eq!(own.iter().map(|p| p.id).collect::<Vec<_>>(), vec![plan.id]);
    assert!(
        adopted.is_empty(),
        "the reclaim refreshed the heartbeat: {adopted:?}"
    );
}

async fn audit_verify_is_intact_while_other_processes_append(db: &mut TestStore) {
    let sealer = AuditSealer::new(Some(b"audit-key".to_vec()));
    for i in 0..200 {
        db.store
            .append_audit(&entry("alert.received", i), &sealer)
            .await
            .expect("seed");
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..2 {
        let store = db.another().await;
        let sealer = sealer.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut appended = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                store
                    .append_audit(&entry("alert.received", writer), &sealer)
                    .await
                    .expect("append while verifying");
                appended += 1;
            }
            appended
        }));
    }
    let log = breakwater::audit::AuditLog::new(
        db.store.clone(),
        sealer.clone(),
        Arc::new(breakwater::core::clock::SystemClock),
    );

    let mut reports = Vec::new();
    for _ in 0..20 {
        reports.push(log.verify().await.expect("verify"));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let appended: u64 = join_all(writers)
        .await
        .into_iter()
        .map(|r| r.expect("writer"))
        .sum();

    for report in &reports {
        assert_eq!(report.problem, None, "verified {} records", report.count);
        assert!(report.count >= 200);
    }
    assert!(appended > 0, "the writers appended while verify ran");
    assert_eq!(
        verify_chain(&*db.store, &sealer).await,
        200 + i64::try_from(appended).expect("count")
    );
}

// --- web console -----------------------------------------------------------------------------

fn top(channel: &str) -> ConsolePlace<'_> {
    ConsolePlace {
        channel,
        thread: None,
        audience: None,
    }
}

fn reply_in(channel: &str, thread: i64) -> ConsolePlace<'_> {
    ConsolePlace {
        channel,
        thread: Some(thread),
        audience: None,
    }
}

async fn console_messages_read_back_with_their_thread_and_audience(db: &mut TestStore) {
    let root = db
        .store
        .insert_console_message(top("alerts"), &Message::plain("HighErrorRate"), at(1))
        .await
        .expect("insert");
    let private = db
        .store
        .insert_console_message(
            ConsolePlace {
                channel: "alerts",
                thread: Some(root.id),
                audience: Some("alice"),
            },
            &Message::plain("Confirm?"),
            at(2),
        )
        .await
        .expect("insert");
    assert_eq!(root.thread, None);
    assert_eq!(root.revision, 1);
    let read = db
        .store
        .console_message(private.id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(read, private);
    assert_eq!(read.thread, Some(root.id));
    assert_eq!(read.audience.as_deref(), Some("alice"));
    assert_eq!(read.message, Message::plain("Confirm?"));
    assert_eq!(read.created_at, at(2));
}

async fn updating_a_console_message_raises_its_revision(db: &mut TestStore) {
    let stored = db
        .store
        .insert_console_message(top("alerts"), &Message::plain("Rolling back…"), at(1))
        .await
        .expect("insert");
    let updated = db
        .store
        .update_console_message(stored.id, &Message::plain("Rolled back"), at(3))
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.updated_at, at(3));
    assert_eq!(updated.created_at, at(1));
    assert_eq!(updated.message, Message::plain("Rolled back"));
    let missing = db
        .store
        .update_console_message(stored.id + 1000, &Message::plain("x"), at(3))
        .await
        .expect("update");
    assert_eq!(missing, None);
}

async fn the_console_channel_holds_the_newest_threads_with_their_replies(db: &mut TestStore) {
    let mut roots = Vec::new();
    for minute in 0..4 {
        let root = db
            .store
            .insert_console_message(
                top("alerts"),
                &Message::plain(format!("alert {minute}")),
                at(minute),
            )
            .await
            .expect("insert");
        db.store
            .insert_console_message(
                reply_in("alerts", root.id),
                &Message::plain("summary"),
                at(minute),
            )
            .await
            .expect("insert");
        roots.push(root.id);
    }
    db.store
        .insert_console_message(top("elsewhere"), &Message::plain("other"), at(5))
        .await
        .expect("insert");
    let shown = db.store.console_channel("alerts", 2).await.expect("read");
    let ids: Vec<(i64, Option<i64>)> = shown.iter().map(|m| (m.id, m.thread)).collect();
    assert_eq!(shown.len(), 4, "{ids:?}");
    assert!(
        shown.iter().all(|m| m.thread.unwrap_or(m.id) >= roots[2]),
        "{ids:?}"
    );
    assert!(
        shown.windows(2).all(|w| w[0].id < w[1].id),
        "oldest first: {ids:?}"
    );
}

async fn console_changes_are_listed_oldest_first_from_a_time(db: &mut TestStore) {
    let first = db
        .store
        .insert_console_message(top("alerts"), &Message::plain("one"), at(1))
        .await
        .expect("insert");
    let second = db
        .store
        .insert_console_message(top("alerts"), &Message::plain("two"), at(2))
        .await
        .expect("insert");
    db.store
        .update_console_message(first.id, &Message::plain("one, updated"), at(3))
        .await
        .expect("update");
    let changed = db
        .store
        .console_messages_changed_since(at(2), 10)
        .await
        .expect("read");
    let ids: Vec<i64> = changed.iter().map(|m| m.id).collect();
    assert_eq!(ids, [second.id, first.id]);
    assert_eq!(changed[1].revision, 2);
    let limited = db
        .store
        .console_messages_changed_since(at(0), 1)
        .await
        .expect("read");
    assert_eq!(limited.len(), 1);
}

async fn a_console_message_written_by_one_replica_is_read_by_another(db: &mut TestStore) {
    let other = db.another().await;
    let stored = other
        .insert_console_message(top("alerts"), &Message::plain("from replica b"), at(1))
        .await
        .expect("insert");
    let read = db.store.console_channel("alerts", 10).await.expect("read");
    assert_eq!(read, vec![stored]);
}

fn session(token_hash: &str, expires_minute: i64) -> ConsoleSession {
    ConsoleSession {
        token_hash: token_hash.to_owned(),
        user: "alice".into(),
        csrf_token: "csrf-token".into(),
        created_at: at(0),
        expires_at: at(expires_minute),
    }
}

async fn a_console_session_is_found_until_it_expires(db: &mut TestStore) {
    db.store
        .insert_console_session(&session("hash-a", 10))
        .await
        .expect("insert");
    let found = db
        .store
        .console_session("hash-a", at(9))
        .await
        .expect("read");
    assert_eq!(found, Some(session("hash-a", 10)));
    assert_eq!(
        db.store
            .console_session("hash-a", at(10))
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        db.store
            .console_session("hash-b", at(1))
            .await
            .expect("read"),
        None
    );
}

async fn a_deleted_console_session_is_gone(db: &mut TestStore) {
    db.store
        .insert_console_session(&session("hash-a", 10))
        .await
        .expect("insert");
    db.store
        .delete_console_session("hash-a")
        .await
        .expect("delete");
    assert_eq!(
        db.store
            .console_session("hash-a", at(1))
            .await
            .expect("read"),
        None
    );
}

async fn expired_console_sessions_are_pruned(db: &mut TestStore) {
    for (hash, expires) in [("old", 5), ("current", 50)] {
        db.store
            .insert_console_session(&session(hash, expires))
            .await
            .expect("insert");
    }
    let pruned = db
        .store
        .prune_console_sessions(at(10))
        .await
        .expect("prune");
    assert_eq!(pruned, 1);
    assert!(
        db.store
            .console_session("current", at(10))
            .await
            .expect("read")
            .is_some()
    );
}

// --- leases ------------------------------------------------------------------------------------

const LEASE: &str = "discord-gateway";

async fn a_free_lease_is_taken_and_renewed_by_its_holder_only(db: &mut TestStore) {
    let store = &db.store;
    assert!(
        store
            .acquire_lease(LEASE, "a", at(0), at(1))
            .await
            .expect("take")
    );
    assert!(
        !store
            .acquire_lease(LEASE, "b", at(0), at(1))
            .await
            .expect("contend"),
        "another holder must wait for the lease to expire"
    );
    assert!(
        store
            .acquire_lease(LEASE, "a", at(0), at(2))
            .await
            .expect("renew")
    );
    // Renewed to minute 2, so still a's at minute 1.
    assert!(
        !store
            .acquire_lease(LEASE, "b", at(1), at(3))
            .await
            .expect("contend")
    );
    // Other leases are independent.
    assert!(
        store
            .acquire_lease("other", "b", at(1), at(3))
            .await
            .expect("take other")
    );
}

async fn an_expired_lease_is_taken_over_by_exactly_one_contender(db: &mut TestStore) {
    assert!(
        db.store
            .acquire_lease(LEASE, "dead", at(0), at(1))
            .await
            .expect("take")
    );
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(db.another().await);
    }
    let attempts = stores.iter().enumerate().map(|(i, store)| {
        let holder = format!("replica-{i}");
        async move { store.acquire_lease(LEASE, &holder, at(2), at(3)).await }
    });
    let won: Vec<bool> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("contend"))
        .collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    assert!(
        !db.store
            .acquire_lease(LEASE, "dead", at(2), at(3))
            .await
            .expect("late renew")
    );
}

async fn a_released_lease_is_free_at_once(db: &mut TestStore) {
    assert!(
        db.store
            .acquire_lease(LEASE, "a", at(0), at(10))
            .await
            .expect("take")
    );
    db.store
        .release_lease(LEASE, "b")
        .await
        .expect("release by another");
    assert!(
        !db.store
            .acquire_lease(LEASE, "b", at(1), at(11))
            .await
            .expect("still a's")
    );
    db.store.release_lease(LEASE, "a").await.expect("release");
    assert!(
        db.store
            .acquire_lease(LEASE, "b", at(1), at(11))
            .await
            .expect("take")
    );
}

// --- Flagger canary rollbacks ----------------------------------------------------------------

fn canary_rollback(plan: &str, armed: i64, expires: i64) -> CanaryRollback {
    CanaryRollback {
        namespace: "production".into(),
        name: "checkout".into(),
        plan_id: plan.into(),
        requested_by: "slack:U0ADA".into(),
        armed_at: at(armed),
        expires_at: at(expires),
        taken_at: None,
    }
}

async fn an_armed_canary_rollback_is_taken_once(db: &mut TestStore) {
    let store = &db.store;
    assert_eq!(
        store
            .take_canary_rollback("production", "checkout", at(0))
            .await
            .expect("take"),
        None,
        "nothing is armed before a press"
    );
    store
        .arm_canary_rollback(&canary_rollback("plan-1", 0, 30))
        .await
        .expect("arm");
    assert_eq!(
        store
            .take_canary_rollback("staging", "checkout", at(1))
            .await
            .expect("take other namespace"),
        None
    );
    let taken = store
        .take_canary_rollback("production", "checkout", at(1))
        .await
        .expect("take")
        .expect("armed");
    assert_eq!(taken.plan_id, "plan-1");
    assert_eq!(taken.taken_at, Some(at(1)));
    assert_eq!(
        store
            .take_canary_rollback("production", "checkout", at(2))
            .await
            .expect("take again"),
        None
    );
    let recorded = store
        .canary_rollback("production", "checkout")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(recorded.taken_at, Some(at(1)));
}

async fn an_armed_canary_rollback_is_taken_by_exactly_one_of_concurrent_hooks(db: &mut TestStore) {
    db.store
        .arm_canary_rollback(&canary_rollback("plan-1", 0, 30))
        .await
        .expect("arm");
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(db.another().await);
    }
    let attempts = stores.iter().map(|store| async move {
        store
            .take_canary_rollback("production", "checkout", at(1))
            .await
    });
    let taken: Vec<bool> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("take").is_some())
        .collect();
    assert_eq!(taken.iter().filter(|t| **t).count(), 1, "{taken:?}");
}

async fn an_expired_canary_rollback_is_not_taken(db: &mut TestStore) {
    db.store
        .arm_canary_rollback(&canary_rollback("plan-1", 0, 30))
        .await
        .expect("arm");
    assert_eq!(
        db.store
            .take_canary_rollback("production", "checkout", at(30))
            .await
            .expect("take"),
        None
    );
}

async fn a_new_press_re_arms_a_taken_canary_rollback(db: &mut TestStore) {
    db.store
        .arm_canary_rollback(&canary_rollback("plan-1", 0, 30))
        .await
        .expect("arm");
    assert!(
        db.store
            .take_canary_rollback("production", "checkout", at(1))
            .await
            .expect("take")
            .is_some()
    );
    db.store
        .arm_canary_rollback(&canary_rollback("plan-2", 40, 70))
        .await
        .expect("re-arm");
    let taken = db
        .store
        .take_canary_rollback("production", "checkout", at(41))
        .await
        .expect("take")
        .expect("armed again");
    assert_eq!(taken.plan_id, "plan-2");
}

/// Several replicas starting at once on a fresh database: sqlx's PostgreSQL migrator
/// holds an advisory lock for the whole run, so one migrates and the others wait, then
/// find the schema current.
#[tokio::test]
async fn replicas_starting_at_once_on_a_fresh_postgres_schema_migrate_it_once() {
    let Ok(url) = std::env::var("BREAKWATER_TEST_POSTGRES_URL") else {
        eprintln!("skipping: BREAKWATER_TEST_POSTGRES_URL not set");
        return;
    };
    let schema = format!("bw_test_{}", PlanId::generate());
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .expect("create schema");
    }
    let starts = (0..3).map(|_| PostgresStore::connect_in_schema(&url, &schema));
    let stores: Vec<PostgresStore> = join_all(starts)
        .await
        .into_iter()
        .map(|r| r.expect("every replica starts"))
        .collect();
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        let applied: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT version FROM {schema}._sqlx_migrations ORDER BY version"
        )))
        .fetch_all(&mut conn)
        .await
        .expect("migrations table");
        let expected: Vec<i64> = (1..=applied.len() as i64).collect();
        assert_eq!(applied, expected, "each migration applied exactly once");
        assert!(applied.contains(&4), "the lease table's migration ran");
    }
    for store in &stores {
        assert!(store.acquire_lease(LEASE, "r", at(0), at(1)).await.is_ok());
    }
    for store in stores {
        store.close().await;
    }
    drop_schema(&url, &schema).await;
}

async fn recent_groups_are_drawn_from_when_their_first_alert_fired(db: &mut TestStore) {
    // Received at minute 30, fired at minute 12; a second alert joins, fired at minute 20.
    let first = alert(Some(&checkout()), "HighErrorRate", at(12));
    let group = db.record(&first, 30).await.group;
    let later = alert(Some(&checkout()), "HighLatency", at(20));
    assert_eq!(db.record(&later, 31).await.group.id, group.id);
    let other = db
        .record(
            &alert(Some(&target("search", "production")), "Down", at(40)),
            40,
        )
        .await
        .group;

    let fired = db
        .store
        .recent_alert_groups_fired_at(10)
        .await
        .expect("read");
    assert_eq!(fired.get(&group.id), Some(&at(12)));
    assert_eq!(fired.get(&other.id), Some(&at(40)));
    let newest = db
        .store
        .recent_alert_groups_fired_at(1)
        .await
        .expect("read");
    assert_eq!(newest.keys().copied().collect::<Vec<_>>(), [other.id]);
}

async fn an_audit_search_by_part_of_an_action_ignores_case_and_wildcards(db: &mut TestStore) {
    let sealer = AuditSealer::new(None);
    for (minute, action) in [
        "rollback.started",
        "alert.received",
        "console.login_failed",
        "console.login",
    ]
    .into_iter()
    .enumerate()
    {
        db.store
            .append_audit(&entry(action, minute as i64), &sealer)
            .await
            .expect("append");
    }
    let search = |part: &str| {
        let store = db.store.clone();
        let query = AuditQuery {
            action: Some(part.to_owned()),
            ..AuditQuery::default()
        };
        async move {
            let found = store.audit_search_containing(&query).await.expect("search");
            found.into_iter().map(|r| r.action).collect::<Vec<_>>()
        }
    };

    assert_eq!(search("ROLLBACK").await, ["rollback.started"]);
    assert_eq!(
        search("login").await,
        ["console.login", "console.login_failed"]
    );
    assert_eq!(search("n_f").await, ["console.login_failed"]);
    assert!(search("e_l").await.is_empty(), "_ matches only itself");
    assert!(search("%").await.is_empty(), "% matches only itself");
    assert_eq!(
        db.store
            .audit_search(&AuditQuery {
                action: Some("login".to_owned()),
                ..AuditQuery::default()
            })
            .await
            .expect("search")
            .len(),
        0,
        "the exact search stays exact"
    );
}

// --- incident history (issue 17) ---------------------------------------------------------------

async fn the_incident_history_holds_the_groups_opened_since_their_plans_and_the_asked_for_records(
    db: &mut TestStore,
) {
    let store = &*db.store;
    let old = record(store, &firing("Old", 0), at(0)).await.group;
    let new = record(store, &firing("New", 60), at(60)).await.group;
    assert_ne!(old.id, new.id);
    let offered = RollbackPlan {
        alert_group: Some(new.id),
        offered_at: at(60),
        expires_at: at(90),
        ..plan(&checkout())
    };
    insert(store, &offered).await;
    let sealer = AuditSealer::new(None);
    for entry in [
        entry("alert.received", 0),
        entry("alert.received", 60),
        entry("console.login", 61),
        entry("rollback.requested", 62),
    ] {
        store.append_audit(&entry, &sealer).await.expect("append");
    }

    let history = store
        .incident_history(at(30), &["alert.received", "rollback.requested"], 100)
        .await
        .expect("history");

    assert_eq!(
        history.groups.iter().map(|g| g.id).collect::<Vec<_>>(),
        [new.id]
    );
    assert_eq!(history.plans, [(offered.id, new.id)]);
    assert_eq!(
        history
            .records
            .iter()
            .map(|r| (r.action.as_str(), r.at))
            .collect::<Vec<_>>(),
        [("alert.received", at(60)), ("rollback.requested", at(62))]
    );
    assert!(!history.truncated);
}

async fn an_incident_history_over_its_limit_keeps_the_newest_records(db: &mut TestStore) {
    let sealer = AuditSealer::new(None);
    for minute in 0..5 {
        db.store
            .append_audit(&entry("alert.received", minute), &sealer)
            .await
            .expect("append");
    }

    let history = db
        .store
        .incident_history(at(0), &["alert.received"], 2)
        .await
        .expect("history");

    assert!(history.truncated);
    assert_eq!(
        history.records.iter().map(|r| r.at).collect::<Vec<_>>(),
        [at(3), at(4)]
    );
}

// --- configuration snapshots ----------------------------------------------------------------

fn config_object(name: &str) -> ConfigObject {
    ConfigObject {
        backend: "cluster".to_owned(),
        namespace: "shop".to_owned(),
        name: name.to_owned(),
    }
}

fn snapshot(name: &str, version: u32, minute: i64) -> ConfigSnapshot {
    ConfigSnapshot {
        id: 0,
        object: config_object(name),
        resource_version: version.to_string(),
        data: BTreeMap::from([("DB_POOL_SIZE".to_owned(), version.to_string())]),
        binary_data: BTreeMap::from([("logo.png".to_owned(), "iVBORw0KGgo=".to_owned())]),
        taken_at: at(minute),
    }
}

async fn a_config_snapshot_is_kept_once_per_resource_version(db: &mut TestStore) {
    let first = snapshot("checkout-env", 911, 0);
    assert!(
        db.store
            .record_config_snapshot(&first)
            .await
            .expect("record")
    );
    assert!(
        !db.store
            .record_config_snapshot(&first)
            .await
            .expect("again")
    );
    let kept = db
        .store
        .config_snapshots(&config_object("checkout-env"))
        .await
        .expect("read");
    assert_eq!(kept.len(), 1);
    let read = db
        .store
        .config_snapshot(kept[0].id)
        .await
        .expect("read one")
        .expect("kept");
    assert_eq!(ConfigSnapshot { id: 0, ..read }, first);
}

async fn only_the_newest_config_snapshots_of_an_object_are_kept(db: &mut TestStore) {
    let kept_per_object = usize::try_from(store::SNAPSHOTS_KEPT).expect("small");
    for version in 0..u32::try_from(kept_per_object + 5).expect("small") {
        db.store
            .record_config_snapshot(&snapshot("checkout-env", 900 + version, i64::from(version)))
            .await
            .expect("record");
    }
    db.store
        .record_config_snapshot(&snapshot("other-env", 1, 0))
        .await
        .expect("record");
    let kept = db
        .store
        .config_snapshots(&config_object("checkout-env"))
        .await
        .expect("read");
    assert_eq!(kept.len(), kept_per_object);
    let newest = format!("{}", 900 + kept_per_object + 4);
    assert_eq!(kept[0].resource_version, newest, "newest first");
    assert_eq!(kept[kept_per_object - 1].resource_version, "905");
    let other = db
        .store
        .config_snapshots(&config_object("other-env"))
        .await
        .expect("read");
    assert_eq!(other.len(), 1, "another object keeps its own");
}
