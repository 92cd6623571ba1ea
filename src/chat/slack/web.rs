//! Slack's Web API through slack-morphism's client, pointed at `slack.api_url`, with
//! each failure classified for the [`Outbox`](crate::chat::outbox::Outbox): `429` and
//! `ratelimited` wait, 5xx and transport errors retry, `ok: false` refusals do not.

use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use url::Url;

use crate::chat::ChatError;
use crate::chat::outbox::SendFailure;
use crate::core::message::Platform;

type Connector = SlackClientHyperHttpsConnector;

/// Who the bot is on Slack, to leave its own posts out of the alert channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BotIdentity {
    pub(crate) user_id: String,
    pub(crate) bot_id: Option<String>,
}

pub(crate) struct Web {
    client: SlackClient<Connector>,
    bot_token: SlackApiToken,
    app_token: Option<SlackApiToken>,
}

/// `ok: false` errors that are Slack's own trouble, not the request's.
const TRANSIENT_ERRORS: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

fn classify(error: SlackClientError) -> SendFailure {
    match error {
        SlackClientError::RateLimitError(limited) => SendFailure::RateLimited {
            retry_after: limited.retry_after,
        },
        SlackClientError::ApiError(api) if api.code == "ratelimited" => {
            SendFailure::RateLimited { retry_after: None }
        }
        SlackClientError::ApiError(api) if TRANSIENT_ERRORS.contains(&api.code.as_str()) => {
            SendFailure::Transient(api.code)
        }
        SlackClientError::ApiError(api) => SendFailure::Refused(refused(api.code)),
        SlackClientError::HttpError(http) if http.status_code.is_server_error() => {
            SendFailure::Transient(http.to_string())
        }
        SlackClientError::HttpProtocolError(_)
        | SlackClientError::EndOfStream(_)
        | SlackClientError::SystemError(_) => SendFailure::Transient(error.to_string()),
        other => SendFailure::Refused(refused(other.to_string())),
    }
}

/// `ok: false` errors that mean Slack refuses the token itself: no retry fixes them, the
/// operator must (https://docs.slack.dev/reference/methods/auth.test#errors).
const CREDENTIAL_ERRORS: &[&str] = &[
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
];

/// The Slack error code when `failure` says the token was refused.
pub(crate) fn rejected_credentials(failure: &SendFailure) -> Option<&str> {
    match failure {
        SendFailure::Refused(ChatError::Refused { reason, .. })
            if CREDENTIAL_ERRORS.contains(&reason.as_str()) =>
        {
            Some(reason)
        }
        _ => None,
    }
}

/// A failure in words, for logs and `/readyz`.
pub(crate) fn describe(failure: &SendFailure) -> String {
    match failure {
        SendFailure::RateLimited { retry_after } => match retry_after {
            Some(pause) => format!("rate limited for {pause:?}"),
            None => "rate limited".to_owned(),
        },
        SendFailure::Transient(reason) => reason.clone(),
        SendFailure::Refused(error) => error.to_string(),
    }
}

fn refused(reason: String) -> ChatError {
    ChatError::Refused {
        platform: Platform::Slack,
        reason,
    }
}

fn token(value: &str) -> SlackApiToken {
    SlackApiToken::new(SlackApiTokenValue::new(value.to_owned()))
}

impl Web {
    pub(crate) fn new(
        api_url: &Url,
        bot_token: &str,
        app_token: Option<&str>,
    ) -> Result<Self, String> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|error| format!("no TLS root certificates: {error}"))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let connector = SlackClientHyperConnector::with_connector(https)
            .with_slack_api_url(api_url.as_str().trim_end_matches('/'));
        Ok(Self {
            client: SlackClient::new(connector),
            bot_token: token(bot_token),
            app_token: app_token.map(token),
        })
    }

    fn session(&self) -> SlackClientSession<'_, Connector> {
        self.client.open_session(&self.bot_token)
    }

    /// `chat.postMessage`; returns the new message's `ts`.
    pub(crate) async fn post_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        content: SlackMessageContent,
    ) -> Result<String, SendFailure> {
        let request = SlackApiChatPostMessageRequest::new(channel.into(), content)
            .opt_thread_ts(thread_ts.map(Into::into));
        self.session()
            .chat_post_message(&request)
            .await
            .map(|posted| posted.ts.to_string())
            .map_err(classify)
    }

    /// `chat.update` of a message the bot posted.
    pub(crate) async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        content: SlackMessageContent,
    ) -> Result<(), SendFailure> {
        let request = SlackApiChatUpdateRequest::new(channel.into(), content, ts.into());
        self.session()
            .chat_update(&request)
            .await
            .map(drop)
            .map_err(classify)
    }

    /// `chat.postEphemeral`: only `user` sees it.
    pub(crate) async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        thread_ts: Option<&str>,
        content: SlackMessageContent,
    ) -> Result<(), SendFailure> {
        let request = SlackApiChatPostEphemeralRequest::new(channel.into(), user.into(), content)
            .opt_thread_ts(thread_ts.map(Into::into));
        self.session()
            .chat_post_ephemeral(&request)
            .await
            .map(drop)
            .map_err(classify)
    }

    /// Answers through an interaction's or command's `response_url` (ephemeral unless it
    /// replaces the original message).
    pub(crate) async fn respond(
        &self,
        response_url: &Url,
        content: SlackMessageContent,
        replace_original: bool,
    ) -> Result<(), SendFailure> {
        let request =
            SlackApiPostWebhookMessageRequest::new(content).with_replace_original(replace_original);
        self.client
            .post_webhook_message(response_url, &request)
            .await
            .map(drop)
            .map_err(classify)
    }

    /// `users.info`: the name people know this user by.
    pub(crate) async fn user_name(&self, user: &str) -> Result<Option<String>, SendFailure> {
        let request = SlackApiUsersInfoRequest::new(user.into());
        let found = self
            .session()
            .users_info(&request)
            .await
            .map_err(classify)?;
        let user = found.user;
        let profile = user.profile.as_ref();
        Ok(profile
            .and_then(|p| p.display_name.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| profile.and_then(|p| p.real_name.clone()))
            .filter(|n| !n.is_empty())
            .or(user.name))
    }

    /// `usergroups.users.list`: the members of a user group.
    pub(crate) async fn usergroup_members(&self, group: &str) -> Result<Vec<String>, SendFailure> {
        let request = SlackApiUserGroupsUsersListRequest::new(group.into());
        self.session()
            .usergroups_users_list(&request)
            .await
            .map(|list| list.users.into_iter().map(|u| u.to_string()).collect())
            .map_err(classify)
    }

    /// `auth.test`: the bot's own user and bot ids.
    pub(crate) async fn identity(&self) -> Result<BotIdentity, SendFailure> {
        let me = self.session().auth_test().await.map_err(classify)?;
        Ok(BotIdentity {
            user_id: me.user_id.to_string(),
            bot_id: me.bot_id.map(|id| id.to_string()),
        })
    }

    /// `apps.connections.open` with the app-level token: a fresh Socket Mode URL.
    pub(crate) async fn open_connection(&self) -> Result<String, SendFailure> {
        let Some(app_token) = &self.app_token else {
            return Err(SendFailure::Refused(refused(
                "slack.app_token is not set".to_owned(),
            )));
        };
        self.client
            .open_session(app_token)
            .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
            .await
            .map(|opened| opened.url.0.to_string())
            .map_err(classify)
    }
}
