//! Sentry's Slack alerts.
//!
//! Issue alerts post the issue title linked to the issue (`…/issues/4567890123/?referrer=…`),
//! the culprit (`src/cart/total.ts in computeTotal`), tags such as `environment`, `level` and
//! `release` (as fields or `name: value` text) and the short id in the footer
//! (`CHECKOUT-WEB-3F via …`), whose prefix is the project. Metric alerts post
//! `Critical: <rule name>`, `Warning: …` and `Resolved: …`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::{Found, View};
use crate::core::alert::{Alert, AlertSource, AlertStatus, Severity};

static METRIC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(Critical|Warning|Resolved)\s*:").expect("metric alert pattern is valid")
});

static ISSUE_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"/issues/(\d+)").expect("issue id pattern is valid"));

static SHORT_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Z][A-Z0-9_]*(?:-[A-Z0-9_]+)*)-([0-9A-Z]{1,10})\b")
        .expect("short id pattern is valid")
});

static TAG_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(environment|level|release|server_name|transaction|handled|runtime|browser|os|mechanism|state)\s*:\s*([^\s,|]+)",
    )
    .expect("tag pattern is valid")
});

pub(super) fn parse(view: &View<'_>, hint: Option<&AlertSource>) -> Option<Alert> {
    let sentry_link = view.link_containing("sentry.io");
    if hint != Some(&AlertSource::Sentry) && sentry_link.is_none() {
        return None;
    }
    let headline = view.headlines().next()?;

    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for part in &view.parts {
        for (name, value) in &part.fields {
            let (key, value) = (name.trim(), value.trim());
            if is_tag_key(key) && !value.is_empty() {
                labels.insert(key.to_owned(), value.to_owned());
            }
        }
    }
    for line in view.lines() {
        for captures in TAG_TEXT.captures_iter(line) {
            labels
                .entry(captures[1].to_ascii_lowercase())
                .or_insert_with(|| captures[2].to_owned());
        }
    }
    let issue_link = view.link_containing("/issues/");
    if let Some(id) = issue_link.and_then(|l| ISSUE_ID.captures(l)) {
        labels.insert("issue_id".to_owned(), id[1].to_owned());
    }
    let short_id = view
        .footers()
        .find_map(|f| SHORT_ID.captures(f))
        .map(|c| (c[0].to_owned(), c[1].to_ascii_lowercase()));
    let project = short_id
        .as_ref()
        .map(|(_, project)| project.clone())
        .or_else(|| {
            labels
                .get("release")
                .and_then(|r| r.split_once('@'))
                .map(|(project, _)| project.to_owned())
        });
    if let Some((short_id, _)) = &short_id {
        labels.insert("short_id".to_owned(), short_id.clone());
    }
    if let Some(project) = &project {
        labels.insert("project".to_owned(), project.clone());
    }

    let metric = METRIC.captures(headline).and_then(|c| {
        let rest = headline[c.get_match().end()..].trim();
        (!rest.is_empty()).then_some((c, rest))
    });
    let (title, mut status, metric_severity) = match metric {
        Some((c, rest)) => {
            let kind = c[1].to_ascii_lowercase();
            let status = if kind == "resolved" {
                AlertStatus::Resolved
            } else {
                AlertStatus::Firing
            };
            let severity = (kind != "resolved").then(|| Severity::parse_lenient(&kind));
            (rest.to_owned(), status, severity)
        }
        None => (headline.to_owned(), AlertStatus::Firing, None),
    };
    if labels
        .get("state")
        .is_some_and(|s| s.eq_ignore_ascii_case("resolved"))
    {
        status = AlertStatus::Resolved;
    }
    let severity = metric_severity
        .or_else(|| {
            labels
                .get("level")
                .map(|level| match level.to_ascii_lowercase().as_str() {
                    "fatal" => Severity::Critical,
                    other => Severity::parse_lenient(other),
                })
        })
        .unwrap_or(Severity::Unknown);

    let identity: BTreeMap<String, String> = project
        .iter()
        .map(|p| ("project".to_owned(), p.clone()))
        .collect();
    let fingerprint_name = labels
        .get("issue_id")
        .cloned()
        .unwrap_or_else(|| title.clone());
    let fingerprint = Alert::derive_fingerprint(&AlertSource::Sentry, &fingerprint_name, &identity);

    let mut description = vec![title.clone()];
    if let Some(project) = &project {
        description.push(format!("Project: {project}"));
    }
    description.push(view.body());

    Some(
        Found {
            source: AlertSource::Sentry,
            status,
            severity,
            title,
            description: description.join("\n"),
            labels,
            fingerprint,
            link: issue_link
                .or(sentry_link)
                .or_else(|| view.title_link())
                .map(str::to_owned),
        }
        .into_alert(view),
    )
}

/// Sentry tag keys are short lower-case identifiers (`environment`, `server_name`,
/// `browser.name`); other field names (`Events`, `First Seen`) are not tags.
fn is_tag_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 32
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.'))
}
