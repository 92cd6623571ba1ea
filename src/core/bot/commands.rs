//! Slash commands and console commands.

use super::*;

impl Bot {
    pub async fn handle_command(&self, request: CommandRequest) -> Reply {
        match self.command(request).await {
            Ok(reply) => reply,
            Err(error) => {
                tracing::error!(%error, "command failed");
                Reply::Private(
                    Message::plain(
                        "Something went wrong on breakwater's side; the error is in its log.",
                    )
                    .with_tone(Tone::Danger),
                )
            }
        }
    }

    pub(super) async fn command(&self, request: CommandRequest) -> Result<Reply, BotError> {
        if !self.claim(request.platform, &request.event_id).await? {
            return Ok(Reply::None);
        }
        match &request.command {
            Command::Help => Ok(Reply::Private(help_message())),
            Command::Deploys {
                service,
                environment,
            } => {
                self.command_deploys(service.as_deref(), environment.as_deref())
                    .await
            }
            Command::Status {
                service,
                environment,
            } => self.command_status(service, environment).await,
            Command::Audit { service } => self.command_audit(service.as_deref()).await,
            Command::Timeline { service } => self.command_timeline(service.as_deref()).await,
            Command::Rollback {
                service,
                environment,
                version,
            } => {
                self.command_rollback(&request, service, environment, version.as_deref())
                    .await
            }
        }
    }

    /// A service (and optionally environment) named in a command, or the reply saying
    /// which names are known.
    pub(super) fn resolve(
        &self,
        service: &str,
        environment: Option<&str>,
    ) -> Result<(ServiceName, Option<Environment>), String> {
        let known: Vec<String> = self
            .inner
            .settings
            .services
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        let found = ServiceName::parse(service)
            .ok()
            .and_then(|name| self.inner.recognizer.service(&name).cloned())
            .or_else(|| {
                let lower = service.to_lowercase();
                self.inner
                    .settings
                    .services
                    .iter()
                    .find(|s| s.aliases.iter().any(|a| a.to_lowercase() == lower))
                    .cloned()
            });
        let Some(found) = found else {
            return Err(format!(
                "I don't know a service called {service:?}. Services I know: {}.",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        let Some(environment) = environment else {
            return Ok((found.name, None));
        };
        let env = Environment::parse(environment)
            .ok()
            .and_then(|env| found.environments.iter().find(|e| **e == env).cloned());
        match env {
            Some(env) => Ok((found.name, Some(env))),
            None => Err(format!(
                "{} has no environment {environment:?}; it runs in {}.",
                found.name,
                found
                    .environments
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    pub(super) async fn command_deploys(
        &self,
        service: Option<&str>,
        environment: Option<&str>,
    ) -> Result<Reply, BotError> {
        let now = self.now();
        let (service, environment) = match service {
            Some(service) => match self.resolve(service, environment) {
                Ok(found) => (Some(found.0), found.1),
                Err(text) => return Ok(Reply::private(text)),
            },
            None => (None, None),
        };
        let deploys = match (&service, &environment) {
            (Some(service), Some(environment)) => {
                let (mut history, _) = self
                    .history(
                        &Target::new(service.clone(), environment.clone()),
                        HistoryScope::Latest(10),
                    )
                    .await;
                history.truncate(10);
                history
            }
            _ => {
                self.inner
                    .store
                    .deploys(&DeployQuery {
                        service: service.clone(),
                        environment: environment.clone(),
                        limit: 10,
                        ..DeployQuery::default()
                    })
                    .await?
            }
        };
        let heading = match (&service, &environment) {
            (Some(s), Some(e)) => format!("Recent deploys of {s} {e}"),
            (Some(s), None) => format!("Recent deploys of {s}"),
            _ => "Recent deploys".to_owned(),
        };
        let links = &self.inner.settings.links;
        Ok(Reply::Private(compose::deploy_list(
            &heading,
            &deploys,
            now,
            &|deploy: &Deploy| {
                links
                    .get(&deploy.target.service)
                    .and_then(|l| l.repository.clone())
            },
        )))
    }

    pub(super) async fn command_status(
        &self,
        service: &str,
        environment: &str,
    ) -> Result<Reply, BotError> {
        let (service, environment) = match self.resolve(service, Some(environment)) {
            Ok((service, Some(environment))) => (service, environment),
            Ok(_) => return Ok(Reply::private(Command::usage())),
            Err(text) => return Ok(Reply::private(text)),
        };
        let target = Target::new(service, environment);
        let (history, caveats) = self.history(&target, HistoryScope::Latest(20)).await;
        let current = self.current_revision(&target, &history).await;
        let mut lines = Vec::new();
        match &current {
            Ok(Some(current)) => {
                lines.push(RichText::new().plain("Runs ").code(current.to_string()))
            }
            Ok(None) => {
                lines.push(RichText::new().plain("Current revision unknown (no deploys recorded)"))
            }
            Err(message) => lines.push(RichText::new().plain(message.clone())),
        }
        if let Some(last) = history.first() {
            lines.push(RichText::new().plain(format!(
                "Last deploy: {} by {} at {} ({})",
                last.version,
                last.author.as_deref().unwrap_or("unknown"),
                last.effective_at().format("%Y-%m-%d %H:%M UTC"),
                last.status.as_str()
            )));
        }
        let running = self
            .inner
            .store
            .plans_in_state(&[PlanState::Running])
            .await?;
        for plan in running.iter().filter(|p| p.target == target) {
            lines.push(RichText::new().plain(format!(
                "Rollback running: {} → {}, started by {}",
                plan.from.version,
                plan.to.version,
                plan.started_by.as_ref().map_or("someone", |a| a.name())
            )));
        }
        let key = format!("{}/{}", target.service.key(), target.environment.key());
        let open: Vec<AlertGroup> = self
            .inner
            .store
            .recent_alert_groups(50)
            .await?
            .into_iter()
            .filter(|g| g.key == key && g.resolved_at.is_none())
            .collect();
        if open.is_empty() {
            lines.push(RichText::new().plain("No open alerts"));
        }
        for group in open {
            lines.push(RichText::new().plain(format!(
                "Open alert: {} ({} alerts since {})",
                group.title,
                group.alert_count,
                group.opened_at.format("%H:%M UTC")
            )));
        }
        if let Some(finished) = self.inner.store.last_rollback_finished(&target).await? {
            lines.push(RichText::new().plain(format!(
                "Last rollback finished {}",
                finished.format("%Y-%m-%d %H:%M UTC")
            )));
        }
        for caveat in caveats {
            lines.push(RichText::new().plain(format!("⚠️ {}", caveat.message)));
        }
        let text = lines
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        Ok(Reply::Private(Message {
            text: format!("Status of {target}: {text}"),
            title: Some(format!("{target} · status")),
            tone: Tone::Info,
            sections: vec![Section::Lines { lines }],
            actions: vec![],
            status: None,
        }))
    }

    /// The latest incident's timeline (of the service when named), computed from the
    /// audit log after verifying its chain; answered privately like the other read-only
    /// commands.
    pub(super) async fn command_timeline(&self, service: Option<&str>) -> Result<Reply, BotError> {
        let service = match service {
            Some(service) => match self.resolve(service, None) {
                Ok((service, _)) => Some(service.to_string()),
                Err(text) => return Ok(Reply::private(text)),
            },
            None => None,
        };
        let latest = incident::latest(&self.inner.store, service.as_deref()).await?;
        let found = match latest {
            Some(id) => incident::load(&self.inner.store, &self.inner.audit, id, true).await?,
            None => None,
        };
        let Some(found) = found else {
            let text = match &service {
                Some(service) => format!("No incident of {service} yet."),
                None => "No incident yet.".to_owned(),
            };
            return Ok(Reply::private(text));
        };
        let link = self
            .inner
            .settings
            .console_links
            .as_ref()
            .map(|console| console.incident(found.id));
        Ok(Reply::Private(incident::to_message(&found, link)))
    }

    pub(super) async fn command_audit(&self, service: Option<&str>) -> Result<Reply, BotError> {
        let service = match service {
            Some(service) => match self.resolve(service, None) {
                Ok((service, _)) => Some(service.to_string()),
                Err(text) => return Ok(Reply::private(text)),
            },
            None => None,
        };
        let records = self
            .inner
            .audit
            .search(&AuditQuery {
                service: service.clone(),
                limit: 10,
                ..AuditQuery::default()
            })
            .await?;
        let lines: Vec<RichText> = records
            .iter()
            .map(|r| {
                let who = if r.actor_name.is_empty() {
                    "breakwater".to_owned()
                } else {
                    r.actor_name.clone()
                };
                let target = if r.service.is_empty() {
                    String::new()
                } else {
                    format!(" — {} {}", r.service, r.environment)
                };
                RichText::new()
                    .code(format!("#{}", r.seq))
                    .plain(format!(" {} ", r.at.format("%m-%d %H:%M:%S UTC")))
                    .bold(r.action.clone())
                    .plain(format!(" by {who}{target}"))
            })
            .collect();
        let heading = match &service {
            Some(service) => format!("Latest audit records for {service}"),
            None => "Latest audit records".to_owned(),
        };
        let text = if lines.is_empty() {
            "No audit records yet.".to_owned()
        } else {
            lines
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        };
        Ok(Reply::Private(Message {
            text: format!("{heading}:\n{text}"),
            title: Some(heading),
            tone: Tone::Info,
            sections: if lines.is_empty() {
                vec![Section::Text {
                    text: RichText::new().plain(text),
                }]
            } else {
                vec![Section::Lines { lines }]
            },
            actions: vec![],
            status: None,
        }))
    }

    pub(super) async fn command_rollback(
        &self,
        request: &CommandRequest,
        service: &str,
        environment: &str,
        version: Option<&str>,
    ) -> Result<Reply, BotError> {
        let (service, environment) = match self.resolve(service, Some(environment)) {
            Ok((service, Some(environment))) => (service, environment),
            Ok(_) => return Ok(Reply::private(Command::usage())),
            Err(text) => return Ok(Reply::private(text)),
        };
        let target = Target::new(service, environment);
        let Some(backend) = self.inner.backends.for_target(&target) else {
            return Ok(Reply::private(format!(
                "No deployment backend is configured for {target}."
            )));
        };
        let (history, _) = self
            .history(&target, HistoryScope::Latest(HISTORY_LIMIT))
            .await;
        let current = match self.current_revision(&target, &history).await {
            Ok(Some(current)) => current,
            Ok(None) => {
                return Ok(Reply::private(format!(
                    "I don't know what {target} runs now (no deploys recorded), so I can't offer a rollback."
                )));
            }
            Err(message) => return Ok(Reply::private(message)),
        };
        let to = match version {
            Some(version) => match history
                .iter()
                .find(|d| d.version == version && d.status == DeployStatus::Succeeded)
            {
                Some(deploy) => deploy.as_revision(),
                None => {
                    let known: Vec<&str> = history
                        .iter()
                        .filter(|d| d.status == DeployStatus::Succeeded)
                        .map(|d| d.version.as_str())
                        .take(10)
                        .collect();
                    return Ok(Reply::private(format!(
                        "{version} is not a known successful deploy of {target}. Known: {}.",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    )));
                }
            },
            None => {
                let current_deploy = history
                    .iter()
                    .filter(|d| d.status == DeployStatus::Succeeded && d.version == current.version)
                    .max_by_key(|d| d.effective_at());
                let previous = history.iter().find(|d| {
                    d.status == DeployStatus::Succeeded
                        && d.version != current.version
                        && current_deploy.is_none_or(|c| d.effective_at() <= c.started_at)
                });
                match previous {
                    Some(deploy) => deploy.as_revision(),
                    None => {
                        return Ok(Reply::private(format!(
                            "No earlier successful deploy of {target} is known to roll back to."
                        )));
                    }
                }
            }
        };
        if to.id == current.id {
            return Ok(Reply::private(format!(
                "{target} already runs {}.",
                to.version
            )));
        }
        if !backend.capabilities().any_revision {
            let previous = history
                .iter()
                .find(|d| d.status == DeployStatus::Succeeded && d.version != current.version);
            if previous.is_some_and(|p| p.version != to.version) {
                return Ok(Reply::private(format!(
                    "The {} backend can only roll back to the previous revision ({}).",
                    backend.kind(),
                    previous.map(|p| p.version.as_str()).unwrap_or("unknown")
                )));
            }
        }
        let caveats = backend.caveats(&target, &to).await.unwrap_or_default();
        let offer = Offer {
            reason: format!(
                "requested by {} with /breakwater rollback",
                request.actor.name()
            ),
            from: current,
            to,
            suspect_version: String::new(),
            to_url: None,
            action: Action::Rollback,
        };
        let plan = self
            .offer_plan(&target, &offer, None, Some(request.actor.clone()))
            .await?;
        let message = compose::plan_message(&plan, &caveats, self.now());
        let posted = match (&request.channel, self.inner.chats.get(request.platform)) {
            (Some(channel), Some(chat)) => chat
                .post(channel, &message, Lane::Interactive)
                .await
                .map_err(|e| e.to_string()),
            _ => Err("no channel".to_owned()),
        };
        match posted {
            Ok(posted) => {
                self.inner.store.set_plan_message(&plan.id, &posted).await?;
                Ok(Reply::private(format!(
                    "Rollback plan for {target} posted in the channel ({} → {}). Nothing runs until someone presses Roll back.",
                    plan.from.version, plan.to.version
                )))
            }
            Err(reason) => {
                tracing::info!(%reason, "could not post the plan in the channel; answering privately");
                Ok(Reply::Private(message))
            }
        }
    }
}
