//! The HTTP surface: health, metrics, the deploy registry API for CI/CD, and the alert
//! webhooks. Platform endpoints (Slack, Discord, the console) are merged in by their
//! adapters. Errors follow one policy: bad input gets a 4xx whose body names the problem;
//! internal failures are logged and answered with a generic 500, and so is a panicking
//! handler; a database that is unavailable is answered 503 with `Retry-After` and a
//! message naming `database.url` (logged once per outage, not once per request).
//! [`serve`] runs the router with header-read and idle timeouts and a cap on open
//! connections, because `axum::serve` has none and idle clients can exhaust the
//! process's file descriptors.
//!
//! This module holds the state, the error policy, the router, the token checks and the
//! accept loop; the handlers live by who calls them: `probes` (index, health, readiness,
//! metrics), `api` (the deploy registry) and `webhooks` (alerts and deploy events).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::{Config, Secret};
use crate::core::bot::Bot;
use crate::metrics::Metrics;

mod api;
mod probes;
mod webhooks;

pub use api::DeployReport;
use api::{list_deploys, post_deploy};
use probes::{healthz, index, metrics, readyz};
use webhooks::{
    alertmanager_webhook, flagger_events, flagger_rollback, flux_webhook, github_webhook,
    gitlab_webhook, grafana_webhook,
};

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
