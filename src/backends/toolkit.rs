//! What every backend that talks to a server needs, written once: quoting a server's
//! answer to people, reading an answer without trusting its size, naming why a connection
//! failed, and following a rollback until it ends.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::core::backend::{BackendError, BackendErrorKind, Outcome, ProgressFn};

/// At most `max` characters of `text` with whitespace runs collapsed, so a backend's
/// answer (an HTML error page, a stack trace) fits in a chat message.
pub(crate) fn snippet(text: &str, max: usize) -> String {
    crate::text::clip_owned(text.split_whitespace().collect::<Vec<_>>().join(" "), max)
}

/// The causes of an error joined with `: `, without repeating lines, for messages that
/// must say why a connection failed without the library's generic outer text (reqwest's
/// outer line repeats the URL the message already names).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut causes: Vec<String> = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if causes.last() != Some(&text) {
            causes.push(text);
        }
        source = cause.source();
    }
    if causes.is_empty() {
        error.to_string()
    } else {
        causes.join(": ")
    }
}

/// The body of an answer, up to `limit` bytes: a server that streams a huge page is cut
/// off, and a body that breaks off is used as far as it came, since it is only quoted or
/// parsed.
pub(crate) async fn read_limited(mut response: reqwest::Response, limit: usize) -> String {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - bytes.len();
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() >= limit {
            break;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What one look at a rollback in progress found.
#[derive(Debug, PartialEq)]
pub(crate) enum Look {
    /// Still going; the line, when there is one, is shown to people if it differs from the
    /// last one shown.
    Running(Option<String>),
    Done(Outcome),
}

impl Look {
    pub(crate) fn running(line: impl Into<String>) -> Self {
        Look::Running(Some(line.into()))
    }
}

/// How a rollback is followed: what is looked at (for the log), how often, for how long,
/// and how many failed reads in a row are borne before the follow gives up.
pub(crate) struct Follow<'a> {
    pub backend: &'a str,
    pub subject: &'a (dyn fmt::Display + Sync),
    pub every: Duration,
    pub within: Duration,
    /// Reads that may fail in a row (server unavailable or slow) before the follow ends
    /// with that error: a blip while a rollback runs must not report it failed.
    pub tolerated_read_failures: u32,
}

impl Follow<'_> {
    /// Looks every `every` until a look says the rollback is done, reporting each new
    /// progress line. When `within` passes first, `timed_out` gets the last line shown and
    /// says what people should check.
    pub(crate) async fn until<F, Fut>(
        &self,
        progress: ProgressFn<'_>,
        mut look: F,
        timed_out: impl FnOnce(Option<String>) -> BackendError,
    ) -> Result<Outcome, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Look, BackendError>>,
    {
        let mut last: Option<String> = None;
        let follow = async {
            let mut failures = 0;
            loop {
                match look().await {
                    Ok(Look::Done(outcome)) => return Ok(outcome),
                    Ok(Look::Running(line)) => {
                        failures = 0;
                        if let Some(line) = line
                            && last.as_ref() != Some(&line)
                        {
                            progress(line.clone());
                            last = Some(line);
                        }
                    }
                    Err(error)
                        if matches!(
                            error.kind,
                            BackendErrorKind::Unavailable | BackendErrorKind::Timeout
                        ) && failures < self.tolerated_read_failures =>
                    {
                        failures += 1;
                        tracing::warn!(
                            backend = %self.backend,
                            subject = %self.subject,
                            %error,
                            "reading the rollback's state failed; retrying"
                        );
                    }
                    Err(error) => return Err(error),
                }
                tokio::time::sleep(self.every).await;
            }
        };
        match tokio::time::timeout(self.within, follow).await {
            Ok(result) => result,
            Err(_) => Err(timed_out(last)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn snippets_collapse_whitespace_and_stop_at_the_limit() {
        assert_eq!(snippet("  a\n\n b  ", 10), "a b");
        assert_eq!(snippet("abcdefghijkl", 5), "abcd…");
        assert_eq!(snippet("ééééé", 5), "ééééé");
    }

    fn follow(tolerated_read_failures: u32) -> Follow<'static> {
        Follow {
            backend: "test",
            subject: &"the thing",
            every: Duration::from_millis(1),
            within: Duration::from_secs(30),
            tolerated_read_failures,
        }
    }

    fn unavailable() -> BackendError {
        BackendError::new(BackendErrorKind::Unavailable, "down")
    }

    /// Plays the given looks in order, then keeps saying the last one.
    async fn run(
        follow: &Follow<'_>,
        looks: Vec<Result<Look, BackendError>>,
    ) -> (Result<Outcome, BackendError>, Vec<String>) {
        let shown = Mutex::new(Vec::new());
        let progress = |line: String| shown.lock().expect("lock").push(line);
        let looks = Mutex::new(looks.into_iter());
        let result = follow
            .until(
                &progress,
                || {
                    let next = looks.lock().expect("lock").next();
                    async move { next.unwrap_or(Ok(Look::Running(None))) }
                },
                |_| BackendError::new(BackendErrorKind::Timeout, "too long"),
            )
            .await;
        (result, shown.into_inner().expect("lock"))
    }

    #[tokio::test]
    async fn each_new_progress_line_is_shown_once() {
        let (result, shown) = run(
            &follow(0),
            vec![
                Ok(Look::running("syncing")),
                Ok(Look::running("syncing")),
                Ok(Look::Running(None)),
                Ok(Look::running("progressing")),
                Ok(Look::Done(Outcome::Succeeded("done".into()))),
            ],
        )
        .await;
        assert_eq!(result.expect("outcome"), Outcome::Succeeded("done".into()));
        assert_eq!(shown, ["syncing", "progressing"]);
    }

    #[tokio::test]
    async fn failed_reads_up_to_the_tolerance_are_borne() {
        let (result, _) = run(
            &follow(2),
            vec![
                Err(unavailable()),
                Err(unavailable()),
                Ok(Look::running("back")),
                Err(unavailable()),
                Err(unavailable()),
                Ok(Look::Done(Outcome::Failed("degraded".into()))),
            ],
        )
        .await;
        assert_eq!(result.expect("outcome"), Outcome::Failed("degraded".into()));
    }

    #[tokio::test]
    async fn one_failed_read_more_than_tolerated_ends_the_follow() {
        let (result, _) = run(&follow(1), vec![Err(unavailable()), Err(unavailable())]).await;
        assert_eq!(
            result.expect_err("error").kind,
            BackendErrorKind::Unavailable
        );
    }

    #[tokio::test]
    async fn an_error_that_is_not_a_blip_ends_the_follow_at_once() {
        let (result, _) = run(
            &follow(5),
            vec![Err(BackendError::new(BackendErrorKind::NotFound, "gone"))],
        )
        .await;
        assert_eq!(result.expect_err("error").kind, BackendErrorKind::NotFound);
    }

    #[tokio::test]
    async fn a_follow_that_outlasts_its_bound_reports_the_last_line_seen() {
        // The look never ends, so the bound is always what stops it, however slow the machine.
        let follow = Follow {
            within: Duration::from_millis(20),
            ..follow(0)
        };
        let last_seen = Mutex::new(None);
        let result = follow
            .until(
                &|_| {},
                || async { Ok(Look::running("still syncing")) },
                |last| {
                    *last_seen.lock().expect("lock") = last;
                    BackendError::new(BackendErrorKind::Timeout, "too long")
                },
            )
            .await;
        assert_eq!(result.expect_err("timeout").kind, BackendErrorKind::Timeout);
        assert_eq!(
            last_seen.into_inner().expect("lock").as_deref(),
            Some("still syncing")
        );
    }
}
