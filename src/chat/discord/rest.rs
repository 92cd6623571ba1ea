//! Discord's REST API through serenity's [`Http`], with the two things breakwater adds:
//! lanes (an alert storm waits behind its own semaphore, never in front of a person's
//! rollback) and retries (a `429` or a transient failure is retried, so no message is
//! lost).
//!
//! Against Discord itself serenity's rate limiter runs and waits out `429`s on its own.
//! `discord.api_url` pointing elsewhere goes through serenity's proxy setting, which
//! serenity ignores while its rate limiter is on (its limiter builds requests without the
//! proxy), so there the limiter is off — the proxy is expected to rate-limit — and the
//! retry below is what waits out a `429`. serenity drops the body and headers of an
//! unsuccessful response, so `retry_after` cannot be read there: the retry backs off
//! exponentially instead.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use serenity::all::{ApplicationId, Http, HttpBuilder, HttpError};
use tokio::sync::Semaphore;
use url::Url;

use crate::chat::{ChatError, Lane};
use crate::core::message::Platform;

/// Discord's own API base; anything else is a proxy.
pub(crate) const DISCORD_API: &str = "https://discord.com/api/";

/// JSON error codes breakwater reacts to
/// (https://discord.com/developers/docs/topics/opcodes-and-status-codes#json).
pub(crate) mod codes {
    pub(crate) const UNKNOWN_MESSAGE: isize = 10008;
    pub(crate) const UNKNOWN_WEBHOOK: isize = 10015;
    pub(crate) const UNKNOWN_INTERACTION: isize = 10062;
    pub(crate) const MISSING_PERMISSIONS: isize = 50013;
    pub(crate) const WRONG_CHANNEL_TYPE: isize = 50024;
    pub(crate) const ALREADY_ACKNOWLEDGED: isize = 40060;
    pub(crate) const THREAD_ALREADY_CREATED: isize = 160004;
}

/// Why a REST call failed for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RestError {
    /// Discord answered with an error that retrying does not fix.
    #[error("Discord answered {status} ({code}): {message}")]
    Rejected {
        status: u16,
        code: isize,
        message: String,
    },
    /// Discord could not be reached, kept failing, or kept rate-limiting past the deadline.
    #[error("Discord unavailable: {0}")]
    Unavailable(String),
}

impl RestError {
    pub(crate) fn code(&self) -> Option<isize> {
        match self {
            Self::Rejected { code, .. } => Some(*code),
            Self::Unavailable(_) => None,
        }
    }
}

impl From<RestError> for ChatError {
    fn from(error: RestError) -> Self {
        match error {
            RestError::Rejected { .. } => ChatError::Refused {
                platform: Platform::Discord,
                reason: error.to_string(),
            },
            RestError::Unavailable(reason) => ChatError::Unavailable {
                platform: Platform::Discord,
                reason,
            },
        }
    }
}

/// How long and how often calls are retried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub(crate) first_pause: Duration,
    pub(crate) max_pause: Duration,
    /// Attempts for transport failures and 5xx answers.
    pub(crate) transient_attempts: u32,
    /// How long `429`s are waited out before giving up.
    pub(crate) rate_limited_for: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_pause: Duration::from_millis(250),
            max_pause: Duration::from_secs(30),
            transient_attempts: 5,
            rate_limited_for: Duration::from_secs(15 * 60),
        }
    }
}

/// What a failed attempt means.
enum Failure {
    RateLimited,
    Transient(String),
    Final(RestError),
}

fn classify(error: serenity::Error) -> Failure {
    match error {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(response)) => {
            let status = response.status_code.as_u16();
            if status == 429 {
                Failure::RateLimited
            } else if status >= 500 {
                Failure::Transient(format!("{status}: {}", response.error.message))
            } else {
                Failure::Final(RestError::Rejected {
                    status,
                    code: response.error.code,
                    message: response.error.message,
                })
            }
        }
        serenity::Error::Http(HttpError::Request(error)) => Failure::Transient(error.to_string()),
        other => Failure::Final(RestError::Rejected {
            status: 0,
            code: -1,
            message: other.to_string(),
        }),
    }
}

/// serenity's client plus lanes and retries.
pub(crate) struct Rest {
    pub(crate) http: Arc<Http>,
    alerts: Semaphore,
    retry: RetryPolicy,
}

impl Rest {
    pub(crate) fn new(http: Arc<Http>, retry: RetryPolicy) -> Self {
        Self {
            http,
            alerts: Semaphore::new(1),
            retry,
        }
    }

    /// Runs `call` until it succeeds, is refused, or retrying is no longer worth it.
    /// Alert-lane calls go one at a time; interactive calls never wait for them.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        lane: Lane,
        what: &str,
        mut call: F,
    ) -> Result<T, RestError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = serenity::Result<T>>,
    {
        let _turn = match lane {
            Lane::Alerts => Some(
                self.alerts
                    .acquire()
                    .await
                    .map_err(|_| RestError::Unavailable("the adapter is shutting down".into()))?,
            ),
            Lane::Interactive => None,
        };
        let started = tokio::time::Instant::now();
        let mut pauses = ExponentialBuilder::default()
            .with_min_delay(self.retry.first_pause)
            .with_max_delay(self.retry.max_pause.max(self.retry.first_pause))
            .without_max_times()
            .build();
        let mut transient_failures = 0;
        loop {
            let pause = pauses.next().unwrap_or(self.retry.max_pause);
            let failure = match call().await {
                Ok(value) => return Ok(value),
                Err(error) => classify(error),
            };
            match failure {
                Failure::Final(error) => return Err(error),
                Failure::RateLimited => {
                    if started.elapsed() + pause > self.retry.rate_limited_for {
                        return Err(RestError::Unavailable(format!(
                            "{what}: still rate limited after {:?}",
                            started.elapsed()
                        )));
                    }
                    tracing::debug!(what, ?pause, "Discord rate limited a request; retrying");
                }
                Failure::Transient(reason) => {
                    transient_failures += 1;
                    if transient_failures >= self.retry.transient_attempts {
                        return Err(RestError::Unavailable(format!("{what}: {reason}")));
                    }
                    tracing::debug!(what, %reason, ?pause, "Discord request failed; retrying");
                }
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// serenity's client for `api_url`: Discord itself with serenity's rate limiter, or a
/// proxy (serenity's `proxy` setting, limiter off, see the module documentation).
pub(crate) fn build_http(
    token: &str,
    api_url: &Url,
    application_id: Option<u64>,
) -> Result<Http, String> {
    let mut builder = HttpBuilder::new(token);
    if let Some(id) = application_id {
        builder = builder.application_id(ApplicationId::new(id));
    }
    if let Some(origin) = proxy_origin(api_url)? {
        builder = builder.proxy(origin).ratelimiter_disabled(true);
    }
    Ok(builder.build())
}

/// serenity addresses `https://discord.com/api/v10/…` and replaces `https://discord.com`
/// with its proxy, so an `api_url` of `X/api/` becomes the proxy `X`.
fn proxy_origin(api_url: &Url) -> Result<Option<String>, String> {
    if api_url.as_str() == DISCORD_API {
        return Ok(None);
    }
    match api_url.as_str().strip_suffix("/api/") {
        Some(origin) if api_url.query().is_none() => Ok(Some(origin.to_owned())),
        _ => Err(format!(
            "discord.api_url {api_url} must end in /api/ (breakwater appends v10/… to it)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest() -> Rest {
        Rest::new(Arc::new(Http::new("token")), RetryPolicy::default())
    }

    #[tokio::test]
    async fn an_interactive_call_never_waits_behind_the_alert_lane() {
        let rest = Arc::new(rest());
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let busy = {
            let rest = rest.clone();
            tokio::spawn(async move {
                let mut held = Some(held);
                rest.call(Lane::Alerts, "slow alert post", || {
                    let held = held.take();
                    async move {
                        if let Some(held) = held {
                            let _ = held.await;
                        }
                        Ok(())
                    }
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        let second_alert = tokio::time::timeout(
            Duration::from_millis(50),
            rest.call(Lane::Alerts, "next alert post", || async { Ok(()) }),
        )
        .await;
        assert!(second_alert.is_err(), "alerts go one at a time");
        let interactive = tokio::time::timeout(
            Duration::from_millis(50),
            rest.call(Lane::Interactive, "progress update", || async { Ok(7) }),
        )
        .await;
        assert_eq!(interactive.expect("not blocked"), Ok(7));
        let _ = release.send(());
        assert_eq!(busy.await.expect("joined"), Ok(()));
    }

    #[test]
    fn discords_own_api_needs_no_proxy() {
        let url = Url::parse(DISCORD_API).expect("url");
        assert_eq!(proxy_origin(&url), Ok(None));
    }

    #[test]
    fn another_api_base_becomes_serenitys_proxy_origin() {
        let url = Url::parse("http://127.0.0.1:3000/api/").expect("url");
        assert_eq!(
            proxy_origin(&url),
            Ok(Some("http://127.0.0.1:3000".to_owned()))
        );
        let nested = Url::parse("https://proxy.example/discord/api/").expect("url");
        assert_eq!(
            proxy_origin(&nested),
            Ok(Some("https://proxy.example/discord".to_owned()))
        );
    }

    #[test]
    fn an_api_base_serenity_cannot_address_is_refused() {
        let url = Url::parse("http://127.0.0.1:3000/v10/").expect("url");
        assert!(proxy_origin(&url).is_err());
    }
}
