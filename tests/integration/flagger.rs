//! Flagger: its event webhook records canary runs as deploys, and its `rollback` hook is
//! answered 2xx only for a rollback a person asked for, exactly once. The payloads are
//! Flagger's `CanaryWebhookPayload` as `pkg/controller/webhook.go` builds them.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde_json::json;

use crate::support::{AppOptions, TestApp, spawn_app_with};

const FLAGGER_TOKEN: &str = "flagger-webhook-token-0123456789";
const CHECKSUM: &str = "5d7f8c9b6c";

/// `checkout` is found by its name (Canary `checkout` in namespace `production`);
/// `storefront` only through its `flagger_canary` key.
const FLAGGER_CONFIG: &str = r#"
[sources.flagger]
token = { file = "flagger_token" }

[[services]]
name = "storefront"
environments = ["staging", "production"]
backend = "deployer"
flagger_canary = "shop-{environment}/storefront-web"
"#;

async fn spawn_with_flagger() -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("flagger_token"), FLAGGER_TOKEN).expect("write token");
    spawn_app_with(AppOptions {
        extra_config: FLAGGER_CONFIG.to_owned(),
        dir: Some(dir),
        ..AppOptions::default()
    })
    .await
}

fn ago(minutes: i64) -> DateTime<Utc> {
    (Utc::now() - Duration::minutes(minutes)).trunc_subsecs(0)
}

/// An event webhook delivery as Flagger's `CallEventWebhook` sends it.
fn event(
    namespace: &str,
    name: &str,
    phase: &str,
    message: &str,
    at: DateTime<Utc>,
) -> serde_json::Value {
    json!({
        "name": name,
        "namespace": namespace,
        "phase": phase,
        "checksum": CHECKSUM,
        "metadata": {
            "eventMessage": message,
            "eventType": if phase == "Failed" { "Warning" } else { "Normal" },
            "timestamp": at.timestamp_millis().to_string()
        }
    })
}

impl TestApp {
    async fn post_flagger_event(&self, token: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/webhooks/flagger/events?token={token}",
                self.address
            ))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    async fn flagger_deploys_of(&self, service: &str) -> Vec<serde_json::Value> {
        let listed: serde_json::Value = self
            .http
            .get(format!("{}/api/v1/deploys?service={service}", self.address))
            .bearer_auth(crate::support::API_TOKEN)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        listed["deploys"].as_array().cloned().unwrap_or_default()
    }
}

#[tokio::test]
async fn the_start_of_a_canary_analysis_is_recorded_as_a_started_deploy_of_its_checksum() {
    let app = spawn_with_flagger().await;
    let body = event(
        "production",
        "checkout",
        "Progressing",
        "Starting canary analysis for checkout.production",
        ago(5),
    );
    let response = app.post_flagger_event(FLAGGER_TOKEN, &body).await;
    assert_eq!(
        response.status(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let deploys = app.flagger_deploys_of("checkout").await;
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(deploys[0]["environment"], "production");
    assert_eq!(deploys[0]["version"], CHECKSUM);
    assert_eq!(deploys[0]["status"], "started");
    assert_eq!(deploys[0]["author"], "Flagger");
}

#[tokio::test]
async fn weight_advances_update_the_one_deploy_and_promotion_finishes_it() {
    let app = spawn_with_flagger().await;
    let steps = [
        (
            "Progressing",
            "Starting canary analysis for checkout.production",
            201,
        ),
        (
            "Progressing",
            "Advance checkout.production canary weight 10",
            200,
        ),
        (
            "Progressing",
            "Advance checkout.production canary weight 20",
            200,
        ),
        (
            "Promoting",
            "Copying checkout.production template spec to checkout-primary.production",
            200,
        ),
        ("Finalising", "Routing all traffic to primary", 200),
        (
            "Succeeded",
            "Promotion completed! Scaling down checkout.production",
            200,
        ),
    ];
    for (i, (phase, message, status)) in steps.into_iter().enumerate() {
        let at = ago(10 - i64::try_from(i).expect("small"));
        let body = event("production", "checkout", phase, message, at);
        let response = app.post_flagger_event(FLAGGER_TOKEN, &body).await;
        assert_eq!(response.status(), status, "{message}");
        if i == 2 {
            let deploys = app.flagger_deploys_of("checkout").await;
            assert_eq!(
                deploys[0]["description"],
                "canary Progressing, 20 % of traffic"
            );
        }
    }
    let deploys = app.flagger_deploys_of("checkout").await;
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(deploys[0]["status"], "succeeded");
    assert_eq!(deploys[0]["description"], "canary promoted by Flagger");
}

#[tokio::test]
async fn a_failed_canary_is_a_failed_deploy() {
    let app = spawn_with_flagger().await;
    for (phase, message) in [
        (
            "Progressing",
            "Starting canary analysis for checkout.production",
        ),
        (
            "Progressing",
            "Rolling back checkout.production failed checks threshold reached 5",
        ),
        ("Failed", "Canary failed! Scaling down checkout.production"),
    ] {
        let body = event("production", "checkout", phase, message, ago(2));
        let response = app.post_flagger_event(FLAGGER_TOKEN, &body).await;
        assert!(response.status().is_success(), "{message}");
    }
    let deploys = app.flagger_deploys_of("checkout").await;
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(deploys[0]["status"], "failed");
}

#[tokio::test]
async fn a_new_revision_event_and_metric_checks_are_acknowledged_without_a_deploy() {
    let app = spawn_with_flagger().await;
    for message in [
        "New revision detected! Scaling up checkout.production",
        "Halt advancement no values found for istio metric request-success-rate probably checkout.production is not receiving traffic",
    ] {
        let body = event("production", "checkout", "Progressing", message, ago(1));
        let response = app.post_flagger_event(FLAGGER_TOKEN, &body).await;
        assert_eq!(response.status(), 202, "{message}");
        let answer: serde_json::Value = response.json().await.expect("json");
        assert_eq!(answer["status"], "ignored");
    }
    assert!(app.flagger_deploys_of("checkout").await.is_empty());
}

#[tokio::test]
async fn a_canary_is_routed_through_its_flagger_canary_key_to_the_environment_it_names() {
    let app = spawn_with_flagger().await;
    let body = event(
        "shop-staging",
        "storefront-web",
        "Progressing",
        "Advance storefront-web.shop-staging canary weight 30",
        ago(1),
    );
    assert_eq!(
        app.post_flagger_event(FLAGGER_TOKEN, &body).await.status(),
        201
    );
    let deploys = app.flagger_deploys_of("storefront").await;
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(deploys[0]["environment"], "staging");
}

#[tokio::test]
async fn a_canary_of_no_configured_service_is_audited_as_unrouted() {
    let app = spawn_with_flagger().await;
    let body = event(
        "production",
        "ledger",
        "Progressing",
        "Starting canary analysis for ledger.production",
        ago(1),
    );
    let response = app.post_flagger_event(FLAGGER_TOKEN, &body).await;
    assert_eq!(response.status(), 202);
    let answer: serde_json::Value = response.json().await.expect("json");
    assert_eq!(answer["status"], "unrouted");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap_or("")
            .contains("flagger_canary = \"production/ledger\""),
        "{answer}"
    );
    let audited = app.audited("deploy_event.unrouted").await;
    assert_eq!(audited.len(), 1);
    let details: serde_json::Value = serde_json::from_str(&audited[0].details).expect("details");
    assert_eq!(details["source"], "flagger");
    assert_eq!(details["seen"]["kind"], "Canary");
}

#[tokio::test]
async fn the_token_may_be_carried_in_the_metadata_of_a_canary_hook() {
    let app = spawn_with_flagger().await;
    let mut body = event(
        "production",
        "checkout",
        "Progressing",
        "Starting canary analysis for checkout.production",
        ago(1),
    );
    body["metadata"]["token"] = json!(FLAGGER_TOKEN);
    let response = app
        .http
        .post(format!("{}/webhooks/flagger/events", app.address))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn an_event_with_a_wrong_or_missing_token_is_refused_with_401() {
    let app = spawn_with_flagger().await;
    let body = event(
        "production",
        "checkout",
        "Progressing",
        "Starting canary analysis for checkout.production",
        ago(1),
    );
    let wrong = app
        .post_flagger_event("not-the-flagger-token-0123", &body)
        .await;
    assert_eq!(wrong.status(), 401);
    let missing = app
        .http
        .post(format!("{}/webhooks/flagger/events", app.address))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 401);
    let answer: serde_json::Value = missing.json().await.expect("json");
    assert!(
        answer["error"].as_str().unwrap_or("").contains("?token="),
        "{answer}"
    );
    assert!(app.flagger_deploys_of("checkout").await.is_empty());
}

#[tokio::test]
async fn an_event_from_an_implausible_time_is_a_422() {
    let app = spawn_with_flagger().await;
    let body = event(
        "production",
        "checkout",
        "Progressing",
        "Starting canary analysis for checkout.production",
        Utc::now() + Duration::days(30),
    );
    let response = app.post_flagger_event(FLAGGER_TOKEN, &body).await;
    assert_eq!(response.status(), 422);
}

#[tokio::test]
async fn a_canary_in_progress_shows_its_phase_and_weight_in_the_alert_summary() {
    let app = spawn_with_flagger().await;
    for (message, at) in [
        ("Starting canary analysis for checkout.production", ago(6)),
        ("Advance checkout.production canary weight 40", ago(2)),
    ] {
        let body = event("production", "checkout", "Progressing", message, at);
        assert!(
            app.post_flagger_event(FLAGGER_TOKEN, &body)
                .await
                .status()
                .is_success()
        );
    }
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let text = app.summary().await.plain();
    assert!(text.contains(CHECKSUM), "{text}");
    assert!(
        text.contains("canary Progressing, 40 % of traffic"),
        "{text}"
    );
}

/// A `rollback` hook call as Flagger's `CallWebhook` sends it: the hook's own metadata,
/// no event fields.
fn rollback_hook(namespace: &str, name: &str) -> serde_json::Value {
    json!({
        "name": name,
        "namespace": namespace,
        "phase": "Progressing",
        "checksum": CHECKSUM,
        "metadata": { "token": FLAGGER_TOKEN }
    })
}

impl TestApp {
    async fn call_rollback_hook(&self, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}/webhooks/flagger/rollback", self.address))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    async fn arm_canary_rollback(&self, namespace: &str, name: &str) {
        let now = Utc::now();
        self.bot
            .store()
            .arm_canary_rollback(&breakwater::store::CanaryRollback {
                namespace: namespace.into(),
                name: name.into(),
                plan_id: "plan-canary-1".into(),
                requested_by: "console:ada".into(),
                armed_at: now,
                expires_at: now + Duration::minutes(15),
                taken_at: None,
            })
            .await
            .expect("arm");
    }
}

#[tokio::test]
async fn the_rollback_hook_is_answered_403_while_nobody_asked_for_a_rollback() {
    let app = spawn_with_flagger().await;
    let response = app
        .call_rollback_hook(&rollback_hook("production", "checkout"))
        .await;
    assert_eq!(response.status(), 403);
    let answer: serde_json::Value = response.json().await.expect("json");
    assert_eq!(answer["rollback"], false);
}

#[tokio::test]
async fn an_armed_rollback_is_answered_200_to_exactly_one_of_two_concurrent_hook_calls() {
    let app = spawn_with_flagger().await;
    app.arm_canary_rollback("production", "checkout").await;
    let body = rollback_hook("production", "checkout");
    let (first, second) =
        tokio::join!(app.call_rollback_hook(&body), app.call_rollback_hook(&body));
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 403]);
    let later = app.call_rollback_hook(&body).await;
    assert_eq!(later.status(), 403, "one press, one rollback");
    let audited = app.audited("canary_rollback.taken").await;
    assert_eq!(audited.len(), 1);
    let details: serde_json::Value = serde_json::from_str(&audited[0].details).expect("details");
    assert_eq!(details["plan"], "plan-canary-1");
    assert_eq!(details["requested_by"], "console:ada");
}

#[tokio::test]
async fn an_armed_rollback_answers_only_the_hook_of_its_own_canary() {
    let app = spawn_with_flagger().await;
    app.arm_canary_rollback("production", "checkout").await;
    let other = app
        .call_rollback_hook(&rollback_hook("staging", "checkout"))
        .await;
    assert_eq!(other.status(), 403);
    let own = app
        .call_rollback_hook(&rollback_hook("production", "checkout"))
        .await;
    assert_eq!(own.status(), 200);
}

#[tokio::test]
async fn a_rollback_hook_call_with_a_wrong_token_is_refused_with_401_and_takes_nothing() {
    let app = spawn_with_flagger().await;
    app.arm_canary_rollback("production", "checkout").await;
    let mut forged = rollback_hook("production", "checkout");
    forged["metadata"]["token"] = json!("not-the-flagger-token-0123");
    assert_eq!(app.call_rollback_hook(&forged).await.status(), 401);
    let genuine = app
        .call_rollback_hook(&rollback_hook("production", "checkout"))
        .await;
    assert_eq!(genuine.status(), 200);
}

/// `storefront production` is deployed by Canary `shop-production/storefront-web`.
const STOREFRONT_NS: &str = "shop-production";
const STOREFRONT_CANARY: &str = "storefront-web";
const ROLLED_BACK: &str = "✅ Canary 5d7f8c9b6c on storefront production rolled back";

fn alice() -> breakwater::core::policy::Actor {
    crate::support::actor("console:alice", "Alice")
}

impl TestApp {
    /// The storefront canary started its analysis and reached 20 % of traffic, then an
    /// alert fired: the summary posted for it.
    async fn storefront_canary_alert(&self) -> crate::support::Shown {
        for (message, at) in [
            (
                "Starting canary analysis for storefront-web.shop-production",
                ago(6),
            ),
            (
                "Advance storefront-web.shop-production canary weight 20",
                ago(2),
            ),
        ] {
            let body = event(STOREFRONT_NS, STOREFRONT_CANARY, "Progressing", message, at);
            let response = self.post_flagger_event(FLAGGER_TOKEN, &body).await;
            assert!(response.status().is_success(), "{}", response.status());
        }
        self.fire_alert("HighErrorRate", "storefront", "production")
            .await;
        self.summary().await
    }

    async fn canary_failed(&self) {
        let body = event(
            STOREFRONT_NS,
            STOREFRONT_CANARY,
            "Failed",
            "Canary failed! Scaling down storefront-web.shop-production",
            Utc::now().trunc_subsecs(0),
        );
        let response = self.post_flagger_event(FLAGGER_TOKEN, &body).await;
        assert!(response.status().is_success(), "{}", response.status());
    }

    async fn storefront_hook(&self) -> u16 {
        self.call_rollback_hook(&rollback_hook(STOREFRONT_NS, STOREFRONT_CANARY))
            .await
            .status()
            .as_u16()
    }

    async fn wait_until_armed(&self) {
        crate::support::eventually("canary_rollback.armed in the audit log", async || {
            (!self.audited("canary_rollback.armed").await.is_empty()).then_some(())
        })
        .await;
    }
}

fn first_button(shown: &crate::support::Shown) -> String {
    shown
        .message
        .buttons()
        .next()
        .map(|(label, _)| label.to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn roll_back_canary_is_the_first_button_while_the_analysis_runs_and_names_the_canary() {
    let app = spawn_with_flagger().await;

    let summary = app.storefront_canary_alert().await;

    assert_eq!(first_button(&summary), "Roll back canary 5d7f8c9b6c");
    let text = summary.plain();
    assert!(
        text.contains("canary Progressing, 20 % of traffic"),
        "{text}"
    );
    let confirm = summary
        .message
        .actions
        .iter()
        .find_map(|action| match action {
            breakwater::core::message::Action::Button {
                label,
                confirm: Some(confirm),
                ..
            } if label.starts_with("Roll back canary") => {
                Some(format!("{}: {}", confirm.title, confirm.text))
            }
            _ => None,
        })
        .unwrap_or_default();
    assert!(
        confirm.starts_with(
            "Roll back canary?: Roll back the canary 5d7f8c9b6c on storefront production (Flagger \
             canary shop-production/storefront-web: canary Progressing, 20 % of traffic): \
             Flagger sends all traffic back to"
        ),
        "{confirm}"
    );
}

#[tokio::test]
async fn a_press_arms_the_hook_once_and_flaggers_failed_event_is_the_outcome() {
    let app = spawn_with_flagger().await;
    let summary = app.storefront_canary_alert().await;
    assert_eq!(app.storefront_hook().await, 403, "nobody pressed yet");

    app.press(&summary, "Roll back canary", &alice()).await;
    app.wait_until_armed().await;

    assert_eq!(app.storefront_hook().await, 200);
    assert_eq!(app.storefront_hook().await, 403, "one press, one rollback");
    app.chat
        .wait_for_update(&summary.at, "Flagger took the rollback request")
        .await;
    app.canary_failed().await;
    let done = app.chat.wait_for_update(&summary.at, ROLLED_BACK).await;
    assert!(
        done.plain().contains("Flagger rolled the canary back"),
        "{}",
        done.plain()
    );

    // A second press of the finished plan arms nothing more.
    app.press(&summary, "Roll back canary", &alice()).await;
    assert_eq!(app.storefront_hook().await, 403);
    assert_eq!(app.audited("canary_rollback.armed").await.len(), 1);
    assert_eq!(app.audited("canary_rollback.taken").await.len(), 1);
    let succeeded = app.audited("rollback.succeeded").await;
    assert_eq!(succeeded.len(), 1);
    assert!(
        succeeded[0]
            .details
            .contains("\"action\":\"rollback_canary\""),
        "{}",
        succeeded[0].details
    );
}

#[tokio::test]
async fn many_presses_of_roll_back_canary_arm_the_hook_once() {
    let app = spawn_with_flagger().await;
    let summary = app.storefront_canary_alert().await;

    let alice = alice();
    let presses = (0..8).map(|_| app.press(&summary, "Roll back canary", &alice));
    futures::future::join_all(presses).await;
    app.wait_until_armed().await;

    assert_eq!(app.storefront_hook().await, 200);
    assert_eq!(app.storefront_hook().await, 403);
    assert_eq!(app.audited("rollback.started").await.len(), 1);
    assert_eq!(app.audited("canary_rollback.armed").await.len(), 1);
}

#[tokio::test]
async fn an_unauthorised_press_is_refused_audited_and_arms_nothing() {
    let app = spawn_with_flagger().await;
    let summary = app.storefront_canary_alert().await;

    let reply = app
        .press(
            &summary,
            "Roll back canary",
            &crate::support::actor("console:mallory", "Mallory"),
        )
        .await;

    assert!(format!("{reply:?}").contains("not"), "{reply:?}");
    assert_eq!(app.audited("rollback.denied").await.len(), 1);
    assert!(app.audited("canary_rollback.armed").await.is_empty());
    assert_eq!(app.storefront_hook().await, 403);
}

#[tokio::test]
async fn a_press_after_flagger_failed_the_canary_is_stale_and_arms_nothing() {
    let app = spawn_with_flagger().await;
    let summary = app.storefront_canary_alert().await;
    app.canary_failed().await;

    app.press(&summary, "Roll back canary", &alice()).await;

    app.chat
        .wait_for_update(
            &summary.at,
            "Not rolled back: canary shop-production/storefront-web already failed",
        )
        .await;
    assert!(app.audited("canary_rollback.armed").await.is_empty());
    assert_eq!(app.storefront_hook().await, 403);
}

#[tokio::test]
async fn a_canary_rollback_flagger_never_takes_fails_after_the_timeout_naming_the_webhooks_stanza()
{
    let clock = std::sync::Arc::new(breakwater::core::clock::ManualClock::new(Utc::now()));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("flagger_token"), FLAGGER_TOKEN).expect("write token");
    let app = crate::support::spawn_app_replacing(
        crate::support::AppOptions {
            extra_config: FLAGGER_CONFIG.replace(
                "token = { file = \"flagger_token\" }",
                "token = { file = \"flagger_token\" }\nrollback_timeout = \"10m\"",
            ),
            dir: Some(dir),
            ..crate::support::AppOptions::default()
        },
        crate::support::Receiver::start(crate::support::BACKEND_SECRET).await,
        crate::support::Replacements {
            clock: Some(clock.clone()),
            ..crate::support::Replacements::default()
        },
    )
    .await;
    let summary = app.storefront_canary_alert().await;
    app.press(&summary, "Roll back canary", &alice()).await;
    app.wait_until_armed().await;

    clock.advance(Duration::minutes(10) + Duration::seconds(1));

    let failed = app
        .chat
        .wait_for_update(&summary.at, "❌ Canary rollback of 5d7f8c9b6c")
        .await;
    let text = failed.plain();
    assert!(
        text.contains("Flagger did not call breakwater's rollback hook for canary shop-production/storefront-web within 10 min"),
        "{text}"
    );
    assert!(text.contains("`webhooks:` stanza"), "{text}");
    assert_eq!(
        app.storefront_hook().await,
        403,
        "a request reported failed is withdrawn"
    );
    assert_eq!(app.audited("rollback.failed").await.len(), 1);
}

#[tokio::test]
async fn a_canary_rollback_left_running_by_a_crash_is_followed_again_from_the_store() {
    use breakwater::core::rollback::{PlanPatch, PlanState};
    let app = spawn_with_flagger().await;
    let summary = app.storefront_canary_alert().await;
    let plan_id = summary.button("Roll back canary").expect("button").token;
    // A crash right after the press armed the request: the plan is running, no process
    // follows it, and the request waits in the store.
    let store = app.bot.store().clone();
    let now = Utc::now();
    store
        .transition_plan(
            &plan_id,
            &[PlanState::Offered],
            PlanState::Running,
            &PlanPatch {
                started_by: Some(alice()),
                started_at: Some(now),
                ..Default::default()
            },
            now,
        )
        .await
        .expect("transition")
        .expect("running");
    store
        .arm_canary_rollback(&breakwater::store::CanaryRollback {
            namespace: STOREFRONT_NS.into(),
            name: STOREFRONT_CANARY.into(),
            plan_id: plan_id.to_string(),
            requested_by: "Alice".into(),
            armed_at: now,
            expires_at: now + Duration::minutes(10),
            taken_at: None,
        })
        .await
        .expect("arm");

    // Maintenance adopts the orphaned plan; Flagger takes the request and fails the canary.
    crate::support::eventually("the adopted plan to be followed", async || {
        (app.storefront_hook().await == 200).then_some(())
    })
    .await;
    app.canary_failed().await;

    app.chat.wait_for_update(&summary.at, ROLLED_BACK).await;
    let plan = store.plan(&plan_id).await.expect("load").expect("plan");
    assert_eq!(plan.state, PlanState::Succeeded);
}
