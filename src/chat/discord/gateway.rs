//! The gateway connection (serenity's client and shard runner): messages in the alert
//! channels become the core's channel messages, interactions are answered through the
//! interaction callback, and readiness follows the session's real state.
//!
//! One replica per bot token holds the gateway session: it holds the
//! [`DISCORD_GATEWAY_LEASE`] in the store, renewed every [`LEASE_RENEW`], and connects
//! only while it does. The others stand by (they still post over REST; presses reach
//! the holder over the gateway) and try to take the lease every [`LEASE_RENEW`]; a dead
//! holder's lease expires after [`LEASE_TTL`], so another replica takes over within
//! about `LEASE_TTL + LEASE_RENEW`. A holder that cannot renew (the store is down) closes
//! its session once its lease has run out by its own clock, so two sessions never
//! overlap by more than the replicas' clock skew.
//!
//! serenity reconnects and resumes on its own; an event replayed by a resume (or seen by
//! two replicas during a takeover) is claimed once by the core under its Discord id.
//! Discord's closes 4004 (authentication failed), 4013 and 4014 (intents) are final:
//! Discord's documentation says not to reconnect, so the adapter reports `failed` with
//! the setting to fix and connects no more until restarted.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use serenity::all::{
    ClientBuilder, ConnectionStage, Context, Embed, EventHandler, GatewayError, GatewayIntents,
    Interaction, Message as DiscordMessage, MessageType, Ready, ResumedEvent, ShardManager,
    ShardStageUpdateEvent,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::commands::Registration;
use super::interactions::Interactions;
use super::rest::{self, Rest};
use crate::chat::{AdapterStatus, Lane};
use crate::core::bot::Bot;
use crate::core::event::{Attachment, ChannelMessage, MessageAuthor};
use crate::core::message::{MessageRef, Platform};
use crate::store::{DISCORD_GATEWAY_LEASE, Store};
use crate::sync::lock;

/// How long a gateway lease lasts without renewal: a dead holder's session is taken over
/// this long after its last renewal (plus up to one [`LEASE_RENEW`]).
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(10);

/// How often the holder renews its lease and the others try to take it.
pub(crate) const LEASE_RENEW: Duration = Duration::from_secs(3);

/// Guild messages and their content (the privileged intent): 512 | 32768.
pub(crate) fn intents() -> GatewayIntents {
    GatewayIntents::GUILD_MESSAGES | GatewayIntents::MESSAGE_CONTENT
}

/// This process's name on the leases it holds: host (the pod name on Kubernetes), process
/// id and a random part, so that two processes never share one.
pub(crate) fn lease_holder() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!(
        "{host}/{}/{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Where this replica's gateway session stands: the lease, serenity's shard runner, and
/// a final refusal by Discord. Read by `/readyz` through [`Session::status`].
#[derive(Default)]
pub(crate) struct Session {
    lease: Mutex<LeaseState>,
    /// The running client's shard manager: its runner table is the truth about the
    /// session (a runner exists and its stage is `Connected`).
    shards: Mutex<Option<Arc<ShardManager>>>,
    /// What the last look at the runner table (or READY/RESUMED/stage events) said, for
    /// when the table is locked by serenity at the moment `/readyz` asks.
    connected: AtomicBool,
    /// Why Discord refused for good; set once, never cleared in this process.
    failed: Mutex<Option<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum LeaseState {
    #[default]
    Starting,
    /// Another replica holds the gateway session.
    Standby,
    Held,
    /// The store could not be asked.
    Unknown(String),
}

impl Session {
    /// The adapter's state for `/readyz`. A standby replica counts as connected: it posts
    /// over REST and serves the rest of the bot; `/metrics` says which replica holds the
    /// gateway (`breakwater_discord_gateway_lease`).
    pub(crate) fn status(&self) -> AdapterStatus {
        if let Some(reason) = lock(&self.failed).clone() {
            return AdapterStatus::Failed(reason);
        }
        match lock(&self.lease).clone() {
            LeaseState::Starting => {
                AdapterStatus::Disconnected("not connected to the gateway yet".to_owned())
            }
            LeaseState::Unknown(reason) => AdapterStatus::Disconnected(format!(
                "cannot take the Discord gateway lease in the store: {reason}"
            )),
            LeaseState::Standby => AdapterStatus::Connected,
            LeaseState::Held if self.session_up() => AdapterStatus::Connected,
            LeaseState::Held => {
                AdapterStatus::Disconnected("the gateway session is down; reconnecting".to_owned())
            }
        }
    }

    /// Whether serenity's shard runner exists and has a live session. The runner is gone
    /// while serenity restarts a shard (after a close it could not resume), and its stage
    /// is not `Connected` until READY or RESUMED.
    fn session_up(&self) -> bool {
        let Some(shards) = lock(&self.shards).clone() else {
            return false;
        };
        match shards.runners.try_lock() {
            Ok(runners) => {
                let up = !runners.is_empty()
                    && runners
                        .values()
                        .all(|runner| runner.stage == ConnectionStage::Connected);
                self.connected.store(up, Ordering::SeqCst);
                up
            }
            Err(_) => self.connected.load(Ordering::SeqCst),
        }
    }

    fn set_lease(&self, state: LeaseState) {
        *lock(&self.lease) = state;
    }

    fn set_shards(&self, shards: Option<Arc<ShardManager>>) {
        self.connected.store(false, Ordering::SeqCst);
        *lock(&self.shards) = shards;
    }

    /// Stops for good: Discord said not to reconnect. Logged once, naming what to fix.
    pub(crate) fn fail(&self, reason: String) {
        tracing::error!("Discord adapter stopped: {reason}");
        *lock(&self.failed) = Some(reason);
    }

    pub(crate) fn has_failed(&self) -> bool {
        lock(&self.failed).is_some()
    }
}

/// What ends one run of serenity's client.
enum ClientEnd {
    /// Stopping, or the lease was lost: not an error.
    Stopped,
    /// Discord refused in a way retrying cannot fix: the reason names the setting.
    Fatal(String),
    /// Anything else: connect again after a pause.
    Retry,
}

/// The errors after which Discord's documentation says not to reconnect, with what the
/// operator has to change.
fn fatal_reason(error: &serenity::Error) -> Option<String> {
    match error {
        serenity::Error::Gateway(GatewayError::InvalidAuthentication) => Some(
            "Discord rejected discord.token (gateway close 4004, authentication failed): set a valid bot token and restart"
                .to_owned(),
        ),
        serenity::Error::Gateway(GatewayError::DisallowedGatewayIntents) => Some(
            "Discord refused the Message Content intent (gateway close 4014): enable \"Message Content Intent\" under Bot → Privileged Gateway Intents in the Discord Developer Portal, then restart"
                .to_owned(),
        ),
        serenity::Error::Gateway(GatewayError::InvalidGatewayIntents) => Some(
            "Discord refused the gateway intents (gateway close 4013); this is a bug in breakwater, please report it"
                .to_owned(),
        ),
        _ => None,
    }
}

/// The gateway client under the lease, restarted with a back-off if serenity gives up.
#[derive(Clone)]
pub(crate) struct Gateway {
    pub(crate) token: String,
    pub(crate) api_url: Url,
    pub(crate) application_id: Option<u64>,
    pub(crate) handler: Arc<Handler>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) holder: String,
}

impl Gateway {
    pub(crate) async fn run(self, stop: CancellationToken) {
        let session = self.handler.session.clone();
        let metrics = self.handler.bot.metrics().clone();
        loop {
            // Stand by until the lease is ours.
            if !self.take_lease().await {
                metrics.set_discord_gateway_lease(false);
                tokio::select! {
                    () = tokio::time::sleep(LEASE_RENEW) => continue,
                    () = stop.cancelled() => return,
                }
            }
            session.set_lease(LeaseState::Held);
            metrics.set_discord_gateway_lease(true);
            tracing::info!(holder = %self.holder, "holding the Discord gateway lease");
            let lost = stop.child_token();
            let renewing = tokio::spawn(self.clone().renew_lease(lost.clone()));
            self.connect_while_held(lost.clone()).await;
            lost.cancel();
            let _ = renewing.await;
            metrics.set_discord_gateway_lease(false);
            if stop.is_cancelled() {
                if let Err(error) = self
                    .store
                    .release_lease(DISCORD_GATEWAY_LEASE, &self.holder)
                    .await
                {
                    tracing::warn!(%error, "could not release the Discord gateway lease; another replica takes over when it expires");
                }
                return;
            }
            session.set_lease(LeaseState::Starting);
        }
    }

    /// One attempt to take (or keep) the lease; records what it found for `/readyz`.
    async fn take_lease(&self) -> bool {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(LEASE_TTL).unwrap_or_default();
        match self
            .store
            .acquire_lease(DISCORD_GATEWAY_LEASE, &self.holder, now, until)
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                self.handler.session.set_lease(LeaseState::Standby);
                false
            }
            Err(error) => {
                // Once per outage, not every attempt: the store's own errors say more.
                let session = &self.handler.session;
                if !matches!(*lock(&session.lease), LeaseState::Unknown(_)) {
                    tracing::warn!(%error, "cannot take the Discord gateway lease; retrying every {}s (database.url)", LEASE_RENEW.as_secs());
                }
                session.set_lease(LeaseState::Unknown(error.to_string()));
                false
            }
        }
    }

    /// Renews the lease every [`LEASE_RENEW`] until `lost` is cancelled; cancels `lost`
    /// itself when another replica has the lease, or when renewals failed for as long as
    /// the last good one lasts.
    async fn renew_lease(self, lost: CancellationToken) {
        let mut held_until = tokio::time::Instant::now() + LEASE_TTL;
        loop {
            tokio::select! {
                () = tokio::time::sleep(LEASE_RENEW) => {}
                () = lost.cancelled() => return,
            }
            let now = Utc::now();
            let until = now + chrono::Duration::from_std(LEASE_TTL).unwrap_or_default();
            match self
                .store
                .acquire_lease(DISCORD_GATEWAY_LEASE, &self.holder, now, until)
                .await
            {
                Ok(true) => held_until = tokio::time::Instant::now() + LEASE_TTL,
                Ok(false) => {
                    tracing::warn!(
                        "another replica took the Discord gateway lease; closing this replica's session"
                    );
                    lost.cancel();
                    return;
                }
                Err(error) if tokio::time::Instant::now() + LEASE_RENEW >= held_until => {
                    tracing::error!(%error, "cannot renew the Discord gateway lease (database.url); closing the session before it expires");
                    lost.cancel();
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot renew the Discord gateway lease (database.url); retrying");
                }
            }
        }
    }

    /// serenity's client, restarted with a back-off when it ends, until `lost` is
    /// cancelled or Discord refuses for good (then it waits for `lost` without connecting,
    /// still holding the lease so that the standby replicas do not spend identifies on
    /// the same refusal).
    async fn connect_while_held(&self, lost: CancellationToken) {
        let session = &self.handler.session;
        let mut pauses = ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(300))
            .without_max_times()
            .with_jitter()
            .build();
        while !session.has_failed() {
            match self.run_client(&lost).await {
                ClientEnd::Stopped => return,
                ClientEnd::Fatal(reason) => session.fail(reason),
                ClientEnd::Retry => {
                    let pause = pauses.next().unwrap_or(Duration::from_secs(300));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = lost.cancelled() => return,
                    }
                }
            }
        }
        lost.cancelled().await;
    }

    async fn run_client(&self, lost: &CancellationToken) -> ClientEnd {
        let session = &self.handler.session;
        let http = match rest::build_http(&self.token, &self.api_url, self.application_id) {
            Ok(http) => http,
            Err(error) => return ClientEnd::Fatal(format!("discord.api_url: {error}")),
        };
        let client = ClientBuilder::new_with_http(http, intents())
            .event_handler_arc(self.handler.clone())
            .await;
        let mut client = match client {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "cannot build the Discord client");
                return ClientEnd::Retry;
            }
        };
        let shards = client.shard_manager.clone();
        session.set_shards(Some(shards.clone()));
        let end = tokio::select! {
            result = client.start() => match result {
                Ok(()) => {
                    tracing::warn!("the Discord gateway closed; reconnecting");
                    ClientEnd::Retry
                }
                Err(error) => match fatal_reason(&error) {
                    Some(reason) => ClientEnd::Fatal(reason),
                    None => {
                        tracing::error!(%error, "the Discord gateway failed; reconnecting");
                        ClientEnd::Retry
                    }
                },
            },
            () = lost.cancelled() => {
                shards.shutdown_all().await;
                ClientEnd::Stopped
            }
        };
        if matches!(end, ClientEnd::Fatal(_)) {
            shards.shutdown_all().await;
        }
        session.set_shards(None);
        end
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
    pub(crate) session: Arc<Session>,
    pub(crate) registration: Arc<Registration>,
    pub(crate) tasks: TaskTracker,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        self.bot_user.store(ready.user.id.get(), Ordering::SeqCst);
        self.rest.http.set_application_id(ready.application.id);
        self.session.connected.store(true, Ordering::SeqCst);
        tracing::info!(user = %ready.user.name, guilds = ready.guilds.len(), "connected to the Discord gateway");
        let registration = self.registration.clone();
        self.tasks.spawn(async move {
            // Failures are logged by the registration and retried at the next READY.
            let _ = registration.register_once().await;
        });
    }

    async fn resume(&self, _ctx: Context, _event: ResumedEvent) {
        self.session.connected.store(true, Ordering::SeqCst);
        tracing::info!("resumed the Discord gateway session");
    }

    async fn shard_stage_update(&self, _ctx: Context, event: ShardStageUpdateEvent) {
        self.session
            .connected
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
        let Some(alert) = crate::alerts::parse_channel_message(&channel_message(&message)) else {
            tracing::debug!(message = %message.id, "alert channel message is not an alert");
            return;
        };
        match self
            .bot
            .handle_channel_alert(&message.id.to_string(), at, alert)
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
    fn closes_discord_says_not_to_reconnect_on_are_final_and_name_the_setting() {
        let reason = |error: GatewayError| fatal_reason(&serenity::Error::Gateway(error));
        assert!(
            reason(GatewayError::InvalidAuthentication)
                .is_some_and(|r| r.contains("discord.token") && r.contains("4004"))
        );
        assert!(
            reason(GatewayError::DisallowedGatewayIntents)
                .is_some_and(|r| r.contains("Message Content Intent") && r.contains("4014"))
        );
        assert!(reason(GatewayError::InvalidGatewayIntents).is_some());
        // Everything else is retried: a dropped session, a heartbeat lost, Discord down.
        assert_eq!(reason(GatewayError::HeartbeatFailed), None);
        assert_eq!(reason(GatewayError::Closed(None)), None);
    }

    #[test]
    fn readiness_by_lease_and_failure() {
        let session = Session::default();
        assert_eq!(
            session.status().label(),
            "disconnected",
            "before the first lease attempt"
        );
        session.set_lease(LeaseState::Standby);
        assert_eq!(
            session.status(),
            AdapterStatus::Connected,
            "a standby replica posts over REST and serves the rest of the bot"
        );
        session.set_lease(LeaseState::Held);
        assert_eq!(
            session.status().label(),
            "disconnected",
            "holding the lease is not a session: no shard runner yet"
        );
        session.set_lease(LeaseState::Unknown("pool timed out".to_owned()));
        assert!(
            session
                .status()
                .reason()
                .is_some_and(|r| r.contains("pool timed out"))
        );
        session.fail("Discord rejected discord.token".to_owned());
        session.set_lease(LeaseState::Standby);
        assert_eq!(
            session.status(),
            AdapterStatus::Failed("Discord rejected discord.token".to_owned()),
            "final, whatever the lease does"
        );
    }

    #[test]
    fn lease_holders_differ_between_processes_and_name_the_host() {
        let (a, b) = (lease_holder(), lease_holder());
        assert_ne!(a, b);
        assert!(a.contains(&format!("/{}/", std::process::id())), "{a}");
    }

    #[test]
    fn the_intents_are_guild_messages_and_message_content() {
        assert_eq!(intents().bits(), 33280);
    }
}
