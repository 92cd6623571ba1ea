use super::*;
use crate::core::deploy::{ConfigChange, DeploySource, Environment, ServiceName};

fn deploy() -> Deploy {
    Deploy {
        target: Target::new(
            ServiceName::parse("checkout").expect("ok"),
            Environment::parse("production").expect("ok"),
        ),
        version: "v42".into(),
        previous_version: None,
        revision: None,
        commit: None,
        author: None,
        description: None,
        url: None,
        started_at: Utc::now(),
        finished_at: None,
        status: DeployStatus::Succeeded,
        changes: (0..7)
            .map(|i| crate::core::deploy::Change {
                commit: format!("c{i}"),
                author: None,
                message: format!("commit {i}"),
            })
            .collect(),
        config_changes: vec![
            ConfigChange {
                key: "DB_POOL_SIZE".into(),
                old: Some("20".into()),
                new: Some("2".into()),
            },
            ConfigChange {
                key: "API_TOKEN".into(),
                old: Some(MASKED.into()),
                new: Some(MASKED.into()),
            },
        ],
        source: DeploySource::Api,
    }
}

#[test]
fn at_most_five_commits_are_listed_then_a_count() {
    let lines: Vec<String> = deploy_details(&deploy(), None)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(lines.iter().filter(|l| l.contains("commit ")).count(), 5);
    assert!(lines.contains(&"+2 more commits".to_owned()));
}

#[test]
fn a_config_change_reads_as_the_object_changed_by_its_manager() {
    let mut change = deploy();
    change.version = "configmap/checkout-env@912".into();
    change.description = Some("ConfigMap checkout-env changed".into());
    change.author = Some("kubectl-edit".into());
    change.source = DeploySource::ConfigChange;
    change.finished_at = Some(change.started_at);
    let entry = DeployEntry {
        relative: "changed 12 min before the alert".into(),
        deploy: change,
        compare_from: None,
        suspect: true,
        after_alert: false,
        pickup: None,
    };
    let line = deploy_headline(&entry, None).to_string();
    assert!(
        line.starts_with("🔴 Suspect ⚙ ConfigMap checkout-env changed by kubectl-edit · changed 12 min before the alert ("),
        "{line}"
    );
    assert!(!line.contains("configmap/checkout-env@912"), "{line}");
}

#[test]
fn a_config_change_says_whether_the_running_pods_picked_it_up() {
    let mut change = deploy();
    change.description = Some("ConfigMap checkout-env changed".into());
    change.source = DeploySource::ConfigChange;
    let restart = DateTime::parse_from_rfc3339("2026-11-29T14:05:00Z")
        .expect("valid")
        .with_timezone(&Utc);
    let line = |pickup| {
        deploy_headline(
            &DeployEntry {
                relative: "changed 12 min before the alert".into(),
                deploy: change.clone(),
                compare_from: None,
                suspect: false,
                after_alert: false,
                pickup: Some(pickup),
            },
            None,
        )
        .to_string()
    };
    assert!(
        line(Pickup::NotYet).ends_with(" · not yet picked up by running pods"),
        "{}",
        line(Pickup::NotYet)
    );
    assert!(line(Pickup::Live(restart)).ends_with(" · live since 14:05 UTC"));
    assert!(
        line(Pickup::Partly {
            picked: 1,
            of: 3,
            since: restart
        })
        .ends_with(" · picked up by 1 of 3 running pods (since 14:05 UTC)")
    );
}

#[test]
fn config_changes_show_values_and_masked_secrets() {
    let lines: Vec<String> = deploy_details(&deploy(), None)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        lines.contains(&"config DB_POOL_SIZE: 20 → 2".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("config API_TOKEN") && l.contains("masked")),
        "{lines:?}"
    );
}

#[test]
fn labels_are_truncated_to_platform_limits() {
    let long = "x".repeat(200);
    assert_eq!(clip(&long, MAX_LABEL).chars().count(), MAX_LABEL);
}

mod threads {
    use std::collections::BTreeMap;

    use super::super::*;
    use crate::core::alert::{AlertSource, AlertStatus};
    use crate::core::deploy::{DeploySource, Environment, Revision, ServiceName};
    use crate::core::policy::{Actor, Principal};
    use crate::core::summary::{SummaryInput, summarize};

    /// 15:15 UTC on the day of the incident, plus `minutes`.
    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-29T15:15:00Z")
            .expect("valid")
            .with_timezone(&Utc)
            + chrono::Duration::minutes(minutes)
    }

    fn target() -> Target {
        Target::new(
            ServiceName::parse("checkout").expect("ok"),
            Environment::parse("production").expect("ok"),
        )
    }

    fn deploy(version: &str, commit: &str, finished: i64) -> Deploy {
        Deploy {
            target: target(),
            version: version.into(),
            previous_version: None,
            revision: None,
            commit: Some(commit.into()),
            author: Some("ada".into()),
            description: None,
            url: None,
            started_at: at(finished - 2),
            finished_at: Some(at(finished)),
            status: DeployStatus::Succeeded,
            changes: vec![crate::core::deploy::Change {
                commit: commit.into(),
                author: None,
                message: "Add retry".into(),
            }],
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
            started_at: at(0),
            ended_at: None,
            labels: BTreeMap::new(),
            fingerprint: "f".into(),
            link: None,
        }
    }

    fn summary() -> Summary {
        let alert = alert();
        let target = target();
        let history = [
            deploy("v42", "e4f5a6b", -19),
            deploy("v41", "a1b2c3d", -300),
        ];
        summarize(SummaryInput {
            alert: &alert,
            target: &target,
            history: &history,
            lookback: std::time::Duration::from_secs(6 * 3600),
            current: Some(Revision::version("v42")),
            caveats: vec![],
            instances_started: None,
        })
    }

    fn plan(state: PlanState) -> RollbackPlan {
        use crate::core::backend::Action;
        let alice = Actor::new(Principal::parse("console:alice").expect("ok"), "Alice");
        RollbackPlan {
            id: PlanId::generate(),
            target: target(),
            from: Revision::version("v42"),
            to: Revision::version("v41"),
            reason: "v42 is the suspect; v41 ran before it".into(),
            alert_group: Some(1),
            offered_at: at(1),
            expires_at: at(60),
            message: None,
            requested_by: None,
            state,
            approved_by: None,
            started_by: (state != PlanState::Offered).then(|| alice.clone()),
            started_at: (state != PlanState::Offered).then(|| at(3)),
            finished_at: state.is_final().then(|| at(4)),
            outcome: None,
            operation: None,
            verified_at: None,
            action: Action::Rollback,
        }
    }

    fn view(plan: Option<&RollbackPlan>) -> SummaryView<'_> {
        SummaryView {
            plan,
            grouped: 1,
            now: Some(at(2)),
            ..SummaryView::default()
        }
    }

    #[test]
    fn a_firing_summary_offers_the_rollback_and_stays_red() {
        let plan = plan(PlanState::Offered);
        let message = summary_message(&summary(), &view(Some(&plan)));
        assert_eq!(message.tone, Tone::Danger);
        assert!(
            message
                .buttons()
                .any(|(label, _)| label.starts_with("Roll back"))
        );
    }

    #[test]
    fn a_resolved_summary_says_so_in_its_title_and_turns_green() {
        let plan = plan(PlanState::Offered);
        let message = summary_message(
            &summary(),
            &SummaryView {
                resolved_at: Some(at(5)),
                ..view(Some(&plan))
            },
        );
        let title = message.title.clone().unwrap_or_default();
        assert!(title.starts_with("✅ Resolved at 15:20 UTC · "), "{title}");
        assert_eq!(message.tone, Tone::Success);
        assert!(!message.to_plain().contains('🚨'));
        assert!(
            message.text.ends_with("resolved at 15:20 UTC"),
            "{}",
            message.text
        );
    }

    #[test]
    fn a_resolved_summary_replaces_its_buttons_with_the_reason_and_the_command() {
        let plan = plan(PlanState::Offered);
        let message = summary_message(
            &summary(),
            &SummaryView {
                resolved_at: Some(at(5)),
                ..view(Some(&plan))
            },
        );
        assert_eq!(message.buttons().count(), 0, "{}", message.to_plain());
        assert!(
            message.to_plain().contains(
                "No rollback button: the alert resolved at 15:20 UTC — use /breakwater rollback checkout production if it is still needed."
            ),
            "{}",
            message.to_plain()
        );
        assert!(!message.text.contains("Roll back to"), "{}", message.text);
    }

    #[test]
    fn status_lines_read_in_time_order_with_the_latest_last() {
        let plan = plan(PlanState::Succeeded);
        let message = summary_message(
            &summary(),
            &SummaryView {
                resolved_at: Some(at(5)),
                ..view(Some(&plan))
            },
        );
        let plain = message.to_plain();
        let rolled_back = plain
            .find("✅ Rolled back checkout production")
            .expect("rollback line");
        let resolved = plain
            .find("✅ All alerts resolved at 15:20 UTC")
            .expect("resolved line");
        assert!(rolled_back < resolved, "{plain}");
        assert_eq!(
            message.status.map(|s| s.to_string()),
            Some("✅ All alerts resolved at 15:20 UTC".to_owned())
        );
    }

    #[test]
    fn a_rollback_after_the_resolution_is_the_last_status_line() {
        let plan = plan(PlanState::Succeeded);
        let message = summary_message(
            &summary(),
            &SummaryView {
                resolved_at: Some(at(2)),
                ..view(Some(&plan))
            },
        );
        let status = message.status.map(|s| s.to_string()).unwrap_or_default();
        assert!(
            status.starts_with("✅ Rolled back checkout production"),
            "{status}"
        );
    }

    #[test]
    fn the_alert_line_gives_its_own_start_and_the_receipt_as_a_detail_with_zones() {
        let message = summary_message(
            &summary(),
            &SummaryView {
                received_at: Some(at(4)),
                ..view(None)
            },
        );
        assert!(
            message
                .to_plain()
                .contains("HighErrorRate (critical) fired at 15:15 UTC, received 15:19 UTC"),
            "{}",
            message.to_plain()
        );
    }

    #[test]
    fn a_deploys_age_names_its_end_and_its_clock_time() {
        let message = summary_message(&summary(), &view(None));
        assert!(
            message
                .to_plain()
                .contains("v42 by ada · finished 19 min before the alert (14:56 UTC)"),
            "{}",
            message.to_plain()
        );
    }

    #[test]
    fn commits_and_compares_link_to_the_repository() {
        let links = ServiceLinks {
            repository: Some(
                Repository::parse("https://github.com/acme/checkout", None).expect("ok"),
            ),
            owners: vec!["@checkout-oncall".into()],
        };
        let message = summary_message(
            &summary(),
            &SummaryView {
                links: Some(&links),
                ..view(None)
            },
        );
        let plain = message.to_plain();
        for url in [
            "https://github.com/acme/checkout/commit/e4f5a6b",
            "https://github.com/acme/checkout/compare/a1b2c3d...e4f5a6b",
        ] {
            assert!(
                plain.contains(&format!("<{url}>")),
                "{url} missing:\n{plain}"
            );
        }
        assert!(plain.contains("Owners: @checkout-oncall"), "{plain}");
    }

    #[test]
    fn with_a_public_url_the_summary_links_to_the_console_pages_of_the_service() {
        let console = ConsoleLinks::new("https://bw.example.com");
        let message = summary_message(
            &summary(),
            &SummaryView {
                console: Some(&console),
                ..view(None)
            },
        );
        let plain = message.to_plain();
        assert!(
            plain.contains(
                "Deploys of checkout <https://bw.example.com/console/deploys?service=checkout>"
            ),
            "{plain}"
        );
        assert!(
            plain.contains("Audit records <https://bw.example.com/console/audit?service=checkout>"),
            "{plain}"
        );
    }

    #[test]
    fn with_a_public_url_the_summary_links_to_the_incident_page() {
        let console = ConsoleLinks::new("https://bw.example.com/");
        let message = summary_message(
            &summary(),
            &SummaryView {
                console: Some(&console),
                incident: Some(7),
                ..view(None)
            },
        );
        let plain = message.to_plain();
        assert!(
            plain.contains("Incident timeline <https://bw.example.com/console/incidents/7>"),
            "{plain}"
        );
    }

    #[test]
    fn without_a_repository_commits_stay_plain_code() {
        let message = summary_message(&summary(), &view(None));
        assert!(!message.to_plain().contains("github.com"));
    }

    #[test]
    fn a_resolved_alert_post_loses_its_siren_and_red() {
        let message = alert_post_resolved(&alert(), Some(&target()), at(5));
        assert_eq!(message.tone, Tone::Success);
        assert!(!message.to_plain().contains('🚨'), "{}", message.to_plain());
        assert_eq!(
            message.text,
            "✅ HighErrorRate (critical) on checkout production — resolved at 15:20 UTC"
        );
    }

    #[test]
    fn a_private_reply_about_a_finished_plan_becomes_its_outcome() {
        let mut plan = plan(PlanState::Succeeded);
        plan.message = Some(crate::core::message::MessageRef {
            platform: crate::core::message::Platform::Discord,
            channel: "1".into(),
            id: "2".into(),
            thread: None,
        });
        let message = private_outcome(&plan, at(5));
        assert!(
            message
                .text
                .starts_with("✅ Rolled back checkout production from v42 to v41"),
            "{}",
            message.text
        );
        assert!(message.text.ends_with("The thread has the details."));
        assert_eq!(message.tone, Tone::Success);
    }

    #[test]
    fn a_private_reply_about_a_plan_without_a_thread_does_not_point_to_one() {
        let message = private_outcome(&plan(PlanState::Failed), at(5));
        assert!(
            message.text.starts_with("❌ Rollback of"),
            "{}",
            message.text
        );
        assert!(!message.text.contains("thread"), "{}", message.text);
        assert_eq!(message.tone, Tone::Danger);
    }

    #[test]
    fn the_deploys_command_names_the_end_of_each_deploy_with_its_zone_and_links_commits() {
        let repository = Repository::parse("https://gitlab.com/acme/checkout", None).expect("ok");
        let message = deploy_list(
            "Recent deploys of checkout",
            &[deploy("v42", "e4f5a6b", -19)],
            at(1),
            &|_| Some(repository.clone()),
        );
        let plain = message.to_plain();
        assert!(
            plain.contains("v42 by ada · finished 14:56 UTC, 20 min ago · succeeded"),
            "{plain}"
        );
        assert!(
            plain.contains("<https://gitlab.com/acme/checkout/-/commit/e4f5a6b>"),
            "{plain}"
        );
    }
}
