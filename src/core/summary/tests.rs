use std::collections::BTreeMap;

use super::*;
use crate::core::alert::{AlertSource, AlertStatus};
use crate::core::deploy::{DeploySource, Environment};

fn at(minutes_from_alert: i64) -> DateTime<Utc> {
    alert_time() + chrono::Duration::minutes(minutes_from_alert)
}

fn alert_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-29T03:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

fn target() -> Target {
    Target::new(
        ServiceName::parse("checkout").expect("ok"),
        Environment::parse("production").expect("ok"),
    )
}

fn deploy(version: &str, finished_minutes_from_alert: i64) -> Deploy {
    Deploy {
        target: target(),
        version: version.into(),
        previous_version: None,
        revision: None,
        commit: Some(format!("{version}-sha")),
        author: Some("ada".into()),
        description: None,
        url: None,
        started_at: at(finished_minutes_from_alert - 3),
        finished_at: Some(at(finished_minutes_from_alert)),
        status: DeployStatus::Succeeded,
        changes: vec![],
        config_changes: vec![],
        source: DeploySource::Api,
    }
}

fn alert() -> Alert {
    Alert {
        source: AlertSource::Alertmanager,
        service: None,
        environment: None,
        severity: Severity::Critical,
        status: AlertStatus::Firing,
        title: "HighErrorRate".into(),
        description: String::new(),
        started_at: alert_time(),
        ended_at: None,
        labels: BTreeMap::new(),
        fingerprint: "f".into(),
        link: None,
    }
}

fn summarize_history(history: &[Deploy], current: Option<&str>) -> DeploySummary {
    let alert = alert();
    let target = target();
    let summary = summarize(SummaryInput {
        alert: &alert,
        target: &target,
        history,
        lookback: std::time::Duration::from_secs(6 * 3600),
        current: current.map(Revision::version),
        caveats: vec![],
        instances_started: None,
    });
    match summary.body {
        SummaryBody::Deploys(deploys) => *deploys,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn relative_times_read_naturally() {
    assert_eq!(
        relative_to_alert(at(-18), alert_time()),
        "18 min before the alert"
    );
    assert_eq!(
        relative_to_alert(at(-125), alert_time()),
        "2 h 5 min before the alert"
    );
    assert_eq!(
        relative_to_alert(at(3), alert_time()),
        "3 min after the alert"
    );
    assert_eq!(
        relative_to_alert(alert_time(), alert_time()),
        "less than a minute from the alert"
    );
}

#[test]
fn the_latest_deploy_before_the_alert_is_the_suspect_and_its_predecessor_the_target() {
    let history = [
        deploy("v42", -18),
        deploy("v41", -200),
        deploy("v40", -2000),
    ];
    let summary = summarize_history(&history, Some("v42"));
    assert!(summary.entries[0].suspect);
    assert_eq!(
        summary.entries[0].relative,
        "finished 18 min before the alert"
    );
    let offer = summary.offer.expect("offer");
    assert_eq!(
        (offer.from.version.as_str(), offer.to.version.as_str()),
        ("v42", "v41")
    );
}

fn config_change(minutes_from_alert: i64) -> Deploy {
    let mut change = deploy("configmap/checkout-env@912", minutes_from_alert);
    change.started_at = at(minutes_from_alert);
    change.commit = None;
    change.author = Some("kubectl-edit".into());
    change.description = Some("ConfigMap checkout-env changed".into());
    change.source = DeploySource::ConfigChange;
    change
}

#[test]
fn a_config_change_after_the_last_deploy_is_the_suspect_and_offers_no_code_rollback() {
    let history = [config_change(-12), deploy("v42", -60), deploy("v41", -200)];
    let summary = summarize_history(&history, Some("v42"));
    assert!(summary.entries[0].suspect);
    assert!(!summary.entries[1].suspect);
    assert_eq!(
        summary.entries[0].relative,
        "changed 12 min before the alert"
    );
    assert!(summary.offer.is_none());
    assert!(
        summary
            .no_offer_reason
            .as_deref()
            .is_some_and(|r| r.contains("ConfigMap checkout-env changed")),
        "{:?}",
        summary.no_offer_reason
    );
}

#[test]
fn a_config_change_after_every_pod_started_is_not_yet_picked_up() {
    assert_eq!(
        Pickup::of(at(-12), &[at(-60), at(-50)]),
        Some(Pickup::NotYet)
    );
}

#[test]
fn a_config_change_before_a_restart_is_live_since_the_first_pod_started_after_it() {
    assert_eq!(
        Pickup::of(at(-12), &[at(-8), at(-9)]),
        Some(Pickup::Live(at(-9)))
    );
}

#[test]
fn a_restart_halfway_through_counts_the_pods_that_have_the_change() {
    assert_eq!(
        Pickup::of(at(-12), &[at(-60), at(-5), at(-4)]),
        Some(Pickup::Partly {
            picked: 2,
            of: 3,
            since: at(-5)
        })
    );
    assert_eq!(Pickup::of(at(-12), &[]), None);
}

#[test]
fn only_config_changes_carry_a_pickup() {
    let history = [config_change(-12), deploy("v42", -60), deploy("v41", -200)];
    let alert = alert();
    let target = target();
    let started = [at(-30)];
    let summary = summarize(SummaryInput {
        alert: &alert,
        target: &target,
        history: &history,
        lookback: std::time::Duration::from_secs(6 * 3600),
        current: Some(Revision::version("v42")),
        caveats: vec![],
        instances_started: Some(&started),
    });
    let SummaryBody::Deploys(deploys) = summary.body else {
        panic!("a deploy summary")
    };
    let pickups: Vec<Option<Pickup>> = deploys.entries.iter().map(|e| e.pickup.clone()).collect();
    assert_eq!(pickups, [Some(Pickup::NotYet), None, None]);
}

#[test]
fn a_config_change_before_the_suspect_deploy_is_never_its_rollback_target() {
    let history = [deploy("v42", -18), config_change(-30), deploy("v41", -200)];
    let summary = summarize_history(&history, Some("v42"));
    assert!(summary.entries[0].suspect);
    let offer = summary.offer.expect("offer");
    assert_eq!(offer.to.version, "v41");
    assert_eq!(summary.entries[0].compare_from.as_deref(), Some("v41-sha"));
}

#[test]
fn a_deploy_still_rolling_out_is_the_suspect() {
    let mut rolling = deploy("v43", 5);
    rolling.started_at = at(-2);
    rolling.finished_at = None;
    rolling.status = DeployStatus::Started;
    let history = [rolling, deploy("v42", -60)];
    let summary = summarize_history(&history, Some("v43"));
    assert!(summary.entries[0].suspect);
    assert!(summary.entries[0].relative.starts_with("rolling out"));
    assert_eq!(summary.offer.expect("offer").to.version, "v42");
}

#[test]
fn deploys_after_the_alert_are_listed_but_never_suspect() {
    let history = [deploy("v43", 10), deploy("v42", -18), deploy("v41", -100)];
    let summary = summarize_history(&history, Some("v43"));
    assert!(summary.entries[0].after_alert && !summary.entries[0].suspect);
    assert!(summary.entries[1].suspect);
    let offer = summary.offer.expect("offer");
    assert_eq!(
        (offer.from.version.as_str(), offer.to.version.as_str()),
        ("v43", "v41")
    );
}

#[test]
fn failed_deploys_are_not_suspects_nor_targets() {
    let mut failed = deploy("v43", -5);
    failed.status = DeployStatus::Failed;
    let history = [failed, deploy("v42", -30), deploy("v41", -300)];
    let summary = summarize_history(&history, Some("v42"));
    assert!(!summary.entries[0].suspect && summary.entries[1].suspect);
    assert_eq!(summary.offer.expect("offer").to.version, "v41");
}

#[test]
fn a_failed_rollout_that_runs_is_the_prime_suspect_and_the_offer_is_the_last_healthy_one() {
    let mut stuck = deploy("v1.2.0", -10);
    stuck.status = DeployStatus::Failed;
    let history = [stuck, deploy("v1.1.0", -120), deploy("v1.0.0", -2000)];
    let summary = summarize_history(&history, Some("v1.2.0"));
    assert!(summary.entries[0].suspect && !summary.entries[1].suspect);
    let offer = summary.offer.expect("offer");
    assert_eq!(
        (offer.from.version.as_str(), offer.to.version.as_str()),
        ("v1.2.0", "v1.1.0")
    );
    let said = summary.failed_rollout.expect("said");
    assert!(
        said.starts_with("The latest rollout, v1.2.0, failed"),
        "{said}"
    );
    assert!(
        said.contains("v1.1.0 is the last revision that ran healthy"),
        "{said}"
    );
}

#[test]
fn an_empty_window_names_the_last_deploy_outside_it() {
    let history = [deploy("v41", -60 * 24)];
    let summary = summarize_history(&history, Some("v41"));
    assert!(summary.entries.is_empty());
    assert_eq!(
        summary.last_before_window.map(|d| d.version).as_deref(),
        Some("v41")
    );
    assert!(summary.offer.is_none());
    assert!(
        summary
            .no_offer_reason
            .expect("reason")
            .starts_with("No deploys to checkout production")
    );
}

#[test]
fn no_offer_without_a_known_current_revision() {
    let history = [deploy("v42", -18), deploy("v41", -200)];
    let summary = summarize_history(&history, None);
    assert!(summary.offer.is_none());
}

#[test]
fn no_offer_when_the_target_already_runs_the_predecessor() {
    let history = [deploy("v42", -18), deploy("v41", -200)];
    let summary = summarize_history(&history, Some("v41"));
    assert!(summary.offer.is_none());
}

#[test]
fn the_previous_version_reported_with_the_suspect_is_used_without_history() {
    let mut only = deploy("v42", -18);
    only.previous_version = Some("v41".into());
    let summary = summarize_history(&[only], Some("v42"));
    assert_eq!(summary.offer.expect("offer").to.version, "v41");
}

#[test]
fn the_offered_target_follows_the_reported_previous_version_over_start_order() {
    // v41 was reported after v42 (a late report, or a redeploy of an old version), but
    // v43's report says it replaced v42.
    let mut suspect = deploy("v43", -10);
    suspect.previous_version = Some("v42".into());
    let history = [suspect, deploy("v41", -60), deploy("v42", -120)];
    let summary = summarize_history(&history, Some("v43"));
    let offer = summary.offer.expect("offer");
    assert_eq!(offer.to.version, "v42");
    assert_eq!(offer.reason, "v43 is the suspect; v42 ran before it");
}

#[test]
fn a_reported_previous_version_missing_from_history_is_named_instead_of_another_offer() {
    let mut suspect = deploy("v43", -10);
    suspect.previous_version = Some("v42".into());
    let history = [suspect, deploy("v41", -60)];
    let summary = summarize_history(&history, Some("v43"));
    assert!(summary.offer.is_none());
    let reason = summary.no_offer_reason.expect("a reason");
    assert!(
        reason.contains("names v42 as the version before it") && reason.contains("v42"),
        "{reason}"
    );
}

#[test]
fn an_alert_at_the_edge_of_time_does_not_panic_the_summary() {
    let mut alert = alert();
    alert.started_at = DateTime::<Utc>::MIN_UTC;
    let target = target();
    let history = [deploy("v42", -18)];
    let summary = summarize(SummaryInput {
        alert: &alert,
        target: &target,
        history: &history,
        lookback: std::time::Duration::from_secs(6 * 3600),
        current: None,
        caveats: vec![],
        instances_started: None,
    });
    assert!(matches!(summary.body, SummaryBody::Deploys(_)));
}

#[test]
fn long_windows_are_cut_with_a_count() {
    let history: Vec<Deploy> = (0..12)
        .map(|i| deploy(&format!("v{}", 100 - i), -10 - i * 10))
        .collect();
    let summary = summarize_history(&history, Some("v100"));
    assert_eq!(summary.entries.len(), MAX_DEPLOYS);
    assert_eq!(summary.more, 4);
}

#[test]
fn an_age_names_the_end_of_the_deploy_it_is_measured_from() {
    let finished = deploy("v42", -19);
    assert_eq!(
        deploy_age(&finished, alert_time()),
        "finished 19 min before the alert"
    );
    let mut unfinished = deploy("v42", -19);
    unfinished.finished_at = None;
    unfinished.started_at = at(-25);
    assert_eq!(
        deploy_age(&unfinished, alert_time()),
        "started 25 min before the alert"
    );
    unfinished.status = DeployStatus::Started;
    assert_eq!(
        deploy_age(&unfinished, alert_time()),
        "rolling out, started 25 min before the alert"
    );
}

#[test]
fn each_entry_knows_what_ran_before_it_for_a_compare_link() {
    let mut v43 = deploy("v43", -10);
    v43.previous_version = Some("v42".into());
    let history = [v43, deploy("v42", -60), deploy("v41", -120)];
    let summary = summarize_history(&history, Some("v43"));
    let from: Vec<Option<&str>> = summary
        .entries
        .iter()
        .map(|e| e.compare_from.as_deref())
        .collect();
    assert_eq!(from, [Some("v42-sha"), Some("v41-sha"), None]);
}
