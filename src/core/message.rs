//! The neutral outgoing message: what the core wants to say, structured enough for each
//! adapter to render natively (Block Kit, Discord embeds and components, HTML) and always
//! with a plain-text fallback. Text is kept as spans so that every adapter escapes user
//! data for its own markup; nothing here is pre-formatted markup.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::rollback::PlanId;

/// One piece of inline text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Span {
    Plain(String),
    Bold(String),
    Code(String),
    Link { text: String, url: String },
}

/// A line of inline text.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RichText(pub Vec<Span>);

impl RichText {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn plain(mut self, text: impl Into<String>) -> Self {
        self.0.push(Span::Plain(text.into()));
        self
    }

    pub fn bold(mut self, text: impl Into<String>) -> Self {
        self.0.push(Span::Bold(text.into()));
        self
    }

    pub fn code(mut self, text: impl Into<String>) -> Self {
        self.0.push(Span::Code(text.into()));
        self
    }

    pub fn link(mut self, text: impl Into<String>, url: impl Into<String>) -> Self {
        self.0.push(Span::Link {
            text: text.into(),
            url: url.into(),
        });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for RichText {
    fn from(text: &str) -> Self {
        RichText::new().plain(text)
    }
}

impl From<String> for RichText {
    fn from(text: String) -> Self {
        RichText::new().plain(text)
    }
}

/// Plain rendering, used for fallbacks, logs and tests.
impl fmt::Display for RichText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for span in &self.0 {
            match span {
                Span::Plain(text) | Span::Bold(text) | Span::Code(text) => f.write_str(text)?,
                Span::Link { text, url } => write!(f, "{text} <{url}>")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Section {
    /// A paragraph.
    Text {
        text: RichText,
    },
    /// Lines shown as a list (deploys, commits, config changes).
    Lines {
        lines: Vec<RichText>,
    },
    /// Label/value pairs shown side by side where the platform can.
    Fields {
        fields: Vec<(String, RichText)>,
    },
    /// Small, secondary text.
    Context {
        text: RichText,
    },
    Divider,
}

/// How a message should look: adapters map it to a colour or style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    #[default]
    Neutral,
    Info,
    Warning,
    Danger,
    Success,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonStyle {
    #[default]
    Default,
    Primary,
    Danger,
}

/// What pressing a button means. Buttons carry only this and an opaque token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonKind {
    /// Start (or approve) the rollback of a plan.
    Rollback,
    /// Dismiss the summary's suggestion.
    NotDeployRelated,
    /// Second step where the platform has no native confirmation dialog.
    Confirm,
    Cancel,
    /// Argo CD: turn automated sync off, then roll back (only when allowed by config).
    DisableAutoSyncAndRollback,
}

impl ButtonKind {
    fn code(self) -> &'static str {
        match self {
            Self::Rollback => "rb",
            Self::NotDeployRelated => "nd",
            Self::Confirm => "ok",
            Self::Cancel => "no",
            Self::DisableAutoSyncAndRollback => "as",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "rb" => Self::Rollback,
            "nd" => Self::NotDeployRelated,
            "ok" => Self::Confirm,
            "no" => Self::Cancel,
            "as" => Self::DisableAutoSyncAndRollback,
            _ => return None,
        })
    }
}

/// The payload of a button: a kind and an opaque token (a plan id or a confirmation id).
/// Encoded as `bw:<kind>:<token>`, at most 40 characters, which fits Slack's `action_id`
/// and `value` and Discord's 100-character `custom_id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ButtonAction {
    pub kind: ButtonKind,
    pub token: PlanId,
}

impl ButtonAction {
    pub fn new(kind: ButtonKind, token: PlanId) -> Self {
        Self { kind, token }
    }

    pub fn encode(&self) -> String {
        format!("bw:{}:{}", self.kind.code(), self.token)
    }

    /// Reads a payload back; anything else, including a tampered token, is `None`.
    pub fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.splitn(3, ':');
        if parts.next()? != "bw" {
            return None;
        }
        let kind = ButtonKind::from_code(parts.next()?)?;
        let token = PlanId::parse(parts.next()?)?;
        Some(Self { kind, token })
    }
}

/// A confirmation dialog shown by the platform before the click is sent (Slack).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub title: String,
    pub text: String,
    pub confirm: String,
    pub deny: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    Button {
        label: String,
        action: ButtonAction,
        style: ButtonStyle,
        confirm: Option<Confirmation>,
    },
    Link {
        label: String,
        url: String,
    },
}

impl Action {
    pub fn label(&self) -> &str {
        match self {
            Self::Button { label, .. } | Self::Link { label, .. } => label,
        }
    }
}

/// A message the core wants shown. `text` is the complete plain fallback (notifications,
/// screen readers, clients that cannot render the rest).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Message {
    pub text: String,
    pub title: Option<String>,
    pub tone: Tone,
    pub sections: Vec<Section>,
    pub actions: Vec<Action>,
    /// Where progress and outcome are shown once the buttons are gone.
    pub status: Option<RichText>,
}

impl Message {
    /// A message of one paragraph.
    pub fn plain(text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            sections: vec![Section::Text {
                text: RichText::new().plain(text.clone()),
            }],
            text,
            ..Self::default()
        }
    }

    pub fn with_tone(mut self, tone: Tone) -> Self {
        self.tone = tone;
        self
    }

    /// Every button payload in the message, for adapters that index them and for tests.
    pub fn buttons(&self) -> impl Iterator<Item = (&str, &ButtonAction)> {
        self.actions.iter().filter_map(|action| match action {
            Action::Button { label, action, .. } => Some((label.as_str(), action)),
            Action::Link { .. } => None,
        })
    }

    /// The message as plain text including sections and status, for logs and tests.
    pub fn to_plain(&self) -> String {
        let mut out = String::new();
        if let Some(title) = &self.title {
            out.push_str(title);
            out.push('\n');
        }
        for section in &self.sections {
            match section {
                Section::Text { text } | Section::Context { text } => {
                    out.push_str(&text.to_string());
                    out.push('\n');
                }
                Section::Lines { lines } => {
                    for line in lines {
                        out.push_str("• ");
                        out.push_str(&line.to_string());
                        out.push('\n');
                    }
                }
                Section::Fields { fields } => {
                    for (label, value) in fields {
                        out.push_str(&format!("{label}: {value}\n"));
                    }
                }
                Section::Divider => out.push_str("---\n"),
            }
        }
        for action in &self.actions {
            out.push_str(&format!("[{}] ", action.label()));
        }
        if !self.actions.is_empty() {
            out.push('\n');
        }
        if let Some(status) = &self.status {
            out.push_str(&status.to_string());
            out.push('\n');
        }
        out
    }
}

/// A chat platform breakwater speaks on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Slack,
    Discord,
    Console,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Discord => "discord",
            Self::Console => "console",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "slack" => Some(Self::Slack),
            "discord" => Some(Self::Discord),
            "console" => Some(Self::Console),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message the bot can reply to or update later, in platform terms the adapter
/// understands: Slack channel + `ts`, Discord channel + message id, console channel +
/// message id. `thread` is where replies go (Slack `thread_ts`, a Discord thread's
/// channel id) once known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageRef {
    pub platform: Platform,
    pub channel: String,
    pub id: String,
    #[serde(default)]
    pub thread: Option<String>,
}

/// A private reply the bot gave to a press (a Confirm/Cancel step, "Rolling back…"), as
/// the adapter can find it again to replace it once it is out of date: the press's
/// delivery id (a Discord interaction id, a Slack trigger) and the pressed message, which
/// the reply replaced when `in_place`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateReply {
    pub platform: Platform,
    pub event_id: String,
    pub pressed: Option<MessageRef>,
    pub in_place: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_actions_round_trip() {
        let action = ButtonAction::new(ButtonKind::Rollback, PlanId::generate());
        let encoded = action.encode();
        assert!(encoded.len() <= 40, "{encoded}");
        assert_eq!(ButtonAction::decode(&encoded), Some(action));
    }

    #[test]
    fn tampered_button_payloads_are_rejected() {
        assert_eq!(ButtonAction::decode("bw:rb:checkout-production-v41"), None);
        assert_eq!(
            ButtonAction::decode("bw:xx:00000000000000000000000000000000"),
            None
        );
        assert_eq!(ButtonAction::decode("rollback"), None);
    }
}
