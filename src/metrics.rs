//! Prometheus metrics: what operators watch to know the bot is doing its job (alerts in,
//! summaries out, rollbacks and their outcomes, backend latency, HTTP latency).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlatformLabels {
    platform: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
    operation: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    platform: String,
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    service: String,
    environment: String,
}

/// The intervals of an incident, each a histogram `breakwater_incident_NAME_seconds`
/// labelled by service and environment, observed once per incident where the audit record
/// that ends the interval is first written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncidentInterval {
    AlertToSummary,
    AlertToFirstPress,
    PressToRollbackFinished,
    RollbackFinishedToResolved,
    AlertToResolved,
}

impl IncidentInterval {
    pub const ALL: [Self; 5] = [
        Self::AlertToSummary,
        Self::AlertToFirstPress,
        Self::PressToRollbackFinished,
        Self::RollbackFinishedToResolved,
        Self::AlertToResolved,
    ];

    fn name_and_help(self) -> (&'static str, &'static str) {
        match self {
            Self::AlertToSummary => (
                "incident_alert_to_summary_seconds",
                "From an incident's first alert to its first summary posted",
            ),
            Self::AlertToFirstPress => (
                "incident_alert_to_first_press_seconds",
                "From an incident's first alert to the first Roll back press",
            ),
            Self::PressToRollbackFinished => (
                "incident_press_to_rollback_finished_seconds",
                "From an incident's first Roll back press to its first successful rollback",
            ),
            Self::RollbackFinishedToResolved => (
                "incident_rollback_finished_to_resolved_seconds",
                "From an incident's successful rollback to the resolution of its alerts",
            ),
            Self::AlertToResolved => (
                "incident_alert_to_resolved_seconds",
                "From an incident's first alert to the resolution of its alerts",
            ),
        }
    }
}

/// One interval's histograms, one per service and environment.
type IncidentHistograms = Family<TargetLabels, Histogram, fn() -> Histogram>;

fn incident_histogram() -> Histogram {
    // 1 s … ~9 h
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// All of breakwater's metrics, registered once and shared.
pub struct Metrics {
    registry: Registry,
    http_connections_open: Gauge,
    alerts_unrouted: Counter,
    alerts_received: Family<SourceLabels, Counter>,
    summaries_posted: Family<PlatformLabels, Counter>,
    rollbacks: Family<OutcomeLabels, Counter>,
    backend_calls: Family<BackendLabels, Histogram, fn() -> Histogram>,
    http_requests: Family<HttpLabels, Histogram, fn() -> Histogram>,
    chat_errors: Family<PlatformLabels, Counter>,
    discord_gateway_lease: Gauge,
    rollbacks_running: Gauge,
    chat_queue_peak: Family<QueueLabels, Gauge>,
    chat_dropped: Family<QueueLabels, Counter>,
    deploy_events_received: Family<SourceLabels, Counter>,
    deploy_events_unrouted: Family<SourceLabels, Counter>,
    /// Indexed in the order of [`IncidentInterval::ALL`].
    incident_intervals: Vec<IncidentHistograms>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("breakwater");
        let http_connections_open = Gauge::default();
        registry.register(
            "http_connections_open",
            "HTTP connections being served (at most server.max_connections)",
            http_connections_open.clone(),
        );
        let alerts_unrouted = Counter::default();
        registry.register(
            "alerts_unrouted",
            "Webhook alerts that matched no configured service (see the console's unrouted list)",
            alerts_unrouted.clone(),
        );
        let alerts_received = Family::<SourceLabels, Counter>::default();
        registry.register(
            "alerts_received",
            "Alerts received, by source",
            alerts_received.clone(),
        );
        let summaries_posted = Family::<PlatformLabels, Counter>::default();
        registry.register(
            "summaries_posted",
            "Deploy summaries posted, by platform",
            summaries_posted.clone(),
        );
        let rollbacks = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "rollbacks",
            "Rollback requests, by outcome",
            rollbacks.clone(),
        );
        let backend_calls =
            Family::<BackendLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        registry.register(
            "backend_call_duration_seconds",
            "Deployment backend calls, by backend, operation and result",
            backend_calls.clone(),
        );
        let http_requests =
            Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests served, by route, method and status",
            http_requests.clone(),
        );
        let chat_errors = Family::<PlatformLabels, Counter>::default();
        registry.register(
            "chat_errors",
            "Failed chat platform calls, by platform",
            chat_errors.clone(),
        );
        let discord_gateway_lease = Gauge::default();
        registry.register(
            "discord_gateway_lease",
            "1 on the replica that holds the Discord gateway session, 0 on the others",
            discord_gateway_lease.clone(),
        );
        let rollbacks_running = Gauge::default();
        registry.register(
            "rollbacks_running",
            "Rollbacks this replica is running or following now",
            rollbacks_running.clone(),
        );
        let chat_queue_peak = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "chat_queue_peak",
            "The most items a chat queue (channel, private_replies, interactions, events) held at once since start; never above its bound",
            chat_queue_peak.clone(),
        );
        let chat_dropped = Family::<QueueLabels, Counter>::default();
        registry.register(
            "chat_dropped",
            "Chat sends dropped by a queue's policy (private replies when full or late)",
            chat_dropped.clone(),
        );
        let deploy_events_received = Family::<SourceLabels, Counter>::default();
        registry.register(
            "deploy_events_received",
            "Authenticated deliveries from deploy event sources (github, gitlab, flux)",
            deploy_events_received.clone(),
        );
        let deploy_events_unrouted = Family::<SourceLabels, Counter>::default();
        registry.register(
            "deploy_events_unrouted",
            "Deploy events that matched no configured service or environment (audited as deploy_event.unrouted)",
            deploy_events_unrouted.clone(),
        );
        let incident_intervals = IncidentInterval::ALL
            .iter()
            .map(|interval| {
                let family =
                    Family::<TargetLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                        incident_histogram as fn() -> Histogram,
                    );
                let (name, help) = interval.name_and_help();
                registry.register(name, help, family.clone());
                family
            })
            .collect();
        Self {
            incident_intervals,
            deploy_events_received,
            deploy_events_unrouted,
            registry,
            http_connections_open,
            alerts_unrouted,
            chat_queue_peak,
            chat_dropped,
            alerts_received,
            summaries_posted,
            rollbacks,
            backend_calls,
            http_requests,
            chat_errors,
            discord_gateway_lease,
            rollbacks_running,
        }
    }

    pub fn alert_received(&self, source: &str) {
        self.alerts_received
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .inc();
    }

    pub fn summary_posted(&self, platform: &str) {
        self.summaries_posted
            .get_or_create(&PlatformLabels {
                platform: platform.to_owned(),
            })
            .inc();
    }

    /// `outcome`: succeeded, failed, stale, denied, expired, interrupted.
    pub fn rollback(&self, outcome: &str) {
        self.rollbacks
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn backend_call(&self, backend: &str, operation: &str, ok: bool, took: Duration) {
        self.backend_calls
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
                operation: operation.to_owned(),
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn http_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .observe(took.as_secs_f64());
    }

    pub fn chat_error(&self, platform: &str) {
        self.chat_errors
            .get_or_create(&PlatformLabels {
                platform: platform.to_owned(),
            })
            .inc();
    }

    /// A connection was accepted (`true`) or closed (`false`).
    pub fn http_connection(&self, opened: bool) {
        if opened {
            self.http_connections_open.inc();
        } else {
            self.http_connections_open.dec();
        }
    }

    /// HTTP connections being served right now.
    pub fn http_connections_open(&self) -> i64 {
        self.http_connections_open.get()
    }

    /// A webhook alert matched no configured service.
    pub fn alert_unrouted(&self) {
        self.alerts_unrouted.inc();
    }

    pub fn set_discord_gateway_lease(&self, held: bool) {
        self.discord_gateway_lease.set(i64::from(held));
    }

    pub fn set_rollbacks_running(&self, running: usize) {
        self.rollbacks_running
            .set(i64::try_from(running).unwrap_or(i64::MAX));
    }

    /// The gauge a chat queue raises to the most items it held at once.
    pub fn chat_queue_peak(&self, platform: &str, queue: &str) -> Gauge {
        self.chat_queue_peak
            .get_or_create(&QueueLabels {
                platform: platform.to_owned(),
                queue: queue.to_owned(),
            })
            .clone()
    }

    /// The counter of sends a chat queue dropped by its policy.
    pub fn chat_dropped(&self, platform: &str, queue: &str) -> Counter {
        self.chat_dropped
            .get_or_create(&QueueLabels {
                platform: platform.to_owned(),
                queue: queue.to_owned(),
            })
            .clone()
    }

    /// An authenticated delivery from a deploy event source.
    pub fn deploy_event_received(&self, source: &str) {
        self.deploy_events_received
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .inc();
    }

    /// A deploy event that matched no configured service or environment.
    pub fn deploy_event_unrouted(&self, source: &str) {
        self.deploy_events_unrouted
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .inc();
    }

    /// One incident's interval, in seconds.
    pub fn incident_interval(
        &self,
        interval: IncidentInterval,
        service: &str,
        environment: &str,
        seconds: u64,
    ) {
        let index = IncidentInterval::ALL
            .iter()
            .position(|i| *i == interval)
            .unwrap_or_default();
        if let Some(family) = self.incident_intervals.get(index) {
            family
                .get_or_create(&TargetLabels {
                    service: service.to_owned(),
                    environment: environment.to_owned(),
                })
                .observe(seconds as f64);
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
