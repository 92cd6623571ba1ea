//! The Discord adapter (serenity): alert channels read over the gateway, summaries as
//! embeds with buttons in a thread on the alert, the `/breakwater` command, and the
//! interactions endpoint for deployments that cannot hold a websocket.
//!
//! - [`render`]: neutral messages as embeds and components.
//! - [`rest`]: serenity's REST client with lanes and retries.
//! - [`gateway`]: the websocket: alert messages in, interactions in, readiness.
//! - [`interactions`]: presses, commands and autocomplete, answered within 3 s.
//! - [`commands`]: `/breakwater`'s definition, registration and parsing.
//! - [`http`]: `POST /discord/interactions`, Ed25519-verified.
//!
//! Discord has no confirmation dialog on buttons, so a Roll back press gets the core's
//! private Confirm/Cancel step as an ephemeral message that only the presser sees.

mod commands;
mod gateway;
mod http;
mod interactions;
mod render;
mod rest;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use serenity::all::AutoArchiveDuration;
use serenity::all::{ChannelId, CreateThread, MessageId, MessageReference, MessageReferenceKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::interactions::{Interactions, PressTokens, press_tokens};
use self::rest::{Rest, RestError, RetryPolicy, codes};
use crate::chat::{AdapterStatus, Chat, ChatError, Lane};
use crate::config::{DiscordConfig, DiscordMode, ServiceConfig};
use crate::core::bot::Bot;
use crate::core::deploy::ServiceName;
use crate::core::message::{Message, MessageRef, Platform, PrivateReply};

/// Why the adapter could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("discord.public_key is not a valid Ed25519 public key: {0}")]
    PublicKey(String),
    #[error("{0}")]
    ApiUrl(String),
}

/// The running adapter's parts, built from `[discord]`.
pub struct DiscordAdapter {
    mode: DiscordMode,
    chat: Arc<DiscordChat>,
    gateway: Option<gateway::Gateway>,
    endpoint: Option<Arc<http::Endpoint>>,
    registration: Arc<commands::Registration>,
    session: Arc<gateway::Session>,
}

impl DiscordAdapter {
    /// Builds the adapter; nothing connects until [`DiscordAdapter::start`].
    pub fn new(
        config: &DiscordConfig,
        services: &[ServiceConfig],
        bot: Bot,
        tasks: TaskTracker,
    ) -> Result<Self, DiscordError> {
        let token = config.token.expose();
        let http = rest::build_http(token, &config.api_url, config.application_id)
            .map_err(DiscordError::ApiUrl)?;
        let rest = Arc::new(Rest::new(Arc::new(http), RetryPolicy::default()));
        let session = Arc::new(gateway::Session::default());
        let tokens = Arc::new(press_tokens());
        let chat = Arc::new(DiscordChat {
            tokens: tokens.clone(),
            rest: rest.clone(),
            alert_channels: config.alert_channels.clone(),
            service_channels: services
                .iter()
                .filter_map(|s| s.discord_channel.map(|c| (s.name.clone(), c)))
                .collect(),
            session: session.clone(),
            mode: config.mode,
        });
        let interactions = Arc::new(Interactions::new(
            bot.clone(),
            rest.clone(),
            interactions::DEFER_AFTER,
            tokens,
        ));
        let registration = Arc::new(commands::Registration::new(rest.clone(), config.guild_id));
        let store = bot.store().clone();
        let (gateway, endpoint) = match config.mode {
            DiscordMode::Gateway => (
                Some(gateway::Gateway {
                    token: token.to_owned(),
                    api_url: config.api_url.clone(),
                    application_id: config.application_id,
                    store,
                    holder: gateway::lease_holder(),
                    handler: Arc::new(gateway::Handler {
                        bot,
                        rest,
                        interactions,
                        alert_channels: config
                            .alert_channels
                            .iter()
                            .copied()
                            .collect::<HashSet<_>>(),
                        bot_user: Default::default(),
                        session: session.clone(),
                        registration: registration.clone(),
                        tasks,
                    }),
                }),
                None,
            ),
            DiscordMode::Http => {
                let key = config.public_key.as_deref().unwrap_or_default();
                let endpoint = http::Endpoint::new(key, interactions, tasks)
                    .map_err(DiscordError::PublicKey)?;
                if !config.alert_channels.is_empty() {
                    tracing::warn!(
                        "discord.mode = \"http\": webhook alerts are posted to discord.alert_channels, but messages there are not read (that needs the gateway)"
                    );
                }
                (None, Some(Arc::new(endpoint)))
            }
        };
        Ok(Self {
            mode: config.mode,
            chat,
            gateway,
            endpoint,
            registration,
            session,
        })
    }

    /// The outbound side, for the [`ChatHub`](crate::chat::ChatHub).
    pub fn chat(&self) -> Arc<dyn Chat> {
        self.chat.clone()
    }

    /// `POST /discord/interactions` in http mode; nothing in gateway mode.
    pub fn router(&self) -> Option<axum::Router> {
        self.endpoint.clone().map(http::router)
    }

    /// Connects: the gateway (which registers `/breakwater` once ready) in gateway mode,
    /// the command registration alone in http mode.
    pub fn start(&self, tasks: &TaskTracker, stop: CancellationToken) {
        match (self.mode, &self.gateway) {
            (DiscordMode::Gateway, Some(gateway)) => {
                let gateway = gateway.clone();
                tasks.spawn(async move { gateway.run(stop).await });
            }
            _ => {
                let registration = self.registration.clone();
                let session = self.session.clone();
                tasks.spawn(async move {
                    tokio::select! {
                        result = registration.register_once() => {
                            // The token is checked here in http mode: a 401 is final.
                            if let Err(RestError::Rejected { status: 401, .. }) = result {
                                session.fail(
                                    "Discord rejected discord.token (401 Unauthorized on registering /breakwater): set a valid bot token and restart".to_owned(),
                                );
                            }
                        }
                        () = stop.cancelled() => {}
                    }
                });
            }
        }
    }
}

/// Discord as the core sees it: post, reply in a thread, update.
pub struct DiscordChat {
    rest: Arc<Rest>,
    alert_channels: Vec<u64>,
    service_channels: HashMap<ServiceName, u64>,
    session: Arc<gateway::Session>,
    mode: DiscordMode,
    /// Tokens of recent presses, to replace private replies that are out of date.
    tokens: Arc<PressTokens>,
}

fn channel_id(raw: &str) -> Result<ChannelId, ChatError> {
    raw.parse::<u64>()
        .ok()
        .filter(|id| *id != 0)
        .map(ChannelId::new)
        .ok_or_else(|| ChatError::Refused {
            platform: Platform::Discord,
            reason: format!("{raw:?} is not a Discord channel id"),
        })
}

fn message_id(raw: &str) -> Result<MessageId, ChatError> {
    raw.parse::<u64>()
        .ok()
        .filter(|id| *id != 0)
        .map(MessageId::new)
        .ok_or_else(|| ChatError::Refused {
            platform: Platform::Discord,
            reason: format!("{raw:?} is not a Discord message id"),
        })
}

/// Where a reply goes: a thread (the alert's own, or the one the parent is in), or the
/// parent's channel as a reply referencing it where threads are unavailable.
struct ReplyTarget {
    channel: ChannelId,
    thread: Option<ChannelId>,
    reference: Option<MessageReference>,
}

impl DiscordChat {
    async fn reply_target(
        &self,
        parent: &MessageRef,
        message: &Message,
        lane: Lane,
    ) -> Result<ReplyTarget, ChatError> {
        let parent_channel = channel_id(&parent.channel)?;
        let parent_id = message_id(&parent.id)?;
        let reference = || {
            MessageReference::new(MessageReferenceKind::Default, parent_channel)
                .message_id(parent_id)
                .fail_if_not_exists(false)
        };
        if let Some(thread) = &parent.thread {
            let thread = channel_id(thread)?;
            return Ok(ReplyTarget {
                channel: thread,
                thread: Some(thread),
                reference: Some(reference()),
            });
        }
        let create = CreateThread::new(render::thread_name(message))
            .auto_archive_duration(AutoArchiveDuration::OneDay);
        let created = self
            .rest
            .call(lane, "create thread", || {
                self.rest
                    .http
                    .create_thread_from_message(parent_channel, parent_id, &create, None)
            })
            .await;
        match created {
            Ok(thread) => Ok(ReplyTarget {
                channel: thread.id,
                thread: Some(thread.id),
                reference: None,
            }),
            // A thread started from a message has the message's id.
            Err(error) if error.code() == Some(codes::THREAD_ALREADY_CREATED) => {
                let thread = ChannelId::new(parent_id.get());
                Ok(ReplyTarget {
                    channel: thread,
                    thread: Some(thread),
                    reference: None,
                })
            }
            Err(error) if threads_unavailable(&error) => {
                tracing::debug!(%error, "no thread on this message; replying with a reference");
                Ok(ReplyTarget {
                    channel: parent_channel,
                    thread: None,
                    reference: Some(reference()),
                })
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Channels without threads (DMs, threads themselves, voice) or without the permission to
/// start one.
fn threads_unavailable(error: &RestError) -> bool {
    matches!(
        error.code(),
        Some(codes::WRONG_CHANNEL_TYPE | codes::MISSING_PERMISSIONS)
    )
}

#[async_trait]
impl Chat for DiscordChat {
    fn platform(&self) -> Platform {
        Platform::Discord
    }

    fn alert_channel(&self, service: Option<&ServiceName>) -> Option<String> {
        service
            .and_then(|s| self.service_channels.get(s))
            .or_else(|| self.alert_channels.first())
            .map(ToString::to_string)
    }

    fn needs_confirm_step(&self) -> bool {
        true
    }

    fn status(&self) -> AdapterStatus {
        match self.mode {
            DiscordMode::Gateway => self.session.status(),
            DiscordMode::Http => match self.session.status() {
                failed @ AdapterStatus::Failed(_) => failed,
                _ => AdapterStatus::Connected,
            },
        }
    }

    async fn post(
        &self,
        channel: &str,
        message: &Message,
        lane: Lane,
    ) -> Result<MessageRef, ChatError> {
        let channel_id = channel_id(channel)?;
        let body = render::render(message, true).create_message();
        let posted = self
            .rest
            .call(lane, "create message", || {
                self.rest.http.send_message(channel_id, Vec::new(), &body)
            })
            .await?;
        Ok(MessageRef {
            platform: Platform::Discord,
            channel: channel_id.to_string(),
            id: posted.id.to_string(),
            thread: None,
        })
    }

    async fn reply(
        &self,
        parent: &MessageRef,
        message: &Message,
        lane: Lane,
    ) -> Result<MessageRef, ChatError> {
        let target = self.reply_target(parent, message, lane).await?;
        let mut body = render::render(message, target.thread.is_none()).create_message();
        if let Some(reference) = target.reference {
            body = body.reference_message(reference);
        }
        let posted = self
            .rest
            .call(lane, "reply", || {
                self.rest
                    .http
                    .send_message(target.channel, Vec::new(), &body)
            })
            .await?;
        Ok(MessageRef {
            platform: Platform::Discord,
            channel: target.channel.to_string(),
            id: posted.id.to_string(),
            thread: target.thread.map(|t| t.to_string()),
        })
    }

    async fn update(
        &self,
        target: &MessageRef,
        message: &Message,
        lane: Lane,
    ) -> Result<(), ChatError> {
        let channel = channel_id(&target.channel)?;
        let id = message_id(&target.id)?;
        let body = render::render(message, target.thread.is_none()).edit_message();
        self.rest
            .call(lane, "edit message", || {
                self.rest.http.edit_message(channel, id, &body, Vec::new())
            })
            .await?;
        Ok(())
    }

    /// Private replies are interaction responses (ephemeral messages cannot be edited
    /// through the channel): edited through the press's token while it lives.
    async fn replace_private(
        &self,
        reply: &PrivateReply,
        message: &Message,
    ) -> Result<(), ChatError> {
        let Some(token) = self.tokens.live(&reply.event_id) else {
            return Ok(());
        };
        let body = render::render(message, false).edit_interaction_response();
        // Retried while Discord has not yet taken the interaction's first response.
        interactions::follow_up_call(&self.rest, "edit original interaction response", || {
            self.rest
                .http
                .edit_original_interaction_response(&token, &body, Vec::new())
        })
        .await?;
        Ok(())
    }
}
