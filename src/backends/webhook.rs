//! The webhook backend: breakwater asks your own deployment tooling to roll back by sending
//! it a signed HTTP request, and follows the result if the tooling answers asynchronously.
//!
//! # The contract with the receiver
//!
//! **Starting a rollback.** `POST <url>` with `Content-Type: application/json` and the body
//!
//! ```json
//! {"plan_id": "…", "service": "checkout", "environment": "production",
//!  "from": "v1.4.0", "to": "v1.3.2", "from_revision": "…", "to_revision": "…",
//!  "requested_by": "slack:U0123", "requested_by_name": "Alice", "reason": "…",
//!  "requested_at": "2026-05-01T12:00:00Z"}
//! ```
//!
//! signed with `X-Breakwater-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes,
//! keyed with the backend's secret>`, and `X-Breakwater-Plan-Id: <plan_id>`. The receiver
//! should verify the signature over the raw bytes before parsing, reject a stale
//! `requested_at`, and act at most once per `plan_id`. breakwater never re-sends it.
//!
//! - Any 2xx except 202 means done. An optional JSON body `{"status": "failed",
//!   "message": …}` reports a failure; otherwise `message`, if any, describes the success.
//! - `202 Accepted` with a `Location` (absolute, or relative to `url`, on the same origin)
//!   means started; breakwater follows that location.
//! - 401/403, 404, 409 and other 4xx refuse the rollback; 5xx, timeouts and network
//!   errors leave its fate unknown, and the message says so.
//!
//! **Following a rollback.** `GET <location>` every `poll_interval` until the JSON answer
//! `{"status": "running"|"succeeded"|"failed", "message": …}` is final or `timeout` passes.
//! A GET has no body, so what is signed is the request time instead:
//! `X-Breakwater-Timestamp: <Unix seconds>` and `X-Breakwater-Signature: sha256=<hex
//! HMAC-SHA256 of those timestamp digits>`. The receiver checks the signature and that the
//! timestamp is recent (five minutes is the usual window). Polls are safe to repeat, so
//! transient failures (network errors, timeouts, 408, 429, 5xx) are retried with backoff.
//!
//! `timeout` bounds the POST, and separately each `wait`: after a restart breakwater
//! follows a stored location for a fresh `timeout`, since nobody watched in between.

use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use url::Url;

use super::toolkit::{Follow, Look, error_chain, read_limited, snippet};
use crate::config::{Secret, WebhookBackendConfig};
use crate::core::backend::{
    BackendError, BackendErrorKind, Capabilities, DeployBackend, Operation, Outcome, ProgressFn,
    RollbackCall,
};
use crate::core::deploy::{Deploy, Revision, Target};

pub const SIGNATURE_HEADER: &str = "x-breakwater-signature";
pub const PLAN_ID_HEADER: &str = "x-breakwater-plan-id";
pub const TIMESTAMP_HEADER: &str = "x-breakwater-timestamp";

/// More than any status answer needs; a receiver that streams a huge page is cut off.
const BODY_LIMIT: usize = 64 * 1024;
/// How much of a receiver's answer is quoted to people.
const SNIPPET_CHARS: usize = 200;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One status request; the whole follow is bounded by the backend's `timeout` as well.
const POLL_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Retries of one failing status request before giving up.
const POLL_RETRIES: usize = 4;

/// `sha256=<hex HMAC-SHA256 of message keyed with secret>`, the value of
/// `X-Breakwater-Signature`.
pub fn signature(secret: &[u8], message: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(message);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct WebhookBackend {
    name: String,
    url: Url,
    secret: Secret,
    timeout: Duration,
    poll_interval: Duration,
    client: reqwest::Client,
}

/// The body of the rollback request; field order is part of what receivers see.
#[derive(Serialize)]
struct RollbackRequest<'a> {
    plan_id: String,
    service: &'a str,
    environment: &'a str,
    from: &'a str,
    to: &'a str,
    from_revision: &'a str,
    to_revision: &'a str,
    requested_by: &'a str,
    requested_by_name: &'a str,
    reason: &'a str,
    requested_at: DateTime<Utc>,
}

/// What is stored with the plan to follow an accepted rollback, also after a restart.
#[derive(Deserialize)]
struct Handle {
    location: String,
    plan_id: String,
}

#[derive(Deserialize)]
struct StatusAnswer {
    status: Option<String>,
    message: Option<String>,
}

/// A status request that failed: worth repeating, or final.
enum PollError {
    Transient(String),
    Fatal(BackendError),
}

/// What the request was for, which decides what an error means for the rollback.
#[derive(Clone, Copy)]
enum Phase<'a> {
    Start(&'a Target),
    Status(&'a Url),
}

impl WebhookBackend {
    pub fn new(name: &str, config: &WebhookBackendConfig) -> Result<Self, super::BuildError> {
        let client = reqwest::Client::builder()
            // A redirected POST turns into a GET in most clients; a moved receiver should be
            // a configuration error, not a silently dropped rollback.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("breakwater/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| super::BuildError::HttpClient {
                name: name.to_owned(),
                source,
            })?;
        Ok(Self {
            name: name.to_owned(),
            url: config.url.clone(),
            secret: config.secret.clone(),
            timeout: config.timeout,
            poll_interval: config.poll_interval,
            client,
        })
    }

    fn finished(&self, status: StatusCode, body: &str, call: &RollbackCall) -> Outcome {
        let answer = serde_json::from_str::<StatusAnswer>(body).ok();
        let message = answer
            .as_ref()
            .and_then(|a| a.message.as_deref())
            .map(|m| snippet(m, SNIPPET_CHARS))
            .filter(|m| !m.is_empty());
        let failed = answer.as_ref().and_then(|a| a.status.as_deref()) == Some("failed");
        if failed {
            Outcome::Failed(message.unwrap_or_else(|| {
                format!(
                    "the {} webhook reported that rolling {} back to {} failed (HTTP {status})",
                    self.name, call.target, call.to.version
                )
            }))
        } else {
            Outcome::Succeeded(message.unwrap_or_else(|| {
                format!(
                    "the {} webhook rolled {} back to {} (HTTP {status})",
                    self.name, call.target, call.to.version
                )
            }))
        }
    }

    /// Where a `202 Accepted` says the rollback can be followed.
    fn location(&self, header: Option<&reqwest::header::HeaderValue>) -> Result<Url, BackendError> {
        let accepted_but = |problem: String| {
            BackendError::new(
                BackendErrorKind::Protocol,
                format!(
                    "the {} webhook accepted the rollback (HTTP 202) but {problem}, so breakwater \
                     cannot follow it; the rollback is probably running: check the deployment \
                     system for its outcome and do not start it again",
                    self.name
                ),
            )
        };
        let raw = header
            .ok_or_else(|| accepted_but("sent no Location header".to_owned()))?
            .to_str()
            .map_err(|_| accepted_but("its Location header is not text".to_owned()))?;
        let location = self
            .url
            .join(raw)
            .map_err(|e| accepted_but(format!("its Location {raw:?} is not a URL ({e})")))?;
        if location.origin() != self.url.origin() {
            // Status requests carry a signature made with the secret; it goes nowhere else.
            return Err(accepted_but(format!(
                "its Location {location} is not on {}",
                self.url.origin().ascii_serialization()
            )));
        }
        Ok(location)
    }

    /// A message for an HTTP answer that is neither success nor acceptance.
    fn http_error(&self, status: StatusCode, body: &str, phase: Phase<'_>) -> BackendError {
        let answer = quote(status, body);
        let name = &self.name;
        let (kind, message) = match (phase, status.as_u16()) {
            (Phase::Start(_), 401 | 403) => (
                BackendErrorKind::Unauthorized,
                format!(
                    "the {name} webhook rejected breakwater's request ({answer}); nothing was \
                     rolled back. Check that backends.{name}.secret matches the receiver's secret"
                ),
            ),
            (Phase::Start(_), 404 | 410) => (
                BackendErrorKind::NotFound,
                format!(
                    "the {name} webhook at {} was not found ({answer}); nothing was rolled back. \
                     Check backends.{name}.url",
                    self.url
                ),
            ),
            (Phase::Start(target), 409) => (
                BackendErrorKind::Conflict,
                format!(
                    "the {name} webhook refused because of a conflicting change ({answer}); \
                     check what is happening to {target} in the deployment system, then offer \
                     the rollback again"
                ),
            ),
            (Phase::Start(_), 400..=499) => (
                BackendErrorKind::Refused,
                format!(
                    "the {name} webhook refused the rollback ({answer}); nothing was rolled \
                     back. Deal with the reason it gives, then try again"
                ),
            ),
            (Phase::Start(_), 500..=599) => (
                BackendErrorKind::Unavailable,
                format!(
                    "the {name} webhook failed ({answer}); the rollback may or may not have \
                     started. Check the deployment system before trying again"
                ),
            ),
            (Phase::Start(_), _) => (
                BackendErrorKind::Protocol,
                format!(
                    "the {name} webhook answered {answer}, which is not part of the webhook \
                     contract (redirects are not followed); the rollback may or may not have \
                     started. Check backends.{name}.url and the deployment system"
                ),
            ),
            (Phase::Status(location), 401 | 403) => (
                BackendErrorKind::Unauthorized,
                format!(
                    "the {name} webhook rejected breakwater's status request to {location} \
                     ({answer}); the rollback may still be running. Check the deployment \
                     system, and that the receiver verifies status requests by their \
                     X-Breakwater-Timestamp"
                ),
            ),
            (Phase::Status(location), 404 | 410) => (
                BackendErrorKind::NotFound,
                format!(
                    "the {name} webhook no longer knows the rollback's status at {location} \
                     ({answer}); check the deployment system for its outcome"
                ),
            ),
            (Phase::Status(location), _) => (
                BackendErrorKind::Refused,
                format!(
                    "the {name} webhook refused the status request to {location} ({answer}); \
                     the rollback may still be running. Check the deployment system for its \
                     outcome"
                ),
            ),
        };
        BackendError::new(kind, message)
    }

    /// A message for a rollback request that got no HTTP answer.
    fn send_error(&self, error: &reqwest::Error) -> BackendError {
        let name = &self.name;
        if error.is_timeout() {
            BackendError::new(
                BackendErrorKind::Timeout,
                format!(
                    "the {name} webhook did not answer within {}; the rollback may or may not \
                     have started. Check the deployment system before trying again",
                    humantime::format_duration(self.timeout)
                ),
            )
        } else if error.is_connect() {
            BackendError::new(
                BackendErrorKind::Unavailable,
                format!(
                    "could not reach the {name} webhook at {} ({}); nothing was sent. Check \
                     that the receiver is up, then try again",
                    self.url,
                    error_chain(error)
                ),
            )
        } else {
            BackendError::new(
                BackendErrorKind::Unavailable,
                format!(
                    "the request to the {name} webhook failed ({}); the rollback may or may \
                     not have started. Check the deployment system before trying again",
                    error_chain(error)
                ),
            )
        }
    }

    async fn poll_once(&self, location: &Url, plan_id: &str) -> Result<Look, PollError> {
        let timestamp = Utc::now().timestamp().to_string();
        let response = self
            .client
            .get(location.clone())
            .timeout(POLL_REQUEST_TIMEOUT.min(self.timeout))
            .header(ACCEPT, "application/json")
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(
                SIGNATURE_HEADER,
                signature(self.secret.expose().as_bytes(), timestamp.as_bytes()),
            )
            .header(PLAN_ID_HEADER, plan_id)
            .send()
            .await
            .map_err(|e| {
                PollError::Transient(if e.is_timeout() {
                    "no answer in time".to_owned()
                } else {
                    error_chain(&e)
                })
            })?;
        let status = response.status();
        let body = read_limited(response, BODY_LIMIT).await;
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            return Err(PollError::Transient(quote(status, &body)));
        }
        if !status.is_success() {
            return Err(PollError::Fatal(self.http_error(
                status,
                &body,
                Phase::Status(location),
            )));
        }
        let not_understood = || {
            PollError::Fatal(BackendError::new(
                BackendErrorKind::Protocol,
                format!(
                    "the {} webhook's status answer from {location} is not \
                     {{\"status\": \"running\"|\"succeeded\"|\"failed\"}} ({}); check the \
                     deployment system for the rollback's outcome",
                    self.name,
                    quote(status, &body)
                ),
            ))
        };
        let answer: StatusAnswer = serde_json::from_str(&body).map_err(|_| not_understood())?;
        let message = answer
            .message
            .map(|m| snippet(&m, SNIPPET_CHARS))
            .filter(|m| !m.is_empty());
        match answer.status.as_deref() {
            Some("running") => Ok(Look::Running(message)),
            Some("succeeded") => Ok(Look::Done(Outcome::Succeeded(message.unwrap_or_else(
                || format!("the {} webhook reports the rollback succeeded", self.name),
            )))),
            Some("failed") => Ok(Look::Done(Outcome::Failed(message.unwrap_or_else(|| {
                format!("the {} webhook reports the rollback failed", self.name)
            })))),
            _ => Err(not_understood()),
        }
    }

    /// One status answer, repeating transient failures with backoff.
    async fn poll(&self, location: &Url, plan_id: &str) -> Result<Look, BackendError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.poll_interval)
            .with_max_delay(self.poll_interval * 8)
            .with_max_times(POLL_RETRIES)
            .with_jitter();
        (|| self.poll_once(location, plan_id))
            .retry(backoff)
            .when(|e| matches!(e, PollError::Transient(_)))
            .notify(|e, after| {
                if let PollError::Transient(reason) = e {
                    tracing::warn!(backend = %self.name, %location, %reason, ?after, "status request failed; retrying");
                }
            })
            .await
            .map_err(|e| match e {
                PollError::Fatal(error) => error,
                PollError::Transient(reason) => BackendError::new(
                    BackendErrorKind::Unavailable,
                    format!(
                        "could not read the rollback's status from the {} webhook at \
                         {location} after {} attempts ({reason}); the rollback may still be \
                         running. Check the deployment system for its outcome",
                        self.name,
                        POLL_RETRIES + 1
                    ),
                ),
            })
    }
}

#[async_trait]
impl DeployBackend for WebhookBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            any_revision: true,
            config_diffs: false,
            own_history: false,
            resumable: true,
        }
    }

    async fn history(&self, _target: &Target) -> Result<Vec<Deploy>, BackendError> {
        Ok(Vec::new())
    }

    async fn current(&self, _target: &Target) -> Result<Option<Revision>, BackendError> {
        Ok(None)
    }

    async fn rollback(&self, call: &RollbackCall) -> Result<Operation, BackendError> {
        let started_at = Utc::now();
        let plan_id = call.plan_id.to_string();
        let request = RollbackRequest {
            plan_id: plan_id.clone(),
            service: call.target.service.as_str(),
            environment: call.target.environment.as_str(),
            from: &call.from.version,
            to: &call.to.version,
            from_revision: &call.from.id,
            to_revision: &call.to.id,
            requested_by: call.requested_by.principal.as_str(),
            requested_by_name: call.requested_by.name(),
            reason: &call.reason,
            requested_at: started_at,
        };
        let body = serde_json::to_vec(&request).map_err(|e| {
            BackendError::new(
                BackendErrorKind::Protocol,
                format!("could not encode the rollback request ({e}); nothing was sent"),
            )
        })?;
        let response = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/json")
            .header(
                SIGNATURE_HEADER,
                signature(self.secret.expose().as_bytes(), &body),
            )
            .header(PLAN_ID_HEADER, &plan_id)
            .body(body)
            .send()
            .await
            .map_err(|e| self.send_error(&e))?;
        let status = response.status();
        let location = response.headers().get(LOCATION).cloned();
        let body = read_limited(response, BODY_LIMIT).await;
        let operation = |handle, finished| Operation {
            target: call.target.clone(),
            to: call.to.clone(),
            started_at,
            handle,
            finished,
        };
        if status == StatusCode::ACCEPTED {
            let location = self.location(location.as_ref())?;
            tracing::info!(backend = %self.name, %location, "webhook accepted the rollback");
            let handle = serde_json::json!({ "location": location.as_str(), "plan_id": plan_id });
            Ok(operation(handle, None))
        } else if status.is_success() {
            Ok(operation(
                serde_json::Value::Null,
                Some(self.finished(status, &body, call)),
            ))
        } else {
            Err(self.http_error(status, &body, Phase::Start(&call.target)))
        }
    }

    async fn wait(
        &self,
        operation: &Operation,
        progress: ProgressFn<'_>,
    ) -> Result<Outcome, BackendError> {
        if let Some(outcome) = &operation.finished {
            return Ok(outcome.clone());
        }
        let handle: Handle = serde_json::from_value(operation.handle.clone()).map_err(|_| {
            BackendError::new(
                BackendErrorKind::Protocol,
                format!(
                    "this rollback of {} has no status location stored, so breakwater cannot \
                     follow it; check the deployment system for its outcome",
                    operation.target
                ),
            )
        })?;
        let location = Url::parse(&handle.location).map_err(|e| {
            BackendError::new(
                BackendErrorKind::Protocol,
                format!(
                    "the stored status location {:?} is not a URL ({e}); check the \
                     deployment system for the outcome of the rollback of {}",
                    handle.location, operation.target
                ),
            )
        })?;
        let follow = Follow {
            backend: &self.name,
            subject: &location,
            every: self.poll_interval,
            within: self.timeout,
            // Each status request already repeats its transient failures with backoff.
            tolerated_read_failures: 0,
        };
        follow
            .until(
                progress,
                || self.poll(&location, &handle.plan_id),
                |last| {
                    let last = last
                        .map(|m| format!(" (last reported: {m})"))
                        .unwrap_or_default();
                    BackendError::new(
                        BackendErrorKind::Timeout,
                        format!(
                            "the rollback of {} to {} did not finish within {}{last}; check the \
                             deployment system before retrying",
                            operation.target,
                            operation.to,
                            humantime::format_duration(self.timeout)
                        ),
                    )
                },
            )
            .await
    }
}

impl std::fmt::Debug for WebhookBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookBackend")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("timeout", &self.timeout)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// `HTTP 500 Internal Server Error: <snippet of the body>`.
fn quote(status: StatusCode, body: &str) -> String {
    let body = snippet(body, SNIPPET_CHARS);
    if body.is_empty() {
        format!("HTTP {status}, empty body")
    } else {
        format!("HTTP {status}: {body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hex_hmac_sha256_with_a_scheme_prefix() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn backend(url: &str) -> WebhookBackend {
        WebhookBackend::new(
            "deployer",
            &WebhookBackendConfig {
                url: Url::parse(url).expect("url"),
                secret: Secret::new("s"),
                timeout: Duration::from_secs(1),
                poll_interval: Duration::from_millis(10),
            },
        )
        .expect("client")
    }

    fn header(value: &str) -> reqwest::header::HeaderValue {
        reqwest::header::HeaderValue::from_str(value).expect("header")
    }

    #[test]
    fn locations_resolve_against_the_url_and_stay_on_its_origin() {
        let backend = backend("https://deploy.internal/hooks/rollback");
        let relative = backend.location(Some(&header("status/42"))).expect("ok");
        assert_eq!(relative.as_str(), "https://deploy.internal/hooks/status/42");
        let rooted = backend.location(Some(&header("/ops/42"))).expect("ok");
        assert_eq!(rooted.as_str(), "https://deploy.internal/ops/42");
        let absolute = backend
            .location(Some(&header("https://deploy.internal/x")))
            .expect("ok");
        assert_eq!(absolute.as_str(), "https://deploy.internal/x");
        let elsewhere = backend
            .location(Some(&header("https://evil.example/x")))
            .expect_err("other origin");
        assert_eq!(elsewhere.kind, BackendErrorKind::Protocol);
        assert!(elsewhere.message.contains("do not start it again"));
        let missing = backend.location(None).expect_err("missing");
        assert!(missing.message.contains("sent no Location header"));
    }

    #[test]
    fn refusals_map_to_kinds_and_quote_the_body() {
        let backend = backend("https://deploy.internal/rollback");
        let target = Target::new(
            crate::core::deploy::ServiceName::parse("checkout").expect("name"),
            crate::core::deploy::Environment::parse("production").expect("env"),
        );
        let cases = [
            (401, BackendErrorKind::Unauthorized),
            (404, BackendErrorKind::NotFound),
            (409, BackendErrorKind::Conflict),
            (422, BackendErrorKind::Refused),
            (503, BackendErrorKind::Unavailable),
            (302, BackendErrorKind::Protocol),
        ];
        for (code, kind) in cases {
            let status = StatusCode::from_u16(code).expect("status");
            let error = backend.http_error(status, "  the\nreason ", Phase::Start(&target));
            assert_eq!(error.kind, kind, "{code}");
            assert!(
                error
                    .message
                    .contains(&format!("HTTP {status}: the reason")),
                "{}",
                error.message
            );
        }
    }
}
