//! Alerts in: webhook payloads and channel messages become recorded, audited alerts and threads.

use super::*;

impl Bot {
    /// Alerts from a webhook payload. Returns once every alert is recorded and audited, or
    /// held until the store is back; posting to chat continues in the background. When
    /// the store is unavailable and the rest of the batch does not fit in the hold, fails
    /// with [`BotError::AlertHoldFull`] so that the sender redelivers the batch (alerts
    /// already recorded come back as repeats).
    pub async fn handle_webhook_alerts(
        &self,
        alerts: Vec<Alert>,
    ) -> Result<Vec<AlertHandled>, BotError> {
        let mut handled = Vec::with_capacity(alerts.len());
        let mut alerts = alerts.into_iter();
        while let Some(mut alert) = alerts.next() {
            self.inner.recognizer.apply(&mut alert);
            if alert.service.is_none() {
                self.note_unrouted(&alert);
            }
            let held = HeldAlert {
                claim: None,
                alert,
                origin: AlertOrigin::Webhook,
                recorded: None,
            };
            let result = if self.is_holding() {
                Err((held, None))
            } else {
                self.record_held(held).await.map_err(|(h, e)| (h, Some(e)))
            };
            match result {
                Ok(one) => handled.push(one),
                Err((held, error)) => {
                    if let Some(error) = error
                        && !error.is_unavailable()
                    {
                        return Err(error);
                    }
                    // From here on the rest of the batch queues behind this alert, in order.
                    let mut rest = vec![held];
                    rest.extend(alerts.by_ref().map(|mut alert| {
                        self.inner.recognizer.apply(&mut alert);
                        if alert.service.is_none() {
                            self.note_unrouted(&alert);
                        }
                        HeldAlert {
                            claim: None,
                            alert,
                            origin: AlertOrigin::Webhook,
                            recorded: None,
                        }
                    }));
                    let count = rest.len();
                    self.hold(rest, Admission::Refuse).await?;
                    handled.extend(std::iter::repeat_n(AlertHandled::Held, count));
                }
            }
        }
        Ok(handled)
    }

    /// Counts a webhook alert that matched no configured service and logs the first of
    /// each alert name; the thread it opens says the same in chat (see `build_summary`).
    pub(super) fn note_unrouted(&self, alert: &Alert) {
        self.inner.metrics.alert_unrouted();
        if self.inner.unrouted.first_time(&alert.title) {
            let known: Vec<String> = self
                .inner
                .settings
                .services
                .iter()
                .map(|s| s.name.to_string())
                .collect();
            let looked_at: Vec<String> =
                crate::core::unrouted::service_labels_looked_at(&alert.labels)
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect();
            tracing::warn!(
                alert = %alert.title,
                labels = %looked_at.join(", "),
                known = %known.join(", "),
                "a webhook alert matched no configured service; add a `service` label to the alert or an alias to [[services]] (logged once per alert name, counted in breakwater_alerts_unrouted_total)"
            );
        }
    }

    /// An alert an adapter read from a message in an alert channel (the adapter parses
    /// the message; see `crate::alerts::parse_channel_message`). `event_id` is the
    /// platform's delivery id, `at` the message the alert was read from.
    ///
    /// The delivery was acknowledged already, so it is never dropped: when the store is
    /// unavailable the alert is held, waiting for room in the hold when that is full.
    pub async fn handle_channel_alert(
        &self,
        event_id: &str,
        at: MessageRef,
        mut alert: Alert,
    ) -> Result<AlertHandled, BotError> {
        self.inner.recognizer.apply(&mut alert);
        // People (and bots of unknown format) talk about services all day; only a message
        // naming a known service *and* describing a problem is treated as an alert.
        let from_a_person = alert.source == crate::core::alert::AlertSource::Person;
        if from_a_person && (alert.service.is_none() || !describes_a_problem(&alert.description)) {
            return Ok(AlertHandled::Ignored);
        }
        let held = HeldAlert {
            claim: Some(format!("{}:{event_id}", at.platform)),
            alert,
            origin: AlertOrigin::Channel(at),
            recorded: None,
        };
        if self.is_holding() {
            self.hold(vec![held], Admission::WaitForRoom).await?;
            return Ok(AlertHandled::Held);
        }
        match self.record_held(held).await {
            Ok(handled) => Ok(handled),
            Err((held, error)) if error.is_unavailable() => {
                self.hold(vec![held], Admission::WaitForRoom).await?;
                Ok(AlertHandled::Held)
            }
            Err((_, error)) => Err(error),
        }
    }

    /// Whether an alert delivery that can still be refused should be accepted: `false`
    /// while the store is unavailable and the hold is full. Slack's HTTP events ask this
    /// before acknowledging, and answer 503 when it says no.
    pub fn accepting_alerts(&self) -> bool {
        lock(&self.inner.hold.state).queue.len() < self.inner.hold.capacity
    }

    /// Alerts held in memory for the store to come back (`/readyz`).
    pub fn held_alerts(&self) -> usize {
        lock(&self.inner.hold.state).queue.len()
    }

    pub(super) fn is_holding(&self) -> bool {
        let state = lock(&self.inner.hold.state);
        state.draining || !state.queue.is_empty()
    }

    pub(super) async fn claim(&self, platform: Platform, event_id: &str) -> Result<bool, BotError> {
        Ok(self
            .inner
            .store
            .claim_event(&format!("{platform}:{event_id}"), self.now())
            .await?)
    }

    /// Records, audits and groups one recognised alert, then answers it in chat in the
    /// background.
    pub async fn process_alert(
        &self,
        alert: Alert,
        origin: AlertOrigin,
    ) -> Result<AlertHandled, BotError> {
        self.record_held(HeldAlert {
            claim: None,
            alert,
            origin,
            recorded: None,
        })
        .await
        .map_err(|(_, error)| error)
    }

    /// Takes an alert through the steps it has not done yet: claim its delivery, record
    /// it, audit it, then answer it in chat in the background. On failure returns the
    /// alert as far as it got, so that a retry neither claims nor records it twice.
    pub(super) async fn record_held(
        &self,
        mut held: HeldAlert,
    ) -> Result<AlertHandled, (HeldAlert, BotError)> {
        let now = self.now();
        if let Some(key) = &held.claim {
            match self.inner.store.claim_event(key, now).await {
                Ok(true) => held.claim = None,
                Ok(false) => return Ok(AlertHandled::Duplicate),
                Err(error) => return Err((held, error.into())),
            }
        }
        let recorded = match &held.recorded {
            Some(recorded) => recorded.clone(),
            None => {
                let since = now
                    - chrono::Duration::from_std(self.inner.settings.group_window)
                        .unwrap_or(chrono::Duration::minutes(10));
                match self.inner.store.record_alert(&held.alert, since, now).await {
                    Ok(recorded) => recorded,
                    Err(error) => return Err((held, error.into())),
                }
            }
        };
        if !recorded.new_alert && !recorded.resolved {
            return Ok(AlertHandled::Repeat);
        }
        held.recorded = Some(recorded.clone());
        let alert = &held.alert;
        let origin = &held.origin;
        let action = if alert.status == AlertStatus::Resolved {
            actions::ALERT_RESOLVED
        } else {
            actions::ALERT_RECEIVED
        };
        let mut entry = self
            .inner
            .audit
            .entry(action)
            .detail(&details::AlertRecorded {
                alert_id: recorded.id,
                group: recorded.group.id,
                source: alert.source.as_str(),
                title: &alert.title,
                severity: alert.severity.as_str(),
                status: alert.status.as_str(),
                fingerprint: &alert.fingerprint,
                started_at: alert.started_at,
                link: alert.link.as_deref(),
                origin: match origin {
                    AlertOrigin::Webhook => details::AlertOriginDetail::Webhook("webhook"),
                    AlertOrigin::Channel(at) => details::AlertOriginDetail::Channel(at),
                },
            });
        if let Some(target) = alert.target() {
            entry = entry.target(&target);
        }
        let written = match self.inner.audit.append(entry).await {
            Ok(written) => written,
            Err(error) => return Err((held, error.into())),
        };
        self.inner
            .metrics
            .alert_received(held.alert.source.as_str());
        if recorded.resolved && recorded.group.resolved_at.is_some() {
            self.observe_incident(Some(recorded.group.id), &written)
                .await;
        }
        Ok(self.announce(held.alert, held.origin, recorded))
    }

    /// Observes the incident intervals that the record just `written` ends. Only the
    /// first record of its kind in the group's chain ends an interval, and only the
    /// replica that wrote it observes, so redeliveries and other replicas never count an
    /// incident twice. Metrics are best effort: a failure to read is logged, not raised.
    pub(super) async fn observe_incident(&self, group_id: Option<i64>, written: &AuditRecord) {
        let Some(group_id) = group_id else { return };
        let found = match incident::load(&self.inner.store, &self.inner.audit, group_id, false)
            .await
        {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, group = group_id, "could not read the incident to observe its durations");
                return;
            }
        };
        let (Some(service), Some(environment)) = (&found.service, &found.environment) else {
            return;
        };
        let ends =
            |mark: Option<(i64, DateTime<Utc>)>| mark.is_some_and(|(seq, _)| seq == written.seq);
        let marks = &found.milestones;
        let durations = &found.durations;
        let mut ended = Vec::new();
        if ends(marks.summary_posted) {
            ended.push((IncidentInterval::AlertToSummary, durations.alert_to_summary));
        }
        if ends(marks.first_press) {
            ended.push((
                IncidentInterval::AlertToFirstPress,
                durations.alert_to_first_press,
            ));
        }
        if ends(marks.rollback_finished) {
            ended.push((
                IncidentInterval::PressToRollbackFinished,
                durations.press_to_rollback_finished,
            ));
        }
        if ends(marks.resolved) {
            ended.push((
                IncidentInterval::RollbackFinishedToResolved,
                durations.rollback_finished_to_resolved,
            ));
            ended.push((
                IncidentInterval::AlertToResolved,
                durations.alert_to_resolved,
            ));
        }
        for (interval, seconds) in ended {
            if let Some(seconds) = seconds {
                self.inner
                    .metrics
                    .incident_interval(interval, service, environment, seconds);
            }
        }
    }

    /// Answers a recorded alert in chat, in the background.
    pub(super) fn announce(
        &self,
        alert: Alert,
        origin: AlertOrigin,
        recorded: RecordedAlert,
    ) -> AlertHandled {
        let handled = AlertHandled::Recorded {
            group_id: recorded.group.id,
            new_group: recorded.new_group,
            resolved: recorded.resolved,
        };
        let bot = self.clone();
        let group = recorded.group.clone();
        if alert.status == AlertStatus::Resolved {
            if recorded.resolved {
                self.inner
                    .background
                    .spawn(async move { bot.on_alert_resolved(group).await });
            }
        } else if recorded.new_group {
            // Claimed before this returns, so the group's next alert (perhaps already on
            // its way) joins instead of opening a thread of its own.
            let platforms: Vec<Platform> = match &origin {
                AlertOrigin::Channel(at) => vec![at.platform],
                AlertOrigin::Webhook => self
                    .inner
                    .chats
                    .all()
                    .iter()
                    .map(|c| c.platform())
                    .collect(),
            };
            lock(&self.inner.opening).extend(platforms.iter().map(|p| (group.id, *p)));
            self.inner.background.spawn(async move {
                bot.open_threads(group.clone(), alert, origin).await;
                let mut opening = lock(&bot.inner.opening);
                for platform in platforms {
                    opening.remove(&(group.id, platform));
                }
            });
        } else {
            self.inner
                .background
                .spawn(async move { bot.join_group(group, origin).await });
        }
        handled
    }

    /// Puts alerts at the end of the hold and makes sure a task is retrying it. With
    /// [`Admission::Refuse`] all of them or none go in.
    pub(super) async fn hold(
        &self,
        mut alerts: Vec<HeldAlert>,
        admission: Admission,
    ) -> Result<(), BotError> {
        let hold = &self.inner.hold;
        loop {
            let room = hold.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut state = lock(&hold.state);
                let free = hold.capacity.saturating_sub(state.queue.len());
                let fits = match admission {
                    Admission::Refuse => alerts.len() <= free,
                    Admission::WaitForRoom => free > 0,
                };
                if fits {
                    let take = alerts.len().min(free);
                    let first = state.queue.is_empty() && !state.draining;
                    state.queue.extend(alerts.drain(..take));
                    if first {
                        tracing::warn!(
                            capacity = hold.capacity,
                            "the database is unavailable: holding alerts in memory until it is back (check database.url)"
                        );
                    }
                    if !state.draining {
                        state.draining = true;
                        let bot = self.clone();
                        tokio::spawn(async move { bot.drain_hold().await });
                    }
                    if alerts.is_empty() {
                        return Ok(());
                    }
                } else if admission == Admission::Refuse {
                    return Err(BotError::AlertHoldFull(state.queue.len()));
                }
            }
            room.await;
        }
    }

    /// Retries the oldest held alert until the store takes it, then the next, in order,
    /// backing off while the store stays unavailable. Logs once when the hold is empty.
    pub(super) async fn drain_hold(&self) {
        const FIRST_RETRY: Duration = Duration::from_millis(100);
        const LAST_RETRY: Duration = Duration::from_secs(5);
        let hold = &self.inner.hold;
        let started = Instant::now();
        let mut delay = FIRST_RETRY;
        let mut recorded = 0usize;
        loop {
            let front = {
                let mut state = lock(&hold.state);
                match state.queue.front() {
                    Some(front) => front.clone(),
                    None => {
                        state.draining = false;
                        break;
                    }
                }
            };
            match self.record_held(front).await {
                Ok(_) => {
                    lock(&hold.state).queue.pop_front();
                    hold.room.notify_waiters();
                    recorded += 1;
                    delay = FIRST_RETRY;
                }
                Err((progress, error)) if error.is_unavailable() => {
                    if let Some(front) = lock(&hold.state).queue.front_mut() {
                        *front = progress;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(LAST_RETRY);
                }
                Err((dropped, error)) => {
                    tracing::error!(%error, title = dropped.alert.title, "a held alert cannot be recorded and is dropped");
                    lock(&hold.state).queue.pop_front();
                    hold.room.notify_waiters();
                }
            }
        }
        hold.room.notify_waiters();
        tracing::info!(
            recorded,
            held_for = ?started.elapsed(),
            "the database is back: every held alert is recorded"
        );
    }

    /// A new group: post (for webhooks), reply with the summary, offer the plan.
    pub(super) async fn open_threads(&self, group: AlertGroup, alert: Alert, origin: AlertOrigin) {
        let summary = self.summary_for(group.id, &alert).await;
        let mut places: Vec<(Arc<dyn Chat>, Option<MessageRef>)> = Vec::new();
        match &origin {
            AlertOrigin::Channel(at) => {
                if let Some(chat) = self.inner.chats.get(at.platform) {
                    places.push((chat, Some(at.clone())));
                }
            }
            AlertOrigin::Webhook => {
                for chat in self.inner.chats.all() {
                    places.push((chat, None));
                }
            }
        }
        for chat in self.inner.chats.all() {
            if chat.mirrors_all_alerts()
                && !places.iter().any(|(c, _)| c.platform() == chat.platform())
            {
                places.push((chat, None));
            }
        }
        for (chat, at) in places {
            if let Err(error) = self.open_thread(&chat, &group, &alert, &summary, at).await {
                tracing::warn!(platform = %chat.platform(), group = group.id, %error, "could not post the alert summary");
                self.inner.metrics.chat_error(chat.platform().as_str());
            }
        }
    }

    pub(super) async fn open_thread(
        &self,
        chat: &Arc<dyn Chat>,
        group: &AlertGroup,
        alert: &Alert,
        summary: &Summary,
        at: Option<MessageRef>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let posted_by_bot = at.is_none();
        let alert_message = match at {
            Some(at) => at,
            None => {
                let Some(channel) = chat.alert_channel(alert.service.as_ref()) else {
                    return Ok(());
                };
                let posted = chat
                    .post(
                        &channel,
                        &compose::alert_post(alert, alert.target().as_ref()),
                        Lane::Alerts,
                    )
                    .await?;
                lock(&self.inner.own_posts).remember(posted.clone(), false);
                posted
            }
        };
        self.inner
            .store
            .add_group_thread(&GroupThread {
                group_id: group.id,
                alert_message: alert_message.clone(),
                summary: None,
                posted_by_bot,
            })
            .await?;
        let plan = match &summary.body {
            SummaryBody::Deploys(deploys) => match &deploys.offer {
                Some(offer) => Some(
                    self.offer_plan(&deploys.target, offer, Some(group.id), None)
                        .await?,
                ),
                None => None,
            },
            _ => None,
        };
        let fresh_group = self
            .inner
            .store
            .alert_group(group.id)
            .await?
            .unwrap_or_else(|| group.clone());
        let message = self.render_summary(summary, &fresh_group, plan.as_ref());
        let posted = chat.reply(&alert_message, &message, Lane::Alerts).await?;
        self.inner
            .store
            .set_group_summary(group.id, &alert_message, &posted)
            .await?;
        if let Some(plan) = &plan {
            self.inner.store.set_plan_message(&plan.id, &posted).await?;
        }
        let mut entry =
            self.inner
                .audit
                .entry(actions::SUMMARY_POSTED)
                .detail(&details::SummaryPosted {
                    group: group.id,
                    platform: posted.platform,
                    channel: &posted.channel,
                    message: &posted.id,
                    plan: plan.as_ref().map(|p| p.id.to_string()),
                    from: plan.as_ref().map(|p| p.from.version.as_str()),
                    to: plan.as_ref().map(|p| p.to.version.as_str()),
                    suspect: suspect_version(summary),
                });
        if let Some(target) = alert.target() {
            entry = entry.target(&target);
        }
        let written = self.inner.audit.append(entry).await?;
        self.inner.metrics.summary_posted(posted.platform.as_str());
        self.observe_incident(Some(group.id), &written).await;
        Ok(())
    }

    /// Another alert in an open group: refresh the summary's count, and answer on a
    /// platform the group has no thread on yet.
    pub(super) async fn join_group(&self, group: AlertGroup, origin: AlertOrigin) {
        if let AlertOrigin::Channel(at) = &origin
            && lock(&self.inner.opening).insert((group.id, at.platform))
        {
            match self.inner.store.group_threads(group.id).await {
                Ok(threads)
                    if !threads
                        .iter()
                        .any(|t| t.alert_message.platform == at.platform) =>
                {
                    if let (Some(chat), Ok(alerts)) = (
                        self.inner.chats.get(at.platform),
                        self.inner.store.group_alerts(group.id).await,
                    ) && let Some((_, first, _)) = alerts.first()
                    {
                        let summary = self.summary_for(group.id, first).await;
                        if let Err(error) = self
                            .open_thread(&chat, &group, first, &summary, Some(at.clone()))
                            .await
                        {
                            tracing::warn!(%error, "could not post the summary on a second platform");
                        }
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "could not read the group's threads"),
            }
            lock(&self.inner.opening).remove(&(group.id, at.platform));
        }
        self.schedule_refresh(group.id);
    }

    pub(super) fn schedule_refresh(&self, group_id: i64) {
        if !lock(&self.inner.refresh_pending).insert(group_id) {
            return;
        }
        let bot = self.clone();
        self.inner.background.spawn(async move {
            tokio::time::sleep(bot.inner.settings.refresh_delay).await;
            lock(&bot.inner.refresh_pending).remove(&group_id);
            bot.refresh_group(group_id, Lane::Alerts).await;
        });
    }

    /// Re-renders every summary of a group (count, resolution, plan status).
    pub(super) async fn refresh_group(&self, group_id: i64, lane: Lane) {
        let result: Result<(), Box<dyn std::error::Error + Send + Sync>> = async {
            let Some(group) = self.inner.store.alert_group(group_id).await? else {
                return Ok(());
            };
            let threads = self.inner.store.group_threads(group_id).await?;
            let plans = self.inner.store.plans_for_group(group_id).await?;
            let alerts = self.inner.store.group_alerts(group_id).await?;
            let Some((_, first, _)) = alerts.first() else {
                return Ok(());
            };
            let summary = self.summary_for(group_id, first).await;
            for thread in &threads {
                self.refresh_alert_post(&group, first, thread, lane).await;
            }
            for thread in threads {
                let Some(summary_ref) = thread.summary else {
                    continue;
                };
                let plan = plans
                    .iter()
                    .find(|p| p.message.as_ref() == Some(&summary_ref));
                let message = self.render_summary(&summary, &group, plan);
                if let Some(chat) = self.inner.chats.get(summary_ref.platform)
                    && let Err(error) = chat.update(&summary_ref, &message, lane).await
                {
                    tracing::warn!(%error, group = group_id, "could not update a summary");
                    self.inner.metrics.chat_error(summary_ref.platform.as_str());
                }
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, group = group_id, "could not refresh the group's summaries");
        }
    }

    /// Shows the group's state in the alert post breakwater made for it: resolved (✅, no
    /// red) or firing again. Only posts known to be the bot's own are edited (stored as such,
    /// so another replica or a restarted process edits them too), once per change of state
    /// seen by this process.
    pub(super) async fn refresh_alert_post(
        &self,
        group: &AlertGroup,
        alert: &Alert,
        thread: &GroupThread,
        lane: Lane,
    ) {
        let post = &thread.alert_message;
        let Some(chat) = self.inner.chats.get(post.platform) else {
            return;
        };
        let resolved = group.resolved_at.is_some();
        let shown = lock(&self.inner.own_posts).resolved.get(post).copied();
        let own = shown.is_some() || thread.posted_by_bot;
        let ours_unseen = shown.is_none() && chat.mirrors_all_alerts() && resolved;
        if !(own || ours_unseen) || shown == Some(resolved) {
            return;
        }
        let target = alert.target();
        let message = match group.resolved_at {
            Some(at) => compose::alert_post_resolved(alert, target.as_ref(), at),
            None => compose::alert_post(alert, target.as_ref()),
        };
        match chat.update(post, &message, lane).await {
            Ok(()) => lock(&self.inner.own_posts).remember(post.clone(), resolved),
            Err(error) => {
                tracing::warn!(%error, group = group.id, "could not update the alert post");
                self.inner.metrics.chat_error(post.platform.as_str());
            }
        }
    }

    pub(super) fn render_summary(
        &self,
        summary: &Summary,
        group: &AlertGroup,
        plan: Option<&RollbackPlan>,
    ) -> Message {
        let service = match &summary.body {
            SummaryBody::Deploys(deploys) => Some(&deploys.target.service),
            _ => None,
        };
        compose::summary_message(
            summary,
            &SummaryView {
                plan,
                grouped: group.alert_count,
                resolved_at: group.resolved_at,
                // A backend names a remedy only when its configuration allows it (Argo CD's
                // `allow_disable_autosync`), so a remedy in the caveats is the permission.
                offer_remedy: offers_remedy(summary),
                now: Some(self.now()),
                received_at: Some(group.opened_at),
                links: service.and_then(|s| self.inner.settings.links.get(s)),
                console: self.inner.settings.console_links.as_ref(),
                incident: Some(group.id),
            },
        )
    }

    /// The group resolved: refresh its summaries, and verify rollbacks made for it.
    pub(super) async fn on_alert_resolved(&self, group: AlertGroup) {
        if group.resolved_at.is_none() {
            self.schedule_refresh(group.id);
            return;
        }
        self.refresh_group(group.id, Lane::Alerts).await;
        let plans = match self.inner.store.plans_for_group(group.id).await {
            Ok(plans) => plans,
            Err(error) => {
                tracing::warn!(%error, "could not read plans of a resolved group");
                return;
            }
        };
        if let Some(resolved_at) = group.resolved_at {
            // Confirm steps still open say, like the summary, that the alert is over.
            for plan in plans.iter().filter(|p| p.state.is_open()) {
                let message = compose::prompt_after_resolution(plan, resolved_at);
                self.replace_private_replies(plan, message).await;
            }
        }
        for plan in plans
            .into_iter()
            .filter(|p| p.state == PlanState::Succeeded && p.verified_at.is_none())
        {
            let resolved_at = group.resolved_at.unwrap_or_else(|| self.now());
            let after = plan
                .finished_at
                .map(|f| human_span((resolved_at - f).num_seconds().max(0).unsigned_abs()));
            let text = match after {
                Some(after) => format!(
                    "✅ {} resolved {after} after the rollback to {}.",
                    group.title, plan.to.version
                ),
                None => format!(
                    "✅ {} resolved after the rollback to {}.",
                    group.title, plan.to.version
                ),
            };
            self.verify_plan(
                &plan,
                actions::ROLLBACK_VERIFIED,
                Message::plain(text).with_tone(Tone::Success),
            )
            .await;
        }
    }

    pub(super) async fn verify_plan(&self, plan: &RollbackPlan, action: &str, message: Message) {
        let result: Result<(), Box<dyn std::error::Error + Send + Sync>> = async {
            if !self
                .inner
                .store
                .set_plan_verified(&plan.id, self.now())
                .await?
            {
                // Another path (or replica) saw the same resolution and reported it.
                return Ok(());
            }
            self.inner
                .audit
                .append(self.inner.audit.entry(action).target(&plan.target).detail(
                    &details::PlanVerified {
                        plan: plan.id.to_string(),
                        to: &plan.to.version,
                        message: &message.text,
                    },
                ))
                .await?;
            if let Some(at) = &plan.message
                && let Some(chat) = self.inner.chats.get(at.platform)
            {
                chat.reply(at, &message, Lane::Interactive).await?;
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, plan = %plan.id, "could not report the rollback verification");
        }
    }
}
