//! What the bot says, as neutral messages: the alert post, the deploy summary with its
//! buttons, status lines for each plan state, the confirmation step, command answers.
//! Every platform renders these same messages, so wording lives in one place.

use chrono::{DateTime, Utc};

use super::alert::{Alert, Severity};
use super::backend::Remedy;
use super::deploy::{Deploy, DeployStatus, MASKED, Target};
use super::message::{
    Action, ButtonAction, ButtonKind, ButtonStyle, Confirmation, Message, RichText, Section, Tone,
};
use super::rollback::{PlanId, PlanState, RollbackPlan};
use super::summary::{DeployEntry, MAX_COMMITS, Summary, SummaryBody, human_span};

/// Buttons and labels stay within the platforms' limits (Slack 75, Discord 80).
const MAX_LABEL: usize = 75;

fn clock(at: DateTime<Utc>) -> String {
    at.format("%H:%M UTC").to_string()
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn severity_tone(severity: Severity) -> Tone {
    match severity {
        Severity::Critical | Severity::Error => Tone::Danger,
        Severity::Warning => Tone::Warning,
        Severity::Info | Severity::Unknown => Tone::Info,
    }
}

/// The message the bot posts for an alert that arrived by webhook, so that it has a
/// thread to answer in.
pub fn alert_post(alert: &Alert, target: Option<&Target>) -> Message {
    let about = target.map(|t| format!(" on {t}")).unwrap_or_default();
    let text = format!("🚨 {} ({}){about}", alert.title, alert.severity);
    let mut sections = vec![Section::Text {
        text: RichText::new()
            .plain("🚨 ")
            .bold(alert.title.clone())
            .plain(format!(" ({}){about}", alert.severity)),
    }];
    if !alert.description.trim().is_empty() {
        sections.push(Section::Text {
            text: RichText::new().plain(truncate(alert.description.trim(), 500)),
        });
    }
    let mut context = RichText::new().plain(format!(
        "{} · started {}",
        alert.source,
        clock(alert.started_at)
    ));
    if let Some(link) = &alert.link {
        context = context.plain(" · ").link("open in source", link.clone());
    }
    sections.push(Section::Context { text: context });
    Message {
        text,
        title: None,
        tone: severity_tone(alert.severity),
        sections,
        actions: vec![],
        status: None,
    }
}

/// How the summary should look now: which plan its button belongs to and what happened
/// to the alert group since it was posted.
#[derive(Debug, Clone, Default)]
pub struct SummaryView<'a> {
    pub plan: Option<&'a RollbackPlan>,
    /// Alerts in the group so far.
    pub grouped: i64,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Offer the Argo CD "disable auto-sync, then roll back" action.
    pub offer_remedy: bool,
    pub now: Option<DateTime<Utc>>,
}

pub fn summary_message(summary: &Summary, view: &SummaryView<'_>) -> Message {
    let mut sections = Vec::new();
    let mut alert_line = RichText::new()
        .bold(summary.alert_title.clone())
        .plain(format!(
            " ({}) fired at {}",
            summary.severity,
            clock(summary.alert_started_at)
        ));
    if let Some(link) = &summary.link {
        alert_line = alert_line.plain(" · ").link("alert", link.clone());
    }
    sections.push(Section::Text { text: alert_line });

    let (title, text, actions, tone) = match &summary.body {
        SummaryBody::UnknownService { known, looked_at } => {
            let names: Vec<String> = known.iter().map(ToString::to_string).collect();
            let known_text = if names.is_empty() {
                "none are configured".to_owned()
            } else {
                names.join(", ")
            };
            let labels_text = if looked_at.is_empty() {
                format!(
                    "It has none of the labels I read a service from ({}), and its text names no service I know.",
                    crate::core::alert::service_label_keys()
                        .iter()
                        .take(4)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                format!(
                    "Labels I looked at: {}.",
                    looked_at
                        .iter()
                        .map(|(key, value)| format!("{key}={value}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let line = format!(
                "Not matched to a service: I could not tell which service this alert is about. {labels_text} Services I know: {known_text}."
            );
            sections.push(Section::Text {
                text: RichText::new().plain(line.clone()),
            });
            sections.push(Section::Context {
                text: RichText::new().plain("Add a `service` label to the alert, or an alias to the service in breakwater's config. ")
                    .plain("/breakwater deploys SERVICE ENV lists deploys by hand."),
            });
            (
                "Which service?".to_owned(),
                format!("{}: {line}", summary.alert_title),
                vec![],
                Tone::Warning,
            )
        }
        SummaryBody::UnknownEnvironment { service, known } => {
            let line = format!(
                "{service} runs in {}; the alert does not say which.",
                known.join(", ")
            );
            sections.push(Section::Text {
                text: RichText::new().plain(line.clone()),
            });
            sections.push(Section::Context {
                text: RichText::new().plain(format!("/breakwater deploys {service} ENV lists its deploys; add an `environment` label to the alert to get them here.")),
            });
            (
                format!("{service} — which environment?"),
                format!("{}: {line}", summary.alert_title),
                vec![],
                Tone::Warning,
            )
        }
        SummaryBody::Deploys(deploys) => {
            let title = format!("{} · recent deploys", deploys.target);
            if deploys.entries.is_empty() {
                let mut line = format!(
                    "No deploys to {} in the {} before the alert.",
                    deploys.target,
                    human_span(deploys.lookback.as_secs())
                );
                if let Some(last) = &deploys.last_before_window {
                    line.push_str(&format!(
                        " The last one was {} by {} on {}.",
                        last.version,
                        last.author.as_deref().unwrap_or("unknown"),
                        last.effective_at().format("%Y-%m-%d %H:%M UTC")
                    ));
                } else {
                    line.push_str(" No deploys of it are known at all.");
                }
                sections.push(Section::Text {
                    text: RichText::new().plain(line),
                });
            }
            for entry in &deploys.entries {
                sections.push(Section::Text {
                    text: deploy_headline(entry),
                });
                let details = deploy_details(&entry.deploy);
                if !details.is_empty() {
                    sections.push(Section::Lines { lines: details });
                }
            }
            if deploys.more > 0 {
                sections.push(Section::Context {
                    text: RichText::new()
                        .plain(format!("+{} more deploys in the window", deploys.more)),
                });
            }
            if let Some(line) = &deploys.failed_rollout {
                sections.push(Section::Context {
                    text: RichText::new().plain(format!("⚠️ {line}")),
                });
            }
            for caveat in &deploys.caveats {
                sections.push(Section::Context {
                    text: RichText::new().plain(format!("⚠️ {}", caveat.message)),
                });
            }
            if let Some(reason) = &deploys.no_offer_reason
                && !deploys.entries.is_empty()
            {
                sections.push(Section::Context {
                    text: RichText::new().plain(reason.clone()),
                });
            }
            let suspect = deploys.entries.iter().find(|e| e.suspect);
            let mut text = format!("{}: {}", summary.alert_title, deploys.target);
            match suspect {
                Some(entry) => text.push_str(&format!(
                    " — suspect {} by {} ({})",
                    entry.deploy.version,
                    entry.deploy.author.as_deref().unwrap_or("unknown"),
                    entry.relative
                )),
                None => text.push_str(&format!(
                    " — {} deploys in the window",
                    deploys.entries.len()
                )),
            }
            let mut actions = Vec::new();
            let blocking = deploys.caveats.iter().any(|c| c.blocking);
            if let (Some(plan), Some(offer)) = (view.plan, &deploys.offer)
                && plan.state.is_open()
                && !view.now.is_some_and(|now| plan.is_expired(now))
            {
                if !blocking {
                    actions.push(rollback_button(plan));
                    text.push_str(&format!(". Roll back to {}?", offer.to.version));
                }
                if view.offer_remedy
                    && deploys
                        .caveats
                        .iter()
                        .any(|c| c.remedy == Some(Remedy::DisableAutoSync))
                {
                    actions.push(Action::Button {
                            label: truncate(&format!("Disable auto-sync and roll back to {}", plan.to.version), MAX_LABEL),
                            action: ButtonAction::new(ButtonKind::DisableAutoSyncAndRollback, plan.id),
                            style: ButtonStyle::Danger,
                            confirm: Some(Confirmation {
                                title: "Disable auto-sync?".to_owned(),
                                text: format!(
                                    "This turns off automated sync for {} and then rolls back from {} to {}. Git will no longer be applied until sync is re-enabled.",
                                    plan.target, plan.from, plan.to
                                ),
                                confirm: "Disable and roll back".to_owned(),
                                deny: "Cancel".to_owned(),
                            }),
                        });
                }
                actions.push(Action::Button {
                    label: "Not deploy-related".to_owned(),
                    action: ButtonAction::new(ButtonKind::NotDeployRelated, plan.id),
                    style: ButtonStyle::Default,
                    confirm: None,
                });
            }
            if let Some(url) = suspect.and_then(|e| e.deploy.url.clone()) {
                actions.push(Action::Link {
                    label: "View suspect deploy".to_owned(),
                    url,
                });
            }
            (title, text, actions, severity_tone(summary.severity))
        }
    };

    if view.grouped > 1 {
        sections.push(Section::Context {
            text: RichText::new().plain(format!("{} alerts grouped in this thread", view.grouped)),
        });
    }
    if let Some(resolved) = view.resolved_at {
        sections.push(Section::Context {
            text: RichText::new().plain(format!("✅ All alerts resolved at {}", clock(resolved))),
        });
    }
    let status = view.plan.and_then(|plan| plan_status(plan, view.now));
    Message {
        text,
        title: Some(title),
        tone,
        sections,
        actions,
        status,
    }
}

fn rollback_button(plan: &RollbackPlan) -> Action {
    Action::Button {
        label: truncate(
            &format!("Roll back {} to {}", plan.target, plan.to.version),
            MAX_LABEL,
        ),
        action: ButtonAction::new(ButtonKind::Rollback, plan.id),
        style: ButtonStyle::Danger,
        confirm: Some(Confirmation {
            title: "Roll back?".to_owned(),
            text: format!(
                "Roll back {} from {} to {}?",
                plan.target, plan.from, plan.to
            ),
            confirm: "Roll back".to_owned(),
            deny: "Cancel".to_owned(),
        }),
    }
}

fn deploy_headline(entry: &DeployEntry) -> RichText {
    let deploy = &entry.deploy;
    let mut line = RichText::new();
    if entry.suspect {
        line = line.plain("🔴 ").bold("Suspect").plain(" ");
    }
    line = match &deploy.url {
        Some(url) => line.link(deploy.version.clone(), url.clone()),
        None => line.bold(deploy.version.clone()),
    };
    if let Some(author) = &deploy.author {
        line = line.plain(format!(" by {author}"));
    }
    line = line.plain(format!(" · {}", entry.relative));
    if let Some(commit) = &deploy.commit {
        line = line
            .plain(" · ")
            .code(commit.chars().take(12).collect::<String>());
    }
    match deploy.status {
        DeployStatus::Failed => line = line.plain(" · failed"),
        DeployStatus::Started if deploy.finished_at.is_none() => {}
        _ => {}
    }
    if deploy.source == super::deploy::DeploySource::Rollback {
        line = line.plain(" · rollback");
    }
    if let Some(description) = &deploy.description {
        line = line.plain(format!(" — {}", truncate(description, 120)));
    }
    line
}

/// Commits (up to [`MAX_COMMITS`], then "+N more") and configuration changes.
pub fn deploy_details(deploy: &Deploy) -> Vec<RichText> {
    let mut lines = Vec::new();
    for change in deploy.changes.iter().take(MAX_COMMITS) {
        let mut line = RichText::new()
            .code(change.commit.chars().take(8).collect::<String>())
            .plain(format!(
                " {}",
                truncate(change.message.lines().next().unwrap_or(""), 100)
            ));
        if let Some(author) = &change.author {
            line = line.plain(format!(" ({author})"));
        }
        lines.push(line);
    }
    if deploy.changes.len() > MAX_COMMITS {
        lines.push(RichText::new().plain(format!(
            "+{} more commits",
            deploy.changes.len() - MAX_COMMITS
        )));
    }
    for change in &deploy.config_changes {
        let value = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".to_owned());
        let line = RichText::new()
            .plain("config ")
            .code(change.key.clone())
            .plain(": ");
        let line = if change.old.as_deref() == Some(MASKED) || change.new.as_deref() == Some(MASKED)
        {
            line.plain(format!(
                "{} → {} (secret, masked)",
                value(&change.old),
                value(&change.new)
            ))
        } else {
            line.code(value(&change.old))
                .plain(" → ")
                .code(value(&change.new))
        };
        lines.push(line);
    }
    lines
}

/// The status line of a plan's message, for states past "offered".
pub fn plan_status(plan: &RollbackPlan, now: Option<DateTime<Utc>>) -> Option<RichText> {
    let who = |actor: &Option<super::policy::Actor>| {
        actor
            .as_ref()
            .map_or("someone".to_owned(), |a| a.name().to_owned())
    };
    let took = match (plan.started_at, plan.finished_at) {
        (Some(start), Some(end)) => format!(
            ", took {}",
            human_span((end - start).num_seconds().max(0).unsigned_abs())
        ),
        _ => String::new(),
    };
    let started = plan.started_at.map(clock).unwrap_or_default();
    let outcome = plan.outcome.clone().unwrap_or_default();
    let line = match plan.state {
        PlanState::Offered if now.is_some_and(|now| plan.is_expired(now)) => format!(
            "⌛ This rollback offer expired at {}. Run /breakwater rollback {} {} for a fresh one.",
            clock(plan.expires_at),
            plan.target.service,
            plan.target.environment
        ),
        PlanState::Offered => return None,
        PlanState::Confirmed => format!(
            "✋ Approved by {} — a second authorised person must press Roll back ({} → {}).",
            who(&plan.approved_by),
            plan.from.version,
            plan.to.version
        ),
        PlanState::Running => format!(
            "⏳ Rolling back {} from {} to {} — started by {} at {}. {}",
            plan.target,
            plan.from.version,
            plan.to.version,
            who(&plan.started_by),
            started,
            outcome
        ),
        PlanState::Succeeded => format!(
            "✅ Rolled back {} from {} to {} — by {} at {}{took}.",
            plan.target,
            plan.from.version,
            plan.to.version,
            who(&plan.started_by),
            started
        ),
        PlanState::Failed => format!(
            "❌ Rollback of {} to {} failed — started by {} at {}{took}: {outcome}",
            plan.target,
            plan.to.version,
            who(&plan.started_by),
            started
        ),
        PlanState::Stale => format!("⚠️ Not rolled back: {outcome}"),
        PlanState::Expired => format!(
            "⌛ This rollback offer expired at {}. Run /breakwater rollback {} {} for a fresh one.",
            clock(plan.expires_at),
            plan.target.service,
            plan.target.environment
        ),
        PlanState::Dismissed => format!("🙅 {outcome}"),
        PlanState::Interrupted => format!(
            "⚠️ Rollback of {} to {} was interrupted — started by {} at {}: {outcome}",
            plan.target,
            plan.to.version,
            who(&plan.started_by),
            started
        ),
    };
    Some(RichText::new().plain(line.trim_end().to_owned()))
}

/// A message about a plan that stands on its own (commands, stale re-offers).
pub fn plan_message(
    plan: &RollbackPlan,
    caveats: &[super::backend::Caveat],
    now: DateTime<Utc>,
) -> Message {
    let mut sections = vec![Section::Text {
        text: RichText::new()
            .plain("Roll back ")
            .bold(plan.target.to_string())
            .plain(" from ")
            .code(plan.from.to_string())
            .plain(" to ")
            .code(plan.to.to_string())
            .plain("?"),
    }];
    sections.push(Section::Context {
        text: RichText::new().plain(format!(
            "{} · offer valid until {}",
            plan.reason,
            clock(plan.expires_at)
        )),
    });
    for caveat in caveats {
        sections.push(Section::Context {
            text: RichText::new().plain(format!("⚠️ {}", caveat.message)),
        });
    }
    let blocking = caveats.iter().any(|c| c.blocking);
    let open = plan.state.is_open() && !plan.is_expired(now);
    let mut actions = Vec::new();
    if open && !blocking {
        actions.push(rollback_button(plan));
    }
    Message {
        text: format!(
            "Rollback plan for {}: {} → {}",
            plan.target, plan.from.version, plan.to.version
        ),
        title: Some(format!("{} · rollback plan", plan.target)),
        tone: Tone::Warning,
        sections,
        actions,
        status: plan_status(plan, Some(now)),
    }
}

/// The second step on platforms without a native confirmation dialog.
pub fn confirm_prompt(
    plan: &RollbackPlan,
    confirmation: PlanId,
    disable_auto_sync: bool,
) -> Message {
    let extra = if disable_auto_sync {
        " Automated sync will be turned off first."
    } else {
        ""
    };
    let text = format!(
        "Roll back {} from {} to {}?{extra}",
        plan.target, plan.from, plan.to
    );
    Message {
        text: text.clone(),
        title: Some("Confirm rollback".to_owned()),
        tone: Tone::Warning,
        sections: vec![
            Section::Text {
                text: RichText::new()
                    .plain("Roll back ")
                    .bold(plan.target.to_string())
                    .plain(" from ")
                    .code(plan.from.to_string())
                    .plain(" to ")
                    .code(plan.to.to_string())
                    .plain(format!("?{extra}")),
            },
            Section::Context {
                text: RichText::new().plain(
                    "Only you can confirm this. It calls the deployment backend right away.",
                ),
            },
        ],
        actions: vec![
            Action::Button {
                label: "Confirm".to_owned(),
                action: ButtonAction::new(ButtonKind::Confirm, confirmation),
                style: ButtonStyle::Danger,
                confirm: None,
            },
            Action::Button {
                label: "Cancel".to_owned(),
                action: ButtonAction::new(ButtonKind::Cancel, confirmation),
                style: ButtonStyle::Default,
                confirm: None,
            },
        ],
        status: None,
    }
}

/// A list of deploys for `/breakwater deploys`.
pub fn deploy_list(heading: &str, deploys: &[Deploy], now: DateTime<Utc>) -> Message {
    let mut sections = Vec::new();
    if deploys.is_empty() {
        sections.push(Section::Text {
            text: RichText::new().plain("No deploys recorded."),
        });
    }
    for deploy in deploys {
        let ago = human_span(
            (now - deploy.effective_at())
                .num_seconds()
                .max(0)
                .unsigned_abs(),
        );
        let mut line = RichText::new().bold(deploy.target.to_string()).plain(" ");
        line = match &deploy.url {
            Some(url) => line.link(deploy.version.clone(), url.clone()),
            None => line.code(deploy.version.clone()),
        };
        line = line.plain(format!(
            " by {} · {ago} ago · {}",
            deploy.author.as_deref().unwrap_or("unknown"),
            deploy.status.as_str()
        ));
        if deploy.source == super::deploy::DeploySource::Rollback {
            line = line.plain(" · rollback");
        }
        sections.push(Section::Text { text: line });
        let details = deploy_details(deploy);
        if !details.is_empty() {
            sections.push(Section::Lines { lines: details });
        }
    }
    let text = format!(
        "{heading}: {}",
        deploys
            .iter()
            .map(|d| format!("{} {}", d.target, d.version))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Message {
        text,
        title: Some(heading.to_owned()),
        tone: Tone::Info,
        sections,
        actions: vec![],
        status: None,
    }
}

#[cfg(test)]
mod tests {
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
                .map(|i| super::super::deploy::Change {
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
        let lines: Vec<String> = deploy_details(&deploy())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(lines.iter().filter(|l| l.contains("commit ")).count(), 5);
        assert!(lines.contains(&"+2 more commits".to_owned()));
    }

    #[test]
    fn config_changes_show_values_and_masked_secrets() {
        let lines: Vec<String> = deploy_details(&deploy())
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
        assert_eq!(truncate(&long, MAX_LABEL).chars().count(), MAX_LABEL);
    }
}
