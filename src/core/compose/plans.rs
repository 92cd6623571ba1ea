//! A plan in words: its button, question, confirmation, status lines and outcome.

use super::*;

/// At most this many keys are named in a restore's reason.
pub(super) const MAX_RESTORED_KEYS: usize = 10;

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
pub(super) fn restore_words(plan: &RollbackPlan) -> String {
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
pub(super) fn plan_button(plan: &RollbackPlan) -> Action {
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
pub(super) fn plan_question(plan: &RollbackPlan) -> RichText {
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
pub(super) fn plan_aftermath(plan: &RollbackPlan) -> Option<String> {
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

/// The status line of a plan's message, for states past "offered".
pub fn plan_status(plan: &RollbackPlan, now: Option<DateTime<Utc>>) -> Option<RichText> {
    let who = |actor: &Option<crate::core::policy::Actor>| {
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
pub(super) fn abort_status(
    plan: &RollbackPlan,
    who: &dyn Fn(&Option<crate::core::policy::Actor>) -> String,
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
pub(super) fn canary_status(
    plan: &RollbackPlan,
    who: &dyn Fn(&Option<crate::core::policy::Actor>) -> String,
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
    caveats: &[crate::core::backend::Caveat],
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
