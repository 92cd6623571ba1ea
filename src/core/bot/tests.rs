use super::*;
use crate::core::deploy::DeploySource;

fn deploy(version: &str, minutes: i64, source: DeploySource) -> Deploy {
    let at = DateTime::parse_from_rfc3339("2026-11-29T03:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
        + chrono::Duration::minutes(minutes);
    Deploy {
        target: Target::new(
            ServiceName::parse("checkout").expect("ok"),
            Environment::parse("production").expect("ok"),
        ),
        version: version.into(),
        previous_version: None,
        revision: None,
        commit: None,
        author: None,
        description: None,
        url: None,
        started_at: at,
        finished_at: Some(at),
        status: DeployStatus::Succeeded,
        changes: vec![],
        config_changes: vec![],
        source,
    }
}

#[test]
fn people_describing_a_problem_are_heard() {
    for text in [
        "checkout prod is throwing 500s",
        "checkout production is down",
        "seeing elevated latency on checkout",
        "checkout 🔥",
    ] {
        assert!(describes_a_problem(text), "{text}");
    }
}

#[test]
fn people_merely_mentioning_a_service_are_not_an_alert() {
    for text in [
        "deployed checkout v42 to production",
        "who owns checkout?",
        "checkout standup in 5",
    ] {
        assert!(!describes_a_problem(text), "{text}");
    }
}

#[test]
fn backend_history_merges_into_reported_deploys_one_entry_per_version() {
    let mut registry = vec![deploy("v2", 0, DeploySource::Api)];
    let mut from_backend = deploy("v2", 0, DeploySource::Backend);
    from_backend.revision = Some("7".into());
    let older = deploy("v1", -60, DeploySource::Backend);
    merge_history(&mut registry, vec![from_backend, older]);
    assert_eq!(registry.len(), 2);
    assert_eq!(registry[0].revision.as_deref(), Some("7"));
    assert_eq!(registry[1].version, "v1");
}

#[test]
fn a_rollout_the_backend_saw_fail_is_failed_even_when_ci_reported_it_succeeded() {
    let mut registry = vec![deploy("v2", 0, DeploySource::Api)];
    let mut stuck = deploy("v2", 0, DeploySource::Backend);
    stuck.status = DeployStatus::Failed;
    merge_history(&mut registry, vec![stuck]);
    assert_eq!(registry[0].status, DeployStatus::Failed);
    assert_eq!(registry[0].source, DeploySource::Api);
}

fn reply(event_id: &str, in_place: bool) -> PrivateReply {
    PrivateReply {
        platform: Platform::Discord,
        event_id: event_id.to_owned(),
        pressed: None,
        in_place,
    }
}

fn person(name: &str) -> Actor {
    Actor::new(
        Principal::parse(&format!("discord:{name}")).expect("principal"),
        name,
    )
}

#[test]
fn a_confirm_answered_in_place_takes_over_that_persons_open_step() {
    let mut replies = PrivateReplies::default();
    let plan = PlanId::generate();
    replies.add(plan, &person("1"), reply("alice-step", false));
    replies.add(plan, &person("2"), reply("bob-step", false));
    replies.add(plan, &person("1"), reply("alice-confirm", true));
    let left: Vec<String> = replies
        .take(&plan)
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    assert_eq!(left, ["bob-step", "alice-confirm"]);
    assert!(replies.take(&plan).is_empty(), "taken once");
}

#[test]
fn private_replies_are_kept_for_a_bounded_number_of_plans() {
    let mut replies = PrivateReplies::default();
    let first = PlanId::generate();
    replies.add(first, &person("1"), reply("first", false));
    for _ in 0..PRIVATE_REPLY_PLANS {
        replies.add(PlanId::generate(), &person("1"), reply("later", false));
    }
    assert!(
        replies.take(&first).is_empty(),
        "the oldest plan is forgotten"
    );
    assert_eq!(replies.by_plan.len(), PRIVATE_REPLY_PLANS);
}

fn running_plan(action: Action, to: &str) -> RollbackPlan {
    let at = DateTime::parse_from_rfc3339("2026-11-29T03:00:00Z")
        .expect("valid")
        .with_timezone(&Utc);
    RollbackPlan {
        id: PlanId::generate(),
        target: Target::new(
            ServiceName::parse("checkout").expect("ok"),
            Environment::parse("production").expect("ok"),
        ),
        from: Revision::version("v42"),
        to: Revision::version(to),
        reason: "HighErrorRate".into(),
        alert_group: None,
        offered_at: at,
        expires_at: at,
        message: None,
        requested_by: None,
        state: PlanState::Running,
        approved_by: None,
        started_by: None,
        started_at: Some(at),
        finished_at: None,
        outcome: None,
        operation: None,
        verified_at: None,
        action,
    }
}

#[test]
fn an_interrupted_restore_says_the_configmap_may_already_hold_the_restored_data() {
    let plan = running_plan(Action::RestoreConfig, "checkout-env as before 14:02 UTC");

    let words = lifecycle::interrupted_words(&plan, "v42");

    assert!(
        words.contains("the ConfigMap may already hold checkout-env as before 14:02 UTC"),
        "{words}"
    );
    assert!(words.contains("kubectl rollout restart"), "{words}");
    assert!(!words.contains("now runs"), "{words}");
}

#[test]
fn an_interrupted_rollback_names_what_the_target_runs_now() {
    let plan = running_plan(Action::Rollback, "v41");

    let words = lifecycle::interrupted_words(&plan, "v42");

    assert!(
        words.contains("checkout production now runs v42"),
        "{words}"
    );
}
