//! Presses: buttons and confirmations, checked against policy and the plan they were shown.

use super::*;

impl Bot {
    /// A button press. The reply is for the person who pressed; public progress goes to
    /// the plan's message.
    pub async fn handle_press(&self, press: Press) -> Reply {
        match self.press(press).await {
            Ok(reply) => reply,
            Err(error) => {
                tracing::error!(%error, "press failed");
                Reply::Private(Message::plain(
                    "Something went wrong on breakwater's side and nothing was rolled back. The error is in breakwater's log; try again in a moment.",
                ).with_tone(Tone::Danger))
            }
        }
    }

    pub(super) async fn press(&self, press: Press) -> Result<Reply, BotError> {
        let platform = press
            .actor
            .principal
            .platform()
            .unwrap_or(Platform::Console);
        if !self.claim(platform, &press.event_id).await? {
            return Ok(Reply::None);
        }
        match press.action.kind {
            ButtonKind::Rollback => self.press_rollback(&press, false).await,
            ButtonKind::DisableAutoSyncAndRollback => self.press_rollback(&press, true).await,
            ButtonKind::Confirm => self.press_confirm(&press).await,
            ButtonKind::Cancel => self.press_cancel(&press).await,
            ButtonKind::NotDeployRelated => self.press_dismiss(&press).await,
        }
    }

    pub(super) async fn deny(
        &self,
        press: &Press,
        target: Option<&Target>,
        code: &str,
        text: String,
    ) -> Result<Reply, BotError> {
        self.deny_naming(press, &press.action.token, target, code, text)
            .await
    }

    /// Refuses a press, auditing it under `plan` (a Confirm button carries its
    /// confirmation's id, but the refusal belongs to the plan's story).
    pub(super) async fn deny_naming(
        &self,
        press: &Press,
        plan: &PlanId,
        target: Option<&Target>,
        code: &str,
        text: String,
    ) -> Result<Reply, BotError> {
        let mut entry = self
            .inner
            .audit
            .entry(actions::ROLLBACK_DENIED)
            .actor(&press.actor)
            .detail(&details::PressDenied {
                plan: plan.to_string(),
                reason: code,
                message: &text,
                channel: press.channel.as_deref(),
            });
        if let Some(target) = target {
            entry = entry.target(target);
        }
        self.inner.audit.append(entry).await?;
        self.inner.metrics.rollback("denied");
        Ok(Reply::Private(
            Message::plain(text).with_tone(Tone::Warning),
        ))
    }

    pub(super) async fn press_rollback(
        &self,
        press: &Press,
        disable_auto_sync: bool,
    ) -> Result<Reply, BotError> {
        let Some(plan) = self.inner.store.plan(&press.action.token).await? else {
            return self.deny(press, None, "unknown_plan", "This button does not belong to any rollback breakwater offered. Nothing was done.".to_owned()).await;
        };
        let written = self
            .inner
            .audit
            .append(
                self.inner
                    .audit
                    .entry(actions::ROLLBACK_REQUESTED)
                    .actor(&press.actor)
                    .target(&plan.target)
                    .detail(&details::PlanRequested {
                        plan: plan.id.to_string(),
                        from: &plan.from,
                        to: &plan.to,
                        channel: press.channel.as_deref(),
                        disable_auto_sync,
                    }),
            )
            .await?;
        self.observe_incident(plan.alert_group, &written).await;
        if let Some(reply) = self.refuse_closed_plan(press, &plan).await? {
            return Ok(reply);
        }
        if let Some(reply) = self.refuse_by_policy(press, &plan).await? {
            return Ok(reply);
        }
        if let Some(reply) = self.refuse_blocked(press, &plan, disable_auto_sync).await? {
            return Ok(reply);
        }
        let needs_confirm_step = !press.confirmed_by_platform
            && self
                .inner
                .chats
                .get(platform_of(press))
                .is_none_or(|chat| chat.needs_confirm_step());
        if needs_confirm_step {
            let now = self.now();
            let ttl = chrono::Duration::from_std(self.inner.settings.confirm_ttl)
                .unwrap_or(chrono::Duration::minutes(5));
            let confirmation = Confirmation {
                id: PlanId::generate(),
                plan: plan.id,
                actor: press.actor.clone(),
                created_at: now,
                expires_at: (now + ttl).min(plan.expires_at),
                disable_auto_sync,
            };
            self.inner.store.insert_confirmation(&confirmation).await?;
            self.inner
                .audit
                .append(
                    self.inner
                        .audit
                        .entry(actions::ROLLBACK_CONFIRMATION_REQUESTED)
                        .actor(&press.actor)
                        .target(&plan.target)
                        .detail(&details::ConfirmationRequested {
                            plan: plan.id.to_string(),
                            confirmation: confirmation.id.to_string(),
                            from: &plan.from.version,
                            to: &plan.to.version,
                            disable_auto_sync,
                        }),
                )
                .await?;
            self.remember_private_reply(&plan.id, press, false);
            return Ok(Reply::Private(compose::confirm_prompt(
                &plan,
                confirmation.id,
                disable_auto_sync,
            )));
        }
        self.approve_or_start(press, plan, disable_auto_sync).await
    }

    /// Closes an offer past its expiry: audited, and its buttons replaced by the
    /// expiry line. A no-op when someone else closed it first.
    pub(super) async fn expire_plan(
        &self,
        plan: &RollbackPlan,
        now: DateTime<Utc>,
    ) -> Result<(), BotError> {
        let open = [PlanState::Offered, PlanState::Confirmed];
        let expired = self
            .inner
            .store
            .transition_plan(
                &plan.id,
                &open,
                PlanState::Expired,
                &PlanPatch::default(),
                now,
            )
            .await?;
        if let Some(expired) = expired {
            let entry = self
                .inner
                .audit
                .entry(actions::ROLLBACK_EXPIRED)
                .target(&plan.target)
                .detail(&details::PlanOnly {
                    plan: plan.id.to_string(),
                });
            self.inner.audit.append(entry).await?;
            self.update_plan_message(&expired).await;
        }
        Ok(())
    }

    /// A plan that can no longer be started: say what happened to it.
    pub(super) async fn refuse_closed_plan(
        &self,
        press: &Press,
        plan: &RollbackPlan,
    ) -> Result<Option<Reply>, BotError> {
        let now = self.now();
        if plan.state.is_open() && plan.is_expired(now) {
            self.expire_plan(plan, now).await?;
            self.inner.metrics.rollback("expired");
            let text = format!(
                "This rollback offer expired at {} UTC (offers last {}). Nothing was done. Run /breakwater rollback {} {} for a fresh one with the current revisions.",
                plan.expires_at.format("%H:%M"),
                human_span(self.inner.settings.policy.plan_ttl.as_secs()),
                plan.target.service,
                plan.target.environment
            );
            return self
                .deny(press, Some(&plan.target), "expired", text)
                .await
                .map(Some);
        }
        if plan.state.is_open() {
            return Ok(None);
        }
        let who = |actor: &Option<Actor>| {
            actor
                .as_ref()
                .map_or("someone".to_owned(), |a| a.name().to_owned())
        };
        let when = plan
            .started_at
            .map(|t| t.format("%H:%M:%S UTC").to_string())
            .unwrap_or_default();
        let text = match plan.state {
            PlanState::Running => format!("{} already started this rollback at {when}; it is running now.", who(&plan.started_by)),
            PlanState::Succeeded => format!("{} already rolled {} back to {} at {when}.", who(&plan.started_by), plan.target, plan.to.version),
            PlanState::Failed => format!("{} already ran this rollback at {when} and it failed. Check the thread, then ask for a fresh plan.", who(&plan.started_by)),
            PlanState::Stale => "This plan went stale: the service was deployed again after it was offered. Use the fresh plan in the thread.".to_owned(),
            PlanState::Expired => format!("This rollback offer expired. Run /breakwater rollback {} {} for a fresh one.", plan.target.service, plan.target.environment),
            PlanState::Dismissed => format!("This alert was marked not deploy-related ({}). Run /breakwater rollback {} {} if you still want to roll back.", plan.outcome.clone().unwrap_or_default(), plan.target.service, plan.target.environment),
            PlanState::Interrupted => "This rollback was interrupted by a breakwater restart; check the thread before asking for a fresh plan.".to_owned(),
            PlanState::Offered | PlanState::Confirmed => return Ok(None),
        };
        self.deny(press, Some(&plan.target), "plan_closed", text)
            .await
            .map(Some)
    }

    pub(super) async fn refuse_by_policy(
        &self,
        press: &Press,
        plan: &RollbackPlan,
    ) -> Result<Option<Reply>, BotError> {
        let last = self
            .inner
            .store
            .last_rollback_finished(&plan.target)
            .await?;
        let decision = self.inner.settings.policy.check(&RollbackRequest {
            actor: &press.actor,
            target: &plan.target,
            channel: press.channel.as_deref(),
            now: self.now(),
            last_rollback_finished: last,
        });
        match decision {
            Ok(()) => Ok(None),
            Err(denial) => self
                .deny(press, Some(&plan.target), denial.code(), denial.to_string())
                .await
                .map(Some),
        }
    }

    /// Checks again, at the press, what hid or changed the plan's buttons when they were
    /// drawn: a blocking caveat (Argo CD auto-sync, a paused Deployment, a revision gone
    /// from the history) hides Roll back, and "Disable auto-sync and roll back" exists
    /// only while auto-sync is the one blocker and the configuration allows the remedy. A
    /// plan id taken from another button (Not deploy-related) therefore never rolls back
    /// what its Roll back button was hidden for. Refusals are private and audited.
    pub(super) async fn refuse_blocked(
        &self,
        press: &Press,
        plan: &RollbackPlan,
        disable_auto_sync: bool,
    ) -> Result<Option<Reply>, BotError> {
        // A restore's blockers (a paused Deployment, a changed ConfigMap) are checked by
        // the backend before it writes anything; a rollback's caveats do not apply to it,
        // nor to a canary rollback, which Flagger performs.
        if matches!(plan.action, Action::RestoreConfig | Action::RollbackCanary) {
            if !disable_auto_sync {
                return Ok(None);
            }
            return self
                .deny(
                    press,
                    Some(&plan.target),
                    "action_not_offered",
                    format!(
                        "\"Disable auto-sync and roll back\" is not offered for a {} of {}. \
                         Nothing was done.",
                        if plan.action == Action::RollbackCanary {
                            "canary rollback"
                        } else {
                            "restore"
                        },
                        plan.target
                    ),
                )
                .await
                .map(Some);
        }
        let Some(backend) = self.inner.backends.for_target(&plan.target) else {
            return Ok(None);
        };
        let started = Instant::now();
        let checked =
            tokio::time::timeout(PRESS_CHECK_TIMEOUT, backend.caveats(&plan.target, &plan.to))
                .await;
        self.inner.metrics.backend_call(
            backend.name(),
            "caveats",
            matches!(checked, Ok(Ok(_))),
            started.elapsed(),
        );
        let caveats = match checked {
            Ok(Ok(caveats)) => caveats,
            // The rollback re-reads the backend and fails loudly if it is down.
            Ok(Err(error)) => {
                tracing::warn!(backend = backend.name(), %error, "could not re-check blockers at the press");
                return Ok(None);
            }
            Err(_) => {
                tracing::warn!(
                    backend = backend.name(),
                    "re-checking blockers at the press timed out"
                );
                return Ok(None);
            }
        };
        let blockers: Vec<&Caveat> = caveats.iter().filter(|c| c.blocking).collect();
        let remedied = |c: &&Caveat| {
            disable_auto_sync && c.remedy == Some(crate::core::backend::Remedy::DisableAutoSync)
        };
        let unremedied: Vec<&str> = blockers
            .iter()
            .filter(|c| !remedied(c))
            .map(|c| c.message.as_str())
            .collect();
        if !unremedied.is_empty() {
            return self
                .deny(
                    press,
                    Some(&plan.target),
                    "blocked",
                    format!(
                        "{} cannot be rolled back from here right now: {} Nothing was done.",
                        plan.target,
                        unremedied.join(" ")
                    ),
                )
                .await
                .map(Some);
        }
        if disable_auto_sync && blockers.is_empty() {
            return self
                .deny(
                    press,
                    Some(&plan.target),
                    "action_not_offered",
                    format!(
                        "\"Disable auto-sync and roll back\" is not offered for {}: nothing blocks \
                         a plain rollback, so there is no automated sync to turn off. Nothing was \
                         done; use Roll back.",
                        plan.target
                    ),
                )
                .await
                .map(Some);
        }
        Ok(None)
    }

    pub(super) async fn press_confirm(&self, press: &Press) -> Result<Reply, BotError> {
        let Some(confirmation) = self.inner.store.confirmation(&press.action.token).await? else {
            return Ok(Reply::ReplaceSource(Message::plain(
                "This confirmation was already used or has expired. Nothing more was done.",
            )));
        };
        if !confirmation.actor.is_same_person(&press.actor) {
            let plan = self.inner.store.plan(&confirmation.plan).await?;
            return self
                .deny_naming(press, &confirmation.plan, plan.as_ref().map(|p| &p.target), "not_confirmer", format!("Only {} can confirm this rollback. Press Roll back yourself to get your own confirmation.", confirmation.actor.name()))
                .await;
        }
        let Some(confirmation) = self
            .inner
            .store
            .take_confirmation(&press.action.token)
            .await?
        else {
            return Ok(Reply::None);
        };
        if self.now() >= confirmation.expires_at {
            return Ok(Reply::ReplaceSource(Message::plain(
                "This confirmation expired. Press Roll back again.",
            )));
        }
        let Some(plan) = self.inner.store.plan(&confirmation.plan).await? else {
            return Ok(Reply::ReplaceSource(Message::plain(
                "The rollback plan no longer exists. Nothing was done.",
            )));
        };
        if let Some(reply) = self.refuse_closed_plan(press, &plan).await? {
            return Ok(as_replacement(reply));
        }
        if let Some(reply) = self.refuse_by_policy(press, &plan).await? {
            return Ok(as_replacement(reply));
        }
        if let Some(reply) = self
            .refuse_blocked(press, &plan, confirmation.disable_auto_sync)
            .await?
        {
            return Ok(as_replacement(reply));
        }
        let reply = self
            .approve_or_start(press, plan, confirmation.disable_auto_sync)
            .await?;
        Ok(as_replacement(reply))
    }

    pub(super) async fn press_cancel(&self, press: &Press) -> Result<Reply, BotError> {
        let Some(confirmation) = self.inner.store.confirmation(&press.action.token).await? else {
            return Ok(Reply::ReplaceSource(Message::plain("Nothing to cancel.")));
        };
        if !confirmation.actor.is_same_person(&press.actor) {
            return Ok(Reply::private(format!(
                "Only {} can cancel this.",
                confirmation.actor.name()
            )));
        }
        if self
            .inner
            .store
            .take_confirmation(&press.action.token)
            .await?
            .is_some()
        {
            let plan = self.inner.store.plan(&confirmation.plan).await?;
            let mut entry = self
                .inner
                .audit
                .entry(actions::ROLLBACK_CANCELLED)
                .actor(&press.actor)
                .detail(&details::ConfirmationCancelled {
                    plan: confirmation.plan.to_string(),
                    confirmation: confirmation.id.to_string(),
                });
            if let Some(plan) = &plan {
                entry = entry.target(&plan.target);
            }
            self.inner.audit.append(entry).await?;
        }
        Ok(Reply::ReplaceSource(Message::plain(
            "Cancelled. Nothing was rolled back.",
        )))
    }

    pub(super) async fn press_dismiss(&self, press: &Press) -> Result<Reply, BotError> {
        let Some(plan) = self.inner.store.plan(&press.action.token).await? else {
            return Ok(Reply::private(
                "This button does not belong to anything breakwater offered.",
            ));
        };
        let now = self.now();
        let outcome = format!(
            "Marked not deploy-related by {} at {}.",
            press.actor.name(),
            now.format("%H:%M UTC")
        );
        let patch = PlanPatch {
            outcome: Some(outcome),
            ..PlanPatch::default()
        };
        match self
            .inner
            .store
            .transition_plan(
                &plan.id,
                &[PlanState::Offered, PlanState::Confirmed],
                PlanState::Dismissed,
                &patch,
                now,
            )
            .await?
        {
            Some(dismissed) => {
                self.inner
                    .audit
                    .append(
                        self.inner
                            .audit
                            .entry(actions::SUMMARY_DISMISSED)
                            .actor(&press.actor)
                            .target(&plan.target)
                            .detail(&details::PlanOnly {
                                plan: plan.id.to_string(),
                            }),
                    )
                    .await?;
                self.update_plan_message(&dismissed).await;
                Ok(Reply::None)
            }
            None => Ok(Reply::private(format!(
                "This plan is already {}.",
                self.inner
                    .store
                    .plan(&plan.id)
                    .await?
                    .map_or(plan.state, |p| p.state)
            ))),
        }
    }

    /// After all checks: record a first approval where two people are needed, or start.
    pub(super) async fn approve_or_start(
        &self,
        press: &Press,
        plan: RollbackPlan,
        disable_auto_sync: bool,
    ) -> Result<Reply, BotError> {
        let now = self.now();
        if self.inner.settings.policy.needs_two_people(&plan.target) {
            match (&plan.state, &plan.approved_by) {
                (PlanState::Offered, _) => {
                    let patch = PlanPatch {
                        approved_by: Some(press.actor.clone()),
                        ..PlanPatch::default()
                    };
                    return match self
                        .inner
                        .store
                        .transition_plan(
                            &plan.id,
                            &[PlanState::Offered],
                            PlanState::Confirmed,
                            &patch,
                            now,
                        )
                        .await?
                    {
                        Some(approved) => {
                            self.inner
                                .audit
                                .append(
                                    self.inner
                                        .audit
                                        .entry(actions::ROLLBACK_APPROVED)
                                        .actor(&press.actor)
                                        .target(&plan.target)
                                        .detail(&details::PlanApproved {
                                            plan: plan.id.to_string(),
                                            from: &plan.from.version,
                                            to: &plan.to.version,
                                        }),
                                )
                                .await?;
                            self.update_plan_message(&approved).await;
                            Ok(Reply::private(format!(
                                "Approval recorded. {} needs a second person: another authorised person must press Roll back.",
                                plan.target.environment
                            )))
                        }
                        None => {
                            // Someone else approved first; look again.
                            let Some(fresh) = self.inner.store.plan(&plan.id).await? else {
                                return Ok(Reply::None);
                            };
                            if fresh.state == PlanState::Confirmed
                                && fresh
                                    .approved_by
                                    .as_ref()
                                    .is_some_and(|a| !a.is_same_person(&press.actor))
                            {
                                Box::pin(self.approve_or_start(press, fresh, disable_auto_sync))
                                    .await
                            } else {
                                Ok(self
                                    .refuse_closed_plan(press, &fresh)
                                    .await?
                                    .unwrap_or(Reply::None))
                            }
                        }
                    };
                }
                (PlanState::Confirmed, Some(approver)) if approver.is_same_person(&press.actor) => {
                    return Ok(Reply::private(
                        "You already approved this rollback. A second authorised person must press Roll back.",
                    ));
                }
                _ => {}
            }
        }
        self.start(press, plan, disable_auto_sync).await
    }

    pub(super) async fn start(
        &self,
        press: &Press,
        plan: RollbackPlan,
        disable_auto_sync: bool,
    ) -> Result<Reply, BotError> {
        let now = self.now();
        let patch = PlanPatch {
            started_by: Some(press.actor.clone()),
            started_at: Some(now),
            runner: Some(self.inner.runner.clone()),
            ..PlanPatch::default()
        };
        let started = match self
            .inner
            .store
            .transition_plan(
                &plan.id,
                &[PlanState::Offered, PlanState::Confirmed],
                PlanState::Running,
                &patch,
                now,
            )
            .await
        {
            Ok(Some(started)) => started,
            Ok(None) => {
                let fresh = self.inner.store.plan(&plan.id).await?.unwrap_or(plan);
                return Ok(self
                    .refuse_closed_plan(press, &fresh)
                    .await?
                    .unwrap_or(Reply::None));
            }
            Err(StoreError::TargetBusy(target)) => {
                return self.deny(press, Some(&target), "target_busy", format!("Another rollback of {target} is running right now. Wait for its outcome in its thread.")).await;
            }
            Err(error) => return Err(error.into()),
        };
        let shows_progress = |at: &MessageRef| {
            started.message.as_ref().is_some_and(|m| {
                m.platform == at.platform && m.channel == at.channel && m.id == at.id
            })
        };
        // Confirmed in the platform's dialog on the message that now shows the progress and
        // then the outcome in place: a private "Rolling back…" would only linger after it.
        let silent =
            press.confirmed_by_platform && press.message.as_ref().is_some_and(shows_progress);
        if !silent {
            // Before the rollback starts, so that its outcome finds the reply to replace.
            // A Confirm press replaces its own Confirm/Cancel step with this.
            let in_place = press.action.kind == ButtonKind::Confirm;
            self.remember_private_reply(&started.id, press, in_place);
        }
        lock(&self.inner.running).insert(started.id);
        let bot = self.clone();
        let plan_for_task = started.clone();
        self.inner
            .rollbacks
            .spawn(async move { bot.execute(plan_for_task, disable_auto_sync).await });
        if silent {
            return Ok(Reply::None);
        }
        let follow = match started.message {
            Some(_) => "Progress and the outcome appear in the thread.",
            None => "The outcome will replace this message.",
        };
        Ok(Reply::private(format!(
            "{} {follow}",
            compose::starting_line(&started)
        )))
    }

    pub(super) fn remember_private_reply(&self, plan: &PlanId, press: &Press, in_place: bool) {
        lock(&self.inner.private_replies).add(
            *plan,
            &press.actor,
            PrivateReply {
                platform: platform_of(press),
                event_id: press.event_id.clone(),
                pressed: press.message.clone(),
                in_place,
            },
        );
    }

    /// The plan is over: its private replies (Confirm steps nobody answered, "Rolling
    /// back…") are replaced by its outcome where the platform allows.
    pub(super) async fn settle_private_replies(&self, plan: &RollbackPlan) {
        self.replace_private_replies(plan, compose::private_outcome(plan, self.now()))
            .await;
    }

    /// Replaces every private reply kept for `plan` with `message`, once.
    pub(super) async fn replace_private_replies(&self, plan: &RollbackPlan, message: Message) {
        let replies = lock(&self.inner.private_replies).take(&plan.id);
        for reply in replies {
            let Some(chat) = self.inner.chats.get(reply.platform) else {
                continue;
            };
            if let Err(error) = chat.replace_private(&reply, &message).await {
                tracing::debug!(%error, plan = %plan.id, "could not replace a private reply");
            }
        }
    }
}
