//! The Slack adapter: alert channels read over Socket Mode or the Events API, summaries in
//! Block Kit as replies in the alert's thread, rollback buttons with Slack's own confirm
//! dialog, and `/breakwater`.
//!
//! - [`render`]: neutral messages as Block Kit.
//! - [`web`]: the Web API (slack-morphism's client), failures classified for retrying.
//! - [`outbox`](crate::chat::outbox): one paced queue per channel in front of the Web API.
//! - [`inbound`]: events, interactions and commands into core events; replies back out.
//! - [`socket`]: Socket Mode (`slack.mode = "socket"`).
//! - [`http`]: the signed HTTP endpoints (`slack.mode = "http"`).
//! - [`identity`]: actors, display names and user-group membership, cached.
//!
//! A rollback button's Block Kit `confirm` dialog names the exact from → to revisions, so
//! the click that comes after it is the confirmation: the core starts the rollback (or,
//! under `policy.two_person`, waits for a second person's click).

mod commands;
mod http;
mod identity;
mod inbound;
mod render;
mod socket;
mod web;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use self::inbound::Inbound;
use self::web::Web;
use slack_morphism::prelude::SlackMessageContent;

use crate::chat::outbox::{
    Outbox, PRIVATE_REPLIES_BOUND, PRIVATE_REPLY_TTL, PrivateError, PrivateLane, PrivatePace,
    RetryPolicy, SendFailure,
};
use crate::chat::recent::RecentPresses;
use crate::chat::{AdapterStatus, Chat, ChatError, Lane};
use crate::config::{ServiceConfig, SlackConfig, SlackMode};
use crate::core::bot::Bot;
use crate::core::deploy::ServiceName;
use crate::core::message::{Message, MessageRef, Platform, PrivateReply};
use crate::sync::lock;

pub use self::http::{SignatureError, sign, verify_signature};

/// Slack's posting rate per channel: about one message per second
/// (https://docs.slack.dev/apis/web-api/rate-limits).
pub const CHANNEL_SPACING: Duration = Duration::from_secs(1);

/// `chat.postEphemeral` is a Tier 4 method: 100+ calls per minute per workspace
/// (https://docs.slack.dev/reference/methods/chat.postEphemeral).
pub const EPHEMERALS_PER_MINUTE: u32 = 100;

/// The adapter's state as `/readyz` shows it, shared by the parts that connect.
#[derive(Clone)]
pub(crate) struct StatusCell(Arc<Mutex<AdapterStatus>>);

impl StatusCell {
    fn new(initial: AdapterStatus) -> Self {
        Self(Arc::new(Mutex::new(initial)))
    }

    pub(crate) fn get(&self) -> AdapterStatus {
        lock(&self.0).clone()
    }

    /// Sets the state unless the adapter has already failed for good: a rejected token
    /// stays the operator's to fix.
    pub(crate) fn set(&self, status: AdapterStatus) {
        let mut current = lock(&self.0);
        if !matches!(*current, AdapterStatus::Failed(_)) {
            *current = status;
        }
    }

    /// Stops the adapter for good; `reason` names the setting to fix.
    pub(crate) fn fail(&self, reason: String) {
        *lock(&self.0) = AdapterStatus::Failed(reason);
    }

    pub(crate) fn has_failed(&self) -> bool {
        matches!(self.get(), AdapterStatus::Failed(_))
    }
}

/// Why the adapter could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error("slack.signing_secret is required in http mode")]
    SigningSecret,
    #[error("slack.app_token is required in socket mode")]
    AppToken,
    #[error("the Slack Web API client: {0}")]
    Client(String),
}

/// The running adapter's parts, built from `[slack]`.
pub struct SlackAdapter {
    mode: SlackMode,
    chat: Arc<SlackChat>,
    inbound: Arc<Inbound>,
    socket: Option<socket::SocketMode>,
    endpoint: Option<Arc<http::Endpoint>>,
}

impl SlackAdapter {
    /// Builds the adapter; nothing connects until [`SlackAdapter::start`].
    pub fn new(
        config: &SlackConfig,
        services: &[ServiceConfig],
        bot: Bot,
        tasks: TaskTracker,
    ) -> Result<Self, SlackError> {
        let app_token = config.app_token.as_ref().map(|t| t.expose().to_owned());
        let web = Arc::new(
            Web::new(
                &config.api_url,
                config.bot_token.expose(),
                app_token.as_deref(),
            )
            .map_err(SlackError::Client)?,
        );
        let status = StatusCell::new(AdapterStatus::Disconnected(
            "starting: not connected to Slack yet".to_owned(),
        ));
        let metrics = bot.metrics().clone();
        let chat = Arc::new(SlackChat {
            web: web.clone(),
            outbox: Outbox::new(Platform::Slack, CHANNEL_SPACING, RetryPolicy::default())
                .reporting_peak(metrics.chat_queue_peak("slack", "channel")),
            private: PrivateLane::new(
                Platform::Slack,
                EPHEMERALS_PER_MINUTE,
                PRIVATE_REPLIES_BOUND,
                PRIVATE_REPLY_TTL,
                RetryPolicy::default(),
            )
            .reporting(
                metrics.chat_queue_peak("slack", "private_replies"),
                metrics.chat_dropped("slack", "private_replies"),
            ),
            edits: Mutex::new(HashMap::new()),
            alert_channels: config.alert_channels.clone(),
            service_channels: services
                .iter()
                .filter_map(|s| s.slack_channel.clone().map(|c| (s.name.clone(), c)))
                .collect(),
            status: status.clone(),
            press_urls: RecentPresses::new(PRESS_URLS_KEPT, RESPONSE_URL_LIFETIME),
        });
        let usergroups = identity::usergroups_in(&bot.settings().policy);
        let inbound = Arc::new(Inbound {
            bot,
            chat: chat.clone(),
            web: web.clone(),
            identity: identity::Identity::new(web.clone(), usergroups),
            backlog: inbound::EventBacklog::new(inbound::EVENT_BACKLOG)
                .reporting_peak(metrics.chat_queue_peak("slack", "events")),
            interactions: inbound::EventBacklog::new(inbound::INTERACTION_BACKLOG)
                .reporting_peak(metrics.chat_queue_peak("slack", "interactions")),
            alert_channels: config
                .alert_channels
                .iter()
                .cloned()
                .collect::<HashSet<_>>(),
            me: tokio::sync::OnceCell::new(),
            tasks,
        });
        let (socket, endpoint) = match config.mode {
            SlackMode::Socket => {
                if app_token.is_none() {
                    return Err(SlackError::AppToken);
                }
                (
                    Some(socket::SocketMode {
                        web,
                        inbound: inbound.clone(),
                        status,
                        first_pause: config.reconnect_backoff,
                    }),
                    None,
                )
            }
            SlackMode::Http => {
                let secret = config
                    .signing_secret
                    .as_ref()
                    .ok_or(SlackError::SigningSecret)?;
                (
                    None,
                    Some(Arc::new(http::Endpoint::new(
                        secret.expose(),
                        inbound.clone(),
                    ))),
                )
            }
        };
        Ok(Self {
            mode: config.mode,
            chat,
            inbound,
            socket,
            endpoint,
        })
    }

    /// The outbound side, for the [`ChatHub`](crate::chat::ChatHub).
    pub fn chat(&self) -> Arc<dyn Chat> {
        self.chat.clone()
    }

    /// The signed endpoints in http mode; nothing in socket mode.
    pub fn router(&self) -> Option<axum::Router> {
        self.endpoint.clone().map(http::router)
    }

    /// Connects: Socket Mode's websocket, or in http mode just `auth.test` (the adapter is
    /// ready once it knows its own identity, so it never mistakes its posts for alerts).
    pub fn start(&self, tasks: &TaskTracker, stop: CancellationToken) {
        match (&self.mode, &self.socket) {
            (SlackMode::Socket, Some(socket)) => {
                let socket = socket.clone();
                tasks.spawn(async move { socket.run(stop).await });
            }
            _ => {
                let inbound = self.inbound.clone();
                let status = self.chat.status.clone();
                tasks.spawn(async move {
                    let mut pause = Duration::from_millis(200);
                    loop {
                        match inbound.identify().await {
                            Ok(_) => {
                                tracing::info!("Slack bot token accepted (auth.test); http mode ready");
                                status.set(AdapterStatus::Connected);
                                return;
                            }
                            // A refused token is fatal (`Inbound::identify` said so).
                            Err(_) if status.has_failed() => return,
                            Err(failure) => {
                                let reason = format!("auth.test: {}", web::describe(&failure));
                                tracing::warn!(%reason, ?pause, "Slack Web API not reachable; trying again");
                                status.set(AdapterStatus::Disconnected(reason));
                            }
                        }
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = stop.cancelled() => return,
                        }
                        pause = (pause * 2).min(Duration::from_secs(30));
                    }
                });
            }
        }
    }
}

/// The newest edit of one message and how far its edits have gone out.
#[derive(Default)]
struct Edits {
    newest: u64,
    sent: u64,
    /// Callers still waiting or sending; the entry lives until the last one is done.
    waiting: usize,
    content: Option<SlackMessageContent>,
}

/// Slack as the core sees it: post, reply in a thread, update.
pub struct SlackChat {
    web: Arc<Web>,
    outbox: Outbox,
    /// Pending edits per (channel, ts).
    edits: Mutex<HashMap<(String, String), Edits>>,
    alert_channels: Vec<String>,
    service_channels: HashMap<ServiceName, String>,
    /// Private replies: their own bounded lane, never a channel's queue.
    private: PrivateLane,
    status: StatusCell,
    /// The `response_url`s of recent presses on ephemeral messages (a plan answered
    /// privately), by press id: the outcome replaces that message once it is known.
    press_urls: RecentPresses<Url>,
}

/// At most this many presses' `response_url`s are kept, the oldest dropped first.
const PRESS_URLS_KEPT: usize = 2048;
/// A `response_url` takes up to five answers within 30 minutes
/// (https://docs.slack.dev/interactivity/handling-user-interaction).
const RESPONSE_URL_LIFETIME: Duration = Duration::from_secs(29 * 60);

impl SlackChat {
    /// Only `user` sees it, in `thread_ts`'s thread when given.
    async fn ephemeral(
        &self,
        channel: &str,
        user: &str,
        thread_ts: Option<&str>,
        message: &Message,
    ) -> Result<(), PrivateError> {
        let content = render::render(message);
        self.private
            .send("chat.postEphemeral", PrivatePace::Budgeted, || {
                self.web
                    .post_ephemeral(channel, user, thread_ts, content.clone())
            })
            .await
    }

    /// Answers through a `response_url` (ephemeral unless `replace_original`).
    async fn respond(
        &self,
        response_url: &Url,
        message: &Message,
        replace_original: bool,
    ) -> Result<(), PrivateError> {
        let content = render::render(message);
        self.private
            .send("response_url", PrivatePace::PerInteraction, || {
                self.web
                    .respond(response_url, content.clone(), replace_original)
            })
            .await
    }
}

#[async_trait]
impl Chat for SlackChat {
    fn platform(&self) -> Platform {
        Platform::Slack
    }

    /// A press on an ephemeral message (a plan answered privately) is replaced through its
    /// `response_url`. Ephemerals posted with `chat.postEphemeral` cannot be changed, and
    /// `replace_original` on a press in a public message would replace that public
    /// message for everyone, so nothing else is done here; the core sends no private
    /// "Rolling back…" for presses on the message that shows the progress itself.
    async fn replace_private(
        &self,
        reply: &PrivateReply,
        message: &Message,
    ) -> Result<(), ChatError> {
        let Some(url) = self.press_urls.live(&reply.event_id) else {
            return Ok(());
        };
        match self.respond(&url, message, true).await {
            Err(PrivateError::Failed(error)) => Err(error),
            // Dropped by the private lane's policy (counted and logged there).
            Err(PrivateError::Dropped(_)) | Ok(()) => Ok(()),
        }
    }

    fn alert_channel(&self, service: Option<&ServiceName>) -> Option<String> {
        service
            .and_then(|s| self.service_channels.get(s))
            .or_else(|| self.alert_channels.first())
            .cloned()
    }

    /// The rollback button's Block Kit `confirm` dialog is the confirmation.
    fn needs_confirm_step(&self) -> bool {
        false
    }

    fn status(&self) -> AdapterStatus {
        self.status.get()
    }

    async fn post(
        &self,
        channel: &str,
        message: &Message,
        lane: Lane,
    ) -> Result<MessageRef, ChatError> {
        let content = render::render(message);
        let ts = self
            .outbox
            .send(channel, lane, "chat.postMessage", || {
                self.web.post_message(channel, None, content.clone())
            })
            .await?;
        Ok(MessageRef {
            platform: Platform::Slack,
            channel: channel.to_owned(),
            id: ts,
            thread: None,
        })
    }

    async fn reply(
        &self,
        parent: &MessageRef,
        message: &Message,
        lane: Lane,
    ) -> Result<MessageRef, ChatError> {
        // A reply to a reply stays in the same thread: Slack threads are one level deep.
        let thread_ts = parent.thread.clone().unwrap_or_else(|| parent.id.clone());
        let content = render::render(message);
        let ts = self
            .outbox
            .send(&parent.channel, lane, "chat.postMessage", || {
                self.web
                    .post_message(&parent.channel, Some(&thread_ts), content.clone())
            })
            .await?;
        Ok(MessageRef {
            platform: Platform::Slack,
            channel: parent.channel.clone(),
            id: ts,
            thread: Some(thread_ts),
        })
    }

    /// Edits of one message that pile up behind the channel's rate collapse: the first to
    /// get a turn sends the newest content, the others find it sent and skip theirs.
    async fn update(
        &self,
        target: &MessageRef,
        message: &Message,
        lane: Lane,
    ) -> Result<(), ChatError> {
        let key = (target.channel.clone(), target.id.clone());
        let generation = {
            let mut edits = lock(&self.edits);
            let edit = edits.entry(key.clone()).or_default();
            edit.newest += 1;
            edit.waiting += 1;
            edit.content = Some(render::render(message));
            edit.newest
        };
        let sent = self
            .outbox
            .send_unless(
                &target.channel,
                lane,
                "chat.update",
                || (lock(&self.edits).get(&key).map_or(0, |e| e.sent) >= generation).then_some(0),
                || {
                    let (newest, content) = {
                        let edits = lock(&self.edits);
                        let edit = edits.get(&key);
                        (
                            edit.map_or(generation, |e| e.newest),
                            edit.and_then(|e| e.content.clone()),
                        )
                    };
                    async move {
                        let content = content.ok_or_else(|| {
                            SendFailure::Refused(ChatError::Refused {
                                platform: Platform::Slack,
                                reason: "the edit was forgotten".to_owned(),
                            })
                        })?;
                        self.web
                            .update_message(&target.channel, &target.id, content)
                            .await
                            .map(|()| newest)
                    }
                },
            )
            .await;
        let mut edits = lock(&self.edits);
        if let Some(edit) = edits.get_mut(&key) {
            if let Ok(newest) = sent {
                edit.sent = edit.sent.max(newest);
            }
            edit.waiting = edit.waiting.saturating_sub(1);
            // Nobody else editing: forget the message until its next edit.
            if edit.waiting == 0 {
                edits.remove(&key);
            }
        }
        sent.map(drop)
    }
}
