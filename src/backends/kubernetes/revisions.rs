//! A Deployment's history read from its ReplicaSets: their revision numbers, the version
//! each is known by, the deploys they become, and where the current rollout stands.

use std::collections::BTreeMap;

use chrono::Utc;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use serde_json::Value;

use super::template::{replica_change, template_changes, template_value};
use super::{
    CHANGE_CAUSE, DeploymentRef, REVISION, REVISION_HISTORY, RevisionSet, Rollout, VersionFrom,
};
use crate::backends::{VersionSource, distinct_versions, image_tag};
use crate::core::deploy::{Deploy, DeploySource, DeployStatus, Target};

/// The Deployment's `matchLabels` as a label selector (`app=orders,tier=web`).
pub(super) fn selector_of(object: &Deployment) -> String {
    object
        .spec
        .as_ref()
        .and_then(|spec| spec.selector.match_labels.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// A workload's revisions (oldest first) as deploys, newest first, each with the
/// configuration it changed from the one before; the `current` revision has the
/// workload's rollout status, the others succeeded when they were rolled out.
pub(crate) fn revision_deploys(
    target: &Target,
    deployment: &DeploymentRef,
    sets: &[RevisionSet],
    current: Option<i64>,
    current_status: DeployStatus,
) -> Vec<Deploy> {
    let bases: Vec<String> = sets.iter().map(|s| version_of(s, deployment)).collect();
    // Versions are handed out in the order templates first appeared.
    let mut by_first: Vec<usize> = (0..sets.len()).collect();
    by_first.sort_by_key(|&i| (sets[i].first_revision, sets[i].created));
    let numbers: Vec<String> = sets.iter().map(|s| s.first_revision.to_string()).collect();
    let sources: Vec<VersionSource<'_>> = by_first
        .iter()
        .map(|&i| VersionSource {
            content: &sets[i].name,
            base: &bases[i],
            number: &numbers[i],
        })
        .collect();
    let labels = distinct_versions(&sources);
    let mut versions = vec![String::new(); sets.len()];
    for (position, &i) in by_first.iter().enumerate() {
        versions[i].clone_from(&labels[position]);
    }
    let mut deploys: Vec<Deploy> = sets
        .iter()
        .enumerate()
        .map(|(i, set)| {
            let started = set.created.unwrap_or_else(Utc::now);
            let (status, finished_at) = if Some(set.revision) == current {
                let finished = (current_status != DeployStatus::Started).then_some(started);
                (current_status, finished)
            } else {
                (DeployStatus::Succeeded, Some(started))
            };
            let config_changes = i
                .checked_sub(1)
                .map(|p| {
                    let mut changes = template_changes(&sets[p].template, &set.template);
                    changes.extend(replica_change(&sets[p].annotations, &set.annotations));
                    changes
                })
                .unwrap_or_default();
            let description = set
                .annotations
                .get(CHANGE_CAUSE)
                .cloned()
                .unwrap_or_else(|| format!("ReplicaSet {}", set.name));
            Deploy {
                target: target.clone(),
                version: versions[i].clone(),
                previous_version: i.checked_sub(1).map(|p| versions[p].clone()),
                revision: Some(set.revision.to_string()),
                commit: None,
                author: None,
                description: Some(description),
                url: None,
                started_at: started,
                finished_at,
                status,
                changes: Vec::new(),
                config_changes,
                source: DeploySource::Backend,
            }
        })
        .collect();
    deploys.reverse();
    deploys
}

/// A controlled ReplicaSet as a revision, if it carries a revision number.
pub(super) fn revision_set(rs: ReplicaSet) -> Option<RevisionSet> {
    numbered_revision_set(rs, REVISION)
}

/// A ReplicaSet as a revision numbered by the `revision_annotation` its controller
/// writes (Deployments and Argo Rollouts use different ones).
pub(crate) fn numbered_revision_set(
    rs: ReplicaSet,
    revision_annotation: &str,
) -> Option<RevisionSet> {
    let annotations: BTreeMap<String, String> = rs.metadata.annotations.clone().unwrap_or_default();
    let revision: i64 = annotations.get(revision_annotation)?.parse().ok()?;
    let first_revision = annotations
        .get(REVISION_HISTORY)
        .map(|h| {
            h.split(',')
                .filter_map(|n| n.trim().parse::<i64>().ok())
                .min()
                .unwrap_or(revision)
        })
        .unwrap_or(revision)
        .min(revision);
    let template = rs
        .spec
        .as_ref()
        .and_then(|spec| spec.template.as_ref())
        .map(template_value)
        .unwrap_or(Value::Null);
    Some(RevisionSet {
        revision,
        first_revision,
        name: rs.metadata.name.clone().unwrap_or_default(),
        created: rs.metadata.creation_timestamp.as_ref().and_then(|t| {
            chrono::DateTime::from_timestamp(
                t.0.as_second(),
                t.0.subsec_nanosecond().unsigned_abs(),
            )
        }),
        template,
        annotations,
    })
}

/// The revision number the Deployment runs: its revision annotation, else the newest set.
pub(super) fn current_revision_number(object: &Deployment, sets: &[RevisionSet]) -> Option<i64> {
    object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .filter(|r| sets.iter().any(|s| s.revision == *r))
        .or_else(|| sets.last().map(|s| s.revision))
}

/// The version a revision is known by.
pub(crate) fn version_of(set: &RevisionSet, deployment: &DeploymentRef) -> String {
    let from_map = |path: &str, key: &str| {
        set.template
            .pointer(path)
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let image = || {
        let containers = set
            .template
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let named = containers
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(deployment.name.as_str()));
        named
            .or(containers.first())
            .and_then(|c| c.get("image"))
            .and_then(Value::as_str)
            .map(image_tag)
    };
    let found = match &deployment.version_from {
        VersionFrom::Image => image(),
        VersionFrom::Label(key) => from_map("/metadata/labels", key),
        VersionFrom::Annotation(key) => {
            from_map("/metadata/annotations", key).or_else(|| set.annotations.get(key).cloned())
        }
    };
    found
        .or_else(image)
        .unwrap_or_else(|| format!("revision {}", set.first_revision))
}

/// Where a rollout stands, by `kubectl rollout status`'s rules.
pub(super) fn rollout_status(object: &Deployment) -> Rollout {
    let name = object.metadata.name.clone().unwrap_or_default();
    let generation = object.metadata.generation.unwrap_or(0);
    let status = object.status.clone().unwrap_or_default();
    if generation > status.observed_generation.unwrap_or(0) {
        return Rollout::Progressing(format!(
            "waiting for the new spec of deployment {name} to be observed"
        ));
    }
    let progressing = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing");
    if let Some(condition) = progressing
        && condition.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return Rollout::DeadlineExceeded(condition.message.clone().unwrap_or_default());
    }
    let desired = object.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < desired {
        return Rollout::Progressing(format!(
            "{updated} of {desired} new replicas have been updated"
        ));
    }
    if replicas > updated {
        return Rollout::Progressing(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return Rollout::Progressing(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    Rollout::Complete(format!("{available} of {desired} replicas available"))
}

/// Tools that own the workload and will put their own template back on their next run.
pub(crate) fn managed_by(
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<String> {
    let labels = metadata.labels.clone().unwrap_or_default();
    let annotations = metadata.annotations.clone().unwrap_or_default();
    if let Some(release) = annotations.get("meta.helm.sh/release-name") {
        return Some(format!("Helm release {release}"));
    }
    if labels
        .get("app.kubernetes.io/managed-by")
        .map(String::as_str)
        == Some("Helm")
    {
        return Some("Helm".to_owned());
    }
    if let Some(tracking) = annotations.get("argocd.argoproj.io/tracking-id") {
        let app = tracking.split(':').next().unwrap_or(tracking);
        return Some(format!("Argo CD application {app}"));
    }
    labels
        .get("kustomize.toolkit.fluxcd.io/name")
        .or_else(|| labels.get("helm.toolkit.fluxcd.io/name"))
        .map(|name| format!("Flux {name}"))
}
