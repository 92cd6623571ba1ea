//! What Slack delivers — Events API callbacks, `block_actions` interactions and slash
//! commands — the same whether it came over Socket Mode or HTTP. Transports acknowledge
//! first and hand the parsed payload here; everything slow (the store, the Web API, the
//! backend) happens in tasks on the adapter's tracker.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio_util::task::TaskTracker;

use super::SlackChat;
use super::commands::SlashCommand;
use super::identity::Identity;
use super::render::LINK_ACTION_PREFIX;
use super::web;
use super::web::{BotIdentity, Web};
use crate::chat::outbox::{PrivateError, SendFailure};
use crate::chat::{AdapterStatus, ChatError, Lane};
use crate::core::bot::Bot;
use crate::core::event::{Attachment, ChannelMessage, CommandRequest, MessageAuthor, Press, Reply};
use crate::core::message::{ButtonAction, ButtonKind, MessageRef, Platform};

/// An Events API request body or Socket Mode `events_api` payload.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum EventsBody {
    UrlVerification {
        challenge: String,
    },
    EventCallback(Box<EventCallback>),
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub(crate) struct EventCallback {
    pub(crate) event_id: String,
    pub(crate) event: MessageEvent,
}

/// The fields of a `message` event breakwater reads
/// (https://docs.slack.dev/reference/events/message). Other event types parse too and are
/// ignored by their `type`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct MessageEvent {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) subtype: Option<String>,
    pub(crate) channel: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) bot_id: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) bot_profile: Option<BotProfile>,
    #[serde(default)]
    pub(crate) text: String,
    pub(crate) ts: Option<String>,
    pub(crate) thread_ts: Option<String>,
    #[serde(default)]
    pub(crate) attachments: Vec<SlackAttachment>,
    #[serde(default)]
    pub(crate) blocks: Vec<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct BotProfile {
    pub(crate) name: Option<String>,
}

/// A legacy secondary attachment, as Alertmanager, Grafana and Datadog post them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SlackAttachment {
    title: Option<String>,
    title_link: Option<String>,
    pretext: Option<String>,
    text: Option<String>,
    fallback: Option<String>,
    color: Option<String>,
    #[serde(default)]
    fields: Vec<AttachmentField>,
    footer: Option<String>,
    author_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AttachmentField {
    #[serde(default)]
    title: String,
    #[serde(default)]
    value: String,
}

/// A `block_actions` payload (https://docs.slack.dev/reference/interaction-payloads/block_actions-payload).
#[derive(Debug, Deserialize)]
pub(crate) struct Interaction {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) user: InteractionUser,
    pub(crate) trigger_id: Option<String>,
    pub(crate) channel: Option<IdOnly>,
    pub(crate) container: Option<Container>,
    pub(crate) message: Option<InteractionMessage>,
    pub(crate) response_url: Option<url::Url>,
    #[serde(default)]
    pub(crate) actions: Vec<InteractionAction>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct InteractionUser {
    pub(crate) id: String,
    pub(crate) username: Option<String>,
    pub(crate) name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct IdOnly {
    pub(crate) id: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Container {
    pub(crate) channel_id: Option<String>,
    pub(crate) message_ts: Option<String>,
    pub(crate) thread_ts: Option<String>,
    /// The pressed message is an ephemeral one (only the presser sees it).
    #[serde(default)]
    pub(crate) is_ephemeral: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct InteractionMessage {
    pub(crate) ts: String,
    pub(crate) thread_ts: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct InteractionAction {
    pub(crate) action_id: String,
    pub(crate) value: Option<String>,
    pub(crate) action_ts: Option<String>,
}

/// Turns deliveries into core events and the core's replies into Slack messages.
pub(crate) struct Inbound {
    pub(crate) bot: Bot,
    pub(crate) chat: Arc<SlackChat>,
    pub(crate) web: Arc<Web>,
    pub(crate) identity: Identity,
    pub(crate) alert_channels: HashSet<String>,
    pub(crate) me: OnceCell<BotIdentity>,
    pub(crate) tasks: TaskTracker,
    pub(crate) backlog: EventBacklog,
    /// Button presses and slash commands acknowledged but not yet answered.
    pub(crate) interactions: EventBacklog,
}

/// Deliveries acknowledged but not yet handled: one set for channel events, one for
/// button presses and slash commands. Each waits on the store and Slack's API; during a
/// flood faster than they can be handled they would pile up without end and take the
/// bot's memory with them (127,000 presses in 5 s once took it to 2 GB). Past the bound,
/// HTTP deliveries get 503 + `Retry-After` (Slack redelivers events; a person's client
/// shows the press failed and they press again) and the Socket Mode reader waits for room
/// before reading on (Slack redelivers what it sees unacknowledged).
#[derive(Clone)]
pub(crate) struct EventBacklog {
    places: Arc<tokio::sync::Semaphore>,
    bound: usize,
    peak: Option<prometheus_client::metrics::gauge::Gauge>,
}

/// At most this many channel events are handled at once.
pub(crate) const EVENT_BACKLOG: usize = 1024;

/// At most this many presses and commands are handled at once. Far above what people
/// press by hand; a press of a foreign button is answered (or its private reply dropped)
/// in milliseconds, so only a flood fills it.
pub(crate) const INTERACTION_BACKLOG: usize = 256;

impl EventBacklog {
    pub(crate) fn new(bound: usize) -> Self {
        Self {
            places: Arc::new(tokio::sync::Semaphore::new(bound)),
            bound,
            peak: None,
        }
    }

    /// Reports the most deliveries held at once to `gauge` (a metric).
    pub(crate) fn reporting_peak(
        mut self,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Self {
        self.peak = Some(gauge);
        self
    }

    fn entered(
        &self,
        place: tokio::sync::OwnedSemaphorePermit,
    ) -> tokio::sync::OwnedSemaphorePermit {
        if let Some(gauge) = &self.peak {
            let held = self.bound.saturating_sub(self.places.available_permits());
            gauge.inner().fetch_max(
                i64::try_from(held).unwrap_or(i64::MAX),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        place
    }

    /// A place in the backlog now, or `None` when it is full.
    pub(crate) fn try_enter(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let place = self.places.clone().try_acquire_owned().ok()?;
        Some(self.entered(place))
    }

    /// A place in the backlog, waiting for one.
    pub(crate) async fn enter(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let place = self.places.clone().acquire_owned().await.ok()?;
        Some(self.entered(place))
    }
}

impl Inbound {
    /// Who the bot is (`auth.test`), asked until Slack answers. A token Slack refuses
    /// fails the adapter for good: one error naming `slack.bot_token`, `/readyz` shows
    /// it, and nothing asks again.
    pub(crate) async fn identify(&self) -> Result<&BotIdentity, SendFailure> {
        if let Some(me) = self.me.get() {
            return Ok(me);
        }
        if let AdapterStatus::Failed(reason) = self.chat.status.get() {
            return Err(SendFailure::Refused(ChatError::Refused {
                platform: Platform::Slack,
                reason,
            }));
        }
        let identified = self.me.get_or_try_init(|| self.web.identity()).await;
        if let Err(failure) = &identified
            && let Some(code) = web::rejected_credentials(failure)
        {
            let reason = format!(
                "Slack refused slack.bot_token ({code}) at auth.test: set a valid bot token (xoxb-…) and restart"
            );
            tracing::error!(
                "{reason}; the Slack adapter is stopped, the rest of breakwater keeps running"
            );
            self.chat.status.fail(reason);
        }
        identified
    }

    /// Who the bot is, or `None` (logged) while Slack cannot say.
    pub(crate) async fn me(&self) -> Option<&BotIdentity> {
        match self.identify().await {
            Ok(me) => Some(me),
            Err(_) if self.chat.status.has_failed() => None,
            Err(failure) => {
                tracing::warn!(
                    error = %web::describe(&failure),
                    "auth.test failed: cannot tell the bot's own posts apart yet"
                );
                None
            }
        }
    }

    /// Handles an acknowledged Events API delivery in the background, holding `place` in
    /// the backlog until it is done.
    pub(crate) fn spawn_event(
        self: &Arc<Self>,
        callback: Box<EventCallback>,
        place: tokio::sync::OwnedSemaphorePermit,
    ) {
        let inbound = self.clone();
        self.tasks.spawn(async move {
            inbound.event(callback).await;
            drop(place);
        });
    }

    /// Handles an acknowledged press in the background, holding `place` in the
    /// interaction set until it is answered.
    pub(crate) fn spawn_interaction(
        self: &Arc<Self>,
        interaction: Interaction,
        place: tokio::sync::OwnedSemaphorePermit,
    ) {
        let inbound = self.clone();
        self.tasks.spawn(async move {
            inbound.interaction(interaction).await;
            drop(place);
        });
    }

    pub(crate) fn spawn_command(
        self: &Arc<Self>,
        command: SlashCommand,
        place: tokio::sync::OwnedSemaphorePermit,
    ) {
        let inbound = self.clone();
        self.tasks.spawn(async move {
            inbound.command(command).await;
            drop(place);
        });
    }

    /// A message in an alert channel, top-level, by a person, a bot or an integration, but
    /// not by breakwater itself.
    async fn event(&self, callback: Box<EventCallback>) {
        let EventCallback { event_id, event } = *callback;
        let (Some(channel), Some(ts)) = (&event.channel, &event.ts) else {
            return;
        };
        if event.kind != "message"
            || !self.alert_channels.contains(channel)
            || !matches!(event.subtype.as_deref(), None | Some("bot_message"))
            || event.thread_ts.as_ref().is_some_and(|thread| thread != ts)
        {
            return;
        }
        let Some(me) = self.me().await else {
            return;
        };
        if event.user.as_deref() == Some(me.user_id.as_str())
            || (event.bot_id.is_some() && event.bot_id == me.bot_id)
        {
            return;
        }
        let author = match (
            &event.user,
            event.bot_id.is_some() || event.subtype.is_some(),
        ) {
            (Some(user), false) => MessageAuthor {
                name: Some(self.identity.name(user, None).await),
                is_bot: false,
            },
            _ => MessageAuthor {
                name: event
                    .username
                    .clone()
                    .or_else(|| event.bot_profile.as_ref().and_then(|p| p.name.clone())),
                is_bot: true,
            },
        };
        let message = channel_message(&event, author, posted_at(ts));
        let at = MessageRef {
            platform: Platform::Slack,
            channel: channel.clone(),
            id: ts.clone(),
            thread: None,
        };
        let Some(alert) = crate::alerts::parse_channel_message(&message) else {
            tracing::debug!(ts, "alert channel message is not an alert");
            return;
        };
        match self.bot.handle_channel_alert(&event_id, at, alert).await {
            Ok(handled) => tracing::debug!(?handled, ts, "alert channel message"),
            Err(error) => {
                tracing::error!(%error, ts, "could not record an alert channel message");
            }
        }
    }

    async fn interaction(&self, interaction: Interaction) {
        if interaction.kind != "block_actions" {
            tracing::debug!(
                kind = interaction.kind,
                "ignoring an interaction type breakwater does not use"
            );
            return;
        }
        for action in &interaction.actions {
            if action.action_id.starts_with(LINK_ACTION_PREFIX) {
                continue;
            }
            let decoded = ButtonAction::decode(&action.action_id)
                .or_else(|| action.value.as_deref().and_then(ButtonAction::decode));
            let Some(decoded) = decoded else {
                self.answer_press(
                    &interaction,
                    Reply::private("This button is not one of breakwater's. Nothing was done."),
                )
                .await;
                continue;
            };
            let press = self.press(&interaction, action, decoded).await;
            let reply = self.bot.handle_press(press).await;
            self.answer_press(&interaction, reply).await;
        }
    }

    async fn press(
        &self,
        interaction: &Interaction,
        action: &InteractionAction,
        decoded: ButtonAction,
    ) -> Press {
        let seen_name = interaction
            .user
            .name
            .as_deref()
            .or(interaction.user.username.as_deref());
        let actor = self.identity.actor(&interaction.user.id, seen_name).await;
        let channel = interaction_channel(interaction);
        let message = match (&channel, pressed_ts(interaction)) {
            (Some(channel), Some(ts)) => Some(MessageRef {
                platform: Platform::Slack,
                channel: channel.clone(),
                id: ts.to_owned(),
                thread: pressed_thread(interaction).map(str::to_owned),
            }),
            _ => None,
        };
        // Rollback buttons carry a Block Kit confirm dialog, so the click is the
        // confirmation.
        let confirmed_by_platform = matches!(
            decoded.kind,
            ButtonKind::Rollback | ButtonKind::DisableAutoSyncAndRollback
        );
        let event_id = match (&interaction.trigger_id, &action.action_ts) {
            (Some(trigger), _) => format!("press:{trigger}"),
            (None, Some(ts)) => format!("press:{}:{ts}", interaction.user.id),
            (None, None) => format!("press:{}:{}", interaction.user.id, action.action_id),
        };
        if let (Some(url), true) = (&interaction.response_url, on_ephemeral(interaction)) {
            self.chat.press_urls.remember(event_id.clone(), url.clone());
        }
        Press {
            event_id,
            actor,
            action: decoded,
            channel: channel.map(|c| format!("slack:{c}")),
            message,
            confirmed_by_platform,
        }
    }

    /// A private answer goes to the presser alone (ephemeral in the thread, else through
    /// the `response_url`); a replacement updates the pressed message.
    async fn answer_press(&self, interaction: &Interaction, reply: Reply) {
        let channel = interaction_channel(interaction);
        let ephemeral_source = interaction
            .response_url
            .as_ref()
            .filter(|_| on_ephemeral(interaction));
        let result = match (reply, &channel) {
            (Reply::None, _) => return,
            // A press on an ephemeral message (a plan answered privately) is answered in
            // its place, where the outcome replaces it later.
            (Reply::Private(message), Some(_)) if ephemeral_source.is_some() => {
                let Some(url) = ephemeral_source else { return };
                self.chat.respond(url, &message, true).await
            }
            (Reply::Private(message), Some(channel)) => {
                let sent = self
                    .chat
                    .ephemeral(
                        channel,
                        &interaction.user.id,
                        pressed_thread(interaction),
                        &message,
                    )
                    .await;
                match (sent, &interaction.response_url) {
                    // Refused (not in the channel, say): the response_url still works.
                    (Err(PrivateError::Failed(error)), Some(url)) => {
                        tracing::debug!(%error, "postEphemeral failed; answering through response_url");
                        self.chat.respond(url, &message, false).await
                    }
                    // Dropped by the private lane's policy: so would the other way be.
                    (Err(PrivateError::Dropped(_)), _) => return,
                    (sent, _) => sent,
                }
            }
            (Reply::ReplaceSource(message), Some(channel)) => match pressed_ts(interaction) {
                Some(ts) => {
                    let target = MessageRef {
                        platform: Platform::Slack,
                        channel: channel.clone(),
                        id: ts.to_owned(),
                        thread: pressed_thread(interaction).map(str::to_owned),
                    };
                    use crate::chat::Chat;
                    self.chat
                        .update(&target, &message, Lane::Interactive)
                        .await
                        .map_err(PrivateError::Failed)
                }
                None => return,
            },
            (_, None) => {
                tracing::warn!("an interaction without a channel: cannot answer it");
                return;
            }
        };
        // Dropped replies are counted and logged by the private lane.
        if let Err(PrivateError::Failed(error)) = result {
            tracing::warn!(%error, "could not answer a Slack interaction");
        }
    }

    async fn command(&self, command: SlashCommand) {
        let reply = match command.parse() {
            Err(usage) => Reply::private(usage),
            Ok(parsed) => {
                let actor = self
                    .identity
                    .actor(&command.user_id, command.user_name.as_deref())
                    .await;
                self.bot
                    .handle_command(CommandRequest {
                        event_id: command.event_id(),
                        actor,
                        command: parsed,
                        platform: Platform::Slack,
                        channel: Some(command.channel_id.clone()),
                    })
                    .await
            }
        };
        let message = match reply {
            Reply::None => return,
            Reply::Private(message) | Reply::ReplaceSource(message) => message,
        };
        let sent = match &command.response_url {
            Some(url) => self.chat.respond(url, &message, false).await,
            None => {
                self.chat
                    .ephemeral(&command.channel_id, &command.user_id, None, &message)
                    .await
            }
        };
        if let Err(PrivateError::Failed(error)) = sent {
            tracing::warn!(%error, "could not answer a slash command");
        }
    }
}

fn on_ephemeral(interaction: &Interaction) -> bool {
    interaction
        .container
        .as_ref()
        .is_some_and(|c| c.is_ephemeral)
}

fn interaction_channel(interaction: &Interaction) -> Option<String> {
    interaction
        .channel
        .as_ref()
        .map(|c| c.id.clone())
        .or_else(|| {
            interaction
                .container
                .as_ref()
                .and_then(|c| c.channel_id.clone())
        })
}

fn pressed_ts(interaction: &Interaction) -> Option<&str> {
    interaction
        .message
        .as_ref()
        .map(|m| m.ts.as_str())
        .or_else(|| {
            interaction
                .container
                .as_ref()
                .and_then(|c| c.message_ts.as_deref())
        })
}

fn pressed_thread(interaction: &Interaction) -> Option<&str> {
    interaction
        .message
        .as_ref()
        .and_then(|m| m.thread_ts.as_deref())
        .or_else(|| {
            interaction
                .container
                .as_ref()
                .and_then(|c| c.thread_ts.as_deref())
        })
}

/// `1741944060.000100` → the time it names.
fn posted_at(ts: &str) -> DateTime<Utc> {
    let (seconds, micros) = ts.split_once('.').unwrap_or((ts, "0"));
    let seconds = seconds.parse::<i64>().unwrap_or_default();
    let micros = micros.parse::<u32>().unwrap_or_default();
    Utc.timestamp_opt(seconds, micros.saturating_mul(1000))
        .single()
        .unwrap_or_else(Utc::now)
}

/// Text, legacy attachments and blocks as the channel parsers read them. Blocks add their
/// text when the message's own `text` (Slack's fallback) does not already say it.
fn channel_message(
    event: &MessageEvent,
    author: MessageAuthor,
    at: DateTime<Utc>,
) -> ChannelMessage {
    let mut text = event.text.clone();
    let from_blocks = blocks_text(&event.blocks);
    if !from_blocks.is_empty() && !text.contains(from_blocks.trim()) {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&from_blocks);
    }
    ChannelMessage {
        text,
        attachments: event
            .attachments
            .iter()
            .map(|a| Attachment {
                title: a.title.clone(),
                title_link: a.title_link.clone(),
                pretext: a.pretext.clone(),
                text: a.text.clone(),
                fallback: a.fallback.clone(),
                color: a.color.clone(),
                fields: a
                    .fields
                    .iter()
                    .map(|f| (f.title.clone(), f.value.clone()))
                    .collect(),
                footer: a.footer.clone(),
                author_name: a.author_name.clone(),
            })
            .collect(),
        author,
        posted_at: at,
    }
}

/// The readable text of Block Kit blocks, one line per block: section and header text,
/// fields, context elements, and rich text (links kept as Slack's `<url|text>`).
fn blocks_text(blocks: &[Value]) -> String {
    let mut lines = Vec::new();
    for block in blocks {
        let mut line = String::new();
        collect_text(block, &mut line);
        let line = line.trim().to_owned();
        if !line.is_empty() {
            lines.push(line);
        }
    }
    lines.join("\n")
}

fn collect_text(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            for item in items {
                collect_text(item, out);
            }
        }
        Value::Object(object) => {
            let kind = object
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match (kind, object.get("text")) {
                ("link", _) => {
                    let url = object
                        .get("url")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    match object.get("text").and_then(Value::as_str) {
                        Some(text) => out.push_str(&format!("<{url}|{text}>")),
                        None => out.push_str(&format!("<{url}>")),
                    }
                }
                ("text" | "mrkdwn" | "plain_text", Some(Value::String(text))) => {
                    out.push_str(text);
                    if kind != "text" {
                        out.push('\n');
                    }
                }
                ("user", _) => {
                    if let Some(id) = object.get("user_id").and_then(Value::as_str) {
                        out.push_str(&format!("<@{id}>"));
                    }
                }
                _ => {
                    for key in ["text", "fields", "elements"] {
                        if let Some(inner) = object.get(key) {
                            collect_text(inner, out);
                        }
                    }
                    if kind == "rich_text_section" || kind == "rich_text_preformatted" {
                        out.push('\n');
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn a_full_event_backlog_turns_events_away_until_one_finishes() {
        let backlog = EventBacklog::new(2);
        let first = backlog.try_enter().expect("room");
        let _second = backlog.try_enter().expect("room");
        assert!(backlog.try_enter().is_none());
        drop(first);
        assert!(backlog.try_enter().is_some());
    }

    #[test]
    fn slack_timestamps_are_read_to_the_microsecond() {
        let at = posted_at("1741944060.000100");
        assert_eq!(at.timestamp(), 1_741_944_060);
        assert_eq!(at.timestamp_subsec_micros(), 100);
    }

    #[test]
    fn blocks_are_flattened_to_their_text_with_links() {
        let blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": "[FIRING:1] HighErrorRate"}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": "*checkout* production"},
                   "fields": [{"type": "mrkdwn", "text": "*Severity*\ncritical"}]}),
            json!({"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
                {"type": "text", "text": "See "},
                {"type": "link", "url": "https://grafana.example/d/1", "text": "dashboard"}
            ]}]}),
        ];
        let text = blocks_text(&blocks);
        assert!(text.contains("[FIRING:1] HighErrorRate"), "{text}");
        assert!(text.contains("*checkout* production"), "{text}");
        assert!(text.contains("*Severity*\ncritical"), "{text}");
        assert!(
            text.contains("See <https://grafana.example/d/1|dashboard>"),
            "{text}"
        );
    }

    #[test]
    fn block_text_already_in_the_fallback_is_not_repeated() {
        let event = MessageEvent {
            kind: "message".into(),
            text: "checkout production is down".into(),
            blocks: vec![
                json!({"type": "section", "text": {"type": "mrkdwn", "text": "checkout production is down"}}),
            ],
            ..MessageEvent::default()
        };
        let message = channel_message(&event, MessageAuthor::default(), Utc::now());
        assert_eq!(message.text, "checkout production is down");
    }

    #[test]
    fn an_events_api_message_callback_parses() {
        let body = json!({
            "token": "XXYYZZ", "team_id": "T0001", "api_app_id": "A0001",
            "type": "event_callback", "event_id": "Ev0PV52K21", "event_time": 1_741_944_060,
            "event": {
                "type": "message", "subtype": "bot_message", "channel": "C0ALERTS",
                "bot_id": "B0ALERTMANAGER", "username": "Alertmanager", "text": "",
                "ts": "1741944060.000100",
                "attachments": [{"title": "[FIRING:1] HighErrorRate", "color": "danger",
                                 "fields": [{"title": "service", "value": "checkout", "short": true}]}]
            }
        });
        let EventsBody::EventCallback(callback) =
            serde_json::from_value::<EventsBody>(body).expect("parses")
        else {
            panic!("an event callback");
        };
        assert_eq!(callback.event_id, "Ev0PV52K21");
        assert_eq!(callback.event.attachments.len(), 1);
        assert_eq!(callback.event.username.as_deref(), Some("Alertmanager"));
    }

    #[test]
    fn a_url_verification_parses() {
        let body = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"});
        assert!(matches!(
            serde_json::from_value::<EventsBody>(body),
            Ok(EventsBody::UrlVerification { challenge }) if challenge.starts_with("3eZ")
        ));
    }
}
