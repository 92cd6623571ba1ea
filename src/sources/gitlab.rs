//! GitLab deployment events (`POST /webhooks/gitlab`).
//!
//! GitLab sends the webhook's secret token as `X-Gitlab-Token` and the kind of event as
//! `X-Gitlab-Event: Deployment Hook`. Each event carries the time of its own status change
//! (`status_changed_at`, written `2021-04-28 21:50:00 +0200`), so the deploy it is about
//! is the newest one of the same version. Statuses: `running` → started, `success` →
//! succeeded, `failed` and `canceled` → failed (a canceled rollout may have been partly
//! applied); `blocked`, `approved` and `rejected` are approvals, not deploys.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    AuthError, DeployEvent, Identity, MAX_DESCRIPTION, Parsed, PayloadError, Source, Subject, link,
    read_json, text, version_of,
};
use crate::config::Secret;
use crate::core::deploy::{Change, DeployStatus};

pub const TOKEN_HEADER: &str = "X-Gitlab-Token";
pub const EVENT_HEADER: &str = "X-Gitlab-Event";

/// Checks `X-Gitlab-Token` against the configured `sources.gitlab.token`.
pub fn verify(token: Option<&str>, expected: &Secret) -> Result<(), AuthError> {
    match token {
        None => Err(AuthError::Missing(TOKEN_HEADER)),
        Some(token) if super::token_matches(token, expected) => Ok(()),
        Some(_) => Err(AuthError::Forged(TOKEN_HEADER)),
    }
}

#[derive(Deserialize)]
struct Payload {
    object_kind: String,
    #[serde(default)]
    status: String,
    status_changed_at: Option<String>,
    deployable_url: Option<String>,
    #[serde(default)]
    environment: String,
    environment_tier: Option<String>,
    project: Option<Project>,
    short_sha: Option<String>,
    sha: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    user: Option<User>,
    commit_url: Option<String>,
    commit_title: Option<String>,
}

#[derive(Deserialize)]
struct Project {
    path_with_namespace: String,
}

#[derive(Deserialize)]
struct User {
    username: String,
}

/// Reads one delivery. `event` is the `X-Gitlab-Event` header.
pub fn parse(event: Option<&str>, body: &[u8], now: DateTime<Utc>) -> Result<Parsed, PayloadError> {
    if let Some(event) = event
        && event != "Deployment Hook"
    {
        return Ok(Parsed::Ignored(format!(
            "GitLab {event:?} is not a deployment event; in the webhook's settings select only \"Deployment events\""
        )));
    }
    let payload: Payload = read_json(body)?;
    if payload.object_kind != "deployment" {
        return Ok(Parsed::Ignored(format!(
            "object_kind {:?} is not a deployment",
            payload.object_kind
        )));
    }
    let status = match payload.status.as_str() {
        "running" => DeployStatus::Started,
        "success" => DeployStatus::Succeeded,
        "failed" | "canceled" => DeployStatus::Failed,
        "blocked" | "approved" | "rejected" | "created" => {
            return Ok(Parsed::Ignored(format!(
                "deployment status {:?} is an approval step, not a deploy; recorded once it is running, success, failed or canceled",
                payload.status
            )));
        }
        other => {
            return Err(PayloadError::Invalid(format!(
                "status: {other:?} is not one of running, success, failed, canceled"
            )));
        }
    };
    let changed_at = match payload.status_changed_at.as_deref() {
        Some(raw) => parse_time(raw).ok_or_else(|| {
            PayloadError::Invalid(format!(
                "status_changed_at: {raw:?} is not a time like 2021-04-28 21:50:00 +0200"
            ))
        })?,
        None => now,
    };
    let project = payload
        .project
        .as_ref()
        .map(|p| p.path_with_namespace.trim())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            PayloadError::Invalid("project.path_with_namespace: missing or empty".into())
        })?;
    // The full commit id: `sha` where GitLab sends it, else the end of `commit_url`.
    let sha = text(payload.sha.as_deref(), 100).or_else(|| {
        let from_url = payload.commit_url.as_deref()?.rsplit('/').next()?;
        (from_url.len() >= 7 && from_url.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| from_url.to_owned())
    });
    let commit = sha.or_else(|| text(payload.short_sha.as_deref(), 100));
    let version = version_of(payload.reference.as_deref(), commit.as_deref()).ok_or_else(|| {
        PayloadError::Invalid("short_sha: missing; cannot tell what was deployed".into())
    })?;
    let changes = match (
        &commit,
        text(payload.commit_title.as_deref(), MAX_DESCRIPTION),
    ) {
        (Some(commit), Some(title)) => vec![Change {
            commit: commit.clone(),
            author: None,
            message: title,
        }],
        _ => Vec::new(),
    };
    let description =
        (payload.status == "canceled").then(|| "GitLab deployment canceled".to_owned());
    let (started_at, finished_at) = match status {
        DeployStatus::Started => (Some(changed_at), None),
        DeployStatus::Succeeded | DeployStatus::Failed => (None, Some(changed_at)),
    };
    Ok(Parsed::Deploy(Box::new(DeployEvent {
        source: Source::Gitlab,
        subject: Subject::Repository(project.to_owned()),
        environment: text(Some(&payload.environment), 200),
        environment_hint: text(payload.environment_tier.as_deref(), 200),
        version,
        commit,
        author: payload
            .user
            .as_ref()
            .and_then(|u| text(Some(&u.username), 200)),
        description,
        url: link(payload.deployable_url.as_deref())
            .or_else(|| link(payload.commit_url.as_deref())),
        started_at,
        finished_at,
        status,
        changes,
        identity: Identity::LatestOfVersion,
    })))
}

/// GitLab writes `2021-04-28 21:50:00 +0200` (and `… UTC` elsewhere); RFC 3339 is
/// accepted too.
fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    DateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S %z")
        .or_else(|_| DateTime::parse_from_rfc3339(raw))
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            let naive = chrono::NaiveDateTime::parse_from_str(
                raw.strip_suffix(" UTC")?,
                "%Y-%m-%d %H:%M:%S",
            )
            .ok()?;
            Some(naive.and_utc())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: &str) -> Vec<u8> {
        serde_json::json!({
            "object_kind": "deployment",
            "status": status,
            "status_changed_at": "2021-04-28 21:50:00 +0200",
            "deployment_id": 15,
            "deployable_id": 796,
            "deployable_url": "http://gitlab.example/acme/checkout/-/jobs/796",
            "environment": "staging",
            "environment_tier": "staging",
            "environment_slug": "staging",
            "environment_external_url": "https://staging.example.com",
            "project": {"id": 30, "name": "checkout", "path_with_namespace": "acme/checkout", "web_url": "http://gitlab.example/acme/checkout"},
            "short_sha": "279484c0",
            "user": {"id": 1, "name": "Administrator", "username": "root"},
            "user_url": "http://gitlab.example/root",
            "commit_url": "http://gitlab.example/acme/checkout/-/commit/279484c09fbe69ededfced8c1bb6e6d24616b468",
            "commit_title": "Add new file"
        })
        .to_string()
        .into_bytes()
    }

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    #[test]
    fn a_successful_deployment_is_a_succeeded_deploy_of_its_commit() {
        let Ok(Parsed::Deploy(deploy)) = parse(Some("Deployment Hook"), &event("success"), now())
        else {
            panic!("not a deploy");
        };
        assert_eq!(deploy.status, DeployStatus::Succeeded);
        assert_eq!(
            deploy.commit.as_deref(),
            Some("279484c09fbe69ededfced8c1bb6e6d24616b468")
        );
        assert_eq!(deploy.version, "279484c");
        assert_eq!(deploy.author.as_deref(), Some("root"));
        assert_eq!(
            deploy.finished_at.map(|t| t.to_rfc3339()),
            Some("2021-04-28T19:50:00+00:00".into())
        );
        assert_eq!(deploy.changes[0].message, "Add new file");
        assert_eq!(deploy.identity, Identity::LatestOfVersion);
    }

    #[test]
    fn running_starts_and_canceled_fails() {
        let Ok(Parsed::Deploy(running)) = parse(None, &event("running"), now()) else {
            panic!("not a deploy");
        };
        assert_eq!(running.status, DeployStatus::Started);
        assert!(running.started_at.is_some());
        let Ok(Parsed::Deploy(canceled)) = parse(None, &event("canceled"), now()) else {
            panic!("not a deploy");
        };
        assert_eq!(canceled.status, DeployStatus::Failed);
    }

    #[test]
    fn other_hooks_and_approvals_are_ignored() {
        assert!(matches!(
            parse(Some("Push Hook"), b"{}", now()),
            Ok(Parsed::Ignored(_))
        ));
        assert!(matches!(
            parse(None, &event("blocked"), now()),
            Ok(Parsed::Ignored(_))
        ));
    }

    #[test]
    fn the_token_must_match() {
        let secret = Secret::new("gitlab-token-0123456789");
        assert_eq!(verify(Some("gitlab-token-0123456789"), &secret), Ok(()));
        assert!(verify(Some("wrong"), &secret).is_err());
        assert!(verify(None, &secret).is_err());
    }
}
