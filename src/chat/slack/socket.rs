//! Socket Mode (https://docs.slack.dev/apis/events-api/using-socket-mode): one websocket
//! at a time, opened from the URL `apps.connections.open` returns.
//!
//! Every envelope is acknowledged (`{"envelope_id": …}`) the moment it is read, before its
//! payload is even looked at, and the payload is handled afterwards on the adapter's
//! tasks — Slack's 3-second deadline is never at risk and an envelope is never lost to a
//! slow handler. `hello` marks the adapter ready; `disconnect` (`refresh_requested`,
//! `warning`, `link_disabled`) and dropped sockets close the connection and open a fresh
//! one; a connection that ends before `hello`, or soon after it, is followed by an
//! exponential backoff (`slack.reconnect_backoff`, doubling to 30 s), and a token Slack
//! refuses stops the adapter (`/readyz` shows `failed` and names the setting). Envelopes
//! Slack sent but did not see acknowledged are redelivered on the new connection and
//! collapse through the store's event claims.
//!
//! This is tokio-tungstenite rather than slack-morphism's Socket Mode listener: that
//! listener acknowledges only after the handler returns and drops envelopes its typed
//! models cannot read, and it keeps two connections open by default.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_util::sync::CancellationToken;

use super::StatusCell;
use super::commands::SlashCommand;
use super::inbound::{EventsBody, Inbound, Interaction};
use super::web::{self, Web};
use crate::chat::AdapterStatus;

/// Slack pings every few seconds; a connection silent for this long is dead.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);

/// A Socket Mode frame from Slack.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    envelope_id: Option<String>,
    #[serde(default)]
    payload: Value,
    reason: Option<String>,
}

#[derive(Clone)]
pub(crate) struct SocketMode {
    pub(crate) web: Arc<Web>,
    pub(crate) inbound: Arc<Inbound>,
    pub(crate) status: StatusCell,
    /// The first pause after a connection that ended before `hello` (`slack.reconnect_backoff`).
    pub(crate) first_pause: Duration,
}

/// Why a connection ended.
enum Ended {
    Stopped,
    /// Slack asked for a fresh connection (`disconnect`).
    Refresh(String),
    /// Slack closed this connection, or it failed.
    Failed(String),
    /// Slack refused `slack.app_token`; the reason says how.
    Rejected(String),
}

/// The longest pause between two connection attempts.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// A session that said `hello` and lasted this long was healthy: the backoff starts over.
/// A Slack that says `hello` and hangs up at once is in trouble and is backed off from.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

impl SocketMode {
    fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.first_pause)
            .with_max_delay(MAX_PAUSE.max(self.first_pause))
            .without_max_times()
            .with_jitter()
            .build()
    }

    /// Keeps one connection open until `stop`, or until Slack refuses a token.
    ///
    /// `apps.connections.open` is a Tier 1 method (a few calls a minute): every connection
    /// that ends before `hello` or soon after — refused, dropped, closed by a Slack in
    /// trouble — waits out an exponential backoff before the next; only a healthy session
    /// (Slack's own `disconnect`, or [`HEALTHY_SESSION`] long) resets it. Each reconnect
    /// is logged with its reason.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut backoff = self.backoff();
        // Learn who the bot is before reading any channel, so its own posts are known. A
        // refused bot token stops the adapter (logged by `identify`).
        if let Err(failure) = self.inbound.identify().await
            && self.status.has_failed()
        {
            tracing::debug!(error = %web::describe(&failure), "Slack adapter stopped");
            return;
        }
        loop {
            let began = tokio::time::Instant::now();
            let (ended, said_hello) = tokio::select! {
                ended = self.connect_once() => ended,
                () = stop.cancelled() => (Ended::Stopped, false),
            };
            let refreshed = matches!(ended, Ended::Refresh(_));
            let healthy = said_hello && (refreshed || began.elapsed() >= HEALTHY_SESSION);
            if healthy {
                backoff = self.backoff();
            }
            let (reason, pause) = match ended {
                Ended::Stopped => return,
                Ended::Rejected(reason) => {
                    tracing::error!(
                        "{reason}; the Slack adapter is stopped, the rest of breakwater keeps running"
                    );
                    self.status.fail(reason);
                    return;
                }
                // Slack's routine refresh, or the first drop of a long session: at once.
                Ended::Refresh(reason) | Ended::Failed(reason) if healthy => {
                    (reason, Duration::ZERO)
                }
                Ended::Refresh(reason) | Ended::Failed(reason) => {
                    let reason = if said_hello {
                        format!("{reason} (right after hello)")
                    } else {
                        format!("{reason} (before hello)")
                    };
                    (reason, backoff.next().unwrap_or(MAX_PAUSE))
                }
            };
            if pause.is_zero() {
                tracing::info!(%reason, "Slack Socket Mode reconnecting");
            } else {
                tracing::warn!(%reason, ?pause, "Slack Socket Mode connection ended; reconnecting after a pause");
            }
            self.status.set(AdapterStatus::Disconnected(format!(
                "Socket Mode reconnecting: {reason}"
            )));
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// One connection, until it ends; also says whether Slack said hello on it.
    async fn connect_once(&self) -> (Ended, bool) {
        let url = match self.web.open_connection().await {
            Ok(url) => url,
            Err(failure) => {
                if let Some(code) = web::rejected_credentials(&failure) {
                    return (
                        Ended::Rejected(format!(
                            "Slack refused slack.app_token ({code}) at apps.connections.open: set a valid app-level token (xapp-…) with connections:write and restart"
                        )),
                        false,
                    );
                }
                return (
                    Ended::Failed(format!(
                        "apps.connections.open: {}",
                        web::describe(&failure)
                    )),
                    false,
                );
            }
        };
        // Nagle off: acknowledgements go out at once instead of waiting on the peer's
        // delayed ACK (~40 ms each under a burst).
        let (socket, _) =
            match tokio_tungstenite::connect_async_with_config(url.as_str(), None, true).await {
                Ok(connected) => connected,
                Err(error) => return (Ended::Failed(format!("connecting: {error}")), false),
            };
        let mut said_hello = false;
        let (mut sink, mut stream) = socket.split();
        let ended = loop {
            let frame = match tokio::time::timeout(SILENCE_LIMIT, stream.next()).await {
                Err(_) => break Ended::Failed("no frame from Slack for a minute".to_owned()),
                Ok(None) => break Ended::Failed("Slack closed the connection".to_owned()),
                Ok(Some(Err(error))) => break Ended::Failed(error.to_string()),
                Ok(Some(Ok(frame))) => frame,
            };
            let text = match frame {
                Frame::Text(text) => text,
                Frame::Ping(data) => {
                    if let Err(error) = sink.send(Frame::Pong(data)).await {
                        break Ended::Failed(error.to_string());
                    }
                    continue;
                }
                Frame::Close(close) => {
                    break Ended::Failed(match close {
                        Some(close) => format!(
                            "Slack closed the connection ({} {})",
                            close.code, close.reason
                        ),
                        None => "Slack closed the connection".to_owned(),
                    });
                }
                _ => continue,
            };
            let envelope: Envelope = match serde_json::from_str(text.as_str()) {
                Ok(envelope) => envelope,
                Err(error) => {
                    tracing::warn!(%error, "a Socket Mode frame that is not an envelope");
                    continue;
                }
            };
            if let Some(id) = &envelope.envelope_id {
                let ack = serde_json::json!({ "envelope_id": id }).to_string();
                if let Err(error) = sink.send(Frame::text(ack)).await {
                    break Ended::Failed(format!("acknowledging: {error}"));
                }
            }
            match envelope.kind.as_str() {
                "hello" => {
                    tracing::info!("Slack Socket Mode connected");
                    self.status.set(AdapterStatus::Connected);
                    said_hello = true;
                }
                "disconnect" => {
                    break Ended::Refresh(format!(
                        "Slack asked to reconnect ({})",
                        envelope.reason.as_deref().unwrap_or("no reason given")
                    ));
                }
                "events_api" => self.dispatch_event(envelope.payload).await,
                "interactive" => self.dispatch_interaction(envelope.payload).await,
                "slash_commands" => self.dispatch_command(envelope.payload).await,
                other => tracing::debug!(kind = other, "ignoring a Socket Mode envelope"),
            }
        };
        let _ = sink.send(Frame::Close(None)).await;
        let _ = sink.close().await;
        (ended, said_hello)
    }

    /// Waits for room in the event backlog, so a flood slows the reader down instead of
    /// piling up tasks.
    async fn dispatch_event(&self, payload: Value) {
        match serde_json::from_value::<EventsBody>(payload) {
            Ok(EventsBody::EventCallback(callback)) => {
                if let Some(place) = self.inbound.backlog.enter().await {
                    self.inbound.spawn_event(callback, place);
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "an events_api payload breakwater cannot read"),
        }
    }

    /// Waits for room in the interaction set, like channel events.
    async fn dispatch_interaction(&self, payload: Value) {
        match serde_json::from_value::<Interaction>(payload) {
            Ok(interaction) => {
                if let Some(place) = self.inbound.interactions.enter().await {
                    self.inbound.spawn_interaction(interaction, place);
                }
            }
            Err(error) => tracing::warn!(%error, "an interactive payload breakwater cannot read"),
        }
    }

    async fn dispatch_command(&self, payload: Value) {
        match serde_json::from_value::<SlashCommand>(payload) {
            Ok(command) => {
                if let Some(place) = self.inbound.interactions.enter().await {
                    self.inbound.spawn_command(command, place);
                }
            }
            Err(error) => tracing::warn!(%error, "a slash_commands payload breakwater cannot read"),
        }
    }
}
