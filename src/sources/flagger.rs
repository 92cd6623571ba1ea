//! Flagger canary events (`POST /webhooks/flagger/events`) and its `rollback` hook
//! (`POST /webhooks/flagger/rollback`). Both bodies are Flagger's `CanaryWebhookPayload`:
//! `name`, `namespace`, `phase`, `checksum` and `metadata` (string to string). The event
//! webhook adds `eventMessage`, `eventType` and `timestamp` (milliseconds since the epoch,
//! as a string) to the metadata; a hook sends the metadata written in the Canary's
//! `analysis.webhooks` entry.
//!
//! Flagger signs nothing, so the sender proves itself with a token: `?token=` in the
//! webhook URL (the only place the global `-event-webhook` URL can carry one) or
//! `metadata.token` (a Canary's own `event` and `rollback` hooks). Either is compared in
//! constant time.
//!
//! A canary run is a deploy whose version is the payload's `checksum` (Flagger's hash of
//! the Canary's applied spec and tracked configs; the payload names no image). The
//! messages Flagger writes while it runs the analysis say what happened: "Starting canary
//! analysis", "Advance … canary weight 20", "Promotion completed!", and a `Failed` phase
//! when it rolled back. Those are recorded; the rest (metric checks, waits) is answered 202.
//! "New revision detected!" is not recorded: Flagger sends it before it stores the new
//! spec, so it carries the previous run's checksum.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;

use super::{
    AuthError, DeployEvent, Identity, MAX_DESCRIPTION, Parsed, PayloadError, Source, Subject,
    read_json, text,
};
use crate::config::Secret;
use crate::core::deploy::DeployStatus;

/// Where a token may be presented, named in refusals.
const TOKEN_PLACES: &str = "token (?token= in the webhook URL, or metadata.token)";

/// The metadata key a Canary's hook may carry the token in.
pub const TOKEN_METADATA_KEY: &str = "token";

/// Checks the token from the URL's query or the payload's metadata, in constant time. A
/// token given in both places must match in both.
pub fn verify(
    query_token: Option<&str>,
    metadata_token: Option<&str>,
    expected: &Secret,
) -> Result<(), AuthError> {
    let presented: Vec<&str> = [query_token, metadata_token]
        .into_iter()
        .flatten()
        .collect();
    if presented.is_empty() {
        return Err(AuthError::Absent(TOKEN_PLACES));
    }
    if presented
        .iter()
        .all(|token| super::token_matches(token, expected))
    {
        Ok(())
    } else {
        Err(AuthError::Forged("token"))
    }
}

/// Flagger's `CanaryWebhookPayload`.
#[derive(Debug, Deserialize)]
pub struct Payload {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub checksum: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl Payload {
    /// Reads a payload; the Canary's name and namespace must be there (they are what the
    /// press and the hook are matched on).
    pub fn read(body: &[u8]) -> Result<Self, PayloadError> {
        let payload: Self = read_json(body)?;
        for (field, value) in [("name", &payload.name), ("namespace", &payload.namespace)] {
            let value = value.trim();
            if value.is_empty() || value.len() > 253 {
                return Err(PayloadError::Invalid(format!(
                    "{field}: must be a Kubernetes name (1–253 characters)"
                )));
            }
        }
        Ok(payload)
    }

    /// The token a Canary's hook carries in its metadata.
    pub fn metadata_token(&self) -> Option<&str> {
        self.metadata.get(TOKEN_METADATA_KEY).map(String::as_str)
    }

    /// `name.namespace`, as Flagger names a Canary in its messages.
    pub fn canary(&self) -> String {
        format!("{}.{}", self.name.trim(), self.namespace.trim())
    }
}

/// What an event says about the canary run, in the words the summary shows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Progress {
    status: DeployStatus,
    description: String,
}

/// Reads an event webhook delivery into a deploy event, or the reason it records nothing.
pub fn parse(payload: &Payload) -> Result<Parsed, PayloadError> {
    let message = payload
        .metadata
        .get("eventMessage")
        .map(|m| m.trim())
        .unwrap_or("");
    let Some(progress) = progress(payload.phase.trim(), message) else {
        return Ok(Parsed::Ignored(format!(
            "{:?} in phase {:?} is not a step of a canary run; recorded are the start, weight and iteration advances, promotion, rollback and the Succeeded and Failed phases",
            text(Some(message), 200).unwrap_or_default(),
            payload.phase
        )));
    };
    let checksum = payload.checksum.trim();
    if checksum.is_empty() {
        return Ok(Parsed::Ignored(
            "no checksum in the payload: breakwater cannot tell which canary run this is about (Flagger 1.x sends one)".into(),
        ));
    }
    let at = match payload.metadata.get("timestamp") {
        None => None,
        Some(raw) => Some(timestamp(raw)?),
    };
    let finished_at = match progress.status {
        DeployStatus::Started => None,
        DeployStatus::Succeeded | DeployStatus::Failed => at,
    };
    Ok(Parsed::Deploy(Box::new(DeployEvent {
        source: Source::Flagger,
        subject: Subject::FlaggerCanary {
            namespace: payload.namespace.trim().to_owned(),
            name: payload.name.trim().to_owned(),
        },
        environment: None,
        environment_hint: text(Some(&payload.namespace), 200),
        version: checksum.chars().take(200).collect(),
        commit: None,
        author: Some(crate::core::bot::FLAGGER_AUTHOR.to_owned()),
        description: text(Some(&progress.description), MAX_DESCRIPTION),
        url: None,
        started_at: at,
        finished_at,
        status: progress.status,
        changes: Vec::new(),
        identity: Identity::LatestOfVersion,
    })))
}

/// The step of the run a message in a phase is, from the messages Flagger's scheduler
/// writes (`pkg/controller/scheduler.go`).
fn progress(phase: &str, message: &str) -> Option<Progress> {
    let started = |description: String| {
        Some(Progress {
            status: DeployStatus::Started,
            description,
        })
    };
    match phase {
        "Succeeded" => {
            return Some(Progress {
                status: DeployStatus::Succeeded,
                description: "canary promoted by Flagger".into(),
            });
        }
        "Failed" => {
            return Some(Progress {
                status: DeployStatus::Failed,
                description: "canary failed: Flagger rolled it back to the primary".into(),
            });
        }
        _ => {}
    }
    if message.starts_with("New revision detected") {
        return None;
    }
    if message.starts_with("Starting canary analysis") {
        return started(format!("canary {phase}, 0 % of traffic"));
    }
    if message.starts_with("Advance ") {
        let words: Vec<&str> = message.split_whitespace().collect();
        if let [.., "canary", "weight", weight] = words.as_slice()
            && let Ok(weight) = weight.parse::<u8>()
            && weight <= 100
        {
            return started(format!("canary {phase}, {weight} % of traffic"));
        }
        if let [.., "canary", "iteration", count] = words.as_slice()
            && let Some((done, of)) = count.split_once('/')
            && done.parse::<u32>().is_ok()
            && of.parse::<u32>().is_ok()
        {
            return started(format!("canary {phase}, iteration {done} of {of}"));
        }
        return None;
    }
    if message.starts_with("Rolling back ") {
        let reason = text(Some(message), 200).unwrap_or_default();
        return started(format!("canary rolling back: {reason}"));
    }
    match phase {
        "Promoting" if message.starts_with("Copying ") => {
            started("canary Promoting: the primary takes the canary's spec".into())
        }
        "Finalising" if message.starts_with("Routing all traffic to primary") => {
            started("canary Finalising: all traffic is back on the primary".into())
        }
        _ => None,
    }
}

/// Flagger's `timestamp`: milliseconds since the Unix epoch, as a decimal string.
fn timestamp(raw: &str) -> Result<DateTime<Utc>, PayloadError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .and_then(|millis| Utc.timestamp_millis_opt(millis).single())
        .ok_or_else(|| {
            PayloadError::Invalid(format!(
                "metadata.timestamp: {raw:?} is not milliseconds since the Unix epoch"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(phase: &str, message: &str) -> Payload {
        let body = serde_json::json!({
            "name": "podinfo",
            "namespace": "production",
            "phase": phase,
            "checksum": "5d7f8c9b6c",
            "metadata": {
                "eventMessage": message,
                "eventType": "Normal",
                "timestamp": "1796270520000"
            }
        });
        Payload::read(body.to_string().as_bytes()).expect("payload")
    }

    fn deploy(phase: &str, message: &str) -> DeployEvent {
        match parse(&payload(phase, message)) {
            Ok(Parsed::Deploy(deploy)) => *deploy,
            other => panic!("not a deploy: {other:?}"),
        }
    }

    #[test]
    fn the_start_of_the_analysis_is_a_started_deploy_of_the_checksum() {
        let deploy = deploy(
            "Progressing",
            "Starting canary analysis for podinfo.production",
        );
        assert_eq!(deploy.status, DeployStatus::Started);
        assert_eq!(deploy.version, "5d7f8c9b6c");
        assert_eq!(
            deploy.description.as_deref(),
            Some("canary Progressing, 0 % of traffic")
        );
        assert_eq!(
            deploy.started_at.map(|at| at.timestamp()),
            Some(1_796_270_520)
        );
        assert_eq!(deploy.finished_at, None);
    }

    #[test]
    fn a_weight_advance_says_the_phase_and_the_share_of_traffic() {
        let deploy = deploy("Progressing", "Advance podinfo.production canary weight 20");
        assert_eq!(
            deploy.description.as_deref(),
            Some("canary Progressing, 20 % of traffic")
        );
        let deploy = deploy_of_iteration();
        assert_eq!(
            deploy.description.as_deref(),
            Some("canary Progressing, iteration 3 of 10")
        );
    }

    fn deploy_of_iteration() -> DeployEvent {
        deploy(
            "Progressing",
            "Advance podinfo.production canary iteration 3/10",
        )
    }

    #[test]
    fn the_succeeded_and_failed_phases_finish_the_deploy() {
        let promoted = deploy(
            "Succeeded",
            "Promotion completed! Scaling down podinfo.production",
        );
        assert_eq!(promoted.status, DeployStatus::Succeeded);
        assert!(promoted.finished_at.is_some());
        let failed = deploy("Failed", "Canary failed! Scaling down podinfo.production");
        assert_eq!(failed.status, DeployStatus::Failed);
    }

    #[test]
    fn a_new_revision_carries_the_previous_checksum_and_is_not_recorded() {
        let parsed = parse(&payload(
            "Progressing",
            "New revision detected! Scaling up podinfo.production",
        ));
        assert!(matches!(parsed, Ok(Parsed::Ignored(_))), "{parsed:?}");
    }

    #[test]
    fn checks_and_waits_are_not_recorded() {
        let parsed = parse(&payload(
            "Progressing",
            "Halt advancement no values found for istio metric request-success-rate",
        ));
        assert!(matches!(parsed, Ok(Parsed::Ignored(_))), "{parsed:?}");
    }

    #[test]
    fn a_timestamp_that_is_not_milliseconds_is_invalid() {
        let mut payload = payload(
            "Progressing",
            "Starting canary analysis for podinfo.production",
        );
        payload
            .metadata
            .insert("timestamp".into(), "2026-12-03T08:00:00Z".into());
        assert!(matches!(parse(&payload), Err(PayloadError::Invalid(_))));
    }

    #[test]
    fn a_payload_without_a_name_is_invalid() {
        let body = br#"{"name":"","namespace":"production","phase":"Progressing","checksum":""}"#;
        assert!(matches!(Payload::read(body), Err(PayloadError::Invalid(_))));
    }

    #[test]
    fn the_token_may_come_from_the_query_or_the_metadata_but_must_match() {
        let secret = Secret::new("flagger-token-0123456789");
        assert_eq!(
            verify(Some("flagger-token-0123456789"), None, &secret),
            Ok(())
        );
        assert_eq!(
            verify(None, Some("flagger-token-0123456789"), &secret),
            Ok(())
        );
        assert_eq!(
            verify(Some("flagger-token-0123456789"), Some("wrong"), &secret),
            Err(AuthError::Forged("token"))
        );
        assert_eq!(
            verify(None, None, &secret),
            Err(AuthError::Absent(TOKEN_PLACES))
        );
    }
}
