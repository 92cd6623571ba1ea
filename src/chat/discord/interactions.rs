//! Interactions (button presses, `/breakwater`, autocomplete), the same whether they came
//! over the gateway or to `POST /discord/interactions`.
//!
//! Discord wants a first response within 3 s and accepts follow-ups through the
//! interaction's token for 15 min. The core's answer is awaited for [`Interactions`]'
//! `defer_after`; if it comes in time it *is* the first response, otherwise the first
//! response defers (an ephemeral "thinking…" for new answers, a silent acknowledgement
//! for presses on a confirmation) and the answer follows once it is ready:
//!
//! | core reply | in time | deferred |
//! |---|---|---|
//! | `Private` | ephemeral message (flag 64) | edit the deferred message, or an ephemeral follow-up |
//! | `ReplaceSource` | `UPDATE_MESSAGE` on the pressed message | edit the pressed (or deferred) message |
//! | `None` | acknowledge | nothing (or remove the "thinking…" message) |

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serenity::all::{
    ChannelType, CommandInteraction, ComponentInteraction, CreateAutocompleteResponse,
    CreateInteractionResponse, CreateInteractionResponseMessage, Interaction, Member,
    PartialChannel, User,
};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use super::commands;
use super::render::render;
use super::rest::{Rest, RestError, codes};
use crate::chat::Lane;
use crate::chat::recent::RecentPresses;
use crate::core::bot::Bot;
use crate::core::event::{CommandRequest, Press, Reply};
use crate::core::message::{ButtonAction, ButtonKind, Message, MessageRef, Platform, Tone};
use crate::core::policy::{Actor, Principal};

/// Answers slower than this are deferred; Discord's limit is 3 s including the network.
pub(crate) const DEFER_AFTER: Duration = Duration::from_millis(2000);
/// Interaction tokens last 15 min; a follow-up later than this is given up.
const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60 + 30);

/// At most this many presses' tokens are kept; the oldest is dropped first.
const TOKENS_KEPT: usize = 2048;

/// The tokens of recent button presses by interaction id, so that a private reply (the
/// ephemeral Confirm step, "Rolling back…") can be replaced once it is out of date through
/// `PATCH /webhooks/{application}/{token}/messages/@original`, while the token lives.
pub(crate) type PressTokens = RecentPresses<String>;

pub(crate) fn press_tokens() -> PressTokens {
    RecentPresses::new(TOKENS_KEPT, TOKEN_LIFETIME)
}

/// What the first response of a deferred interaction was, so the follow-up knows what to
/// edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deferral {
    /// `DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE`, ephemeral: the answer replaces "thinking…".
    NewEphemeral,
    /// `DEFERRED_UPDATE_MESSAGE`: the answer edits the pressed message.
    OnSource,
}

/// An interaction's first response, and the work still to do once it is delivered.
pub(crate) struct Answer {
    pub(crate) first: CreateInteractionResponse,
    pub(crate) later: Option<FollowUp>,
}

/// The core's answer, still coming, to be sent through the interaction token.
pub(crate) struct FollowUp {
    rest: Arc<Rest>,
    token: String,
    deferral: Deferral,
    reply: JoinHandle<Reply>,
}

impl FollowUp {
    /// Sends the answer when it is ready; call once the first response is delivered.
    pub(crate) fn spawn(self, tasks: &TaskTracker) {
        tasks.spawn(self.run());
    }

    async fn run(self) {
        let reply = match tokio::time::timeout(TOKEN_LIFETIME, self.reply).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                tracing::error!(%error, "handling a Discord interaction failed");
                Reply::Private(failure_message())
            }
            Err(_) => {
                tracing::error!("the answer to a Discord interaction came after its token expired");
                return;
            }
        };
        let result = match (self.deferral, reply) {
            (Deferral::OnSource, Reply::None) => Ok(()),
            (Deferral::NewEphemeral, Reply::None) => {
                follow_up_call(&self.rest, "delete deferred response", || {
                    self.rest
                        .http
                        .delete_original_interaction_response(&self.token)
                })
                .await
            }
            (Deferral::OnSource, Reply::Private(message)) => {
                let body = render(&message, false).followup(true);
                follow_up_call(&self.rest, "ephemeral follow-up", || {
                    self.rest
                        .http
                        .create_followup_message(&self.token, &body, Vec::new())
                })
                .await
                .map(drop)
            }
            (_, Reply::Private(message) | Reply::ReplaceSource(message)) => {
                let body = render(&message, false).edit_interaction_response();
                follow_up_call(&self.rest, "edit deferred response", || {
                    self.rest.http.edit_original_interaction_response(
                        &self.token,
                        &body,
                        Vec::new(),
                    )
                })
                .await
                .map(drop)
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, "could not follow up a Discord interaction");
        }
    }
}

/// A follow-up sent right after an HTTP-mode deferral can reach Discord before Discord has
/// processed the deferral itself; "unknown message/webhook" is retried for a few seconds.
pub(crate) async fn follow_up_call<T, F, Fut>(
    rest: &Rest,
    what: &str,
    mut call: F,
) -> Result<T, RestError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = serenity::Result<T>>,
{
    let mut pause = Duration::from_millis(200);
    for attempt in 0.. {
        match rest.call(Lane::Interactive, what, &mut call).await {
            Err(error)
                if attempt < 5
                    && matches!(
                        error.code(),
                        Some(codes::UNKNOWN_MESSAGE | codes::UNKNOWN_WEBHOOK)
                    ) =>
            {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

fn failure_message() -> Message {
    Message::plain(
        "Something went wrong on breakwater's side and nothing was done. The error is in breakwater's log.",
    )
    .with_tone(Tone::Danger)
}

/// Handles interactions for both delivery modes.
pub(crate) struct Interactions {
    bot: Bot,
    rest: Arc<Rest>,
    defer_after: Duration,
    tokens: Arc<PressTokens>,
}

impl Interactions {
    pub(crate) fn new(
        bot: Bot,
        rest: Arc<Rest>,
        defer_after: Duration,
        tokens: Arc<PressTokens>,
    ) -> Self {
        Self {
            bot,
            rest,
            defer_after,
            tokens,
        }
    }

    /// The first response to an interaction and any follow-up work.
    pub(crate) async fn answer(&self, interaction: Interaction) -> Answer {
        match interaction {
            Interaction::Ping(_) => Answer {
                first: CreateInteractionResponse::Pong,
                later: None,
            },
            Interaction::Component(component) => self.component(component).await,
            Interaction::Command(command) => self.command(command).await,
            Interaction::Autocomplete(command) => Answer {
                first: CreateInteractionResponse::Autocomplete(
                    CreateAutocompleteResponse::new().set_choices(commands::autocomplete(
                        &command.data.options,
                        self.bot.recognizer().services(),
                    )),
                ),
                later: None,
            },
            _ => Answer {
                first: ephemeral(Message::plain(
                    "breakwater does not handle this interaction.",
                )),
                later: None,
            },
        }
    }

    async fn component(&self, component: ComponentInteraction) -> Answer {
        let Some(action) = ButtonAction::decode(&component.data.custom_id) else {
            return Answer {
                first: ephemeral(Message::plain(
                    "This button is not one of breakwater's. Nothing was done.",
                )),
                later: None,
            };
        };
        let on_confirmation = matches!(action.kind, ButtonKind::Confirm | ButtonKind::Cancel);
        let in_thread = component.channel.as_ref().is_some_and(is_thread);
        let press = Press {
            event_id: component.id.to_string(),
            actor: actor(&component.user, component.member.as_ref()),
            action,
            channel: Some(format!(
                "discord:{}",
                policy_channel(component.channel_id.get(), component.channel.as_ref())
            )),
            message: Some(MessageRef {
                platform: Platform::Discord,
                channel: component.channel_id.to_string(),
                id: component.message.id.to_string(),
                thread: in_thread.then(|| component.channel_id.to_string()),
            }),
            confirmed_by_platform: false,
        };
        self.tokens
            .remember(component.id.to_string(), component.token.clone());
        let bot = self.bot.clone();
        let deferral = if on_confirmation {
            Deferral::OnSource
        } else {
            Deferral::NewEphemeral
        };
        within_deadline(
            &self.rest,
            self.defer_after,
            component.token,
            deferral,
            true,
            async move { bot.handle_press(press).await },
        )
        .await
    }

    async fn command(&self, command: CommandInteraction) -> Answer {
        if command.data.name != commands::NAME {
            return Answer {
                first: ephemeral(Message::plain(crate::core::event::Command::usage())),
                later: None,
            };
        }
        let parsed = match commands::parse(&command.data.options) {
            Ok(parsed) => parsed,
            Err(usage) => {
                return Answer {
                    first: ephemeral(Message::plain(usage)),
                    later: None,
                };
            }
        };
        let request = CommandRequest {
            event_id: command.id.to_string(),
            actor: actor(&command.user, command.member.as_deref()),
            command: parsed,
            platform: Platform::Discord,
            channel: Some(command.channel_id.to_string()),
        };
        let bot = self.bot.clone();
        within_deadline(
            &self.rest,
            self.defer_after,
            command.token,
            Deferral::NewEphemeral,
            false,
            async move { bot.handle_command(request).await },
        )
        .await
    }
}

/// Waits `defer_after` for the core; answers directly or defers.
async fn within_deadline(
    rest: &Arc<Rest>,
    defer_after: Duration,
    token: String,
    deferral: Deferral,
    has_source: bool,
    work: impl Future<Output = Reply> + Send + 'static,
) -> Answer {
    let mut reply = tokio::spawn(work);
    match tokio::time::timeout(defer_after, &mut reply).await {
        Ok(Ok(reply)) => Answer {
            first: immediate(reply, has_source),
            later: None,
        },
        Ok(Err(error)) => {
            tracing::error!(%error, "handling a Discord interaction failed");
            Answer {
                first: ephemeral(failure_message()),
                later: None,
            }
        }
        Err(_) => Answer {
            first: match deferral {
                // The deferred message is filled in later; it parses no mentions either.
                Deferral::NewEphemeral => CreateInteractionResponse::Defer(
                    CreateInteractionResponseMessage::new()
                        .ephemeral(true)
                        .allowed_mentions(serenity::all::CreateAllowedMentions::new()),
                ),
                Deferral::OnSource => CreateInteractionResponse::Acknowledge,
            },
            later: Some(FollowUp {
                rest: rest.clone(),
                token,
                deferral,
                reply,
            }),
        },
    }
}

/// The first response carrying the core's reply.
fn immediate(reply: Reply, has_source: bool) -> CreateInteractionResponse {
    match reply {
        Reply::Private(message) => ephemeral(message),
        Reply::ReplaceSource(message) if has_source => CreateInteractionResponse::UpdateMessage(
            render(&message, false).interaction_message(false),
        ),
        Reply::ReplaceSource(message) => ephemeral(message),
        Reply::None if has_source => CreateInteractionResponse::Acknowledge,
        // A command delivered twice: the first delivery was answered.
        Reply::None => ephemeral(Message::plain("Already answered.")),
    }
}

fn ephemeral(message: Message) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(render(&message, false).interaction_message(true))
}

/// `discord:<user id>`, with the member's roles as `discord:role:<id>` groups and the name
/// people see in the guild.
pub(crate) fn actor(user: &User, member: Option<&Member>) -> Actor {
    let name = member
        .and_then(|m| m.nick.clone())
        .or_else(|| user.global_name.clone())
        .unwrap_or_else(|| user.name.clone());
    let groups = member
        .map(|m| {
            m.roles
                .iter()
                .map(|role| Principal::discord_role(&role.to_string()))
                .collect()
        })
        .unwrap_or_default();
    Actor::new(
        Principal::user(Platform::Discord, &user.id.to_string()),
        name,
    )
    .with_groups(groups)
}

fn is_thread(channel: &PartialChannel) -> bool {
    matches!(
        channel.kind,
        ChannelType::PublicThread | ChannelType::PrivateThread | ChannelType::NewsThread
    )
}

/// The channel policy checks: a thread counts as the channel it belongs to, so
/// `policy.channels = ["discord:<alert channel>"]` covers presses in summary threads.
fn policy_channel(channel_id: u64, channel: Option<&PartialChannel>) -> u64 {
    channel
        .filter(|c| is_thread(c))
        .and_then(|c| c.parent_id)
        .map_or(channel_id, |parent| parent.get())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn a_member_becomes_an_actor_with_role_groups_and_their_guild_name() {
        let member: Member = serde_json::from_value(json!({
            "user": {"id": "111", "username": "ada", "global_name": "Ada L", "discriminator": "0", "avatar": null},
            "nick": "Ada (on call)",
            "roles": ["555", "777"],
            "joined_at": "2025-01-01T00:00:00Z",
            "deaf": false, "mute": false, "flags": 0, "pending": false,
            "guild_id": "42"
        }))
        .expect("documented member payload");
        let actor = actor(&member.user, Some(&member));
        assert_eq!(actor.principal.as_str(), "discord:111");
        assert_eq!(actor.display_name, "Ada (on call)");
        let groups: Vec<&str> = actor.groups.iter().map(Principal::as_str).collect();
        assert_eq!(groups, ["discord:role:555", "discord:role:777"]);
    }

    #[test]
    fn a_user_outside_a_guild_has_no_groups() {
        let user: User = serde_json::from_value(json!({
            "id": "222", "username": "grace", "global_name": null, "discriminator": "0", "avatar": null
        }))
        .expect("documented user payload");
        let actor = actor(&user, None);
        assert_eq!(actor.display_name, "grace");
        assert!(actor.groups.is_empty());
    }

    #[test]
    fn private_replies_are_ephemeral_and_replacements_update_the_pressed_message() {
        let private = serde_json::to_value(immediate(Reply::private("no"), true)).expect("json");
        assert_eq!(private["type"], 4);
        assert_eq!(private["data"]["flags"], 64);
        let replaced = serde_json::to_value(immediate(
            Reply::ReplaceSource(Message::plain("done")),
            true,
        ))
        .expect("json");
        assert_eq!(replaced["type"], 7);
        assert_eq!(replaced["data"]["components"], json!([]));
        let none = serde_json::to_value(immediate(Reply::None, true)).expect("json");
        assert_eq!(none["type"], 6);
    }

    /// A loopback stand-in for Discord's webhook routes that records what arrives.
    async fn webhook_routes() -> (Arc<Rest>, Arc<std::sync::Mutex<Vec<(String, Value)>>>) {
        use axum::extract::State;
        use axum::routing::post;

        type Seen = Arc<std::sync::Mutex<Vec<(String, Value)>>>;
        async fn record(
            State(seen): State<Seen>,
            method: axum::http::Method,
            uri: axum::http::Uri,
            axum::Json(body): axum::Json<Value>,
        ) -> axum::Json<Value> {
            seen.lock()
                .expect("lock")
                .push((format!("{method} {}", uri.path()), body.clone()));
            axum::Json(json!({
                "id": "10", "channel_id": "20", "content": body["content"],
                "author": {"id": "1", "username": "breakwater", "discriminator": "0", "avatar": null, "bot": true},
                "timestamp": "2026-01-01T00:00:00.000000+00:00", "edited_timestamp": null,
                "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
                "attachments": [], "embeds": [], "pinned": false, "type": 0, "flags": 64
            }))
        }
        let seen: Seen = Arc::default();
        let app = axum::Router::new()
            .route("/api/v10/webhooks/{app}/{token}", post(record))
            .route(
                "/api/v10/webhooks/{app}/{token}/messages/{message}",
                axum::routing::patch(record),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let api = url::Url::parse(&format!("http://{address}/api/")).expect("url");
        let http = super::super::rest::build_http("token", &api, Some(42)).expect("http");
        let rest = Arc::new(Rest::new(
            Arc::new(http),
            super::super::rest::RetryPolicy::default(),
        ));
        (rest, seen)
    }

    async fn slow(reply: Reply) -> Reply {
        tokio::time::sleep(Duration::from_millis(100)).await;
        reply
    }

    #[tokio::test]
    async fn a_slow_answer_is_deferred_then_replaces_the_thinking_message() {
        let (rest, seen) = webhook_routes().await;
        let answer = within_deadline(
            &rest,
            Duration::from_millis(10),
            "tok".into(),
            Deferral::NewEphemeral,
            true,
            slow(Reply::private("late answer")),
        )
        .await;
        let first = serde_json::to_value(&answer.first).expect("json");
        assert_eq!(first["type"], 5, "deferred channel message");
        assert_eq!(first["data"]["flags"], 64, "ephemeral");
        let tasks = TaskTracker::new();
        answer.later.expect("a follow-up").spawn(&tasks);
        tasks.close();
        tasks.wait().await;
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].0,
            "PATCH /api/v10/webhooks/42/tok/messages/@original"
        );
        assert_eq!(seen[0].1["content"], "late answer");
    }

    #[tokio::test]
    async fn a_slow_refusal_on_a_confirmation_is_acknowledged_then_sent_as_an_ephemeral_follow_up()
    {
        let (rest, seen) = webhook_routes().await;
        let answer = within_deadline(
            &rest,
            Duration::from_millis(10),
            "tok".into(),
            Deferral::OnSource,
            true,
            slow(Reply::private("Only Ada can confirm this rollback.")),
        )
        .await;
        assert_eq!(
            serde_json::to_value(&answer.first).expect("json")["type"],
            6
        );
        let tasks = TaskTracker::new();
        answer.later.expect("a follow-up").spawn(&tasks);
        tasks.close();
        tasks.wait().await;
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen[0].0, "POST /api/v10/webhooks/42/tok");
        assert_eq!(seen[0].1["flags"], 64);
    }

    #[tokio::test]
    async fn a_fast_answer_is_the_first_response() {
        let (rest, seen) = webhook_routes().await;
        let answer = within_deadline(
            &rest,
            Duration::from_secs(2),
            "tok".into(),
            Deferral::NewEphemeral,
            true,
            async { Reply::private("quick") },
        )
        .await;
        assert!(answer.later.is_none());
        assert_eq!(
            serde_json::to_value(&answer.first).expect("json")["type"],
            4
        );
        assert!(seen.lock().expect("lock").is_empty());
    }

    #[test]
    fn presses_in_a_thread_count_as_presses_in_its_channel() {
        let thread: PartialChannel = serde_json::from_value(json!({
            "id": "900", "type": 11, "parent_id": "800", "name": "checkout"
        }))
        .expect("partial channel");
        assert_eq!(policy_channel(900, Some(&thread)), 800);
        let text: PartialChannel =
            serde_json::from_value(json!({"id": "800", "type": 0, "name": "alerts"}))
                .expect("partial channel");
        assert_eq!(policy_channel(800, Some(&text)), 800);
    }
}
