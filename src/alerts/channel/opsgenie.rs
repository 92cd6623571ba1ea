//! Opsgenie's Slack notifications about alerts.
//!
//! Each post names the action and the alert's tiny id: `[Opened] #123: High error rate on
//! checkout`, `[Acknowledged] #123: …`, `[Closed] #123: …`, with `Priority` (P1–P5),
//! `Tags`, `Routed Teams`, `Entity` and `Source` as fields or `Name: value` lines. Tags of
//! the form `key:value` become labels; other tags are kept together in `tags`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::{Found, View, tag_pairs};
use crate::core::alert::{Alert, AlertSource, AlertStatus, Severity};

static HEADLINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\[([A-Za-z][A-Za-z ]{0,40})\]\s*#(\d{1,12})\s*:?")
        .expect("opsgenie headline pattern is valid")
});

static PRIORITY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:priority\s*:\s*|\[)(P[1-5])\b").expect("priority pattern is valid")
});

/// The actions Opsgenie announces; with another word in the brackets the post is only
/// taken for Opsgenie's when its author says so.
const ACTIONS: &[&str] = &[
    "opened",
    "created",
    "closed",
    "acknowledged",
    "unacknowledged",
    "escalated",
    "escalated to next",
    "snoozed",
    "assigned",
    "assigned ownership",
    "took ownership",
    "take ownership",
    "added note",
    "added tags",
    "removed tags",
    "added responder",
    "reopened",
    "priority updated",
    "updated priority",
    "deleted",
];

pub(super) fn parse(view: &View<'_>, hint: Option<&AlertSource>) -> Option<Alert> {
    let (captures, message) = view.headlines().find_map(|headline| {
        let captures = HEADLINE.captures(headline)?;
        let message = headline[captures.get_match().end()..].trim();
        Some((captures, message))
    })?;
    let action = captures[1].trim().to_ascii_lowercase();
    if hint != Some(&AlertSource::Opsgenie) && !ACTIONS.contains(&action.as_str()) {
        return None;
    }
    let number = &captures[2];
    let status = if action == "closed" {
        AlertStatus::Resolved
    } else {
        AlertStatus::Firing
    };
    let title = match message {
        "" => format!("Opsgenie alert #{number}"),
        message => message.to_owned(),
    };

    let priority = view
        .field("Priority")
        .map(str::to_owned)
        .or_else(|| {
            std::iter::once(&captures[0])
                .chain(view.lines())
                .find_map(|l| PRIORITY.captures(l).map(|c| c[1].to_owned()))
        })
        .map(|p| p.to_ascii_uppercase());
    let severity = priority
        .as_deref()
        .map_or(Severity::Unknown, Severity::parse_lenient);

    let mut labels = BTreeMap::new();
    labels.insert("alert_number".to_owned(), number.to_owned());
    labels.insert("opsgenie_action".to_owned(), action);
    if let Some(priority) = priority {
        labels.insert("priority".to_owned(), priority);
    }
    for (field, label) in [
        ("Entity", "entity"),
        ("Routed Teams", "teams"),
        ("Teams", "teams"),
        ("Source", "alert_source"),
    ] {
        if let Some(value) = view.field(field) {
            labels
                .entry(label.to_owned())
                .or_insert_with(|| value.to_owned());
        }
    }
    let tag_list = view.field("Tags").map(str::to_owned).or_else(|| {
        view.lines()
            .find_map(|l| l.strip_prefix("Tags:").map(|t| t.trim().to_owned()))
    });
    if let Some(tag_list) = tag_list {
        for (key, value) in tag_pairs(&tag_list) {
            labels
                .entry(key.to_owned())
                .or_insert_with(|| value.to_owned());
        }
        let bare: Vec<&str> = tag_list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty() && !t.contains(':'))
            .collect();
        if !bare.is_empty() {
            labels.insert("tags".to_owned(), bare.join(", "));
        }
    }

    let description = format!("{title}\n{}", view.body());
    Some(
        Found {
            source: AlertSource::Opsgenie,
            status,
            severity,
            title,
            description,
            labels,
            fingerprint: Alert::derive_fingerprint(
                &AlertSource::Opsgenie,
                &format!("#{number}"),
                &BTreeMap::new(),
            ),
            link: view
                .link_containing("opsgenie.com")
                .or_else(|| view.title_link())
                .map(str::to_owned),
        }
        .into_alert(view),
    )
}
