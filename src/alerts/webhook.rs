//! The webhook payloads Prometheus Alertmanager (version 4) and Grafana alerting (unified
//! alerting contact point, version 1) POST to breakwater, turned into one [`Alert`] per
//! alert in the notification.
//!
//! Grafana's payload is Alertmanager's plus a few fields (`orgId`, `silenceURL`,
//! `dashboardURL`, `panelURL`, `values`, `valueString`, `title`, `message`), so one decoder
//! reads both. Unknown fields are ignored; fields breakwater reads must have the documented
//! type, and a payload that breaks that is refused with a [`PayloadError`] naming the field,
//! which the HTTP layer returns as a 400 so the sender's operator sees what is wrong.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;

use super::markup::is_web_link;
use crate::core::alert::{Alert, AlertSource, AlertStatus, Severity};
use crate::text::clip;

/// Longest field path or problem text quoted back to the sender; label keys in paths come
/// from the payload.
const MAX_ERROR_TEXT: usize = 200;
/// Longest title and description kept from a payload, so a runaway annotation cannot bloat
/// every stored alert and chat message.
const MAX_TITLE: usize = 200;
const MAX_DESCRIPTION: usize = 4000;

/// Why a webhook payload was refused. The message names the offending field
/// (`alerts[2].startsAt: not an RFC 3339 time: "yesterday"`) because the sender's operator
/// reads it in their tool's delivery log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The body is not JSON at all (or is cut short).
    #[error("body is not valid JSON (line {line}, column {column}): {reason}")]
    NotJson {
        line: usize,
        column: usize,
        reason: String,
    },
    /// The body is JSON, but a field is missing or has the wrong type or value.
    #[error("{field}: {problem}")]
    Field { field: String, problem: String },
}

impl PayloadError {
    /// The path of the offending field (`alerts[2].startsAt`), when one is to blame.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::NotJson { .. } => None,
            Self::Field { field, .. } => Some(field),
        }
    }

    fn field_problem(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Field {
            field: clip(&field.into(), MAX_ERROR_TEXT),
            problem: clip(&problem.into(), MAX_ERROR_TEXT),
        }
    }
}

/// Parses an Alertmanager webhook (`"version": "4"`) into one alert per entry of `alerts`.
///
/// A payload without `version` is accepted (some relays strip it); any other version is
/// refused rather than guessed at, since its fields may mean something else.
pub fn parse_alertmanager(body: &[u8]) -> Result<Vec<Alert>, PayloadError> {
    let payload = decode(body)?;
    check_version(payload.version.as_deref(), "4", "Alertmanager")?;
    convert(payload, AlertSource::Alertmanager)
}

/// Parses a Grafana alerting webhook (`"version": "1"`) into one alert per entry of
/// `alerts`. Alerts Grafana left out because of the contact point's size limit
/// (`truncatedAlerts`) are, by nature, not in the result.
pub fn parse_grafana(body: &[u8]) -> Result<Vec<Alert>, PayloadError> {
    let payload = decode(body)?;
    check_version(payload.version.as_deref(), "1", "Grafana")?;
    convert(payload, AlertSource::Grafana)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    version: Option<String>,
    /// The group's status; each alert carries its own, this is only a fallback.
    status: Option<String>,
    alerts: Vec<PayloadAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayloadAlert {
    status: Option<String>,
    // Go encodes an empty map as `null`, hence the `Option`s.
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    generator_url: Option<String>,
    fingerprint: Option<String>,
    #[serde(rename = "dashboardURL")]
    dashboard_url: Option<String>,
    #[serde(rename = "panelURL")]
    panel_url: Option<String>,
    /// Grafana: the query results by reference id (`{"B": 44.2, "C": 1}`); numbers or null.
    values: Option<BTreeMap<String, serde_json::Value>>,
    value_string: Option<String>,
}

/// Decodes the payload. Tracking the path of every field costs as much as decoding, so
/// only a payload with a bad field is decoded a second time to name it.
fn decode(body: &[u8]) -> Result<Payload, PayloadError> {
    serde_json::from_slice(body).map_err(|error| {
        if !error.is_data() {
            return from_json_error(&error, ".");
        }
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        match serde_path_to_error::deserialize::<_, Payload>(&mut deserializer) {
            Err(located) => from_json_error(located.inner(), &located.path().to_string()),
            Ok(_) => from_json_error(&error, "."),
        }
    })
}

fn from_json_error(error: &serde_json::Error, path: &str) -> PayloadError {
    let message = error.to_string();
    let location = format!(" at line {} column {}", error.line(), error.column());
    let reason = message
        .strip_suffix(&location)
        .unwrap_or(&message)
        .to_owned();
    if error.is_data() {
        let field = if path == "." { "body" } else { path };
        PayloadError::field_problem(field, reason)
    } else {
        PayloadError::NotJson {
            line: error.line(),
            column: error.column(),
            reason,
        }
    }
}

fn check_version(version: Option<&str>, expected: &str, tool: &str) -> Result<(), PayloadError> {
    match version {
        None => Ok(()),
        Some(version) if version == expected => Ok(()),
        Some(version) => Err(PayloadError::field_problem(
            "version",
            format!("expected {expected:?} ({tool} webhook), got {version:?}"),
        )),
    }
}

fn convert(payload: Payload, source: AlertSource) -> Result<Vec<Alert>, PayloadError> {
    let group_status = payload.status.as_deref();
    payload
        .alerts
        .into_iter()
        .enumerate()
        .map(|(index, alert)| convert_alert(index, alert, group_status, &source))
        .collect()
}

fn convert_alert(
    index: usize,
    raw: PayloadAlert,
    group_status: Option<&str>,
    source: &AlertSource,
) -> Result<Alert, PayloadError> {
    let field = |name: &str| format!("alerts[{index}].{name}");

    let status_text = raw.status.as_deref().or(group_status).ok_or_else(|| {
        PayloadError::field_problem(
            field("status"),
            "missing (expected \"firing\" or \"resolved\")",
        )
    })?;
    let status = AlertStatus::parse(status_text).ok_or_else(|| {
        PayloadError::field_problem(
            field("status"),
            format!("expected \"firing\" or \"resolved\", got {status_text:?}"),
        )
    })?;

    let starts_at = raw
        .starts_at
        .as_deref()
        .ok_or_else(|| PayloadError::field_problem(field("startsAt"), "missing"))?;
    let started_at = parse_time(starts_at, &field("startsAt"))?.ok_or_else(|| {
        PayloadError::field_problem(field("startsAt"), "is the zero time; a start is required")
    })?;
    // Alertmanager blanks `endsAt` (zero time) for firing alerts; for a firing alert from
    // another sender it would only be a projected timeout, not an end.
    let ends_at = match raw.ends_at.as_deref() {
        Some(text) if !text.is_empty() => parse_time(text, &field("endsAt"))?,
        _ => None,
    };
    let ended_at = ends_at.filter(|_| status == AlertStatus::Resolved);

    let labels = raw.labels.unwrap_or_default();
    let annotations = raw.annotations.unwrap_or_default();

    let title = non_empty(labels.get("alertname"))
        .or_else(|| non_empty(annotations.get("summary")))
        .map_or_else(|| "unnamed alert".to_owned(), |t| clip(t, MAX_TITLE));
    let severity = non_empty(labels.get("severity"))
        .or_else(|| non_empty(labels.get("priority")))
        .map_or(Severity::Unknown, Severity::parse_lenient);
    let description = describe(
        &annotations,
        raw.values.as_ref(),
        raw.value_string.as_deref(),
    );
    let link = [
        raw.generator_url.as_deref(),
        raw.panel_url.as_deref(),
        raw.dashboard_url.as_deref(),
        non_empty(annotations.get("runbook_url")),
        non_empty(annotations.get("runbook")),
        non_empty(annotations.get("dashboard_url")),
        non_empty(annotations.get("dashboard")),
    ]
    .into_iter()
    .flatten()
    .map(str::trim)
    .find(|candidate| is_web_link(candidate))
    .map(str::to_owned);
    let fingerprint = match non_empty(raw.fingerprint.as_ref()) {
        Some(given) => clip(given.trim(), MAX_ERROR_TEXT),
        None => Alert::derive_fingerprint(source, &title, &labels),
    };

    Ok(Alert {
        source: source.clone(),
        service: None,
        environment: None,
        severity,
        status,
        title,
        description,
        started_at,
        ended_at,
        labels,
        fingerprint,
        link,
    })
}

/// Parses an RFC 3339 time; `Ok(None)` for Go's zero time, which Alertmanager and Grafana
/// send for "not set".
fn parse_time(text: &str, field: &str) -> Result<Option<DateTime<Utc>>, PayloadError> {
    let time = DateTime::parse_from_rfc3339(text.trim()).map_err(|_| {
        PayloadError::field_problem(field, format!("not an RFC 3339 time: {text:?}"))
    })?;
    Ok((time.year() > 1).then(|| time.with_timezone(&Utc)))
}

/// The human text of an alert: summary, then description (or the older `message`
/// convention), then the values that made it fire (Grafana).
fn describe(
    annotations: &BTreeMap<String, String>,
    values: Option<&BTreeMap<String, serde_json::Value>>,
    value_string: Option<&str>,
) -> String {
    let mut parts: Vec<String> = Vec::new();
    for key in ["summary", "description", "message"] {
        if let Some(text) = non_empty(annotations.get(key)) {
            let text = text.trim();
            if !parts.iter().any(|p| p == text) {
                parts.push(text.to_owned());
            }
        }
    }
    let values_text = match values {
        Some(values) if !values.is_empty() => Some(
            values
                .iter()
                .map(|(reference, value)| format!("{reference}={value}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => non_empty(value_string).map(|s| s.trim().to_owned()),
    };
    if let Some(values_text) = values_text {
        parts.push(format!("Value: {values_text}"));
    }
    clip(&parts.join("\n"), MAX_DESCRIPTION)
}

fn non_empty<S: AsRef<str> + ?Sized>(value: Option<&S>) -> Option<&str> {
    value.map(AsRef::as_ref).filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::tests::{
        ALERTMANAGER_FIRING, ALERTMANAGER_RESOLVED, GRAFANA_FIRING, recognizer,
    };

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid test time")
            .with_timezone(&Utc)
    }

    #[test]
    fn alertmanager_payload_gives_one_alert_per_alert() {
        let alerts = parse_alertmanager(ALERTMANAGER_FIRING.as_bytes()).expect("valid payload");
        assert_eq!(alerts.len(), 2);
        assert!(alerts.iter().all(|a| a.source == AlertSource::Alertmanager));
    }

    #[test]
    fn alertmanager_alert_takes_title_severity_and_fingerprint_from_the_alert() {
        let alerts = parse_alertmanager(ALERTMANAGER_FIRING.as_bytes()).expect("valid payload");
        let first = &alerts[0];
        assert_eq!(first.title, "HighErrorRate");
        assert_eq!(first.severity, Severity::Critical);
        assert_eq!(first.status, AlertStatus::Firing);
        assert_eq!(first.fingerprint, "3b8a9c1f0e2d4a57");
        assert_eq!(first.started_at, time("2025-03-14T09:26:53.132Z"));
        assert_eq!(
            first.labels.get("service").map(String::as_str),
            Some("checkout")
        );
        assert_eq!(first.service, None);
        assert_eq!(first.environment, None);
    }

    #[test]
    fn alertmanager_description_joins_summary_and_description() {
        let alerts = parse_alertmanager(ALERTMANAGER_FIRING.as_bytes()).expect("valid payload");
        assert_eq!(
            alerts[0].description,
            "5xx ratio above 5% on checkout\n\
             7.2% of requests to checkout in production failed with a 5xx over the last 5 minutes."
        );
    }

    #[test]
    fn alertmanager_link_is_the_generator_url() {
        let alerts = parse_alertmanager(ALERTMANAGER_FIRING.as_bytes()).expect("valid payload");
        assert_eq!(
            alerts[0].link.as_deref(),
            Some(
                "http://prometheus.example.com:9090/graph?g0.expr=job%3Acheckout_http_5xx%3Aratio_rate5m+%3E+0.05&g0.tab=1"
            )
        );
    }

    #[test]
    fn a_runbook_annotation_is_the_link_when_there_is_no_generator_url() {
        let alerts = parse_alertmanager(ALERTMANAGER_FIRING.as_bytes()).expect("valid payload");
        assert_eq!(
            alerts[1].link.as_deref(),
            Some("https://runbooks.example.com/checkout/high-latency")
        );
    }

    #[test]
    fn the_zero_end_time_of_a_firing_alert_means_no_end() {
        let alerts = parse_alertmanager(ALERTMANAGER_FIRING.as_bytes()).expect("valid payload");
        assert_eq!(alerts[0].ended_at, None);
    }

    #[test]
    fn a_resolved_alert_keeps_its_end_time() {
        let alerts = parse_alertmanager(ALERTMANAGER_RESOLVED.as_bytes()).expect("valid payload");
        assert_eq!(alerts[0].status, AlertStatus::Resolved);
        assert_eq!(alerts[0].ended_at, Some(time("2025-03-14T09:41:53.132Z")));
    }

    #[test]
    fn firing_and_resolved_notifications_of_one_alert_share_the_fingerprint() {
        let firing = parse_alertmanager(ALERTMANAGER_FIRING.as_bytes()).expect("valid payload");
        let resolved = parse_alertmanager(ALERTMANAGER_RESOLVED.as_bytes()).expect("valid payload");
        assert_eq!(firing[0].fingerprint, resolved[0].fingerprint);
    }

    #[test]
    fn a_missing_fingerprint_is_derived_from_name_and_labels() {
        let body = r#"{"version":"4","status":"firing","alerts":[
            {"status":"firing","labels":{"alertname":"Down","job":"checkout"},
             "startsAt":"2025-03-14T09:26:53Z"}]}"#;
        let alerts = parse_alertmanager(body.as_bytes()).expect("valid payload");
        let expected =
            Alert::derive_fingerprint(&AlertSource::Alertmanager, "Down", &alerts[0].labels);
        assert_eq!(alerts[0].fingerprint, expected);
    }

    #[test]
    fn null_labels_and_annotations_are_empty_maps() {
        let body = r#"{"alerts":[{"status":"firing","labels":{"alertname":"X"},
            "annotations":null,"startsAt":"2025-03-14T09:26:53Z"}]}"#;
        let alerts = parse_alertmanager(body.as_bytes()).expect("valid payload");
        assert_eq!(alerts[0].description, "");
    }

    #[test]
    fn a_bad_start_time_is_refused_naming_the_field() {
        let body = r#"{"version":"4","alerts":[
            {"status":"firing","labels":{},"startsAt":"2025-03-14T09:26:53Z"},
            {"status":"firing","labels":{},"startsAt":"2025-03-14T09:26:53Z"},
            {"status":"firing","labels":{},"startsAt":"yesterday"}]}"#;
        let error = parse_alertmanager(body.as_bytes()).expect_err("bad time");
        assert_eq!(error.field(), Some("alerts[2].startsAt"));
        assert_eq!(
            error.to_string(),
            "alerts[2].startsAt: not an RFC 3339 time: \"yesterday\""
        );
    }

    #[test]
    fn a_missing_start_time_is_refused_naming_the_field() {
        let body = r#"{"alerts":[{"status":"firing","labels":{}}]}"#;
        let error = parse_alertmanager(body.as_bytes()).expect_err("no start");
        assert_eq!(error.to_string(), "alerts[0].startsAt: missing");
    }

    #[test]
    fn a_label_of_the_wrong_type_is_refused_naming_the_label() {
        let body = r#"{"alerts":[{"status":"firing","labels":{"severity":3},
            "startsAt":"2025-03-14T09:26:53Z"}]}"#;
        let error = parse_alertmanager(body.as_bytes()).expect_err("number label");
        assert_eq!(error.field(), Some("alerts[0].labels.severity"));
        assert!(error.to_string().contains("expected a string"), "{error}");
    }

    #[test]
    fn an_unknown_status_is_refused() {
        let body = r#"{"alerts":[{"status":"exploded","labels":{},
            "startsAt":"2025-03-14T09:26:53Z"}]}"#;
        let error = parse_alertmanager(body.as_bytes()).expect_err("bad status");
        assert_eq!(error.field(), Some("alerts[0].status"));
    }

    #[test]
    fn a_missing_alerts_list_is_refused_naming_the_body() {
        let error = parse_alertmanager(br#"{"version":"4"}"#).expect_err("no alerts");
        assert_eq!(error.to_string(), "body: missing field `alerts`");
    }

    #[test]
    fn another_webhook_version_is_refused() {
        let error = parse_alertmanager(GRAFANA_FIRING.as_bytes()).expect_err("grafana body");
        assert_eq!(
            error.to_string(),
            "version: expected \"4\" (Alertmanager webhook), got \"1\""
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_refused_with_its_position() {
        let error = parse_alertmanager(b"{\"alerts\": [").expect_err("cut short");
        assert!(
            matches!(error, PayloadError::NotJson { line: 1, .. }),
            "{error}"
        );
        let error = parse_alertmanager(br#"{"alerts": []} trailing"#).expect_err("trailing");
        assert!(matches!(error, PayloadError::NotJson { .. }), "{error}");
    }

    #[test]
    fn grafana_payload_gives_one_alert_per_alert() {
        let alerts = parse_grafana(GRAFANA_FIRING.as_bytes()).expect("valid payload");
        assert_eq!(alerts.len(), 2);
        assert!(alerts.iter().all(|a| a.source == AlertSource::Grafana));
        assert_eq!(alerts[0].title, "HighErrorRate");
        assert_eq!(alerts[0].fingerprint, "c6eadffa33fcdf37");
        assert_eq!(alerts[0].severity, Severity::Critical);
    }

    #[test]
    fn grafana_description_includes_the_query_values() {
        let alerts = parse_grafana(GRAFANA_FIRING.as_bytes()).expect("valid payload");
        assert_eq!(
            alerts[0].description,
            "7.2% of checkout requests fail with a 5xx\nValue: B=0.072, C=1"
        );
    }

    #[test]
    fn grafana_resolved_alert_has_its_end_time() {
        let alerts = parse_grafana(GRAFANA_FIRING.as_bytes()).expect("valid payload");
        assert_eq!(alerts[1].status, AlertStatus::Resolved);
        assert_eq!(alerts[1].ended_at, Some(time("2025-03-14T10:05:10+01:00")));
    }

    #[test]
    fn grafana_link_falls_back_to_the_panel_when_the_rule_link_is_empty() {
        let alerts = parse_grafana(GRAFANA_FIRING.as_bytes()).expect("valid payload");
        assert_eq!(
            alerts[1].link.as_deref(),
            Some("https://grafana.example.com/d/checkout-slo?orgId=1&viewPanel=4")
        );
    }

    #[test]
    fn links_that_are_not_web_links_are_dropped() {
        let body = r#"{"alerts":[{"status":"firing","labels":{"alertname":"X"},
            "startsAt":"2025-03-14T09:26:53Z","generatorURL":"javascript:alert(1)"}]}"#;
        let alerts = parse_grafana(body.as_bytes()).expect("valid payload");
        assert_eq!(alerts[0].link, None);
    }

    /// Every fixture cut at every byte, and with bytes flipped, parses or is refused.
    #[test]
    fn webhook_parsing_never_panics_on_truncated_or_corrupted_payloads() {
        type Parse = fn(&[u8]) -> Result<Vec<Alert>, PayloadError>;
        let parsers: [Parse; 2] = [parse_alertmanager, parse_grafana];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for fixture in [ALERTMANAGER_FIRING, ALERTMANAGER_RESOLVED, GRAFANA_FIRING] {
            let bytes = fixture.as_bytes();
            for parse in parsers {
                for cut in 0..bytes.len() {
                    let _ = parse(&bytes[..cut]);
                }
                for _ in 0..500 {
                    let mut flipped = bytes.to_vec();
                    for _ in 0..1 + random() % 4 {
                        let at = usize::try_from(random() % bytes.len() as u64).unwrap_or(0);
                        flipped[at] ^= 1 << (random() % 8);
                    }
                    let _ = parse(&flipped);
                }
            }
        }
        for _ in 0..2000 {
            let length = usize::try_from(random() % 256).unwrap_or(0);
            let noise: Vec<u8> = (0..length).map(|_| random().to_le_bytes()[0]).collect();
            for parse in parsers {
                let _ = parse(&noise);
            }
        }
    }

    #[test]
    fn webhook_alerts_are_recognisable_by_service_and_environment() {
        let recognizer = recognizer();
        for mut alert in parse_alertmanager(ALERTMANAGER_FIRING.as_bytes())
            .expect("valid payload")
            .into_iter()
            .chain(parse_grafana(GRAFANA_FIRING.as_bytes()).expect("valid payload"))
        {
            recognizer.apply(&mut alert);
            assert_eq!(
                alert.service.as_ref().map(|s| s.as_str()),
                Some("checkout"),
                "{alert:?}"
            );
            assert_eq!(
                alert.environment.as_ref().map(|e| e.as_str()),
                Some("production"),
                "{alert:?}"
            );
        }
    }
}
