//! Channel-message parsing on realistic notifications (fixtures under
//! `tests/fixtures/alerts/channel/`), one behaviour per test.

use chrono::{DateTime, Utc};

use super::parse_channel_message;
use crate::alerts::tests::recognizer;
use crate::core::alert::{Alert, AlertSource, AlertStatus, Severity};
use crate::core::event::{ChannelMessage, MessageAuthor};

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!(
                "../../../tests/fixtures/alerts/channel/",
                $name,
                ".json"
            )),
        )
    };
}

const FIXTURES: &[(&str, &str)] = &[
    fixture!("alertmanager_slack_firing"),
    fixture!("alertmanager_slack_resolved"),
    fixture!("alertmanager_discord_firing"),
    fixture!("grafana_slack_firing"),
    fixture!("grafana_slack_resolved"),
    fixture!("grafana_discord_firing"),
    fixture!("datadog_slack_triggered"),
    fixture!("datadog_slack_recovered"),
    fixture!("datadog_slack_multi_alert"),
    fixture!("pagerduty_slack_triggered"),
    fixture!("pagerduty_slack_acknowledged"),
    fixture!("pagerduty_slack_resolved"),
    fixture!("opsgenie_slack_opened"),
    fixture!("opsgenie_slack_closed"),
    fixture!("sentry_slack_issue"),
    fixture!("sentry_slack_metric_resolved"),
    fixture!("person"),
    fixture!("unknown_bot"),
];

fn message(name: &str) -> ChannelMessage {
    let (_, json) = FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fixture {name}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn parse(name: &str) -> Alert {
    parse_channel_message(&message(name)).unwrap_or_else(|| panic!("{name} gives an alert"))
}

/// The fixture as an anonymous incoming webhook would post it: no tool's name.
fn anonymous(name: &str) -> Alert {
    let mut message = message(name);
    message.author = MessageAuthor {
        name: Some("incoming-webhook".to_owned()),
        is_bot: true,
    };
    parse_channel_message(&message).unwrap_or_else(|| panic!("{name} gives an alert"))
}

fn label<'a>(alert: &'a Alert, key: &str) -> Option<&'a str> {
    alert.labels.get(key).map(String::as_str)
}

fn posted_at(name: &str) -> DateTime<Utc> {
    message(name).posted_at
}

fn text_message(text: &str, author: &str, is_bot: bool) -> ChannelMessage {
    ChannelMessage {
        text: text.to_owned(),
        attachments: Vec::new(),
        author: MessageAuthor {
            name: Some(author.to_owned()),
            is_bot,
        },
        posted_at: posted_at("person"),
    }
}

// Alertmanager's default Slack notification.

#[test]
fn alertmanager_slack_notification_is_an_alertmanager_alert_named_after_the_group() {
    let alert = parse("alertmanager_slack_firing");
    assert_eq!(alert.source, AlertSource::Alertmanager);
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(alert.title, "HighErrorRate");
}

#[test]
fn alertmanager_slack_unkeyed_label_values_are_kept_in_labels_and_description() {
    let alert = parse("alertmanager_slack_firing");
    assert_eq!(label(&alert, "group_values"), Some("HighErrorRate"));
    assert_eq!(
        label(&alert, "common_values"),
        Some("checkout production critical")
    );
    assert!(
        alert
            .description
            .contains("HighErrorRate (checkout production critical)"),
        "{}",
        alert.description
    );
}

#[test]
fn alertmanager_slack_severity_is_read_from_the_label_values() {
    assert_eq!(
        parse("alertmanager_slack_firing").severity,
        Severity::Critical
    );
}

#[test]
fn alertmanager_slack_alert_starts_when_posted_and_has_no_end() {
    let alert = parse("alertmanager_slack_firing");
    assert_eq!(alert.started_at, posted_at("alertmanager_slack_firing"));
    assert_eq!(alert.ended_at, None);
}

#[test]
fn alertmanager_slack_link_is_the_title_link_when_no_source_is_listed() {
    assert_eq!(
        parse("alertmanager_slack_firing").link.as_deref(),
        Some("http://alertmanager.example.com:9093/#/alerts?receiver=slack-oncall")
    );
}

#[test]
fn alertmanager_slack_resolved_notification_is_resolved_when_posted() {
    let alert = parse("alertmanager_slack_resolved");
    assert_eq!(alert.status, AlertStatus::Resolved);
    assert_eq!(
        alert.ended_at,
        Some(posted_at("alertmanager_slack_resolved"))
    );
}

#[test]
fn alertmanager_slack_firing_and_resolved_of_one_group_share_a_fingerprint() {
    assert_eq!(
        parse("alertmanager_slack_firing").fingerprint,
        parse("alertmanager_slack_resolved").fingerprint
    );
}

#[test]
fn the_alertmanager_subject_is_found_in_the_fallback_when_there_is_no_title() {
    let mut message = message("alertmanager_slack_firing");
    message.attachments[0].title = None;
    let alert = parse_channel_message(&message).expect("an alert");
    assert_eq!(alert.title, "HighErrorRate");
    assert_eq!(
        alert.fingerprint,
        parse("alertmanager_slack_firing").fingerprint
    );
}

// Alertmanager's default Discord notification.

#[test]
fn alertmanager_discord_label_lines_become_labels() {
    let alert = parse("alertmanager_discord_firing");
    assert_eq!(alert.source, AlertSource::Alertmanager);
    assert_eq!(label(&alert, "alertname"), Some("HighErrorRate"));
    assert_eq!(label(&alert, "app"), Some("checkout"));
    assert_eq!(label(&alert, "environment"), Some("production"));
    assert_eq!(alert.severity, Severity::Critical);
}

#[test]
fn alertmanager_discord_description_starts_with_the_summary() {
    let alert = parse("alertmanager_discord_firing");
    assert!(
        alert
            .description
            .starts_with("5xx ratio above 5% on checkout\n7.2% of requests"),
        "{}",
        alert.description
    );
}

#[test]
fn alertmanager_discord_link_is_the_generator_url() {
    assert_eq!(
        parse("alertmanager_discord_firing").link.as_deref(),
        Some(
            "http://prometheus.example.com:9090/graph?g0.expr=job%3Acheckout_http_5xx%3Aratio_rate5m+%3E+0.05&g0.tab=1"
        )
    );
}

#[test]
fn alertmanager_discord_and_slack_notifications_of_one_group_share_a_fingerprint() {
    assert_eq!(
        parse("alertmanager_discord_firing").fingerprint,
        parse("alertmanager_slack_firing").fingerprint
    );
}

// Grafana's default Slack and Discord notifications.

#[test]
fn grafana_slack_notification_is_a_grafana_alert_with_its_label_lines_as_labels() {
    let alert = parse("grafana_slack_firing");
    assert_eq!(alert.source, AlertSource::Grafana);
    assert_eq!(alert.title, "HighErrorRate");
    assert_eq!(label(&alert, "service"), Some("checkout"));
    assert_eq!(label(&alert, "env"), Some("production"));
    assert_eq!(
        label(&alert, "group_values"),
        Some("HighErrorRate checkout")
    );
    assert_eq!(label(&alert, "common_values"), Some("production"));
    assert_eq!(alert.severity, Severity::Critical);
}

#[test]
fn grafana_slack_link_is_the_rule_source() {
    assert_eq!(
        parse("grafana_slack_firing").link.as_deref(),
        Some("https://grafana.example.com/alerting/grafana/bdk1u2v7nrls0c/view?orgId=1")
    );
}

#[test]
fn grafana_slack_description_has_the_summary_not_the_markup() {
    let alert = parse("grafana_slack_firing");
    assert!(
        alert
            .description
            .starts_with("7.2% of checkout requests fail with a 5xx\n"),
        "{}",
        alert.description
    );
    assert!(!alert.description.contains('*'), "{}", alert.description);
}

#[test]
fn grafana_slack_resolved_notification_is_resolved_with_the_firing_fingerprint() {
    let firing = parse("grafana_slack_firing");
    let resolved = parse("grafana_slack_resolved");
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert_eq!(resolved.fingerprint, firing.fingerprint);
}

#[test]
fn grafana_discord_body_in_the_content_is_read_with_the_embed_title() {
    let alert = parse("grafana_discord_firing");
    assert_eq!(alert.source, AlertSource::Grafana);
    assert_eq!(alert.title, "HighErrorRate");
    assert_eq!(label(&alert, "service"), Some("checkout"));
    assert_eq!(
        alert.link.as_deref(),
        Some("https://grafana.example.com/alerting/grafana/bdk1u2v7nrls0c/view?orgId=1")
    );
}

#[test]
fn grafana_is_told_from_alertmanager_by_its_format_alone() {
    assert_eq!(
        anonymous("grafana_slack_firing").source,
        AlertSource::Grafana
    );
    assert_eq!(
        anonymous("alertmanager_slack_firing").source,
        AlertSource::Alertmanager
    );
}

#[test]
fn a_mixed_grafana_group_counts_as_firing() {
    let mut message = message("grafana_slack_firing");
    message.attachments[0].title =
        Some("[FIRING:1, RESOLVED:1] HighErrorRate checkout (production)".to_owned());
    let alert = parse_channel_message(&message).expect("an alert");
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(alert.source, AlertSource::Grafana);
}

// Datadog.

#[test]
fn datadog_triggered_notification_reads_status_priority_and_monitor_name() {
    let alert = parse("datadog_slack_triggered");
    assert_eq!(alert.source, AlertSource::Datadog);
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(alert.severity, Severity::Critical);
    assert_eq!(alert.title, "High error rate on checkout");
    assert_eq!(label(&alert, "priority"), Some("P1"));
    assert_eq!(label(&alert, "monitor_id"), Some("81234567"));
}

#[test]
fn datadog_tags_become_labels() {
    let alert = parse("datadog_slack_triggered");
    assert_eq!(label(&alert, "service"), Some("checkout"));
    assert_eq!(label(&alert, "env"), Some("production"));
    assert_eq!(label(&alert, "team"), Some("storefront"));
}

#[test]
fn datadog_link_is_the_monitor() {
    let link = parse("datadog_slack_triggered").link.expect("a link");
    assert!(
        link.starts_with("https://app.datadoghq.com/monitors/81234567?"),
        "{link}"
    );
}

#[test]
fn datadog_recovered_notification_is_resolved_with_the_triggered_fingerprint() {
    let triggered = parse("datadog_slack_triggered");
    let recovered = parse("datadog_slack_recovered");
    assert_eq!(recovered.status, AlertStatus::Resolved);
    assert_eq!(recovered.fingerprint, triggered.fingerprint);
}

#[test]
fn datadog_multi_alert_scope_becomes_labels() {
    let alert = parse("datadog_slack_multi_alert");
    assert_eq!(alert.title, "High error rate on checkout");
    assert_eq!(label(&alert, "env"), Some("production"));
    assert_eq!(label(&alert, "service"), Some("checkout"));
    assert_eq!(label(&alert, "datadog_status"), Some("triggered"));
}

#[test]
fn datadog_is_recognised_by_its_monitor_link_alone() {
    assert_eq!(
        anonymous("datadog_slack_triggered").source,
        AlertSource::Datadog
    );
}

// PagerDuty.

#[test]
fn pagerduty_triggered_incident_reads_number_title_service_and_urgency() {
    let alert = parse("pagerduty_slack_triggered");
    assert_eq!(alert.source, AlertSource::PagerDuty);
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(alert.title, "High error rate on checkout");
    assert_eq!(label(&alert, "incident_number"), Some("1234"));
    assert_eq!(label(&alert, "service"), Some("checkout-production"));
    assert_eq!(label(&alert, "urgency"), Some("High"));
    assert_eq!(label(&alert, "pagerduty_status"), Some("triggered"));
    assert_eq!(alert.severity, Severity::Error);
    assert_eq!(
        alert.link.as_deref(),
        Some("https://acme.pagerduty.com/incidents/Q3VJZ9KX1B2C4D")
    );
}

#[test]
fn pagerduty_acknowledged_incident_still_fires() {
    let alert = parse("pagerduty_slack_acknowledged");
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(label(&alert, "pagerduty_status"), Some("acknowledged"));
}

#[test]
fn pagerduty_resolved_incident_is_read_from_pipe_separated_text() {
    let alert = parse("pagerduty_slack_resolved");
    assert_eq!(alert.status, AlertStatus::Resolved);
    assert_eq!(label(&alert, "service"), Some("checkout-production"));
    assert_eq!(label(&alert, "urgency"), Some("High"));
}

#[test]
fn pagerduty_notifications_of_one_incident_share_a_fingerprint() {
    let triggered = parse("pagerduty_slack_triggered").fingerprint;
    assert_eq!(parse("pagerduty_slack_acknowledged").fingerprint, triggered);
    assert_eq!(parse("pagerduty_slack_resolved").fingerprint, triggered);
}

#[test]
fn pagerduty_is_recognised_by_its_incident_link_alone() {
    assert_eq!(
        anonymous("pagerduty_slack_triggered").source,
        AlertSource::PagerDuty
    );
}

// Opsgenie.

#[test]
fn opsgenie_opened_alert_reads_number_priority_and_tags() {
    let alert = parse("opsgenie_slack_opened");
    assert_eq!(alert.source, AlertSource::Opsgenie);
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(alert.title, "High error rate on checkout");
    assert_eq!(alert.severity, Severity::Critical);
    assert_eq!(label(&alert, "alert_number"), Some("123"));
    assert_eq!(label(&alert, "service"), Some("checkout"));
    assert_eq!(label(&alert, "env"), Some("production"));
    assert_eq!(label(&alert, "tags"), Some("storefront"));
    assert_eq!(label(&alert, "teams"), Some("Storefront"));
}

#[test]
fn opsgenie_closed_alert_is_resolved_with_the_opened_fingerprint() {
    let opened = parse("opsgenie_slack_opened");
    let closed = parse("opsgenie_slack_closed");
    assert_eq!(closed.status, AlertStatus::Resolved);
    assert_eq!(closed.fingerprint, opened.fingerprint);
}

#[test]
fn opsgenie_is_recognised_by_its_headline_alone() {
    assert_eq!(
        anonymous("opsgenie_slack_opened").source,
        AlertSource::Opsgenie
    );
}

// Sentry.

#[test]
fn sentry_issue_alert_reads_title_tags_and_project() {
    let alert = parse("sentry_slack_issue");
    assert_eq!(alert.source, AlertSource::Sentry);
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(
        alert.title,
        "TypeError: Cannot read properties of undefined (reading 'total')"
    );
    assert_eq!(alert.severity, Severity::Error);
    assert_eq!(label(&alert, "environment"), Some("production"));
    assert_eq!(label(&alert, "project"), Some("checkout-web"));
    assert_eq!(label(&alert, "short_id"), Some("CHECKOUT-WEB-3F"));
    assert_eq!(label(&alert, "issue_id"), Some("4567890123"));
    assert!(
        alert
            .description
            .contains("src/cart/total.ts in computeTotal")
    );
}

#[test]
fn sentry_metric_alert_resolution_is_resolved() {
    let alert = parse("sentry_slack_metric_resolved");
    assert_eq!(alert.status, AlertStatus::Resolved);
    assert_eq!(alert.title, "Error rate in checkout production");
}

#[test]
fn sentry_is_recognised_by_its_links_alone() {
    assert_eq!(anonymous("sentry_slack_issue").source, AlertSource::Sentry);
}

// People and unknown bots.

#[test]
fn a_persons_message_is_a_firing_person_alert_titled_by_its_first_line() {
    let alert = parse("person");
    assert_eq!(alert.source, AlertSource::Person);
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(alert.severity, Severity::Unknown);
    assert_eq!(
        alert.title,
        "checkout prod is throwing 500s since the 14:02 deploy"
    );
    assert_eq!(
        alert.description,
        "checkout prod is throwing 500s since the 14:02 deploy\ncan you look?"
    );
    assert_eq!(label(&alert, "reported_by"), Some("Ada Lovelace"));
    assert_eq!(alert.started_at, posted_at("person"));
}

#[test]
fn a_persons_long_first_line_is_cut_to_120_characters() {
    let long = format!("checkout prod {}", "is very slow ".repeat(20));
    let alert = parse_channel_message(&text_message(&long, "Ada", false)).expect("an alert");
    assert_eq!(alert.title.chars().count(), 120);
    assert!(alert.title.ends_with('…'));
}

#[test]
fn a_person_quoting_an_alert_format_is_still_a_person() {
    let message = text_message(
        "[FIRING:1] HighErrorRate (checkout production) again?",
        "Ada",
        false,
    );
    let alert = parse_channel_message(&message).expect("an alert");
    assert_eq!(alert.source, AlertSource::Person);
}

#[test]
fn slack_and_discord_markup_is_stripped_from_a_persons_message() {
    let message = text_message(
        "*checkout* __prod__ is down, see <https://status.example.com|status>",
        "Ada",
        false,
    );
    let alert = parse_channel_message(&message).expect("an alert");
    assert_eq!(alert.title, "checkout prod is down, see status");
}

#[test]
fn an_unknown_bot_message_is_a_person_alert_marked_as_posted_by_a_bot() {
    let alert = parse("unknown_bot");
    assert_eq!(alert.source, AlertSource::Person);
    assert_eq!(label(&alert, "posted_by_bot"), Some("true"));
    assert_eq!(label(&alert, "reported_by"), Some("uptime-monitor"));
    assert_eq!(
        alert.title,
        "ALERT checkout-api p99 latency is 2.4s in production (threshold 1s)"
    );
}

#[test]
fn a_known_tool_in_an_unknown_format_keeps_its_source() {
    let message = text_message(
        "Checkout error budget burn is high in prod",
        "Grafana",
        true,
    );
    let alert = parse_channel_message(&message).expect("an alert");
    assert_eq!(alert.source, AlertSource::Grafana);
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(label(&alert, "posted_by_bot"), None);
}

#[test]
fn a_bot_message_starting_with_resolved_is_resolved() {
    let message = text_message("RESOLVED: checkout latency back to normal", "uptime", true);
    let alert = parse_channel_message(&message).expect("an alert");
    assert_eq!(alert.status, AlertStatus::Resolved);
}

#[test]
fn an_empty_message_is_no_alert() {
    assert_eq!(
        parse_channel_message(&text_message("  \n", "Ada", false)),
        None
    );
    assert_eq!(
        parse_channel_message(&text_message("", "Alertmanager", true)),
        None
    );
}

#[test]
fn descriptions_keep_single_blank_lines_and_collapse_spaces() {
    assert_eq!(super::tidy_lines("  a  b \n\n\n\n c\n d  "), "a b\n\nc\nd");
}

// Across formats.

#[test]
fn every_format_yields_a_recognisable_service_and_environment() {
    let recognizer = recognizer();
    for (name, _) in FIXTURES {
        let mut alert = parse(name);
        recognizer.apply(&mut alert);
        assert_eq!(
            alert.service.as_ref().map(|s| s.as_str()),
            Some("checkout"),
            "{name}: {alert:#?}"
        );
        assert_eq!(
            alert.environment.as_ref().map(|e| e.as_str()),
            Some("production"),
            "{name}: {alert:#?}"
        );
    }
}

#[test]
fn parsers_leave_service_and_environment_to_the_recognizer() {
    for (name, _) in FIXTURES {
        let alert = parse(name);
        assert_eq!(alert.service, None, "{name}");
        assert_eq!(alert.environment, None, "{name}");
    }
}

/// A small deterministic generator, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
}

/// Characters that mean something to one parser or another.
const TRICKY: &[char] = &[
    '<', '>', '|', '[', ']', '(', ')', '{', '}', '*', '_', '~', ':', '#', '-', '=', '@', '\n', '`',
    '&', 'é', '🔥', '\u{0}',
];

fn strings_of(message: &mut ChannelMessage) -> Vec<&mut String> {
    let mut strings = vec![&mut message.text];
    for attachment in &mut message.attachments {
        for text in [
            &mut attachment.title,
            &mut attachment.title_link,
            &mut attachment.text,
            &mut attachment.fallback,
            &mut attachment.footer,
        ]
        .into_iter()
        .flatten()
        {
            strings.push(text);
        }
        for (name, value) in &mut attachment.fields {
            strings.push(name);
            strings.push(value);
        }
    }
    strings
}

#[test]
fn channel_parsing_never_panics_on_truncated_text() {
    for (name, _) in FIXTURES {
        let original = message(name);
        let count = strings_of(&mut original.clone()).len();
        for index in 0..count {
            let mut copy = original.clone();
            let full = strings_of(&mut copy)[index].clone();
            for (cut, _) in full.char_indices() {
                let mut truncated = original.clone();
                *strings_of(&mut truncated)[index] = full[..cut].to_owned();
                let _ = parse_channel_message(&truncated);
            }
        }
    }
}

#[test]
fn channel_parsing_never_panics_on_corrupted_text() {
    let mut random = XorShift(0x5eed_ba5e_d00d_f00d);
    for (name, _) in FIXTURES {
        let original = message(name);
        for _ in 0..300 {
            let mut corrupted = original.clone();
            let mut strings = strings_of(&mut corrupted);
            let pick = random.below(strings.len());
            let target = &mut strings[pick];
            let mut chars: Vec<char> = target.chars().collect();
            for _ in 0..1 + random.below(8) {
                let c = TRICKY[random.below(TRICKY.len())];
                if chars.is_empty() || random.below(3) == 0 {
                    let at = random.below(chars.len() + 1);
                    chars.insert(at, c);
                } else {
                    let at = random.below(chars.len());
                    chars[at] = c;
                }
            }
            **target = chars.into_iter().collect();
            let _ = parse_channel_message(&corrupted);
        }
    }
}
