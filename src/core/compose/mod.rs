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

/// At most this many keys are named in a restore's reason.
const MAX_RESTORED_KEYS: usize = 10;

/// What a restore changes, for its plan's reason and confirmation: "restores
/// DB_POOL_SIZE: 2 → 20; API_TOKEN: •••••• → ••••••". Values come masked from the
/// backend; long ones are cut.
pub fn restore_reason(changes: &[ConfigChange]) -> String {
    let value = |v: &Option<String>| {
        v.as_deref()
            .map_or_else(|| "(unset)".to_owned(), |v| clip(v, 60))
    };
    let mut named: Vec<String> = changes
        .iter()
        .take(MAX_RESTORED_KEYS)
        .map(|c| format!("{}: {} → {}", c.key, value(&c.old), value(&c.new)))
        .collect();
    if changes.len() > MAX_RESTORED_KEYS {
        named.push(format!("+{} more keys", changes.len() - MAX_RESTORED_KEYS));
    }
    format!("restores {}", named.join("; "))
}

/// "ConfigMap checkout-env of checkout production to its state before 14:02 UTC": a
/// restore plan's `from` names the ConfigMap, its `to` the kept state.
fn restore_words(plan: &RollbackPlan) -> String {
    format!(
        "ConfigMap {} of {} to its state {}",
        plan.from.version, plan.target, plan.to.version
    )
}

/// The private answer to the press that started a plan.
pub fn starting_line(plan: &RollbackPlan) -> String {
    match plan.action {
        PlanAction::Rollback => format!(
            "Rolling back {} from {} to {}.",
            plan.target, plan.from.version, plan.to.version
        ),
        PlanAction::RestoreConfig => {
            format!("Restoring {}, then restarting it.", restore_words(plan))
        }
        PlanAction::AbortRollout => format!(
            "Aborting the rollout of {} on {}: sending all traffic back to {}.",
            plan.from.version, plan.target, plan.to.version
        ),
        PlanAction::RollbackCanary => format!(
            "Asking Flagger to roll back the canary {} on {}: all traffic goes back to {}.",
            plan.from.version, plan.target, plan.to.version
        ),
    }
}

/// The button that starts the plan's action, with a confirmation naming the revisions.
fn plan_button(plan: &RollbackPlan) -> Action {
    let (label, title, confirm) = match plan.action {
        PlanAction::Rollback => (
            format!("Roll back {} to {}", plan.target, plan.to.version),
            "Roll back?",
            "Roll back",
        ),
        PlanAction::RestoreConfig => (
            format!(
                "Restore {} to its state {}",
                plan.from.version, plan.to.version
            ),
            "Restore ConfigMap?",
            "Restore",
        ),
        PlanAction::AbortRollout => (
            format!("Abort rollout of {}", plan.from.version),
            "Abort rollout?",
            "Abort rollout",
        ),
        PlanAction::RollbackCanary => (
            format!("Roll back canary {}", plan.from.version),
            "Roll back canary?",
            "Roll back canary",
        ),
    };
    Action::Button {
        label: clip(&label, MAX_LABEL),
        action: ButtonAction::new(ButtonKind::Rollback, plan.id),
        style: ButtonStyle::Danger,
        confirm: Some(Confirmation {
            title: title.to_owned(),
            text: match plan_aftermath(plan) {
                Some(aftermath) => format!("{} {aftermath}", plan_question(plan)),
                None => plan_question(plan).to_string(),
            },
            confirm: confirm.to_owned(),
            deny: "Cancel".to_owned(),
        }),
    }
}

/// What confirming the plan does, as a question naming the exact revisions.
fn plan_question(plan: &RollbackPlan) -> RichText {
    match plan.action {
        PlanAction::Rollback => RichText::new()
            .plain("Roll back ")
            .bold(plan.target.to_string())
            .plain(" from ")
            .code(plan.from.to_string())
            .plain(" to ")
            .code(plan.to.to_string())
            .plain("?"),
        PlanAction::RestoreConfig => RichText::new().plain(format!(
            "Restore {}, then restart it? This {}.",
            restore_words(plan),
            plan.reason
        )),
        PlanAction::AbortRollout => RichText::new()
            .plain("Abort the rollout of ")
            .code(plan.from.version.clone())
            .plain(" on ")
            .bold(plan.target.to_string())
            .plain(": send all traffic back to ")
            .code(plan.to.version.clone())
            .plain(" from the canary ")
            .code(plan.from.version.clone())
            .plain("?"),
        PlanAction::RollbackCanary => RichText::new()
            .plain("Roll back the canary ")
            .code(plan.from.version.clone())
            .plain(" on ")
            .bold(plan.target.to_string())
            .plain(format!(
                " ({}): Flagger sends all traffic back to ",
                plan.reason
            ))
            .code(plan.to.version.clone())
            .plain(" at its next analysis step?"),
    }
}

/// For an abort, what it leaves to do: the new template stays until a rollback.
fn plan_aftermath(plan: &RollbackPlan) -> Option<String> {
    match plan.action {
        PlanAction::Rollback | PlanAction::RestoreConfig => None,
        PlanAction::RollbackCanary => Some(format!(
            "Flagger takes the request once, scales {} down and marks the canary Failed; it tries the same spec again only when the Canary changes.",
            plan.from.version
        )),
        PlanAction::AbortRollout => Some(format!(
            "The rollout keeps {} as its template and tries it again if the abort is lifted; a rollback to {} is offered once traffic is back.",
            plan.from.version, plan.to.version
        )),
    }
}

fn deploy_headline(entry: &DeployEntry, repository: Option<&Repository>) -> RichText {
    let deploy = &entry.deploy;
    let mut line = RichText::new();
    if entry.suspect {
        line = line.plain("🔴 ").bold("Suspect").plain(" ");
    }
    if deploy.is_config_change() {
        return config_change_headline(line, entry);
    }
    line = match &deploy.url {
        Some(url) => line.link(deploy.version.clone(), url.clone()),
        None => line.bold(deploy.version.clone()),
    };
    if let Some(author) = &deploy.author {
        line = line.plain(format!(" by {author}"));
    }
    line = line.plain(format!(
        " · {} ({})",
        entry.relative,
        clock(deploy_end(deploy).1)
    ));
    if let Some(commit) = &deploy.commit {
        line = commit_span(line.plain(" · "), commit, 12, repository);
    }
    let to = deploy.commit.as_deref().unwrap_or(&deploy.version);
    if let Some(url) = repository
        .zip(entry.compare_from.as_deref())
        .and_then(|(repository, from)| repository.compare_url(from, to))
    {
        line = line.plain(" · ").link("compare", url);
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
        line = line.plain(format!(" — {}", clip(description, 120)));
    }
    line
}

/// "⚙ ConfigMap checkout-env changed by kubectl-edit · changed 12 min before the alert
/// (14:02 UTC) · live since 14:05 UTC": an in-place change of what the pods read, not a
/// deploy, and whether the running pods have read it yet.
fn config_change_headline(line: RichText, entry: &DeployEntry) -> RichText {
    let deploy = &entry.deploy;
    let mut line = line.plain("⚙ ").bold(
        deploy
            .description
            .clone()
            .unwrap_or_else(|| deploy.version.clone()),
    );
    if let Some(author) = &deploy.author {
        line = line.plain(format!(" by {author}"));
    }
    let line = line.plain(format!(
        " · {} ({})",
        entry.relative,
        clock(deploy.effective_at())
    ));
    match &entry.pickup {
        None => line,
        Some(pickup) => line.plain(format!(" · {}", pickup_words(pickup))),
    }
}

/// Whether the running pods read a configuration change yet, in the thread's words.
fn pickup_words(pickup: &Pickup) -> String {
    match pickup {
        Pickup::NotYet => "not yet picked up by running pods".to_owned(),
        Pickup::Live(since) => format!("live since {}", clock(*since)),
        Pickup::Partly { picked, of, since } => format!(
            "picked up by {picked} of {of} running pods (since {})",
            clock(*since)
        ),
    }
}

/// Which end of the deploy its age is measured from, and when that was: its finish, else
/// (still rolling out, or never reported finished) its start.
fn deploy_end(deploy: &Deploy) -> (&'static str, DateTime<Utc>) {
    match deploy.finished_at {
        Some(finished) if !deploy.is_in_progress() => ("finished", finished),
        _ => ("started", deploy.started_at),
    }
}

/// A commit id, shortened, linked to its page when the repository is known.
fn commit_span(
    line: RichText,
    commit: &str,
    short: usize,
    repository: Option<&Repository>,
) -> RichText {
    let shown: String = commit.chars().take(short).collect();
    match repository.and_then(|r| r.commit_url(commit)) {
        Some(url) => line.link(shown, url),
        None => line.code(shown),
    }
}

/// Commits (up to [`MAX_COMMITS`], then "+N more") and configuration changes; commits
/// link to the repository when it is known.
pub fn deploy_details(deploy: &Deploy, repository: Option<&Repository>) -> Vec<RichText> {
    let mut lines = Vec::new();
    for change in deploy.changes.iter().take(MAX_COMMITS) {
        let mut line = commit_span(RichText::new(), &change.commit, 8, repository).plain(format!(
            " {}",
            clip(change.message.lines().next().unwrap_or(""), 100)
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
    if plan.action == PlanAction::RestoreConfig {
        let line = match plan.state {
            PlanState::Offered if now.is_some_and(|now| plan.is_expired(now)) => format!(
                "⌛ This restore offer expired at {}.",
                clock(plan.expires_at)
            ),
            PlanState::Offered => return None,
            PlanState::Confirmed => format!(
                "✋ Approved by {} — a second authorised person must press Restore ({} → its state {}).",
                who(&plan.approved_by),
                plan.from.version,
                plan.to.version
            ),
            PlanState::Running => format!(
                "⏳ Restoring {} and restarting it — started by {} at {}. {}",
                restore_words(plan),
                who(&plan.started_by),
                started,
                outcome
            ),
            PlanState::Succeeded => format!(
                "✅ Restored {} and restarted it — by {} at {}{took}.",
                restore_words(plan),
                who(&plan.started_by),
                started
            ),
            PlanState::Failed => format!(
                "❌ Restore of {} failed — started by {} at {}{took}: {outcome}",
                restore_words(plan),
                who(&plan.started_by),
                started
            ),
            PlanState::Stale => format!("⚠️ Not restored: {outcome}"),
            PlanState::Expired => format!(
                "⌛ This restore offer expired at {}.",
                clock(plan.expires_at)
            ),
            PlanState::Dismissed => format!("🙅 {outcome}"),
            PlanState::Interrupted => format!(
                "⚠️ Restore of {} was interrupted — started by {} at {}: {outcome}",
                restore_words(plan),
                who(&plan.started_by),
                started
            ),
        };
        return Some(RichText::new().plain(line.trim_end().to_owned()));
    }
    if plan.action == PlanAction::AbortRollout
        && let Some(line) = abort_status(plan, &who, &took, &started, &outcome)
    {
        return Some(RichText::new().plain(line.trim_end().to_owned()));
    }
    if plan.action == PlanAction::RollbackCanary
        && let Some(line) = canary_status(plan, &who, &took, &started, &outcome)
    {
        return Some(RichText::new().plain(line.trim_end().to_owned()));
    }
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

/// The status line of an abort, for the states whose words differ from a rollback's.
fn abort_status(
    plan: &RollbackPlan,
    who: &dyn Fn(&Option<super::policy::Actor>) -> String,
    took: &str,
    started: &str,
    outcome: &str,
) -> Option<String> {
    let canary = &plan.from.version;
    let stable = &plan.to.version;
    let target = &plan.target;
    Some(match plan.state {
        PlanState::Confirmed => format!(
            "✋ Approved by {} — a second authorised person must press Abort rollout ({canary} → {stable}).",
            who(&plan.approved_by)
        ),
        PlanState::Running => format!(
            "⏳ Aborting the rollout of {canary} on {target}, sending all traffic back to {stable} — started by {} at {started}. {outcome}",
            who(&plan.started_by)
        ),
        PlanState::Succeeded => format!(
            "✅ Aborted the rollout of {canary} on {target}: all traffic is back on {stable} — by {} at {started}{took}: {}. The rollout still holds {canary} as its template and will try it again if the abort is lifted (retry or promote); roll back to {stable} to make the abort final.",
            who(&plan.started_by),
            outcome.trim_end_matches('.')
        ),
        PlanState::Failed => format!(
            "❌ Abort of the rollout of {canary} on {target} failed — started by {} at {started}{took}: {outcome}",
            who(&plan.started_by)
        ),
        PlanState::Stale => format!("⚠️ Not aborted: {outcome}"),
        PlanState::Interrupted => format!(
            "⚠️ Abort of the rollout of {canary} on {target} was interrupted — started by {} at {started}: {outcome}",
            who(&plan.started_by)
        ),
        PlanState::Offered | PlanState::Expired | PlanState::Dismissed => return None,
    })
}

/// A canary rollback's state in the bot's words: Flagger does the work, breakwater asks.
fn canary_status(
    plan: &RollbackPlan,
    who: &dyn Fn(&Option<super::policy::Actor>) -> String,
    took: &str,
    started: &str,
    outcome: &str,
) -> Option<String> {
    let canary = &plan.from.version;
    let primary = &plan.to.version;
    let target = &plan.target;
    Some(match plan.state {
        PlanState::Confirmed => format!(
            "✋ Approved by {} — a second authorised person must press Roll back canary ({canary} → {primary}).",
            who(&plan.approved_by)
        ),
        PlanState::Running => format!(
            "⏳ Rolling back the canary {canary} on {target}: breakwater's rollback hook answers Flagger yes once — started by {} at {started}. {outcome}",
            who(&plan.started_by)
        ),
        PlanState::Succeeded => format!(
            "✅ Canary {canary} on {target} rolled back: all traffic is on {primary} — by {} at {started}{took}: {}",
            who(&plan.started_by),
            outcome
        ),
        PlanState::Failed => format!(
            "❌ Canary rollback of {canary} on {target} failed — started by {} at {started}{took}: {outcome}",
            who(&plan.started_by)
        ),
        PlanState::Stale => format!("⚠️ Not rolled back: {outcome}"),
        PlanState::Interrupted => format!(
            "⚠️ Canary rollback of {canary} on {target} was interrupted — started by {} at {started}: {outcome}",
            who(&plan.started_by)
        ),
        PlanState::Offered | PlanState::Expired | PlanState::Dismissed => return None,
    })
}

/// What a private reply about a plan (its Confirm step, "Rolling back…") becomes once the
/// plan is over: the outcome in one line, and where the rest is.
pub fn private_outcome(plan: &RollbackPlan, now: DateTime<Utc>) -> Message {
    let line = plan_status(plan, Some(now))
        .map(|status| status.to_string())
        .unwrap_or_else(|| format!("This rollback of {} is {}.", plan.target, plan.state));
    let tone = match plan.state {
        PlanState::Succeeded => Tone::Success,
        PlanState::Failed | PlanState::Interrupted => Tone::Danger,
        _ => Tone::Neutral,
    };
    let text = match plan.message {
        Some(_) => format!("{line} The thread has the details."),
        None => line,
    };
    Message::plain(text).with_tone(tone)
}

/// What an open Confirm step becomes once the alert its plan was offered for resolved:
/// no Confirm button, and how to get a rollback anyway.
pub fn prompt_after_resolution(plan: &RollbackPlan, resolved_at: DateTime<Utc>) -> Message {
    Message::plain(format!(
        "The alert resolved at {}, so this rollback of {} is no longer offered here. Use /breakwater rollback {} {} if it is still needed.",
        clock(resolved_at),
        plan.target,
        plan.target.service,
        plan.target.environment
    ))
}

/// A message about a plan that stands on its own (commands, stale re-offers).
pub fn plan_message(
    plan: &RollbackPlan,
    caveats: &[super::backend::Caveat],
    now: DateTime<Utc>,
) -> Message {
    let mut sections = vec![Section::Text {
        text: plan_question(plan),
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
        actions.push(plan_button(plan));
    }
    let (text, title) = match plan.action {
        PlanAction::Rollback => (
            format!(
                "Rollback plan for {}: {} → {}",
                plan.target, plan.from.version, plan.to.version
            ),
            format!("{} · rollback plan", plan.target),
        ),
        PlanAction::RestoreConfig => (
            format!("Restore {}: {}", restore_words(plan), plan.reason),
            format!("{} · restore plan", plan.target),
        ),
        PlanAction::AbortRollout => (
            format!(
                "Abort plan for {}: {} → {}",
                plan.target, plan.from.version, plan.to.version
            ),
            format!("{} · abort plan", plan.target),
        ),
        PlanAction::RollbackCanary => (
            format!(
                "Canary rollback plan for {}: {} → {} ({})",
                plan.target, plan.from.version, plan.to.version, plan.reason
            ),
            format!("{} · canary rollback plan", plan.target),
        ),
    };
    Message {
        text,
        title: Some(title),
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
    let question = if extra.is_empty() {
        plan_question(plan)
    } else {
        plan_question(plan).plain(extra)
    };
    let text = question.to_string();
    let title = match plan.action {
        PlanAction::Rollback => "Confirm rollback",
        PlanAction::RestoreConfig => "Confirm restore",
        PlanAction::AbortRollout => "Confirm abort",
        PlanAction::RollbackCanary => "Confirm canary rollback",
    };
    let mut context =
        "Only you can confirm this. It calls the deployment backend right away.".to_owned();
    if let Some(aftermath) = plan_aftermath(plan) {
        context = format!("{aftermath} {context}");
    }
    Message {
        text,
        title: Some(title.to_owned()),
        tone: Tone::Warning,
        sections: vec![
            Section::Text { text: question },
            Section::Context {
                text: RichText::new().plain(context),
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
/// `repository_of` names the repository of a deploy's service, for commit links.
pub fn deploy_list(
    heading: &str,
    deploys: &[Deploy],
    now: DateTime<Utc>,
    repository_of: &dyn Fn(&Deploy) -> Option<Repository>,
) -> Message {
    let mut sections = Vec::new();
    if deploys.is_empty() {
        sections.push(Section::Text {
            text: RichText::new().plain("No deploys recorded."),
        });
    }
    for deploy in deploys {
        let (end, at) = deploy_end(deploy);
        let ago = human_span((now - at).num_seconds().max(0).unsigned_abs());
        let mut line = RichText::new().bold(deploy.target.to_string()).plain(" ");
        line = match &deploy.url {
            Some(url) => line.link(deploy.version.clone(), url.clone()),
            None => line.code(deploy.version.clone()),
        };
        line = line.plain(format!(
            " by {} · {end} {}, {ago} ago · {}",
            deploy.author.as_deref().unwrap_or("unknown"),
            clock(at),
            deploy.status.as_str()
        ));
        if deploy.source == super::deploy::DeploySource::Rollback {
            line = line.plain(" · rollback");
        }
        sections.push(Section::Text { text: line });
        let details = deploy_details(deploy, repository_of(deploy).as_ref());
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
                changes: vec![super::super::super::deploy::Change {
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
                plain.contains(
                    "Audit records <https://bw.example.com/console/audit?service=checkout>"
                ),
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
            let repository =
                Repository::parse("https://gitlab.com/acme/checkout", None).expect("ok");
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
}
