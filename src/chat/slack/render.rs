//! The core's neutral [`Message`] as Block Kit: a header, sections in `mrkdwn` (user data
//! escaped), an actions block whose buttons carry only the encoded
//! [`ButtonAction`](crate::core::message::ButtonAction) and, for rollbacks, a `confirm`
//! dialog naming from → to; the status line as a context block. `text` always carries the
//! plain fallback for notifications and clients that cannot show blocks.

use slack_morphism::prelude::*;

use crate::core::message::{Action, ButtonStyle, Message, RichText, Section, Span};
use crate::text::clip;

/// Block Kit limits (https://docs.slack.dev/reference/block-kit/blocks).
const MAX_HEADER: usize = 150;
const MAX_SECTION_TEXT: usize = 3000;
const MAX_FIELD: usize = 2000;
const MAX_FIELDS: usize = 10;
const MAX_BUTTON_TEXT: usize = 75;
const MAX_CONFIRM_TITLE: usize = 100;
const MAX_CONFIRM_TEXT: usize = 300;
const MAX_ACTIONS: usize = 25;
const MAX_FALLBACK: usize = 40_000;
const MAX_BLOCKS: usize = 50;

/// `action_id`s of link buttons: Slack sends a `block_actions` payload for them too, which
/// is acknowledged and otherwise ignored.
pub(crate) const LINK_ACTION_PREFIX: &str = "link:";

pub(crate) fn render(message: &Message) -> SlackMessageContent {
    let mut blocks: Vec<SlackBlock> = Vec::new();
    if let Some(title) = &message.title {
        blocks.push(SlackHeaderBlock::new(plain_only(&clip(title, MAX_HEADER))).into());
    }
    for section in &message.sections {
        match section {
            Section::Text { text } => blocks.push(markdown_section(&mrkdwn(text))),
            Section::Lines { lines } => {
                for chunk in chunk_lines(lines) {
                    blocks.push(markdown_section(&chunk));
                }
            }
            Section::Fields { fields } => {
                for group in fields.chunks(MAX_FIELDS) {
                    let fields = group
                        .iter()
                        .map(|(label, value)| {
                            markdown(&clip(
                                &format!("*{}*\n{}", escape(label), mrkdwn(value)),
                                MAX_FIELD,
                            ))
                        })
                        .collect();
                    blocks.push(SlackSectionBlock::new().with_fields(fields).into());
                }
            }
            Section::Context { text } => blocks.push(context(text)),
            Section::Divider => blocks.push(SlackDividerBlock::new().into()),
        }
    }
    let elements: Vec<SlackActionBlockElement> = message
        .actions
        .iter()
        .take(MAX_ACTIONS)
        .enumerate()
        .map(|(index, action)| SlackActionBlockElement::Button(button(index, action)))
        .collect();
    let status = message.status.as_ref().map(context);
    // The header, the actions and the status always fit; long bodies lose their tail.
    let reserved = usize::from(!elements.is_empty()) + usize::from(status.is_some());
    blocks.truncate(MAX_BLOCKS - reserved);
    if !elements.is_empty() {
        blocks.push(SlackActionsBlock::new(elements).into());
    }
    blocks.extend(status);
    // The fallback is what notifications show and what Slack parses for mentions and
    // links: it is escaped like every block, or an alert title could ping the channel.
    let mut text = escape(&message.text);
    if let Some(status) = &message.status {
        text = format!("{text}\n{}", mrkdwn(status));
    }
    SlackMessageContent::new()
        .with_text(clip(&text, MAX_FALLBACK))
        .with_blocks(blocks)
}

fn button(index: usize, action: &Action) -> SlackBlockButtonElement {
    match action {
        Action::Button {
            label,
            action,
            style,
            confirm,
        } => {
            let encoded = action.encode();
            let mut button =
                SlackBlockButtonElement::new(plain_only(&clip(label, MAX_BUTTON_TEXT)))
                    .with_action_id(encoded.clone().into())
                    .with_value(encoded);
            button.style = match style {
                ButtonStyle::Default => None,
                ButtonStyle::Primary => Some(SlackBlockButtonStyle::Primary),
                ButtonStyle::Danger => Some(SlackBlockButtonStyle::Danger),
            };
            if let Some(confirm) = confirm {
                let mut dialog = SlackBlockConfirmItem::new(
                    plain_only(&clip(&confirm.title, MAX_CONFIRM_TITLE)),
                    SlackBlockPlainText::new(clip(&confirm.text, MAX_CONFIRM_TEXT)).into(),
                    plain_only(&clip(&confirm.confirm, 30)),
                    plain_only(&clip(&confirm.deny, 30)),
                );
                if *style == ButtonStyle::Danger {
                    dialog = dialog.with_style("danger".to_owned());
                }
                button = button.with_confirm(dialog);
            }
            button
        }
        Action::Link { label, url } => {
            let mut button =
                SlackBlockButtonElement::new(plain_only(&clip(label, MAX_BUTTON_TEXT)))
                    .with_action_id(format!("{LINK_ACTION_PREFIX}{index}").into());
            button.url = url::Url::parse(url).ok();
            button
        }
    }
}

fn plain_only(text: &str) -> SlackBlockPlainTextOnly {
    SlackBlockPlainText::new(text.to_owned()).into()
}

fn markdown(text: &str) -> SlackBlockText {
    SlackBlockMarkDownText::new(text.to_owned()).into()
}

fn markdown_section(text: &str) -> SlackBlock {
    SlackSectionBlock::new()
        .with_text(markdown(&clip(text, MAX_SECTION_TEXT)))
        .into()
}

fn context(text: &RichText) -> SlackBlock {
    SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(
        SlackBlockMarkDownText::new(clip(&mrkdwn(text), MAX_SECTION_TEXT)),
    )])
    .into()
}

/// List lines as bullets, as few sections as the section text limit allows.
fn chunk_lines(lines: &[RichText]) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for line in lines {
        let line = format!("• {}", mrkdwn(line));
        if !current.is_empty() && current.len() + 1 + line.len() > MAX_SECTION_TEXT {
            chunks.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Spans as Slack `mrkdwn`, with user data escaped so it cannot mention, link or format.
pub(crate) fn mrkdwn(text: &RichText) -> String {
    let mut out = String::new();
    for span in &text.0 {
        match span {
            Span::Plain(text) => out.push_str(&escape(text)),
            Span::Bold(text) => {
                let inner = escape(text).replace('*', "");
                if !inner.trim().is_empty() {
                    out.push('*');
                    out.push_str(&inner);
                    out.push('*');
                }
            }
            Span::Code(text) => {
                let inner = escape(text).replace('`', "'");
                if !inner.is_empty() {
                    out.push('`');
                    out.push_str(&inner);
                    out.push('`');
                }
            }
            Span::Link { text, url } => {
                let label = escape(text).replace('|', "¦");
                if url.starts_with("https://") || url.starts_with("http://") {
                    let url = url
                        .replace('<', "%3C")
                        .replace('>', "%3E")
                        .replace('|', "%7C");
                    out.push_str(&format!("<{url}|{label}>"));
                } else {
                    out.push_str(&label);
                }
            }
        }
    }
    out
}

/// Slack's three control characters (https://docs.slack.dev/messaging/formatting-message-text#escaping).
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::core::message::{ButtonAction, ButtonKind, Confirmation};
    use crate::core::rollback::PlanId;

    fn json(message: &Message) -> Value {
        serde_json::to_value(render(message)).expect("serializes")
    }

    fn rollback_message() -> (Message, ButtonAction) {
        let action = ButtonAction::new(ButtonKind::Rollback, PlanId::generate());
        let message = Message {
            text: "HighErrorRate: checkout production — suspect v42".into(),
            title: Some("checkout · production".into()),
            sections: vec![Section::Lines {
                lines: vec![RichText::new().bold("v42").plain(" by <@U1> 18 min before")],
            }],
            actions: vec![
                Action::Button {
                    label: "Roll back checkout production to v41".into(),
                    action: action.clone(),
                    style: ButtonStyle::Danger,
                    confirm: Some(Confirmation {
                        title: "Roll back?".into(),
                        text: "Roll back checkout production from v42 to v41?".into(),
                        confirm: "Roll back".into(),
                        deny: "Cancel".into(),
                    }),
                },
                Action::Link {
                    label: "View suspect deploy".into(),
                    url: "https://ci.example/42".into(),
                },
            ],
            ..Message::default()
        };
        (message, action)
    }

    #[test]
    fn a_rollback_button_carries_only_the_encoded_action_and_a_danger_confirm_dialog() {
        let (message, action) = rollback_message();
        let rendered = json(&message);
        let actions = rendered["blocks"]
            .as_array()
            .and_then(|blocks| blocks.iter().find(|b| b["type"] == "actions"))
            .expect("an actions block");
        let button = &actions["elements"][0];
        assert_eq!(button["type"], "button");
        assert_eq!(button["action_id"], action.encode());
        assert_eq!(button["value"], action.encode());
        assert_eq!(button["style"], "danger");
        assert_eq!(button["confirm"]["style"], "danger");
        assert_eq!(
            button["confirm"]["text"]["text"],
            "Roll back checkout production from v42 to v41?"
        );
        let link = &actions["elements"][1];
        assert_eq!(link["url"], "https://ci.example/42");
        assert!(
            link["action_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(LINK_ACTION_PREFIX))
        );
    }

    #[test]
    fn the_plain_fallback_is_always_there() {
        let (message, _) = rollback_message();
        let rendered = json(&message);
        assert_eq!(
            rendered["text"],
            "HighErrorRate: checkout production — suspect v42"
        );
        assert_eq!(rendered["blocks"][0]["type"], "header");
    }

    #[test]
    fn user_data_cannot_mention_or_link() {
        let text = RichText::new()
            .plain("<!channel> & <https://evil.example|click>")
            .bold("*x*");
        assert_eq!(
            mrkdwn(&text),
            "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;*x*"
        );
    }

    #[test]
    fn the_fallback_text_cannot_mention_or_link() {
        let message = Message {
            text: "LedgerDown <!channel> <@U0123ABCD> <http://evil.example|click me> & co".into(),
            status: Some(RichText::new().plain("by <!here>")),
            ..Message::default()
        };
        let rendered = json(&message);
        assert_eq!(
            rendered["text"],
            "LedgerDown &lt;!channel&gt; &lt;@U0123ABCD&gt; &lt;http://evil.example|click me&gt; &amp; co\nby &lt;!here&gt;"
        );
    }

    #[test]
    fn links_become_slack_links_only_for_web_urls() {
        let text = RichText::new()
            .link("deploy | 42", "https://ci.example/42")
            .plain(" ")
            .link("odd", "javascript:alert(1)");
        assert_eq!(mrkdwn(&text), "<https://ci.example/42|deploy ¦ 42> odd");
    }

    #[test]
    fn the_status_line_is_the_last_block_and_part_of_the_fallback() {
        let message = Message {
            text: "summary".into(),
            status: Some(RichText::new().plain("✅ Rolled back by Alice in 12 s")),
            ..Message::default()
        };
        let rendered = json(&message);
        let blocks = rendered["blocks"].as_array().expect("blocks");
        let last = blocks.last().expect("a block");
        assert_eq!(last["type"], "context");
        assert_eq!(
            last["elements"][0]["text"],
            "✅ Rolled back by Alice in 12 s"
        );
        assert_eq!(rendered["text"], "summary\n✅ Rolled back by Alice in 12 s");
    }

    #[test]
    fn long_lists_are_split_within_the_section_limit() {
        let lines: Vec<RichText> = (0..200)
            .map(|i| RichText::new().plain(format!("deploy {i} {}", "x".repeat(40))))
            .collect();
        let chunks = chunk_lines(&lines);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.len() <= MAX_SECTION_TEXT));
    }
}
