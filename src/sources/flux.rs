//! Flux notification-controller events (`POST /webhooks/flux`), from a `Provider` of type
//! `generic-hmac`: the body is a Flux `Event`, signed as `X-Signature: sha256=HEX(HMAC-SHA256
//! (token, body))` with the `token` of the Provider's secret.
//!
//! Only Kustomizations and HelmReleases deploy. Their revision is in the event metadata
//! (`kustomize.toolkit.fluxcd.io/revision: main@sha1:731f…`, `helm.toolkit.fluxcd.io/
//! revision: 6.0.1`). `ReconciliationSucceeded`, `InstallSucceeded` and `UpgradeSucceeded`
//! are a succeeded deploy of that revision, an error-severity `…Failed` reason a failed
//! one; everything else (progress, health checks passing, dependency waits) is answered
//! 202 and not recorded. Flux repeats events while it retries, so the deploy an event is
//! about is the newest one of the same revision.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    AuthError, DeployEvent, Identity, MAX_DESCRIPTION, Parsed, PayloadError, Source, Subject,
    read_json, short_sha, text,
};
use crate::config::Secret;
use crate::core::deploy::DeployStatus;

pub const SIGNATURE_HEADER: &str = "X-Signature";

/// The Flux objects that deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kustomization,
    HelmRelease,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kustomization => "Kustomization",
            Self::HelmRelease => "HelmRelease",
        }
    }

    /// The `[[services]]` key that maps objects of this kind to a service.
    pub fn service_key(self) -> &'static str {
        match self {
            Self::Kustomization => "flux_kustomization",
            Self::HelmRelease => "flux_helmrelease",
        }
    }
}

/// Checks `X-Signature` against the configured `sources.flux.secret`.
pub fn verify(signature: Option<&str>, secret: &Secret, body: &[u8]) -> Result<(), AuthError> {
    super::verify_sha256(SIGNATURE_HEADER, signature, secret, body)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    involved_object: ObjectReference,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    reporting_controller: Option<String>,
    timestamp: DateTime<Utc>,
}

#[derive(Deserialize)]
struct ObjectReference {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: String,
}

/// Reads one delivery.
pub fn parse(body: &[u8]) -> Result<Parsed, PayloadError> {
    let event: Event = read_json(body)?;
    let object = &event.involved_object;
    let kind = match object.kind.as_str() {
        "Kustomization" => Kind::Kustomization,
        "HelmRelease" => Kind::HelmRelease,
        other => {
            return Ok(Parsed::Ignored(format!(
                "{other} events are not deploys; list only Kustomization and HelmRelease in the Alert's eventSources"
            )));
        }
    };
    let status = match event.reason.as_str() {
        "ReconciliationSucceeded" | "InstallSucceeded" | "UpgradeSucceeded" => {
            DeployStatus::Succeeded
        }
        reason if reason.ends_with("Failed") && event.severity == "error" => DeployStatus::Failed,
        reason => {
            return Ok(Parsed::Ignored(format!(
                "{reason:?} is progress, not the outcome of a deploy; recorded are ReconciliationSucceeded, InstallSucceeded, UpgradeSucceeded and error-severity failures"
            )));
        }
    };
    let Some(revision) = event
        .metadata
        .iter()
        .find(|(key, _)| *key == "revision" || key.ends_with("/revision"))
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
    else {
        return Ok(Parsed::Ignored(
            "no revision in the event's metadata: breakwater cannot tell which version this is about".into(),
        ));
    };
    let (version, commit) = version_of_revision(revision);
    if object.name.trim().is_empty() {
        return Err(PayloadError::Invalid("involvedObject.name: empty".into()));
    }
    let author = Some(match event.reporting_controller.as_deref().map(str::trim) {
        Some(controller) if !controller.is_empty() => format!("Flux {controller}"),
        _ => "Flux".to_owned(),
    });
    let first_line = event.message.lines().next().unwrap_or("");
    Ok(Parsed::Deploy(Box::new(DeployEvent {
        source: Source::Flux,
        subject: Subject::FluxObject {
            kind,
            namespace: object.namespace.trim().to_owned(),
            name: object.name.trim().to_owned(),
        },
        environment: None,
        environment_hint: text(Some(&object.namespace), 200),
        version,
        commit,
        author: text(author.as_deref(), 200),
        description: text(Some(first_line), MAX_DESCRIPTION),
        url: None,
        started_at: Some(event.timestamp),
        finished_at: Some(event.timestamp),
        status,
        changes: Vec::new(),
        identity: Identity::LatestOfVersion,
    })))
}

/// The version people recognise and the commit, from a Flux revision: `main@sha1:731f…`
/// (and the older `main/731f…`) is `main@731f7ea` of commit `731f…`; an OCI digest
/// `latest@sha256:…` keeps its tag and a short digest; a chart version stays as it is.
fn version_of_revision(revision: &str) -> (String, Option<String>) {
    let is_hex = |s: &str| s.len() >= 7 && s.chars().all(|c| c.is_ascii_hexdigit());
    if let Some((name, digest)) = revision.rsplit_once('@') {
        if let Some(sha) = digest.strip_prefix("sha1:").filter(|s| is_hex(s)) {
            return (format!("{name}@{}", short_sha(sha)), Some(sha.to_owned()));
        }
        if let Some((algorithm, hex)) = digest.split_once(':')
            && is_hex(hex)
        {
            let short: String = hex.chars().take(12).collect();
            return (format!("{name}@{algorithm}:{short}"), None);
        }
    }
    if let Some((name, sha)) = revision.rsplit_once('/')
        && is_hex(sha)
        && sha.len() == 40
    {
        return (format!("{name}@{}", short_sha(sha)), Some(sha.to_owned()));
    }
    if is_hex(revision) && revision.len() == 40 {
        return (short_sha(revision), Some(revision.to_owned()));
    }
    (revision.chars().take(200).collect(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, reason: &str, severity: &str, revision: &str) -> Vec<u8> {
        let group = if kind == "HelmRelease" {
            "helm.toolkit.fluxcd.io"
        } else {
            "kustomize.toolkit.fluxcd.io"
        };
        serde_json::json!({
            "involvedObject": {
                "apiVersion": format!("{group}/v1"),
                "kind": kind,
                "name": "checkout",
                "namespace": "production",
                "uid": "7d0cdc51-ddcf-4743-b223-83ca5c699632"
            },
            "metadata": {format!("{group}/revision"): revision},
            "severity": severity,
            "reason": reason,
            "message": "Deployment/production/checkout configured\nService/production/checkout unchanged",
            "reportingController": "kustomize-controller",
            "reportingInstance": "kustomize-controller-7c7b47f5f-8bhrp",
            "timestamp": "2026-11-29T02:42:00Z"
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_succeeded_reconciliation_is_a_deploy_of_its_git_revision() {
        let body = event(
            "Kustomization",
            "ReconciliationSucceeded",
            "info",
            "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
        );
        let Ok(Parsed::Deploy(deploy)) = parse(&body) else {
            panic!("not a deploy");
        };
        assert_eq!(deploy.status, DeployStatus::Succeeded);
        assert_eq!(deploy.version, "main@731f7ea");
        assert_eq!(
            deploy.commit.as_deref(),
            Some("731f7eaddfb6af01cb2173e18f0f75b0ba780ef1")
        );
        assert_eq!(
            deploy.description.as_deref(),
            Some("Deployment/production/checkout configured")
        );
        assert_eq!(deploy.author.as_deref(), Some("Flux kustomize-controller"));
    }

    #[test]
    fn a_failed_helm_upgrade_is_a_failed_deploy_of_the_chart_version() {
        let Ok(Parsed::Deploy(deploy)) =
            parse(&event("HelmRelease", "UpgradeFailed", "error", "6.0.1"))
        else {
            panic!("not a deploy");
        };
        assert_eq!(deploy.status, DeployStatus::Failed);
        assert_eq!(deploy.version, "6.0.1");
        assert_eq!(deploy.commit, None);
    }

    #[test]
    fn progress_and_other_kinds_are_ignored() {
        assert!(matches!(
            parse(&event(
                "Kustomization",
                "Progressing",
                "info",
                "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
            )),
            Ok(Parsed::Ignored(_))
        ));
        assert!(matches!(
            parse(&event(
                "GitRepository",
                "NewArtifact",
                "info",
                "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
            )),
            Ok(Parsed::Ignored(_))
        ));
    }

    #[test]
    fn revisions_are_shortened_as_people_read_them() {
        assert_eq!(
            version_of_revision("main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1").0,
            "main@731f7ea"
        );
        assert_eq!(
            version_of_revision("latest@sha256:3f1e2d4c5b6a79880f1e2d3c4b5a69788f1e2d3c4b5a6978").0,
            "latest@sha256:3f1e2d4c5b6a"
        );
    }
}
