//! The HTTP surface: health, metrics, the deploy registry API for CI/CD, and the alert
//! webhooks. Platform endpoints (Slack, Discord, the console) are merged in by their
//! adapters. Errors follow one policy: bad input gets a 4xx whose body names the problem;
//! internal failures are logged and answered with a generic 500.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::audit::actions;
use crate::config::{Config, Secret};
use crate::core::bot::{AlertHandled, Bot};
use crate::core::deploy::{
    Change, ConfigChange, Deploy, DeploySource, DeployStatus, Environment, ServiceName, Target,
};
use crate::metrics::Metrics;
use crate::store::DeployQuery;

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub bot: Bot,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
}

/// An error answered to the client: its status and a message that names the problem.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// Logs the cause and answers a generic 500.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see breakwater's log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"breakwater\""),
            );
        }
        response
    }
}

/// The core routes; adapters' routes are merged by the application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/deploys", post(post_deploy).get(list_deploys))
        .route("/webhooks/alertmanager", post(alertmanager_webhook))
        .route("/webhooks/grafana", post(grafana_webhook))
        .with_state(state)
}

/// Wraps the whole router (core and adapters): body limit, request metrics.
pub fn finish(router: Router, metrics: Arc<Metrics>) -> Router {
    router
        .layer(middleware::from_fn_with_state(metrics, record_metrics))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

async fn record_metrics(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.http_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let store_ok = state.bot.store().ping().await.is_ok();
    let mut chats = serde_json::Map::new();
    let mut problems = serde_json::Map::new();
    for chat in state.bot.chats().all() {
        let platform = chat.platform().to_string();
        let status = chat.status();
        if let Some(reason) = status.reason() {
            problems.insert(platform.clone(), json!(reason));
        }
        chats.insert(platform, json!(status.label()));
    }
    let ready = store_ok && chats.values().all(|v| v == "connected");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": ready,
        "store": if store_ok { "ok" } else { "unreachable" },
        "chat": chats,
        "problems": problems,
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    state
        .metrics
        .set_rollbacks_running(state.bot.rollbacks_running());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// Constant-time comparison of a presented token with the configured one.
fn token_matches(presented: &str, expected: &Secret) -> bool {
    presented
        .as_bytes()
        .ct_eq(expected.expose().as_bytes())
        .into()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn basic_password(headers: &HeaderMap) -> Option<String> {
    let encoded = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

fn require_api_token(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.config.api.token else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the deploy API is off: set api.token in breakwater's configuration",
        ));
    };
    match bearer(headers) {
        Some(token) if token_matches(token, expected) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("invalid bearer token")),
        None => Err(ApiError::unauthorized(
            "missing Authorization: Bearer <api.token>",
        )),
    }
}

fn require_webhook_token(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.config.webhooks.token else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "alert webhooks are off: set webhooks.token in breakwater's configuration",
        ));
    };
    let presented = bearer(headers)
        .map(str::to_owned)
        .or_else(|| basic_password(headers));
    match presented {
        Some(token) if token_matches(&token, expected) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("invalid webhook token")),
        None => Err(ApiError::unauthorized(
            "missing Authorization (bearer token or basic-auth password = webhooks.token)",
        )),
    }
}

/// Parses JSON and names the failing field: `changes[2].message: invalid type: …`.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.inner();
        let syntax = matches!(
            inner.classify(),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
        );
        if syntax || path == "." || path.is_empty() {
            ApiError::bad_request(format!("malformed JSON: {inner}"))
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })
}

// --- deploy registry ---------------------------------------------------------------------

/// The deploy report CI/CD posts (DESIGN.md "Deploy report").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployReport {
    pub service: String,
    pub environment: String,
    pub version: String,
    #[serde(default)]
    pub previous_version: Option<String>,
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub changes: Vec<Change>,
    #[serde(default)]
    pub config_changes: Vec<ConfigChange>,
}

fn nonempty(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value.map(|v| v.trim().to_owned()) {
        Some(v) if v.is_empty() => Err(ApiError::unprocessable(format!(
            "{field}: must not be empty when given"
        ))),
        Some(v) if v.chars().count() > max => Err(ApiError::unprocessable(format!(
            "{field}: longer than {max} characters"
        ))),
        other => Ok(other),
    }
}

/// Checks a report against the configured services and turns it into a deploy.
fn validate_report(
    config: &Config,
    report: DeployReport,
    received_at: DateTime<Utc>,
) -> Result<Deploy, ApiError> {
    let service = ServiceName::parse(&report.service)
        .map_err(|e| ApiError::unprocessable(format!("service: {e}")))?;
    let environment = Environment::parse(&report.environment)
        .map_err(|e| ApiError::unprocessable(format!("environment: {e}")))?;
    let Some(configured) = config.service(&service) else {
        let known: Vec<String> = config.services.iter().map(|s| s.name.to_string()).collect();
        return Err(ApiError::unprocessable(format!(
            "service: {service:?} is not configured in breakwater (known: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    };
    if !configured.environments.contains(&environment) {
        return Err(ApiError::unprocessable(format!(
            "environment: {service} has no environment {environment:?} (known: {})",
            configured
                .environments
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let version = report.version.trim().to_owned();
    if version.is_empty() || version.chars().count() > 200 {
        return Err(ApiError::unprocessable("version: must be 1–200 characters"));
    }
    let status = match report.status.as_deref() {
        None => DeployStatus::Succeeded,
        Some(raw) => DeployStatus::parse(raw).ok_or_else(|| {
            ApiError::unprocessable(format!(
                "status: {raw:?} must be one of started, succeeded, failed"
            ))
        })?,
    };
    if let Some(url) = &report.url {
        match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            _ => {
                return Err(ApiError::unprocessable(format!(
                    "url: {url:?} is not an http(s) URL"
                )));
            }
        }
    }
    if let (Some(started), Some(finished)) = (report.started_at, report.finished_at)
        && finished < started
    {
        return Err(ApiError::unprocessable("finished_at: is before started_at"));
    }
    if report.changes.len() > 1000 {
        return Err(ApiError::unprocessable("changes: more than 1000 entries"));
    }
    for (i, change) in report.config_changes.iter().enumerate() {
        if change.key.trim().is_empty() {
            return Err(ApiError::unprocessable(format!(
                "config_changes[{i}].key: must not be empty"
            )));
        }
    }
    let started_at = report
        .started_at
        .or(report.finished_at)
        .unwrap_or(received_at);
    let finished_at = match status {
        DeployStatus::Started => report.finished_at,
        DeployStatus::Succeeded | DeployStatus::Failed => {
            report.finished_at.or(Some(received_at.max(started_at)))
        }
    };
    Ok(Deploy {
        target: Target::new(configured.name.clone(), environment),
        version,
        previous_version: nonempty("previous_version", report.previous_version, 200)?,
        revision: None,
        commit: nonempty("commit", report.commit, 100)?,
        author: nonempty("author", report.author, 200)?,
        description: nonempty("description", report.description, 2000)?,
        url: report.url,
        started_at,
        finished_at,
        status,
        changes: report.changes,
        config_changes: report.config_changes,
        source: DeploySource::Api,
    }
    .with_secrets_masked())
}

async fn post_deploy(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_api_token(&state, &headers)?;
    let report: DeployReport = parse_json(&body)?;
    let explicit_start = report.started_at.is_some() || report.finished_at.is_some();
    let now = Utc::now();
    let mut deploy = validate_report(&state.config, report, now)?;
    // A re-post without times (CI reporting "started" then "succeeded") updates the
    // newest deploy of that version instead of adding another.
    if !explicit_start
        && let Some(existing) = state
            .bot
            .store()
            .latest_deploy_of_version(&deploy.target, &deploy.version)
            .await
            .map_err(ApiError::internal)?
    {
        deploy.started_at = existing.started_at;
        if deploy.status == DeployStatus::Succeeded && existing.finished_at.is_some() {
            deploy.finished_at = existing.finished_at;
        }
    }
    let recorded = state
        .bot
        .store()
        .record_deploy(&deploy)
        .await
        .map_err(ApiError::internal)?;
    if recorded.created {
        let audit = state.bot.audit();
        audit
            .append(
                audit
                    .entry(actions::DEPLOY_RECORDED)
                    .target(&recorded.deploy.target)
                    .details(json!({
                        "deploy": recorded.id,
                        "version": recorded.deploy.version,
                        "status": recorded.deploy.status.as_str(),
                        "author": recorded.deploy.author,
                        "commit": recorded.deploy.commit,
                    })),
            )
            .await
            .map_err(ApiError::internal)?;
    }
    let status = if recorded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(
            json!({ "id": recorded.id, "created": recorded.created, "deploy": recorded.deploy }),
        ),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct DeployListQuery {
    service: Option<String>,
    environment: Option<String>,
    limit: Option<String>,
}

async fn list_deploys(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<DeployListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_api_token(&state, &headers)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let service = match query.service.as_deref().filter(|s| !s.is_empty()) {
        Some(raw) => Some(
            ServiceName::parse(raw).map_err(|e| ApiError::bad_request(format!("service: {e}")))?,
        ),
        None => None,
    };
    let environment = match query.environment.as_deref().filter(|s| !s.is_empty()) {
        Some(raw) => Some(
            Environment::parse(raw)
                .map_err(|e| ApiError::bad_request(format!("environment: {e}")))?,
        ),
        None => None,
    };
    let limit = match query.limit.as_deref() {
        None | Some("") => 20,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=500).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit: {raw:?} must be a number from 1 to 500"
                )));
            }
        },
    };
    let deploys = state
        .bot
        .store()
        .deploys(&DeployQuery {
            service,
            environment,
            limit,
            ..DeployQuery::default()
        })
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(json!({ "deploys": deploys })).into_response())
}

// --- alert webhooks ----------------------------------------------------------------------

async fn alertmanager_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_webhook_token(&state, &headers)?;
    let alerts = crate::alerts::parse_alertmanager(&body)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    receive_alerts(&state, alerts).await
}

async fn grafana_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_webhook_token(&state, &headers)?;
    let alerts =
        crate::alerts::parse_grafana(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    receive_alerts(&state, alerts).await
}

async fn receive_alerts(
    state: &AppState,
    alerts: Vec<crate::core::alert::Alert>,
) -> Result<Response, ApiError> {
    let received = alerts.len();
    let handled = state
        .bot
        .handle_webhook_alerts(alerts)
        .await
        .map_err(ApiError::internal)?;
    let recorded = handled
        .iter()
        .filter(|h| matches!(h, AlertHandled::Recorded { .. }))
        .count();
    Ok(axum::Json(json!({ "received": received, "recorded": recorded })).into_response())
}
