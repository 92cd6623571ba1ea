//! The webhooks other systems call: alerts from Alertmanager and Grafana, and deploy
//! events from GitHub, GitLab, Flux and Flagger (including Flagger's rollback hook).

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::api::{DeployReport, record_report, recorded_response, validate_report};
use super::{ApiError, AppState, require_webhook_token};
use crate::audit::actions;
use crate::config::Secret;
use crate::core::bot::AlertHandled;

// --- alert webhooks ----------------------------------------------------------------------

pub(super) async fn alertmanager_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_webhook_token(&state, &headers)?;
    let alerts = crate::alerts::parse_alertmanager(&body)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    receive_alerts(&state, alerts).await
}

pub(super) async fn grafana_webhook(
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

pub(super) async fn github_webhook(
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

pub(super) async fn gitlab_webhook(
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

pub(super) async fn flux_webhook(
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
pub(super) struct TokenQuery {
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
pub(super) async fn flagger_events(
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
pub(super) async fn flagger_rollback(
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
