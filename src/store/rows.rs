//! The rows the SQL reads, as sqlx decodes them, and their conversions into the domain's
//! types (a row that does not convert is reported as corrupt rather than guessed at).

use std::collections::BTreeMap;

use sqlx::FromRow;

use super::sql::{
    corrupt, environment, from_json, micros, opt_from_json, opt_micros, opt_time, service, time,
    to_json,
};
use super::{AlertGroup, ConsoleMessage, ConsoleSession, GroupThread, StoreResult};
use crate::audit::AuditRecord;
use crate::core::alert::{Alert, AlertSource, AlertStatus, Severity};
use crate::core::backend::Action;
use crate::core::deploy::{Deploy, DeploySource, DeployStatus, Revision, Target};
use crate::core::message::{Message, MessageRef};
use crate::core::rollback::{Confirmation, PlanId, PlanState, RollbackPlan};

#[derive(FromRow)]
pub(crate) struct DeployRow {
    pub(crate) id: i64,
    pub(crate) service: String,
    pub(crate) environment: String,
    pub(crate) version: String,
    pub(crate) previous_version: Option<String>,
    pub(crate) revision: Option<String>,
    pub(crate) commit_sha: Option<String>,
    pub(crate) author: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) started_at: i64,
    pub(crate) finished_at: Option<i64>,
    pub(crate) status: String,
    pub(crate) changes: String,
    pub(crate) config_changes: String,
    pub(crate) source: String,
}

/// A stored backend operation, or none when it cannot be read (written by a version whose
/// operation had another shape): the plan is then reclaimed as interrupted, not followed,
/// and the other plans still load.
fn readable_operation(text: &str) -> Option<crate::core::backend::Operation> {
    match serde_json::from_str(text) {
        Ok(operation) => Some(operation),
        Err(error) => {
            tracing::warn!(%error, "a stored rollback operation cannot be read; its plan is reported interrupted");
            None
        }
    }
}

impl DeployRow {
    pub(crate) fn into_deploy(self) -> StoreResult<(i64, Deploy)> {
        let deploy = Deploy {
            target: Target::new(service(&self.service)?, environment(&self.environment)?),
            version: self.version,
            previous_version: self.previous_version,
            revision: self.revision,
            commit: self.commit_sha,
            author: self.author,
            description: self.description,
            url: self.url,
            started_at: time(self.started_at)?,
            finished_at: opt_time(self.finished_at)?,
            status: DeployStatus::parse(&self.status)
                .ok_or_else(|| corrupt(format!("unknown deploy status {:?}", self.status)))?,
            changes: from_json("deploy changes", &self.changes)?,
            config_changes: from_json("deploy config changes", &self.config_changes)?,
            source: DeploySource::parse(&self.source)
                .ok_or_else(|| corrupt(format!("unknown deploy source {:?}", self.source)))?,
        };
        Ok((self.id, deploy))
    }
}

/// A deploy as column values, in the order of the `INSERT` column list.
pub(crate) struct DeployValues {
    pub(crate) service: String,
    pub(crate) service_key: String,
    pub(crate) environment: String,
    pub(crate) environment_key: String,
    pub(crate) version: String,
    pub(crate) previous_version: Option<String>,
    pub(crate) revision: Option<String>,
    pub(crate) commit_sha: Option<String>,
    pub(crate) author: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) started_at: i64,
    pub(crate) finished_at: Option<i64>,
    pub(crate) status: String,
    pub(crate) changes: String,
    pub(crate) config_changes: String,
    pub(crate) source: String,
}

impl DeployValues {
    pub(crate) fn new(deploy: &Deploy) -> StoreResult<Self> {
        // The store never holds a secret, whoever forgot to mask it before.
        let deploy = deploy.clone().with_secrets_masked();
        Ok(Self {
            service: deploy.target.service.to_string(),
            service_key: deploy.target.service.key(),
            environment: deploy.target.environment.to_string(),
            environment_key: deploy.target.environment.key(),
            changes: to_json("deploy changes", &deploy.changes)?,
            config_changes: to_json("deploy config changes", &deploy.config_changes)?,
            version: deploy.version,
            previous_version: deploy.previous_version,
            revision: deploy.revision,
            commit_sha: deploy.commit,
            author: deploy.author,
            description: deploy.description,
            url: deploy.url,
            started_at: micros(deploy.started_at),
            finished_at: opt_micros(deploy.finished_at),
            status: deploy.status.as_str().to_owned(),
            source: deploy.source.as_str().to_owned(),
        })
    }
}

#[derive(FromRow)]
pub(crate) struct GroupRow {
    pub(crate) id: i64,
    pub(crate) key: String,
    pub(crate) service: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) title: String,
    pub(crate) opened_at: i64,
    pub(crate) last_alert_at: i64,
    pub(crate) alert_count: i64,
    pub(crate) firing_count: i64,
    pub(crate) resolved_at: Option<i64>,
}

impl GroupRow {
    pub(crate) fn into_group(self) -> StoreResult<AlertGroup> {
        let target = match (self.service, self.environment) {
            (Some(s), Some(e)) => Some(Target::new(service(&s)?, environment(&e)?)),
            _ => None,
        };
        Ok(AlertGroup {
            id: self.id,
            key: self.key,
            target,
            title: self.title,
            opened_at: time(self.opened_at)?,
            last_alert_at: time(self.last_alert_at)?,
            alert_count: self.alert_count,
            firing_count: self.firing_count,
            resolved_at: opt_time(self.resolved_at)?,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct AlertRow {
    pub(crate) id: i64,
    pub(crate) source: String,
    pub(crate) fingerprint: String,
    pub(crate) started_at: i64,
    pub(crate) status: String,
    pub(crate) service: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) severity: String,
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) ended_at: Option<i64>,
    pub(crate) labels: String,
    pub(crate) link: Option<String>,
}

impl AlertRow {
    pub(crate) fn into_alert(self) -> StoreResult<(i64, Alert, AlertStatus)> {
        let status = AlertStatus::parse(&self.status)
            .ok_or_else(|| corrupt(format!("unknown alert status {:?}", self.status)))?;
        let alert = Alert {
            source: AlertSource::parse(&self.source)
                .ok_or_else(|| corrupt(format!("unknown alert source {:?}", self.source)))?,
            service: self.service.as_deref().map(service).transpose()?,
            environment: self.environment.as_deref().map(environment).transpose()?,
            severity: Severity::parse_lenient(&self.severity),
            status,
            title: self.title,
            description: self.description,
            started_at: time(self.started_at)?,
            ended_at: opt_time(self.ended_at)?,
            labels: from_json::<BTreeMap<String, String>>("alert labels", &self.labels)?,
            fingerprint: self.fingerprint,
            link: self.link,
        };
        Ok((self.id, alert, status))
    }
}

#[derive(FromRow)]
pub(crate) struct ThreadRow {
    pub(crate) group_id: i64,
    pub(crate) alert_message: String,
    pub(crate) summary: Option<String>,
}

impl ThreadRow {
    pub(crate) fn into_thread(self) -> StoreResult<GroupThread> {
        let stored: StoredAlertMessage = from_json("thread alert message", &self.alert_message)?;
        Ok(GroupThread {
            group_id: self.group_id,
            alert_message: stored.message,
            summary: opt_from_json("thread summary", self.summary.as_deref())?,
            posted_by_bot: stored.posted_by_bot,
        })
    }
}

/// A thread's alert message as stored, with whether breakwater posted it: the flag rides in
/// the same JSON column, so rows written before it existed read as not the bot's.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredAlertMessage {
    #[serde(flatten)]
    pub(crate) message: MessageRef,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) posted_by_bot: bool,
}

#[derive(FromRow)]
pub(crate) struct PlanRow {
    pub(crate) id: String,
    pub(crate) service: String,
    pub(crate) environment: String,
    pub(crate) from_id: String,
    pub(crate) from_version: String,
    pub(crate) to_id: String,
    pub(crate) to_version: String,
    pub(crate) reason: String,
    pub(crate) alert_group: Option<i64>,
    pub(crate) offered_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) message: Option<String>,
    pub(crate) requested_by: Option<String>,
    pub(crate) state: String,
    pub(crate) approved_by: Option<String>,
    pub(crate) started_by: Option<String>,
    pub(crate) started_at: Option<i64>,
    pub(crate) finished_at: Option<i64>,
    pub(crate) outcome: Option<String>,
    pub(crate) operation: Option<String>,
    pub(crate) verified_at: Option<i64>,
    pub(crate) action: String,
}

impl PlanRow {
    pub(crate) fn into_plan(self) -> StoreResult<RollbackPlan> {
        Ok(RollbackPlan {
            id: plan_id(&self.id)?,
            target: Target::new(service(&self.service)?, environment(&self.environment)?),
            from: Revision {
                id: self.from_id,
                version: self.from_version,
            },
            to: Revision {
                id: self.to_id,
                version: self.to_version,
            },
            reason: self.reason,
            alert_group: self.alert_group,
            offered_at: time(self.offered_at)?,
            expires_at: time(self.expires_at)?,
            message: opt_from_json("plan message", self.message.as_deref())?,
            requested_by: opt_from_json("plan requested_by", self.requested_by.as_deref())?,
            state: PlanState::parse(&self.state)
                .ok_or_else(|| corrupt(format!("unknown plan state {:?}", self.state)))?,
            approved_by: opt_from_json("plan approved_by", self.approved_by.as_deref())?,
            started_by: opt_from_json("plan started_by", self.started_by.as_deref())?,
            started_at: opt_time(self.started_at)?,
            finished_at: opt_time(self.finished_at)?,
            outcome: self.outcome,
            operation: self.operation.as_deref().and_then(readable_operation),
            verified_at: opt_time(self.verified_at)?,
            action: Action::parse(&self.action)
                .ok_or_else(|| corrupt(format!("unknown plan action {:?}", self.action)))?,
        })
    }
}

pub(crate) fn plan_id(raw: &str) -> StoreResult<PlanId> {
    PlanId::parse(raw).ok_or_else(|| corrupt(format!("invalid plan id {raw:?}")))
}

#[derive(FromRow)]
pub(crate) struct ConfirmationRow {
    pub(crate) id: String,
    pub(crate) plan_id: String,
    pub(crate) actor: String,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) disable_auto_sync: i64,
}

impl ConfirmationRow {
    pub(crate) fn into_confirmation(self) -> StoreResult<Confirmation> {
        Ok(Confirmation {
            id: plan_id(&self.id)?,
            plan: plan_id(&self.plan_id)?,
            actor: from_json("confirmation actor", &self.actor)?,
            created_at: time(self.created_at)?,
            expires_at: time(self.expires_at)?,
            disable_auto_sync: self.disable_auto_sync != 0,
        })
    }
}

/// Fields in column order, so a row serialised as a JSON array reads back as this struct.
#[derive(FromRow, serde::Deserialize)]
pub(crate) struct AuditRow {
    pub(crate) seq: i64,
    pub(crate) at: i64,
    pub(crate) actor: String,
    pub(crate) actor_name: String,
    pub(crate) action: String,
    pub(crate) service: String,
    pub(crate) environment: String,
    pub(crate) details: String,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
}

impl AuditRow {
    pub(crate) fn into_record(self) -> StoreResult<AuditRecord> {
        Ok(AuditRecord {
            seq: self.seq,
            at: time(self.at)?,
            actor: self.actor,
            actor_name: self.actor_name,
            action: self.action,
            service: self.service,
            environment: self.environment,
            details: self.details,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct HeadRow {
    pub(crate) seq: i64,
    pub(crate) hash: String,
}

#[derive(FromRow)]
pub(crate) struct PlanGroupRow {
    pub(crate) id: String,
    pub(crate) alert_group: i64,
}

#[derive(FromRow)]
pub(crate) struct ResolvedRow {
    pub(crate) id: i64,
    pub(crate) group_id: i64,
}

#[derive(FromRow)]
pub(crate) struct IdRow {
    pub(crate) id: i64,
}

#[derive(FromRow)]
pub(crate) struct MaxRow {
    pub(crate) finished_at: Option<i64>,
}

#[derive(FromRow)]
pub(crate) struct ConsoleMessageRow {
    pub(crate) id: i64,
    pub(crate) channel: String,
    pub(crate) thread_id: Option<i64>,
    pub(crate) audience: Option<String>,
    pub(crate) message: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) revision: i64,
}

impl ConsoleMessageRow {
    pub(crate) fn into_message(self) -> StoreResult<ConsoleMessage> {
        Ok(ConsoleMessage {
            id: self.id,
            channel: self.channel,
            thread: self.thread_id,
            audience: self.audience,
            message: from_json::<Message>("console message", &self.message)?,
            created_at: time(self.created_at)?,
            updated_at: time(self.updated_at)?,
            revision: self.revision,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct ConsoleSessionRow {
    pub(crate) token_hash: String,
    pub(crate) user_name: String,
    pub(crate) csrf_token: String,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
}

impl ConsoleSessionRow {
    pub(crate) fn into_session(self) -> StoreResult<ConsoleSession> {
        Ok(ConsoleSession {
            token_hash: self.token_hash,
            user: self.user_name,
            csrf_token: self.csrf_token,
            created_at: time(self.created_at)?,
            expires_at: time(self.expires_at)?,
        })
    }
}

pub(crate) fn collect<R, T>(
    rows: Vec<R>,
    convert: impl Fn(R) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    rows.into_iter().map(convert).collect()
}
