//! A fake Slack on loopback that speaks Slack's documented protocol: the Web API methods
//! the bot calls (`POST /api/{method}` with JSON or form bodies, `GET` with a query,
//! bearer tokens, `ok:false` errors, `429` with `Retry-After`), `response_url`s, and a
//! Socket Mode websocket (`hello`, `events_api`, `interactive` and `slash_commands`
//! envelopes, acknowledgements checked, `disconnect`, redelivery of unacknowledged
//! envelopes on the next connection). It keeps messages as Slack would show them, so tests
//! read what people see and press the buttons on it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Frame;

pub(crate) const BOT_TOKEN: &str = "xoxb-fake-bot-token";
pub(crate) const APP_TOKEN: &str = "xapp-1-fake-app-token";
pub(crate) const SIGNING_SECRET: &str = "fake-signing-secret-8f742231b10e";
pub(crate) const TEAM_ID: &str = "T0FAKE";
pub(crate) const ALERT_CHANNEL: &str = "C0ALERTS01";
/// A channel breakwater does not read.
pub(crate) const OTHER_CHANNEL: &str = "C0CHATTER1";
pub(crate) const BOT_USER_ID: &str = "U0BREAKWATER";
pub(crate) const BOT_ID: &str = "B0BREAKWATER";
pub(crate) const ONCALL_GROUP: &str = "S0ONCALL";

/// A person in the fake workspace.
#[derive(Debug, Clone)]
pub(crate) struct SlackUser {
    pub id: &'static str,
    pub name: &'static str,
}

pub(crate) const ALICE: SlackUser = SlackUser {
    id: "U0ALICE",
    name: "Alice",
};
pub(crate) const BOB: SlackUser = SlackUser {
    id: "U0BOB",
    name: "Bob",
};
pub(crate) const MALLORY: SlackUser = SlackUser {
    id: "U0MALLORY",
    name: "Mallory",
};

/// A message as Slack stores it, with every version it had.
#[derive(Debug, Clone)]
pub(crate) struct StoredMessage {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub by_bot: bool,
    /// `text`, `blocks` (and for channel posts `attachments`), as last set.
    pub json: Value,
    pub history: Vec<Value>,
}

impl StoredMessage {
    /// The fallback text and every block's text, as a person would read it.
    pub(crate) fn text(&self) -> String {
        text_of(&self.json)
    }

    /// The `action_id` of the button whose label starts with `label`.
    pub(crate) fn button(&self, label: &str) -> Option<Value> {
        buttons(&self.json).into_iter().find(|b| {
            b["text"]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with(label))
        })
    }
}

/// Everything readable in a message: `text` and block text.
pub(crate) fn text_of(message: &Value) -> String {
    let mut out = message["text"].as_str().unwrap_or_default().to_owned();
    fn walk(value: &Value, out: &mut String) {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(text)) = object.get("text") {
                    out.push('\n');
                    out.push_str(text);
                }
                for (key, inner) in object {
                    if key != "text" || inner.is_object() || inner.is_array() {
                        walk(inner, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    walk(&message["blocks"], &mut out);
    out
}

/// The buttons of a message's actions blocks.
pub(crate) fn buttons(message: &Value) -> Vec<Value> {
    message["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["type"] == "button")
        .collect()
}

/// A Web API call as the fake received it: method and parameters (query, form or JSON).
#[derive(Debug, Clone)]
pub(crate) struct ApiCall {
    pub method: String,
    pub params: Value,
    pub token: Option<String>,
    pub at: std::time::Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct Ephemeral {
    pub channel: String,
    pub user: String,
    pub thread_ts: Option<String>,
    pub json: Value,
}

/// A `response_url` post.
#[derive(Debug, Clone)]
pub(crate) struct Responded {
    /// The `response_url` path's id.
    pub id: String,
    pub json: Value,
}

enum Outgoing {
    Envelope(String),
    Disconnect(&'static str),
}

#[derive(Default)]
struct Socket {
    connections: usize,
    open: usize,
    hellos: usize,
    current: Option<mpsc::UnboundedSender<Outgoing>>,
    /// Envelopes sent (or to send) in order, by id.
    envelopes: Vec<(String, Value)>,
    delivered: HashSet<String>,
    acked: HashSet<String>,
    /// Acknowledgements that named no envelope sent, or came twice.
    bad_acks: Vec<String>,
    /// How many more connections are accepted and closed (1011) before `hello`, as Slack
    /// does in an incident.
    close_before_hello: usize,
    /// How many more connections are closed (1011) right after `hello`.
    close_after_hello: usize,
}

#[derive(Default)]
struct Recorded {
    next_ts: u64,
    messages: Vec<StoredMessage>,
    ephemerals: Vec<Ephemeral>,
    responses: Vec<Responded>,
    calls: Vec<ApiCall>,
    /// Method → how many more calls get `429`.
    rate_limits: HashMap<String, usize>,
    rate_limited: usize,
    /// Channels the bot is not a member of.
    not_in_channel: HashSet<String>,
    /// Method → the `ok: false` error it answers for every token (a revoked token).
    refusals: HashMap<String, &'static str>,
    socket: Socket,
}

pub(crate) struct FakeSlack {
    /// e.g. `http://127.0.0.1:1234`; the bot's `api_url` is this + `/api/`.
    pub url: String,
    state: Arc<Mutex<Recorded>>,
}

type Shared = (Arc<Mutex<Recorded>>, String);

impl FakeSlack {
    pub(crate) async fn start() -> Arc<Self> {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", http.local_addr().expect("addr"));
        let ws_url = format!("ws://{}/link/", ws.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(Recorded {
            next_ts: 1,
            not_in_channel: [OTHER_CHANNEL.to_owned()].into_iter().collect(),
            ..Recorded::default()
        }));
        let fake = Arc::new(Self {
            url,
            state: state.clone(),
        });
        let app = Router::new()
            .route("/api/{method}", post(web_api).get(web_api))
            .route("/response/{id}", post(response_url))
            .with_state((state.clone(), ws_url));
        tokio::spawn(async move { axum::serve(http, app).await.expect("serve") });
        tokio::spawn(accept_sockets(ws, state));
        fake
    }

    fn with<T>(&self, f: impl FnOnce(&mut Recorded) -> T) -> T {
        f(&mut self.state.lock().expect("lock"))
    }

    pub(crate) fn api_url(&self) -> String {
        format!("{}/api/", self.url)
    }

    /// The next `count` calls of `method` get `429` with `Retry-After: 1`.
    pub(crate) fn rate_limit(&self, method: &str, count: usize) {
        self.with(|s| s.rate_limits.insert(method.to_owned(), count));
    }

    /// Every call of `method` from now on gets `{"ok": false, "error": error}`, as Slack
    /// answers a revoked or wrong token (`invalid_auth`, `token_revoked`, …).
    pub(crate) fn refuse(&self, method: &str, error: &'static str) {
        self.with(|s| s.refusals.insert(method.to_owned(), error));
    }

    /// The next `count` Socket Mode connections are accepted and closed (1011) before
    /// `hello`.
    pub(crate) fn close_before_hello(&self, count: usize) {
        self.with(|s| s.socket.close_before_hello = count);
    }

    /// The next `count` Socket Mode connections say `hello` and are closed (1011) at once.
    pub(crate) fn close_after_hello(&self, count: usize) {
        self.with(|s| s.socket.close_after_hello = count);
    }

    /// How many connections were closed before `hello` so far.
    pub(crate) fn closed_before_hello(&self) -> usize {
        self.with(|s| s.socket.connections - s.socket.hellos)
    }

    pub(crate) fn rate_limited(&self) -> usize {
        self.with(|s| s.rate_limited)
    }

    pub(crate) fn calls(&self, method: &str) -> Vec<ApiCall> {
        self.with(|s| {
            s.calls
                .iter()
                .filter(|c| c.method == method)
                .cloned()
                .collect()
        })
    }

    /// When the bot posted or updated messages in `channel`, in order.
    pub(crate) fn write_times(&self, channel: &str) -> Vec<std::time::Instant> {
        self.with(|s| {
            s.calls
                .iter()
                .filter(|c| {
                    matches!(c.method.as_str(), "chat.postMessage" | "chat.update")
                        && c.params["channel"] == channel
                })
                .map(|c| c.at)
                .collect()
        })
    }

    pub(crate) fn messages(&self) -> Vec<StoredMessage> {
        self.with(|s| s.messages.clone())
    }

    pub(crate) fn message(&self, channel: &str, ts: &str) -> Option<StoredMessage> {
        self.with(|s| {
            s.messages
                .iter()
                .find(|m| m.channel == channel && m.ts == ts)
                .cloned()
        })
    }

    /// The bot's messages in the thread of `ts`.
    pub(crate) fn replies(&self, channel: &str, ts: &str) -> Vec<StoredMessage> {
        self.messages()
            .into_iter()
            .filter(|m| m.channel == channel && m.thread_ts.as_deref() == Some(ts) && m.by_bot)
            .collect()
    }

    pub(crate) fn ephemerals(&self) -> Vec<Ephemeral> {
        self.with(|s| s.ephemerals.clone())
    }

    pub(crate) fn responses(&self) -> Vec<Responded> {
        self.with(|s| s.responses.clone())
    }

    /// Waits until `find` returns something; on failure shows what Slack shows.
    pub(crate) async fn wait_for<T>(
        &self,
        what: &str,
        mut find: impl FnMut(&FakeSlack) -> Option<T>,
    ) -> T {
        let shown = std::fmt::from_fn(|f| {
            let shown: Vec<String> = self
                .messages()
                .iter()
                .map(|m| {
                    format!(
                        "[{} {} thread {:?}] {}",
                        m.channel,
                        m.ts,
                        m.thread_ts,
                        m.text()
                    )
                })
                .collect();
            write!(f, "{what}; Slack shows:\n{}", shown.join("\n---\n"))
        });
        super::eventually(shown, async || find(self)).await
    }

    /// Waits for a bot message whose text contains `needle`.
    pub(crate) async fn wait_for_text(&self, needle: &str) -> StoredMessage {
        self.wait_for(&format!("a message containing {needle:?}"), |fake| {
            fake.messages()
                .into_iter()
                .find(|m| m.by_bot && m.text().contains(needle))
        })
        .await
    }

    /// Waits until message `ts` contains `needle`.
    pub(crate) async fn wait_for_update(
        &self,
        message: &StoredMessage,
        needle: &str,
    ) -> StoredMessage {
        self.wait_for(
            &format!("message {} to contain {needle:?}", message.ts),
            |fake| {
                fake.message(&message.channel, &message.ts)
                    .filter(|m| m.text().contains(needle))
            },
        )
        .await
    }

    pub(crate) async fn wait_for_ephemeral(&self, user: &str, needle: &str) -> Ephemeral {
        self.wait_for(
            &format!("an ephemeral for {user} containing {needle:?}"),
            |fake| {
                fake.ephemerals()
                    .into_iter()
                    .find(|e| e.user == user && text_of(&e.json).contains(needle))
            },
        )
        .await
    }

    pub(crate) async fn wait_for_response(&self, needle: &str) -> Responded {
        self.wait_for(
            &format!("a response_url post containing {needle:?}"),
            |fake| {
                fake.responses()
                    .into_iter()
                    .find(|r| text_of(&r.json).contains(needle))
            },
        )
        .await
    }

    // --- what people and integrations do ---------------------------------------------

    /// Stores a message posted in `channel` by someone else and returns the Events API
    /// callback Slack sends for it. `fields` become the message event's fields (`text`,
    /// `attachments`, `blocks`, `subtype`, `bot_id`, `username`, `user`).
    pub(crate) fn post_in_channel(&self, channel: &str, fields: Value) -> Value {
        let ts = self.with(next_ts);
        let mut event = json!({
            "type": "message",
            "channel": channel,
            "ts": ts,
            "event_ts": ts,
            "channel_type": "channel",
        });
        merge(&mut event, &fields);
        self.with(|s| {
            s.messages.push(StoredMessage {
                channel: channel.to_owned(),
                ts: ts.clone(),
                thread_ts: event["thread_ts"].as_str().map(str::to_owned),
                by_bot: false,
                json: event.clone(),
                history: Vec::new(),
            })
        });
        event_callback(event)
    }

    /// A `block_actions` payload for `who` pressing `button` on `message`.
    pub(crate) fn press(&self, who: &SlackUser, message: &StoredMessage, button: &Value) -> Value {
        let trigger = self.with(|s| {
            s.next_ts += 1;
            format!("{}.{}.fake{}", 1_000_000 + s.next_ts, 42, s.next_ts)
        });
        let response_id = self.with(|s| {
            s.next_ts += 1;
            s.next_ts
        });
        json!({
            "type": "block_actions",
            "user": {"id": who.id, "username": who.name.to_lowercase(), "name": who.name.to_lowercase(), "team_id": TEAM_ID},
            "api_app_id": "A0FAKE",
            "token": "verification-token-unused",
            "container": {
                "type": "message", "message_ts": message.ts, "channel_id": message.channel,
                "is_ephemeral": false, "thread_ts": message.thread_ts,
            },
            "trigger_id": trigger,
            "team": {"id": TEAM_ID, "domain": "fake"},
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": {"id": message.channel, "name": "alerts"},
            "message": {
                "type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID,
                "ts": message.ts, "thread_ts": message.thread_ts,
                "text": message.json["text"], "blocks": message.json["blocks"],
            },
            "state": {"values": {}},
            "response_url": format!("{}/response/{response_id}", self.url),
            "actions": [{
                "action_id": button["action_id"], "block_id": "actions",
                "text": button["text"], "value": button["value"], "style": button["style"],
                "type": "button", "action_ts": "1741944100.123456",
            }],
        })
    }

    /// The form fields of `/breakwater {text}` typed by `who` in `channel`.
    pub(crate) fn slash_command(
        &self,
        who: &SlackUser,
        channel: &str,
        text: &str,
    ) -> Vec<(String, String)> {
        let n = self.with(|s| {
            s.next_ts += 1;
            s.next_ts
        });
        [
            ("token", "verification-token-unused".to_owned()),
            ("team_id", TEAM_ID.to_owned()),
            ("team_domain", "fake".to_owned()),
            ("channel_id", channel.to_owned()),
            ("channel_name", "alerts".to_owned()),
            ("user_id", who.id.to_owned()),
            ("user_name", who.name.to_lowercase()),
            ("command", "/breakwater".to_owned()),
            ("text", text.to_owned()),
            ("api_app_id", "A0FAKE".to_owned()),
            ("is_enterprise_install", "false".to_owned()),
            ("response_url", format!("{}/response/{n}", self.url)),
            ("trigger_id", format!("{}.42.cmd{n}", 2_000_000 + n)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    // --- Socket Mode -----------------------------------------------------------------

    /// Sends an envelope of `kind` (`events_api`, `interactive`, `slash_commands`) on the
    /// open connection, or on the next one; returns its `envelope_id`.
    pub(crate) fn send_envelope(&self, kind: &str, payload: Value) -> String {
        self.with(|s| {
            s.next_ts += 1;
            let id = format!("fake-envelope-{}", s.next_ts);
            let envelope = json!({
                "envelope_id": id,
                "type": kind,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": 0,
                "retry_reason": "",
                "payload": payload,
            });
            s.socket.envelopes.push((id.clone(), envelope));
            if let Some(current) = &s.socket.current
                && current.send(Outgoing::Envelope(id.clone())).is_ok()
            {
                s.socket.delivered.insert(id.clone());
            }
            id
        })
    }

    /// Sends `disconnect` with `reason` on the open connection; envelopes sent after this
    /// wait for the next connection, as Slack routes them.
    pub(crate) fn disconnect(&self, reason: &'static str) {
        self.with(|s| {
            if let Some(current) = s.socket.current.take() {
                let _ = current.send(Outgoing::Disconnect(reason));
            }
        });
    }

    pub(crate) fn connections(&self) -> usize {
        self.with(|s| s.socket.connections)
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.with(|s| s.socket.open)
    }

    pub(crate) fn bad_acks(&self) -> Vec<String> {
        self.with(|s| s.socket.bad_acks.clone())
    }

    pub(crate) fn is_acked(&self, envelope_id: &str) -> bool {
        self.with(|s| s.socket.acked.contains(envelope_id))
    }

    pub(crate) async fn wait_for_ack(&self, envelope_id: &str) {
        self.wait_for(&format!("the ack of {envelope_id}"), |fake| {
            fake.is_acked(envelope_id).then_some(())
        })
        .await;
    }

    /// Waits for the `count`th `hello` (one per connection).
    pub(crate) async fn wait_for_hello(&self, count: usize) {
        self.wait_for(&format!("Socket Mode hello #{count}"), |fake| {
            fake.with(|s| s.socket.hellos >= count).then_some(())
        })
        .await;
    }
}

fn next_ts(state: &mut Recorded) -> String {
    state.next_ts += 1;
    let seconds = chrono::Utc::now().timestamp();
    format!("{seconds}.{:06}", state.next_ts % 1_000_000)
}

/// An Events API `event_callback` around `event`.
pub(crate) fn event_callback(event: Value) -> Value {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    json!({
        "token": "verification-token-unused",
        "team_id": TEAM_ID,
        "api_app_id": "A0FAKE",
        "event": event,
        "type": "event_callback",
        "event_id": format!("Ev0FAKE{n:08}"),
        "event_time": chrono::Utc::now().timestamp(),
        "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": true}],
        "event_context": format!("4-fake-{n}"),
    })
}

fn merge(target: &mut Value, patch: &Value) {
    if let (Some(target), Some(patch)) = (target.as_object_mut(), patch.as_object()) {
        for (key, value) in patch {
            target.insert(key.clone(), value.clone());
        }
    }
}

// --- the Web API ---------------------------------------------------------------------

fn ok(mut body: Value) -> Response {
    body["ok"] = json!(true);
    axum::Json(body).into_response()
}

fn slack_error(error: &str) -> Response {
    axum::Json(json!({"ok": false, "error": error})).into_response()
}

/// Parameters from the query string and the body, JSON or form-encoded. In a form,
/// `blocks` and `attachments` are JSON strings, as Slack documents.
fn params(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<Value, &'static str> {
    let mut params = json!({});
    for (key, value) in query {
        params[key] = json!(value);
    }
    if body.is_empty() {
        return Ok(params);
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/json") {
        let body: Value = serde_json::from_slice(body).map_err(|_| "invalid_json")?;
        merge(&mut params, &body);
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        for (key, value) in url::form_urlencoded::parse(body) {
            let value = match key.as_ref() {
                "blocks" | "attachments" => {
                    serde_json::from_str(&value).map_err(|_| "invalid_blocks")?
                }
                _ => json!(value),
            };
            params[key.as_ref()] = value;
        }
    } else {
        return Err("invalid_form_data");
    }
    Ok(params)
}

async fn web_api(
    State((state, ws_url)): State<Shared>,
    Path(method): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let params = match params(&headers, &query, &body) {
        Ok(params) => params,
        Err(error) => return slack_error(error),
    };
    let mut s = state.lock().expect("lock");
    s.calls.push(ApiCall {
        method: method.clone(),
        params: params.clone(),
        token: token.clone(),
        at: std::time::Instant::now(),
    });
    if let Some(left) = s.rate_limits.get_mut(&method)
        && *left > 0
    {
        *left -= 1;
        s.rate_limited += 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            axum::Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response();
    }
    if let Some(error) = s.refusals.get(&method) {
        return slack_error(error);
    }
    let expected = if method == "apps.connections.open" {
        APP_TOKEN
    } else {
        BOT_TOKEN
    };
    match token.as_deref() {
        None => return slack_error("not_authed"),
        Some(token) if token != expected => return slack_error("invalid_auth"),
        Some(_) => {}
    }
    let text = |name: &str| params[name].as_str().map(str::to_owned);
    match method.as_str() {
        "auth.test" => ok(json!({
            "url": "https://fake.slack.com/", "team": "Fake", "user": "breakwater",
            "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
            "is_enterprise_install": false,
        })),
        "apps.connections.open" => {
            ok(json!({ "url": format!("{ws_url}?ticket=fake-{}&app_id=A0FAKE", s.next_ts) }))
        }
        "chat.postMessage" => {
            let Some(channel) = text("channel") else {
                return slack_error("channel_not_found");
            };
            if s.not_in_channel.contains(&channel) {
                return slack_error("not_in_channel");
            }
            if params["text"].is_null() && params["blocks"].is_null() {
                return slack_error("no_text");
            }
            let thread_ts = text("thread_ts");
            if let Some(thread) = &thread_ts
                && !s
                    .messages
                    .iter()
                    .any(|m| m.channel == channel && &m.ts == thread)
            {
                return slack_error("thread_not_found");
            }
            let ts = next_ts(&mut s);
            let message = json!({
                "type": "message", "subtype": "bot_message", "text": params["text"],
                "blocks": params["blocks"], "user": BOT_USER_ID, "bot_id": BOT_ID,
                "ts": ts, "thread_ts": thread_ts, "app_id": "A0FAKE",
            });
            s.messages.push(StoredMessage {
                channel: channel.clone(),
                ts: ts.clone(),
                thread_ts,
                by_bot: true,
                json: message.clone(),
                history: Vec::new(),
            });
            ok(json!({ "channel": channel, "ts": ts, "message": message }))
        }
        "chat.update" => {
            let (Some(channel), Some(ts)) = (text("channel"), text("ts")) else {
                return slack_error("message_not_found");
            };
            let Some(stored) = s
                .messages
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts)
            else {
                return slack_error("message_not_found");
            };
            if !stored.by_bot {
                return slack_error("cant_update_message");
            }
            let previous = stored.json.clone();
            stored.history.push(previous);
            stored.json["text"] = params["text"].clone();
            stored.json["blocks"] = params["blocks"].clone();
            let message = json!({ "text": stored.json["text"], "blocks": stored.json["blocks"], "user": BOT_USER_ID, "bot_id": BOT_ID });
            ok(json!({ "channel": channel, "ts": ts, "text": params["text"], "message": message }))
        }
        "chat.postEphemeral" => {
            let (Some(channel), Some(user)) = (text("channel"), text("user")) else {
                return slack_error("user_not_in_channel");
            };
            if s.not_in_channel.contains(&channel) {
                return slack_error("not_in_channel");
            }
            let ts = next_ts(&mut s);
            s.ephemerals.push(Ephemeral {
                channel,
                user,
                thread_ts: text("thread_ts"),
                json: params.clone(),
            });
            ok(json!({ "message_ts": ts }))
        }
        "users.info" => {
            let Some(user) = text("user") else {
                return slack_error("user_not_found");
            };
            let Some(person) = [ALICE, BOB, MALLORY].into_iter().find(|p| p.id == user) else {
                return slack_error("user_not_found");
            };
            ok(json!({ "user": {
                "id": person.id, "team_id": TEAM_ID, "name": person.name.to_lowercase(),
                "deleted": false, "real_name": format!("{} Example", person.name),
                "tz": "Europe/Amsterdam", "tz_label": "Central European Time", "tz_offset": 3600,
                "profile": {"display_name": person.name, "real_name": format!("{} Example", person.name), "team": TEAM_ID},
                "is_admin": false, "is_owner": false, "is_bot": false, "updated": 1_741_944_000,
            }}))
        }
        "usergroups.users.list" => match text("usergroup").as_deref() {
            Some(ONCALL_GROUP) => ok(json!({ "users": [ALICE.id, BOB.id] })),
            _ => slack_error("no_such_subteam"),
        },
        _ => slack_error("unknown_method"),
    }
}

async fn response_url(
    State((state, _)): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
    };
    state
        .lock()
        .expect("lock")
        .responses
        .push(Responded { id, json });
    (StatusCode::OK, "ok").into_response()
}

// --- Socket Mode ---------------------------------------------------------------------

async fn accept_sockets(listener: tokio::net::TcpListener, state: Arc<Mutex<Recorded>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(serve_socket(stream, state.clone()));
    }
}

async fn serve_socket(stream: tokio::net::TcpStream, state: Arc<Mutex<Recorded>>) {
    let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = socket.split();
    let refused = {
        let mut s = state.lock().expect("lock");
        let refused = s.socket.close_before_hello > 0;
        if refused {
            s.socket.close_before_hello -= 1;
            s.socket.connections += 1;
        }
        refused
    };
    if refused {
        let close = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Error,
            reason: "server error".into(),
        };
        let _ = sink.send(Frame::Close(Some(close))).await;
        let _ = sink.close().await;
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    // Slack sends hello first, then whatever was not acknowledged on earlier connections.
    let backlog: Vec<String> = {
        let mut s = state.lock().expect("lock");
        s.socket.connections += 1;
        s.socket.open += 1;
        s.socket.hellos += 1;
        s.socket.current = Some(tx);
        let backlog: Vec<String> = s
            .socket
            .envelopes
            .iter()
            .filter(|(id, _)| !s.socket.acked.contains(id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &backlog {
            s.socket.delivered.insert(id.clone());
        }
        backlog
    };
    let hello = json!({
        "type": "hello", "num_connections": 1,
        "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
        "connection_info": {"app_id": "A0FAKE"},
    });
    if sink.send(Frame::text(hello.to_string())).await.is_err() {
        close_socket(&state);
        return;
    }
    for id in backlog {
        let Some(envelope) = envelope(&state, &id) else {
            continue;
        };
        if sink.send(Frame::text(envelope)).await.is_err() {
            close_socket(&state);
            return;
        }
    }
    let hang_up = {
        let mut s = state.lock().expect("lock");
        let hang_up = s.socket.close_after_hello > 0;
        s.socket.close_after_hello = s.socket.close_after_hello.saturating_sub(1);
        hang_up
    };
    if hang_up {
        let close = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Error,
            reason: "server error".into(),
        };
        let _ = sink.send(Frame::Close(Some(close))).await;
        let _ = sink.close().await;
        close_socket(&state);
        return;
    }
    // Slack pings its Socket Mode clients every few seconds.
    let mut ping = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if sink.send(Frame::Ping(b"fake-slack".to_vec().into())).await.is_err() {
                    break;
                }
            }
            outgoing = rx.recv() => match outgoing {
                Some(Outgoing::Envelope(id)) => {
                    let Some(envelope) = envelope(&state, &id) else { continue };
                    if sink.send(Frame::text(envelope)).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Disconnect(reason)) => {
                    let frame = json!({
                        "type": "disconnect", "reason": reason,
                        "debug_info": {"host": "applink-fake"},
                    });
                    if sink.send(Frame::text(frame.to_string())).await.is_err() {
                        break;
                    }
                    // The client closes; Slack drops the connection after a grace period.
                    let _ = tokio::time::timeout(Duration::from_secs(10), async {
                        while let Some(Ok(frame)) = source.next().await {
                            if let Frame::Text(text) = frame {
                                record_ack(&state, text.as_str());
                            }
                        }
                    }).await;
                    break;
                }
                None => break,
            },
            incoming = source.next() => match incoming {
                Some(Ok(Frame::Text(text))) => record_ack(&state, text.as_str()),
                Some(Ok(Frame::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = sink.close().await;
    close_socket(&state);
}

fn envelope(state: &Arc<Mutex<Recorded>>, id: &str) -> Option<String> {
    state
        .lock()
        .expect("lock")
        .socket
        .envelopes
        .iter()
        .find(|(known, _)| known == id)
        .map(|(_, envelope)| envelope.to_string())
}

fn close_socket(state: &Arc<Mutex<Recorded>>) {
    let mut s = state.lock().expect("lock");
    s.socket.open = s.socket.open.saturating_sub(1);
}

/// An acknowledgement is `{"envelope_id": …}` (optionally with a `payload`) for an
/// envelope that was delivered; anything else is recorded as a bad acknowledgement.
fn record_ack(state: &Arc<Mutex<Recorded>>, text: &str) {
    let mut s = state.lock().expect("lock");
    let id = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|ack| ack["envelope_id"].as_str().map(str::to_owned));
    match id {
        Some(id) if s.socket.delivered.contains(&id) => {
            s.socket.acked.insert(id);
        }
        _ => s.socket.bad_acks.push(text.to_owned()),
    }
}
