//! Argo CD's JSON: the fields of an `Application` (and of its errors) breakwater reads.
//! Everything defaults, so a field Argo CD leaves out or adds never fails a read.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Application {
    pub(super) metadata: Metadata,
    pub(super) spec: AppSpec,
    pub(super) status: AppStatus,
    /// The operation requested and not yet picked up by the controller.
    pub(super) operation: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Metadata {
    pub(super) name: String,
    pub(super) labels: HashMap<String, String>,
    pub(super) annotations: HashMap<String, String>,
    pub(super) owner_references: Vec<OwnerReference>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct OwnerReference {
    pub(super) kind: String,
    pub(super) name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct AppSpec {
    pub(super) sync_policy: Option<SyncPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SyncPolicy {
    pub(super) automated: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Source {
    pub(super) target_revision: String,
    pub(super) chart: String,
    pub(super) helm: Option<HelmSource>,
    pub(super) kustomize: Option<KustomizeSource>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct HelmSource {
    pub(super) parameters: Vec<HelmParameter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct HelmParameter {
    pub(super) name: String,
    pub(super) value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct KustomizeSource {
    pub(super) images: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct AppStatus {
    pub(super) sync: SyncStatus,
    pub(super) health: HealthStatus,
    pub(super) history: Vec<HistoryEntry>,
    pub(super) operation_state: Option<OperationState>,
    /// When the controller last compared and assessed the application.
    pub(super) reconciled_at: Option<DateTime<Utc>>,
    /// The objects the application manages.
    pub(super) resources: Vec<ResourceStatus>,
}

/// One object an application manages, as `status.resources` lists it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ResourceStatus {
    pub(super) kind: String,
    pub(super) namespace: String,
    pub(super) name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SyncStatus {
    pub(super) status: String,
    pub(super) revision: String,
    /// Multi-source applications: one revision per source, no `revision`.
    pub(super) revisions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct HealthStatus {
    pub(super) status: String,
    pub(super) message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct HistoryEntry {
    pub(super) id: i64,
    pub(super) revision: String,
    pub(super) revisions: Vec<String>,
    pub(super) deployed_at: Option<DateTime<Utc>>,
    pub(super) deploy_started_at: Option<DateTime<Utc>>,
    pub(super) source: Option<Source>,
    pub(super) sources: Vec<Source>,
    pub(super) initiated_by: Option<Initiator>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Initiator {
    pub(super) username: String,
    pub(super) automated: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct OperationState {
    pub(super) operation: Option<OperationSpec>,
    pub(super) phase: String,
    pub(super) message: String,
    pub(super) started_at: Option<DateTime<Utc>>,
    pub(super) finished_at: Option<DateTime<Utc>>,
    pub(super) sync_result: Option<SyncResult>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct OperationSpec {
    pub(super) sync: Option<SyncResult>,
    pub(super) initiated_by: Option<Initiator>,
}

/// The revision(s) of a sync operation or its result: `revision` for one source,
/// `revisions` (one per source) for a multi-source application.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SyncResult {
    pub(super) revision: String,
    pub(super) revisions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ErrorBody {
    pub(super) message: String,
    pub(super) error: String,
}
