//! The deploy registry API for CI/CD, `/api/v1/deploys`: reports are validated against
//! the configured services and recorded idempotently; the webhooks' deploy events are
//! recorded through the same path.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, parse_json, require_api_token};
use crate::audit::actions;
use crate::config::Config;
use crate::core::deploy::{
    Change, ConfigChange, Deploy, DeploySource, DeployStatus, Environment, ServiceName, Target,
};
use crate::store::DeployQuery;

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
pub(super) struct ValidReport {
    pub(super) deploy: Deploy,
    pub(super) update: crate::core::deploy::DeployUpdate,
    /// Whether the deploy it is about has the same start (the report gave times), or is
    /// the newest of its version (a re-post without times; sources whose events carry only
    /// the time of their own change).
    pub(super) match_by_start: bool,
    /// Whether the report is one of a source's stream of events about the deploy, which
    /// arrive late, out of order and repeated: a late `started` does not reopen a finished
    /// deploy, and a repeated outcome (Flux reports every reconciliation) does not move its
    /// finish. The deploy API keeps applying what it is given.
    pub(super) from_event_stream: bool,
}

/// Checks a report against the configured services and turns it into a deploy.
pub(super) fn validate_report(
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

pub(super) async fn post_deploy(
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
pub(super) async fn record_report(
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
pub(super) fn recorded_response(recorded: &crate::store::RecordedDeploy) -> Response {
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
pub(super) struct DeployListQuery {
    service: Option<String>,
    environment: Option<String>,
    limit: Option<String>,
}

pub(super) async fn list_deploys(
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
