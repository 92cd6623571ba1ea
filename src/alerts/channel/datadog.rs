//! Datadog monitor notifications in Slack.
//!
//! The title carries the transition and, for multi-alert monitors, the triggering scope:
//! `Triggered: [P1] High error rate on checkout`, `Recovered: …`,
//! `[Triggered on {env:production,service:checkout}] High error rate on checkout`, with the
//! priority as `[P1]` before or after. The scope and any `Tags:` list become labels; the
//! monitor's link gives its id, which with the scope identifies the alert across trigger and
//! recovery.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::{Found, View, first_line, tag_pairs};
use crate::core::alert::{Alert, AlertSource, AlertStatus, Severity};

static TITLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:\[(P[1-5])\]\s*)?\[?(Re-Triggered|Triggered|Recovered|Re-Warn|Warn|Re-No Data|No Data|Renotify|Resolved)(?:\s+on\s+\{([^}]*)\})?(?:\]\s*:?|:)\s*(?:\[(P[1-5])\]\s*)?",
    )
    .expect("datadog title pattern is valid")
});

static MONITOR_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"/monitors/(\d+)").expect("monitor id pattern is valid"));

/// Tag keys trusted when they appear in the free text of the message rather than in the
/// scope or a `Tags:` list.
const TEXT_TAG_KEYS: &[&str] = &[
    "service",
    "env",
    "environment",
    "team",
    "app",
    "cluster",
    "kube_namespace",
    "kube_cluster_name",
    "kube_deployment",
    "region",
    "version",
];

pub(super) fn parse(view: &View<'_>, hint: Option<&AlertSource>) -> Option<Alert> {
    let (captures, name) = view.headlines().find_map(|headline| {
        let captures = TITLE.captures(headline)?;
        let name = headline[captures.get_match().end()..].trim();
        Some((captures, name))
    })?;
    let priority = captures
        .get(1)
        .or_else(|| captures.get(4))
        .map(|m| m.as_str());
    let scope = captures.get(3).map(|m| m.as_str());
    let datadog_link = view
        .link_containing("datadoghq")
        .or_else(|| view.link_containing("datadog"));
    let looks_like_datadog = hint == Some(&AlertSource::Datadog)
        || scope.is_some()
        || priority.is_some()
        || datadog_link.is_some();
    if !looks_like_datadog {
        return None;
    }

    let transition = captures[2].to_ascii_lowercase();
    let status = match transition.as_str() {
        "recovered" | "resolved" => AlertStatus::Resolved,
        _ => AlertStatus::Firing,
    };
    let severity = match (priority, transition.as_str()) {
        (Some(priority), _) => Severity::parse_lenient(priority),
        (None, "warn" | "re-warn") => Severity::Warning,
        _ => Severity::Unknown,
    };
    let title = if name.is_empty() {
        "Datadog monitor".to_owned()
    } else {
        name.to_owned()
    };

    let mut identity: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in scope.into_iter().flat_map(tag_pairs) {
        identity.insert(key.to_owned(), value.to_owned());
    }
    let monitor_link = view.link_containing("/monitors/");
    if let Some(id) = monitor_link.and_then(|l| MONITOR_ID.captures(l)) {
        identity.insert("monitor_id".to_owned(), id[1].to_owned());
    }
    let fingerprint = Alert::derive_fingerprint(&AlertSource::Datadog, &title, &identity);

    let mut labels = identity;
    let tag_lists = view
        .field("Tags")
        .into_iter()
        .chain(view.lines().filter_map(|l| l.strip_prefix("Tags:")));
    for (key, value) in tag_lists.flat_map(tag_pairs) {
        labels
            .entry(key.to_owned())
            .or_insert_with(|| value.to_owned());
    }
    for (key, value) in view.lines().flat_map(tag_pairs) {
        if TEXT_TAG_KEYS.contains(&key) {
            labels
                .entry(key.to_owned())
                .or_insert_with(|| value.to_owned());
        }
    }
    if let Some(priority) = priority {
        labels.insert("priority".to_owned(), priority.to_ascii_uppercase());
    }
    labels.insert("datadog_status".to_owned(), transition);

    let body = view.body();
    let description = if first_line(&body).contains(name) && !name.is_empty() {
        body
    } else {
        format!("{title}\n{body}")
    };
    let link = monitor_link
        .or(datadog_link)
        .or_else(|| view.title_link())
        .map(str::to_owned);

    Some(
        Found {
            source: AlertSource::Datadog,
            status,
            severity,
            title,
            description,
            labels,
            fingerprint,
            link,
        }
        .into_alert(view),
    )
}
