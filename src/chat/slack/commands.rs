//! `/breakwater` as Slack delivers it: the slash command's form fields
//! (https://docs.slack.dev/interactivity/implementing-slash-commands), the same over HTTP
//! and inside a Socket Mode `slash_commands` envelope.

use serde::Deserialize;

use crate::core::event::Command;

/// The fields breakwater reads; Slack sends more.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct SlashCommand {
    pub(crate) command: String,
    #[serde(default)]
    pub(crate) text: String,
    pub(crate) user_id: String,
    #[serde(default)]
    pub(crate) user_name: Option<String>,
    pub(crate) channel_id: String,
    #[serde(default)]
    pub(crate) response_url: Option<url::Url>,
    #[serde(default)]
    pub(crate) trigger_id: Option<String>,
}

impl SlashCommand {
    /// The command typed, or the usage to show.
    pub(crate) fn parse(&self) -> Result<Command, String> {
        Command::parse(&self.text)
    }

    /// Slack's id for this invocation; a redelivered envelope carries the same one.
    pub(crate) fn event_id(&self) -> String {
        match &self.trigger_id {
            Some(trigger) => format!("command:{trigger}"),
            None => format!("command:{}:{}:{}", self.channel_id, self.user_id, self.text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(text: &str) -> SlashCommand {
        let body = format!(
            "token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T0001&team_domain=example&channel_id=C0ALERTS&channel_name=alerts&user_id=U0ALICE&user_name=alice&command=%2Fbreakwater&text={}&api_app_id=A123456&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1234%2F5678&trigger_id=13345224609.738474920.8088930838d88f008e0",
            url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>()
        );
        serde_urlencoded_like(&body)
    }

    /// The form as axum's `Form` extractor reads it.
    fn serde_urlencoded_like(body: &str) -> SlashCommand {
        let pairs: serde_json::Map<String, serde_json::Value> =
            url::form_urlencoded::parse(body.as_bytes())
                .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
                .collect();
        serde_json::from_value(serde_json::Value::Object(pairs)).expect("a slash command")
    }

    #[test]
    fn a_slash_command_form_is_read() {
        let command = form("rollback checkout production v41");
        assert_eq!(command.command, "/breakwater");
        assert_eq!(command.user_id, "U0ALICE");
        assert_eq!(
            command.parse(),
            Ok(Command::Rollback {
                service: "checkout".into(),
                environment: "production".into(),
                version: Some("v41".into()),
            })
        );
        assert_eq!(
            command.event_id(),
            "command:13345224609.738474920.8088930838d88f008e0"
        );
    }

    #[test]
    fn unknown_input_gets_the_usage() {
        let usage = form("deploy everything now please")
            .parse()
            .expect_err("usage");
        assert!(usage.starts_with("Usage: /breakwater"));
    }
}
