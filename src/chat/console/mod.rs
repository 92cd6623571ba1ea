//! The web console: breakwater's own channel in a browser at `/console`, for people
//! without Slack or Discord and for the day those are down. It is a chat adapter like the
//! others: the core posts alerts, summaries and progress to it through [`Chat`], and
//! presses come back through [`Bot::handle_press`]. Messages live in the store, so the
//! channel survives restarts and every replica shows the same.
//!
//! - [`html`]: escaping and the rendering of neutral messages as HTML.
//! - [`auth`]: users, sessions, CSRF tokens, the sign-in limiter, the proxy header.
//! - [`pages`]: the routes: sign-in, channel, deploys, audit, export, presses.
//! - [`live`]: server-sent events that bring new and updated messages to open pages.
//! - [`timeline`]: the deploys-and-alerts picture, as SVG.
//!
//! The console has no confirmation dialog of its own, so a Roll back press gets the
//! core's private Confirm/Cancel step, shown only to the person who pressed.

pub mod auth;
mod html;
mod live;
mod pages;
mod timeline;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::broadcast;

use crate::chat::recent::RecentPresses;
use crate::chat::{Chat, ChatError, Lane};
use crate::config::Config;
use crate::core::bot::Bot;
use crate::core::deploy::ServiceName;
use crate::core::message::{Message, MessageRef, Platform, PrivateReply};
use crate::store::{ConsoleMessage, ConsolePlace, Store, StoreError};

/// The console's one channel: every alert is shown here.
pub const CHANNEL: &str = "alerts";

/// Private replies posted beside a pressed message (a Confirm/Cancel step) remembered, by
/// the press, so that the core can replace them once out of date. Oldest forgotten first:
/// a forgotten step keeps its buttons, and pressing them is answered with why not.
const PRIVATE_REPLIES_KEPT: usize = 1024;
/// Longer than any offer stays open; a step older than this is left as it is.
const PRIVATE_REPLY_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The adapter's parts, built from `[console]`.
pub struct ConsoleAdapter {
    chat: Arc<ConsoleChat>,
    state: Arc<pages::Console>,
}

impl ConsoleAdapter {
    pub fn new(config: &Config, bot: Bot) -> Self {
        let (changes, _) = broadcast::channel(256);
        let chat = Arc::new(ConsoleChat {
            store: bot.store().clone(),
            changes: changes.clone(),
            private_replies: RecentPresses::new(PRIVATE_REPLIES_KEPT, PRIVATE_REPLY_LIFETIME),
        });
        let secure = config
            .server
            .public_url
            .as_ref()
            .is_some_and(|url| url.scheme() == "https");
        let state = Arc::new(pages::Console {
            auth: auth::Auth::new(&config.console, secure),
            bot,
            chat: chat.clone(),
            changes,
        });
        Self { chat, state }
    }

    /// The outbound side, for the [`ChatHub`](crate::chat::ChatHub).
    pub fn chat(&self) -> Arc<dyn Chat> {
        self.chat.clone()
    }

    /// Every `/console` route.
    pub fn router(&self) -> axum::Router {
        pages::router(self.state.clone())
    }
}

/// The console as the core sees it: messages written to the store, and a nudge to the
/// live pages of this process (pages on other replicas find changes by polling).
pub struct ConsoleChat {
    store: Arc<dyn Store>,
    changes: broadcast::Sender<()>,
    /// Console message ids of private replies posted as new messages, by press event id.
    private_replies: RecentPresses<i64>,
}

fn unavailable(error: StoreError) -> ChatError {
    ChatError::Unavailable {
        platform: Platform::Console,
        reason: error.to_string(),
    }
}

fn message_id(raw: &str) -> Result<i64, ChatError> {
    raw.parse::<i64>().map_err(|_| ChatError::Refused {
        platform: Platform::Console,
        reason: format!("{raw:?} is not a console message id"),
    })
}

fn reference(stored: &ConsoleMessage) -> MessageRef {
    MessageRef {
        platform: Platform::Console,
        channel: stored.channel.clone(),
        id: stored.id.to_string(),
        thread: stored.thread.map(|t| t.to_string()),
    }
}

impl ConsoleChat {
    pub(crate) async fn insert(
        &self,
        place: ConsolePlace<'_>,
        message: &Message,
    ) -> Result<ConsoleMessage, ChatError> {
        let stored = self
            .store
            .insert_console_message(place, message, Utc::now())
            .await
            .map_err(unavailable)?;
        let _ = self.changes.send(());
        Ok(stored)
    }

    /// Remembers the private reply a press was answered with in a message of its own.
    pub(crate) fn remember_private_reply(&self, event_id: String, id: i64) {
        self.private_replies.remember(event_id, id);
    }

    pub(crate) async fn replace(&self, id: i64, message: &Message) -> Result<(), ChatError> {
        let updated = self
            .store
            .update_console_message(id, message, Utc::now())
            .await
            .map_err(unavailable)?;
        if updated.is_none() {
            return Err(ChatError::Refused {
                platform: Platform::Console,
                reason: format!("there is no console message {id}"),
            });
        }
        let _ = self.changes.send(());
        Ok(())
    }
}

#[async_trait]
impl Chat for ConsoleChat {
    fn platform(&self) -> Platform {
        Platform::Console
    }

    fn alert_channel(&self, _service: Option<&ServiceName>) -> Option<String> {
        Some(CHANNEL.to_owned())
    }

    fn mirrors_all_alerts(&self) -> bool {
        true
    }

    fn needs_confirm_step(&self) -> bool {
        true
    }

    async fn post(
        &self,
        channel: &str,
        message: &Message,
        _lane: Lane,
    ) -> Result<MessageRef, ChatError> {
        let stored = self
            .insert(
                ConsolePlace {
                    channel,
                    thread: None,
                    audience: None,
                },
                message,
            )
            .await?;
        Ok(reference(&stored))
    }

    async fn reply(
        &self,
        parent: &MessageRef,
        message: &Message,
        _lane: Lane,
    ) -> Result<MessageRef, ChatError> {
        let root = match &parent.thread {
            Some(thread) => message_id(thread)?,
            None => message_id(&parent.id)?,
        };
        let stored = self
            .insert(
                ConsolePlace {
                    channel: &parent.channel,
                    thread: Some(root),
                    audience: None,
                },
                message,
            )
            .await?;
        Ok(reference(&stored))
    }

    async fn update(
        &self,
        target: &MessageRef,
        message: &Message,
        _lane: Lane,
    ) -> Result<(), ChatError> {
        self.replace(message_id(&target.id)?, message).await
    }

    /// A step answered in place is the pressed message itself; one posted beside the
    /// pressed message is found by its press. A step this process does not know (posted
    /// by another replica, or forgotten) is left as it is.
    async fn replace_private(
        &self,
        reply: &PrivateReply,
        message: &Message,
    ) -> Result<(), ChatError> {
        let id = match (&reply.pressed, reply.in_place) {
            (Some(pressed), true) => message_id(&pressed.id)?,
            _ => match self.private_replies.live(&reply.event_id) {
                Some(id) => id,
                None => return Ok(()),
            },
        };
        self.replace(id, message).await
    }
}
