//! The HTTP contract CI/CD and alerting tools rely on: the deploy registry, the alert
//! webhooks, health and metrics.

use serde_json::json;

use crate::support::{API_TOKEN, WEBHOOK_TOKEN, alertmanager, spawn_app};

fn report() -> serde_json::Value {
    json!({
        "service": "checkout",
        "environment": "production",
        "version": "v42",
        "previous_version": "v41",
        "commit": "9f3c2ab",
        "author": "ada",
        "description": "Add retry to the payment client",
        "url": "https://ci.example/builds/42",
        "started_at": "2026-11-29T02:40:00Z",
        "finished_at": "2026-11-29T02:42:00Z",
        "status": "succeeded",
        "changes": [{"commit": "9f3c2ab", "author": "ada", "message": "Add retry"}],
        "config_changes": [
            {"key": "DB_POOL_SIZE", "old": "20", "new": "2"},
            {"key": "STRIPE_SECRET_KEY", "old": "sk_live_old", "new": "sk_live_new"}
        ]
    })
}

#[tokio::test]
async fn a_deploy_report_is_recorded_with_201() {
    let app = spawn_app().await;
    let response = app.post_deploy(report()).await;
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["created"], true);
    assert_eq!(body["deploy"]["version"], "v42");
}

#[tokio::test]
async fn reposting_the_same_deploy_is_idempotent() {
    let app = spawn_app().await;
    assert_eq!(app.post_deploy(report()).await.status(), 201);
    let again = app.post_deploy(report()).await;
    assert_eq!(again.status(), 200);
    let listed: serde_json::Value = app
        .http
        .get(format!("{}/api/v1/deploys?service=checkout", app.address))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["deploys"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_started_deploy_reposted_as_succeeded_is_updated_not_duplicated() {
    let app = spawn_app().await;
    let started = json!({"service": "checkout", "environment": "production", "version": "v50", "status": "started"});
    assert_eq!(app.post_deploy(started).await.status(), 201);
    let done = json!({"service": "checkout", "environment": "production", "version": "v50", "status": "succeeded"});
    let response = app.post_deploy(done).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["deploy"]["status"], "succeeded");
}

#[tokio::test]
async fn secret_looking_config_values_are_masked_before_they_are_stored() {
    let app = spawn_app().await;
    let body: serde_json::Value = app.post_deploy(report()).await.json().await.expect("json");
    let changes = &body["deploy"]["config_changes"];
    assert_eq!(changes[0]["new"], "2");
    assert_eq!(changes[1]["new"], breakwater::core::deploy::MASKED);
    assert!(!body.to_string().contains("sk_live"));
}

#[tokio::test]
async fn the_deploy_api_refuses_requests_without_the_token() {
    let app = spawn_app().await;
    let missing = app
        .http
        .post(format!("{}/api/v1/deploys", app.address))
        .json(&report())
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 401);
    let wrong = app
        .http
        .post(format!("{}/api/v1/deploys", app.address))
        .bearer_auth("nope")
        .json(&report())
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);
    let list = app
        .http
        .get(format!("{}/api/v1/deploys", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(list.status(), 401);
}

#[tokio::test]
async fn malformed_json_is_a_400_with_the_reason() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/api/v1/deploys", app.address))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body("{\"service\": ")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("malformed JSON"),
        "{body}"
    );
}

#[tokio::test]
async fn a_missing_required_field_is_named() {
    let app = spawn_app().await;
    let response = app
        .post_deploy(json!({"service": "checkout", "environment": "production"}))
        .await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["error"].as_str().expect("error").contains("version"),
        "{body}"
    );
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_named_with_its_path() {
    let app = spawn_app().await;
    let mut bad = report();
    bad["changes"][0]["message"] = json!(42);
    let response = app.post_deploy(bad).await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("changes[0].message"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unknown_service_or_environment_is_a_422_naming_the_known_ones() {
    let app = spawn_app().await;
    let mut unknown = report();
    unknown["service"] = json!("checkuot");
    let response = app.post_deploy(unknown).await;
    assert_eq!(response.status(), 422);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("known: checkout, payments"),
        "{body}"
    );

    let mut wrong_env = report();
    wrong_env["environment"] = json!("qa");
    assert_eq!(app.post_deploy(wrong_env).await.status(), 422);
}

#[tokio::test]
async fn an_invalid_status_is_a_422() {
    let app = spawn_app().await;
    let mut bad = report();
    bad["status"] = json!("done");
    let response = app.post_deploy(bad).await;
    assert_eq!(response.status(), 422);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("status:"),
        "{body}"
    );
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_refused_with_413() {
    let app = spawn_app().await;
    let mut big = report();
    big["description"] = json!("x".repeat(1024 * 1024 + 10));
    let response = app.post_deploy(big).await;
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn deploys_are_listed_newest_first_and_filtered() {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v1", 30).await;
    app.deploy("checkout", "production", "v2", 20).await;
    app.deploy("checkout", "staging", "v3", 10).await;
    app.deploy("payments", "production", "p1", 5).await;
    let listed: serde_json::Value = app
        .http
        .get(format!(
            "{}/api/v1/deploys?service=checkout&environment=production",
            app.address
        ))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let versions: Vec<&str> = listed["deploys"]
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["version"].as_str().expect("version"))
        .collect();
    assert_eq!(versions, vec!["v2", "v1"]);
}

#[tokio::test]
async fn an_invalid_limit_is_a_400() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/api/v1/deploys?limit=lots", app.address))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn webhooks_need_the_token_as_bearer_or_basic_password() {
    let app = spawn_app().await;
    let body = alertmanager("HighErrorRate", "checkout", "production", "firing");
    let none = app
        .http
        .post(format!("{}/webhooks/alertmanager", app.address))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(none.status(), 401);
    let basic = app
        .http
        .post(format!("{}/webhooks/alertmanager", app.address))
        .basic_auth("alertmanager", Some(WEBHOOK_TOKEN))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(basic.status(), 200);
}

#[tokio::test]
async fn a_malformed_webhook_payload_is_a_400() {
    let app = spawn_app().await;
    for path in ["/webhooks/alertmanager", "/webhooks/grafana"] {
        let response = app
            .http
            .post(format!("{}{path}", app.address))
            .bearer_auth(WEBHOOK_TOKEN)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{path}");
    }
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let health = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), 200);
    let (_, ready) = app.readyz().await;
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["store"], "ok");
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
        metrics.contains("breakwater_alerts_received_total{source=\"alertmanager\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("breakwater_http_request_duration_seconds"),
        "{metrics}"
    );
}
