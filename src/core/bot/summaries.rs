//! Summaries: the deploy history around an alert, composed and posted in its thread.

use super::*;

impl Bot {
    pub(super) async fn summary_for(&self, group_id: i64, alert: &Alert) -> Arc<Summary> {
        if let Some(summary) = lock(&self.inner.summaries).get(&group_id) {
            return summary.clone();
        }
        let summary = Arc::new(self.build_summary(alert).await);
        let mut cache = lock(&self.inner.summaries);
        if cache.len() >= SUMMARY_CACHE
            && let Some(oldest) = cache.keys().min().copied()
        {
            cache.remove(&oldest);
        }
        cache.insert(group_id, summary.clone());
        summary
    }

    /// The summary for an alert: deploys, suspect, offer and caveats.
    pub async fn build_summary(&self, alert: &Alert) -> Summary {
        let base = |body| Summary {
            alert_title: alert.title.clone(),
            alert_started_at: alert.started_at,
            severity: alert.severity,
            link: alert.link.clone(),
            body,
        };
        let Some(service) = &alert.service else {
            let known = self
                .inner
                .settings
                .services
                .iter()
                .map(|s| s.name.clone())
                .collect();
            let looked_at = crate::core::unrouted::service_labels_looked_at(&alert.labels);
            return base(SummaryBody::UnknownService { known, looked_at });
        };
        let Some(environment) = &alert.environment else {
            let known = self
                .inner
                .recognizer
                .service(service)
                .map(|s| s.environments.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            return base(SummaryBody::UnknownEnvironment {
                service: service.clone(),
                known,
            });
        };
        let target = Target::new(service.clone(), environment.clone());
        let window_start = crate::core::clock::saturating_sub(
            alert.started_at,
            chrono::Duration::from_std(self.inner.settings.policy.lookback)
                .unwrap_or(chrono::Duration::hours(6)),
        );
        let (history, mut caveats) = self
            .history(&target, HistoryScope::Window(window_start))
            .await;
        let current = match self.current_revision(&target, &history).await {
            Ok(current) => current,
            Err(message) => {
                // The history read usually failed the same way (a rejected token, a
                // deleted application): say it once.
                let repeated = backend_error_text(&message).is_some_and(|error| {
                    caveats
                        .iter()
                        .any(|c| backend_error_text(&c.message) == Some(error))
                });
                if !repeated {
                    caveats.push(Caveat {
                        message,
                        blocking: false,
                        remedy: None,
                    });
                }
                None
            }
        };
        let instances_started = self.instances_started(&target, &history).await;
        let mut summary = summarize(SummaryInput {
            alert,
            target: &target,
            history: &history,
            lookback: self.inner.settings.policy.lookback,
            current,
            caveats,
            instances_started: instances_started.as_deref(),
        });
        if let SummaryBody::Deploys(deploys) = &mut summary.body {
            self.offer_restore(deploys).await;
            if let (Some(offer), Some(backend)) = (
                deploys
                    .offer
                    .as_ref()
                    .filter(|o| o.action == Action::Rollback),
                self.inner.backends.for_target(&target),
            ) {
                match backend.instead_of_rollback(&target, offer).await {
                    Ok(Some(better)) => deploys.offer = Some(better),
                    Ok(None) => {}
                    Err(error) => deploys.caveats.push(Caveat {
                        message: format!(
                            "Could not read {} for a better first move than a rollback: {error}",
                            backend.name()
                        ),
                        blocking: false,
                        remedy: None,
                    }),
                }
            }
            self.offer_canary_rollback(&target, &history, deploys);
            // A restore carries its own caveats (offer_restore); rollbacks and aborts ask
            // the backend. A canary rollback calls no backend.
            if let (Some(offer), Some(backend)) = (
                deploys.offer.as_ref().filter(|o| {
                    o.action != Action::RestoreConfig && o.action != Action::RollbackCanary
                }),
                self.inner.backends.for_target(&target),
            ) {
                match backend.caveats(&target, &offer.to).await {
                    Ok(found) => deploys.caveats.extend(found),
                    Err(error) => deploys.caveats.push(Caveat {
                        message: format!(
                            "Could not check {} before offering a rollback: {error}",
                            backend.name()
                        ),
                        blocking: false,
                        remedy: None,
                    }),
                }
            }
            let through_flagger = deploys
                .offer
                .as_ref()
                .is_some_and(|o| o.action == Action::RollbackCanary);
            if self.inner.backends.for_target(&target).is_none() && !through_flagger {
                deploys.caveats.push(Caveat {
                    message: format!("No deployment backend is configured for {target}; rollback is not possible from here."),
                    blocking: true,
                    remedy: None,
                });
            }
        }
        summary
    }

    /// When the suspect is a configuration change the backend can undo in place (a
    /// ConfigMap with a snapshot from before it), offers that restore instead of the
    /// "rolling back the code would not undo it" line.
    pub(super) async fn offer_restore(&self, deploys: &mut DeploySummary) {
        let Some(suspect) = deploys
            .entries
            .iter()
            .find(|e| e.suspect && e.deploy.is_config_change())
        else {
            return;
        };
        let Some(backend) = self.inner.backends.for_target(&deploys.target) else {
            return;
        };
        match backend
            .restore_offer(&deploys.target, &suspect.deploy)
            .await
        {
            Ok(Some(restore)) => {
                deploys.offer = Some(Offer {
                    reason: compose::restore_reason(&restore.changes),
                    from: restore.from,
                    to: restore.to,
                    suspect_version: suspect.deploy.version.clone(),
                    to_url: None,
                    action: Action::RestoreConfig,
                });
                deploys.no_offer_reason = None;
                deploys.caveats.extend(restore.caveats);
            }
            Ok(None) => {}
            Err(error) => deploys.caveats.push(Caveat {
                message: format!(
                    "Could not check whether {} can restore the changed configuration: {error}",
                    backend.name()
                ),
                blocking: false,
                remedy: None,
            }),
        }
    }

    /// The target's deploys, newest first: the registry merged with the backend's own
    /// history (one entry per version). Backend failures become caveats, not errors.
    pub async fn history(
        &self,
        target: &Target,
        scope: HistoryScope,
    ) -> (Vec<Deploy>, Vec<Caveat>) {
        let mut caveats = Vec::new();
        let query = |since, before, limit| DeployQuery {
            service: Some(target.service.clone()),
            environment: Some(target.environment.clone()),
            since,
            before,
            limit,
        };
        // Around an alert only the window and a few deploys before it matter (the
        // suspect's predecessor); reading more would cost every summary.
        let queries = match scope {
            HistoryScope::Latest(limit) => vec![query(None, None, limit)],
            HistoryScope::Window(start) => vec![
                query(Some(start), None, WINDOW_LIMIT),
                query(None, Some(start), BEFORE_WINDOW_LIMIT),
            ],
        };
        let mut deploys = Vec::new();
        for query in queries {
            match self.inner.store.deploys(&query).await {
                Ok(found) => deploys.extend(found),
                Err(error) => {
                    tracing::warn!(%error, "could not read the deploy registry");
                    caveats.push(Caveat {
                        message: "The deploy registry could not be read.".to_owned(),
                        blocking: false,
                        remedy: None,
                    });
                    break;
                }
            }
        }
        if let Some(backend) = self.inner.backends.for_target(target)
            && backend.capabilities().own_history
        {
            let started = Instant::now();
            let result = backend.history(target).await;
            self.inner.metrics.backend_call(
                backend.name(),
                "history",
                result.is_ok(),
                started.elapsed(),
            );
            match result {
                Ok(from_backend) => merge_history(&mut deploys, from_backend),
                Err(error) => caveats.push(Caveat {
                    message: format!("{} history unavailable: {error}", backend.name()),
                    blocking: false,
                    remedy: None,
                }),
            }
        }
        (deploys, caveats)
    }

    /// When the target's running instances started, asked only when a configuration
    /// change is in the history (it is one more backend call per summary). A failure
    /// leaves the changes without a pick-up flag rather than holding up the summary.
    pub(super) async fn instances_started(
        &self,
        target: &Target,
        history: &[Deploy],
    ) -> Option<Vec<DateTime<Utc>>> {
        if !history.iter().any(Deploy::is_config_change) {
            return None;
        }
        let backend = self.inner.backends.for_target(target)?;
        let started = Instant::now();
        let result = backend.instances_started(target).await;
        self.inner.metrics.backend_call(
            backend.name(),
            "instances_started",
            result.is_ok(),
            started.elapsed(),
        );
        match result {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(backend = backend.name(), %target, %error, "could not read when the running instances started; configuration changes are shown without whether they were picked up");
                None
            }
        }
    }

    /// What runs now: from the backend when it knows, else the newest successful deploy
    /// in the registry.
    pub(super) async fn current_revision(
        &self,
        target: &Target,
        history: &[Deploy],
    ) -> Result<Option<Revision>, String> {
        if let Some(backend) = self.inner.backends.for_target(target)
            && backend.capabilities().own_history
        {
            let started = Instant::now();
            let result = backend.current(target).await;
            self.inner.metrics.backend_call(
                backend.name(),
                "current",
                result.is_ok(),
                started.elapsed(),
            );
            match result {
                Ok(Some(current)) => return Ok(Some(current)),
                Ok(None) => {}
                Err(error) => {
                    return Err(format!(
                        "Could not read what {target} runs now from {}: {error}",
                        backend.name()
                    ));
                }
            }
        }
        Ok(history
            .iter()
            .filter(|d| d.status == DeployStatus::Succeeded && !d.is_config_change())
            .max_by_key(|d| d.effective_at())
            .map(Deploy::as_revision))
    }

    pub(super) async fn offer_plan(
        &self,
        target: &Target,
        offer: &Offer,
        group: Option<i64>,
        requested_by: Option<Actor>,
    ) -> Result<RollbackPlan, BotError> {
        let now = self.now();
        let plan = RollbackPlan {
            id: PlanId::generate(),
            target: target.clone(),
            from: offer.from.clone(),
            to: offer.to.clone(),
            reason: offer.reason.clone(),
            alert_group: group,
            offered_at: now,
            expires_at: now
                + chrono::Duration::from_std(self.inner.settings.policy.plan_ttl)
                    .unwrap_or(chrono::Duration::minutes(30)),
            message: None,
            requested_by: requested_by.clone(),
            state: PlanState::Offered,
            approved_by: None,
            started_by: None,
            started_at: None,
            finished_at: None,
            outcome: None,
            operation: None,
            verified_at: None,
            action: offer.action,
        };
        self.inner.store.insert_plan(&plan).await?;
        let mut entry = self
            .inner
            .audit
            .entry(actions::ROLLBACK_OFFERED)
            .target(target)
            .detail(&details::PlanOffered {
                plan: plan.id.to_string(),
                action: plan.action.as_str(),
                from: &plan.from,
                to: &plan.to,
                group,
                expires_at: plan.expires_at,
                reason: &plan.reason,
            });
        if let Some(actor) = &requested_by {
            entry = entry.actor(actor);
        }
        self.inner.audit.append(entry).await?;
        Ok(plan)
    }
}
