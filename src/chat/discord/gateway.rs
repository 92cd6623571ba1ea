//! The gateway connection (serenity's client and shard runner): messages in the alert
//! channels become the core's channel messages, interactions are answered through the
//! interaction callback, and readiness follows the shard's stage. serenity reconnects
//! and resumes on its own; an event replayed by a resume (or seen by two replicas) is
//! claimed once by the core under its Discord id.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serenity::all::{
    ClientBuilder, ConnectionStage, Context, Embed, EventHandler, GatewayIntents, Interaction,
    Message as DiscordMessage, MessageType, Ready, ResumedEvent, ShardStageUpdateEvent,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::commands::Registration;
use super::interactions::Interactions;
use super::rest::{self, Rest};
use crate::chat::Lane;
use crate::core::bot::Bot;
use crate::core::event::{Attachment, ChannelMessage, MessageAuthor};
use crate::core::message::{MessageRef, Platform};

/// Guild messages and their content (the privileged intent): 512 | 32768.
pub(crate) fn intents() -> GatewayIntents {
    GatewayIntents::GUILD_MESSAGES | GatewayIntents::MESSAGE_CONTENT
}

/// The gateway client, restarted with a back-off if serenity gives up.
#[derive(Clone)]
pub(crate) struct Gateway {
    pub(crate) token: String,
    pub(crate) api_url: Url,
    pub(crate) application_id: Option<u64>,
    pub(crate) handler: Arc<Handler>,
}

impl Gateway {
    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut pause = Duration::from_secs(1);
        loop {
            let http = match rest::build_http(&self.token, &self.api_url, self.application_id) {
                Ok(http) => http,
                Err(error) => {
                    tracing::error!(%error, "cannot start the Discord gateway");
                    return;
                }
            };
            let client = ClientBuilder::new_with_http(http, intents())
                .event_handler_arc(self.handler.clone())
                .await;
            match client {
                Ok(mut client) => {
                    let shards = client.shard_manager.clone();
                    tokio::select! {
                        result = client.start() => match result {
                            Ok(()) => tracing::warn!("the Discord gateway closed"),
                            Err(error) => tracing::error!(%error, "the Discord gateway failed"),
                        },
                        () = stop.cancelled() => {
                            shards.shutdown_all().await;
                            self.handler.connected.store(false, Ordering::SeqCst);
                            return;
                        }
                    }
                }
                Err(error) => tracing::error!(%error, "cannot build the Discord client"),
            }
            self.handler.connected.store(false, Ordering::SeqCst);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => return,
            }
            pause = (pause * 2).min(Duration::from_secs(300));
        }
    }
}

/// serenity's event handler.
pub(crate) struct Handler {
    pub(crate) bot: Bot,
    pub(crate) rest: Arc<Rest>,
    pub(crate) interactions: Arc<Interactions>,
    pub(crate) alert_channels: HashSet<u64>,
    /// The bot's own user id, from READY, to leave its own posts alone.
    pub(crate) bot_user: AtomicU64,
    pub(crate) connected: Arc<AtomicBool>,
    pub(crate) registration: Arc<Registration>,
    pub(crate) tasks: TaskTracker,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        self.bot_user.store(ready.user.id.get(), Ordering::SeqCst);
        self.rest.http.set_application_id(ready.application.id);
        self.connected.store(true, Ordering::SeqCst);
        tracing::info!(user = %ready.user.name, guilds = ready.guilds.len(), "connected to the Discord gateway");
        let registration = self.registration.clone();
        self.tasks
            .spawn(async move { registration.register_once().await });
    }

    async fn resume(&self, _ctx: Context, _event: ResumedEvent) {
        self.connected.store(true, Ordering::SeqCst);
    }

    async fn shard_stage_update(&self, _ctx: Context, event: ShardStageUpdateEvent) {
        self.connected
            .store(event.new == ConnectionStage::Connected, Ordering::SeqCst);
    }

    async fn message(&self, _ctx: Context, message: DiscordMessage) {
        self.on_message(message).await;
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        self.on_interaction(interaction).await;
    }
}

impl Handler {
    /// A message in an alert channel, by a person, a bot or a webhook, but not by
    /// breakwater itself.
    pub(crate) async fn on_message(&self, message: DiscordMessage) {
        if !self.alert_channels.contains(&message.channel_id.get())
            || message.author.id.get() == self.bot_user.load(Ordering::SeqCst)
            || !matches!(
                message.kind,
                MessageType::Regular | MessageType::InlineReply
            )
        {
            return;
        }
        let at = MessageRef {
            platform: Platform::Discord,
            channel: message.channel_id.to_string(),
            id: message.id.to_string(),
            thread: None,
        };
        let seen = channel_message(&message);
        match self
            .bot
            .handle_channel_message(&message.id.to_string(), at, &seen)
            .await
        {
            Ok(handled) => {
                tracing::debug!(?handled, message = %message.id, "alert channel message")
            }
            Err(error) => {
                tracing::error!(%error, message = %message.id, "could not record an alert channel message");
            }
        }
    }

    /// Answers an interaction through its callback, then follows up if the answer was
    /// deferred.
    pub(crate) async fn on_interaction(&self, interaction: Interaction) {
        let id = interaction.id();
        let token = interaction.token().to_owned();
        let answer = self.interactions.answer(interaction).await;
        let sent = self
            .rest
            .call(Lane::Interactive, "interaction callback", || {
                self.rest
                    .http
                    .create_interaction_response(id, &token, &answer.first, Vec::new())
            })
            .await;
        match sent {
            Ok(()) => {
                if let Some(later) = answer.later {
                    later.spawn(&self.tasks);
                }
            }
            // A replayed interaction (resume, second replica) was answered the first time.
            Err(error)
                if error.code() == Some(rest::codes::ALREADY_ACKNOWLEDGED)
                    || error.code() == Some(rest::codes::UNKNOWN_INTERACTION) =>
            {
                tracing::debug!(%error, interaction = %id, "interaction already answered");
            }
            Err(error) => {
                tracing::warn!(%error, interaction = %id, "could not answer an interaction")
            }
        }
    }
}

/// A Discord message as the alert parsers read it: content, and each embed as an
/// attachment (title, description, fields, link, colour, footer, author).
pub(crate) fn channel_message(message: &DiscordMessage) -> ChannelMessage {
    let name = message
        .member
        .as_ref()
        .and_then(|m| m.nick.clone())
        .or_else(|| message.author.global_name.clone())
        .unwrap_or_else(|| message.author.name.clone());
    ChannelMessage {
        text: message.content.clone(),
        attachments: message.embeds.iter().map(attachment).collect(),
        author: MessageAuthor {
            name: Some(name),
            is_bot: message.author.bot || message.webhook_id.is_some(),
        },
        posted_at: *message.timestamp,
    }
}

fn attachment(embed: &Embed) -> Attachment {
    Attachment {
        title: embed.title.clone(),
        title_link: embed.url.clone(),
        pretext: None,
        text: embed.description.clone(),
        fallback: None,
        color: embed.colour.map(|c| c.0.to_string()),
        fields: embed
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.value.clone()))
            .collect(),
        footer: embed.footer.as_ref().map(|f| f.text.clone()),
        author_name: embed.author.as_ref().map(|a| a.name.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(value: serde_json::Value) -> DiscordMessage {
        serde_json::from_value(value).expect("documented MESSAGE_CREATE payload")
    }

    fn alertmanager_embed() -> serde_json::Value {
        json!({
            "id": "1300000000000000001",
            "channel_id": "1200000000000000001",
            "guild_id": "1100000000000000001",
            "author": {"id": "1400000000000000001", "username": "Alertmanager", "discriminator": "0000", "avatar": null, "bot": true, "global_name": null},
            "webhook_id": "1400000000000000001",
            "content": "",
            "timestamp": "2025-03-14T09:27:23.000000+00:00",
            "edited_timestamp": null,
            "tts": false,
            "mention_everyone": false,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [{
                "type": "rich",
                "title": "[FIRING:1] HighErrorRate (checkout production critical)",
                "description": "Alerts Firing:\nLabels:\n - alertname = HighErrorRate\n - environment = production",
                "url": "http://alertmanager.example:9093/#/alerts",
                "color": 10038562,
                "fields": [{"name": "severity", "value": "critical", "inline": true}],
                "footer": {"text": "Alertmanager"}
            }],
            "pinned": false,
            "type": 0,
            "flags": 0
        })
    }

    #[test]
    fn embeds_become_attachments_the_alert_parsers_read() {
        let seen = channel_message(&message(alertmanager_embed()));
        assert_eq!(seen.text, "");
        assert!(seen.author.is_bot, "webhook posts count as bots");
        assert_eq!(seen.author.name.as_deref(), Some("Alertmanager"));
        let embed = &seen.attachments[0];
        assert_eq!(
            embed.title.as_deref(),
            Some("[FIRING:1] HighErrorRate (checkout production critical)")
        );
        assert!(
            embed
                .text
                .as_deref()
                .is_some_and(|t| t.contains("alertname = HighErrorRate"))
        );
        assert_eq!(
            embed.title_link.as_deref(),
            Some("http://alertmanager.example:9093/#/alerts")
        );
        assert_eq!(embed.color.as_deref(), Some("10038562"));
        assert_eq!(
            embed.fields,
            [("severity".to_owned(), "critical".to_owned())]
        );
        assert_eq!(embed.footer.as_deref(), Some("Alertmanager"));
        assert_eq!(seen.posted_at.to_rfc3339(), "2025-03-14T09:27:23+00:00");
        let alert = crate::alerts::parse_channel_message(&seen).expect("an alert");
        assert_eq!(alert.title, "HighErrorRate");
    }

    #[test]
    fn a_persons_message_is_not_a_bot_message() {
        let mut payload = alertmanager_embed();
        payload["author"] = json!({"id": "111", "username": "ada", "discriminator": "0", "avatar": null, "global_name": "Ada"});
        payload["webhook_id"] = serde_json::Value::Null;
        payload["embeds"] = json!([]);
        payload["content"] = json!("checkout prod is throwing 500s");
        let seen = channel_message(&message(payload));
        assert!(!seen.author.is_bot);
        assert_eq!(seen.author.name.as_deref(), Some("Ada"));
        assert_eq!(seen.text, "checkout prod is throwing 500s");
    }

    #[test]
    fn the_intents_are_guild_messages_and_message_content() {
        assert_eq!(intents().bits(), 33280);
    }
}
