//! GitHub `deployment` and `deployment_status` webhooks (`POST /webhooks/github`).
//!
//! GitHub signs each delivery with the webhook's secret: `X-Hub-Signature-256:
//! sha256=HEX(HMAC-SHA256(secret, body))`, and names the event in `X-GitHub-Event`. A
//! deployment is one deploy from its creation to its last status; every event carries the
//! deployment's `created_at`, which is the deploy's start, so redeliveries and later
//! statuses update the same record. States: `in_progress` → started, `success` →
//! succeeded, `failure`/`error` → failed; `queued`, `pending` and `waiting` are not a deploy
//! yet and `inactive` (an older deployment superseded) is none at all.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    AuthError, DeployEvent, Identity, MAX_DESCRIPTION, Parsed, PayloadError, Source, Subject, link,
    read_json, text, version_of,
};
use crate::config::Secret;
use crate::core::deploy::DeployStatus;

pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
pub const EVENT_HEADER: &str = "X-GitHub-Event";

/// Checks `X-Hub-Signature-256` against the configured `sources.github.secret`.
pub fn verify(signature: Option<&str>, secret: &Secret, body: &[u8]) -> Result<(), AuthError> {
    super::verify_sha256(SIGNATURE_HEADER, signature, secret, body)
}

#[derive(Deserialize)]
struct Payload {
    action: Option<String>,
    deployment: Deployment,
    deployment_status: Option<DeploymentStatus>,
    repository: Repository,
    sender: Option<User>,
}

#[derive(Deserialize)]
struct Deployment {
    sha: String,
    #[serde(rename = "ref")]
    reference: Option<String>,
    environment: String,
    description: Option<String>,
    creator: Option<User>,
    created_at: DateTime<Utc>,
    /// Free-form data the deploying tool attached; a string `version` in it is used.
    #[serde(default)]
    payload: serde_json::Value,
}

#[derive(Deserialize)]
struct DeploymentStatus {
    state: String,
    environment: Option<String>,
    description: Option<String>,
    log_url: Option<String>,
    target_url: Option<String>,
    created_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

/// Reads one delivery. `event` is the `X-GitHub-Event` header.
pub fn parse(event: Option<&str>, body: &[u8]) -> Result<Parsed, PayloadError> {
    let event =
        event.ok_or_else(|| PayloadError::Malformed(format!("missing {EVENT_HEADER} header")))?;
    match event {
        "ping" => return Ok(Parsed::Ping),
        "deployment" | "deployment_status" => {}
        other => {
            return Ok(Parsed::Ignored(format!(
                "GitHub event {other:?} is not a deploy; in the webhook's settings select only \"Deployments\" and \"Deployment statuses\""
            )));
        }
    }
    let payload: Payload = read_json(body)?;
    if let Some(action) = payload.action.as_deref()
        && action != "created"
    {
        return Ok(Parsed::Ignored(format!(
            "{event} action {action:?} does not start or finish a deploy"
        )));
    }
    let deployment = &payload.deployment;
    let (status, finished_at, status_detail) = if event == "deployment" {
        (DeployStatus::Started, None, None)
    } else {
        let Some(deployment_status) = &payload.deployment_status else {
            return Err(PayloadError::Malformed(
                "deployment_status: missing field in a deployment_status event".into(),
            ));
        };
        match deployment_status.state.as_str() {
            "in_progress" => (DeployStatus::Started, None, Some(deployment_status)),
            "success" => (
                DeployStatus::Succeeded,
                Some(deployment_status.created_at),
                Some(deployment_status),
            ),
            "failure" | "error" => (
                DeployStatus::Failed,
                Some(deployment_status.created_at),
                Some(deployment_status),
            ),
            "queued" | "pending" | "waiting" => {
                return Ok(Parsed::Ignored(format!(
                    "deployment status {:?}: not started yet; recorded once it is in_progress, success, failure or error",
                    deployment_status.state
                )));
            }
            "inactive" => {
                return Ok(Parsed::Ignored(
                    "deployment status \"inactive\": GitHub marks an older deployment inactive when a newer one succeeds; that is not a deploy".into(),
                ));
            }
            other => {
                return Ok(Parsed::Ignored(format!(
                    "deployment status {other:?} is not one breakwater records (in_progress, success, failure, error)"
                )));
            }
        }
    };
    let sha = deployment.sha.trim();
    let version = deployment
        .payload
        .get("version")
        .and_then(serde_json::Value::as_str)
        .and_then(|v| text(Some(v), 200))
        .or_else(|| {
            version_of(deployment.reference.as_deref(), Some(sha)).filter(|_| !sha.is_empty())
        })
        .ok_or_else(|| {
            PayloadError::Invalid("deployment.sha: empty; cannot tell what was deployed".into())
        })?;
    let environment = status_detail
        .and_then(|s| s.environment.as_deref())
        .unwrap_or(deployment.environment.as_str());
    let url = status_detail
        .and_then(|s| link(s.log_url.as_deref()).or_else(|| link(s.target_url.as_deref())))
        .or_else(|| {
            let base = link(payload.repository.html_url.as_deref())?;
            Some(format!("{}/commit/{sha}", base.trim_end_matches('/')))
        });
    let author = deployment
        .creator
        .as_ref()
        .or(payload.sender.as_ref())
        .and_then(|user| text(Some(&user.login), 200));
    let description = text(deployment.description.as_deref(), MAX_DESCRIPTION).or_else(|| {
        text(
            status_detail.and_then(|s| s.description.as_deref()),
            MAX_DESCRIPTION,
        )
    });
    Ok(Parsed::Deploy(Box::new(DeployEvent {
        source: Source::Github,
        subject: Subject::Repository(payload.repository.full_name.trim().to_owned()),
        environment: text(Some(environment), 200),
        environment_hint: None,
        version,
        commit: text(Some(sha), 100),
        author,
        description,
        url,
        started_at: Some(deployment.created_at),
        finished_at,
        status,
        changes: Vec::new(),
        identity: Identity::SameStart,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_event(state: &str) -> Vec<u8> {
        serde_json::json!({
            "action": "created",
            "deployment_status": {
                "url": "https://api.github.com/repos/acme/checkout/deployments/42/statuses/7",
                "id": 7,
                "node_id": "DES_kwDOA",
                "state": state,
                "creator": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
                "description": "",
                "environment": "production",
                "target_url": "https://github.com/acme/checkout/actions/runs/9",
                "log_url": "https://github.com/acme/checkout/actions/runs/9/job/1",
                "created_at": "2026-11-29T02:42:00Z",
                "updated_at": "2026-11-29T02:42:00Z",
                "deployment_url": "https://api.github.com/repos/acme/checkout/deployments/42",
                "repository_url": "https://api.github.com/repos/acme/checkout"
            },
            "deployment": {
                "url": "https://api.github.com/repos/acme/checkout/deployments/42",
                "id": 42,
                "node_id": "DE_kwDOA",
                "sha": "9f3c2ab0c4d5e6f708192a3b4c5d6e7f80912a3b",
                "ref": "main",
                "task": "deploy",
                "payload": {},
                "original_environment": "production",
                "environment": "production",
                "description": null,
                "creator": {"login": "ada", "id": 1, "type": "User"},
                "created_at": "2026-11-29T02:40:00Z",
                "updated_at": "2026-11-29T02:42:00Z",
                "statuses_url": "https://api.github.com/repos/acme/checkout/deployments/42/statuses",
                "repository_url": "https://api.github.com/repos/acme/checkout"
            },
            "repository": {"id": 5, "name": "checkout", "full_name": "acme/checkout", "html_url": "https://github.com/acme/checkout"},
            "sender": {"login": "ada", "id": 1, "type": "User"}
        })
        .to_string()
        .into_bytes()
    }

    fn deploy(parsed: Parsed) -> DeployEvent {
        match parsed {
            Parsed::Deploy(event) => *event,
            other => panic!("expected a deploy, got {other:?}"),
        }
    }

    #[test]
    fn a_successful_status_is_a_succeeded_deploy_started_when_the_deployment_was_created() {
        let event =
            deploy(parse(Some("deployment_status"), &status_event("success")).expect("parses"));
        assert_eq!(event.status, DeployStatus::Succeeded);
        assert_eq!(event.version, "main@9f3c2ab");
        assert_eq!(event.author.as_deref(), Some("ada"));
        assert_eq!(event.subject, Subject::Repository("acme/checkout".into()));
        assert_eq!(
            event.started_at.map(|t| t.to_rfc3339()),
            Some("2026-11-29T02:40:00+00:00".into())
        );
        assert_eq!(
            event.finished_at.map(|t| t.to_rfc3339()),
            Some("2026-11-29T02:42:00+00:00".into())
        );
        assert_eq!(
            event.url.as_deref(),
            Some("https://github.com/acme/checkout/actions/runs/9/job/1")
        );
    }

    #[test]
    fn a_created_deployment_is_a_started_deploy() {
        let mut body: serde_json::Value =
            serde_json::from_slice(&status_event("success")).expect("json");
        if let Some(object) = body.as_object_mut() {
            object.remove("deployment_status");
        }
        let body = body.to_string().into_bytes();
        let event = deploy(parse(Some("deployment"), &body).expect("parses"));
        assert_eq!(event.status, DeployStatus::Started);
        assert_eq!(event.finished_at, None);
        assert_eq!(
            event.url.as_deref(),
            Some(
                "https://github.com/acme/checkout/commit/9f3c2ab0c4d5e6f708192a3b4c5d6e7f80912a3b"
            )
        );
    }

    #[test]
    fn states_map_to_started_and_failed() {
        let started =
            deploy(parse(Some("deployment_status"), &status_event("in_progress")).expect("parses"));
        assert_eq!(started.status, DeployStatus::Started);
        assert_eq!(started.finished_at, None);
        for state in ["failure", "error"] {
            let failed =
                deploy(parse(Some("deployment_status"), &status_event(state)).expect("parses"));
            assert_eq!(failed.status, DeployStatus::Failed);
        }
    }

    #[test]
    fn queued_and_inactive_statuses_are_ignored_with_a_reason() {
        for state in ["queued", "pending", "waiting", "inactive"] {
            assert!(matches!(
                parse(Some("deployment_status"), &status_event(state)),
                Ok(Parsed::Ignored(_))
            ));
        }
    }

    #[test]
    fn ping_and_other_events_are_not_deploys() {
        assert_eq!(
            parse(Some("ping"), b"{\"zen\":\"Keep it logically awesome.\"}"),
            Ok(Parsed::Ping)
        );
        assert!(matches!(parse(Some("push"), b"{}"), Ok(Parsed::Ignored(_))));
        assert!(parse(None, b"{}").is_err());
    }

    #[test]
    fn a_missing_field_is_named() {
        let error = parse(Some("deployment"), b"{\"deployment\":{}}").expect_err("refused");
        assert!(error.to_string().starts_with("deployment"), "{error}");
    }
}
