//! A fake Discord on loopback that speaks Discord's documented JSON: the REST routes the
//! bot calls (create and edit message, start a thread from a message, interaction
//! callback, follow-up webhooks, command registration, `429` with `retry_after`) and a
//! gateway websocket (HELLO, IDENTIFY, READY, heartbeats and ACKs, dispatches, RECONNECT,
//! RESUME with replay). It keeps the messages as Discord would show them, so tests can
//! read what people see and press the buttons on it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Frame;

pub(crate) const APPLICATION_ID: &str = "1000000000000000001";
pub(crate) const BOT_USER_ID: &str = "1000000000000000002";
pub(crate) const GUILD_ID: &str = "1000000000000000003";
pub(crate) const ALERT_CHANNEL: &str = "1000000000000000004";
/// A channel where Discord refuses to start threads (as in a DM or a thread).
pub(crate) const NO_THREADS_CHANNEL: &str = "1000000000000000005";
pub(crate) const ONCALL_ROLE: &str = "1000000000000000006";
const SESSION_ID: &str = "fake-session-1";
const HEARTBEAT_INTERVAL_MS: u64 = 300;

/// A person on the fake guild.
#[derive(Debug, Clone)]
pub(crate) struct DiscordUser {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
}

impl DiscordUser {
    pub(crate) fn new(id: &str, name: &str, roles: &[&str]) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn user_json(&self) -> Value {
        json!({
            "id": self.id, "username": self.name.to_lowercase(), "global_name": self.name,
            "discriminator": "0", "avatar": null, "bot": false, "public_flags": 0
        })
    }

    fn member_json(&self) -> Value {
        json!({
            "user": self.user_json(), "nick": null, "avatar": null, "roles": self.roles,
            "joined_at": "2025-01-01T00:00:00.000000+00:00", "premium_since": null,
            "deaf": false, "mute": false, "flags": 0, "pending": false,
            "permissions": "2248473465835073", "communication_disabled_until": null
        })
    }
}

/// A message as Discord stores it, with every version it had.
#[derive(Debug, Clone)]
pub(crate) struct StoredMessage {
    pub id: String,
    pub channel_id: String,
    /// The message as Discord returns it (documented message object).
    pub json: Value,
    pub history: Vec<Value>,
    /// For interaction responses: the interaction token that created it.
    pub token: Option<String>,
}

impl StoredMessage {
    pub(crate) fn content(&self) -> String {
        self.json["content"].as_str().unwrap_or_default().to_owned()
    }

    pub(crate) fn is_ephemeral(&self) -> bool {
        self.json["flags"].as_u64().unwrap_or(0) & 64 != 0
    }

    /// Everything a person reads: content, embed titles, descriptions and fields.
    pub(crate) fn text(&self) -> String {
        text_of(&self.json)
    }

    /// The `custom_id` of the first button whose label starts with `label`.
    pub(crate) fn button(&self, label: &str) -> Option<String> {
        buttons(&self.json)
            .into_iter()
            .find(|b| b["label"].as_str().is_some_and(|l| l.starts_with(label)))
            .and_then(|b| b["custom_id"].as_str().map(str::to_owned))
    }

    pub(crate) fn buttons(&self) -> Vec<Value> {
        buttons(&self.json)
    }
}

pub(crate) fn text_of(message: &Value) -> String {
    let mut out = message["content"].as_str().unwrap_or_default().to_owned();
    for embed in message["embeds"].as_array().into_iter().flatten() {
        for key in ["title", "description"] {
            if let Some(text) = embed[key].as_str() {
                out.push('\n');
                out.push_str(text);
            }
        }
        for field in embed["fields"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "\n{}: {}",
                field["name"].as_str().unwrap_or_default(),
                field["value"].as_str().unwrap_or_default()
            ));
        }
    }
    out
}

pub(crate) fn buttons(message: &Value) -> Vec<Value> {
    message["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// An interaction callback the bot sent.
#[derive(Debug, Clone)]
pub(crate) struct Callback {
    pub interaction_id: String,
    pub body: Value,
}

/// Which REST route a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RouteKind {
    CreateMessage,
    EditMessage,
    CreateThread,
    Callback,
}

#[derive(Default)]
struct Gateway {
    /// Dispatches of the session, with their sequence numbers, for RESUME.
    log: Vec<(u64, String, Value)>,
    seq: u64,
    /// The connected client, if any.
    client: Option<mpsc::UnboundedSender<Frame>>,
    identifies: Vec<Value>,
    resumes: Vec<Value>,
    heartbeats: usize,
    connections: usize,
    ready: bool,
    /// Replay from this sequence number on the next RESUME even if the client has it.
    replay_from: Option<u64>,
    /// New connections are accepted and dropped at once (Discord's gateway unreachable).
    refusing: bool,
    /// Connections dropped while refusing.
    refused: usize,
    /// An IDENTIFY is answered with this close code instead of READY (4004: bad token,
    /// 4014: disallowed intents).
    reject_identify: Option<u16>,
}

#[derive(Default)]
struct Recorded {
    next_id: u64,
    messages: Vec<StoredMessage>,
    /// Thread id → (parent channel, name).
    threads: HashMap<String, (String, String)>,
    callbacks: Vec<Callback>,
    /// The interaction id of every callback request, refused ones included.
    callback_attempts: Vec<String>,
    /// Every request body that carries a message (create, edit, callback, follow-up,
    /// `@original` edit), by route, as it came over the wire.
    message_bodies: Vec<(&'static str, Value)>,
    registrations: Vec<(String, Value)>,
    faults: HashMap<RouteKind, usize>,
    rate_limited: usize,
    requests: Vec<(Method, String)>,
    no_threads: HashSet<String>,
    /// Interaction token → (channel, pressed message), as issued by the builders.
    interactions: HashMap<String, (String, Option<String>)>,
    gateway: Gateway,
    /// Where READY says to resume (serenity 0.12 resumes where it first connected).
    gateway_url: String,
}

pub(crate) struct FakeDiscord {
    /// REST base, e.g. `http://127.0.0.1:1234`; the bot's `api_url` is this + `/api/`.
    pub url: String,
    pub gateway_url: String,
    state: Arc<Mutex<Recorded>>,
}

type Shared = Arc<Mutex<Recorded>>;

impl FakeDiscord {
    pub(crate) async fn start() -> Arc<Self> {
        let rest = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let gateway = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let rest_addr: SocketAddr = rest.local_addr().expect("addr");
        let gateway_addr: SocketAddr = gateway.local_addr().expect("addr");
        let state: Shared = Arc::new(Mutex::new(Recorded {
            next_id: 1_500_000_000_000_000_000,
            gateway_url: format!("ws://{gateway_addr}"),
            no_threads: [NO_THREADS_CHANNEL.to_owned()].into_iter().collect(),
            ..Recorded::default()
        }));
        let fake = Arc::new(Self {
            url: format!("http://{rest_addr}"),
            gateway_url: format!("ws://{gateway_addr}"),
            state: state.clone(),
        });
        let app = Router::new()
            .route("/api/v10/gateway", get(gateway_url))
            .route("/api/v10/channels/{channel}/messages", post(create_message))
            .route(
                "/api/v10/channels/{channel}/messages/{message}",
                patch(edit_message),
            )
            .route(
                "/api/v10/channels/{channel}/messages/{message}/threads",
                post(create_thread),
            )
            .route(
                "/api/v10/interactions/{id}/{token}/callback",
                post(interaction_callback),
            )
            .route("/api/v10/webhooks/{app}/{token}", post(create_followup))
            .route(
                "/api/v10/webhooks/{app}/{token}/messages/{message}",
                patch(edit_original).delete(delete_original),
            )
            .route(
                "/api/v10/applications/{app}/guilds/{guild}/commands",
                put(register_commands),
            )
            .route(
                "/api/v10/applications/{app}/commands",
                put(register_commands),
            )
            .fallback(unknown_route)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                record_request,
            ))
            .with_state((state.clone(), fake.gateway_url.clone()));
        tokio::spawn(async move { axum::serve(rest, app).await.expect("serve") });
        tokio::spawn(accept_gateway(gateway, state));
        fake
    }

    fn with<T>(&self, f: impl FnOnce(&mut Recorded) -> T) -> T {
        f(&mut self.state.lock().expect("lock"))
    }

    /// `api_url` for breakwater's `[discord]`.
    pub(crate) fn api_url(&self) -> String {
        format!("{}/api/", self.url)
    }

    /// The next `count` requests to `route` are answered `429` with `retry_after`.
    pub(crate) fn rate_limit(&self, route: RouteKind, count: usize) {
        self.with(|s| s.faults.insert(route, count));
    }

    pub(crate) fn rate_limited(&self) -> usize {
        self.with(|s| s.rate_limited)
    }

    pub(crate) fn messages(&self) -> Vec<StoredMessage> {
        self.with(|s| s.messages.clone())
    }

    pub(crate) fn message(&self, id: &str) -> Option<StoredMessage> {
        self.messages().into_iter().find(|m| m.id == id)
    }

    pub(crate) fn callbacks(&self) -> Vec<Callback> {
        self.with(|s| s.callbacks.clone())
    }

    /// How many callback requests the bot made for interaction `id`, refused ones (an
    /// interaction already acknowledged) included.
    pub(crate) fn callback_attempts(&self, id: &str) -> usize {
        self.with(|s| s.callback_attempts.iter().filter(|a| *a == id).count())
    }

    /// The message-carrying request bodies the bot sent, by route.
    pub(crate) fn message_bodies(&self) -> Vec<(&'static str, Value)> {
        self.state.lock().expect("lock").message_bodies.clone()
    }

    pub(crate) fn registrations(&self) -> Vec<(String, Value)> {
        self.with(|s| s.registrations.clone())
    }

    pub(crate) fn thread_parent(&self, thread: &str) -> Option<String> {
        self.with(|s| s.threads.get(thread).map(|(parent, _)| parent.clone()))
    }

    pub(crate) fn identifies(&self) -> Vec<Value> {
        self.with(|s| s.gateway.identifies.clone())
    }

    pub(crate) fn resumes(&self) -> Vec<Value> {
        self.with(|s| s.gateway.resumes.clone())
    }

    pub(crate) fn heartbeats(&self) -> usize {
        self.with(|s| s.gateway.heartbeats)
    }

    pub(crate) fn connections(&self) -> usize {
        self.with(|s| s.gateway.connections)
    }

    /// Waits until `find` returns something; on failure shows what Discord shows.
    pub(crate) async fn wait_for<T>(
        &self,
        what: &str,
        mut find: impl FnMut(&FakeDiscord) -> Option<T>,
    ) -> T {
        let shown = std::fmt::from_fn(|f| {
            let shown: Vec<String> = self
                .messages()
                .iter()
                .map(|m| format!("[{} in {}] {}", m.id, m.channel_id, m.text()))
                .collect();
            write!(f, "{what}; Discord shows:\n{}", shown.join("\n---\n"))
        });
        super::eventually(shown, async || find(self)).await
    }

    /// Waits for a message whose text contains `needle`.
    pub(crate) async fn wait_for_text(&self, needle: &str) -> StoredMessage {
        self.wait_for(&format!("a message containing {needle:?}"), |fake| {
            fake.messages()
                .into_iter()
                .find(|m| m.text().contains(needle))
        })
        .await
    }

    /// Waits until message `id` contains `needle`.
    pub(crate) async fn wait_for_update(&self, id: &str, needle: &str) -> StoredMessage {
        self.wait_for(&format!("message {id} to contain {needle:?}"), |fake| {
            fake.message(id).filter(|m| m.text().contains(needle))
        })
        .await
    }

    /// Waits for the bot's callback to interaction `id`.
    pub(crate) async fn wait_for_callback(&self, id: &str) -> Callback {
        self.wait_for(&format!("the callback to interaction {id}"), |fake| {
            fake.callbacks()
                .into_iter()
                .find(|c| c.interaction_id == id)
        })
        .await
    }

    // --- the gateway -------------------------------------------------------------------

    pub(crate) async fn wait_until_ready(&self) {
        self.wait_for("the bot to identify on the gateway", |fake| {
            fake.with(|s| s.gateway.ready).then_some(())
        })
        .await;
    }

    /// Sends a dispatch (op 0) to the connected client, logged for RESUME.
    pub(crate) fn dispatch(&self, event: &str, data: Value) -> u64 {
        self.with(|s| dispatch_locked(s, event, data))
    }

    /// Asks the client to reconnect (op 7); on its RESUME the fake replays from `from`.
    pub(crate) fn reconnect_replaying_from(&self, from: u64) {
        self.with(|s| {
            s.gateway.replay_from = Some(from);
            s.gateway.ready = false;
            if let Some(client) = &s.gateway.client {
                let _ = client.send(Frame::text(json!({"op": 7, "d": null}).to_string()));
            }
        });
    }

    /// Closes the session with `code` (e.g. 4000, unknown error, which a client may
    /// resume); with `refuse_reconnects`, new connections are dropped until
    /// [`FakeDiscord::accept_connections`].
    pub(crate) fn close_session(&self, code: u16, refuse_reconnects: bool) {
        self.with(|s| {
            s.gateway.ready = false;
            s.gateway.refusing = refuse_reconnects;
            if let Some(client) = s.gateway.client.take() {
                let _ = client.send(close_frame(code));
            }
        });
    }

    pub(crate) fn refused_connections(&self) -> usize {
        self.with(|s| s.gateway.refused)
    }

    pub(crate) fn accept_connections(&self) {
        self.with(|s| s.gateway.refusing = false);
    }

    /// Every IDENTIFY from now on is answered by closing with `code`.
    pub(crate) fn reject_identify_with(&self, code: u16) {
        self.with(|s| s.gateway.reject_identify = Some(code));
    }

    /// A message someone posts in `channel` (`MESSAGE_CREATE`); returns its id.
    pub(crate) fn post_as_person(
        &self,
        channel: &str,
        author: &DiscordUser,
        content: &str,
    ) -> String {
        let id = self.with(next_id);
        let mut message = message_json(&id, channel, content, json!([]), json!([]), 0);
        message["author"] = author.user_json();
        message["member"] = {
            let mut member = author.member_json();
            member.as_object_mut().expect("object").remove("user");
            member
        };
        message["guild_id"] = json!(GUILD_ID);
        self.store_and_dispatch(message)
    }

    /// A message an alerting tool's incoming webhook posts (embeds, bot author, webhook id).
    pub(crate) fn post_as_webhook(
        &self,
        channel: &str,
        name: &str,
        content: &str,
        embeds: Value,
    ) -> String {
        let id = self.with(next_id);
        let webhook_id = "1000000000000000099";
        let mut message = message_json(&id, channel, content, embeds, json!([]), 0);
        message["author"] = json!({
            "id": webhook_id, "username": name, "discriminator": "0000", "avatar": null,
            "bot": true, "global_name": null
        });
        message["webhook_id"] = json!(webhook_id);
        message["guild_id"] = json!(GUILD_ID);
        self.store_and_dispatch(message)
    }

    fn store_and_dispatch(&self, message: Value) -> String {
        self.with(|s| {
            let id = message["id"].as_str().expect("id").to_owned();
            s.messages.push(StoredMessage {
                id: id.clone(),
                channel_id: message["channel_id"].as_str().expect("channel").to_owned(),
                json: message.clone(),
                history: vec![message.clone()],
                token: None,
            });
            dispatch_locked(s, "MESSAGE_CREATE", message);
            id
        })
    }

    // --- interactions ------------------------------------------------------------------

    /// A button press on `message` (documented INTERACTION_CREATE payload, type 3).
    pub(crate) fn component_interaction(
        &self,
        user: &DiscordUser,
        message: &StoredMessage,
        custom_id: &str,
    ) -> Value {
        let (id, token) = self.with(|s| {
            let id = next_id(s);
            (id.clone(), format!("token-{id}"))
        });
        let parent = self.thread_parent(&message.channel_id);
        let channel = match &parent {
            Some(parent) => {
                json!({"id": message.channel_id, "type": 11, "parent_id": parent, "name": "thread", "guild_id": GUILD_ID, "flags": 0})
            }
            None => {
                json!({"id": message.channel_id, "type": 0, "name": "alerts", "guild_id": GUILD_ID, "flags": 0})
            }
        };
        self.with(|s| {
            s.interactions.insert(
                token.clone(),
                (message.channel_id.clone(), Some(message.id.clone())),
            )
        });
        let mut json = base_interaction(&id, &token, 3, user, &message.channel_id, channel);
        json["data"] = json!({"custom_id": custom_id, "component_type": 2});
        json["message"] = message.json.clone();
        json
    }

    /// `/breakwater <subcommand>` with string options (type 2).
    pub(crate) fn command_interaction(
        &self,
        user: &DiscordUser,
        channel: &str,
        subcommand: &str,
        options: &[(&str, &str)],
    ) -> Value {
        let (id, token) = self.with(|s| {
            let id = next_id(s);
            (id.clone(), format!("token-{id}"))
        });
        let channel_json =
            json!({"id": channel, "type": 0, "name": "alerts", "guild_id": GUILD_ID, "flags": 0});
        self.with(|s| {
            s.interactions
                .insert(token.clone(), (channel.to_owned(), None))
        });
        let mut json = base_interaction(&id, &token, 2, user, channel, channel_json);
        let options: Vec<Value> = options
            .iter()
            .map(|(name, value)| json!({"name": name, "type": 3, "value": value}))
            .collect();
        json["data"] = json!({
            "id": "1000000000000000050", "name": "breakwater", "type": 1, "guild_id": GUILD_ID,
            "options": [{"name": subcommand, "type": 1, "options": options}]
        });
        json
    }

    /// Autocomplete of `focused` while `/breakwater <subcommand>` is typed (type 4).
    pub(crate) fn autocomplete_interaction(
        &self,
        user: &DiscordUser,
        subcommand: &str,
        options: &[(&str, &str)],
        focused: &str,
    ) -> Value {
        let mut json = self.command_interaction(user, ALERT_CHANNEL, subcommand, options);
        json["type"] = json!(4);
        for option in json["data"]["options"][0]["options"]
            .as_array_mut()
            .expect("options")
        {
            if option["name"] == focused {
                option["focused"] = json!(true);
            }
        }
        json
    }
}

fn base_interaction(
    id: &str,
    token: &str,
    kind: u8,
    user: &DiscordUser,
    channel_id: &str,
    channel: Value,
) -> Value {
    json!({
        "id": id,
        "application_id": APPLICATION_ID,
        "type": kind,
        "guild_id": GUILD_ID,
        "channel_id": channel_id,
        "channel": channel,
        "member": user.member_json(),
        "token": token,
        "version": 1,
        "app_permissions": "2248473465835073",
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD_ID},
        "context": 0,
        "attachment_size_limit": 10485760
    })
}

fn next_id(state: &mut Recorded) -> String {
    state.next_id += 1;
    state.next_id.to_string()
}

fn dispatch_locked(state: &mut Recorded, event: &str, data: Value) -> u64 {
    state.gateway.seq += 1;
    let seq = state.gateway.seq;
    state
        .gateway
        .log
        .push((seq, event.to_owned(), data.clone()));
    if let Some(client) = &state.gateway.client {
        let frame = json!({"op": 0, "s": seq, "t": event, "d": data});
        let _ = client.send(Frame::text(frame.to_string()));
    }
    seq
}

fn bot_author() -> Value {
    json!({
        "id": BOT_USER_ID, "username": "breakwater", "discriminator": "0000", "avatar": null,
        "bot": true, "global_name": null
    })
}

/// A documented message object.
fn message_json(
    id: &str,
    channel: &str,
    content: &str,
    embeds: Value,
    components: Value,
    flags: u64,
) -> Value {
    json!({
        "id": id,
        "channel_id": channel,
        "author": bot_author(),
        "content": content,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": embeds,
        "components": components,
        "pinned": false,
        "type": 0,
        "flags": flags
    })
}

/// Embeds as Discord echoes them (`type: rich`).
fn embeds_of(body: &Value) -> Value {
    let mut embeds = body["embeds"].clone();
    if let Some(list) = embeds.as_array_mut() {
        for embed in list {
            embed["type"] = json!("rich");
        }
    } else {
        embeds = json!([]);
    }
    embeds
}

fn discord_error(status: StatusCode, code: u64, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

fn rate_limited_response() -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({
            "message": "You are being rate limited.",
            "retry_after": 0.25,
            "global": false,
            "code": 0
        })),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert("retry-after", "1".parse().expect("header"));
    headers.insert("x-ratelimit-limit", "5".parse().expect("header"));
    headers.insert("x-ratelimit-remaining", "0".parse().expect("header"));
    headers.insert("x-ratelimit-reset-after", "0.25".parse().expect("header"));
    headers.insert("x-ratelimit-bucket", "fake-bucket".parse().expect("header"));
    headers.insert("x-ratelimit-scope", "user".parse().expect("header"));
    response
}

/// Answers `429` if a fault is armed for `route`.
fn take_fault(state: &mut Recorded, route: RouteKind) -> Option<Response> {
    let remaining = state.faults.get_mut(&route)?;
    if *remaining == 0 {
        return None;
    }
    *remaining -= 1;
    state.rate_limited += 1;
    Some(rate_limited_response())
}

fn parse_body(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

type AppState = (Shared, String);

async fn record_request(
    State(state): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    {
        let mut s = state.lock().expect("lock");
        s.requests
            .push((request.method().clone(), request.uri().path().to_owned()));
    }
    next.run(request).await
}

async fn unknown_route(method: Method, uri: axum::http::Uri) -> Response {
    discord_error(
        StatusCode::NOT_FOUND,
        0,
        &format!("404: the fake has no route {method} {uri}"),
    )
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "Bot test-discord-token")
}

async fn gateway_url(State((_, gateway)): State<AppState>) -> Response {
    axum::Json(json!({ "url": gateway })).into_response()
}

async fn create_message(
    State((state, _)): State<AppState>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&headers) {
        return discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let body = parse_body(&body);
    let mut s = state.lock().expect("lock");
    s.message_bodies.push(("create message", body.clone()));
    if let Some(limited) = take_fault(&mut s, RouteKind::CreateMessage) {
        return limited;
    }
    let id = next_id(&mut s);
    let mut message = message_json(
        &id,
        &channel,
        body["content"].as_str().unwrap_or_default(),
        embeds_of(&body),
        body["components"].clone(),
        0,
    );
    if let Some(reference) = body.get("message_reference").filter(|r| !r.is_null()) {
        message["type"] = json!(19);
        message["message_reference"] = reference.clone();
    }
    if s.threads.contains_key(&channel) {
        message["position"] = json!(0);
    }
    s.messages.push(StoredMessage {
        id,
        channel_id: channel,
        json: message.clone(),
        history: vec![message.clone()],
        token: None,
    });
    // Discord echoes the bot's own messages over the gateway.
    dispatch_locked(&mut s, "MESSAGE_CREATE", message.clone());
    axum::Json(message).into_response()
}

fn apply_edit(stored: &mut StoredMessage, body: &Value) {
    for key in ["content", "components"] {
        if let Some(value) = body.get(key).filter(|v| !v.is_null()) {
            stored.json[key] = value.clone();
        }
    }
    if body.get("embeds").is_some_and(|v| !v.is_null()) {
        stored.json["embeds"] = embeds_of(body);
    }
    stored.json["edited_timestamp"] =
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false));
    stored.history.push(stored.json.clone());
}

async fn edit_message(
    State((state, _)): State<AppState>,
    Path((channel, message)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&headers) {
        return discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let body = parse_body(&body);
    let mut s = state.lock().expect("lock");
    s.message_bodies.push(("edit message", body.clone()));
    if let Some(limited) = take_fault(&mut s, RouteKind::EditMessage) {
        return limited;
    }
    match s
        .messages
        .iter_mut()
        .find(|m| m.id == message && m.channel_id == channel)
    {
        Some(stored) => {
            apply_edit(stored, &body);
            axum::Json(stored.json.clone()).into_response()
        }
        None => discord_error(StatusCode::NOT_FOUND, 10008, "Unknown Message"),
    }
}

async fn create_thread(
    State((state, _)): State<AppState>,
    Path((channel, message)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&headers) {
        return discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let body = parse_body(&body);
    let mut s = state.lock().expect("lock");
    if let Some(limited) = take_fault(&mut s, RouteKind::CreateThread) {
        return limited;
    }
    if s.no_threads.contains(&channel) {
        return discord_error(
            StatusCode::BAD_REQUEST,
            50024,
            "Cannot execute action on this channel type",
        );
    }
    if !s
        .messages
        .iter()
        .any(|m| m.id == message && m.channel_id == channel)
    {
        return discord_error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
    }
    if s.threads.contains_key(&message) {
        return discord_error(
            StatusCode::BAD_REQUEST,
            160004,
            "A thread has already been created for this message",
        );
    }
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    // A thread started from a message has the message's id.
    s.threads
        .insert(message.clone(), (channel.clone(), name.clone()));
    axum::Json(json!({
        "id": message,
        "type": 11,
        "guild_id": GUILD_ID,
        "name": name,
        "parent_id": channel,
        "owner_id": BOT_USER_ID,
        "last_message_id": null,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "total_message_sent": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": false,
            "auto_archive_duration": body["auto_archive_duration"].as_u64().unwrap_or(1440),
            "archive_timestamp": chrono::Utc::now().to_rfc3339(),
            "locked": false
        }
    }))
    .into_response()
}

async fn interaction_callback(
    State((state, _)): State<AppState>,
    Path((id, token)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body = parse_body(&body);
    let mut s = state.lock().expect("lock");
    s.callback_attempts.push(id.clone());
    s.message_bodies
        .push(("interaction callback", body.clone()));
    if let Some(limited) = take_fault(&mut s, RouteKind::Callback) {
        return limited;
    }
    if s.callbacks.iter().any(|c| c.interaction_id == id) {
        return discord_error(
            StatusCode::BAD_REQUEST,
            40060,
            "Interaction has already been acknowledged.",
        );
    }
    s.callbacks.push(Callback {
        interaction_id: id.clone(),
        body: body.clone(),
    });
    apply_callback(&mut s, &token, &body);
    StatusCode::NO_CONTENT.into_response()
}

/// Shows an HTTP-mode response the way Discord would (Discord applies the HTTP body like
/// a callback).
pub(crate) fn apply_callback_to(fake: &FakeDiscord, interaction: &Value, body: &Value) {
    let id = interaction["id"].as_str().expect("id").to_owned();
    let token = interaction["token"].as_str().expect("token").to_owned();
    let mut s = fake.state.lock().expect("lock");
    s.callbacks.push(Callback {
        interaction_id: id,
        body: body.clone(),
    });
    apply_callback(&mut s, &token, body);
}

fn apply_callback(s: &mut Recorded, token: &str, body: &Value) {
    let (channel, pressed) = s
        .interactions
        .get(token)
        .cloned()
        .unwrap_or_else(|| (ALERT_CHANNEL.to_owned(), None));
    apply_callback_with(s, token, &channel, pressed.as_deref(), body);
}

fn apply_callback_with(
    s: &mut Recorded,
    token: &str,
    channel: &str,
    pressed: Option<&str>,
    body: &Value,
) {
    let data = &body["data"];
    match body["type"].as_u64() {
        // CHANNEL_MESSAGE_WITH_SOURCE, DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
        Some(4 | 5) => {
            let id = next_id(s);
            let flags = data["flags"].as_u64().unwrap_or(0);
            let content = if body["type"] == 5 {
                "breakwater is thinking…"
            } else {
                data["content"].as_str().unwrap_or_default()
            };
            let message = message_json(
                &id,
                channel,
                content,
                embeds_of(data),
                data["components"].clone(),
                flags,
            );
            s.messages.push(StoredMessage {
                id,
                channel_id: channel.to_owned(),
                json: message.clone(),
                history: vec![message],
                token: Some(token.to_owned()),
            });
        }
        // UPDATE_MESSAGE
        Some(7) => {
            if let Some(stored) = pressed.and_then(|p| s.messages.iter_mut().find(|m| m.id == p)) {
                apply_edit(stored, data);
            }
        }
        _ => {}
    }
}

impl FakeDiscord {
    /// Sends an interaction over the gateway (`INTERACTION_CREATE`).
    pub(crate) fn dispatch_interaction(&self, interaction: &Value) {
        self.dispatch("INTERACTION_CREATE", interaction.clone());
    }

    /// The message an interaction response created (ephemeral or not).
    pub(crate) fn response_to(&self, interaction: &Value) -> Option<StoredMessage> {
        let token = interaction["token"].as_str()?.to_owned();
        self.messages()
            .into_iter()
            .find(|m| m.token.as_deref() == Some(token.as_str()))
    }
}

/// `@original`: the message the interaction's response created, else (after a deferred
/// update) the pressed message.
fn find_original<'a>(s: &'a mut Recorded, token: &str) -> Option<&'a mut StoredMessage> {
    let created = s
        .messages
        .iter()
        .position(|m| m.token.as_deref() == Some(token));
    let pressed = s
        .interactions
        .get(token)
        .and_then(|(_, pressed)| pressed.clone())
        .and_then(|pressed| s.messages.iter().position(|m| m.id == pressed));
    created.or(pressed).map(move |i| &mut s.messages[i])
}

async fn edit_original(
    State((state, _)): State<AppState>,
    Path((_app, token, message)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    if message != "@original" {
        return discord_error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
    }
    let body = parse_body(&body);
    let mut s = state.lock().expect("lock");
    s.message_bodies.push(("edit original", body.clone()));
    match find_original(&mut s, &token) {
        Some(stored) => {
            apply_edit(stored, &body);
            axum::Json(stored.json.clone()).into_response()
        }
        None => discord_error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"),
    }
}

async fn delete_original(
    State((state, _)): State<AppState>,
    Path((_app, token, _message)): Path<(String, String, String)>,
) -> Response {
    let mut s = state.lock().expect("lock");
    s.messages
        .retain(|m| m.token.as_deref() != Some(token.as_str()));
    StatusCode::NO_CONTENT.into_response()
}

async fn create_followup(
    State((state, _)): State<AppState>,
    Path((_app, token)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body = parse_body(&body);
    let mut s = state.lock().expect("lock");
    s.message_bodies.push(("follow-up", body.clone()));
    let id = next_id(&mut s);
    let channel = s
        .interactions
        .get(&token)
        .map_or_else(|| ALERT_CHANNEL.to_owned(), |(channel, _)| channel.clone());
    let message = message_json(
        &id,
        &channel,
        body["content"].as_str().unwrap_or_default(),
        embeds_of(&body),
        body["components"].clone(),
        body["flags"].as_u64().unwrap_or(0),
    );
    s.messages.push(StoredMessage {
        id,
        channel_id: channel,
        json: message.clone(),
        history: vec![message.clone()],
        token: Some(format!("followup:{token}")),
    });
    axum::Json(message).into_response()
}

async fn register_commands(
    State((state, _)): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&headers) {
        return discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let body = parse_body(&body);
    let mut s = state.lock().expect("lock");
    s.registrations.push((uri.path().to_owned(), body.clone()));
    let mut registered = Vec::new();
    for command in body.as_array().into_iter().flatten() {
        let mut command = command.clone();
        command["id"] = json!(next_id(&mut s));
        command["application_id"] = json!(APPLICATION_ID);
        command["version"] = json!(next_id(&mut s));
        command["type"] = json!(1);
        command["default_member_permissions"] = Value::Null;
        command["nsfw"] = json!(false);
        registered.push(command);
    }
    axum::Json(Value::Array(registered)).into_response()
}

// --- the gateway websocket -----------------------------------------------------------------

fn close_frame(code: u16) -> Frame {
    Frame::Close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: code.into(),
        reason: "closed by the fake gateway".into(),
    }))
}

async fn accept_gateway(listener: tokio::net::TcpListener, state: Shared) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        {
            let mut s = state.lock().expect("lock");
            if s.gateway.refusing {
                s.gateway.refused += 1;
                drop(stream);
                continue;
            }
        }
        let state = state.clone();
        tokio::spawn(async move {
            if let Ok(socket) = tokio_tungstenite::accept_async(stream).await {
                serve_gateway(socket, state).await;
            }
        });
    }
}

async fn serve_gateway(
    socket: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    state: Shared,
) {
    let (mut sink, mut stream) = socket.split();
    let (sender, mut outbox) = mpsc::unbounded_channel::<Frame>();
    {
        let mut s = state.lock().expect("lock");
        s.gateway.connections += 1;
        s.gateway.client = Some(sender.clone());
    }
    let _ = sender.send(Frame::text(
        json!({"op": 10, "s": null, "t": null, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}})
            .to_string(),
    ));
    let writer = tokio::spawn(async move {
        while let Some(frame) = outbox.recv().await {
            let closing = frame.is_close();
            if sink.send(frame).await.is_err() || closing {
                break;
            }
        }
    });
    while let Some(Ok(frame)) = stream.next().await {
        let Ok(text) = frame.to_text() else { continue };
        let Ok(payload) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        let mut s = state.lock().expect("lock");
        match payload["op"].as_u64() {
            // Heartbeat → Heartbeat ACK.
            Some(1) => {
                s.gateway.heartbeats += 1;
                let _ = sender.send(Frame::text(json!({"op": 11, "d": null}).to_string()));
            }
            // Identify → READY.
            Some(2) => {
                s.gateway.identifies.push(payload["d"].clone());
                if let Some(code) = s.gateway.reject_identify {
                    let _ = sender.send(close_frame(code));
                    continue;
                }
                s.gateway.log.clear();
                s.gateway.seq = 0;
                s.gateway.replay_from = None;
                let ready = json!({
                    "v": 10,
                    "user": {
                        "id": BOT_USER_ID, "username": "breakwater", "discriminator": "0000",
                        "avatar": null, "bot": true, "global_name": null, "verified": true,
                        "mfa_enabled": false, "flags": 0
                    },
                    "guilds": [{"id": GUILD_ID, "unavailable": true}],
                    "session_id": SESSION_ID,
                    "resume_gateway_url": s.gateway_url.clone(),
                    "shard": [0, 1],
                    "application": {"id": APPLICATION_ID, "flags": 0}
                });
                dispatch_locked(&mut s, "READY", ready);
                s.gateway.ready = true;
            }
            // Resume → the missed (or, when asked, already seen) dispatches, then RESUMED.
            Some(6) => {
                s.gateway.resumes.push(payload["d"].clone());
                let client_seq = payload["d"]["seq"].as_u64().unwrap_or(0);
                let from = s
                    .gateway
                    .replay_from
                    .take()
                    .map_or(client_seq, |forced| forced.min(client_seq));
                let replay: Vec<(u64, String, Value)> = s
                    .gateway
                    .log
                    .iter()
                    .filter(|(seq, _, _)| *seq > from)
                    .cloned()
                    .collect();
                for (seq, event, data) in replay {
                    let _ = sender.send(Frame::text(
                        json!({"op": 0, "s": seq, "t": event, "d": data}).to_string(),
                    ));
                }
                dispatch_locked(&mut s, "RESUMED", json!({}));
                s.gateway.ready = true;
            }
            _ => {}
        }
    }
    {
        let mut s = state.lock().expect("lock");
        if s.gateway
            .client
            .as_ref()
            .is_some_and(|c| c.same_channel(&sender))
        {
            s.gateway.client = None;
        }
    }
    drop(sender);
    let _ = writer.await;
}
