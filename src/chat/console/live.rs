//! Live updates for open channel pages, as server-sent events. Each event carries one
//! message rendered for the viewer (`{"id", "thread", "rev", "html"}`); the page replaces
//! the message's element or adds it to its thread.
//!
//! A page is woken by this process's posts at once and checks the store every few
//! seconds for changes made by other replicas. It reads what changed since its cursor
//! minus a small overlap (clocks of replicas differ slightly) and skips revisions it has
//! already sent. The event id is the cursor, so a reconnecting browser resumes where it
//! left off with `Last-Event-ID`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::stream::{self, Stream};
use serde_json::json;
use tokio::sync::broadcast;

use super::auth::Viewer;
use super::pages::{Shared, visible_to};

/// How often a page looks for changes made by other replicas.
const POLL_EVERY: Duration = Duration::from_secs(3);
/// Changes this much older than the cursor are read again (and skipped if already sent).
const OVERLAP: chrono::Duration = chrono::Duration::seconds(10);
/// Changes read per page.
const BATCH: u32 = 200;
/// Revisions remembered per open page to skip repeats.
const SENT_REMEMBERED: usize = 10_000;

struct Follower {
    console: Shared,
    viewer: Viewer,
    changes: broadcast::Receiver<()>,
    tick: tokio::time::Interval,
    cursor: DateTime<Utc>,
    sent: HashMap<i64, i64>,
    pending: std::collections::VecDeque<Event>,
}

impl Follower {
    async fn next_event(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            tokio::select! {
                received = self.changes.recv() => {
                    if let Err(broadcast::error::RecvError::Closed) = received {
                        return None;
                    }
                }
                _ = self.tick.tick() => {}
            }
            self.read_changes().await;
        }
    }

    /// Reads what changed since the cursor (less the overlap), then page by page onwards
    /// while pages come back full, so that a burst larger than a page is not re-read
    /// forever.
    async fn read_changes(&mut self) {
        let mut since = crate::core::clock::saturating_sub(self.cursor, OVERLAP);
        loop {
            let changed = match self
                .console
                .bot
                .store()
                .console_messages_changed_since(since, BATCH)
                .await
            {
                Ok(changed) => changed,
                Err(error) => {
                    tracing::warn!(%error, "live console updates could not read the store");
                    return;
                }
            };
            let full = changed.len() == BATCH as usize;
            let before = self.cursor;
            self.queue(changed);
            if !full || (self.cursor <= before && since >= self.cursor) {
                return;
            }
            since = self.cursor;
        }
    }

    fn queue(&mut self, changed: Vec<crate::store::ConsoleMessage>) {
        for stored in changed {
            self.cursor = self.cursor.max(stored.updated_at);
            if !visible_to(&stored, &self.viewer.user)
                || self
                    .sent
                    .get(&stored.id)
                    .is_some_and(|rev| *rev >= stored.revision)
            {
                continue;
            }
            if self.sent.len() >= SENT_REMEMBERED {
                // Pages drop renderings older than what they show, so forgetting only
                // costs a few repeated events.
                self.sent.clear();
            }
            self.sent.insert(stored.id, stored.revision);
            let data = json!({
                "id": stored.id,
                "thread": stored.thread,
                "rev": stored.revision,
                "html": self.console.render(&stored, &self.viewer),
            });
            self.pending.push_back(
                Event::default()
                    .event("message")
                    .id(self.cursor.timestamp_micros().to_string())
                    .data(data.to_string()),
            );
        }
    }
}

/// `GET /console/events?since=MICROS`: the stream for one open page.
pub(crate) async fn events(
    State(console): State<Shared>,
    viewer: Viewer,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                .find(|(key, _)| key == "since")
                .map(|(_, value)| value.into_owned())
        });
    let cursor = resume
        .and_then(|raw| raw.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or_else(Utc::now);
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let follower = Follower {
        changes: console.changes.subscribe(),
        console,
        viewer,
        tick,
        cursor,
        sent: HashMap::new(),
        pending: Default::default(),
    };
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(stream::unfold(follower, Follower::next_event));
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
