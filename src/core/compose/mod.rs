//! What the bot says, as neutral messages: the alert post, the deploy summary with its
//! buttons, status lines for each plan state, the confirmation step, command answers.
//! Every platform renders these same messages, so wording lives in one place.

use chrono::{DateTime, Utc};

use super::alert::{Alert, Severity};
use super::backend::{Action as PlanAction, Remedy};
use super::deploy::{ConfigChange, Deploy, DeployStatus, MASKED, Target};
use super::message::{
    Action, ButtonAction, ButtonKind, ButtonStyle, Confirmation, Message, RichText, Section, Tone,
};
use super::repository::{ConsoleLinks, Repository, ServiceLinks};
use super::rollback::{PlanId, PlanState, RollbackPlan};
use super::summary::{DeployEntry, MAX_COMMITS, Pickup, Summary, SummaryBody, human_span};
use crate::text::clip;

/// Buttons and labels stay within the platforms' limits (Slack 75, Discord 80).
const MAX_LABEL: usize = 75;

fn clock(at: DateTime<Utc>) -> String {
    at.format("%H:%M UTC").to_string()
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
            text: RichText::new().plain(clip(alert.description.trim(), 500)),
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

/// The alert post once its whole group resolved: the same alert, stated as over, so the
/// channel reads right at a glance (no 🚨, no red).
pub fn alert_post_resolved(
    alert: &Alert,
    target: Option<&Target>,
    resolved_at: DateTime<Utc>,
) -> Message {
    let about = target.map(|t| format!(" on {t}")).unwrap_or_default();
    let resolved = format!("resolved at {}", clock(resolved_at));
    let mut message = alert_post(alert, target);
    message.text = format!(
        "✅ {} ({}){about} — {resolved}",
        alert.title, alert.severity
    );
    if let Some(Section::Text { text }) = message.sections.first_mut() {
        *text = RichText::new()
            .plain("✅ ")
            .bold(alert.title.clone())
            .plain(format!(" ({}){about} — {resolved}", alert.severity));
    }
    message.tone = Tone::Success;
    message
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
    /// When breakwater received the group's first alert: a detail beside the alert's own
    /// start, shown when they differ.
    pub received_at: Option<DateTime<Utc>>,
    /// The service's repository and owners, when configured.
    pub links: Option<&'a ServiceLinks>,
    /// The console's pages, when `server.public_url` is set.
    pub console: Option<&'a ConsoleLinks>,
    /// The alert group's id, which is its incident's id: the thread links its Incident page.
    pub incident: Option<i64>,
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
    if let Some(received) = view.received_at
        && (received - summary.alert_started_at).num_seconds().abs() >= 60
    {
        alert_line = alert_line.plain(format!(", received {}", clock(received)));
    }
    if let Some(link) = &summary.link {
        alert_line = alert_line.plain(" · ").link("alert", link.clone());
    }
    sections.push(Section::Text { text: alert_line });
    let repository = view.links.and_then(|l| l.repository.as_ref());

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
                    text: deploy_headline(entry, repository),
                });
                let details = deploy_details(&entry.deploy, repository);
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
            let open_plan = view.plan.filter(|plan| {
                plan.state.is_open() && !view.now.is_some_and(|now| plan.is_expired(now))
            });
            if let (Some(plan), Some(resolved)) = (open_plan, view.resolved_at) {
                // The alert is over: a one-click rollback would now undo a deploy that
                // may be fine. Say why the button is gone and how to get one anyway.
                sections.push(Section::Context {
                    text: RichText::new().plain(format!(
                        "No rollback button: the alert resolved at {} — use /breakwater rollback {} {} if it is still needed.",
                        clock(resolved),
                        plan.target.service,
                        plan.target.environment
                    )),
                });
            }
            if let (Some(plan), Some(offer), None) = (open_plan, &deploys.offer, view.resolved_at) {
                if !blocking {
                    actions.push(plan_button(plan));
                    text.push_str(&match plan.action {
                        PlanAction::Rollback => format!(". Roll back to {}?", offer.to.version),
                        PlanAction::RestoreConfig => format!(
                            ". Restore {} to its state {}?",
                            offer.from.version, offer.to.version
                        ),
                        PlanAction::AbortRollout => format!(
                            ". Abort the rollout of {} and send all traffic back to {}?",
                            offer.from.version, offer.to.version
                        ),
                        PlanAction::RollbackCanary => format!(
                            ". Roll back the canary {} and send all traffic back to {}?",
                            offer.from.version, offer.to.version
                        ),
                    });
                }
                if view.offer_remedy
                    && deploys
                        .caveats
                        .iter()
                        .any(|c| c.remedy == Some(Remedy::DisableAutoSync))
                {
                    actions.push(Action::Button {
                            label: clip(&format!("Disable auto-sync and roll back to {}", plan.to.version), MAX_LABEL),
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
            if let Some(resolved) = view.resolved_at {
                text.push_str(&format!(" — resolved at {}", clock(resolved)));
            }
            if let Some(line) = investigate_line(&deploys.target, view) {
                sections.push(Section::Context { text: line });
            }
            (title, text, actions, severity_tone(summary.severity))
        }
    };

    if view.grouped > 1 {
        sections.push(Section::Context {
            text: RichText::new().plain(format!("{} alerts grouped in this thread", view.grouped)),
        });
    }
    let (title, tone) = match view.resolved_at {
        Some(resolved) => (
            format!("✅ Resolved at {} · {title}", clock(resolved)),
            Tone::Success,
        ),
        None => (title, tone),
    };
    let status = status_lines(view, &mut sections);
    Message {
        text,
        title: Some(title),
        tone,
        sections,
        actions,
        status,
    }
}

/// The plan's status and the group's resolution in the order they happened: the earlier
/// as a context line, the latest as the message's status (shown last on every platform),
/// so "Rolled back … at 15:19" reads above "All alerts resolved at 15:20".
fn status_lines(view: &SummaryView<'_>, sections: &mut Vec<Section>) -> Option<RichText> {
    let mut lines: Vec<(DateTime<Utc>, RichText)> = Vec::new();
    // An offer still open once the alert resolved is explained by the line that replaces
    // its buttons; "press Roll back" would contradict it.
    let superseded = |plan: &RollbackPlan| plan.state.is_open() && view.resolved_at.is_some();
    if let Some(plan) = view.plan.filter(|plan| !superseded(plan))
        && let Some(line) = plan_status(plan, view.now)
    {
        let at = match plan.state {
            PlanState::Offered | PlanState::Expired => plan.expires_at,
            PlanState::Confirmed => plan.offered_at,
            _ => plan
                .finished_at
                .or(plan.started_at)
                .or(view.now)
                .unwrap_or(plan.offered_at),
        };
        lines.push((at, line));
    }
    if let Some(resolved) = view.resolved_at {
        lines.push((
            resolved,
            RichText::new().plain(format!("✅ All alerts resolved at {}", clock(resolved))),
        ));
    }
    // Stable: at the same minute the plan's line stays first.
    lines.sort_by_key(|(at, _)| *at);
    let last = lines.pop().map(|(_, line)| line);
    sections.extend(lines.into_iter().map(|(_, text)| Section::Context { text }));
    last
}

/// Where to look next: the service's owners, its repository, and the console's Deploys
/// and Audit pages for it.
fn investigate_line(target: &Target, view: &SummaryView<'_>) -> Option<RichText> {
    let mut line = RichText::new();
    let mut parts = 0;
    let mut separate = |line: RichText| {
        parts += 1;
        if parts > 1 { line.plain(" · ") } else { line }
    };
    if let Some(links) = view.links {
        if !links.owners.is_empty() {
            line = separate(line).plain(format!("Owners: {}", links.owners.join(", ")));
        }
        if let Some(repository) = &links.repository {
            line = separate(line).link("Repository", repository.url().to_owned());
        }
    }
    if let Some(console) = view.console {
        let service = target.service.as_str();
        line = separate(line)
            .link(format!("Deploys of {service}"), console.deploys(service))
            .plain(" · ")
            .link("Audit records", console.audit(service));
        if let Some(id) = view.incident {
            line = line
                .plain(" · ")
                .link("Incident timeline", console.incident(id));
        }
    }
    (!line.is_empty()).then_some(line)
}

mod deploys;
mod plans;

pub use deploys::*;
pub use plans::*;

#[cfg(test)]
mod tests;
