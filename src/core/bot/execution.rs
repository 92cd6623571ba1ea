//! Rollback execution: a confirmed plan run once through its backend, followed and reported.

use super::*;

impl Bot {
    pub(super) async fn execute(&self, plan: RollbackPlan, disable_auto_sync: bool) {
        // Flagger is asked through its own hook, not through a backend.
        if plan.action == Action::RollbackCanary {
            self.execute_canary_rollback(plan).await;
            return;
        }
        self.update_plan_message(&plan).await;
        let Some(backend) = self.inner.backends.for_target(&plan.target) else {
            self.finish(
                &plan,
                Outcome::Failed(format!(
                    "No deployment backend is configured for {}. Nothing was changed.",
                    plan.target
                )),
            )
            .await;
            return;
        };
        // A restore's `from` is what the ConfigMap holds, not a revision: the backend
        // checks it against the object itself right before writing.
        if plan.action == Action::Rollback {
            let (history, _) = self.history(&plan.target, HistoryScope::Latest(20)).await;
            let current = match self.current_revision(&plan.target, &history).await {
                Ok(current) => current,
                Err(message) => {
                    self.finish(
                        &plan,
                        Outcome::Failed(format!("{message}. Nothing was changed.")),
                    )
                    .await;
                    return;
                }
            };
            if current.as_ref().map(|c| &c.id) != Some(&plan.from.id) {
                self.mark_stale(&plan, current).await;
                return;
            }
        }
        let started = details::RollbackStarted {
            plan: plan.id.to_string(),
            from: &plan.from,
            to: &plan.to,
            action: plan.action.as_str(),
            backend: backend.name(),
            kind: backend.kind(),
            disable_auto_sync,
        };
        let Some(actor) = self
            .audit_started(&plan, &started, "did not call the backend")
            .await
        else {
            return;
        };
        let call = RollbackCall {
            plan_id: plan.id,
            target: plan.target.clone(),
            from: plan.from.clone(),
            to: plan.to.clone(),
            requested_by: actor.clone(),
            reason: plan.reason.clone(),
            disable_auto_sync,
            action: plan.action,
        };
        let started_at = Instant::now();
        let result = backend.rollback(&call).await;
        self.inner.metrics.backend_call(
            backend.name(),
            "rollback",
            result.is_ok(),
            started_at.elapsed(),
        );
        let audit_call = self.inner.audit.append(
            self.inner
                .audit
                .entry(actions::ROLLBACK_BACKEND_CALL)
                .target(&plan.target)
                .detail(&details::BackendCalled {
                    plan: plan.id.to_string(),
                    backend: backend.name(),
                    operation: "rollback",
                    ok: result.is_ok(),
                    error: result.as_ref().err().map(|e| e.message.as_str()),
                    error_kind: result.as_ref().err().map(|e| e.kind.as_str()),
                    took_ms: started_at.elapsed().as_millis() as u64,
                }),
        );
        if let Err(error) = audit_call.await {
            tracing::error!(%error, "could not audit the backend call");
        }
        match result {
            Err(error)
                if plan.action == Action::RestoreConfig
                    && error.kind == BackendErrorKind::Conflict =>
            {
                self.restore_went_stale(&plan, backend, error.message).await;
            }
            Err(error) => {
                let conflict = error.kind == BackendErrorKind::Conflict;
                self.finish(&plan, Outcome::Failed(error.message)).await;
                if conflict {
                    self.reoffer_after_conflict(&plan).await;
                }
            }
            Ok(operation) => {
                if let Err(error) = self
                    .inner
                    .store
                    .set_plan_operation(&plan.id, &operation)
                    .await
                {
                    tracing::warn!(%error, "could not store the rollback operation");
                }
                self.follow(&plan, backend, operation).await;
            }
        }
    }

    pub(super) async fn follow(
        &self,
        plan: &RollbackPlan,
        backend: Arc<dyn DeployBackend>,
        operation: Operation,
    ) {
        let outcome = match operation.finished.clone() {
            Some(outcome) => outcome,
            None => {
                let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
                let progress = move |line: String| {
                    let _ = sender.send(line);
                };
                let reporter = {
                    let bot = self.clone();
                    let mut shown = plan.clone();
                    tokio::spawn(async move {
                        let mut last = Instant::now() - Duration::from_secs(10);
                        let mut audited = 0;
                        while let Some(line) = receiver.recv().await {
                            // The first lines go to the audit log too, so that an
                            // incident's timeline can show the backend's progress; past
                            // the bound they are only shown (the outcome is audited).
                            if audited < PROGRESS_AUDITED {
                                audited += 1;
                                bot.audit_progress(&shown, &line).await;
                            }
                            shown.outcome = Some(line);
                            if last.elapsed() >= Duration::from_secs(2) {
                                last = Instant::now();
                                bot.update_plan_message(&shown).await;
                            }
                        }
                    })
                };
                let started = Instant::now();
                let result = tokio::time::timeout(
                    self.inner.settings.follow_limit,
                    backend.wait(&operation, &progress),
                )
                .await;
                drop(progress);
                let _ = reporter.await;
                let ok = matches!(result, Ok(Ok(_)));
                self.inner
                    .metrics
                    .backend_call(backend.name(), "wait", ok, started.elapsed());
                match result {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(error)) => Outcome::Failed(error.message),
                    Err(_) => Outcome::Failed(format!(
                        "breakwater stopped following after {}; check {} for the outcome before retrying.",
                        human_span(self.inner.settings.follow_limit.as_secs()),
                        backend.name()
                    )),
                }
            }
        };
        self.finish(plan, outcome).await;
    }

    /// Audits one progress line of a followed rollback. Best effort: the rollback goes on
    /// when the line cannot be written, and the failure is logged.
    pub(super) async fn audit_progress(&self, plan: &RollbackPlan, line: &str) {
        let entry = self
            .inner
            .audit
            .entry(actions::ROLLBACK_PROGRESS)
            .target(&plan.target)
            .detail(&details::ProgressLine {
                plan: plan.id.to_string(),
                line,
            });
        if let Err(error) = self.inner.audit.append(entry).await {
            tracing::warn!(%error, plan = %plan.id, "could not audit a rollback progress line");
        }
    }

    pub(super) async fn finish(&self, plan: &RollbackPlan, outcome: Outcome) {
        let now = self.now();
        let (state, detail) = match &outcome {
            Outcome::Succeeded(detail) => (PlanState::Succeeded, detail.clone()),
            Outcome::Failed(reason) => (PlanState::Failed, reason.clone()),
        };
        let patch = PlanPatch {
            finished_at: Some(now),
            outcome: Some(detail.clone()),
            ..PlanPatch::default()
        };
        let result: Result<(), BotError> = async {
            let Some(finished) = self
                .inner
                .store
                .transition_plan(&plan.id, &[PlanState::Running], state, &patch, now)
                .await?
            else {
                // Someone (shutdown) already closed it.
                return Ok(());
            };
            let actor = finished.started_by.clone();
            // A restore is recorded by the config watch, as the ConfigMap change it is; an
            // abort deployed nothing.
            if state == PlanState::Succeeded && plan.action.changes_revision() {
                let who = actor
                    .as_ref()
                    .map_or("breakwater".to_owned(), |a| a.name().to_owned());
                let deploy = Deploy {
                    target: plan.target.clone(),
                    version: plan.to.version.clone(),
                    previous_version: Some(plan.from.version.clone()),
                    revision: (plan.to.id != plan.to.version).then(|| plan.to.id.clone()),
                    commit: None,
                    author: Some(who),
                    description: Some(format!("rollback of {}", plan.from.version)),
                    url: None,
                    started_at: finished.started_at.unwrap_or(now),
                    finished_at: Some(now),
                    status: DeployStatus::Succeeded,
                    changes: Vec::new(),
                    config_changes: Vec::new(),
                    source: DeploySource::Rollback,
                };
                self.inner.store.record_deploy(&deploy).await?;
                if finished.alert_group.is_none() {
                    self.inner.store.set_plan_verified(&plan.id, now).await?;
                }
            }
            let took = finished
                .started_at
                .map(|s| (now - s).num_milliseconds())
                .unwrap_or_default();
            let action = if state == PlanState::Succeeded {
                actions::ROLLBACK_SUCCEEDED
            } else {
                actions::ROLLBACK_FAILED
            };
            let mut entry = self.inner.audit.entry(action).target(&plan.target).detail(
                &details::RollbackFinished {
                    plan: plan.id.to_string(),
                    action: plan.action.as_str(),
                    from: &plan.from,
                    to: &plan.to,
                    detail: &detail,
                    took_ms: took,
                },
            );
            if let Some(actor) = &actor {
                entry = entry.actor(actor);
            }
            let written = self.inner.audit.append(entry).await?;
            self.inner.metrics.rollback(state.as_str());
            self.observe_incident(plan.alert_group, &written).await;
            self.update_plan_message(&finished).await;
            if state == PlanState::Succeeded && plan.action == Action::AbortRollout {
                // Traffic is back on the stable version, but the target still holds the
                // aborted template: the rollback that makes the abort final comes next.
                let offer = Offer {
                    from: plan.from.clone(),
                    to: plan.to.clone(),
                    suspect_version: plan.from.version.clone(),
                    reason: format!(
                        "the rollout of {} was aborted; rolling back makes {} the template again",
                        plan.from.version, plan.to.version
                    ),
                    to_url: None,
                    action: Action::Rollback,
                };
                self.post_fresh_plan(&finished, &offer, actor.clone(), FreshCaveats::FromBackend)
                    .await?;
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::error!(%error, plan = %plan.id, "could not record the rollback outcome");
        }
        lock(&self.inner.running).remove(&plan.id);
    }

    /// Moves a running plan to stale with `patch`, audits it with `details` and shows it
    /// where its button is; `None` when someone else (shutdown) already closed it.
    pub(super) async fn record_stale(
        &self,
        plan: &RollbackPlan,
        patch: &PlanPatch,
        now: DateTime<Utc>,
        details: serde_json::Value,
    ) -> Result<Option<RollbackPlan>, BotError> {
        let Some(stale) = self
            .inner
            .store
            .transition_plan(
                &plan.id,
                &[PlanState::Running],
                PlanState::Stale,
                patch,
                now,
            )
            .await?
        else {
            return Ok(None);
        };
        let mut entry = self
            .inner
            .audit
            .entry(actions::ROLLBACK_STALE)
            .target(&plan.target)
            .details(details);
        if let Some(actor) = &stale.started_by {
            entry = entry.actor(actor);
        }
        self.inner.audit.append(entry).await?;
        self.inner.metrics.rollback("stale");
        self.update_plan_message(&stale).await;
        Ok(Some(stale))
    }

    /// The target moved since the plan was offered: nothing runs; a fresh plan is offered.
    pub(super) async fn mark_stale(&self, plan: &RollbackPlan, current: Option<Revision>) {
        let now = self.now();
        let current_text = current
            .as_ref()
            .map_or("an unknown revision".to_owned(), |c| c.version.clone());
        let nothing = if plan.action.changes_revision() {
            "Nothing was rolled back."
        } else {
            "Nothing was changed."
        };
        let outcome = format!(
            "{} now runs {current_text}, not {} as when this was offered (deployed again since). {nothing}",
            plan.target, plan.from.version
        );
        let patch = PlanPatch {
            finished_at: Some(now),
            outcome: Some(outcome.clone()),
            ..PlanPatch::default()
        };
        let result: Result<(), BotError> = async {
            let details = crate::core::audit::details_value(&details::DeployedSince {
                plan: plan.id.to_string(),
                expected_from: &plan.from,
                current: current.as_ref(),
                to: &plan.to,
            });
            let Some(stale) = self.record_stale(plan, &patch, now, details).await? else {
                return Ok(());
            };
            if let Some(current) = current
                && current.id != plan.to.id
            {
                let offer = Offer {
                    from: current,
                    to: plan.to.clone(),
                    suspect_version: plan.from.version.clone(),
                    reason: format!("fresh plan after {} was deployed again", plan.target),
                    to_url: None,
                    action: Action::Rollback,
                };
                self.post_fresh_plan(&stale, &offer, stale.started_by.clone(), FreshCaveats::None)
                    .await?;
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::error!(%error, plan = %plan.id, "could not record the stale plan");
        }
        lock(&self.inner.running).remove(&plan.id);
    }

    /// A restore found the ConfigMap changed since it was offered (or lost the race to
    /// write it): nothing was written. The plan goes stale, and a fresh restore to the
    /// same kept state, from what the ConfigMap holds now, is offered in the thread.
    pub(super) async fn restore_went_stale(
        &self,
        plan: &RollbackPlan,
        backend: Arc<dyn DeployBackend>,
        outcome: String,
    ) {
        let now = self.now();
        let patch = PlanPatch {
            finished_at: Some(now),
            outcome: Some(outcome),
            ..PlanPatch::default()
        };
        let result: Result<(), BotError> = async {
            let details = crate::core::audit::details_value(&details::ChangedUnderIt {
                plan: plan.id.to_string(),
                action: plan.action.as_str(),
                expected_from: &plan.from,
                to: &plan.to,
            });
            let Some(stale) = self.record_stale(plan, &patch, now, details).await? else {
                return Ok(());
            };
            if stale.message.is_none() {
                // No thread to offer a fresh restore in.
                return Ok(());
            }
            // The change the plan restores from: the newest one of that ConfigMap whose
            // restore still returns to the same kept state.
            let (history, _) = self.history(&plan.target, HistoryScope::Latest(50)).await;
            let mut fresh = None;
            for change in history.iter().filter(|d| d.is_config_change()) {
                if let Ok(Some(restore)) = backend.restore_offer(&plan.target, change).await
                    && restore.to.id == plan.to.id
                {
                    fresh = Some((change.version.clone(), restore));
                    break;
                }
            }
            let Some((suspect_version, restore)) = fresh else {
                return Ok(());
            };
            let offer = Offer {
                reason: compose::restore_reason(&restore.changes),
                from: restore.from,
                to: restore.to,
                suspect_version,
                to_url: None,
                action: Action::RestoreConfig,
            };
            self.post_fresh_plan(
                &stale,
                &offer,
                stale.started_by.clone(),
                FreshCaveats::Given(restore.caveats),
            )
            .await
        }
        .await;
        if let Err(error) = result {
            tracing::error!(%error, plan = %plan.id, "could not record the stale restore");
        }
        lock(&self.inner.running).remove(&plan.id);
    }

    /// Offers `offer` as a new plan and posts it in the thread of `after` (a stale or
    /// refused plan, an abort the rollback follows), with the warnings `caveats` names
    /// (an Argo CD sync that would revert it).
    pub(super) async fn post_fresh_plan(
        &self,
        after: &RollbackPlan,
        offer: &Offer,
        requested_by: Option<Actor>,
        caveats: FreshCaveats,
    ) -> Result<(), BotError> {
        let Some(at) = &after.message else {
            return Ok(());
        };
        let fresh = self
            .offer_plan(&after.target, offer, None, requested_by)
            .await?;
        let warnings = match caveats {
            FreshCaveats::None => Vec::new(),
            FreshCaveats::Given(given) => given,
            FreshCaveats::FromBackend => match self.inner.backends.for_target(&after.target) {
                Some(backend) => match backend.caveats(&after.target, &offer.to).await {
                    Ok(found) => found,
                    Err(error) => {
                        tracing::warn!(%error, "could not read the fresh plan's caveats");
                        Vec::new()
                    }
                },
                None => Vec::new(),
            },
        };
        if let Some(chat) = self.inner.chats.get(at.platform) {
            let message = compose::plan_message(&fresh, &warnings, self.now());
            match chat.reply(at, &message, Lane::Interactive).await {
                Ok(posted) => {
                    self.inner
                        .store
                        .set_plan_message(&fresh.id, &posted)
                        .await?
                }
                Err(error) => tracing::warn!(%error, "could not post the fresh plan"),
            }
        }
        Ok(())
    }

    /// The backend refused because someone else wrote the target at the same moment
    /// (HTTP 409): nothing was done, and the person gets a fresh plan for what runs now
    /// rather than a retry behind their back.
    pub(super) async fn reoffer_after_conflict(&self, plan: &RollbackPlan) {
        let (history, _) = self.history(&plan.target, HistoryScope::Latest(20)).await;
        let current = match self.current_revision(&plan.target, &history).await {
            Ok(Some(current)) => current,
            Ok(None) => return,
            Err(message) => {
                tracing::warn!(%message, plan = %plan.id, "no fresh plan after the conflict");
                return;
            }
        };
        if current.id == plan.to.id {
            return;
        }
        // The same action while the target still runs what the plan was made for;
        // otherwise a rollback from what runs now.
        let action = if current.id == plan.from.id {
            plan.action
        } else {
            Action::Rollback
        };
        let offer = Offer {
            from: current,
            to: plan.to.clone(),
            suspect_version: plan.from.version.clone(),
            reason: format!(
                "fresh plan after someone else changed {} at the same moment",
                plan.target
            ),
            to_url: None,
            action,
        };
        if let Err(error) = self
            .post_fresh_plan(plan, &offer, plan.started_by.clone(), FreshCaveats::None)
            .await
        {
            tracing::error!(%error, plan = %plan.id, "could not offer a fresh plan after the conflict");
        }
    }

    /// Shows a plan's state where its button is: the whole summary for alert plans, the
    /// plan message for command plans.
    pub(super) async fn update_plan_message(&self, plan: &RollbackPlan) {
        if plan.state.is_final() {
            self.settle_private_replies(plan).await;
        }
        let Some(at) = &plan.message else { return };
        let Some(chat) = self.inner.chats.get(at.platform) else {
            return;
        };
        let message = match plan.alert_group {
            Some(group_id) => {
                let group = self.inner.store.alert_group(group_id).await.ok().flatten();
                let first = self
                    .inner
                    .store
                    .group_alerts(group_id)
                    .await
                    .ok()
                    .and_then(|alerts| alerts.into_iter().next());
                match (group, first) {
                    (Some(group), Some((_, alert, _))) => {
                        let summary = self.summary_for(group_id, &alert).await;
                        self.render_summary(&summary, &group, Some(plan))
                    }
                    _ => compose::plan_message(plan, &[], self.now()),
                }
            }
            None => compose::plan_message(plan, &[], self.now()),
        };
        if let Err(error) = chat.update(at, &message, Lane::Interactive).await {
            tracing::warn!(%error, plan = %plan.id, "could not update the plan's message");
            self.inner.metrics.chat_error(at.platform.as_str());
        }
    }

    /// Writes `rollback.started` durably, as the plan's starter, before anything runs, and
    /// gives the starter. None — and the plan failed, saying it `did_not` do its step —
    /// when the plan has no recorded starter or the record cannot be written: without
    /// the record nothing may run.
    pub(super) async fn audit_started(
        &self,
        plan: &RollbackPlan,
        details: &impl serde::Serialize,
        did_not: &str,
    ) -> Option<Actor> {
        let Some(actor) = plan.started_by.clone() else {
            self.finish(
                plan,
                Outcome::Failed("The plan has no recorded starter.".to_owned()),
            )
            .await;
            return None;
        };
        let entry = self
            .inner
            .audit
            .entry(actions::ROLLBACK_STARTED)
            .actor(&actor)
            .target(&plan.target)
            .detail(details);
        if let Err(error) = self.inner.audit.append(entry).await {
            tracing::error!(%error, "could not audit rollback.started");
            self.finish(
                plan,
                Outcome::Failed(format!(
                    "breakwater could not write its audit log, so it {did_not}. Nothing was changed."
                )),
            )
            .await;
            return None;
        }
        Some(actor)
    }
}
