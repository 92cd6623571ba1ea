//! `POST /discord/interactions` (`discord.mode = "http"`): Discord signs each request with
//! the application's Ed25519 key over `X-Signature-Timestamp` ‖ body. Anything that does
//! not verify — missing or malformed headers, a forged signature, a timestamp more than
//! five minutes off — gets 401 before the body is parsed. PING gets PONG; everything else
//! is answered like a gateway interaction, the first response as the HTTP body.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use serenity::all::Interaction;
use serenity::interactions_endpoint::Verifier;
use tokio_util::task::TaskTracker;

use super::interactions::Interactions;

/// How far `X-Signature-Timestamp` may be from this host's clock; older signed requests
/// are replays.
const TIMESTAMP_WINDOW: Duration = Duration::from_secs(300);

pub(crate) struct Endpoint {
    verifier: Verifier,
    interactions: Arc<Interactions>,
    tasks: TaskTracker,
}

impl Endpoint {
    pub(crate) fn new(
        public_key_hex: &str,
        interactions: Arc<Interactions>,
        tasks: TaskTracker,
    ) -> Result<Self, String> {
        let bytes: [u8; 32] = hex::decode(public_key_hex)
            .map_err(|e| e.to_string())?
            .try_into()
            .map_err(|_| "must be 32 bytes (64 hex digits)".to_owned())?;
        let verifier = Verifier::try_new(bytes).map_err(|e| e.to_string())?;
        Ok(Self {
            verifier,
            interactions,
            tasks,
        })
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(signature), Some(timestamp)) = (
            header("x-signature-ed25519"),
            header("x-signature-timestamp"),
        ) else {
            return Err("missing X-Signature-Ed25519 or X-Signature-Timestamp");
        };
        let signed_at = timestamp
            .parse::<u64>()
            .map_err(|_| "X-Signature-Timestamp is not a Unix time")?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if now.abs_diff(signed_at) > TIMESTAMP_WINDOW.as_secs() {
            return Err("X-Signature-Timestamp is too far from now");
        }
        self.verifier
            .verify(signature, timestamp, body)
            .map_err(|()| "invalid request signature")
    }
}

pub(crate) fn router(endpoint: Arc<Endpoint>) -> Router {
    Router::new()
        .route("/discord/interactions", post(receive))
        .with_state(endpoint)
}

fn unauthorized(reason: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({ "error": reason })),
    )
        .into_response()
}

async fn receive(
    State(endpoint): State<Arc<Endpoint>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(reason) = endpoint.verify(&headers, &body) {
        tracing::info!(reason, "refused an unsigned Discord interaction");
        return unauthorized(reason);
    }
    let interaction: Interaction = match serde_json::from_slice(&body) {
        Ok(interaction) => interaction,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "error": format!("not a Discord interaction: {error}") })),
            )
                .into_response();
        }
    };
    if matches!(interaction, Interaction::Ping(_)) {
        return axum::Json(json!({ "type": 1 })).into_response();
    }
    let answer = endpoint.interactions.answer(interaction).await;
    if let Some(later) = answer.later {
        later.spawn(&endpoint.tasks);
    }
    axum::Json(answer.first).into_response()
}
