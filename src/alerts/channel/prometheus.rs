//! Alertmanager's and Grafana's notifications in Slack and Discord.
//!
//! Both render the same default subject (Alertmanager's `__subject` template, which Grafana
//! copied, adding `, RESOLVED:n` to mixed groups):
//! `[FIRING:2] <group label values> (<other common label values>)` or `[RESOLVED] …`. The
//! values carry no keys, so they are kept whole in the labels `group_values` and
//! `common_values` and in the description, where the recogniser's text matching finds
//! service and environment. Where the body lists the alerts (Grafana's `**Firing**` message
//! in Slack and Discord, Alertmanager's Discord `Alerts Firing:` message) the
//! ` - name = value` lines are read into real labels: those all listed alerts share.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::{Found, View, severity_word};
use crate::alerts::markup::is_web_link;
use crate::core::alert::{Alert, AlertSource, AlertStatus, Severity};

static SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\[(FIRING|RESOLVED)(?::\s*\d+)?(,\s*RESOLVED:\s*\d+)?\]")
        .expect("subject pattern is valid")
});

pub(super) fn parse(view: &View<'_>, hint: Option<&AlertSource>) -> Option<Alert> {
    let (status, mixed, rest) = view.headlines().find_map(|headline| {
        let captures = SUBJECT.captures(headline)?;
        let status = if captures[1].eq_ignore_ascii_case("firing") {
            AlertStatus::Firing
        } else {
            AlertStatus::Resolved
        };
        let rest = headline[captures.get_match().end()..].trim().to_owned();
        Some((status, captures.get(2).is_some(), rest))
    })?;
    let (group_values, common_values) = split_values(&rest);
    let body = read_body(view, status);

    let grafana_signs = mixed
        || body.grafana_value_lines
        || view.footers().any(|f| f.starts_with("Grafana"))
        || view.title_link().is_some_and(|l| l.contains("/alerting/"));
    let source = match hint {
        Some(AlertSource::Grafana) => AlertSource::Grafana,
        Some(AlertSource::Alertmanager) => AlertSource::Alertmanager,
        _ if grafana_signs => AlertSource::Grafana,
        _ => AlertSource::Alertmanager,
    };

    let (mut labels, annotations) = body.shared(status);
    let title = labels
        .get("alertname")
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .or_else(|| match source {
            // Prometheus alert names are identifiers; Grafana's are free text.
            AlertSource::Alertmanager => group_values.split_whitespace().next().map(str::to_owned),
            _ => Some(group_values.to_owned()).filter(|v| !v.is_empty()),
        })
        .or_else(|| Some(common_values.to_owned()).filter(|v| !v.is_empty()))
        .unwrap_or_else(|| format!("{source} alert"));

    let severity = labels
        .get("severity")
        .map(|s| Severity::parse_lenient(s))
        .filter(|s| *s != Severity::Unknown)
        .or_else(|| {
            rest.split(|c: char| !c.is_alphanumeric())
                .find_map(severity_word)
        })
        .unwrap_or(Severity::Unknown);

    let mut description: Vec<&str> = Vec::new();
    for key in ["summary", "description", "message"] {
        if let Some(text) = annotations.get(key).map(|t| t.trim())
            && !text.is_empty()
            && !description.contains(&text)
        {
            description.push(text);
        }
    }
    description.push(&rest);
    let description = description.join("\n");

    let link = view
        .parts
        .iter()
        .filter_map(|p| p.raw.text.as_deref())
        .chain(std::iter::once(view.message_text()))
        .find_map(source_link)
        .map(str::to_owned)
        .or_else(|| {
            annotations
                .get("runbook_url")
                .map(|l| l.trim().to_owned())
                .filter(|l| is_web_link(l))
        })
        .or_else(|| view.title_link().map(str::to_owned));

    let mut identity = BTreeMap::new();
    if !common_values.is_empty() {
        identity.insert("common_values".to_owned(), common_values.to_owned());
    }
    let fingerprint = Alert::derive_fingerprint(&source, group_values, &identity);
    if !group_values.is_empty() {
        labels.insert("group_values".to_owned(), group_values.to_owned());
    }
    labels.extend(identity);

    Some(
        Found {
            source,
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

/// The generator URL of a `Source: <url>` line in the raw text (Slack wraps bare URLs in
/// `<…>`; custom templates bold the word).
fn source_link(raw: &str) -> Option<&str> {
    raw.lines().find_map(|line| {
        let line = line.trim_start_matches(|c: char| c == '*' || c.is_whitespace());
        let rest = line
            .strip_prefix("Source")?
            .trim_start_matches(|c: char| c == ':' || c == '*' || c.is_whitespace());
        let rest = rest.strip_prefix('<').unwrap_or(rest);
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '|' || c == '>')
            .unwrap_or(rest.len());
        Some(&rest[..end]).filter(|link| is_web_link(link))
    })
}

/// A ` - name = value` line of a listed alert's labels or annotations (`name: value` in
/// some custom templates), already trimmed.
fn label_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('-')?.trim_start();
    let name_end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')))
        .unwrap_or(rest.len());
    let name = &rest[..name_end];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return None;
    }
    let after = rest[name_end..].trim_start();
    let value = after
        .strip_prefix('=')
        .or_else(|| after.strip_prefix(':'))?;
    Some((name, value.trim()))
}

/// Splits `HighErrorRate checkout (production critical)` into the group values and the
/// parenthesised common values; values may themselves contain parentheses.
fn split_values(rest: &str) -> (&str, &str) {
    let rest = rest.trim();
    if let Some(inside) = rest.strip_suffix(')') {
        let mut depth = 0usize;
        for (index, c) in inside.char_indices().rev() {
            match c {
                ')' => depth += 1,
                '(' if depth > 0 => depth -= 1,
                '(' => {
                    let before = &inside[..index];
                    if before.is_empty() || before.ends_with(char::is_whitespace) {
                        return (before.trim(), inside[index + 1..].trim());
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    (rest, "")
}

/// One alert as the body lists it.
#[derive(Default)]
struct Listed {
    status: Option<AlertStatus>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

struct Body {
    alerts: Vec<Listed>,
    /// Grafana's list starts each alert with `Value:`; Alertmanager's has none.
    grafana_value_lines: bool,
}

#[derive(Clone, Copy)]
enum Section {
    Labels,
    Annotations,
}

fn read_body(view: &View<'_>, status: AlertStatus) -> Body {
    let mut alerts: Vec<Listed> = Vec::new();
    let mut current_status = status;
    let mut section: Option<Section> = None;
    let mut grafana_value_lines = false;
    for line in view.lines() {
        let heading = line.trim_end_matches(':');
        if heading.eq_ignore_ascii_case("firing") || heading.eq_ignore_ascii_case("alerts firing") {
            current_status = AlertStatus::Firing;
            section = None;
        } else if heading.eq_ignore_ascii_case("resolved")
            || heading.eq_ignore_ascii_case("alerts resolved")
        {
            current_status = AlertStatus::Resolved;
            section = None;
        } else if line.starts_with("Value:") {
            grafana_value_lines = true;
            alerts.push(Listed {
                status: Some(current_status),
                ..Listed::default()
            });
            section = None;
        } else if heading.eq_ignore_ascii_case("labels") {
            let fresh = alerts
                .last()
                .is_some_and(|a| a.labels.is_empty() && a.annotations.is_empty());
            if !fresh {
                alerts.push(Listed {
                    status: Some(current_status),
                    ..Listed::default()
                });
            }
            section = Some(Section::Labels);
        } else if heading.eq_ignore_ascii_case("annotations") {
            if alerts.is_empty() {
                alerts.push(Listed {
                    status: Some(current_status),
                    ..Listed::default()
                });
            }
            section = Some(Section::Annotations);
        } else if let (Some(active), Some((name, value)), Some(alert)) =
            (section, label_line(line), alerts.last_mut())
        {
            let (name, value) = (name.to_owned(), value.to_owned());
            match active {
                Section::Labels => alert.labels.insert(name, value),
                Section::Annotations => alert.annotations.insert(name, value),
            };
        } else {
            // `Source:`, `Silence:`, `Dashboard:`, `Panel:` or free text end a list.
            section = None;
        }
    }
    Body {
        alerts,
        grafana_value_lines,
    }
}

impl Body {
    /// The labels every listed alert of `status` shares (all listed alerts when none has
    /// that status), and the first such alert's annotations.
    fn shared(self, status: AlertStatus) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let any_with_status = self.alerts.iter().any(|a| a.status == Some(status));
        let mut chosen = self
            .alerts
            .into_iter()
            .filter(|a| !any_with_status || a.status == Some(status));
        let Some(first) = chosen.next() else {
            return (BTreeMap::new(), BTreeMap::new());
        };
        let mut labels = first.labels;
        for other in chosen {
            labels.retain(|key, value| other.labels.get(key) == Some(value));
        }
        (labels, first.annotations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_at_the_last_top_level_parenthesis() {
        assert_eq!(
            split_values("HighErrorRate (checkout production critical)"),
            ("HighErrorRate", "checkout production critical")
        );
        assert_eq!(
            split_values("Disk (root) full (db-1 (primary) prod)"),
            ("Disk (root) full", "db-1 (primary) prod")
        );
        assert_eq!(split_values(" (val1)"), ("", "val1"));
        assert_eq!(split_values("HighErrorRate"), ("HighErrorRate", ""));
        assert_eq!(split_values("f(x)"), ("f(x)", ""));
    }

    #[test]
    fn label_lines_read_name_and_value() {
        assert_eq!(
            label_line("- service = checkout"),
            Some(("service", "checkout"))
        );
        assert_eq!(
            label_line("- summary = error ratio = 7%"),
            Some(("summary", "error ratio = 7%"))
        );
        assert_eq!(
            label_line("- team: storefront"),
            Some(("team", "storefront"))
        );
        assert_eq!(label_line("- 5xx everywhere"), None);
        assert_eq!(label_line("service = checkout"), None);
    }

    #[test]
    fn source_lines_give_the_generator_url() {
        assert_eq!(
            source_link("Labels:\n - a = b\nSource: <https://g.example/x?a=1&b=2>\n"),
            Some("https://g.example/x?a=1&b=2")
        );
        assert_eq!(
            source_link("*Source:* https://g.example/y"),
            Some("https://g.example/y")
        );
        assert_eq!(source_link("Source: javascript:alert(1)"), None);
    }
}
