//! What adapters hand to the core (channel messages, button presses, commands) and what
//! the core hands back for the person who acted (a private reply or a replacement of the
//! message they pressed on). Nothing here names a platform's own types.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::deploy::{Environment, ServiceName};
use super::message::{ButtonAction, Message, MessageRef, Platform};
use super::policy::Actor;

/// A message seen in an alert channel, flattened by the adapter: Slack text, legacy
/// attachments and blocks; Discord content and embeds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChannelMessage {
    pub text: String,
    pub attachments: Vec<Attachment>,
    pub author: MessageAuthor,
    pub posted_at: DateTime<Utc>,
}

/// A Slack attachment or a Discord embed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Attachment {
    pub title: Option<String>,
    pub title_link: Option<String>,
    pub pretext: Option<String>,
    /// Slack attachment `text`, Discord embed `description`.
    pub text: Option<String>,
    pub fallback: Option<String>,
    /// As the platform gives it: `danger`, `#E01E5A`, or a decimal RGB.
    pub color: Option<String>,
    pub fields: Vec<(String, String)>,
    pub footer: Option<String>,
    pub author_name: Option<String>,
}

/// Who posted a channel message, as far as the platform tells.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MessageAuthor {
    /// The user's or integration's display name ("Alertmanager", "Datadog", "Ada").
    pub name: Option<String>,
    /// Posted by a bot, an app or an incoming webhook rather than a person.
    pub is_bot: bool,
}

/// A button press as the adapter saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Press {
    /// The platform's id for this delivery; retries of the same press carry the same id.
    pub event_id: String,
    pub actor: Actor,
    pub action: ButtonAction,
    /// `platform:channel` where it was pressed.
    pub channel: Option<String>,
    /// The message holding the button.
    pub message: Option<MessageRef>,
    /// The platform already showed a confirmation dialog naming from → to (Slack's
    /// Block Kit `confirm`), so this press is the confirmation.
    pub confirmed_by_platform: bool,
}

/// A `/breakwater` command, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Deploys {
        service: Option<String>,
        environment: Option<String>,
    },
    Rollback {
        service: String,
        environment: String,
        version: Option<String>,
    },
    Status {
        service: String,
        environment: String,
    },
    Audit {
        service: Option<String>,
    },
    /// The latest incident's timeline, of the service when given.
    Timeline {
        service: Option<String>,
    },
    Help,
}

impl Command {
    /// Parses the text after `/breakwater`. `Err` carries the usage to show.
    pub fn parse(text: &str) -> Result<Self, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let arg = |i: usize| words.get(i).map(|w| (*w).to_owned());
        match words.first().map(|w| w.to_lowercase()).as_deref() {
            None | Some("help") if words.len() <= 1 => Ok(Self::Help),
            Some("deploys") if words.len() <= 3 => Ok(Self::Deploys {
                service: arg(1),
                environment: arg(2),
            }),
            Some("rollback") if (3..=4).contains(&words.len()) => Ok(Self::Rollback {
                service: words[1].to_owned(),
                environment: words[2].to_owned(),
                version: arg(3),
            }),
            Some("status") if words.len() == 3 => Ok(Self::Status {
                service: words[1].to_owned(),
                environment: words[2].to_owned(),
            }),
            Some("audit") if words.len() <= 2 => Ok(Self::Audit { service: arg(1) }),
            Some("timeline") if words.len() <= 2 => Ok(Self::Timeline { service: arg(1) }),
            _ => Err(Self::usage()),
        }
    }

    pub fn usage() -> String {
        [
            "Usage: /breakwater <command>",
            "  deploys [SERVICE] [ENV]          recent deploys",
            "  rollback SERVICE ENV [VERSION]   offer a rollback (with a button; never runs from text alone)",
            "  status SERVICE ENV               what runs now, open alerts, rollbacks in progress",
            "  audit [SERVICE]                  the latest audit records",
            "  timeline [SERVICE]               the latest incident's timeline",
            "  help                             this text",
        ]
        .join("\n")
    }
}

/// A command as the adapter saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    pub event_id: String,
    pub actor: Actor,
    pub command: Command,
    /// Where the command was typed, so a plan it offers can be posted there.
    pub platform: Platform,
    pub channel: Option<String>,
}

/// What the person who acted should see now.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Nothing beyond the acknowledgement (a duplicate delivery, or all was said in the
    /// public message).
    None,
    /// Only the person who acted sees it (Slack ephemeral, Discord ephemeral, console
    /// notice).
    Private(Message),
    /// Replace the message that holds the pressed button (a confirmation step).
    ReplaceSource(Message),
}

impl Reply {
    /// The common answer: one line of text only the person who acted sees.
    pub fn private(text: impl Into<String>) -> Self {
        Self::Private(Message::plain(text))
    }

    pub fn message(&self) -> Option<&Message> {
        match self {
            Self::None => None,
            Self::Private(message) | Self::ReplaceSource(message) => Some(message),
        }
    }
}

/// Service names offered by command autocompletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChoice {
    pub service: ServiceName,
    pub environments: Vec<Environment>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(Command::parse(""), Ok(Command::Help));
        assert_eq!(Command::parse("help"), Ok(Command::Help));
        assert_eq!(
            Command::parse("rollback checkout production v41"),
            Ok(Command::Rollback {
                service: "checkout".into(),
                environment: "production".into(),
                version: Some("v41".into())
            })
        );
        assert_eq!(
            Command::parse("deploys checkout"),
            Ok(Command::Deploys {
                service: Some("checkout".into()),
                environment: None
            })
        );
        assert_eq!(
            Command::parse("audit"),
            Ok(Command::Audit { service: None })
        );
    }

    #[test]
    fn timeline_takes_an_optional_service() {
        assert_eq!(
            Command::parse("timeline"),
            Ok(Command::Timeline { service: None })
        );
        assert_eq!(
            Command::parse("timeline checkout"),
            Ok(Command::Timeline {
                service: Some("checkout".into())
            })
        );
        assert!(Command::parse("timeline checkout production").is_err());
    }

    #[test]
    fn unknown_or_malformed_commands_get_the_usage() {
        for text in [
            "deploy",
            "rollback checkout",
            "status checkout",
            "rollback a b c d",
            "help me",
        ] {
            let usage = Command::parse(text).expect_err(text);
            assert!(usage.starts_with("Usage: /breakwater"), "{text}");
        }
    }
}
