//! Deploy events straight from GitHub, GitLab and Flux: signed deliveries shaped as each
//! system's documentation shows them, recorded like deploy reports, idempotent on
//! redelivery, and never dropped when they match no service.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde_json::json;

use crate::support::{API_TOKEN, AppOptions, TestApp, spawn_app, spawn_app_with};

const GITHUB_SECRET: &str = "github-webhook-secret-0123456789";
const GITLAB_TOKEN: &str = "gitlab-webhook-token-0123456789";
const FLUX_SECRET: &str = "flux-hmac-token-0123456789";
const SHA: &str = "9f3c2ab0c4d5e6f708192a3b4c5d6e7f80912a3b";

/// Every source on. `checkout` (from the base configuration) is found by its name;
/// `storefront` only through its explicit keys.
const SOURCES_CONFIG: &str = r#"
[sources.github]
secret = { file = "github_secret" }

[sources.gitlab]
token = { file = "gitlab_token" }

[sources.flux]
secret = { file = "flux_secret" }

[[services]]
name = "storefront"
environments = ["staging", "production"]
backend = "deployer"
github_repository = "acme/storefront-web"
gitlab_project = "acme/shop/storefront-web"
flux_helmrelease = "apps/storefront-{environment}"
"#;

async fn spawn_with_sources() -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    for (file, secret) in [
        ("github_secret", GITHUB_SECRET),
        ("gitlab_token", GITLAB_TOKEN),
        ("flux_secret", FLUX_SECRET),
    ] {
        std::fs::write(dir.path().join(file), secret).expect("write secret");
    }
    spawn_app_with(AppOptions {
        extra_config: SOURCES_CONFIG.to_owned(),
        dir: Some(dir),
        ..AppOptions::default()
    })
    .await
}

/// A time `minutes` ago in whole seconds, as the sources write their times.
fn ago(minutes: i64) -> DateTime<Utc> {
    (Utc::now() - Duration::minutes(minutes)).trunc_subsecs(0)
}

fn sign(secret: &str, body: &[u8]) -> String {
    breakwater::backends::webhook::signature(secret.as_bytes(), body)
}

/// A `deployment_status` webhook as GitHub sends it.
fn github_status(
    repository: &str,
    state: &str,
    environment: &str,
    created: DateTime<Utc>,
    status_at: DateTime<Utc>,
) -> serde_json::Value {
    json!({
        "action": "created",
        "deployment_status": {
            "url": format!("https://api.github.com/repos/{repository}/deployments/42/statuses/7"),
            "id": 7,
            "node_id": "DES_kwDOAbCdEs4AAAAB",
            "state": state,
            "creator": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
            "description": "",
            "environment": environment,
            "target_url": format!("https://github.com/{repository}/actions/runs/900"),
            "log_url": format!("https://github.com/{repository}/actions/runs/900/job/901"),
            "created_at": status_at,
            "updated_at": status_at,
            "deployment_url": format!("https://api.github.com/repos/{repository}/deployments/42"),
            "repository_url": format!("https://api.github.com/repos/{repository}")
        },
        "deployment": {
            "url": format!("https://api.github.com/repos/{repository}/deployments/42"),
            "id": 42,
            "node_id": "DE_kwDOAbCdEs4AAAAA",
            "sha": SHA,
            "ref": "main",
            "task": "deploy",
            "payload": {},
            "original_environment": environment,
            "environment": environment,
            "description": null,
            "creator": {"login": "ada", "id": 1, "type": "User"},
            "created_at": created,
            "updated_at": status_at,
            "statuses_url": format!("https://api.github.com/repos/{repository}/deployments/42/statuses"),
            "repository_url": format!("https://api.github.com/repos/{repository}")
        },
        "repository": {
            "id": 5,
            "name": repository.rsplit('/').next(),
            "full_name": repository,
            "html_url": format!("https://github.com/{repository}")
        },
        "sender": {"login": "ada", "id": 1, "type": "User"}
    })
}

/// A GitLab deployment event (`X-Gitlab-Event: Deployment Hook`).
fn gitlab_deployment(status: &str, changed_at: &str) -> serde_json::Value {
    json!({
        "object_kind": "deployment",
        "status": status,
        "status_changed_at": changed_at,
        "deployment_id": 15,
        "deployable_id": 796,
        "deployable_url": "https://gitlab.example/acme/shop/storefront-web/-/jobs/796",
        "environment": "prod",
        "environment_tier": "production",
        "environment_slug": "prod",
        "environment_external_url": "https://shop.example",
        "project": {
            "id": 30,
            "name": "storefront-web",
            "description": "",
            "web_url": "https://gitlab.example/acme/shop/storefront-web",
            "path_with_namespace": "acme/shop/storefront-web",
            "default_branch": "main"
        },
        "short_sha": "279484c0",
        "user": {"id": 1, "name": "Grace", "username": "grace", "email": "[REDACTED]"},
        "user_url": "https://gitlab.example/grace",
        "commit_url": "https://gitlab.example/acme/shop/storefront-web/-/commit/279484c09fbe69ededfced8c1bb6e6d24616b468",
        "commit_title": "Cache the catalogue"
    })
}

/// A Flux event as notification-controller's generic-hmac provider posts it.
fn flux_event(
    kind: &str,
    namespace: &str,
    name: &str,
    reason: &str,
    revision: &str,
    at: DateTime<Utc>,
) -> serde_json::Value {
    let (group, controller) = if kind == "HelmRelease" {
        ("helm.toolkit.fluxcd.io", "helm-controller")
    } else {
        ("kustomize.toolkit.fluxcd.io", "kustomize-controller")
    };
    json!({
        "involvedObject": {
            "apiVersion": format!("{group}/v2"),
            "kind": kind,
            "name": name,
            "namespace": namespace,
            "uid": "7d0cdc51-ddcf-4743-b223-83ca5c699632",
            "resourceVersion": "81736"
        },
        "metadata": {format!("{group}/revision"): revision},
        "severity": if reason.ends_with("Failed") { "error" } else { "info" },
        "reason": reason,
        "message": format!("Helm upgrade succeeded for release {namespace}/{name}.v4 with chart storefront@{revision}"),
        "reportingController": controller,
        "reportingInstance": format!("{controller}-7c7b47f5f-8bhrp"),
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    })
}

impl TestApp {
    async fn post_github(&self, event: &str, body: &serde_json::Value) -> reqwest::Response {
        let body = serde_json::to_vec(body).expect("json");
        self.http
            .post(format!("{}/webhooks/github", self.address))
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
            .header("X-Hub-Signature-256", sign(GITHUB_SECRET, &body))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    async fn post_gitlab(&self, token: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}/webhooks/gitlab", self.address))
            .header("X-Gitlab-Event", "Deployment Hook")
            .header("X-Gitlab-Token", token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    async fn post_flux(&self, body: &serde_json::Value) -> reqwest::Response {
        let body = serde_json::to_vec(body).expect("json");
        self.http
            .post(format!("{}/webhooks/flux", self.address))
            .header("Gotk-Component", "helm-controller")
            .header("X-Signature", sign(FLUX_SECRET, &body))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    async fn deploys_of(&self, service: &str) -> Vec<serde_json::Value> {
        let listed: serde_json::Value = self
            .http
            .get(format!("{}/api/v1/deploys?service={service}", self.address))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        listed["deploys"].as_array().cloned().unwrap_or_default()
    }

    async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("text")
    }
}

async fn json_of(response: reqwest::Response) -> serde_json::Value {
    response.json().await.expect("json body")
}

#[tokio::test]
async fn a_github_deployment_status_is_recorded_as_a_deploy_of_its_repository() {
    let app = spawn_with_sources().await;
    let created = ago(10);
    let body = github_status(
        "acme/checkout",
        "success",
        "production",
        created,
        created + Duration::minutes(2),
    );
    let response = app.post_github("deployment_status", &body).await;
    assert_eq!(response.status(), 201);
    let deploys = app.deploys_of("checkout").await;
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    let deploy = &deploys[0];
    assert_eq!(deploy["environment"], "production");
    assert_eq!(deploy["version"], "main@9f3c2ab");
    assert_eq!(deploy["commit"], SHA);
    assert_eq!(deploy["author"], "ada");
    assert_eq!(deploy["status"], "succeeded");
    assert_eq!(deploy["source"], "github");
    assert_eq!(
        deploy["url"],
        "https://github.com/acme/checkout/actions/runs/900/job/901"
    );
    let audited = app.audited("deploy.recorded").await;
    assert!(
        audited[0].details.contains("\"source\":\"github\""),
        "{}",
        audited[0].details
    );
}

#[tokio::test]
async fn github_statuses_of_one_deployment_update_one_deploy_and_redelivery_changes_nothing() {
    let app = spawn_with_sources().await;
    let created = ago(10);
    let finished = created + Duration::minutes(3);
    let running = github_status(
        "acme/storefront-web",
        "in_progress",
        "production",
        created,
        created,
    );
    let success = github_status(
        "acme/storefront-web",
        "success",
        "production",
        created,
        finished,
    );
    assert_eq!(
        app.post_github("deployment_status", &running)
            .await
            .status(),
        201
    );
    assert_eq!(
        app.post_github("deployment_status", &success)
            .await
            .status(),
        200
    );
    let redelivered = app.post_github("deployment_status", &success).await;
    assert_eq!(redelivered.status(), 200);
    // A late in_progress does not reopen the finished deploy.
    assert_eq!(
        app.post_github("deployment_status", &running)
            .await
            .status(),
        200
    );
    let deploys = app.deploys_of("storefront").await;
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(deploys[0]["status"], "succeeded");
    let recorded: DateTime<Utc> =
        serde_json::from_value(deploys[0]["finished_at"].clone()).expect("finished_at");
    assert_eq!(recorded.timestamp(), finished.timestamp());
    assert_eq!(app.audited("deploy.recorded").await.len(), 1);
    assert_eq!(app.audited("deploy.updated").await.len(), 1);
}

#[tokio::test]
async fn a_github_delivery_with_a_forged_or_missing_signature_is_refused_with_401() {
    let app = spawn_with_sources().await;
    let now = ago(0);
    let body = serde_json::to_vec(&github_status(
        "acme/checkout",
        "success",
        "production",
        now,
        now,
    ))
    .expect("json");
    for signature in [
        Some(sign("another-secret-0123456789", &body)),
        Some("sha256=not-hex".to_owned()),
        None,
    ] {
        let mut request = app
            .http
            .post(format!("{}/webhooks/github", app.address))
            .header("X-GitHub-Event", "deployment_status")
            .body(body.clone());
        if let Some(signature) = &signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 401, "{signature:?}");
        let answer = json_of(response).await;
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or("")
                .contains("X-Hub-Signature-256"),
            "{answer}"
        );
    }
    assert!(app.deploys_of("checkout").await.is_empty());
}

#[tokio::test]
async fn github_ping_is_answered_and_other_events_are_ignored_with_a_reason() {
    let app = spawn_with_sources().await;
    let ping = json!({"zen": "Design for failure.", "hook_id": 1, "hook": {"type": "Repository", "events": ["deployment", "deployment_status"]}});
    let response = app.post_github("ping", &ping).await;
    assert_eq!(response.status(), 200);
    assert_eq!(json_of(response).await["status"], "pong");
    let queued = github_status("acme/checkout", "queued", "production", ago(0), ago(0));
    let response = app.post_github("deployment_status", &queued).await;
    assert_eq!(response.status(), 202);
    let answer = json_of(response).await;
    assert_eq!(answer["status"], "ignored");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap_or("")
            .contains("not started yet"),
        "{answer}"
    );
    assert!(app.deploys_of("checkout").await.is_empty());
}

#[tokio::test]
async fn a_malformed_github_payload_is_a_400_naming_the_field() {
    let app = spawn_with_sources().await;
    let mut body = github_status("acme/checkout", "success", "production", ago(0), ago(0));
    body["deployment"]["created_at"] = json!("yesterday");
    let response = app.post_github("deployment_status", &body).await;
    assert_eq!(response.status(), 400);
    let answer = json_of(response).await;
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("deployment.created_at"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_gitlab_deployment_is_recorded_once_from_running_to_success() {
    let app = spawn_with_sources().await;
    let started = (ago(6)).format("%Y-%m-%d %H:%M:%S +0000").to_string();
    let finished = (ago(4)).format("%Y-%m-%d %H:%M:%S +0000").to_string();
    let running = app
        .post_gitlab(GITLAB_TOKEN, &gitlab_deployment("running", &started))
        .await;
    assert_eq!(running.status(), 201);
    let success = gitlab_deployment("success", &finished);
    assert_eq!(app.post_gitlab(GITLAB_TOKEN, &success).await.status(), 200);
    assert_eq!(app.post_gitlab(GITLAB_TOKEN, &success).await.status(), 200);
    let deploys = app.deploys_of("storefront").await;
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    let deploy = &deploys[0];
    // "prod" is the configured "production".
    assert_eq!(deploy["environment"], "production");
    assert_eq!(deploy["status"], "succeeded");
    assert_eq!(deploy["commit"], "279484c09fbe69ededfced8c1bb6e6d24616b468");
    assert_eq!(deploy["author"], "grace");
    assert_eq!(deploy["changes"][0]["message"], "Cache the catalogue");
    assert_eq!(deploy["source"], "gitlab");
}

#[tokio::test]
async fn a_gitlab_event_with_a_wrong_token_is_refused_with_401() {
    let app = spawn_with_sources().await;
    let body = gitlab_deployment("success", "2026-11-29 02:42:00 +0000");
    let response = app.post_gitlab("wrong-token-0123456789", &body).await;
    assert_eq!(response.status(), 401);
    assert!(app.deploys_of("storefront").await.is_empty());
}

#[tokio::test]
async fn a_flux_helmrelease_upgrade_is_recorded_in_the_environment_its_key_names() {
    let app = spawn_with_sources().await;
    let at = ago(3);
    let body = flux_event(
        "HelmRelease",
        "apps",
        "storefront-staging",
        "UpgradeSucceeded",
        "6.0.1",
        at,
    );
    let response = app.post_flux(&body).await;
    assert_eq!(
        response.status(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let deploys = app.deploys_of("storefront").await;
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(deploys[0]["environment"], "staging");
    assert_eq!(deploys[0]["version"], "6.0.1");
    assert_eq!(deploys[0]["author"], "Flux helm-controller");
    assert_eq!(deploys[0]["source"], "flux");
}

#[tokio::test]
async fn a_repeated_flux_success_does_not_move_the_deploy_forward() {
    let app = spawn_with_sources().await;
    let first = ago(30);
    let revision = "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1";
    let reconciled = |at| {
        flux_event(
            "Kustomization",
            "production",
            "checkout",
            "ReconciliationSucceeded",
            revision,
            at,
        )
    };
    assert_eq!(app.post_flux(&reconciled(first)).await.status(), 201);
    let again = app.post_flux(&reconciled(ago(1))).await;
    assert_eq!(again.status(), 200);
    let deploys = app.deploys_of("checkout").await;
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(deploys[0]["version"], "main@731f7ea");
    assert_eq!(deploys[0]["environment"], "production");
    let finished: DateTime<Utc> =
        serde_json::from_value(deploys[0]["finished_at"].clone()).expect("finished_at");
    assert_eq!(finished.timestamp(), first.timestamp());
}

#[tokio::test]
async fn flux_progress_events_are_acknowledged_without_a_deploy() {
    let app = spawn_with_sources().await;
    let body = flux_event(
        "Kustomization",
        "production",
        "checkout",
        "Progressing",
        "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
        Utc::now(),
    );
    let response = app.post_flux(&body).await;
    assert_eq!(response.status(), 202);
    assert_eq!(json_of(response).await["status"], "ignored");
    assert!(app.deploys_of("checkout").await.is_empty());
}

#[tokio::test]
async fn a_flux_event_signed_with_another_token_is_refused_with_401() {
    let app = spawn_with_sources().await;
    let body = serde_json::to_vec(&flux_event(
        "Kustomization",
        "production",
        "checkout",
        "ReconciliationSucceeded",
        "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
        Utc::now(),
    ))
    .expect("json");
    let response = app
        .http
        .post(format!("{}/webhooks/flux", app.address))
        .header("X-Signature", sign("not-the-flux-token-0123", &body))
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    assert!(app.deploys_of("checkout").await.is_empty());
}

#[tokio::test]
async fn an_event_for_no_configured_service_is_audited_and_counted_as_unrouted() {
    let app = spawn_with_sources().await;
    let now = ago(0);
    let body = github_status("acme/ledger", "success", "production", now, now);
    let response = app.post_github("deployment_status", &body).await;
    assert_eq!(response.status(), 202);
    let answer = json_of(response).await;
    assert_eq!(answer["status"], "unrouted");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap_or("")
            .contains("github_repository = \"acme/ledger\""),
        "{answer}"
    );
    let audited = app.audited("deploy_event.unrouted").await;
    assert_eq!(audited.len(), 1);
    let details: serde_json::Value = serde_json::from_str(&audited[0].details).expect("details");
    assert_eq!(details["source"], "github");
    assert_eq!(details["seen"]["repository"], "acme/ledger");
    assert_eq!(details["seen"]["environment"], "production");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("breakwater_deploy_events_unrouted_total{source=\"github\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("breakwater_deploy_events_received_total{source=\"github\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_event_for_an_unknown_environment_is_unrouted_naming_the_known_ones() {
    let app = spawn_with_sources().await;
    let now = ago(0);
    let body = github_status("acme/checkout", "success", "qa-7", now, now);
    let response = app.post_github("deployment_status", &body).await;
    assert_eq!(response.status(), 202);
    let reason = json_of(response).await["reason"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(reason.contains("staging, production"), "{reason}");
    assert_eq!(app.audited("deploy_event.unrouted").await.len(), 1);
}

#[tokio::test]
async fn a_source_that_is_not_configured_answers_404_naming_its_key() {
    let app = spawn_app().await;
    for (path, key) in [
        ("/webhooks/github", "sources.github.secret"),
        ("/webhooks/gitlab", "sources.gitlab.token"),
        ("/webhooks/flux", "sources.flux.secret"),
        ("/webhooks/flagger/events", "sources.flagger.token"),
        ("/webhooks/flagger/rollback", "sources.flagger.token"),
    ] {
        let response = app
            .http
            .post(format!("{}{path}", app.address))
            .body("{}")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 404, "{path}");
        let answer = json_of(response).await;
        assert!(
            answer["error"].as_str().unwrap_or("").contains(key),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn a_deploy_from_github_appears_in_the_next_alert_summary_with_its_commit() {
    let app = spawn_with_sources().await;
    let created = ago(12);
    let body = github_status(
        "acme/checkout",
        "success",
        "production",
        created,
        created + Duration::minutes(2),
    );
    assert_eq!(
        app.post_github("deployment_status", &body).await.status(),
        201
    );
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;
    let text = summary.plain();
    assert!(text.contains("main@9f3c2ab"), "{text}");
    assert!(text.contains("by ada"), "{text}");
    assert!(text.contains(&SHA[..12]), "{text}");
}

/// The Argo CD notifications shipped in deploy/argocd post deploy reports to the deploy
/// API with the api.token on both triggers.
#[test]
fn the_argocd_notifications_post_deploy_reports_on_deployed_and_on_sync_failed() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/argocd/notifications.yaml"
    );
    let text = std::fs::read_to_string(path).expect("read deploy/argocd/notifications.yaml");
    let config_map: serde_json::Value = serde_norway::from_str(&text).expect("YAML");
    assert_eq!(config_map["kind"], "ConfigMap");
    assert_eq!(config_map["metadata"]["name"], "argocd-notifications-cm");
    let data = &config_map["data"];
    let nested = |key: &str| -> serde_json::Value {
        let text = data[key]
            .as_str()
            .unwrap_or_else(|| panic!("data has no {key}"));
        serde_norway::from_str(text).unwrap_or_else(|e| panic!("{key}: {e}"))
    };
    let service = nested("service.webhook.breakwater");
    assert!(
        service["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .any(|h| h["name"] == "Authorization" && h["value"] == "Bearer $breakwater-api-token"),
        "{service}"
    );
    for (trigger, template, status) in [
        ("on-deployed", "breakwater-deployed", "succeeded"),
        ("on-sync-failed", "breakwater-sync-failed", "failed"),
    ] {
        let conditions = nested(&format!("trigger.{trigger}"));
        assert_eq!(conditions[0]["send"][0], template, "{conditions}");
        let hook = &nested(&format!("template.{template}"))["webhook"]["breakwater"];
        assert_eq!(hook["method"], "POST");
        assert_eq!(hook["path"], "/api/v1/deploys");
        let body = hook["body"].as_str().expect("body");
        for field in [
            "\"service\"",
            "\"environment\"",
            "\"version\"",
            "\"started_at\"",
        ] {
            assert!(body.contains(field), "{field} missing from {body}");
        }
        assert!(
            body.contains(&format!("\"status\": \"{status}\"")),
            "{body}"
        );
        assert!(body.contains("\"source\": \"argocd\""), "{body}");
    }
}

#[tokio::test]
async fn a_gitlab_event_with_an_unknown_status_is_a_422_naming_it() {
    let app = spawn_with_sources().await;
    let body = gitlab_deployment("exploded", "2026-11-29 02:42:00 +0000");
    let response = app.post_gitlab(GITLAB_TOKEN, &body).await;
    assert_eq!(response.status(), 422);
    let answer = json_of(response).await;
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("\"exploded\""),
        "{answer}"
    );
}

/// The database is cut (a proxy in front of PostgreSQL): the event is refused with 503 and
/// Retry-After, so GitHub shows a failed delivery to redeliver, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_event_while_the_database_is_down_is_refused_with_503_and_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("github_secret"), GITHUB_SECRET).expect("write secret");
    std::fs::write(dir.path().join("gitlab_token"), GITLAB_TOKEN).expect("write secret");
    std::fs::write(dir.path().join("flux_secret"), FLUX_SECRET).expect("write secret");
    let options = AppOptions {
        extra_config: SOURCES_CONFIG.to_owned(),
        dir: Some(dir),
        ..AppOptions::default()
    };
    let Some(outage) = crate::outage::spawn_behind_proxy_with(options, None).await else {
        return;
    };
    let created = ago(5);
    let body = github_status("acme/checkout", "success", "production", created, created);
    outage.proxy.cut();
    let refused = outage.app.post_github("deployment_status", &body).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    outage.proxy.restore().await;
    outage.wait_until_ready().await;
    let redelivered = outage.app.post_github("deployment_status", &body).await;
    assert_eq!(redelivered.status(), 201);
    outage.finish().await;
}

/// The Argo CD notifications template says `"source": "argocd"`, so its deploys are told
/// apart from CI reports; a report without it stays `api`, and an unknown source is a 422.
#[tokio::test]
async fn a_deploy_report_from_the_argocd_notifications_is_stored_with_its_source() {
    let app = spawn_with_sources().await;
    let started = ago(8);
    let report = |version: &str, source: Option<&str>| {
        let mut body = json!({
            "service": "checkout",
            "environment": "production",
            "version": version,
            "author": "Argo CD auto-sync",
            "description": "Argo CD sync of checkout-production",
            "started_at": started.to_rfc3339(),
            "status": "succeeded"
        });
        if let Some(source) = source {
            body["source"] = json!(source);
        }
        body
    };
    assert_eq!(
        app.post_deploy(report("v2.0.0", Some("argocd")))
            .await
            .status(),
        201
    );
    assert_eq!(app.post_deploy(report("v2.0.1", None)).await.status(), 201);
    let refused = app.post_deploy(report("v2.0.2", Some("jenkins"))).await;
    assert_eq!(refused.status(), 422);
    let answer = json_of(refused).await;
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("source: \"jenkins\""),
        "{answer}"
    );

    let deploys = app.deploys_of("checkout").await;
    let source_of = |version: &str| {
        deploys
            .iter()
            .find(|d| d["version"] == version)
            .map(|d| d["source"].clone())
    };
    assert_eq!(source_of("v2.0.0"), Some(json!("argocd")), "{deploys:?}");
    assert_eq!(source_of("v2.0.1"), Some(json!("api")), "{deploys:?}");
    assert_eq!(source_of("v2.0.2"), None, "{deploys:?}");
    let audited = app.audited("deploy.recorded").await;
    assert!(
        audited
            .iter()
            .any(|a| a.details.contains("\"source\":\"argocd\"")),
        "{audited:?}"
    );
}

#[tokio::test]
async fn a_flagger_canary_run_is_stored_with_its_source() {
    const TOKEN: &str = "flagger-webhook-token-0123456789";
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("flagger_token"), TOKEN).expect("write token");
    let app = spawn_app_with(AppOptions {
        extra_config: "[sources.flagger]\ntoken = { file = \"flagger_token\" }\n".to_owned(),
        dir: Some(dir),
        ..AppOptions::default()
    })
    .await;
    let body = json!({
        "name": "checkout",
        "namespace": "production",
        "phase": "Progressing",
        "checksum": "5d7f8c9b6c",
        "metadata": {
            "eventMessage": "Starting canary analysis for checkout.production",
            "eventType": "Normal",
            "timestamp": ago(5).timestamp_millis().to_string()
        }
    });
    let response = app
        .http
        .post(format!(
            "{}/webhooks/flagger/events?token={TOKEN}",
            app.address
        ))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    let deploys = app.deploys_of("checkout").await;
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(deploys[0]["source"], "flagger");
}
