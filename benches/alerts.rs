//! Alert parsing throughput: channel messages in a realistic mix of formats, and
//! Alertmanager webhook payloads measured per alert. The budget is 100k messages (or
//! alerts) per second on one core; an alert storm must not back the bot up.

use std::hint::black_box;

use breakwater::alerts::{parse_alertmanager, parse_channel_message};
use breakwater::core::event::ChannelMessage;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

macro_rules! channel_fixtures {
    ($($name:literal),* $(,)?) => {
        [$(include_str!(concat!("../tests/fixtures/alerts/channel/", $name, ".json"))),*]
    };
}

/// One of each format the channel parser knows, as they arrive in an alert channel.
const CHANNEL_FIXTURES: [&str; 18] = channel_fixtures!(
    "alertmanager_slack_firing",
    "alertmanager_slack_resolved",
    "alertmanager_discord_firing",
    "grafana_slack_firing",
    "grafana_slack_resolved",
    "grafana_discord_firing",
    "datadog_slack_triggered",
    "datadog_slack_recovered",
    "datadog_slack_multi_alert",
    "pagerduty_slack_triggered",
    "pagerduty_slack_acknowledged",
    "pagerduty_slack_resolved",
    "opsgenie_slack_opened",
    "opsgenie_slack_closed",
    "sentry_slack_issue",
    "sentry_slack_metric_resolved",
    "person",
    "unknown_bot",
);

/// Alerts per webhook payload: a storm-sized group.
const ALERTS_PER_PAYLOAD: usize = 50;

/// An Alertmanager v4 payload with `count` firing alerts shaped like the fixture's.
fn alertmanager_payload(count: usize) -> Vec<u8> {
    let alerts: Vec<_> = (0..count)
        .map(|i| {
            json!({
                "status": "firing",
                "labels": {
                    "alertname": "HighErrorRate",
                    "env": "production",
                    "instance": format!("checkout-{i}.shop-prod.svc:8080"),
                    "job": "checkout",
                    "namespace": "shop-prod",
                    "service": "checkout",
                    "severity": "critical"
                },
                "annotations": {
                    "description": "7.2% of requests to checkout in production failed with a 5xx over the last 5 minutes.",
                    "runbook_url": "https://runbooks.example.com/checkout/high-error-rate",
                    "summary": "5xx ratio above 5% on checkout"
                },
                "startsAt": "2025-03-14T09:26:53.132Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=job%3Acheckout_http_5xx%3Aratio_rate5m+%3E+0.05&g0.tab=1",
                "fingerprint": format!("{i:016x}")
            })
        })
        .collect();
    let payload = json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"HighErrorRate\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "breakwater",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate", "service": "checkout"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com:9093",
        "alerts": alerts
    });
    serde_json::to_vec(&payload).expect("payload serialises")
}

fn alert_parsing(c: &mut Criterion) {
    let messages: Vec<ChannelMessage> = CHANNEL_FIXTURES
        .iter()
        .map(|json| serde_json::from_str(json).expect("fixture is a channel message"))
        .collect();
    let mut group = c.benchmark_group("alerts");

    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("channel_messages_mixed", |b| {
        b.iter(|| {
            for message in &messages {
                black_box(parse_channel_message(black_box(message)));
            }
        });
    });

    let payload = alertmanager_payload(ALERTS_PER_PAYLOAD);
    group.throughput(Throughput::Elements(ALERTS_PER_PAYLOAD as u64));
    group.bench_function("alertmanager_webhook_per_alert", |b| {
        b.iter(|| black_box(parse_alertmanager(black_box(&payload))).expect("payload parses"));
    });

    group.finish();
}

criterion_group!(benches, alert_parsing);
criterion_main!(benches);
