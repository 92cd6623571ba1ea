//! HTML for the console, written by hand with one rule: every piece of text that did not
//! come from this file goes through [`escape`] (or [`Html::text`]), and only `http(s)`
//! URLs become links. Neutral messages are rendered here as `<article>`s with their
//! buttons as small POST forms, so that the channel works without JavaScript.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::core::message::{Action, ButtonStyle, RichText, Section, Span, Tone};
use crate::store::ConsoleMessage;

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    push_escaped(&mut out, text);
    out
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A URL safe to put in `href`: absolute `http` or `https` only (no `javascript:`, no
/// `data:`), re-serialised by the URL parser.
pub(crate) fn safe_url(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.to_string())
}

/// An HTML buffer: `raw` for markup written in this crate, `text` for everything else.
#[derive(Default)]
pub(crate) struct Html(String);

impl Html {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn raw(&mut self, markup: &str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    pub(crate) fn text(&mut self, text: &str) -> &mut Self {
        push_escaped(&mut self.0, text);
        self
    }

    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

/// A UTC time as people on call read it, inside a machine-readable `<time>`.
pub(crate) fn time(html: &mut Html, at: DateTime<Utc>) {
    html.raw("<time datetime=\"")
        .text(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .raw("\">")
        .text(&at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .raw("</time>");
}

fn rich(html: &mut Html, text: &RichText) {
    for span in &text.0 {
        match span {
            Span::Plain(text) => {
                html.text(text);
            }
            Span::Bold(text) => {
                html.raw("<strong>").text(text).raw("</strong>");
            }
            Span::Code(text) => {
                html.raw("<code>").text(text).raw("</code>");
            }
            Span::Link { text, url } => match safe_url(url) {
                Some(url) => {
                    html.raw("<a href=\"")
                        .text(&url)
                        .raw("\" rel=\"noopener noreferrer\">")
                        .text(text)
                        .raw("</a>");
                }
                None => {
                    html.text(text);
                }
            },
        }
    }
}

fn tone_class(tone: Tone) -> &'static str {
    match tone {
        Tone::Neutral => "neutral",
        Tone::Info => "info",
        Tone::Warning => "warning",
        Tone::Danger => "danger",
        Tone::Success => "success",
    }
}

fn tone_label(tone: Tone) -> Option<&'static str> {
    match tone {
        Tone::Neutral | Tone::Info => None,
        Tone::Warning => Some("Warning"),
        Tone::Danger => Some("Problem"),
        Tone::Success => Some("Resolved"),
    }
}

/// What a rendering of a message needs to know about the person viewing it.
pub(crate) struct Viewing<'a> {
    pub(crate) csrf: &'a str,
    /// A fresh random value per rendering: a double-submitted form carries the same one,
    /// and the core's event claim turns it into one press.
    pub(crate) nonce: &'a dyn Fn() -> String,
}

/// One message as an `<article>`: title, sections, buttons (as forms), status line.
pub(crate) fn article(html: &mut Html, stored: &ConsoleMessage, viewing: &Viewing<'_>) {
    let message = &stored.message;
    let id = stored.id;
    let _ = write!(
        html.0,
        "<article class=\"msg tone-{}{}\" id=\"m-{id}\" data-id=\"{id}\" data-thread=\"{}\" data-rev=\"{}\" aria-labelledby=\"m-{id}-h\">",
        tone_class(message.tone),
        if stored.audience.is_some() {
            " private"
        } else {
            ""
        },
        stored.thread.map(|t| t.to_string()).unwrap_or_default(),
        stored.revision,
    );
    let _ = write!(html.0, "<header><h2 id=\"m-{id}-h\">");
    if let Some(label) = tone_label(message.tone) {
        html.raw("<span class=\"visually-hidden\">")
            .text(label)
            .raw(": </span>");
    }
    match &message.title {
        Some(title) => html.text(title),
        None => html.text(first_line(&message.text)),
    };
    html.raw("</h2> ");
    time(html, stored.created_at);
    if stored.audience.is_some() {
        html.raw(" <span class=\"badge\">Only you can see this</span>");
    }
    html.raw("</header>");
    let title_repeats_text = message.title.is_none();
    for (i, section) in message.sections.iter().enumerate() {
        match section {
            Section::Text { text } => {
                // Without a title the first paragraph already is the heading.
                if !(title_repeats_text && i == 0 && text.to_string() == first_line(&message.text))
                {
                    html.raw("<p>");
                    rich(html, text);
                    html.raw("</p>");
                }
            }
            Section::Lines { lines } => {
                html.raw("<ul>");
                for line in lines {
                    html.raw("<li>");
                    rich(html, line);
                    html.raw("</li>");
                }
                html.raw("</ul>");
            }
            Section::Fields { fields } => {
                html.raw("<dl class=\"fields\">");
                for (label, value) in fields {
                    html.raw("<div><dt>").text(label).raw("</dt><dd>");
                    rich(html, value);
                    html.raw("</dd></div>");
                }
                html.raw("</dl>");
            }
            Section::Context { text } => {
                html.raw("<p class=\"context\">");
                rich(html, text);
                html.raw("</p>");
            }
            Section::Divider => {
                html.raw("<hr>");
            }
        }
    }
    if message.sections.is_empty() && message.title.is_some() {
        html.raw("<p>").text(&message.text).raw("</p>");
    }
    if !message.actions.is_empty() {
        html.raw("<div class=\"actions\">");
        for action in &message.actions {
            action_html(html, id, action, viewing);
        }
        html.raw("</div>");
    }
    if let Some(status) = &message.status {
        html.raw("<p class=\"status\" role=\"status\">");
        rich(html, status);
        html.raw("</p>");
    }
    html.raw("</article>");
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

fn action_html(html: &mut Html, message_id: i64, action: &Action, viewing: &Viewing<'_>) {
    match action {
        Action::Button {
            label,
            action,
            style,
            ..
        } => {
            let class = match style {
                ButtonStyle::Default => "btn",
                ButtonStyle::Primary => "btn primary",
                ButtonStyle::Danger => "btn danger",
            };
            let _ = write!(
                html.0,
                "<form method=\"post\" action=\"/console/press\" class=\"press\">\
                 <input type=\"hidden\" name=\"message\" value=\"{message_id}\">"
            );
            html.raw("<input type=\"hidden\" name=\"csrf\" value=\"")
                .text(viewing.csrf)
                .raw("\"><input type=\"hidden\" name=\"action\" value=\"")
                .text(&action.encode())
                .raw("\"><input type=\"hidden\" name=\"nonce\" value=\"")
                .text(&(viewing.nonce)())
                .raw("\"><button type=\"submit\" class=\"")
                .raw(class)
                .raw("\">")
                .text(label)
                .raw("</button></form>");
        }
        Action::Link { label, url } => {
            if let Some(url) = safe_url(url) {
                html.raw("<a class=\"btn link\" href=\"")
                    .text(&url)
                    .raw("\" rel=\"noopener noreferrer\">")
                    .text(label)
                    .raw("</a>");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::message::{ButtonAction, ButtonKind, Message};
    use crate::core::rollback::PlanId;

    fn stored(message: Message) -> ConsoleMessage {
        ConsoleMessage {
            id: 7,
            channel: "alerts".into(),
            thread: Some(3),
            audience: None,
            message,
            created_at: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
            updated_at: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
            revision: 2,
        }
    }

    fn render(message: Message) -> String {
        let nonce = || "n0nce".to_owned();
        let mut html = Html::new();
        article(
            &mut html,
            &stored(message),
            &Viewing {
                csrf: "tok\"en",
                nonce: &nonce,
            },
        );
        html.into_string()
    }

    #[test]
    fn escaping_covers_markup_and_both_quote_kinds() {
        assert_eq!(
            escape(r#"<script>alert('x') & "y"</script>"#),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(escape("v1.4.2 → v1.4.1"), "v1.4.2 → v1.4.1");
    }

    #[test]
    fn message_text_from_alerts_is_escaped_everywhere() {
        let mut message = Message::plain("<img src=x onerror=alert(1)>");
        message.title = Some("<b>HighErrorRate</b>".into());
        message.sections.push(Section::Fields {
            fields: vec![("<i>".into(), RichText::new().code("</code><script>"))],
        });
        message.actions.push(Action::Button {
            label: "<u>Roll back</u>".into(),
            action: ButtonAction::new(ButtonKind::Rollback, PlanId::generate()),
            style: ButtonStyle::Danger,
            confirm: None,
        });
        let out = render(message);
        assert!(!out.contains("<img"), "{out}");
        assert!(!out.contains("<b>"), "{out}");
        assert!(!out.contains("<script>"), "{out}");
        assert!(out.contains("&lt;b&gt;HighErrorRate&lt;/b&gt;"), "{out}");
        assert!(out.contains("value=\"tok&quot;en\""), "{out}");
        assert!(
            out.contains("&lt;u&gt;Roll back&lt;/u&gt;</button>"),
            "{out}"
        );
    }

    #[test]
    fn only_http_links_become_anchors() {
        let mut message = Message::plain("links");
        message.sections.push(Section::Text {
            text: RichText::new()
                .link("bad", "javascript:alert(1)")
                .link("good", "https://ci.example.com/run/1?a=1&b=2"),
        });
        let out = render(message);
        assert!(!out.contains("javascript:"), "{out}");
        assert!(
            out.contains("href=\"https://ci.example.com/run/1?a=1&amp;b=2\""),
            "{out}"
        );
    }

    #[test]
    fn buttons_are_forms_carrying_only_the_encoded_action() {
        let action = ButtonAction::new(ButtonKind::Rollback, PlanId::generate());
        let mut message = Message::plain("summary");
        message.actions.push(Action::Button {
            label: "Roll back checkout production to v41".into(),
            action: action.clone(),
            style: ButtonStyle::Danger,
            confirm: None,
        });
        let out = render(message);
        assert!(out.contains("action=\"/console/press\""), "{out}");
        assert!(
            out.contains(&format!("name=\"action\" value=\"{}\"", action.encode())),
            "{out}"
        );
        assert!(out.contains("name=\"message\" value=\"7\""), "{out}");
        assert!(out.contains("name=\"nonce\" value=\"n0nce\""), "{out}");
        assert!(out.contains("class=\"btn danger\""), "{out}");
    }

    #[test]
    fn an_article_carries_its_thread_and_revision_for_live_updates() {
        let out = render(Message::plain("hello").with_tone(Tone::Danger));
        assert!(
            out.starts_with("<article class=\"msg tone-danger\" id=\"m-7\" data-id=\"7\" data-thread=\"3\" data-rev=\"2\""),
            "{out}"
        );
        assert!(out.contains("Problem: </span>hello"), "{out}");
    }
}
