//! Alerts read from messages in alert channels: the notifications Alertmanager, Grafana,
//! Datadog, PagerDuty, Opsgenie and Sentry post to Slack or Discord, and plain text from
//! people.
//!
//! The adapters hand over a platform-neutral [`ChannelMessage`] (Slack text, legacy
//! attachments and flattened blocks; Discord content and embeds as attachments). Each
//! format parser looks for the shape its tool's default template produces and gives up
//! (returns `None`) otherwise, so the order below only matters for ties:
//!
//! 1. An author name naming a tool (`Alertmanager`, `Grafana`, `Datadog`, …) puts that
//!    tool's parser first.
//! 2. A message from a person (not a bot, no tool's name) is a person's report, whatever
//!    it quotes: [`AlertSource::Person`], firing, severity unknown.
//! 3. Other bot messages go through every format parser; one that matches none is still
//!    an alert (alert channels are for alerts, and custom templates are common): its source
//!    is the tool its author name names, or [`AlertSource::Person`] with the label
//!    `posted_by_bot = "true"` when the name names none, so the core can tell it apart.
//!
//! `started_at` is the message's `posted_at` (the default chat templates do not print the
//! alert's start), and a resolved notification's `ended_at` is its `posted_at`.
//!
//! The parser does not know breakwater's own identity: leaving the bot's own posts out is
//! the adapters' job.

mod datadog;
mod opsgenie;
mod pagerduty;
mod prometheus;
mod sentry;
#[cfg(test)]
mod tests;

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex::Regex;

use super::markup::{is_web_link, links, plain};
use crate::core::alert::{Alert, AlertSource, AlertStatus, Severity};
use crate::core::event::{Attachment, ChannelMessage};
use crate::text::{clip, clip_owned};

/// Person titles are the first line, cut to this many characters.
const MAX_PERSON_TITLE: usize = 120;
/// Tool titles are cut to this many characters; descriptions to the second.
const MAX_TITLE: usize = 200;
const MAX_DESCRIPTION: usize = 4000;

/// Reads an alert from a channel message, or `None` when the message holds no text at all.
///
/// Every non-empty message yields an alert (see the module documentation for how the source
/// is chosen); the bot drops the ones whose service it does not recognise. `service` and
/// `environment` are left to [`Recognizer`](crate::core::alert::Recognizer), which finds
/// them in `labels`, `title` and `description`.
pub fn parse_channel_message(message: &ChannelMessage) -> Option<Alert> {
    let view = View::new(message);
    if view.is_empty() {
        return None;
    }
    let hint = source_from_author(message.author.name.as_deref());
    if hint.is_none() && !message.author.is_bot {
        return Some(person(&view));
    }
    let hinted = |(sources, _): &&Parser| hint.as_ref().is_some_and(|h| sources.contains(h));
    PARSERS
        .iter()
        .filter(hinted)
        .chain(PARSERS.iter().filter(|p| !hinted(p)))
        .find_map(|(_, parse)| parse(&view, hint.as_ref()))
        .or_else(|| Some(unrecognised(&view, hint)))
}

type Parser = (
    &'static [AlertSource],
    fn(&View<'_>, Option<&AlertSource>) -> Option<Alert>,
);

/// Format parsers in the order they are tried when the author names no tool. Opsgenie's
/// `[Opened] #123:` and the `[FIRING:n]` subject are the most distinctive.
const PARSERS: [Parser; 5] = [
    (
        &[AlertSource::Alertmanager, AlertSource::Grafana],
        prometheus::parse,
    ),
    (&[AlertSource::Opsgenie], opsgenie::parse),
    (&[AlertSource::Datadog], datadog::parse),
    (&[AlertSource::PagerDuty], pagerduty::parse),
    (&[AlertSource::Sentry], sentry::parse),
];

/// The tool an author's display name names: integrations post as `Alertmanager`,
/// `Grafana`, `Datadog`, `PagerDuty`, `Opsgenie`, `Sentry` unless reconfigured.
fn source_from_author(name: Option<&str>) -> Option<AlertSource> {
    let name = name?.to_lowercase();
    [
        ("alertmanager", AlertSource::Alertmanager),
        ("prometheus", AlertSource::Alertmanager),
        ("grafana", AlertSource::Grafana),
        ("datadog", AlertSource::Datadog),
        ("pagerduty", AlertSource::PagerDuty),
        ("opsgenie", AlertSource::Opsgenie),
        ("sentry", AlertSource::Sentry),
    ]
    .into_iter()
    .find(|(word, _)| name.contains(word))
    .map(|(_, source)| source)
}

/// A message with its markup removed, as the format parsers read it.
pub(super) struct View<'a> {
    message: &'a ChannelMessage,
    /// The message text, plain.
    pub(super) text: String,
    pub(super) parts: Vec<Part<'a>>,
    /// Every web link in the message, found on first use (see [`View::links`]).
    links: OnceCell<Vec<String>>,
}

/// An attachment or embed, plain.
pub(super) struct Part<'a> {
    pub(super) raw: &'a Attachment,
    pub(super) title: String,
    pub(super) pretext: String,
    pub(super) text: String,
    pub(super) fallback: String,
    pub(super) footer: String,
    pub(super) fields: Vec<(String, String)>,
}

impl<'a> View<'a> {
    fn new(message: &'a ChannelMessage) -> Self {
        let plain_opt = |text: &Option<String>| text.as_deref().map(plain).unwrap_or_default();
        let parts: Vec<Part<'a>> = message
            .attachments
            .iter()
            .map(|raw| Part {
                raw,
                title: plain_opt(&raw.title).trim().to_owned(),
                pretext: plain_opt(&raw.pretext),
                text: plain_opt(&raw.text),
                // Only the fallback's first line is ever read (see `headlines`).
                fallback: raw
                    .fallback
                    .as_deref()
                    .map(|f| plain(first_line(f)))
                    .unwrap_or_default(),
                footer: plain_opt(&raw.footer),
                fields: raw
                    .fields
                    .iter()
                    .map(|(name, value)| (plain(name).trim().to_owned(), plain(value)))
                    .collect(),
            })
            .collect();
        Self {
            message,
            text: plain(&message.text),
            parts,
            links: OnceCell::new(),
        }
    }

    /// Every web link in the message: attachment title links first, then links in the
    /// texts. Found on first use; the Alertmanager, Grafana and person paths never ask.
    pub(super) fn links(&self) -> &[String] {
        self.links.get_or_init(|| {
            let mut found: Vec<String> = Vec::new();
            let mut add = |link: &str| {
                if !found.iter().any(|l| l == link) && is_web_link(link) {
                    found.push(link.to_owned());
                }
            };
            for attachment in &self.message.attachments {
                if let Some(link) = &attachment.title_link {
                    add(link.trim());
                }
            }
            let raw_texts = std::iter::once(self.message.text.as_str()).chain(
                self.message.attachments.iter().flat_map(|a| {
                    [&a.title, &a.pretext, &a.text, &a.footer]
                        .into_iter()
                        .flatten()
                        .map(String::as_str)
                        .chain(a.fields.iter().map(|(_, value)| value.as_str()))
                }),
            );
            for text in raw_texts {
                for link in links(text) {
                    add(link);
                }
            }
            found
        })
    }

    fn is_empty(&self) -> bool {
        self.text.trim().is_empty()
            && self.parts.iter().all(|p| {
                p.title.is_empty()
                    && p.pretext.trim().is_empty()
                    && p.text.trim().is_empty()
                    && p.fallback.trim().is_empty()
                    && p.fields.is_empty()
            })
    }

    /// The message text as the platform gave it, markup and all.
    pub(super) fn message_text(&self) -> &str {
        &self.message.text
    }

    pub(super) fn posted_at(&self) -> DateTime<Utc> {
        self.message.posted_at
    }

    /// Candidate headlines, most telling first: attachment titles, the first line of the
    /// message text, then attachment pretexts and fallbacks (Alertmanager's fallback is
    /// `title | link`, so the link is cut off).
    pub(super) fn headlines(&self) -> impl Iterator<Item = &str> {
        let titles = self.parts.iter().map(|p| p.title.as_str());
        let text = std::iter::once(first_line(&self.text));
        let others = self.parts.iter().flat_map(|p| {
            let fallback = first_line(&p.fallback);
            let fallback = fallback
                .split_once(" | http")
                .map_or(fallback, |(title, _)| title.trim());
            [first_line(&p.pretext), fallback]
        });
        titles.chain(text).chain(others).filter(|h| !h.is_empty())
    }

    /// The body texts, without titles: message text, then each attachment's pretext and text.
    pub(super) fn texts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.text.as_str())
            .chain(
                self.parts
                    .iter()
                    .flat_map(|p| [p.pretext.as_str(), p.text.as_str()]),
            )
            .filter(|t| !t.trim().is_empty())
    }

    /// Every line of the body texts and of the fields (as `name: value`).
    pub(super) fn lines(&self) -> impl Iterator<Item = &str> {
        self.texts()
            .flat_map(str::lines)
            .map(str::trim)
            .filter(|l| !l.is_empty())
    }

    /// The body as one text: texts, fields as `name: value` lines, footers.
    pub(super) fn body(&self) -> String {
        let mut lines: Vec<String> = self.texts().map(|t| t.trim().to_owned()).collect();
        for part in &self.parts {
            for (name, value) in &part.fields {
                lines.push(format!("{name}: {}", value.trim()));
            }
            if !part.footer.trim().is_empty() {
                lines.push(part.footer.trim().to_owned());
            }
        }
        lines.join("\n")
    }

    /// An attachment field's value by name, case-insensitively.
    pub(super) fn field(&self, name: &str) -> Option<&str> {
        self.parts
            .iter()
            .flat_map(|p| &p.fields)
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The first link whose text contains `needle`.
    pub(super) fn link_containing(&self, needle: &str) -> Option<&str> {
        self.links()
            .iter()
            .find(|l| l.contains(needle))
            .map(String::as_str)
    }

    /// The first attachment title link.
    pub(super) fn title_link(&self) -> Option<&str> {
        self.parts
            .iter()
            .filter_map(|p| p.raw.title_link.as_deref())
            .map(str::trim)
            .find(|l| is_web_link(l))
    }

    pub(super) fn footers(&self) -> impl Iterator<Item = &str> {
        self.parts
            .iter()
            .map(|p| p.footer.trim())
            .filter(|f| !f.is_empty())
    }
}

/// What a format parser found; [`Found::into_alert`] adds the times.
pub(super) struct Found {
    pub(super) source: AlertSource,
    pub(super) status: AlertStatus,
    pub(super) severity: Severity,
    pub(super) title: String,
    pub(super) description: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) fingerprint: String,
    pub(super) link: Option<String>,
}

impl Found {
    pub(super) fn into_alert(self, view: &View<'_>) -> Alert {
        let posted_at = view.posted_at();
        let title = clip_owned(collapse_spaces(&self.title), MAX_TITLE);
        Alert {
            source: self.source,
            service: None,
            environment: None,
            severity: self.severity,
            status: self.status,
            title,
            description: clip_owned(tidy_lines(&self.description), MAX_DESCRIPTION),
            started_at: posted_at,
            ended_at: (self.status == AlertStatus::Resolved).then_some(posted_at),
            labels: self.labels,
            fingerprint: self.fingerprint,
            link: self.link,
        }
    }
}

/// A person's message: the first line is the title, the whole text the description.
fn person(view: &View<'_>) -> Alert {
    let text = if view.text.trim().is_empty() {
        view.body()
    } else {
        view.text.clone()
    };
    let title = clip(first_line(&text), MAX_PERSON_TITLE);
    let mut labels = BTreeMap::new();
    if let Some(name) = author_name(view) {
        labels.insert("reported_by".to_owned(), name.to_owned());
    }
    let fingerprint = Alert::derive_fingerprint(&AlertSource::Person, &text, &BTreeMap::new());
    Found {
        source: AlertSource::Person,
        status: AlertStatus::Firing,
        severity: Severity::Unknown,
        title,
        description: text,
        labels,
        fingerprint,
        link: None,
    }
    .into_alert(view)
}

static RESOLVED_HEADLINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\W*(resolved|recovered|closed|ok)\b").expect("resolved pattern is valid")
});

/// A bot message in no known format: the headline is the title, and a headline starting
/// with `Resolved`/`Recovered`/`OK` marks a resolution.
fn unrecognised(view: &View<'_>, hint: Option<AlertSource>) -> Alert {
    let headline = view.headlines().next().unwrap_or_default();
    let title = if headline.is_empty() {
        "alert".to_owned()
    } else {
        headline.to_owned()
    };
    let mut labels = BTreeMap::new();
    if let Some(name) = author_name(view) {
        labels.insert("reported_by".to_owned(), name.to_owned());
    }
    let source = hint.unwrap_or_else(|| {
        labels.insert("posted_by_bot".to_owned(), "true".to_owned());
        AlertSource::Person
    });
    let status = if RESOLVED_HEADLINE.is_match(&title) {
        AlertStatus::Resolved
    } else {
        AlertStatus::Firing
    };
    let severity = title
        .split(|c: char| !c.is_alphanumeric())
        .find_map(severity_word)
        .unwrap_or(Severity::Unknown);
    let body = view.body();
    let description = if body.contains(title.as_str()) {
        body
    } else {
        format!("{title}\n{body}")
    };
    let fingerprint = Alert::derive_fingerprint(&source, &title, &BTreeMap::new());
    Found {
        source,
        status,
        severity,
        title,
        description,
        labels,
        fingerprint,
        link: view.links().first().cloned(),
    }
    .into_alert(view)
}

fn author_name<'a>(view: &View<'a>) -> Option<&'a str> {
    view.message
        .author
        .name
        .as_deref()
        .map(str::trim)
        .filter(|name| !name.is_empty())
}

/// The first non-empty line, trimmed.
pub(super) fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
}

/// A word that unambiguously names a severity in free text (`critical`, `warning`, `P1`);
/// words such as `high` or `ok` mean too many other things there.
pub(super) fn severity_word(word: &str) -> Option<Severity> {
    const WORDS: &[&str] = &[
        "critical",
        "crit",
        "fatal",
        "emergency",
        "error",
        "warning",
        "warn",
        "info",
        "p1",
        "p2",
        "p3",
        "p4",
        "p5",
        "sev1",
        "sev2",
        "sev3",
        "sev4",
        "sev5",
    ];
    let lower = word.to_ascii_lowercase();
    WORDS
        .contains(&lower.as_str())
        .then(|| Severity::parse_lenient(&lower))
}

/// `key:value` tags in a list separated by commas or spaces (`env:production, service:checkout`).
pub(super) fn tag_pairs(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter_map(|token| {
            let token =
                token.trim_matches(|c: char| matches!(c, '{' | '}' | '[' | ']' | '(' | ')'));
            let (key, value) = token.split_once(':')?;
            let key_ok = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))
                && !key.eq_ignore_ascii_case("http")
                && !key.eq_ignore_ascii_case("https");
            (key_ok && !value.is_empty()).then_some((key, value))
        })
}

fn collapse_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_words(&mut out, text);
    out
}

fn push_words(out: &mut String, text: &str) {
    let mut push = |index: usize, word: &str| {
        if index > 0 {
            out.push(' ');
        }
        out.push_str(word);
    };
    if text.is_ascii() {
        text.split_ascii_whitespace()
            .enumerate()
            .for_each(|(i, w)| push(i, w));
    } else {
        text.split_whitespace()
            .enumerate()
            .for_each(|(i, w)| push(i, w));
    }
}

/// Text with each line's spaces collapsed (markup removal leaves gaps) and at most one
/// blank line in a row.
pub(super) fn tidy_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_before = false;
    for line in text.lines() {
        if line.trim().is_empty() {
            blank_before = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_before { "\n\n" } else { "\n" });
        }
        blank_before = false;
        push_words(&mut out, line);
    }
    out
}
