//! What a person or a probe gets without credentials: the index at `/`, liveness at
//! `/healthz`, readiness (store and chat) at `/readyz` and Prometheus metrics at `/metrics`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, READY_PING_TIMEOUT, STORE_RETRY_AFTER_SECS};

/// `GET /`: people who open breakwater's address land in the console when there is one;
/// otherwise a short index says what is served here.
pub(super) async fn index(State(state): State<AppState>) -> Response {
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

pub(super) async fn healthz() -> &'static str {
    "ok"
}

pub(super) async fn readyz(State(state): State<AppState>) -> Response {
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

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
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
