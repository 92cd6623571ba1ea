//! The platform-neutral test adapter: a `Chat` that records what the bot says and lets a
//! test press the buttons it shows, as a person on a platform would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use breakwater::chat::{Chat, ChatError, Lane};
use breakwater::core::deploy::ServiceName;
use breakwater::core::message::{ButtonAction, Message, MessageRef, Platform};

/// One message as the platform shows it now.
#[derive(Debug, Clone)]
pub(crate) struct Shown {
    pub at: MessageRef,
    /// The message it replies to, for thread replies.
    pub parent: Option<MessageRef>,
    pub message: Message,
    /// Every version the message had, oldest first.
    pub history: Vec<Message>,
}

impl Shown {
    pub(crate) fn plain(&self) -> String {
        self.message.to_plain()
    }

    pub(crate) fn button(&self, label_prefix: &str) -> Option<ButtonAction> {
        self.message
            .buttons()
            .find(|(label, _)| label.starts_with(label_prefix))
            .map(|(_, action)| action.clone())
    }
}

#[derive(Default)]
struct Recorded {
    messages: Vec<Shown>,
}

/// Records posts, replies and updates; answers like a platform that accepted them.
pub(crate) struct RecordingChat {
    platform: Platform,
    channel: String,
    confirm_step: bool,
    next_id: AtomicU64,
    recorded: Mutex<Recorded>,
    fail_posts: std::sync::atomic::AtomicBool,
}

impl RecordingChat {
    /// A chat on `platform` whose alert channel is `channel`. `confirm_step` says whether
    /// the platform lacks a native confirmation dialog (Discord, console) or has one
    /// (Slack).
    pub(crate) fn new(platform: Platform, channel: &str, confirm_step: bool) -> Arc<Self> {
        Arc::new(Self {
            platform,
            channel: channel.to_owned(),
            confirm_step,
            next_id: AtomicU64::new(1),
            recorded: Mutex::new(Recorded::default()),
            fail_posts: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(crate) fn set_failing(&self, failing: bool) {
        self.fail_posts.store(failing, Ordering::SeqCst);
    }

    fn next_ref(&self, channel: &str, thread: Option<String>) -> MessageRef {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        MessageRef {
            platform: self.platform,
            channel: channel.to_owned(),
            id: format!("m{id}"),
            thread,
        }
    }

    /// A message as if a person or an alerting tool had posted it in the channel.
    pub(crate) fn person_posts(&self, text: &str) -> MessageRef {
        let at = self.next_ref(&self.channel, None);
        let mut recorded = self.recorded.lock().expect("lock");
        recorded.messages.push(Shown {
            at: at.clone(),
            parent: None,
            message: Message::plain(text),
            history: vec![Message::plain(text)],
        });
        at
    }

    pub(crate) fn messages(&self) -> Vec<Shown> {
        self.recorded.lock().expect("lock").messages.clone()
    }

    pub(crate) fn get(&self, at: &MessageRef) -> Option<Shown> {
        self.messages().into_iter().find(|m| m.at.id == at.id)
    }

    /// Waits until `find` returns something; on failure shows what the chat shows.
    pub(crate) async fn wait_for<T>(
        &self,
        what: &str,
        mut find: impl FnMut(&[Shown]) -> Option<T>,
    ) -> T {
        let shown = std::fmt::from_fn(|f| {
            let shown: Vec<String> = self
                .messages()
                .iter()
                .map(|m| format!("[{}] {}", m.at.id, m.plain()))
                .collect();
            write!(f, "{what}; the chat shows:\n{}", shown.join("\n---\n"))
        });
        super::eventually(shown, async || find(&self.messages())).await
    }

    /// Waits until a message whose plain text contains `needle` is shown.
    pub(crate) async fn wait_for_text(&self, needle: &str) -> Shown {
        self.wait_for(&format!("a message containing {needle:?}"), |messages| {
            messages
                .iter()
                .find(|m| m.plain().contains(needle))
                .cloned()
        })
        .await
    }

    /// Waits until the message at `at` contains `needle`.
    pub(crate) async fn wait_for_update(&self, at: &MessageRef, needle: &str) -> Shown {
        self.wait_for(
            &format!("message {} to contain {needle:?}", at.id),
            |messages| {
                messages
                    .iter()
                    .find(|m| m.at.id == at.id && m.plain().contains(needle))
                    .cloned()
            },
        )
        .await
    }

    fn record(&self, shown: Shown) {
        self.recorded.lock().expect("lock").messages.push(shown);
    }

    fn refuse_if_failing(&self) -> Result<(), ChatError> {
        if self.fail_posts.load(Ordering::SeqCst) {
            return Err(ChatError::Unavailable {
                platform: self.platform,
                reason: "test outage".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Chat for RecordingChat {
    fn platform(&self) -> Platform {
        self.platform
    }

    fn alert_channel(&self, _service: Option<&ServiceName>) -> Option<String> {
        Some(self.channel.clone())
    }

    fn needs_confirm_step(&self) -> bool {
        self.confirm_step
    }

    async fn post(
        &self,
        channel: &str,
        message: &Message,
        _lane: Lane,
    ) -> Result<MessageRef, ChatError> {
        self.refuse_if_failing()?;
        let at = self.next_ref(channel, None);
        self.record(Shown {
            at: at.clone(),
            parent: None,
            message: message.clone(),
            history: vec![message.clone()],
        });
        Ok(at)
    }

    async fn reply(
        &self,
        parent: &MessageRef,
        message: &Message,
        _lane: Lane,
    ) -> Result<MessageRef, ChatError> {
        self.refuse_if_failing()?;
        let at = self.next_ref(&parent.channel, Some(parent.id.clone()));
        self.record(Shown {
            at: at.clone(),
            parent: Some(parent.clone()),
            message: message.clone(),
            history: vec![message.clone()],
        });
        Ok(at)
    }

    async fn update(
        &self,
        target: &MessageRef,
        message: &Message,
        _lane: Lane,
    ) -> Result<(), ChatError> {
        self.refuse_if_failing()?;
        let mut recorded = self.recorded.lock().expect("lock");
        match recorded.messages.iter_mut().find(|m| m.at.id == target.id) {
            Some(shown) => {
                shown.message = message.clone();
                shown.history.push(message.clone());
                Ok(())
            }
            None => Err(ChatError::Refused {
                platform: self.platform,
                reason: "message_not_found".into(),
            }),
        }
    }
}
