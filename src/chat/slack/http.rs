//! `POST /slack/events`, `/slack/interactions` and `/slack/commands` (`slack.mode =
//! "http"`). Slack signs each request: `X-Slack-Signature: v0=HEX(HMAC-SHA256(signing
//! secret, "v0:" + X-Slack-Request-Timestamp + ":" + body))`. A missing, malformed or
//! forged signature, or a timestamp more than five minutes from now, gets 401 before the
//! body is even parsed. Verified requests are acknowledged at once; the work they start
//! runs after the response, on the adapter's tasks.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use super::commands::SlashCommand;
use super::inbound::{EventsBody, Inbound, Interaction};

/// How far `X-Slack-Request-Timestamp` may be from this host's clock; older signed
/// requests are replays.
const SIGNATURE_WINDOW: Duration = Duration::from_secs(300);

/// Why a request's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Slack-Signature or X-Slack-Request-Timestamp")]
    Missing,
    #[error("X-Slack-Request-Timestamp is not a Unix time")]
    BadTimestamp,
    #[error("X-Slack-Request-Timestamp is more than five minutes from now")]
    Stale,
    #[error("X-Slack-Signature is not v0=<hex>")]
    Malformed,
    #[error("invalid request signature")]
    Forged,
}

/// Checks a Slack request signature in constant time. Public so the benchmark's baseline
/// server verifies exactly as breakwater does.
pub fn verify_signature(
    signing_secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), SignatureError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(timestamp)) = (
        header("x-slack-signature"),
        header("x-slack-request-timestamp"),
    ) else {
        return Err(SignatureError::Missing);
    };
    let signed_at = timestamp
        .parse::<u64>()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if now.abs_diff(signed_at) > SIGNATURE_WINDOW.as_secs() {
        return Err(SignatureError::Stale);
    }
    let expected = signature
        .strip_prefix("v0=")
        .and_then(|hex_digest| hex::decode(hex_digest).ok())
        .ok_or(SignatureError::Malformed)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(signing_secret).map_err(|_| SignatureError::Forged)?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Forged)
}

/// Signs a body as Slack does; for tests, benchmarks and tools that replay requests.
pub fn sign(signing_secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(signing_secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

pub(crate) struct Endpoint {
    signing_secret: Vec<u8>,
    inbound: Arc<Inbound>,
}

impl Endpoint {
    pub(crate) fn new(signing_secret: &str, inbound: Arc<Inbound>) -> Self {
        Self {
            signing_secret: signing_secret.as_bytes().to_vec(),
            inbound,
        }
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        verify_signature(&self.signing_secret, headers, body, SystemTime::now())
            .inspect_err(|error| tracing::info!(%error, "refused an unsigned Slack request"))
    }
}

pub(crate) fn router(endpoint: Arc<Endpoint>) -> Router {
    Router::new()
        .route("/slack/events", post(events))
        .route("/slack/interactions", post(interactions))
        .route("/slack/commands", post(commands))
        .with_state(endpoint)
}

fn unauthorized(error: SignatureError) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({ "error": error.to_string() })),
    )
        .into_response()
}

/// A bounded set is full (see [`EventBacklog`](super::inbound::EventBacklog)): refused
/// before anything was acknowledged, so nothing is lost.
fn busy(reason: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::RETRY_AFTER, "1")],
        reason,
    )
        .into_response()
}

fn bad_request(reason: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": reason })),
    )
        .into_response()
}

async fn events(
    State(endpoint): State<Arc<Endpoint>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(error) = endpoint.verify(&headers, &body) {
        return unauthorized(error);
    }
    match serde_json::from_slice::<EventsBody>(&body) {
        Ok(EventsBody::UrlVerification { challenge }) => {
            axum::Json(json!({ "challenge": challenge })).into_response()
        }
        Ok(EventsBody::EventCallback(callback)) => {
            if let Some(retry) = headers.get("x-slack-retry-num") {
                tracing::debug!(
                    ?retry,
                    event = callback.event_id,
                    "Slack redelivered an event"
                );
            }
            if !endpoint.inbound.bot.accepting_alerts() {
                tracing::warn!(
                    event = callback.event_id,
                    "the database is unavailable and the alert hold is full: asking Slack to redeliver"
                );
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(axum::http::header::RETRY_AFTER, "5")],
                    "database unavailable; redeliver later",
                )
                    .into_response();
            }
            let Some(place) = endpoint.inbound.backlog.try_enter() else {
                tracing::debug!(
                    event = callback.event_id,
                    "too many channel events in progress: asking Slack to redeliver"
                );
                return busy("too many events in progress; redeliver later");
            };
            endpoint.inbound.spawn_event(callback, place);
            StatusCode::OK.into_response()
        }
        Ok(EventsBody::Other) => StatusCode::OK.into_response(),
        Err(error) => bad_request(format!("not a Slack Events API request: {error}")),
    }
}

/// The `payload` field of an interaction's form body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

async fn interactions(
    State(endpoint): State<Arc<Endpoint>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(error) = endpoint.verify(&headers, &body) {
        return unauthorized(error);
    }
    let Some(payload) = form_field(&body, "payload") else {
        return bad_request("an interaction body is a form with a payload field".to_owned());
    };
    match serde_json::from_str::<Interaction>(&payload) {
        Ok(interaction) => {
            let Some(place) = endpoint.inbound.interactions.try_enter() else {
                tracing::debug!("too many presses in progress: refusing one with 503");
                return busy("too many interactions in progress; try again");
            };
            endpoint.inbound.spawn_interaction(interaction, place);
            StatusCode::OK.into_response()
        }
        Err(error) => bad_request(format!("not a Slack interaction payload: {error}")),
    }
}

async fn commands(
    State(endpoint): State<Arc<Endpoint>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(error) = endpoint.verify(&headers, &body) {
        return unauthorized(error);
    }
    let fields: serde_json::Map<String, serde_json::Value> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
        .collect();
    match serde_json::from_value::<SlashCommand>(serde_json::Value::Object(fields)) {
        Ok(command) => {
            let Some(place) = endpoint.inbound.interactions.try_enter() else {
                tracing::debug!("too many commands in progress: refusing one with 503");
                return busy("too many interactions in progress; try again");
            };
            endpoint.inbound.spawn_command(command, place);
            StatusCode::OK.into_response()
        }
        Err(error) => bad_request(format!("not a Slack slash command: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";

    fn signed(timestamp: u64, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let ts = timestamp.to_string();
        headers.insert(
            "x-slack-signature",
            sign(SECRET, &ts, body).parse().expect("header"),
        );
        headers.insert("x-slack-request-timestamp", ts.parse().expect("header"));
        headers
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn slacks_documented_example_verifies() {
        // https://docs.slack.dev/authentication/verifying-requests-from-slack
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-slack-signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
                .parse()
                .expect("header"),
        );
        headers.insert(
            "x-slack-request-timestamp",
            "1531420618".parse().expect("header"),
        );
        assert_eq!(
            verify_signature(SECRET, &headers, body, at(1_531_420_618 + 10)),
            Ok(())
        );
    }

    #[test]
    fn a_changed_body_is_forged() {
        let headers = signed(1_000_000, b"payload=a");
        assert_eq!(
            verify_signature(SECRET, &headers, b"payload=b", at(1_000_000)),
            Err(SignatureError::Forged)
        );
    }

    #[test]
    fn a_timestamp_older_than_five_minutes_is_stale() {
        let headers = signed(1_000_000, b"x");
        assert_eq!(
            verify_signature(SECRET, &headers, b"x", at(1_000_000 + 301)),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(SECRET, &headers, b"x", at(1_000_000 + 299)),
            Ok(())
        );
    }

    #[test]
    fn missing_and_malformed_signatures_are_refused() {
        assert_eq!(
            verify_signature(SECRET, &HeaderMap::new(), b"x", at(1)),
            Err(SignatureError::Missing)
        );
        let mut headers = signed(1_000_000, b"x");
        headers.insert("x-slack-signature", "v1=abc".parse().expect("header"));
        assert_eq!(
            verify_signature(SECRET, &headers, b"x", at(1_000_000)),
            Err(SignatureError::Malformed)
        );
    }
}
