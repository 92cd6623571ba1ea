//! Waiting for something to happen. Tests wait for events, never for time: a condition is
//! polled until it holds, with a deadline far beyond what a loaded CI machine needs, and a
//! test that fails says what never happened. A passing test waits only as long as the
//! event takes.

use std::fmt::Display;
use std::time::Duration;

/// How long [`eventually`] waits: generous for two cores shared by several builds.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// Between two looks at the condition; short enough not to slow a test down, long enough
/// not to compete with the bot for the CPU.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// What one look at the condition found: `Some`/`Ok` ends the wait with its value;
/// `None` or `Err(seen)` looks again, and the last `seen` is shown if the wait fails.
pub(crate) trait Outcome {
    type Value;
    type Seen: Display;
    fn into_result(self) -> Result<Self::Value, Option<Self::Seen>>;
}

impl<T> Outcome for Option<T> {
    type Value = T;
    type Seen = &'static str;
    fn into_result(self) -> Result<T, Option<&'static str>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;
    type Seen = E;
    fn into_result(self) -> Result<T, Option<E>> {
        self.map_err(Some)
    }
}

/// Polls `check` until it finds what it looks for and returns that; panics after
/// [`PATIENCE`] with "timed out waiting for {what}" and what `check` saw last. `what`
/// is formatted only on failure, so it may describe the latest state itself
/// (`std::fmt::from_fn(|f| write!(f, "…{:?}", …))`).
pub(crate) async fn eventually<O: Outcome>(
    what: impl Display,
    check: impl AsyncFnMut() -> O,
) -> O::Value {
    eventually_within(PATIENCE, what, check).await
}

/// [`eventually`] with a longer patience, for events that follow documented timeouts
/// (a lease that has to expire first).
pub(crate) async fn eventually_within<O: Outcome>(
    patience: Duration,
    what: impl Display,
    mut check: impl AsyncFnMut() -> O,
) -> O::Value {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let seen = match check().await.into_result() {
            Ok(found) => return found,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            match seen {
                Some(seen) => panic!("timed out after {patience:?} waiting for {what}; saw {seen}"),
                None => panic!("timed out after {patience:?} waiting for {what}"),
            }
        }
        // A pause between looks, not a synchronisation: the condition decides.
        tokio::time::sleep(POLL_EVERY).await;
    }
}
