use super::*;
use crate::core::audit::{AuditEntry, AuditSealer};
use crate::core::deploy::{Change, DeploySource, DeployStatus, Environment, ServiceName, Target};
use crate::core::policy::{Actor, Principal};
use crate::core::store::IncidentHistory;

fn at(minutes: i64, seconds: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-29T15:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
        + chrono::Duration::minutes(minutes)
        + chrono::Duration::seconds(seconds)
}

fn target() -> Target {
    Target::new(
        ServiceName::parse("checkout").expect("name"),
        Environment::parse("production").expect("env"),
    )
}

fn alice() -> Actor {
    Actor::new(
        Principal::parse("slack:U0ALICE").expect("principal"),
        "alice",
    )
}

/// Records as the bot writes them for group 7 and plan `p1`.
fn records() -> Vec<AuditRecord> {
    let sealer = AuditSealer::new(None);
    let entries = [
        AuditEntry::new(actions::ALERT_RECEIVED, at(0, 0)).details(serde_json::json!({
            "group": 7, "title": "HighErrorRate", "severity": "critical"})),
        AuditEntry::new(actions::SUMMARY_POSTED, at(0, 20)).details(serde_json::json!({
            "group": 7, "platform": "slack", "plan": "p1", "suspect": "v42"})),
        AuditEntry::new(actions::ALERT_RECEIVED, at(1, 0)).details(serde_json::json!({
            "group": 7, "title": "HighLatency", "severity": "warning"})),
        AuditEntry::new(actions::ROLLBACK_REQUESTED, at(2, 0))
            .actor(&alice())
            .details(serde_json::json!({"plan": "p1", "from": {"version": "v42"}, "to": {"version": "v41"}})),
        AuditEntry::new(actions::ROLLBACK_STARTED, at(2, 5))
            .actor(&alice())
            .details(serde_json::json!({"plan": "p1", "backend": "deployer", "from": {"version": "v42"}, "to": {"version": "v41"}})),
        AuditEntry::new(actions::ROLLBACK_SUCCEEDED, at(4, 0)).details(serde_json::json!({
            "plan": "p1", "from": {"version": "v42"}, "to": {"version": "v41"}, "took_ms": 115_000})),
        AuditEntry::new(actions::ALERT_RESOLVED, at(9, 0)).details(serde_json::json!({
            "group": 7, "title": "HighErrorRate"})),
    ];
    let mut prev = crate::core::audit::GENESIS_HASH.to_owned();
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let record = e
                .target(&target())
                .into_record(i as i64 + 1, prev.clone(), &sealer);
            prev = record.hash.clone();
            record
        })
        .collect()
}

fn suspect_deploy() -> Deploy {
    Deploy {
        target: target(),
        version: "v42".into(),
        previous_version: Some("v41".into()),
        revision: None,
        commit: Some("a1b2c3d4e5f6a7b8".into()),
        author: Some("dana".into()),
        description: None,
        url: None,
        started_at: at(-18, 0),
        finished_at: None,
        status: DeployStatus::Succeeded,
        changes: vec![Change {
            commit: "a1b2c3d4e5f6a7b8".into(),
            author: Some("dana".into()),
            message: "Cache *all* the things".into(),
        }],
        config_changes: vec![ConfigChange {
            key: "db_password".into(),
            old: Some("old-secret".into()),
            new: Some("new-secret".into()),
        }],
        source: DeploySource::Api,
    }
}

fn facts(chain: ChainState) -> IncidentFacts {
    IncidentFacts {
        group: AlertGroup {
            id: 7,
            key: "checkout/production".into(),
            target: Some(target()),
            title: "HighErrorRate".into(),
            opened_at: at(0, 0),
            last_alert_at: at(1, 0),
            alert_count: 2,
            firing_count: 0,
            resolved_at: Some(at(9, 0)),
        },
        records: records(),
        deploys: vec![suspect_deploy()],
        chain,
    }
}

#[test]
fn the_timeline_tells_the_incident_in_order_with_offsets_and_actors() {
    let incident = build(facts(ChainState::Verified));
    let lines: Vec<String> = incident
        .timeline
        .iter()
        .map(|e| format!("{} {} — {}", e.offset(), e.text, e.actor))
        .collect();
    assert_eq!(
        lines,
        [
            "-18 min Deploy v42 of checkout production (from v41), 1 commit(s); config changed: db_password — suspect — dana",
            "+0 s First alert: HighErrorRate (critical) — breakwater",
            "+20 s Summary posted on slack, suspect v42 — breakwater",
            "+1 min Grouped alert: HighLatency (warning) — breakwater",
            "+2 min Pressed Roll back (v42 → v41) — alice",
            "+2 min Rollback started on deployer (v42 → v41) — alice",
            "+4 min Rollback succeeded (v42 → v41) in 1 min — breakwater",
            "+9 min Alert resolved: HighErrorRate; incident resolved — breakwater",
        ]
    );
    assert_eq!(incident.title, "HighErrorRate on checkout production");
}

#[test]
fn durations_are_measured_between_the_first_records_of_each_kind() {
    let incident = build(facts(ChainState::Verified));
    assert_eq!(
        incident.durations,
        Durations {
            alert_to_summary: Some(20),
            alert_to_first_press: Some(120),
            press_to_rollback_finished: Some(120),
            rollback_finished_to_resolved: Some(300),
            alert_to_resolved: Some(540),
        }
    );
}

#[test]
fn an_unresolved_incident_has_no_resolution_durations() {
    let mut facts = facts(ChainState::Verified);
    facts.group.resolved_at = None;
    let incident = build(facts);
    assert_eq!(incident.durations.alert_to_resolved, None);
    assert_eq!(incident.durations.rollback_finished_to_resolved, None);
    assert!(!to_markdown(&incident).contains("incident resolved"));
}

#[test]
fn the_markdown_draft_has_the_suspect_change_masked_durations_and_empty_sections() {
    let markdown = to_markdown(&build(facts(ChainState::Verified)));
    assert!(markdown.starts_with("# Incident #7: HighErrorRate on checkout production\n"));
    assert!(
        markdown
            .contains("| 2026-11-29 15:02:00 | +2 min | alice | Pressed Roll back (v42 → v41) |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("- `a1b2c3d4e5f6` Cache \\*all\\* the things (dana)"),
        "{markdown}"
    );
    assert!(!markdown.contains("new-secret") && !markdown.contains("old-secret"));
    assert!(
        markdown.contains("| Alert → first press | 2 min (120 s) |"),
        "{markdown}"
    );
    assert!(
        markdown.ends_with(
            "## Impact\n\n\n## Root cause\n\n\n## What went well\n\n\n## Action items\n\n"
        ),
        "{markdown}"
    );
    assert!(!markdown.contains("Warning"));
}

#[test]
fn a_chain_that_does_not_verify_is_said_at_the_top() {
    let incident = build(facts(ChainState::Broken {
        problem: "record 3: hash mismatch".into(),
    }));
    let markdown = to_markdown(&incident);
    let second_block = markdown.split("\n\n").nth(1).unwrap_or_default();
    assert!(
        second_block.starts_with(
            "> **Warning:** The audit chain does not verify (record 3: hash mismatch)"
        ),
        "{markdown}"
    );
    let message = to_message(&incident, None);
    assert_eq!(message.tone, Tone::Warning);
    assert!(
        message
            .text
            .lines()
            .nth(1)
            .unwrap_or_default()
            .starts_with("The audit chain does not verify")
    );
}

#[test]
fn the_json_export_carries_the_timeline_and_durations() {
    let json: serde_json::Value =
        serde_json::from_str(&to_json(&build(facts(ChainState::Verified)))).expect("json");
    assert_eq!(json["id"], 7);
    assert_eq!(json["chain"]["state"], "verified");
    assert_eq!(json["durations"]["alert_to_resolved"], 540);
    assert_eq!(json["timeline"][4]["actor"], "alice");
    assert_eq!(
        json["suspect"]["config_changes"][0]["new"],
        crate::core::deploy::MASKED
    );
}

/// Seals `entries` after the fixture's records, continuing its chain.
fn extend(records: &mut Vec<AuditRecord>, entries: Vec<AuditEntry>) {
    let sealer = AuditSealer::new(None);
    for entry in entries {
        let last = records.last().expect("records");
        let record = entry
            .target(&target())
            .into_record(last.seq + 1, last.hash.clone(), &sealer);
        records.push(record);
    }
}

#[test]
fn marking_not_deploy_related_ends_the_incident_before_a_later_resolution() {
    let mut facts = facts(ChainState::Verified);
    // Dismissed at +1 min 30 s instead of rolled back; the alerts resolve at +9 min.
    facts.records.retain(|r| {
        ![
            actions::ROLLBACK_REQUESTED,
            actions::ROLLBACK_STARTED,
            actions::ROLLBACK_SUCCEEDED,
            actions::ALERT_RESOLVED,
        ]
        .contains(&r.action.as_str())
    });
    extend(
        &mut facts.records,
        vec![
            AuditEntry::new(actions::SUMMARY_DISMISSED, at(1, 30))
                .actor(&alice())
                .details(serde_json::json!({"plan": "p1"})),
            AuditEntry::new(actions::ALERT_RESOLVED, at(9, 0))
                .details(serde_json::json!({"group": 7, "title": "HighErrorRate"})),
        ],
    );
    let incident = build(facts);
    assert_eq!(
        incident.ended,
        Some(Ended {
            at: at(1, 30),
            how: Ending::NotDeployRelated
        })
    );
    assert_eq!(incident.durations.alert_to_resolved, None);
    let texts: Vec<&str> = incident.timeline.iter().map(|e| e.text.as_str()).collect();
    assert!(
        texts.contains(&"Marked not deploy-related; incident ended"),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"Alert resolved: HighErrorRate"),
        "{texts:?}"
    );
    assert!(to_markdown(&incident).contains("- State: ended: not deploy-related"));
}

#[test]
fn a_confirm_step_and_backend_progress_are_told_as_they_were_audited() {
    let mut facts = facts(ChainState::Verified);
    let started = facts
        .records
        .iter()
        .position(|r| r.action == actions::ROLLBACK_STARTED)
        .expect("started");
    let mut tail = facts.records.split_off(started);
    extend(
        &mut facts.records,
        vec![
            AuditEntry::new(actions::ROLLBACK_CONFIRMATION_REQUESTED, at(2, 2))
                .actor(&alice())
                .details(serde_json::json!({"plan": "p1", "from": "v42", "to": "v41"})),
        ],
    );
    // The rest of the story after the confirmation, re-sealed in order.
    let mut rest: Vec<AuditEntry> = Vec::new();
    for record in tail.drain(..) {
        let mut entry = AuditEntry::new(&record.action, record.at).details(record.details_value());
        if record.action == actions::ROLLBACK_STARTED {
            entry = entry.actor(&alice());
            rest.push(entry);
            rest.push(
                AuditEntry::new(actions::ROLLBACK_PROGRESS, at(3, 0))
                    .details(serde_json::json!({"plan": "p1", "line": "1/2 pods ready"})),
            );
            continue;
        }
        rest.push(entry);
    }
    extend(&mut facts.records, rest);
    let lines: Vec<String> = build(facts)
        .timeline
        .iter()
        .map(|e| format!("{} {} — {}", e.offset(), e.text, e.actor))
        .collect();
    assert!(
        lines.contains(&"+2 min Asked to confirm v42 → v41 — alice".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(
            &"+2 min Confirmed; rollback started on deployer (v42 → v41) — alice".to_owned()
        ),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"+3 min Backend progress: 1/2 pods ready — breakwater".to_owned()),
        "{lines:?}"
    );
}

fn group(id: i64, service: &str, opened_days_ago: i64, now: DateTime<Utc>) -> AlertGroup {
    let opened = now - chrono::Duration::days(opened_days_ago);
    AlertGroup {
        id,
        key: format!("{service}/production"),
        target: Some(Target::new(
            ServiceName::parse(service).expect("name"),
            Environment::parse("production").expect("env"),
        )),
        title: "HighErrorRate".into(),
        opened_at: opened,
        last_alert_at: opened,
        alert_count: 1,
        firing_count: 0,
        resolved_at: Some(opened + chrono::Duration::minutes(30)),
    }
}

#[test]
fn figures_give_median_and_worst_per_period_as_each_incident_measured_them() {
    let now = at(0, 0);
    let sealer = AuditSealer::new(None);
    let mut history = IncidentHistory::default();
    let mut seq = 0;
    // checkout: resolved after 4, 10 and 6 min this period; after 20 min the period before.
    for (id, days_ago, minutes) in [(1, 2, 4), (2, 5, 10), (3, 20, 6), (4, 40, 20)] {
        let mut g = group(id, "checkout", days_ago, now);
        let resolved = g.opened_at + chrono::Duration::minutes(minutes);
        g.resolved_at = Some(resolved);
        for (action, when) in [
            (actions::ALERT_RECEIVED, g.opened_at),
            (actions::ALERT_RESOLVED, resolved),
        ] {
            seq += 1;
            history.records.push(
                AuditEntry::new(action, when)
                    .details(serde_json::json!({"group": id}))
                    .into_record(seq, String::new(), &sealer),
            );
        }
        history.groups.push(g);
    }
    // Older than both periods: not counted.
    history.groups.push(group(5, "checkout", 70, now));
    history.records.sort_by_key(|r| r.at);

    let figures = figures(&history, now);
    let checkout = &figures.by_service["checkout"];
    assert_eq!(checkout.recent.incidents, 3);
    assert_eq!(
        checkout.recent.intervals[4],
        Some(Spread {
            measured: 3,
            median: 360,
            worst: 600
        })
    );
    assert_eq!(checkout.before.incidents, 1);
    assert_eq!(
        checkout.before.intervals[4],
        Some(Spread {
            measured: 1,
            median: 1200,
            worst: 1200
        })
    );
    assert_eq!(checkout.recent.intervals[1], None, "nobody pressed");
    assert!(!figures.incomplete);
}

#[test]
fn figures_and_the_timeline_measure_an_incident_the_same_way() {
    let facts = facts(ChainState::Verified);
    // The store knows plans by their real ids; the fixture's records name plan `p1`.
    let plan = crate::core::rollback::PlanId::generate();
    let records = facts
        .records
        .iter()
        .filter(|r| MILESTONE_ACTIONS.contains(&r.action.as_str()))
        .cloned()
        .map(|mut r| {
            let mut details = r.details_value();
            if details.get("plan").is_some() {
                details["plan"] = serde_json::json!(plan.to_string());
                r.details = details.to_string();
            }
            r
        })
        .collect();
    let history = IncidentHistory {
        groups: vec![facts.group.clone()],
        plans: vec![(plan, 7)],
        records,
        truncated: false,
    };
    let measured = history_durations(&history);
    assert_eq!(measured.len(), 1);
    assert_eq!(measured[0].1, build(facts).durations);
}

#[test]
fn records_of_other_kinds_add_no_lines() {
    let mut facts = facts(ChainState::Verified);
    let mut extra = facts.records[0].clone();
    extra.action = actions::CONSOLE_LOGIN.into();
    extra.seq = 99;
    facts.records.push(extra);
    assert_eq!(build(facts).timeline.len(), 8);
}
