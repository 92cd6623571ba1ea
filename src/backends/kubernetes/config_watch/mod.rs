//! Configuration changes made in place: the ConfigMaps and Secrets a service's pod template
//! references (`env.valueFrom`, `envFrom`, volumes, projected volumes) are listed and then
//! watched (`?watch=true` with bookmarks, from the last `resourceVersion` seen; a 410 Gone
//! means the server forgot that version, so the namespace is listed again and compared).
//!
//! Memory is bounded by the references: only referenced objects are kept, as their last
//! data — ConfigMap values (to show old → new) and, for Secrets, one SHA-256 digest per
//! key. A Secret's value is never kept, logged, stored or shown; only which keys changed.
//! The first sight of an object is its baseline and records nothing.
//!
//! Each state of a referenced ConfigMap (its first sight, then every change of its data)
//! is also kept in the store as a snapshot, the newest [`crate::store::SNAPSHOTS_KEPT`]
//! per object, so that a change can be restored (see `restore`). Secrets never are.
//!
//! A watch that fails never blocks alerts or rollbacks: it runs on its own task, names
//! the RBAC rule on 403, and backs off from 1 s to 60 s with one warning per outage.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{KubernetesBackend, error_chain};
use crate::audit::{AuditLog, actions};
use crate::core::deploy::{
    ConfigChange, Deploy, DeploySource, DeployStatus, Environment, MASKED, Target,
};
use crate::store::{ConfigObject, ConfigSnapshot, Store};

/// The longest wait between attempts while the API server is unreachable or refuses.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long one watch request stays open before it is renewed (the API server's limit).
const WATCH_TIMEOUT_SECS: u32 = 290;
/// Managed-field times further ahead than this are not believed (a skewed clock).
const FUTURE_SLACK: chrono::Duration = chrono::Duration::minutes(5);

/// Where a recorded configuration change goes: the store's deploy registry and the audit
/// log. Idempotent: the same change (same object and resourceVersion) recorded twice is
/// one entry.
#[async_trait]
pub trait ConfigChangeSink: Send + Sync {
    async fn record(&self, change: Deploy) -> Result<(), String>;

    /// Keeps a ConfigMap's data as it is now, for a later Restore (never a Secret's).
    async fn snapshot(&self, snapshot: ConfigSnapshot) -> Result<(), String>;
}

/// Records changes in the store's deploy registry (idempotent on service, environment,
/// version and time, so a relist that sees the same change again adds nothing) and audits
/// each new one as `config_change.recorded`.
pub struct RegistrySink {
    pub store: Arc<dyn Store>,
    pub audit: AuditLog,
}

#[async_trait]
impl ConfigChangeSink for RegistrySink {
    async fn record(&self, change: Deploy) -> Result<(), String> {
        let recorded = self
            .store
            .record_deploy(&change.with_secrets_masked())
            .await
            .map_err(|e| e.to_string())?;
        if !recorded.created {
            return Ok(());
        }
        let deploy = &recorded.deploy;
        let keys: Vec<&str> = deploy
            .config_changes
            .iter()
            .map(|c| c.key.as_str())
            .collect();
        self.audit
            .append(
                self.audit
                    .entry(actions::CONFIG_CHANGE_RECORDED)
                    .target(&deploy.target)
                    .details(json!({
                        "deploy": recorded.id,
                        "object": deploy.description,
                        "version": deploy.version,
                        "manager": deploy.author,
                        "at": deploy.started_at.to_rfc3339(),
                        "keys": keys,
                    })),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn snapshot(&self, snapshot: ConfigSnapshot) -> Result<(), String> {
        self.store
            .record_config_snapshot(&snapshot)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The two kinds of object watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ConfigMap,
    Secret,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::ConfigMap => "ConfigMap",
            Self::Secret => "Secret",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Self::ConfigMap => "configmaps",
            Self::Secret => "secrets",
        }
    }
}

/// The ConfigMaps and Secrets a pod template (as JSON) reads, by kind and name.
pub fn referenced_objects(template: &Value) -> BTreeSet<(Kind, String)> {
    let mut found = BTreeSet::new();
    let mut add = |kind: Kind, name: Option<&Value>| {
        if let Some(name) = name.and_then(Value::as_str).filter(|n| !n.is_empty()) {
            found.insert((kind, name.to_owned()));
        }
    };
    for list in ["/spec/containers", "/spec/initContainers"] {
        for container in array(template.pointer(list)) {
            for variable in array(container.get("env")) {
                add(
                    Kind::ConfigMap,
                    variable.pointer("/valueFrom/configMapKeyRef/name"),
                );
                add(
                    Kind::Secret,
                    variable.pointer("/valueFrom/secretKeyRef/name"),
                );
            }
            for source in array(container.get("envFrom")) {
                add(Kind::ConfigMap, source.pointer("/configMapRef/name"));
                add(Kind::Secret, source.pointer("/secretRef/name"));
            }
        }
    }
    for volume in array(template.pointer("/spec/volumes")) {
        add(Kind::ConfigMap, volume.pointer("/configMap/name"));
        add(Kind::Secret, volume.pointer("/secret/secretName"));
        for source in array(volume.pointer("/projected/sources")) {
            add(Kind::ConfigMap, source.pointer("/configMap/name"));
            add(Kind::Secret, source.pointer("/secret/name"));
        }
    }
    found
}

fn array(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    value.and_then(Value::as_array).into_iter().flatten()
}

/// One key's last seen content: a ConfigMap's text, else only a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    Text(String),
    Digest([u8; 32]),
}

/// The last seen data of one object.
type Snapshot = BTreeMap<String, Content>;

fn digest(bytes: &[u8]) -> Content {
    Content::Digest(Sha256::digest(bytes).into())
}

/// The keys added, removed or changed from `old` to `new`. ConfigMap text is shown old →
/// new, masked where the key looks secret; a digest (a Secret, binary data) is shown only
/// as [`MASKED`] on the side where the key exists.
fn data_changes(old: &Snapshot, new: &Snapshot) -> Vec<ConfigChange> {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let shown = |content: Option<&Content>| {
        content.map(|c| match c {
            Content::Text(text) => text.clone(),
            Content::Digest(_) => MASKED.to_owned(),
        })
    };
    keys.into_iter()
        .filter(|key| old.get(*key) != new.get(*key))
        .map(|key| {
            ConfigChange {
                key: key.clone(),
                old: shown(old.get(key)),
                new: shown(new.get(key)),
            }
            .masked()
        })
        .collect()
}

/// The keys that differ from one state of a ConfigMap to another, masked: what a restore
/// would change.
pub(super) fn config_map_changes(from: &ConfigMap, to: &ConfigMap) -> Vec<ConfigChange> {
    data_changes(&from.snapshot(), &to.snapshot())
}

/// The ConfigMap a configuration change names (`configmap/checkout-env@912`) and the
/// resourceVersion it had after the change. Secrets are never restored.
pub(crate) fn changed_config_map(change: &Deploy) -> Option<(&str, &str)> {
    if !change.is_config_change() {
        return None;
    }
    change
        .version
        .strip_prefix("configmap/")?
        .rsplit_once('@')
        .filter(|(name, version)| !name.is_empty() && !version.is_empty())
}

/// An object kind as the watch reads it.
trait Watched:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    fn snapshot(&self) -> Snapshot;

    /// The data a Restore would write back (`data`, base64 `binaryData`); only
    /// ConfigMaps have one, a Secret is never kept.
    fn restorable(&self) -> Option<(BTreeMap<String, String>, BTreeMap<String, String>)> {
        None
    }
}

impl Watched for ConfigMap {
    const KIND: Kind = Kind::ConfigMap;

    fn snapshot(&self) -> Snapshot {
        let mut data: Snapshot = self
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), Content::Text(v.clone())))
            .collect();
        for (key, bytes) in self.binary_data.iter().flatten() {
            data.insert(key.clone(), digest(&bytes.0));
        }
        data
    }

    fn restorable(&self) -> Option<(BTreeMap<String, String>, BTreeMap<String, String>)> {
        use base64::Engine;
        let binary = self
            .binary_data
            .iter()
            .flatten()
            .map(|(k, v)| {
                (
                    k.clone(),
                    base64::engine::general_purpose::STANDARD.encode(&v.0),
                )
            })
            .collect();
        Some((self.data.clone().unwrap_or_default(), binary))
    }
}

impl Watched for Secret {
    const KIND: Kind = Kind::Secret;

    /// Digests only: the value is dropped with the object.
    fn snapshot(&self) -> Snapshot {
        self.data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), digest(&v.0)))
            .collect()
    }
}

/// Who last wrote the object and when: the newest `managedFields` entry that is not a
/// status update. A time from the cluster is believed only up to five minutes ahead.
fn last_writer(metadata: &ObjectMeta, now: DateTime<Utc>) -> (Option<String>, DateTime<Utc>) {
    let newest = metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| entry.subresource.as_deref().is_none_or(str::is_empty))
        .filter_map(|entry| {
            let time = entry.time.as_ref().and_then(|t| {
                DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().unsigned_abs())
            });
            Some((entry.manager.clone()?, time))
        })
        .max_by_key(|(_, time)| *time);
    match newest {
        Some((manager, Some(time))) if time <= now + FUTURE_SLACK => (Some(manager), time),
        Some((manager, _)) => (Some(manager), now),
        None => (None, now),
    }
}

/// The services (targets) reading each object of one namespace.
type Readers = HashMap<(Kind, String), Vec<Target>>;

/// What one outage has already said, so it warns once.
struct Outage {
    backoff: Duration,
    warned: bool,
}

impl Outage {
    fn new() -> Self {
        Self {
            backoff: Duration::from_secs(1),
            warned: false,
        }
    }

    /// Logs the first failure of an outage, then waits the next backoff (or until stop).
    async fn failed(
        &mut self,
        backend: &str,
        what: &str,
        error: &kube::Error,
        stop: &CancellationToken,
    ) {
        if !self.warned {
            self.warned = true;
            match error {
                kube::Error::Api(status) if status.code == 403 => tracing::warn!(
                    backend,
                    "cannot {what} (403 Forbidden): add get, list and watch on configmaps and \
                     secrets to breakwater's Role (deploy/kubernetes/rbac.yaml), or set \
                     backends.{backend}.watch_config = false; retrying up to every 60 s"
                ),
                _ => tracing::warn!(
                    backend,
                    error = %error_chain(error),
                    "cannot {what}; configuration changes are not seen until the API server \
                     answers (check backends.{backend}); retrying up to every 60 s"
                ),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(self.backoff) => {}
            () = stop.cancelled() => {}
        }
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn recovered(&mut self, backend: &str, what: &str) {
        if self.warned {
            tracing::info!(backend, "can {what} again");
        }
        *self = Self::new();
    }
}

/// The kinds of workload whose pod templates are read for references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    /// The kind as Kubernetes (and Argo CD's `status.resources`) names it.
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "Deployment" => Some(Self::Deployment),
            "StatefulSet" => Some(Self::StatefulSet),
            "DaemonSet" => Some(Self::DaemonSet),
            _ => None,
        }
    }

    fn resource(self) -> kube::api::ApiResource {
        let (kind, plural) = match self {
            Self::Deployment => ("Deployment", "deployments"),
            Self::StatefulSet => ("StatefulSet", "statefulsets"),
            Self::DaemonSet => ("DaemonSet", "daemonsets"),
        };
        kube::api::ApiResource {
            group: "apps".into(),
            version: "v1".into(),
            api_version: "apps/v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        }
    }
}

/// One workload whose pod template a service runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

/// Where the watch learns which workloads each service runs: the configured Deployments
/// of a Kubernetes backend, or what an Argo CD Application manages. Asked once when the
/// watch starts.
#[async_trait]
pub trait WorkloadSource: Send + Sync {
    /// Each target with one of its workloads; an error says what to fix.
    async fn workloads(&self) -> Result<Vec<(Target, Workload)>, String>;
}

/// The Kubernetes backend's own services: one Deployment each, as configured.
struct ConfiguredDeployments(Arc<KubernetesBackend>);

#[async_trait]
impl WorkloadSource for ConfiguredDeployments {
    async fn workloads(&self) -> Result<Vec<(Target, Workload)>, String> {
        Ok(self
            .0
            .targets()
            .into_iter()
            .map(|target| {
                let deployment = self.0.deployment_ref(&target);
                let workload = Workload {
                    kind: WorkloadKind::Deployment,
                    namespace: deployment.namespace,
                    name: deployment.name,
                };
                (target, workload)
            })
            .collect())
    }
}

impl KubernetesBackend {
    /// The targets this backend serves, from the configured services.
    fn targets(&self) -> Vec<Target> {
        let mut targets: Vec<Target> = self
            .services
            .values()
            .flat_map(|service| {
                service
                    .environments
                    .iter()
                    .filter(|env| service.backend_for(env) == Some(self.name.as_str()))
                    .map(|env: &Environment| Target::new(service.name.clone(), env.clone()))
            })
            .collect();
        targets.sort_by_key(ToString::to_string);
        targets
    }

    /// The pod template of a workload as JSON; `None` when the workload does not exist.
    async fn pod_template(&self, workload: &Workload) -> Result<Option<Value>, kube::Error> {
        let connection = self
            .connection()
            .await
            .map_err(|e| kube::Error::Service(e.to_string().into()))?;
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            connection.client.clone(),
            &workload.namespace,
            &workload.kind.resource(),
        );
        Ok(api
            .get_opt(&workload.name)
            .await?
            .and_then(|object| object.data.pointer("/spec/template").cloned()))
    }

    /// The Deployments among `workloads` whose pod template reads ConfigMap `name`: the
    /// ones a Restore of it restarts.
    pub(crate) async fn deployments_reading(
        &self,
        workloads: &[Workload],
        name: &str,
    ) -> Result<Vec<Workload>, kube::Error> {
        let mut reading = Vec::new();
        for workload in workloads {
            if workload.kind != WorkloadKind::Deployment {
                continue;
            }
            let Some(template) = self.pod_template(workload).await? else {
                continue;
            };
            if referenced_objects(&template).contains(&(Kind::ConfigMap, name.to_owned())) {
                reading.push(workload.clone());
            }
        }
        Ok(reading)
    }

    /// Which objects each namespace's services read, from their workloads' templates.
    async fn readers(
        &self,
        source: &dyn WorkloadSource,
    ) -> Result<BTreeMap<String, Readers>, kube::Error> {
        let workloads = source
            .workloads()
            .await
            .map_err(|e| kube::Error::Service(e.into()))?;
        let mut namespaces: BTreeMap<String, Readers> = BTreeMap::new();
        for (target, workload) in workloads {
            let Some(template) = self.pod_template(&workload).await? else {
                continue;
            };
            let readers = namespaces.entry(workload.namespace.clone()).or_default();
            for reference in referenced_objects(&template) {
                let targets = readers.entry(reference).or_default();
                if !targets.contains(&target) {
                    targets.push(target.clone());
                }
            }
        }
        Ok(namespaces)
    }

    /// Watches the ConfigMaps and Secrets the configured services' Deployments reference
    /// until `stop`, recording each change.
    pub async fn watch_config(
        self: Arc<Self>,
        sink: Arc<dyn ConfigChangeSink>,
        stop: CancellationToken,
    ) {
        let source = ConfiguredDeployments(self.clone());
        self.watch_config_of(&source, sink, stop).await;
    }

    /// Watches the ConfigMaps and Secrets referenced by the workloads `source` names
    /// until `stop`, recording each change as a change of the workload's target.
    pub async fn watch_config_of(
        self: Arc<Self>,
        source: &dyn WorkloadSource,
        sink: Arc<dyn ConfigChangeSink>,
        stop: CancellationToken,
    ) {
        let mut outage = Outage::new();
        let namespaces = loop {
            if stop.is_cancelled() {
                return;
            }
            match self.readers(source).await {
                Ok(namespaces) => break namespaces,
                Err(error) => {
                    outage
                        .failed(&self.name, "read the services' workloads", &error, &stop)
                        .await
                }
            }
        };
        let mut watches = Vec::new();
        for (namespace, readers) in namespaces {
            let readers = Arc::new(readers);
            for kind in [Kind::ConfigMap, Kind::Secret] {
                if !readers.keys().any(|(k, _)| *k == kind) {
                    continue;
                }
                let watch = Watch {
                    backend: self.clone(),
                    namespace: namespace.clone(),
                    readers: readers.clone(),
                    sink: sink.clone(),
                    stop: stop.clone(),
                };
                watches.push(match kind {
                    Kind::ConfigMap => tokio::spawn(watch.run::<ConfigMap>()),
                    Kind::Secret => tokio::spawn(watch.run::<Secret>()),
                });
            }
        }
        for watch in watches {
            let _ = watch.await;
        }
    }
}

/// One kind in one namespace: list, then watch from the list's resourceVersion.
struct Watch {
    backend: Arc<KubernetesBackend>,
    namespace: String,
    readers: Arc<Readers>,
    sink: Arc<dyn ConfigChangeSink>,
    stop: CancellationToken,
}

/// Why a watch stream ended.
enum Ended {
    /// The server no longer has our resourceVersion (410 Gone): list again.
    Gone,
    Failed(kube::Error),
    Stopped,
}

impl Watch {
    async fn run<K: Watched>(self) {
        let what = format!(
            "list and watch {} in namespace {}",
            K::KIND.plural(),
            self.namespace
        );
        let mut seen: HashMap<String, Snapshot> = HashMap::new();
        let mut outage = Outage::new();
        while !self.stop.is_cancelled() {
            let api: Api<K> = match self.backend.connection().await {
                Ok(connection) => Api::namespaced(connection.client.clone(), &self.namespace),
                Err(e) => {
                    let error = kube::Error::Service(e.to_string().into());
                    outage
                        .failed(&self.backend.name, &what, &error, &self.stop)
                        .await;
                    continue;
                }
            };
            let list = match api.list(&ListParams::default()).await {
                Ok(list) => list,
                Err(error) => {
                    outage
                        .failed(&self.backend.name, &what, &error, &self.stop)
                        .await;
                    continue;
                }
            };
            outage.recovered(&self.backend.name, &what);
            for object in &list.items {
                self.observe(object, &mut seen).await;
            }
            let mut version = list.metadata.resource_version.unwrap_or_default();
            // Whatever ended the watch, the next round lists again and compares with what
            // was seen, so nothing missed in between is lost and nothing is recorded twice.
            match self.follow(&api, &mut version, &mut seen).await {
                Ended::Gone => {}
                Ended::Stopped => return,
                Ended::Failed(error) => {
                    outage
                        .failed(&self.backend.name, &what, &error, &self.stop)
                        .await;
                }
            }
        }
    }

    /// Follows watch requests from `version` until one fails or the server says 410.
    async fn follow<K: Watched>(
        &self,
        api: &Api<K>,
        version: &mut String,
        seen: &mut HashMap<String, Snapshot>,
    ) -> Ended {
        loop {
            let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
            let stream = tokio::select! {
                stream = api.watch(&params, version) => stream,
                () = self.stop.cancelled() => return Ended::Stopped,
            };
            let mut stream = match stream {
                Ok(stream) => stream.boxed(),
                Err(error) => return Ended::Failed(error),
            };
            loop {
                let event = tokio::select! {
                    event = stream.next() => event,
                    () = self.stop.cancelled() => return Ended::Stopped,
                };
                match event {
                    // The server closed the request (its timeout): renew from `version`.
                    None => break,
                    Some(Ok(WatchEvent::Added(object) | WatchEvent::Modified(object))) => {
                        remember_version(version, object.meta());
                        self.observe(&object, seen).await;
                    }
                    Some(Ok(WatchEvent::Deleted(object))) => {
                        remember_version(version, object.meta());
                        if let Some(name) = &object.meta().name {
                            seen.remove(name);
                        }
                    }
                    Some(Ok(WatchEvent::Bookmark(bookmark))) => {
                        *version = bookmark.metadata.resource_version;
                    }
                    Some(Ok(WatchEvent::Error(status))) if status.code == 410 => {
                        return Ended::Gone;
                    }
                    Some(Ok(WatchEvent::Error(status))) => {
                        return Ended::Failed(kube::Error::Api(status));
                    }
                    Some(Err(error)) => return Ended::Failed(error),
                }
            }
        }
    }

    /// Compares a referenced object with its last sight and records what changed.
    async fn observe<K: Watched>(&self, object: &K, seen: &mut HashMap<String, Snapshot>) {
        let meta = object.meta();
        let Some(name) = meta.name.clone() else {
            return;
        };
        let Some(targets) = self.readers.get(&(K::KIND, name.clone())) else {
            return;
        };
        let snapshot = object.snapshot();
        let before = seen.insert(name.clone(), snapshot.clone());
        let changes = before
            .as_ref()
            .map(|before| data_changes(before, &snapshot))
            .unwrap_or_default();
        if before.is_some() && changes.is_empty() {
            return;
        }
        let now = Utc::now();
        let (manager, at) = last_writer(meta, now);
        let resource_version = meta.resource_version.clone().unwrap_or_default();
        // The first sight is kept too: it is the state a first change would be restored to.
        if let Some((data, binary_data)) = object.restorable() {
            let kept = ConfigSnapshot {
                id: 0,
                object: ConfigObject {
                    backend: self.backend.name.clone(),
                    namespace: self.namespace.clone(),
                    name: name.clone(),
                },
                resource_version: resource_version.clone(),
                data,
                binary_data,
                taken_at: at,
            };
            if let Err(error) = self.sink.snapshot(kept).await {
                tracing::warn!(
                    backend = %self.backend.name,
                    object = %format!("ConfigMap {}/{name}", self.namespace),
                    %error,
                    "could not keep a snapshot of a ConfigMap; a change from this state cannot be restored"
                );
            }
        }
        let Some(before) = before else {
            return;
        };
        for target in targets {
            let change = Deploy {
                target: target.clone(),
                version: format!(
                    "{}/{name}@{resource_version}",
                    K::KIND.label().to_lowercase()
                ),
                previous_version: None,
                revision: None,
                commit: None,
                author: manager.clone(),
                description: Some(format!("{} {name} changed", K::KIND.label())),
                url: None,
                started_at: at,
                finished_at: Some(at),
                status: DeployStatus::Succeeded,
                changes: Vec::new(),
                config_changes: changes.clone(),
                source: DeploySource::ConfigChange,
            };
            if let Err(error) = self.sink.record(change).await {
                tracing::error!(
                    backend = %self.backend.name,
                    object = %format!("{} {}/{name}", K::KIND.label(), self.namespace),
                    %error,
                    "could not record a configuration change; it is compared again at the next relist"
                );
                // Forget the baseline so the next list sees it as a change again.
                seen.insert(name.clone(), before.clone());
            }
        }
    }
}

fn remember_version(version: &mut String, meta: &ObjectMeta) {
    if let Some(seen) = &meta.resource_version {
        version.clone_from(seen);
    }
}

#[cfg(test)]
mod tests;
