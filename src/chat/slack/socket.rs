//! Socket Mode (https://docs.slack.dev/apis/events-api/using-socket-mode): one websocket
//! at a time, opened from the URL `apps.connections.open` returns.
//!
//! Every envelope is acknowledged (`{"envelope_id": …}`) the moment it is read, before its
//! payload is even looked at, and the payload is handled afterwards on the adapter's
//! tasks — Slack's 3-second deadline is never at risk and an envelope is never lost to a
//! slow handler. `hello` marks the adapter ready; `disconnect` (`refresh_requested`,
//! `warning`, `link_disabled`) and dropped sockets close the connection and open a fresh
//! one, with exponential backoff while Slack cannot be reached. Envelopes Slack sent but
//! did not see acknowledged are redelivered on the new connection and collapse through the
//! store's event claims.
//!
//! This is tokio-tungstenite rather than slack-morphism's Socket Mode listener: that
//! listener acknowledges only after the handler returns and drops envelopes its typed
//! models cannot read, and it keeps two connections open by default.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_util::sync::CancellationToken;

use super::commands::SlashCommand;
use super::inbound::{EventsBody, Inbound, Interaction};
use super::web::Web;

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
    pub(crate) connected: Arc<AtomicBool>,
}

/// Why a connection ended.
enum Ended {
    Stopped,
    /// Slack asked for a fresh connection, or closed this one.
    Reconnect,
    Failed(String),
}

impl SocketMode {
    /// Keeps one connection open until `stop`.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let backoff_builder = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(30))
            .without_max_times()
            .with_jitter();
        let mut backoff = backoff_builder.build();
        // Learn who the bot is before reading any channel, so its own posts are known.
        let _ = self.inbound.me().await;
        loop {
            let (ended, said_hello) = tokio::select! {
                ended = self.connect_once() => ended,
                () = stop.cancelled() => (Ended::Stopped, false),
            };
            self.connected.store(false, Ordering::SeqCst);
            if said_hello {
                backoff = backoff_builder.build();
            }
            let pause = match ended {
                Ended::Stopped => return,
                Ended::Reconnect => Duration::ZERO,
                Ended::Failed(reason) => {
                    let pause = backoff.next().unwrap_or(Duration::from_secs(30));
                    tracing::warn!(%reason, ?pause, "Socket Mode connection failed; reconnecting");
                    pause
                }
            };
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
            Err(error) => {
                return (
                    Ended::Failed(format!("apps.connections.open: {error:?}")),
                    false,
                );
            }
        };
        let (socket, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok(connected) => connected,
            Err(error) => return (Ended::Failed(format!("connecting: {error}")), false),
        };
        let mut said_hello = false;
        let (mut sink, mut stream) = socket.split();
        let ended = loop {
            let frame = match tokio::time::timeout(SILENCE_LIMIT, stream.next()).await {
                Err(_) => break Ended::Failed("no frame from Slack for a minute".to_owned()),
                Ok(None) => break Ended::Reconnect,
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
                Frame::Close(_) => break Ended::Reconnect,
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
                    self.connected.store(true, Ordering::SeqCst);
                    said_hello = true;
                }
                "disconnect" => {
                    tracing::info!(
                        reason = envelope.reason.as_deref().unwrap_or("unknown"),
                        "Slack asked to reconnect"
                    );
                    break Ended::Reconnect;
                }
                "events_api" => self.dispatch_event(envelope.payload).await,
                "interactive" => self.dispatch_interaction(envelope.payload),
                "slash_commands" => self.dispatch_command(envelope.payload),
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

    fn dispatch_interaction(&self, payload: Value) {
        match serde_json::from_value::<Interaction>(payload) {
            Ok(interaction) => self.inbound.spawn_interaction(interaction),
            Err(error) => tracing::warn!(%error, "an interactive payload breakwater cannot read"),
        }
    }

    fn dispatch_command(&self, payload: Value) {
        match serde_json::from_value::<SlashCommand>(payload) {
            Ok(command) => self.inbound.spawn_command(command),
            Err(error) => tracing::warn!(%error, "a slash_commands payload breakwater cannot read"),
        }
    }
}
