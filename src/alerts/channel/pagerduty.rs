//! PagerDuty's Slack app notifications about incidents.
//!
//! The app posts the incident number and title (`#1234 High error rate on checkout`,
//! usually linked to the incident), its state (`Triggered`, `Acknowledged`, `Resolved`, …)
//! and `Service`, `Urgency`, `Priority`, `Assigned` either as attachment fields or as
//! `Name: value` pairs separated by `|` in the text. Acknowledged incidents still fire; the
//! state is kept in the label `pagerduty_status`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::{Found, View};
use crate::core::alert::{Alert, AlertSource, AlertStatus, Severity};

static INCIDENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"#(\d{1,12})\b[\s:\-–]*").expect("incident pattern is valid"));

static STATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(triggered|acknowledged|unacknowledged|resolved|escalated|reassigned)\b")
        .expect("state pattern is valid")
});

static PAIR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(service|urgency|priority|status|assigned to|assigned|assignee)\s*:\s*([^|\n]+?)\s*(?:\||$|\s{3,})",
    )
    .expect("pair pattern is valid")
});

pub(super) fn parse(view: &View<'_>, hint: Option<&AlertSource>) -> Option<Alert> {
    let (headline, number, incident_title) =
        view.headlines().chain(view.lines()).find_map(|line| {
            let captures = INCIDENT.captures(line)?;
            let rest = line[captures.get_match().end()..].trim().to_owned();
            Some((line, captures[1].to_owned(), rest))
        })?;
    let incident_link = view.link_containing("pagerduty.com/incidents");
    let is_pagerduty = hint == Some(&AlertSource::PagerDuty)
        || incident_link.is_some()
        || view.link_containing("pagerduty.com").is_some();
    if !is_pagerduty {
        return None;
    }

    let mut pairs: BTreeMap<String, String> = BTreeMap::new();
    for part in &view.parts {
        for (name, value) in &part.fields {
            let value = value.trim();
            if !value.is_empty() {
                pairs.insert(normalise_key(name), value.to_owned());
            }
        }
    }
    for line in view.lines() {
        for captures in PAIR.captures_iter(line) {
            pairs
                .entry(normalise_key(&captures[1]))
                .or_insert_with(|| captures[2].trim().to_owned());
        }
    }

    let state = pairs
        .get("status")
        .and_then(|s| STATE.captures(s))
        .or_else(|| STATE.captures(headline))
        .or_else(|| view.lines().find_map(|l| STATE.captures(l)))
        .map_or_else(|| "triggered".to_owned(), |c| c[1].to_ascii_lowercase());
    let status = if state == "resolved" {
        AlertStatus::Resolved
    } else {
        AlertStatus::Firing
    };
    let severity = pairs
        .get("priority")
        .map(|p| Severity::parse_lenient(p))
        .filter(|s| *s != Severity::Unknown)
        .or_else(|| pairs.get("urgency").map(|u| Severity::parse_lenient(u)))
        .unwrap_or(Severity::Unknown);

    let title = strip_state_suffix(&incident_title);
    let title = if title.is_empty() {
        format!("PagerDuty incident #{number}")
    } else {
        title.to_owned()
    };

    let mut labels = BTreeMap::new();
    labels.insert("incident_number".to_owned(), number.clone());
    labels.insert("pagerduty_status".to_owned(), state);
    for key in ["service", "urgency", "priority"] {
        if let Some(value) = pairs.get(key) {
            labels.insert(key.to_owned(), value.clone());
        }
    }

    let body = view.body();
    let mut description = vec![title.clone()];
    if let Some(service) = pairs.get("service").filter(|s| !body.contains(s.as_str())) {
        description.push(format!("Service: {service}"));
    }
    description.push(body);

    Some(
        Found {
            source: AlertSource::PagerDuty,
            status,
            severity,
            title,
            description: description.join("\n"),
            labels,
            fingerprint: Alert::derive_fingerprint(
                &AlertSource::PagerDuty,
                &format!("#{number}"),
                &BTreeMap::new(),
            ),
            link: incident_link
                .or_else(|| view.title_link())
                .map(str::to_owned),
        }
        .into_alert(view),
    )
}

fn normalise_key(name: &str) -> String {
    match name.trim().to_ascii_lowercase().as_str() {
        "assigned to" | "assignee" => "assigned".to_owned(),
        other => other.to_owned(),
    }
}

/// Some layouts end the title line with the state (`… — Triggered`); the title is the
/// incident's own.
fn strip_state_suffix(title: &str) -> &str {
    let trimmed = title.trim();
    for separator in [" - ", " — ", " | "] {
        if let Some((head, tail)) = trimmed.rsplit_once(separator)
            && STATE.is_match(tail)
            && tail.split_whitespace().count() == 1
        {
            return head.trim();
        }
    }
    trimmed
}
