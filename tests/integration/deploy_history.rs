//! The deploy history must be true: reports update only what they carry and are audited
//! field by field, times from outside are range-checked, environments are matched the way
//! alerts match them, and alerts nobody routed are counted and shown.

use serde_json::json;

use crate::support::{API_TOKEN, alertmanager, spawn_app};

async fn list(app: &crate::support::TestApp, query: &str) -> serde_json::Value {
    app.http
        .get(format!("{}/api/v1/deploys?{query}", app.address))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn a_deploy_report_starting_before_2000_is_refused_with_422_naming_the_field() {
    let app = spawn_app().await;
    let response = app
        .post_deploy(json!({
            "service": "checkout", "environment": "production", "version": "v1",
            "started_at": "-262143-01-01T00:00:00Z", "status": "succeeded"
        }))
        .await;
    assert_eq!(response.status(), 422);
    let body: serde_json::Value = response.json().await.expect("json");
    let error = body["error"].as_str().expect("error");
    assert!(error.starts_with("started_at: "), "{error}");
    assert!(error.contains("before 2000-01-01"), "{error}");
    // Nothing was recorded that could break a page later.
    assert_eq!(list(&app, "service=checkout").await["deploys"], json!([]));
}

#[tokio::test]
async fn a_deploy_report_finishing_more_than_a_day_ahead_is_refused_with_422() {
    let app = spawn_app().await;
    let ahead = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let response = app
        .post_deploy(json!({
            "service": "checkout", "environment": "production", "version": "v1",
            "finished_at": ahead, "status": "succeeded"
        }))
        .await;
    assert_eq!(response.status(), 422);
    let body: serde_json::Value = response.json().await.expect("json");
    let error = body["error"].as_str().expect("error");
    assert!(error.starts_with("finished_at: "), "{error}");
    assert!(error.contains("more than a day in the future"), "{error}");
}

#[tokio::test]
async fn an_alert_with_an_impossible_start_is_recorded_with_a_corrected_time_not_lost() {
    let app = spawn_app().await;
    let mut body = alertmanager("HighErrorRate", "checkout", "production", "firing");
    body["alerts"][0]["startsAt"] = json!("1900-01-01T00:00:00Z");
    let response = app.post_webhook("/webhooks/alertmanager", &body).await;
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.expect("json");
    assert_eq!(answer["recorded"], 1);
    let received = app.audited("alert.received").await;
    assert_eq!(received.len(), 1);
    let details: serde_json::Value = serde_json::from_str(&received[0].details).expect("details");
    assert_eq!(details["started_at"], "2000-01-01T00:00:00Z");
}

#[tokio::test]
async fn reposting_a_deploy_with_its_start_but_no_finish_keeps_the_recorded_finish() {
    let app = spawn_app().await;
    let first = json!({
        "service": "checkout", "environment": "production", "version": "v42",
        "started_at": "2026-11-26T10:00:00Z", "finished_at": "2026-11-26T10:04:00Z",
        "status": "failed", "author": "ada"
    });
    assert_eq!(app.post_deploy(first).await.status(), 201);
    let repost = json!({
        "service": "checkout", "environment": "production", "version": "v42",
        "started_at": "2026-11-26T10:00:00Z", "status": "succeeded"
    });
    let response = app.post_deploy(repost).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["deploy"]["status"], "succeeded");
    assert_eq!(body["deploy"]["finished_at"], "2026-11-26T10:04:00Z");
    assert_eq!(body["deploy"]["author"], "ada");

    let updated = app.audited("deploy.updated").await;
    assert_eq!(updated.len(), 1, "{updated:?}");
    let details: serde_json::Value = serde_json::from_str(&updated[0].details).expect("json");
    assert_eq!(details["changed"], json!(["status: failed → succeeded"]));
}

#[tokio::test]
async fn reposting_only_a_status_changes_nothing_else_and_an_identical_repost_is_not_audited() {
    let app = spawn_app().await;
    let first = json!({
        "service": "checkout", "environment": "production", "version": "v42",
        "started_at": "2026-11-26T10:00:00Z", "finished_at": "2026-11-26T10:04:00Z",
        "status": "succeeded"
    });
    assert_eq!(app.post_deploy(first).await.status(), 201);
    for _ in 0..2 {
        let only_status = json!({
            "service": "checkout", "environment": "production", "version": "v42",
            "status": "succeeded"
        });
        let response = app.post_deploy(only_status).await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["deploy"]["finished_at"], "2026-11-26T10:04:00Z");
    }
    assert!(app.audited("deploy.updated").await.is_empty());
}

#[tokio::test]
async fn a_started_deploy_reported_final_gets_its_finish_and_the_change_is_audited() {
    let app = spawn_app().await;
    let started = json!({"service": "checkout", "environment": "production", "version": "v50", "status": "started"});
    assert_eq!(app.post_deploy(started).await.status(), 201);
    let done = json!({"service": "checkout", "environment": "production", "version": "v50", "status": "succeeded"});
    let body: serde_json::Value = app.post_deploy(done).await.json().await.expect("json");
    assert!(body["deploy"]["finished_at"].is_string(), "{body}");
    let updated = app.audited("deploy.updated").await;
    let details: serde_json::Value = serde_json::from_str(&updated[0].details).expect("json");
    let changed = details["changed"].as_array().expect("changed");
    assert!(changed[0] == "status: started → succeeded", "{changed:?}");
    assert!(
        changed[1]
            .as_str()
            .is_some_and(|c| c.starts_with("finished_at: (none) → ")),
        "{changed:?}"
    );
}

#[tokio::test]
async fn environment_synonyms_and_service_aliases_are_accepted_and_stored_as_configured() {
    let app = spawn_app().await;
    let response = app
        .post_deploy(json!({
            "service": "checkout-svc", "environment": "prod", "version": "v7",
            "status": "succeeded"
        }))
        .await;
    assert_eq!(
        response.status(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["deploy"]["service"], "checkout");
    assert_eq!(body["deploy"]["environment"], "production");

    let by_synonym = list(&app, "service=checkout&environment=prod").await;
    assert_eq!(by_synonym["deploys"][0]["version"], "v7");
    let by_alias = list(&app, "service=checkout-svc&environment=PRD").await;
    assert_eq!(by_alias["deploys"][0]["version"], "v7");

    let unknown = app
        .post_deploy(json!({
            "service": "checkout", "environment": "moon", "version": "v7"
        }))
        .await;
    assert_eq!(unknown.status(), 422);
    let body: serde_json::Value = unknown.json().await.expect("json");
    assert_eq!(
        body["error"],
        "environment: checkout has no environment \"moon\" (known: staging, production)"
    );
}

#[tokio::test]
async fn an_alert_for_no_configured_service_is_counted_and_shown_as_not_matched() {
    let app = spawn_app().await;
    let mut body = alertmanager("LedgerDown", "ledger<!channel>", "production", "firing");
    body["alerts"][0]["labels"]["job"] = json!("ledger-exporter");
    let response = app.post_webhook("/webhooks/alertmanager", &body).await;
    assert_eq!(response.status(), 200);
    let shown = app.chat.wait_for_text("Not matched to a service").await;
    let text = shown.plain();
    assert!(text.contains("service=ledger<!channel>"), "{text}");
    assert!(text.contains("job=ledger-exporter"), "{text}");
    assert!(
        text.contains("Services I know: checkout, payments"),
        "{text}"
    );

    // A second alert of the same name joins the same thread: nothing new is posted.
    let posted_before = app.chat.messages().len();
    let mut again = alertmanager("LedgerDown", "ledger", "production", "firing");
    again["alerts"][0]["fingerprint"] = json!("another-ledger-alert");
    assert_eq!(
        app.post_webhook("/webhooks/alertmanager", &again)
            .await
            .status(),
        200
    );
    let metrics = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("breakwater_alerts_unrouted_total 2"),
        "{metrics}"
    );
    app.bot.settle().await;
    assert_eq!(app.chat.messages().len(), posted_before);
}
