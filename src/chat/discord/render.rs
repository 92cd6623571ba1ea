//! The neutral [`Message`] as Discord shows it: one embed (title, description built from
//! the sections, fields, colour from the tone, the status line at its foot where the
//! buttons were) plus button components whose `custom_id` is the opaque
//! [`ButtonAction::encode`](crate::core::message::ButtonAction::encode) payload. User data
//! is escaped for Discord markdown and no message may ping anyone.

use serenity::all::{
    ButtonStyle as DiscordButtonStyle, CreateActionRow, CreateAllowedMentions, CreateButton,
    CreateEmbed, CreateInteractionResponseFollowup, CreateInteractionResponseMessage,
    CreateMessage, EditInteractionResponse, EditMessage,
};

use crate::core::message::{Action, ButtonStyle, Message, RichText, Section, Span, Tone};
use crate::text::clip;

/// Discord's limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
const CONTENT_LIMIT: usize = 2000;
const TITLE_LIMIT: usize = 256;
const DESCRIPTION_LIMIT: usize = 4096;
const FIELD_NAME_LIMIT: usize = 256;
const FIELD_VALUE_LIMIT: usize = 1024;
const MAX_FIELDS: usize = 25;
const LABEL_LIMIT: usize = 80;
const BUTTONS_PER_ROW: usize = 5;
const MAX_ROWS: usize = 5;
/// Thread names are at most 100 characters.
const THREAD_NAME_LIMIT: usize = 100;

/// A message in Discord's terms, ready to go into any of serenity's message builders.
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    /// Plain text above the embed: the fallback for notifications, when asked for.
    pub(crate) content: String,
    pub(crate) embeds: Vec<CreateEmbed>,
    /// Always set, empty when the message has no buttons, so that an edit removes them.
    pub(crate) components: Vec<CreateActionRow>,
}

impl Rendered {
    pub(crate) fn create_message(self) -> CreateMessage {
        CreateMessage::new()
            .content(self.content)
            .embeds(self.embeds)
            .components(self.components)
            .allowed_mentions(CreateAllowedMentions::new())
    }

    pub(crate) fn edit_message(self) -> EditMessage {
        EditMessage::new()
            .content(self.content)
            .embeds(self.embeds)
            .components(self.components)
            .allowed_mentions(CreateAllowedMentions::new())
    }

    /// The body of an interaction callback that sends or replaces a message.
    pub(crate) fn interaction_message(self, ephemeral: bool) -> CreateInteractionResponseMessage {
        CreateInteractionResponseMessage::new()
            .content(self.content)
            .embeds(self.embeds)
            .components(self.components)
            .allowed_mentions(CreateAllowedMentions::new())
            .ephemeral(ephemeral)
    }

    pub(crate) fn edit_interaction_response(self) -> EditInteractionResponse {
        EditInteractionResponse::new()
            .content(self.content)
            .embeds(self.embeds)
            .components(self.components)
            .allowed_mentions(CreateAllowedMentions::new())
    }

    pub(crate) fn followup(self, ephemeral: bool) -> CreateInteractionResponseFollowup {
        CreateInteractionResponseFollowup::new()
            .content(self.content)
            .embeds(self.embeds)
            .components(self.components)
            .allowed_mentions(CreateAllowedMentions::new())
            .ephemeral(ephemeral)
    }
}

/// Renders a message. `with_content` puts the plain fallback above the embed (top-level
/// posts, where notifications show it); in threads the embed alone says it.
pub(crate) fn render(message: &Message, with_content: bool) -> Rendered {
    if is_simple(message) {
        return Rendered {
            content: clip(&description(message), CONTENT_LIMIT),
            embeds: Vec::new(),
            components: Vec::new(),
        };
    }
    let mut embed = CreateEmbed::new()
        .colour(colour(message.tone))
        .description(clip(&description(message), DESCRIPTION_LIMIT));
    if let Some(title) = &message.title {
        embed = embed.title(clip(title, TITLE_LIMIT));
    }
    let fields: Vec<(String, String, bool)> = message
        .sections
        .iter()
        .filter_map(|section| match section {
            Section::Fields { fields } => Some(fields),
            _ => None,
        })
        .flatten()
        .take(MAX_FIELDS)
        .map(|(label, value)| {
            (
                clip(label, FIELD_NAME_LIMIT),
                clip(&markdown(value), FIELD_VALUE_LIMIT),
                true,
            )
        })
        .collect();
    if !fields.is_empty() {
        embed = embed.fields(fields);
    }
    Rendered {
        content: if with_content {
            clip(&escape(&message.text), CONTENT_LIMIT)
        } else {
            String::new()
        },
        embeds: vec![embed],
        components: components(&message.actions),
    }
}

/// One neutral paragraph and nothing else reads best as plain message text.
fn is_simple(message: &Message) -> bool {
    message.title.is_none()
        && message.tone == Tone::Neutral
        && message.actions.is_empty()
        && message.status.is_none()
        && message
            .sections
            .iter()
            .all(|section| matches!(section, Section::Text { .. }))
}

/// A name for the thread a reply opens: the message's title, else its first line.
pub(crate) fn thread_name(message: &Message) -> String {
    let name = message
        .title
        .clone()
        .unwrap_or_else(|| message.text.lines().next().unwrap_or_default().to_owned());
    let name = name.trim();
    if name.is_empty() {
        "breakwater".to_owned()
    } else {
        clip(name, THREAD_NAME_LIMIT)
    }
}

pub(crate) fn colour(tone: Tone) -> u32 {
    match tone {
        Tone::Neutral => 0x99AAB5,
        Tone::Info => 0x5865F2,
        Tone::Warning => 0xFEE75C,
        Tone::Danger => 0xED4245,
        Tone::Success => 0x57F287,
    }
}

/// The embed description: every section but fields, then the status line.
fn description(message: &Message) -> String {
    let mut blocks: Vec<String> = Vec::new();
    for section in &message.sections {
        match section {
            Section::Text { text } => blocks.push(markdown(text)),
            Section::Lines { lines } => blocks.push(
                lines
                    .iter()
                    .map(|line| format!("• {}", markdown(line)))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Section::Context { text } if text.is_empty() => {}
            Section::Context { text } => blocks.push(format!("*{}*", markdown(text))),
            Section::Divider => blocks.push("───".to_owned()),
            Section::Fields { .. } => {}
        }
    }
    let mut body = blocks
        .into_iter()
        .filter(|b| !b.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(status) = &message.status {
        let status = format!("**{}**", markdown(status));
        // The status line is the point of an edited message: keep it whole.
        let room = DESCRIPTION_LIMIT.saturating_sub(status.chars().count() + 2);
        body = clip(&body, room);
        if !body.is_empty() {
            body.push_str("\n\n");
        }
        body.push_str(&status);
    }
    body
}

fn components(actions: &[Action]) -> Vec<CreateActionRow> {
    let buttons: Vec<CreateButton> = actions
        .iter()
        .filter_map(|action| match action {
            Action::Button {
                label,
                action,
                style,
                ..
            } => Some(
                CreateButton::new(action.encode())
                    .label(clip(label, LABEL_LIMIT))
                    .style(match style {
                        ButtonStyle::Danger => DiscordButtonStyle::Danger,
                        ButtonStyle::Primary => DiscordButtonStyle::Primary,
                        ButtonStyle::Default => DiscordButtonStyle::Secondary,
                    }),
            ),
            Action::Link { label, url } if is_web_url(url) => {
                Some(CreateButton::new_link(url.clone()).label(clip(label, LABEL_LIMIT)))
            }
            Action::Link { .. } => None,
        })
        .collect();
    buttons
        .chunks(BUTTONS_PER_ROW)
        .take(MAX_ROWS)
        .map(|row| CreateActionRow::Buttons(row.to_vec()))
        .collect()
}

/// Inline text as Discord markdown, user data escaped.
pub(crate) fn markdown(text: &RichText) -> String {
    let mut out = String::new();
    for span in &text.0 {
        match span {
            Span::Plain(text) => out.push_str(&escape(text)),
            Span::Bold(text) if text.is_empty() => {}
            Span::Bold(text) => {
                out.push_str("**");
                out.push_str(&escape(text));
                out.push_str("**");
            }
            Span::Code(text) if text.is_empty() => {}
            Span::Code(text) => {
                // No escape works inside a code span; a backtick would end it.
                out.push('`');
                out.push_str(&text.replace('`', "ˋ").replace('\n', " "));
                out.push('`');
            }
            Span::Link { text, url } if is_web_url(url) => {
                out.push('[');
                out.push_str(&escape(text));
                out.push_str("](");
                out.push_str(&url.replace(' ', "%20").replace(')', "%29"));
                out.push(')');
            }
            Span::Link { text, .. } => out.push_str(&escape(text)),
        }
    }
    out
}

fn is_web_url(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

/// Escapes Discord markdown: every character that can open formatting gets a backslash
/// (Discord drops a backslash before any punctuation), and mentions are broken with a
/// zero-width space so that even a client ignoring `allowed_mentions` shows no ping.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' | '*' | '_' | '~' | '`' | '|' | '[' | ']' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@\u{200B}"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::core::message::{ButtonAction, ButtonKind};
    use crate::core::rollback::PlanId;

    fn summary() -> (Message, ButtonAction) {
        let action = ButtonAction::new(ButtonKind::Rollback, PlanId::generate());
        let message = Message {
            text: "HighErrorRate: checkout production — suspect v42".into(),
            title: Some("checkout production · recent deploys".into()),
            tone: Tone::Danger,
            sections: vec![
                Section::Text {
                    text: RichText::new()
                        .plain("🔴 ")
                        .bold("Suspect")
                        .plain(" ")
                        .link("v42", "https://ci.example/v42")
                        .plain(" by ada_lovelace"),
                },
                Section::Lines {
                    lines: vec![
                        RichText::new()
                            .code("abc`123")
                            .plain(" fix *all* the things"),
                    ],
                },
                Section::Fields {
                    fields: vec![("Environment".into(), RichText::from("production"))],
                },
                Section::Context {
                    text: "2 alerts grouped in this thread".into(),
                },
            ],
            actions: vec![
                Action::Button {
                    label: "Roll back checkout production to v41".into(),
                    action: action.clone(),
                    style: ButtonStyle::Danger,
                    confirm: None,
                },
                Action::Button {
                    label: "Not deploy-related".into(),
                    action: ButtonAction::new(ButtonKind::NotDeployRelated, action.token),
                    style: ButtonStyle::Default,
                    confirm: None,
                },
                Action::Link {
                    label: "View suspect deploy".into(),
                    url: "https://ci.example/v42".into(),
                },
            ],
            status: None,
        };
        (message, action)
    }

    fn as_json(rendered: Rendered) -> Value {
        serde_json::to_value(rendered.create_message()).expect("serializes")
    }

    #[test]
    fn a_summary_becomes_one_coloured_embed_with_a_danger_rollback_button_and_a_link() {
        let (message, action) = summary();
        let body = as_json(render(&message, false));
        let embed = &body["embeds"][0];
        assert_eq!(embed["title"], "checkout production · recent deploys");
        assert_eq!(embed["color"], 0xED4245);
        let description = embed["description"].as_str().expect("description");
        assert!(
            description.contains("**Suspect** [v42](https://ci.example/v42) by ada\\_lovelace"),
            "{description}"
        );
        assert!(
            description.contains("• `abcˋ123` fix \\*all\\* the things"),
            "{description}"
        );
        assert!(
            description.contains("*2 alerts grouped in this thread*"),
            "{description}"
        );
        assert_eq!(embed["fields"][0]["name"], "Environment");
        let buttons = &body["components"][0]["components"];
        assert_eq!(buttons[0]["custom_id"], action.encode());
        assert_eq!(buttons[0]["style"], 4, "danger");
        assert_eq!(buttons[1]["style"], 2, "secondary");
        assert_eq!(buttons[2]["style"], 5, "link");
        assert_eq!(buttons[2]["url"], "https://ci.example/v42");
        assert_eq!(body["allowed_mentions"]["parse"], json!([]));
        assert_eq!(body["content"], "");
    }

    #[test]
    fn an_outcome_removes_the_buttons_and_shows_the_status_line_last() {
        let (mut message, _) = summary();
        message.actions.clear();
        message.status = Some("✅ Rolled back checkout production from v42 to v41 — by Ada".into());
        let body = serde_json::to_value(render(&message, false).edit_message()).expect("json");
        assert_eq!(
            body["components"],
            json!([]),
            "an edit must clear the buttons"
        );
        let description = body["embeds"][0]["description"].as_str().expect("text");
        assert!(
            description
                .ends_with("**✅ Rolled back checkout production from v42 to v41 — by Ada**"),
            "{description}"
        );
    }

    #[test]
    fn the_status_line_survives_an_overlong_description() {
        let mut message = Message::plain("x".repeat(10_000)).with_tone(Tone::Warning);
        message.status = Some("⏳ running".into());
        let body = as_json(render(&message, false));
        let description = body["embeds"][0]["description"].as_str().expect("text");
        assert!(description.chars().count() <= DESCRIPTION_LIMIT);
        assert!(description.ends_with("**⏳ running**"));
    }

    #[test]
    fn top_level_posts_carry_the_plain_fallback_as_content() {
        let (message, _) = summary();
        let body = as_json(render(&message, true));
        assert_eq!(
            body["content"],
            "HighErrorRate: checkout production — suspect v42"
        );
    }

    #[test]
    fn a_plain_neutral_paragraph_is_sent_as_text_without_an_embed() {
        let body = as_json(render(
            &Message::plain("Cancelled. Nothing was rolled back."),
            false,
        ));
        assert_eq!(body["content"], "Cancelled. Nothing was rolled back.");
        assert_eq!(body["embeds"], json!([]));
    }

    #[test]
    fn mentions_and_markdown_in_user_data_are_neutralised() {
        let text = markdown(&RichText::from("@everyone look at <@123> **now**"));
        assert!(!text.contains("@everyone"), "{text}");
        assert!(text.contains("\\*\\*now\\*\\*"), "{text}");
        assert!(text.contains("\\<@\u{200B}123\\>"), "{text}");
    }

    #[test]
    fn links_that_are_not_web_urls_render_as_text() {
        let text = markdown(&RichText::new().link("click", "javascript:alert(1)"));
        assert_eq!(text, "click");
    }

    #[test]
    fn many_buttons_wrap_into_rows_of_five() {
        let action = ButtonAction::new(ButtonKind::Rollback, PlanId::generate());
        let actions: Vec<Action> = (0..7)
            .map(|i| Action::Button {
                label: format!("b{i}"),
                action: action.clone(),
                style: ButtonStyle::Default,
                confirm: None,
            })
            .collect();
        let rows = components(&actions);
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn thread_names_come_from_the_title_and_fit_discords_limit() {
        let (message, _) = summary();
        assert_eq!(
            thread_name(&message),
            "checkout production · recent deploys"
        );
        let long = Message::plain("y".repeat(300));
        assert_eq!(thread_name(&long).chars().count(), THREAD_NAME_LIMIT);
    }
}
