//! Restore: a ConfigMap changed in place is written back to the snapshot kept from before
//! the change (see `config_watch`), then the Deployment is restarted so its pods read it.
//!
//! The write is one JSON merge patch carrying the `resourceVersion` read just before and
//! only after checking it is the one the person was shown: if anyone changed the ConfigMap
//! since, nothing is written (a 409 from the API server means the same) and the bot offers
//! a fresh restore from what it holds now. The restart is what `kubectl rollout restart`
//! does, the pod template annotation `kubectl.kubernetes.io/restartedAt`; the rollout it
//! starts is followed to healthy like a rollback's. A paused Deployment is refused before
//! anything is written, since it would not restart.
//!
//! Needs `get` and `patch` on `configmaps`, `patch` on `deployments` (the Role in
//! `deploy/kubernetes/rbac.yaml`); reading whether Argo CD syncs the ConfigMap
//! automatically needs `get` on its Application, and is only a caveat when refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Map, Value, json};

use super::config_watch::{changed_config_map, config_map_changes};
use super::{FIELD_MANAGER, Handle, KubernetesBackend, Phase, template_value};
use crate::backends::toolkit::{error_chain, snippet};
use crate::core::backend::{
    BackendError, BackendErrorKind, Caveat, Operation, RestoreOffer, RollbackCall,
};
use crate::core::deploy::{Deploy, Revision, Target};
use crate::store::{ConfigObject, ConfigSnapshot, SNAPSHOTS_KEPT, Store};

/// The annotation `kubectl rollout restart` sets on the pod template.
pub(super) const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// Where Argo CD records which Application manages an object (annotation tracking).
const ARGOCD_TRACKING: &str = "argocd.argoproj.io/tracking-id";
/// The namespace Argo CD runs in unless the tracking id names another.
const ARGOCD_NAMESPACE: &str = "argocd";

impl ConfigSnapshot {
    fn as_config_map(&self) -> ConfigMap {
        use base64::Engine;
        let binary: BTreeMap<String, k8s_openapi::ByteString> = self
            .binary_data
            .iter()
            .filter_map(|(k, v)| {
                let bytes = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
                Some((k.clone(), k8s_openapi::ByteString(bytes)))
            })
            .collect();
        ConfigMap {
            data: Some(self.data.clone()),
            binary_data: Some(binary),
            ..ConfigMap::default()
        }
    }
}

/// The merge patch that makes `current`'s data the snapshot's: its keys set, keys it does
/// not have removed (null), with the resourceVersion precondition.
fn restore_patch(current: &ConfigMap, snapshot: &ConfigSnapshot, read: &str) -> Value {
    fn section(now: Vec<&String>, kept: &BTreeMap<String, String>) -> Map<String, Value> {
        let mut patch: Map<String, Value> = now
            .into_iter()
            .filter(|k| !kept.contains_key(*k))
            .map(|k| (k.clone(), Value::Null))
            .collect();
        patch.extend(kept.iter().map(|(k, v)| (k.clone(), json!(v))));
        patch
    }
    let data = section(
        current.data.iter().flatten().map(|(k, _)| k).collect(),
        &snapshot.data,
    );
    let binary = section(
        current
            .binary_data
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .collect(),
        &snapshot.binary_data,
    );
    let mut patch = json!({ "metadata": { "resourceVersion": read } });
    if !data.is_empty() {
        patch["data"] = Value::Object(data);
    }
    if !binary.is_empty() {
        patch["binaryData"] = Value::Object(binary);
    }
    patch
}

impl KubernetesBackend {
    /// Where the watch keeps ConfigMap snapshots; without it no restore is offered.
    pub fn keep_snapshots_in(&self, store: Arc<dyn Store>) {
        // Set once at start-up; a second call changes nothing.
        let _ = self.snapshots.set(store);
    }

    fn snapshot_store(&self) -> Result<&Arc<dyn Store>, BackendError> {
        self.snapshots.get().ok_or_else(|| {
            BackendError::unsupported(format!(
                "backends.{} keeps no ConfigMap snapshots, so nothing can be restored; \
                 nothing was written",
                self.name
            ))
        })
    }

    async fn config_maps(&self, namespace: &str) -> Result<(Api<ConfigMap>, String), BackendError> {
        let connection = self.connection().await?;
        Ok((
            Api::namespaced(connection.client.clone(), namespace),
            connection.cluster_url.clone(),
        ))
    }

    /// The ConfigMap as it is now; errors say that nothing was written.
    async fn read_config_map(&self, object: &ConfigObject) -> Result<ConfigMap, BackendError> {
        let (api, cluster) = self.config_maps(&object.namespace).await?;
        api.get(&object.name)
            .await
            .map_err(|e| self.config_map_error(&e, &cluster, "get", object, "nothing was written"))
    }

    /// The restore to offer for a suspect change of a ConfigMap: back to the snapshot
    /// kept just before it, from what the ConfigMap holds now.
    pub(super) async fn offer_restore(
        &self,
        target: &Target,
        change: &Deploy,
    ) -> Result<Option<RestoreOffer>, BackendError> {
        let namespace = self.deployment_ref(target).namespace;
        self.offer_restore_in(&namespace, change, None).await
    }

    /// [`Self::offer_restore`] for a ConfigMap in `namespace`. `app` is the Argo CD
    /// Application that manages the ConfigMap and whether it syncs automatically, when the
    /// caller read it (the Argo CD backend); otherwise the tracking annotation is read.
    pub(crate) async fn offer_restore_in(
        &self,
        namespace: &str,
        change: &Deploy,
        app: Option<(&str, bool)>,
    ) -> Result<Option<RestoreOffer>, BackendError> {
        let Some((name, version)) = changed_config_map(change) else {
            return Ok(None);
        };
        let Some(store) = self.snapshots.get() else {
            return Ok(None);
        };
        let object = ConfigObject {
            backend: self.name.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let kept = store
            .config_snapshots(&object)
            .await
            .map_err(|e| store_error(&e))?;
        // Newest first: the state kept just before the change's is what it replaced.
        let Some(before) = kept
            .iter()
            .position(|s| s.resource_version == version)
            .and_then(|at| kept.get(at + 1))
        else {
            return Ok(None);
        };
        let current = self.read_config_map(&object).await?;
        let changes = config_map_changes(&current, &before.as_config_map());
        if changes.is_empty() {
            return Ok(None);
        }
        let read = current
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let at = change.effective_at();
        Ok(Some(RestoreOffer {
            object: name.to_owned(),
            before: at,
            from: Revision {
                id: read,
                version: name.to_owned(),
            },
            to: Revision {
                id: before.id.to_string(),
                version: format!("before {}", at.format("%H:%M UTC")),
            },
            changes,
            caveats: match app {
                Some((app, automated)) => automated
                    .then(|| autosync_caveat(name, app, Some(true)))
                    .into_iter()
                    .collect(),
                None => self
                    .argocd_caveat(&current, name)
                    .await
                    .into_iter()
                    .collect(),
            },
        }))
    }

    /// Says that Argo CD will undo the restore when it manages the ConfigMap: for sure
    /// when its Application syncs automatically, as a possibility when that cannot be read.
    async fn argocd_caveat(&self, current: &ConfigMap, name: &str) -> Option<Caveat> {
        let tracking = current
            .metadata
            .annotations
            .as_ref()?
            .get(ARGOCD_TRACKING)?;
        let app = tracking.split(':').next().filter(|a| !a.is_empty())?;
        let (namespace, application) = app.split_once('_').unwrap_or((ARGOCD_NAMESPACE, app));
        let automated = match self.connection().await {
            Ok(connection) => {
                let resource = ApiResource {
                    group: "argoproj.io".into(),
                    version: "v1alpha1".into(),
                    api_version: "argoproj.io/v1alpha1".into(),
                    kind: "Application".into(),
                    plural: "applications".into(),
                };
                let api: Api<DynamicObject> =
                    Api::namespaced_with(connection.client.clone(), namespace, &resource);
                api.get(application).await.ok().map(|found| {
                    found
                        .data
                        .pointer("/spec/syncPolicy/automated")
                        .is_some_and(|a| !a.is_null())
                })
            }
            Err(_) => None,
        };
        if automated == Some(false) {
            return None;
        }
        Some(autosync_caveat(name, application, automated))
    }

    /// Writes the kept state back and restarts the Deployment; returns the rollout to
    /// follow. Nothing is written when the ConfigMap changed since the offer.
    pub(super) async fn restore(&self, call: &RollbackCall) -> Result<Operation, BackendError> {
        let deployment = self.deployment_ref(&call.target);
        self.restore_and_restart(call, &deployment).await
    }

    /// The snapshot a restore plan names (`to.id`), with the words for when it is gone.
    pub(crate) async fn planned_snapshot(
        &self,
        call: &RollbackCall,
    ) -> Result<ConfigSnapshot, BackendError> {
        let store = self.snapshot_store()?;
        let snapshot = match call.to.id.parse::<i64>() {
            Ok(id) => store
                .config_snapshot(id)
                .await
                .map_err(|e| store_error(&e))?,
            Err(_) => None,
        };
        snapshot.ok_or_else(|| {
            BackendError::new(
                BackendErrorKind::NotFound,
                format!(
                    "the kept state of {} {} is gone (only the newest {SNAPSHOTS_KEPT} per \
                     ConfigMap are kept); nothing was written. Restore it by hand with `kubectl \
                     edit configmap`",
                    call.from.version, call.to.version
                ),
            )
        })
    }

    /// [`Self::restore`] restarting `deployment`, which reads the ConfigMap.
    pub(crate) async fn restore_and_restart(
        &self,
        call: &RollbackCall,
        deployment: &super::DeploymentRef,
    ) -> Result<Operation, BackendError> {
        let deployment = deployment.clone();
        let snapshot = self.planned_snapshot(call).await?;
        let object = snapshot.object.clone();
        let name = &object.name;
        let workload = self.get_deployment(&deployment, Phase::Read).await?;
        if workload.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            return Err(BackendError::new(
                BackendErrorKind::Refused,
                format!(
                    "{deployment} is paused, so it would not restart to read a restored \
                     ConfigMap {name}; nothing was written. Resume it (kubectl rollout resume \
                     deployment/{} -n {}), then ask for a fresh plan",
                    deployment.name, deployment.namespace
                ),
            ));
        }
        let current = self.read_config_map(&object).await?;
        let read = current
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        if read != call.from.id {
            return Err(changed_since(name, &call.from.id, &read));
        }
        let (api, cluster) = self.config_maps(&object.namespace).await?;
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        api.patch(
            name,
            &params,
            &Patch::Merge(&restore_patch(&current, &snapshot, &read)),
        )
        .await
        .map_err(|e| match &e {
            kube::Error::Api(status) if status.code == 409 => written_meanwhile(name),
            _ => self.config_map_error(
                &e,
                &cluster,
                "patch",
                &object,
                "the ConfigMap may or may not have been written",
            ),
        })?;
        tracing::info!(backend = %self.name, configmap = %object, snapshot = snapshot.id, "restored the ConfigMap; restarting the Deployment");
        let restarted = self
            .restart(&deployment.namespace, &deployment.name)
            .await
            .map_err(|e| restart_failed(name, &call.to.version, &deployment, e))?;
        let handle = Handle {
            namespace: deployment.namespace.clone(),
            deployment: deployment.name.clone(),
            revision: call.to.version.clone(),
            template: restarted
                .spec
                .as_ref()
                .map(|spec| template_value(&spec.template))
                .unwrap_or(Value::Null),
            restored: Some(name.clone()),
        };
        Ok(Operation {
            target: call.target.clone(),
            to: call.to.clone(),
            started_at: Utc::now(),
            handle: serde_json::to_value(&handle).unwrap_or(Value::Null),
            finished: None,
        })
    }

    /// `kubectl rollout restart`: a new pod template annotation, so every pod is replaced.
    async fn restart(&self, namespace: &str, name: &str) -> Result<Deployment, BackendError> {
        let connection = self.connection().await?;
        let api: Api<Deployment> = Api::namespaced(connection.client.clone(), namespace);
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let patch =
            json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        api.patch(name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| {
                let deployment = self.deployment_named(namespace, name);
                self.kube_error(
                    &e,
                    connection,
                    "patch deployments",
                    &deployment,
                    Phase::Restart,
                )
            })
    }

    /// A failed ConfigMap call in the words the person needs, ending with `done`.
    fn config_map_error(
        &self,
        error: &kube::Error,
        cluster: &str,
        verb: &str,
        object: &ConfigObject,
        done: &str,
    ) -> BackendError {
        let backend = &self.name;
        let namespace = &object.namespace;
        match error {
            kube::Error::Api(status) => {
                let answer = format!(
                    "HTTP {} {}: {}",
                    status.code,
                    status.reason,
                    snippet(&status.message, 300)
                );
                let (kind, advice) = match status.code {
                    401 => (
                        BackendErrorKind::Unauthorized,
                        format!("renew the credentials of backends.{backend}"),
                    ),
                    403 => (
                        BackendErrorKind::Unauthorized,
                        format!(
                            "apply deploy/kubernetes/rbac.yaml in namespace {namespace} (get and \
                             patch on configmaps)"
                        ),
                    ),
                    404 => (
                        BackendErrorKind::NotFound,
                        format!("check `kubectl get configmaps -n {namespace}`"),
                    ),
                    429 | 500..=599 => (
                        BackendErrorKind::Unavailable,
                        format!(
                            "check the cluster and `kubectl get configmap {} -n {namespace} -o yaml`",
                            object.name
                        ),
                    ),
                    _ => (
                        BackendErrorKind::Refused,
                        "deal with the reason it gives (an admission policy, a validation error)"
                            .to_owned(),
                    ),
                };
                BackendError::new(
                    kind,
                    format!(
                        "the Kubernetes API at {cluster} refused to {verb} {object} ({answer}); {done}. Then {advice}, and ask for a fresh plan"
                    ),
                )
            }
            other => BackendError::new(
                BackendErrorKind::Unavailable,
                format!(
                    "could not {verb} {object} at {cluster} ({}); {done}. Check that the cluster \
                     is reachable from breakwater, then try again",
                    error_chain(other)
                ),
            ),
        }
    }
}

/// The Argo CD caveat of a restore: the next sync undoes it — for sure when the
/// Application syncs automatically, as a possibility when that is unknown.
fn autosync_caveat(name: &str, application: &str, automated: Option<bool>) -> Caveat {
    let message = if automated == Some(true) {
        format!(
            "ConfigMap {name} is managed by Argo CD application {application} with automated \
             sync: its next sync will undo a restore. Revert the change in Git too."
        )
    } else {
        format!(
            "ConfigMap {name} is managed by Argo CD application {application}: if it syncs \
             automatically, its next sync will undo a restore. Revert the change in Git too."
        )
    };
    Caveat {
        message,
        blocking: false,
        remedy: None,
    }
}

/// The data is written but the pods were not restarted. Never a conflict, whatever the
/// API server said: a conflict would make the bot offer the restore again, and the
/// ConfigMap already holds the restored data.
fn restart_failed(
    name: &str,
    state: &str,
    deployment: &super::DeploymentRef,
    error: BackendError,
) -> BackendError {
    let kind = match error.kind {
        BackendErrorKind::Conflict => BackendErrorKind::Refused,
        kind => kind,
    };
    BackendError::new(
        kind,
        format!(
            "ConfigMap {name} was written back to its state {state}, but its pods were not \
             restarted: restarting {deployment} failed ({}). They run the changed values until \
             they restart: run `kubectl rollout restart deployment/{} -n {}`",
            error.message, deployment.name, deployment.namespace
        ),
    )
}

/// The ConfigMap is not what the person was shown: nothing is written, a fresh offer
/// follows.
fn changed_since(name: &str, shown: &str, now: &str) -> BackendError {
    BackendError::new(
        BackendErrorKind::Conflict,
        format!(
            "ConfigMap {name} was changed again since the restore was offered (resourceVersion \
             {shown} then, {now} now); nothing was written. Look at the fresh offer, which \
             starts from what it holds now"
        ),
    )
}

/// The API server refused the write (409): someone wrote the ConfigMap between breakwater
/// reading it and writing it.
fn written_meanwhile(name: &str) -> BackendError {
    BackendError::new(
        BackendErrorKind::Conflict,
        format!(
            "ConfigMap {name} was changed by someone else while breakwater restored it (409 \
             Conflict); nothing was written. Look at the fresh offer, which starts from what it \
             holds now"
        ),
    )
}

fn store_error(error: &crate::store::StoreError) -> BackendError {
    BackendError::new(
        BackendErrorKind::Unavailable,
        format!("breakwater could not read its ConfigMap snapshots ({error}); nothing was written"),
    )
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::core::deploy::{DeploySource, DeployStatus, Environment, ServiceName};

    fn change(version: &str, source: DeploySource) -> Deploy {
        Deploy {
            target: Target::new(
                ServiceName::parse("checkout").expect("name"),
                Environment::parse("production").expect("name"),
            ),
            version: version.to_owned(),
            previous_version: None,
            revision: None,
            commit: None,
            author: None,
            description: None,
            url: None,
            started_at: Utc::now(),
            finished_at: None,
            status: DeployStatus::Succeeded,
            changes: Vec::new(),
            config_changes: Vec::new(),
            source,
        }
    }

    #[test]
    fn only_a_config_map_change_names_a_config_map_to_restore() {
        assert_eq!(
            changed_config_map(&change(
                "configmap/checkout-env@912",
                DeploySource::ConfigChange
            )),
            Some(("checkout-env", "912"))
        );
        assert_eq!(
            changed_config_map(&change("secret/db@913", DeploySource::ConfigChange)),
            None
        );
        assert_eq!(
            changed_config_map(&change("configmap/checkout-env@912", DeploySource::Api)),
            None
        );
    }

    #[test]
    fn the_restore_patch_sets_kept_keys_removes_new_ones_and_carries_the_version_read() {
        let current = ConfigMap {
            data: Some(BTreeMap::from([
                ("DB_POOL_SIZE".to_owned(), "2".to_owned()),
                ("ADDED_LATER".to_owned(), "x".to_owned()),
            ])),
            ..ConfigMap::default()
        };
        let snapshot = ConfigSnapshot {
            id: 7,
            object: ConfigObject {
                backend: "cluster".into(),
                namespace: "shop".into(),
                name: "checkout-env".into(),
            },
            resource_version: "911".into(),
            data: BTreeMap::from([("DB_POOL_SIZE".to_owned(), "20".to_owned())]),
            binary_data: BTreeMap::new(),
            taken_at: Utc::now(),
        };
        assert_eq!(
            restore_patch(&current, &snapshot, "915"),
            json!({
                "metadata": {"resourceVersion": "915"},
                "data": {"DB_POOL_SIZE": "20", "ADDED_LATER": null}
            })
        );
    }
}
