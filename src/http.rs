//! The HTTP surface: health, metrics, the deploy registry API for CI/CD, and the alert
//! webhooks. Platform endpoints (Slack, Discord, the console) are merged in by their
//! adapters. Errors follow one policy: bad input gets a 4xx whose body names the problem;
//! internal failures are logged and answered with a generic 500, and so is a panicking
//! handler; a database that is unavailable is answered 503 with `Retry-After` and a
//! message naming `database.url` (logged once per outage, not once per request).
//! [`serve`] runs the router with header-read and idle timeouts and a cap on open
//! connections, because `axum::serve` has none and idle clients can exhaust the
//! process's file descriptors.

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
    /// Seconds a client should wait before retrying (503 only).
    retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
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

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What the client is told, in words.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Seconds to wait before retrying, for 503s.
    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after
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

/// How long clients are asked to wait when the database is unavailable.
pub const STORE_RETRY_AFTER_SECS: u32 = 5;

/// How long `/readyz` waits for the database to answer before calling it unreachable.
pub const READY_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl ApiError {
    /// A store failure: 503 with `Retry-After` and the reason when the database is
    /// unavailable (logged once per outage, not per request), else a logged generic 500.
    pub fn store(error: crate::store::StoreError) -> Self {
        if error.is_unavailable() {
            crate::store::log_unavailable(&error);
            Self::unavailable(error.to_string())
        } else {
            Self::internal(error)
        }
    }

    /// A bot failure, mapped like [`ApiError::store`].
    pub fn bot(error: crate::core::bot::BotError) -> Self {
        match error {
            crate::core::bot::BotError::Store(error) => Self::store(error),
            full @ crate::core::bot::BotError::AlertHoldFull(_) => {
                tracing::warn!(error = %full, "refusing alerts: the hold for the unavailable database is full");
                Self::unavailable(full.to_string())
            }
        }
    }

    /// 503 with `Retry-After`: try again shortly.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(STORE_RETRY_AFTER_SECS),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
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
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/deploys", post(post_deploy).get(list_deploys))
        .route("/webhooks/alertmanager", post(alertmanager_webhook))
        .route("/webhooks/grafana", post(grafana_webhook))
        .route("/webhooks/github", post(github_webhook))
        .route("/webhooks/gitlab", post(gitlab_webhook))
        .route("/webhooks/flux", post(flux_webhook))
        .route("/webhooks/flagger/events", post(flagger_events))
        .route("/webhooks/flagger/rollback", post(flagger_rollback))
        .with_state(state)
}

/// Wraps the whole router (core and adapters): panic catching, body limit, request
/// metrics.
pub fn finish(router: Router, metrics: Arc<Metrics>) -> Router {
    router
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            answer_panic as fn(Box<dyn std::any::Any + Send + 'static>) -> Response,
        ))
        .layer(middleware::from_fn_with_state(metrics, record_metrics))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

/// A bug in one handler costs that one response: the panic is logged and answered with
/// a 500 instead of dropping the connection (and every request pipelined on it).
fn answer_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    tracing::error!(panic = %message, "a request handler panicked; answered 500");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see breakwater's log",
    )
    .into_response()
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

/// `GET /`: people who open breakwater's address land in the console when there is one;
/// otherwise a short index says what is served here.
async fn index(State(state): State<AppState>) -> Response {
    if state.config.console.enabled {
        return (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/console"),
                (header::CACHE_CONTROL, "no-store"),
            ],
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        concat!(
            "breakwater ",
            env!("CARGO_PKG_VERSION"),
            "\n\nGET /healthz   liveness\nGET /readyz    readiness (store, chat)\n",
            "GET /metrics   Prometheus metrics\n/api/v1/deploys, /webhooks/...   see README.md\n\n",
            "The web console is off; add a [console] section to the configuration to use it.\n",
        ),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    // Bounded, so a database that hangs makes readiness fail fast instead of stalling.
    let store_problem =
        match tokio::time::timeout(READY_PING_TIMEOUT, state.bot.store().ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => {
                crate::store::log_unavailable(&error);
                Some(error.to_string())
            }
            Err(_) => Some(format!(
                "database unavailable: no answer within {READY_PING_TIMEOUT:?}; check database.url"
            )),
        };
    let store_ok = store_problem.is_none();
    let mut chats = serde_json::Map::new();
    let mut problems = serde_json::Map::new();
    if let Some(problem) = store_problem {
        problems.insert("store".to_owned(), json!(problem));
    }
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
        "held_alerts": state.bot.held_alerts(),
    });
    let mut response = (status, axum::Json(body)).into_response();
    if !store_ok {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(STORE_RETRY_AFTER_SECS),
        );
    }
    response
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

/// The deploy report CI/CD posts to `POST /api/v1/deploys`: `service`, `environment` and
/// `version` required, everything else optional; unknown fields are refused.
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
    /// Who reports it: `api` (the default, CI/CD) or `argocd` (the notifications template
    /// in `deploy/argocd/`). GitHub, GitLab, Flux and Flagger post to their own routes.
    #[serde(default)]
    pub source: Option<String>,
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

/// The configured service a report or query names, by name or alias (case-insensitive).
fn configured_service<'a>(
    config: &'a Config,
    field: &str,
    raw: &str,
) -> Result<&'a crate::config::ServiceConfig, ApiError> {
    let service =
        ServiceName::parse(raw).map_err(|e| ApiError::unprocessable(format!("{field}: {e}")))?;
    config
        .service(&service)
        .or_else(|| config.services.iter().find(|s| s.known().is_named(raw)))
        .ok_or_else(|| {
            let known: Vec<String> = config.services.iter().map(|s| s.name.to_string()).collect();
            ApiError::unprocessable(format!(
                "{field}: \"{service}\" is not configured in breakwater (known: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        })
}

/// The configured environment of `service` that `raw` names, directly or through the
/// synonyms alerts are matched with (`prod` for `production`).
fn configured_environment(
    service: &crate::config::ServiceConfig,
    field: &str,
    raw: &str,
) -> Result<Environment, ApiError> {
    let environment =
        Environment::parse(raw).map_err(|e| ApiError::unprocessable(format!("{field}: {e}")))?;
    service
        .known()
        .environment_named(environment.as_str())
        .ok_or_else(|| {
            ApiError::unprocessable(format!(
                "{field}: {} has no environment \"{environment}\" (known: {})",
                service.name,
                service
                    .environments
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// A validated report: the deploy it describes when it is new, and what it carries for
/// updating a deploy already recorded.
struct ValidReport {
    deploy: Deploy,
    update: crate::core::deploy::DeployUpdate,
    /// Whether the deploy it is about has the same start (the report gave times), or is
    /// the newest of its version (a re-post without times; sources whose events carry only
    /// the time of their own change).
    match_by_start: bool,
    /// Whether the report is one of a source's stream of events about the deploy, which
    /// arrive late, out of order and repeated: a late `started` does not reopen a finished
    /// deploy, and a repeated outcome (Flux reports every reconciliation) does not move its
    /// finish. The deploy API keeps applying what it is given.
    from_event_stream: bool,
}

/// Checks a report against the configured services and turns it into a deploy.
fn validate_report(
    config: &Config,
    report: DeployReport,
    received_at: DateTime<Utc>,
) -> Result<ValidReport, ApiError> {
    let configured = configured_service(config, "service", &report.service)?;
    let environment = configured_environment(configured, "environment", &report.environment)?;
    let version = report.version.trim().to_owned();
    if version.is_empty() || version.chars().count() > 200 {
        return Err(ApiError::unprocessable("version: must be 1–200 characters"));
    }
    let carried_status = match report.status.as_deref() {
        None => None,
        Some(raw) => Some(DeployStatus::parse(raw).ok_or_else(|| {
            ApiError::unprocessable(format!(
                "status: {raw:?} must be one of started, succeeded, failed"
            ))
        })?),
    };
    let status = carried_status.unwrap_or(DeployStatus::Succeeded);
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
    for (field, at) in [
        ("started_at", report.started_at),
        ("finished_at", report.finished_at),
    ] {
        if let Some(at) = at {
            crate::core::clock::check_plausible(at, received_at)
                .map_err(|e| ApiError::unprocessable(format!("{field}: {e}")))?;
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
    let source = match report.source.as_deref().map(str::trim) {
        None | Some("api") => DeploySource::Api,
        Some("argocd") => DeploySource::Argocd,
        Some(other) => {
            return Err(ApiError::unprocessable(format!(
                "source: {other:?} must be api or argocd (GitHub, GitLab and Flux post to \
                 /webhooks/…)"
            )));
        }
    };
    let times_given = report.started_at.is_some() || report.finished_at.is_some();
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
    let deploy = Deploy {
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
        source,
    }
    .with_secrets_masked();
    let update = crate::core::deploy::DeployUpdate {
        previous_version: deploy.previous_version.clone(),
        commit: deploy.commit.clone(),
        author: deploy.author.clone(),
        description: deploy.description.clone(),
        url: deploy.url.clone(),
        finished_at: report.finished_at,
        status: carried_status,
        changes: (!deploy.changes.is_empty()).then(|| deploy.changes.clone()),
        config_changes: (!deploy.config_changes.is_empty()).then(|| deploy.config_changes.clone()),
        description_is_progress: false,
    };
    Ok(ValidReport {
        deploy,
        update,
        match_by_start: times_given,
        from_event_stream: false,
    })
}

/// The recorded deploy a report is about, if any: the one with the same start when the
/// report gives one, else (a re-post without times, CI reporting "started" then
/// "succeeded") the newest deploy of that version.
async fn recorded_deploy_for(
    state: &AppState,
    report: &ValidReport,
) -> Result<Option<Deploy>, ApiError> {
    let deploy = &report.deploy;
    let store = state.bot.store();
    if !report.match_by_start {
        return store
            .latest_deploy_of_version(&deploy.target, &deploy.version)
            .await
            .map_err(ApiError::store);
    }
    let Some(just_after) = deploy
        .started_at
        .checked_add_signed(chrono::TimeDelta::microseconds(1))
    else {
        return Ok(None);
    };
    let same_start = store
        .deploys(&DeployQuery {
            service: Some(deploy.target.service.clone()),
            environment: Some(deploy.target.environment.clone()),
            since: Some(deploy.started_at),
            before: Some(just_after),
            limit: 100,
        })
        .await
        .map_err(ApiError::store)?;
    Ok(same_start
        .into_iter()
        .find(|d| d.version == deploy.version && d.started_at == deploy.started_at))
}

async fn post_deploy(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_api_token(&state, &headers)?;
    let report: DeployReport = parse_json(&body)?;
    let now = Utc::now();
    let report = validate_report(&state.config, report, now)?;
    let recorded = record_report(&state, &report, report.deploy.source.as_str(), now).await?;
    Ok(recorded_response(&recorded))
}

/// Records a validated report as a new deploy, or applies it to the deploy it is about
/// (then nothing changes when nothing new was said), and audits either. The one way deploy
/// reports and deploy events from GitHub, GitLab and Flux enter the registry, so all are
/// idempotent alike on (`service`, `environment`, `version`, `started_at`).
async fn record_report(
    state: &AppState,
    report: &ValidReport,
    source: &str,
    now: DateTime<Utc>,
) -> Result<crate::store::RecordedDeploy, ApiError> {
    let existing = recorded_deploy_for(state, report).await?;
    let mut progress = report.update.description_is_progress;
    let (to_record, changed) = match &existing {
        None => (report.deploy.clone(), Vec::new()),
        Some(existing) => {
            let mut update = report.update.clone();
            if report.from_event_stream && existing.status != DeployStatus::Started {
                if update.status == Some(DeployStatus::Started) {
                    // A late progress event says nothing about a finished deploy.
                    update.status = None;
                    update.description_is_progress = false;
                    progress = false;
                }
                if update.status == Some(existing.status) {
                    update.finished_at = None;
                }
            }
            existing
                .updated(&update, now)
                .map_err(|e| ApiError::unprocessable(e.to_string()))?
        }
    };
    let mut recorded = state
        .bot
        .store()
        .record_deploy(&to_record)
        .await
        .map_err(ApiError::store)?;
    // The store only fills an empty description; a progress text replaces the last one.
    if let Some(description) = to_record.description.as_deref()
        && progress
        && !recorded.created
        && recorded.deploy.description.as_deref() != Some(description)
    {
        state
            .bot
            .store()
            .set_deploy_description(recorded.id, description)
            .await
            .map_err(ApiError::store)?;
        recorded.deploy.description = Some(description.to_owned());
    }
    let audit = state.bot.audit();
    if recorded.created {
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
                        "source": source,
                    })),
            )
            .await
            .map_err(ApiError::store)?;
    } else if !changed.is_empty() {
        let lines: Vec<String> = changed
            .iter()
            .map(|c| {
                format!(
                    "{}: {} → {}",
                    c.field,
                    c.old.as_deref().unwrap_or("(none)"),
                    c.new.as_deref().unwrap_or("(none)")
                )
            })
            .collect();
        audit
            .append(
                audit
                    .entry(actions::DEPLOY_UPDATED)
                    .target(&recorded.deploy.target)
                    .details(json!({
                        "deploy": recorded.id,
                        "version": recorded.deploy.version,
                        "changed": lines,
                        "fields": changed,
                        "source": source,
                    })),
            )
            .await
            .map_err(ApiError::store)?;
    }
    Ok(recorded)
}

/// 201 with the deploy when it is new, 200 when the report was about a known one.
fn recorded_response(recorded: &crate::store::RecordedDeploy) -> Response {
    let status = if recorded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        axum::Json(
            json!({ "id": recorded.id, "created": recorded.created, "deploy": recorded.deploy }),
        ),
    )
        .into_response()
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
        Some(raw) => {
            let given = ServiceName::parse(raw)
                .map_err(|e| ApiError::bad_request(format!("service: {e}")))?;
            // An alias finds the deploys stored under the configured name.
            Some(
                state
                    .config
                    .services
                    .iter()
                    .find(|s| s.known().is_named(raw))
                    .map_or(given, |s| s.name.clone()),
            )
        }
        None => None,
    };
    let environment = match query.environment.as_deref().filter(|s| !s.is_empty()) {
        Some(raw) => {
            let given = Environment::parse(raw)
                .map_err(|e| ApiError::bad_request(format!("environment: {e}")))?;
            // `prod` finds what is stored under the configured `production`, as in reports.
            let services: Vec<&crate::config::ServiceConfig> = match &service {
                Some(service) => state
                    .config
                    .services
                    .iter()
                    .filter(|s| s.known().is_named(service.as_str()))
                    .collect(),
                None => state.config.services.iter().collect(),
            };
            Some(
                services
                    .iter()
                    .find_map(|s| s.known().environment_named(given.as_str()))
                    .unwrap_or(given),
            )
        }
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
        .map_err(ApiError::store)?;
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
    mut alerts: Vec<crate::core::alert::Alert>,
) -> Result<Response, ApiError> {
    let received = alerts.len();
    let now = Utc::now();
    for alert in &mut alerts {
        clamp_alert_times(alert, now);
    }
    let handled = state
        .bot
        .handle_webhook_alerts(alerts)
        .await
        .map_err(ApiError::bot)?;
    let recorded = handled
        .iter()
        .filter(|h| matches!(h, AlertHandled::Recorded { .. }))
        .count();
    let held = handled
        .iter()
        .filter(|h| matches!(h, AlertHandled::Held))
        .count();
    Ok(
        axum::Json(json!({ "received": received, "recorded": recorded, "held": held }))
            .into_response(),
    )
}

/// Moves an alert's times from outside into the plausible range instead of refusing it:
/// Alertmanager would retry a refused notification forever and the alert would never be
/// shown, while a corrected time costs only precision. The sender's bad clock is logged.
fn clamp_alert_times(alert: &mut crate::core::alert::Alert, now: DateTime<Utc>) {
    use crate::core::clock::clamp_plausible;
    let started_at = clamp_plausible(alert.started_at, now);
    let ended_at = alert
        .ended_at
        .map(|at| clamp_plausible(at, now).max(started_at));
    if started_at != alert.started_at || ended_at != alert.ended_at {
        tracing::warn!(
            alert = %alert.title,
            starts_at = %alert.started_at,
            ends_at = ?alert.ended_at,
            "an alert's times were outside 2000-01-01 .. now + 1 day; recorded with corrected times (check the sender's clock)"
        );
        alert.started_at = started_at;
        alert.ended_at = ended_at;
    }
}

// --- deploy events from GitHub, GitLab and Flux ------------------------------------------

/// The secret of a deploy event source, or a 404 naming the key that turns it on.
fn source_secret(
    secret: &Option<Secret>,
    source: crate::sources::Source,
) -> Result<&Secret, ApiError> {
    secret.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "{} deploy events are off: set {} in breakwater's configuration",
                source.name(),
                source.secret_key()
            ),
        )
    })
}

fn header_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A refused signature or token is a 401 naming the header; an accepted one is counted.
fn source_authenticated(
    state: &AppState,
    source: crate::sources::Source,
    checked: Result<(), crate::sources::AuthError>,
) -> Result<(), ApiError> {
    match checked {
        Ok(()) => {
            state.metrics.deploy_event_received(source.as_str());
            Ok(())
        }
        Err(error) => {
            tracing::info!(source = source.as_str(), %error, "refused an unauthenticated deploy event");
            Err(ApiError::unauthorized(error.to_string()))
        }
    }
}

fn source_payload(error: crate::sources::PayloadError) -> ApiError {
    match error {
        crate::sources::PayloadError::Malformed(reason) => ApiError::bad_request(reason),
        crate::sources::PayloadError::Invalid(reason) => ApiError::unprocessable(reason),
    }
}

async fn github_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    use crate::sources::{Source, github};
    let secret = source_secret(&state.config.sources.github_secret, Source::Github)?;
    let signature = header_value(&headers, github::SIGNATURE_HEADER);
    source_authenticated(
        &state,
        Source::Github,
        github::verify(signature, secret, &body),
    )?;
    let parsed = github::parse(header_value(&headers, github::EVENT_HEADER), &body)
        .map_err(source_payload)?;
    receive_deploy_event(&state, Source::Github, parsed).await
}

async fn gitlab_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    use crate::sources::{Source, gitlab};
    let token = source_secret(&state.config.sources.gitlab_token, Source::Gitlab)?;
    let presented = header_value(&headers, gitlab::TOKEN_HEADER);
    source_authenticated(&state, Source::Gitlab, gitlab::verify(presented, token))?;
    let event = header_value(&headers, gitlab::EVENT_HEADER);
    let parsed = gitlab::parse(event, &body, Utc::now()).map_err(source_payload)?;
    receive_deploy_event(&state, Source::Gitlab, parsed).await
}

async fn flux_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    use crate::sources::{Source, flux};
    let secret = source_secret(&state.config.sources.flux_secret, Source::Flux)?;
    let signature = header_value(&headers, flux::SIGNATURE_HEADER);
    source_authenticated(&state, Source::Flux, flux::verify(signature, secret, &body))?;
    let parsed = flux::parse(&body).map_err(source_payload)?;
    receive_deploy_event(&state, Source::Flux, parsed).await
}

/// `?token=` on a Flagger webhook URL.
#[derive(Debug, Default, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

type TokenQueryResult = Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>;

/// Reads and authenticates a Flagger payload: the token from the URL is checked before
/// the body is parsed; a token only in the metadata after (the body is bounded by the
/// router's limit).
fn flagger_payload(
    state: &AppState,
    query: TokenQueryResult,
    body: &[u8],
) -> Result<crate::sources::flagger::Payload, ApiError> {
    use crate::sources::{Source, flagger};
    let token = source_secret(&state.config.sources.flagger_token, Source::Flagger)?;
    // An unreadable query carries no token; the refusal says the token is missing.
    let from_query = query.ok().and_then(|Query(query)| query.token);
    let payload = match flagger::Payload::read(body) {
        Ok(payload) => payload,
        Err(error) => {
            // Whoever cannot present the token learns nothing about the payload's shape.
            source_authenticated(
                state,
                Source::Flagger,
                flagger::verify(from_query.as_deref(), None, token),
            )?;
            return Err(source_payload(error));
        }
    };
    source_authenticated(
        state,
        Source::Flagger,
        flagger::verify(from_query.as_deref(), payload.metadata_token(), token),
    )?;
    Ok(payload)
}

/// `POST /webhooks/flagger/events`: Flagger's event webhook, recorded as the canary run's
/// deploy.
async fn flagger_events(
    State(state): State<AppState>,
    query: TokenQueryResult,
    body: Bytes,
) -> Result<Response, ApiError> {
    use crate::sources::{Source, flagger};
    let payload = flagger_payload(&state, query, &body)?;
    let parsed = flagger::parse(&payload).map_err(source_payload)?;
    receive_deploy_event(&state, Source::Flagger, parsed).await
}

/// `POST /webhooks/flagger/rollback`: Flagger's `rollback` hook, called on every analysis
/// iteration. Answered 200 only when a person's rollback of this Canary is armed, and that
/// answer takes it (exactly once per press, across replicas); otherwise 403, which Flagger
/// (like its load tester's `/rollback/check`) reads as "do not roll back". 403 rather than
/// a 5xx, because Flagger's HTTP client retries 5xx when the hook has `retries`.
async fn flagger_rollback(
    State(state): State<AppState>,
    query: TokenQueryResult,
    body: Bytes,
) -> Result<Response, ApiError> {
    let payload = flagger_payload(&state, query, &body)?;
    let (namespace, name) = (payload.namespace.trim(), payload.name.trim());
    let taken = state
        .bot
        .store()
        .take_canary_rollback(namespace, name, Utc::now())
        .await
        .map_err(ApiError::store)?;
    let Some(taken) = taken else {
        return Ok((
            StatusCode::FORBIDDEN,
            axum::Json(json!({
                "rollback": false,
                "reason": format!("nobody asked breakwater to roll back canary {}", payload.canary()),
            })),
        )
            .into_response());
    };
    let audit = state.bot.audit();
    // Flagger acts on the answer: the audit record comes first. Should it fail, the
    // request is armed again and the 503 leaves the canary running until Flagger's next
    // iteration asks again, so the press is neither lost nor acted on unrecorded.
    let appended = audit
        .append(audit.entry(actions::CANARY_ROLLBACK_TAKEN).details(json!({
            "namespace": taken.namespace,
            "canary": taken.name,
            "plan": taken.plan_id,
            "requested_by": taken.requested_by,
            "phase": payload.phase,
        })))
        .await;
    if let Err(error) = appended {
        let rearmed = crate::store::CanaryRollback {
            taken_at: None,
            ..taken
        };
        if let Err(rearm) = state.bot.store().arm_canary_rollback(&rearmed).await {
            tracing::error!(canary = %payload.canary(), error = %rearm, "could not re-arm a canary rollback after its audit failed; the person must press again");
        }
        return Err(ApiError::store(error));
    }
    tracing::info!(canary = %payload.canary(), plan = %taken.plan_id, "answered Flagger's rollback hook 200: it rolls the canary back");
    Ok((
        StatusCode::OK,
        axum::Json(json!({
            "rollback": true,
            "plan": taken.plan_id,
            "requested_by": taken.requested_by,
        })),
    )
        .into_response())
}

/// What every source does with a parsed delivery: a deploy is routed to its service and
/// recorded like a deploy report; an event that routes nowhere is audited and counted
/// (never dropped silently) and answered 202 with the setting to add; anything else is
/// answered 202 with the reason it is not a deploy, so the sender does not retry it.
async fn receive_deploy_event(
    state: &AppState,
    source: crate::sources::Source,
    parsed: crate::sources::Parsed,
) -> Result<Response, ApiError> {
    use crate::sources::Parsed;
    let event = match parsed {
        Parsed::Ping => return Ok(axum::Json(json!({ "status": "pong" })).into_response()),
        Parsed::Ignored(reason) => {
            return Ok((
                StatusCode::ACCEPTED,
                axum::Json(json!({ "status": "ignored", "reason": reason })),
            )
                .into_response());
        }
        Parsed::Deploy(event) => *event,
    };
    let routed = match crate::sources::route(&state.config, &event) {
        Ok(routed) => routed,
        Err(unrouted) => {
            let audit = state.bot.audit();
            audit
                .append(audit.entry(actions::DEPLOY_EVENT_UNROUTED).details(json!({
                    "source": source.as_str(),
                    "reason": unrouted.reason,
                    "seen": event.seen(),
                })))
                .await
                .map_err(ApiError::store)?;
            state.metrics.deploy_event_unrouted(source.as_str());
            tracing::warn!(source = source.as_str(), reason = %unrouted.reason, "a deploy event matched no configured service; audited as deploy_event.unrouted");
            return Ok((
                StatusCode::ACCEPTED,
                axum::Json(json!({ "status": "unrouted", "reason": unrouted.reason })),
            )
                .into_response());
        }
    };
    let report = DeployReport {
        service: routed.service.to_string(),
        environment: routed.environment.to_string(),
        version: event.version,
        previous_version: None,
        commit: event.commit,
        author: event.author,
        description: event.description,
        url: event.url,
        started_at: event.started_at,
        finished_at: event.finished_at,
        status: Some(event.status.as_str().to_owned()),
        changes: event.changes,
        config_changes: Vec::new(),
        source: None,
    };
    let now = Utc::now();
    let mut report = validate_report(&state.config, report, now)?;
    report.match_by_start = event.identity == crate::sources::Identity::SameStart;
    report.from_event_stream = true;
    report.deploy.source = source.deploy_source();
    report.update.description_is_progress = source.reports_progress();
    let recorded = record_report(state, &report, source.as_str(), now).await?;
    Ok(recorded_response(&recorded))
}

// --- serving connections -----------------------------------------------------------------

/// Serves `router` on `listener` until `stop` completes, then lets open requests finish
/// for at most `drain` before returning.
///
/// Unlike `axum::serve`, every connection is limited (`server.header_read_timeout`,
/// `server.idle_timeout`) and at most `server.max_connections` are open at once. Policy
/// when the cap is reached: breakwater stops accepting, so new connections wait in the
/// kernel's listen backlog (they are not refused) and are accepted in arrival order as
/// soon as a served connection closes; the timeouts guarantee that idle and slow clients
/// free their slots. This keeps file descriptors for the store and the chat platforms
/// instead of failing with "Too many open files".
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: crate::config::ConnectionLimits,
    metrics: Arc<Metrics>,
    drain: std::time::Duration,
    stop: impl std::future::Future<Output = ()> + Send,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let connections = tokio_util::task::TaskTracker::new();
    let closing = tokio_util::sync::CancellationToken::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    tokio::pin!(stop);
    let mut at_cap_logged = false;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if !at_cap_logged {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "HTTP connection cap reached; new connections wait until one closes (server.max_connections)"
                    );
                    at_cap_logged = true;
                }
                tokio::select! {
                    () = &mut stop => break,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        // The semaphore is never closed.
                        Err(_) => break,
                    },
                }
            }
        };
        let (stream, remote) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    drop(slot);
                    pause_after_accept_error(&error).await;
                    continue;
                }
            },
        };
        if slots.available_permits() > 0 {
            at_cap_logged = false;
        }
        let _ = stream.set_nodelay(true);
        let service = {
            let router = router.clone();
            hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(remote));
                tower::ServiceExt::oneshot(router.clone(), request)
            })
        };
        let builder = builder.clone();
        let closing = closing.clone();
        let metrics = metrics.clone();
        let idle_timeout = limits.idle_timeout;
        metrics.http_connection(true);
        connections.spawn(async move {
            let (io, activity) = ActivityIo::new(stream);
            let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
            serve_one(connection, activity, idle_timeout, closing).await;
            metrics.http_connection(false);
            drop(slot);
        });
    }
    closing.cancel();
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after server.shutdown_grace; closing them");
    }
}

/// Drives one connection. When nothing has been read or written for `idle_timeout`, or
/// the server is stopping, it is closed gracefully (a response in progress is finished
/// first); if it then stays silent for another `idle_timeout` (an upload that stalled
/// mid-body, a response that never comes) it is dropped, so no client can hold a slot
/// forever.
async fn serve_one<S>(
    connection: hyper::server::conn::http1::Connection<hyper_util::rt::TokioIo<ActivityIo>, S>,
    activity: Arc<Activity>,
    idle_timeout: std::time::Duration,
    closing: tokio_util::sync::CancellationToken,
) where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = axum::body::Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(connection);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
                return;
            }
            () = activity.idle_for(idle_timeout) => {
                if shutting_down {
                    tracing::debug!("dropping an HTTP connection that stayed silent after being asked to close (server.idle_timeout)");
                    return;
                }
                shutting_down = true;
                // The grace period is counted from now.
                activity.touch();
                connection.as_mut().graceful_shutdown();
            }
            () = closing.cancelled(), if !shutting_down => {
                shutting_down = true;
                activity.touch();
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Failing `accept` (most often out of file descriptors) is logged and retried after a
/// second, the way hyper's own server does: the failure is the host's, and spinning on it
/// would only burn the CPU that closing connections need.
async fn pause_after_accept_error(error: &std::io::Error) {
    if matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept error: the HTTP listener cannot take connections; check the open-file limit (ulimit -n) and server.max_connections");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}

/// When a connection last read or wrote a byte.
#[derive(Debug)]
struct Activity {
    opened: tokio::time::Instant,
    /// Milliseconds after `opened`.
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Completes once nothing has been read or written for `timeout`.
    async fn idle_for(&self, timeout: std::time::Duration) {
        loop {
            let last = self.opened
                + std::time::Duration::from_millis(
                    self.last_ms.load(std::sync::atomic::Ordering::Relaxed),
                );
            let deadline = last + timeout;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A TCP stream that records its last activity, for the idle timeout.
struct ActivityIo {
    stream: tokio::net::TcpStream,
    activity: Arc<Activity>,
}

impl ActivityIo {
    fn new(stream: tokio::net::TcpStream) -> (Self, Arc<Activity>) {
        let activity = Arc::new(Activity {
            opened: tokio::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        });
        (
            Self {
                stream,
                activity: activity.clone(),
            },
            activity,
        )
    }
}

impl tokio::io::AsyncRead for ActivityIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl tokio::io::AsyncWrite for ActivityIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Raises the soft open-file limit to the hard one, so that the connection cap rather
/// than a distribution's default of 1024 decides how many clients are served. Failure
/// is logged, not fatal: the process still works within the lower limit.
#[cfg(unix)]
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // `None` is "unlimited"; an unlimited hard limit is left alone, since asking for an
    // unlimited soft one fails on Linux.
    let (Some(current), Some(maximum)) = (limit.current, limit.maximum) else {
        return;
    };
    if current >= maximum {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: Some(maximum),
        maximum: Some(maximum),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(
            from = current,
            to = maximum,
            "raised the open-file limit to the hard limit"
        ),
        Err(error) => tracing::warn!(
            %error,
            current,
            "could not raise the open-file limit; connections beyond it fail to be accepted"
        ),
    }
}

/// Open-file limits are a Unix notion; elsewhere there is nothing to raise.
#[cfg(not(unix))]
pub fn raise_open_file_limit() {}

#[cfg(all(test, unix))]
mod tests {
    use rustix::process::{Resource, getrlimit};

    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
        super::raise_open_file_limit();
        let limit = getrlimit(Resource::Nofile);
        if let (Some(current), Some(maximum)) = (limit.current, limit.maximum) {
            assert_eq!(current, maximum);
        }
    }
}
