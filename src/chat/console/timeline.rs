//! The timeline picture on the deploys page: deploys and alerts of one service on one
//! time axis, one row per environment, drawn as SVG on the server. On-call engineers see
//! at a glance which deploy an alert followed.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::html::escape;
use crate::core::clock::{saturating_add, saturating_sub};
use crate::core::deploy::{Deploy, DeploySource, DeployStatus};
use crate::store::AlertGroup;

/// An alert group as drawn: at the time its first alert fired (its source's own start
/// time), not when breakwater received it, which can be minutes later.
#[derive(Clone, Copy)]
pub(crate) struct AlertMark<'a> {
    pub(crate) group: &'a AlertGroup,
    pub(crate) fired_at: DateTime<Utc>,
}

const WIDTH: f64 = 900.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 20.0;
const ROW: f64 = 36.0;
const TOP: f64 = 16.0;
const AXIS: f64 = 28.0;
/// The shortest span drawn, so that a single deploy is not a point on an empty axis.
const MIN_SPAN_HOURS: i64 = 6;

/// The recent past drawn again on its own, when the overview spans days: an incident's
/// deploy, alert and rollback are minutes apart and would sit on top of each other.
const DETAIL_HOURS: i64 = 2;
/// Labels closer than this (in SVG units) to the one drawn before are left out; the
/// marker keeps its tooltip.
const LABEL_GAP: f64 = 56.0;

/// The overview, and a close-up of the last two hours when something happened in them
/// and the overview spans more than a day. Inline `<svg>`s with text alternatives.
pub(crate) fn svg(
    service: &str,
    deploys: &[Deploy],
    alerts: &[AlertMark<'_>],
    now: DateTime<Utc>,
) -> String {
    let earliest = deploys
        .iter()
        .map(|d| d.started_at)
        .chain(alerts.iter().map(|a| a.fired_at))
        .min()
        .unwrap_or(now);
    // Saturating shifts: a stored time near chrono's limits (an old, unchecked report)
    // must draw badly rather than panic the page.
    let start = saturating_sub(
        earliest.min(saturating_sub(
            now,
            chrono::TimeDelta::hours(MIN_SPAN_HOURS),
        )),
        chrono::TimeDelta::minutes(30),
    );
    let mut out = draw(service, View::Overview, deploys, alerts, start, now);
    let detail_start = saturating_sub(now, chrono::TimeDelta::hours(DETAIL_HOURS));
    let recent_deploys: Vec<Deploy> = deploys
        .iter()
        .filter(|d| d.started_at >= detail_start)
        .cloned()
        .collect();
    let recent_alerts: Vec<AlertMark<'_>> = alerts
        .iter()
        .copied()
        .filter(|a| a.fired_at >= detail_start)
        .collect();
    let recent = !recent_deploys.is_empty() || !recent_alerts.is_empty();
    if recent && now - start > chrono::Duration::hours(24) {
        out.push_str(&draw(
            service,
            View::Recent,
            &recent_deploys,
            &recent_alerts,
            detail_start,
            now,
        ));
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    Overview,
    Recent,
}

impl View {
    fn name(self) -> &'static str {
        match self {
            Self::Overview => "overview",
            Self::Recent => "last two hours",
        }
    }
}

fn draw(
    service: &str,
    view: View,
    deploys: &[Deploy],
    alerts: &[AlertMark<'_>],
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> String {
    let mut environments: BTreeSet<String> = deploys
        .iter()
        .map(|d| d.target.environment.as_str().to_owned())
        .collect();
    for alert in alerts {
        if let Some(target) = &alert.group.target {
            environments.insert(target.environment.as_str().to_owned());
        }
    }
    if environments.is_empty() {
        return String::new();
    }
    let span = (now - start).num_seconds().max(1) as f64;
    let x = |at: DateTime<Utc>| -> f64 {
        let offset = (at - start).num_seconds().clamp(0, span as i64) as f64;
        LEFT + offset / span * (WIDTH - LEFT - RIGHT)
    };
    let rows: Vec<String> = environments.into_iter().collect();
    let height = TOP + ROW * rows.len() as f64 + AXIS;
    let title_id = format!(
        "tl-{}-{}",
        escape(service),
        if view == View::Overview {
            "all"
        } else {
            "recent"
        }
    );
    let mut out = String::new();
    let _ = write!(
        out,
        "<figure class=\"timeline\"><div class=\"scroll\" role=\"region\" tabindex=\"0\" \
         aria-labelledby=\"{title_id}\"><svg role=\"img\" aria-labelledby=\"{title_id}\" \
         viewBox=\"0 0 {WIDTH} {height}\" width=\"100%\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"{title_id}\">Timeline ({}) of {} deploys and {} alerts for {}</title>",
        view.name(),
        deploys.len(),
        alerts.len(),
        escape(service)
    );
    for (i, environment) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64 + ROW / 2.0;
        let _ = write!(
            out,
            "<text class=\"env\" x=\"8\" y=\"{:.1}\">{}</text><line class=\"lane\" x1=\"{LEFT}\" \
             y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/>",
            y + 4.0,
            escape(environment),
            WIDTH - RIGHT
        );
        let mut row: Vec<&Deploy> = deploys
            .iter()
            .filter(|d| d.target.environment.as_str() == environment)
            .collect();
        // Newest first, so that the latest deploy keeps its label when labels crowd.
        row.sort_by_key(|d| std::cmp::Reverse(d.started_at));
        let mut last_label: Option<f64> = None;
        for deploy in row {
            let cx = x(deploy.started_at);
            let rollback = deploy.source == DeploySource::Rollback;
            let class = match (rollback, deploy.status) {
                (true, _) => "rollback",
                (false, DeployStatus::Failed) => "failed",
                (false, DeployStatus::Started) => "started",
                (false, DeployStatus::Succeeded) if !deploy.config_changes.is_empty() => "config",
                (false, DeployStatus::Succeeded) => "deploy",
            };
            let _ = write!(
                out,
                "<g class=\"{class}\"><circle cx=\"{cx:.1}\" cy=\"{y:.1}\" r=\"7\"><title>{} {} at {}{}</title></circle>",
                if rollback { "Rollback to" } else { "Deploy of" },
                escape(&deploy.version),
                deploy.started_at.format("%Y-%m-%d %H:%M UTC"),
                if deploy.config_changes.is_empty() {
                    ""
                } else {
                    " (with configuration changes)"
                },
            );
            if last_label.is_none_or(|previous| (previous - cx).abs() >= LABEL_GAP) {
                last_label = Some(cx);
                let _ = write!(
                    out,
                    "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                    y - 11.0,
                    escape(&deploy.version),
                );
            }
            out.push_str("</g>");
        }
        for mark in alerts.iter().filter(|a| {
            a.group
                .target
                .as_ref()
                .is_some_and(|t| t.environment.as_str() == environment)
        }) {
            let alert = mark.group;
            let ax = x(mark.fired_at);
            let _ = write!(
                out,
                "<g class=\"alert{}\"><path d=\"M{ax:.1} {:.1} l7 12 h-14 z\"><title>Alert {} fired {} (received {}){}</title></path></g>",
                if alert.resolved_at.is_some() {
                    " resolved"
                } else {
                    ""
                },
                y + 2.0,
                escape(&alert.title),
                mark.fired_at.format("%Y-%m-%d %H:%M UTC"),
                alert.opened_at.format("%H:%M UTC"),
                match alert.resolved_at {
                    Some(at) => format!(", resolved {}", at.format("%H:%M UTC")),
                    None => ", still firing".to_owned(),
                }
            );
        }
    }
    let axis_y = TOP + ROW * rows.len() as f64 + 6.0;
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{axis_y:.1}\" x2=\"{:.1}\" y2=\"{axis_y:.1}\"/>",
        WIDTH - RIGHT
    );
    for step in 0..=4 {
        let at = saturating_add(
            start,
            chrono::TimeDelta::try_seconds((span * f64::from(step) / 4.0) as i64)
                .unwrap_or(chrono::TimeDelta::MAX),
        );
        let label = if span > 86_400.0 {
            at.format("%b %d %H:%M UTC").to_string()
        } else {
            at.format("%H:%M UTC").to_string()
        };
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            x(at),
            axis_y + 16.0,
        );
    }
    let _ = write!(
        out,
        "</svg></div><figcaption>{}: circles are deploys (outlined: with configuration changes; \
         green: rollbacks), triangles are alerts, at the time they fired. Times in UTC.</figcaption></figure>",
        if view == View::Overview {
            "Overview"
        } else {
            "The last two hours"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::deploy::{Environment, ServiceName, Target};

    fn deploy(version: &str, minutes_ago: i64, now: DateTime<Utc>) -> Deploy {
        Deploy {
            target: Target::new(
                ServiceName::parse("checkout").expect("name"),
                Environment::parse("production").expect("env"),
            ),
            version: version.into(),
            previous_version: None,
            revision: None,
            commit: None,
            author: None,
            description: None,
            url: None,
            started_at: now - chrono::Duration::minutes(minutes_ago),
            finished_at: None,
            status: DeployStatus::Succeeded,
            changes: Vec::new(),
            config_changes: Vec::new(),
            source: DeploySource::Api,
        }
    }

    #[test]
    fn a_deploy_recorded_at_the_edge_of_time_draws_without_panicking() {
        let now = Utc::now();
        let mut ancient = deploy("v0", 0, now);
        ancient.started_at = DateTime::<Utc>::MIN_UTC;
        let mut future = deploy("v9", 0, now);
        future.started_at = DateTime::<Utc>::MAX_UTC;
        let out = svg(
            "checkout",
            &[future, ancient, deploy("v2", 30, now)],
            &[],
            now,
        );
        assert!(out.contains("<svg"), "{out}");
    }

    #[test]
    fn the_timeline_draws_each_deploy_and_alert_with_escaped_labels() {
        let now = Utc::now();
        let group = AlertGroup {
            id: 1,
            key: "checkout/production".into(),
            target: Some(deploy("x", 0, now).target),
            title: "<HighErrorRate>".into(),
            opened_at: now - chrono::Duration::minutes(5),
            last_alert_at: now,
            alert_count: 1,
            firing_count: 1,
            resolved_at: None,
        };
        let out = svg(
            "checkout",
            &[deploy("v2", 30, now), deploy("v1<", 600, now)],
            &[AlertMark {
                group: &group,
                fired_at: group.opened_at,
            }],
            now,
        );
        assert_eq!(out.matches("<circle").count(), 2, "{out}");
        assert_eq!(out.matches("<path").count(), 1, "{out}");
        assert!(out.contains("Alert &lt;HighErrorRate&gt;"), "{out}");
        assert!(out.contains("v1&lt;"), "{out}");
        assert!(out.contains("role=\"img\""), "{out}");
    }

    /// The x coordinate of the first alert marker's tip.
    fn alert_x(out: &str) -> f64 {
        let start = out.find("<path d=\"M").expect("an alert marker") + "<path d=\"M".len();
        out[start..]
            .split(' ')
            .next()
            .and_then(|x| x.parse().ok())
            .expect("a coordinate")
    }

    #[test]
    fn an_alert_is_drawn_when_it_fired_and_its_arrival_is_only_in_the_tooltip() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T15:30:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let received = now - chrono::Duration::minutes(11);
        let group = AlertGroup {
            id: 1,
            key: "checkout/production".into(),
            target: Some(deploy("x", 0, now).target),
            title: "HighErrorRate".into(),
            opened_at: received,
            last_alert_at: received,
            alert_count: 1,
            firing_count: 1,
            resolved_at: None,
        };
        let draw_at = |fired_at| {
            svg(
                "checkout",
                &[deploy("v2", 60, now)],
                &[AlertMark {
                    group: &group,
                    fired_at,
                }],
                now,
            )
        };
        let fired = draw_at(now - chrono::Duration::minutes(15));
        assert!(
            fired.contains("Alert HighErrorRate fired 2026-11-30 15:15 UTC (received 15:19 UTC)"),
            "{fired}"
        );
        let as_received = draw_at(received);
        assert!(
            alert_x(&fired) < alert_x(&as_received),
            "the marker sits at the firing time, left of the arrival"
        );
    }

    #[test]
    fn the_axis_labels_name_their_zone() {
        let now = Utc::now();
        let out = svg("checkout", &[deploy("v2", 30, now)], &[], now);
        assert_eq!(out.matches("UTC</text>").count(), 5, "{out}");
    }

    #[test]
    fn the_picture_scrolls_in_its_own_box_rather_than_shrinking() {
        let now = Utc::now();
        let out = svg("checkout", &[deploy("v2", 30, now)], &[], now);
        assert!(
            out.contains("<div class=\"scroll\" role=\"region\" tabindex=\"0\""),
            "{out}"
        );
    }

    #[test]
    fn recent_events_get_a_close_up_when_the_overview_spans_days() {
        let now = Utc::now();
        let out = svg(
            "checkout",
            &[deploy("v3", 20, now), deploy("v1", 3 * 24 * 60, now)],
            &[],
            now,
        );
        assert_eq!(out.matches("<svg").count(), 2, "{out}");
        assert!(
            out.contains("Timeline (last two hours) of 1 deploys"),
            "{out}"
        );
        let short = svg("checkout", &[deploy("v3", 20, now)], &[], now);
        assert_eq!(short.matches("<svg").count(), 1, "{short}");
    }

    #[test]
    fn crowded_labels_are_left_out_but_the_newest_keeps_its_label() {
        let now = Utc::now();
        let out = svg(
            "checkout",
            &[deploy("v2", 10, now), deploy("v1", 11, now)],
            &[],
            now,
        );
        assert!(out.contains(">v2</text>"), "{out}");
        assert!(!out.contains(">v1</text>"), "{out}");
        assert!(
            out.contains("Deploy of v1 at"),
            "the marker keeps its tooltip: {out}"
        );
    }

    #[test]
    fn nothing_is_drawn_without_deploys_or_alerts() {
        assert_eq!(svg("checkout", &[], &[], Utc::now()), "");
    }
}
