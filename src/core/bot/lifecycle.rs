//! Lifecycle: start-up reclaim, expiry, periodic work and shutdown.

use super::*;

impl Bot {
    /// Rollbacks whose process died (at start-up: this one's previous run; at any time:
    /// another replica) are adopted and followed to their outcome when the backend can
    /// resume them, confirmed from the current revision, or reported as interrupted.
    /// Rollbacks other live processes follow keep their heartbeat and are left alone.
    pub async fn recover(&self) -> Result<usize, BotError> {
        let now = self.now();
        let stale_before = now
            - chrono::Duration::from_std(self.inner.settings.heartbeat_timeout)
                .unwrap_or(chrono::Duration::seconds(15));
        let running = self
            .inner
            .store
            .adopt_running_plans(&self.inner.runner, stale_before, now)
            .await?;
        Ok(self.resume_plans(running).await)
    }

    /// At start-up: takes back at once the rollbacks this runner id left running (its
    /// previous run was killed), then adopts those of dead runners like [`Bot::recover`].
    /// Must run before this process starts any rollback of its own.
    pub async fn recover_at_start(&self) -> Result<usize, BotError> {
        let own = self
            .inner
            .store
            .reclaim_running_plans(&self.inner.runner, self.now())
            .await?;
        if !own.is_empty() {
            tracing::info!(
                count = own.len(),
                runner = self.inner.runner,
                "taking back the rollbacks this runner left running"
            );
        }
        let reclaimed = self.resume_plans(own).await;
        Ok(reclaimed + self.recover().await?)
    }

    /// This process's runner id on the rollbacks it follows.
    pub fn runner_id(&self) -> &str {
        &self.inner.runner
    }

    /// Refreshes this process's heartbeat on its rollbacks and adopts dead runners' ones,
    /// every `settings.heartbeat_interval`, until `stop`.
    pub async fn run_heartbeat(&self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.inner.settings.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let beat: Result<(), BotError> = async {
                self.inner
                    .store
                    .heartbeat_plans(&self.inner.runner, self.now())
                    .await?;
                self.recover().await?;
                Ok(())
            }
            .await;
            if let Err(error) = beat {
                match &error {
                    BotError::Store(store) if store.is_unavailable() => {
                        crate::core::store::log_unavailable(store)
                    }
                    _ => tracing::warn!(%error, "rollback heartbeat failed"),
                }
            }
        }
    }

    /// Follows, confirms or reports each adopted running plan; returns how many.
    pub(super) async fn resume_plans(&self, running: Vec<RollbackPlan>) -> usize {
        let count = running.len();
        for plan in running {
            if lock(&self.inner.running).contains(&plan.id) {
                continue;
            }
            if plan.action == Action::RollbackCanary {
                lock(&self.inner.running).insert(plan.id);
                let bot = self.clone();
                self.inner.rollbacks.spawn(async move {
                    bot.resume_canary_rollback(plan).await;
                });
                continue;
            }
            let backend = self.inner.backends.for_target(&plan.target);
            let operation = plan.operation.clone();
            match (backend, operation) {
                (Some(backend), Some(operation))
                    if backend.capabilities().resumable || operation.finished.is_some() =>
                {
                    lock(&self.inner.running).insert(plan.id);
                    let bot = self.clone();
                    self.inner.rollbacks.spawn(async move {
                        bot.update_plan_message(&plan).await;
                        bot.follow(&plan, backend, operation).await;
                    });
                }
                _ => {
                    let (history, _) = self.history(&plan.target, HistoryScope::Latest(20)).await;
                    let current = self
                        .current_revision(&plan.target, &history)
                        .await
                        .ok()
                        .flatten();
                    if plan.action.changes_revision()
                        && current.as_ref().is_some_and(|c| c.id == plan.to.id)
                        && plan.operation.is_some()
                    {
                        lock(&self.inner.running).insert(plan.id);
                        self.finish(
                            &plan,
                            Outcome::Succeeded(format!(
                                "confirmed after a restart: {} runs {}",
                                plan.target, plan.to.version
                            )),
                        )
                        .await;
                    } else {
                        let now_runs =
                            current.map_or("an unknown revision".to_owned(), |c| c.version);
                        self.interrupt(&plan, &interrupted_words(&plan, &now_runs))
                            .await;
                    }
                }
            }
        }
        count
    }

    pub(super) async fn interrupt(&self, plan: &RollbackPlan, reason: &str) {
        let now = self.now();
        let patch = PlanPatch {
            finished_at: Some(now),
            outcome: Some(reason.to_owned()),
            ..PlanPatch::default()
        };
        let result: Result<(), BotError> = async {
            if let Some(interrupted) = self
                .inner
                .store
                .transition_plan(
                    &plan.id,
                    &[PlanState::Running],
                    PlanState::Interrupted,
                    &patch,
                    now,
                )
                .await?
            {
                let mut entry = self
                    .inner
                    .audit
                    .entry(actions::ROLLBACK_INTERRUPTED)
                    .target(&plan.target)
                    .detail(&details::RollbackInterrupted {
                        plan: plan.id.to_string(),
                        from: &plan.from,
                        to: &plan.to,
                        reason,
                    });
                if let Some(actor) = &interrupted.started_by {
                    entry = entry.actor(actor);
                }
                self.inner.audit.append(entry).await?;
                self.inner.metrics.rollback("interrupted");
                self.update_plan_message(&interrupted).await;
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::error!(%error, plan = %plan.id, "could not record the interrupted rollback");
        }
        lock(&self.inner.running).remove(&plan.id);
    }

    /// Stops taking new work, lets running rollbacks finish within `grace`, and records
    /// the ones still running as interrupted.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.rollbacks.close();
        self.inner.background.close();
        let finished = tokio::time::timeout(grace, self.inner.rollbacks.wait())
            .await
            .is_ok();
        if !finished {
            let still: Vec<PlanId> = lock(&self.inner.running).iter().copied().collect();
            for id in still {
                if let Ok(Some(plan)) = self.inner.store.plan(&id).await {
                    self.interrupt(&plan, &format!(
                        "breakwater shut down while this rollback ran; it may still complete in the deployment system. Check {} before retrying.",
                        plan.target
                    ))
                    .await;
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.background.wait()).await;
        self.wait_for_held_alerts(grace).await;
    }

    /// Gives alerts held for an unavailable store `grace` to be recorded; names the ones
    /// that could not be, since they die with the process.
    pub(super) async fn wait_for_held_alerts(&self, grace: Duration) {
        let hold = &self.inner.hold;
        let drained = tokio::time::timeout(grace, async {
            loop {
                let room = hold.room.notified();
                tokio::pin!(room);
                room.as_mut().enable();
                if !self.is_holding() {
                    return;
                }
                room.await;
            }
        })
        .await;
        if drained.is_err() {
            let state = lock(&hold.state);
            let titles: Vec<&str> = state.queue.iter().map(|h| h.alert.title.as_str()).collect();
            tracing::error!(
                count = titles.len(),
                ?titles,
                "shutting down with alerts held for the unavailable database: they are lost (check database.url)"
            );
        }
    }

    /// Waits until background chat work and running rollbacks are done; for tests and the
    /// demo.
    pub async fn settle(&self) {
        loop {
            let idle = self.inner.rollbacks.is_empty() && self.inner.background.is_empty();
            if idle {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Periodic work: expire stale offers, report rollbacks whose alert still fires after
    /// the verify window, forget old event claims, post the audit digest.
    pub async fn run_maintenance(&self, every: Duration, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Err(error) = self.maintain().await {
                tracing::warn!(%error, "maintenance failed");
            }
        }
    }

    pub async fn maintain(&self) -> Result<(), BotError> {
        let now = self.now();
        self.inner
            .store
            .heartbeat_plans(&self.inner.runner, now)
            .await?;
        self.recover().await?;
        for plan in self
            .inner
            .store
            .plans_in_state(&[PlanState::Offered, PlanState::Confirmed])
            .await?
        {
            if plan.is_expired(now) {
                self.expire_plan(&plan, now).await?;
            }
        }
        let window = chrono::Duration::from_std(self.inner.settings.policy.verify_window)
            .unwrap_or(chrono::Duration::minutes(15));
        for plan in self.inner.store.plans_awaiting_verification().await? {
            let Some(group_id) = plan.alert_group else {
                continue;
            };
            let Some(finished) = plan.finished_at else {
                continue;
            };
            let Some(group) = self.inner.store.alert_group(group_id).await? else {
                continue;
            };
            if group.resolved_at.is_some() {
                self.on_alert_resolved(group).await;
            } else if now >= finished + window {
                let text = format!(
                    "⚠️ {} is still firing {} after the rollback to {}. The cause may not be the deploy; keep investigating.",
                    group.title,
                    human_span((now - finished).num_seconds().max(0).unsigned_abs()),
                    plan.to.version
                );
                self.verify_plan(
                    &plan,
                    actions::ROLLBACK_NOT_RESOLVED,
                    Message::plain(text).with_tone(Tone::Warning),
                )
                .await;
            }
        }
        self.inner
            .store
            .prune_event_claims(now - chrono::Duration::days(2))
            .await?;
        self.post_digest(now).await?;
        Ok(())
    }

    pub(super) async fn post_digest(&self, now: DateTime<Utc>) -> Result<(), BotError> {
        let Some((channel, every)) = &self.inner.settings.digest else {
            return Ok(());
        };
        let due = lock(&self.inner.last_digest).is_none_or(|last| {
            now - last >= chrono::Duration::from_std(*every).unwrap_or(chrono::Duration::days(1))
        });
        if !due {
            return Ok(());
        }
        let Some((platform, channel_id)) = channel.split_once(':') else {
            return Ok(());
        };
        let Some(chat) = Platform::parse(platform).and_then(|p| self.inner.chats.get(p)) else {
            return Ok(());
        };
        let head = self.inner.store.audit_head().await?;
        let text = match head {
            Some((seq, hash)) => format!(
                "Audit chain head at {}: record {seq}, hash {hash}",
                now.format("%Y-%m-%d %H:%M UTC")
            ),
            None => "Audit chain is empty.".to_owned(),
        };
        match chat
            .post(channel_id, &Message::plain(text), Lane::Alerts)
            .await
        {
            Ok(_) => *lock(&self.inner.last_digest) = Some(now),
            Err(error) => tracing::warn!(%error, "could not post the audit digest"),
        }
        Ok(())
    }
}

/// What an interrupted plan tells the thread: what may already have happened and what to
/// check by hand, in the words of the action that was running.
pub(super) fn interrupted_words(plan: &RollbackPlan, now_runs: &str) -> String {
    match plan.action {
        Action::Rollback => format!(
            "breakwater restarted while this rollback ran and cannot follow it; {} now runs {now_runs}. Check the deployment system before retrying.",
            plan.target
        ),
        Action::RestoreConfig => format!(
            "breakwater restarted while this restore ran, before it recorded what it did: the ConfigMap may already hold {} while the pods of {} still run the old data. Check the ConfigMap and restart the workload by hand (kubectl rollout restart) if it does.",
            plan.to.version, plan.target
        ),
        Action::RollbackCanary => format!(
            "breakwater restarted while this canary rollback ran and cannot follow it; Flagger may already have rolled the canary of {} back. Check the Canary (kubectl describe canary) before retrying.",
            plan.target
        ),
        Action::AbortRollout => format!(
            "breakwater restarted while this abort ran and cannot follow it; check the Rollout of {} (kubectl argo rollouts get rollout) before retrying.",
            plan.target
        ),
    }
}
