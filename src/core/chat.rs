//! The chat port: what the core needs from a chat platform (post, edit, reply privately)
//! and the hub that fans a message out to every connected platform. Adapters in
//! `crate::chat` implement [`Chat`]; the core sees nothing else of them.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::core::deploy::ServiceName;
use crate::core::message::{Message, MessageRef, Platform, PrivateReply};

/// Which queue an outgoing message joins. Replies to people who just acted go ahead of
/// the alert backlog so an alert storm never delays a rollback's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    Interactive,
    Alerts,
}

/// Where an adapter's connection to its platform stands. `/readyz` is ready only when
/// every adapter is [`AdapterStatus::Connected`]; the reason is shown beside the state so
/// an operator reads what to fix without opening the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterStatus {
    Connected,
    /// Not connected now, and reconnecting by itself (starting, a dropped session, the
    /// platform unreachable): the reason says which.
    Disconnected(String),
    /// Stopped for good until the operator acts (a rejected token, a missing intent): the
    /// reason names the setting to fix. Nothing retries it.
    Failed(String),
}

impl AdapterStatus {
    /// The state's word in `/readyz`.
    pub fn label(&self) -> &'static str {
        match self {
            AdapterStatus::Connected => "connected",
            AdapterStatus::Disconnected(_) => "disconnected",
            AdapterStatus::Failed(_) => "failed",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            AdapterStatus::Connected => None,
            AdapterStatus::Disconnected(reason) | AdapterStatus::Failed(reason) => Some(reason),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// The platform refused (`not_in_channel`, `channel_not_found`, missing permission).
    #[error("{platform} refused: {reason}")]
    Refused { platform: Platform, reason: String },
    /// The platform could not be reached or kept failing after retries.
    #[error("{platform} unavailable: {reason}")]
    Unavailable { platform: Platform, reason: String },
}

/// The outbound side of one chat platform.
#[async_trait]
pub trait Chat: Send + Sync {
    fn platform(&self) -> Platform;

    /// Where an alert that arrived by webhook is posted for this service (the service's
    /// channel on this platform, else the first alert channel); `None` posts nothing here.
    fn alert_channel(&self, service: Option<&ServiceName>) -> Option<String>;

    /// Whether this platform shows every alert, wherever it was first seen (the console).
    fn mirrors_all_alerts(&self) -> bool {
        false
    }

    /// Whether a rollback press needs a second, in-chat Confirm step (platforms without a
    /// native confirmation dialog).
    fn needs_confirm_step(&self) -> bool {
        true
    }

    /// The adapter's connection to its platform, for `/readyz` and the operator's logs.
    fn status(&self) -> AdapterStatus {
        AdapterStatus::Connected
    }

    /// Posts a new top-level message.
    async fn post(
        &self,
        channel: &str,
        message: &Message,
        lane: Lane,
    ) -> Result<MessageRef, ChatError>;

    /// Replies in the thread of `parent`, creating the thread where the platform needs one.
    async fn reply(
        &self,
        parent: &MessageRef,
        message: &Message,
        lane: Lane,
    ) -> Result<MessageRef, ChatError>;

    /// Replaces a message the bot posted.
    async fn update(
        &self,
        target: &MessageRef,
        message: &Message,
        lane: Lane,
    ) -> Result<(), ChatError>;

    /// Replaces a private reply that is out of date (the rollback it was about has an
    /// outcome), so that it does not go on saying "Confirm rollback" or "Rolling back…".
    /// By default a reply that replaced the pressed message is updated there; adapters
    /// whose private replies live elsewhere (Discord's interaction responses, Slack's
    /// `response_url`) override this, and where the platform cannot change a private
    /// reply any more nothing is done.
    async fn replace_private(
        &self,
        reply: &PrivateReply,
        message: &Message,
    ) -> Result<(), ChatError> {
        match (&reply.pressed, reply.in_place) {
            (Some(pressed), true) => self.update(pressed, message, Lane::Interactive).await,
            _ => Ok(()),
        }
    }
}

/// The connected chat platforms. Adapters register at start-up; the core looks them up.
#[derive(Clone, Default)]
pub struct ChatHub {
    chats: Arc<RwLock<Vec<Arc<dyn Chat>>>>,
}

impl ChatHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the adapter for its platform.
    pub fn register(&self, chat: Arc<dyn Chat>) {
        let mut chats = crate::sync::write(&self.chats);
        chats.retain(|existing| existing.platform() != chat.platform());
        chats.push(chat);
    }

    pub fn get(&self, platform: Platform) -> Option<Arc<dyn Chat>> {
        self.all()
            .into_iter()
            .find(|chat| chat.platform() == platform)
    }

    pub fn all(&self) -> Vec<Arc<dyn Chat>> {
        crate::sync::read(&self.chats).clone()
    }
}
