//! Configuration changes of the workloads Argo CD manages, where breakwater can reach the
//! cluster (`watch_config = true` with the Kubernetes backend's `kubeconfig` and
//! `context`).
//!
//! Each service's workloads are the Deployments, StatefulSets and DaemonSets its
//! Application lists in `status.resources`, read through the Argo CD API; their pod
//! templates' ConfigMaps and Secrets are watched by the Kubernetes backend's watcher, and a
//! ConfigMap changed in place is restored by its Restore, restarting the Deployment that
//! reads it. The list is read when the watch starts: a workload added to an Application
//! later is watched after the next restart.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{AppRef, ArgoCdBackend, Phase};
use crate::backends::kubernetes::config_watch::{
    ConfigChangeSink, Workload, WorkloadKind, WorkloadSource, changed_config_map,
};
use crate::backends::kubernetes::{DeploymentRef, KubernetesBackend, VersionFrom};
use crate::config::{KubernetesBackendConfig, ServiceConfig};
use crate::core::backend::{
    BackendError, BackendErrorKind, DeployBackend, Operation, Outcome, ProgressFn, RestoreOffer,
    RollbackCall,
};
use crate::core::deploy::{Deploy, Environment, ServiceName, Target};

/// Where a restore's Kubernetes handle sits in the Argo CD backend's operation handle.
pub(super) const RESTORE_HANDLE: &str = "restore";

/// The cluster behind an Argo CD backend: a Kubernetes backend of the same name (so its
/// snapshots and audit entries carry the Argo CD backend's name), used only for watching
/// and restoring configuration.
pub(super) struct Cluster {
    kube: Arc<KubernetesBackend>,
}

impl Cluster {
    /// `None` without `watch_config`; a kubeconfig or context that cannot be used fails
    /// here, naming its key.
    pub(super) fn new(
        name: &str,
        config: Option<&KubernetesBackendConfig>,
        services: &[ServiceConfig],
    ) -> Result<Option<Self>, crate::backends::BuildError> {
        let Some(config) = config else {
            return Ok(None);
        };
        let kube = KubernetesBackend::new(name, config, services)?;
        Ok(Some(Self {
            kube: Arc::new(kube),
        }))
    }
}

/// The targets an Argo CD backend serves, from the configured services.
fn targets(backend: &str, services: &HashMap<ServiceName, ServiceConfig>) -> Vec<Target> {
    let mut targets: Vec<Target> = services
        .values()
        .flat_map(|service| {
            service
                .environments
                .iter()
                .filter(|env| service.backend_for(env) == Some(backend))
                .map(|env: &Environment| Target::new(service.name.clone(), env.clone()))
        })
        .collect();
    targets.sort_by_key(ToString::to_string);
    targets
}

/// The Applications' workloads, read through the Argo CD API.
struct AppWorkloads(Arc<ArgoCdBackend>);

#[async_trait]
impl WorkloadSource for AppWorkloads {
    async fn workloads(&self) -> Result<Vec<(Target, Workload)>, String> {
        let backend = &self.0;
        let mut found = Vec::new();
        for target in targets(&backend.name, &backend.services) {
            let app = backend.app_ref(&target);
            match backend.workloads_of(&app).await {
                Ok(workloads) => {
                    found.extend(workloads.into_iter().map(|w| (target.clone(), w)));
                }
                // One missing Application must not keep the others unwatched.
                Err(error) if error.kind == BackendErrorKind::NotFound => {
                    tracing::warn!(backend = %backend.name, %app, %error, "not watching the configuration of an application Argo CD does not know");
                }
                Err(error) => return Err(error.message),
            }
        }
        Ok(found)
    }
}

impl ArgoCdBackend {
    /// The Kubernetes side, for the registry to hand it the snapshot store.
    pub fn kubernetes(&self) -> Option<Arc<KubernetesBackend>> {
        self.cluster.as_ref().map(|c| Arc::clone(&c.kube))
    }

    /// Builds the cluster connection now, so that a setting that cannot work stops
    /// start-up with one message naming its key rather than a warning much later.
    pub async fn check_cluster(&self) -> Result<(), crate::backends::BuildError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        cluster.kube.connection().await.map(|_| ()).map_err(|e| {
            crate::backends::BuildError::Kubeconfig {
                name: self.name.clone(),
                key: "watch_config",
                reason: format!(
                    "the cluster cannot be reached with these settings: {}. Set kubeconfig \
                     (and context) to a cluster breakwater can reach, or watch_config = false",
                    e.message
                        .trim_end_matches("; nothing was changed")
                        .trim_end_matches('.')
                ),
            }
        })
    }

    /// Watches the ConfigMaps and Secrets of every Application's workloads until `stop`;
    /// returns at once without `watch_config`.
    pub async fn watch_config(
        self: Arc<Self>,
        sink: Arc<dyn ConfigChangeSink>,
        stop: CancellationToken,
    ) {
        let Some(kube) = self.kubernetes() else {
            return;
        };
        let source = AppWorkloads(Arc::clone(&self));
        kube.watch_config_of(&source, sink, stop).await;
    }

    /// The workloads an Application manages, from its `status.resources`.
    async fn workloads_of(&self, app: &AppRef) -> Result<Vec<Workload>, BackendError> {
        let application = self.get_app(app, Phase::Read).await?;
        Ok(application
            .status
            .resources
            .iter()
            .filter_map(|r| {
                Some(Workload {
                    kind: WorkloadKind::parse(&r.kind)?,
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                })
            })
            .collect())
    }

    /// The Deployment of the target's Application that reads ConfigMap `name` (in
    /// `namespace` when known): the one a restore restarts; with the Application's name and
    /// whether it syncs automatically when it manages the ConfigMap itself.
    async fn restored_deployment(
        &self,
        target: &Target,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<(Workload, Option<(String, bool)>)>, BackendError> {
        let Some(cluster) = &self.cluster else {
            return Ok(None);
        };
        let app = self.app_ref(target);
        let application = self.get_app(&app, Phase::Read).await?;
        let workloads: Vec<Workload> = application
            .status
            .resources
            .iter()
            .filter(|r| namespace.is_none_or(|ns| r.namespace == ns))
            .filter_map(|r| {
                Some(Workload {
                    kind: WorkloadKind::parse(&r.kind)?,
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                })
            })
            .collect();
        let reading = cluster
            .kube
            .deployments_reading(&workloads, name)
            .await
            .map_err(|e| {
                BackendError::new(
                    BackendErrorKind::Unavailable,
                    format!(
                        "could not read the Deployments of {app} in the cluster ({e}); nothing \
                         was written. Check backends.{}.kubeconfig and that the cluster is \
                         reachable",
                        self.name
                    ),
                )
            })?;
        let Some(deployment) = reading.into_iter().next() else {
            return Ok(None);
        };
        // Argo CD puts the ConfigMap back at its next automated sync when the Application
        // manages the ConfigMap itself; otherwise its tracking annotation may still name one.
        let managed = application.status.resources.iter().any(|r| {
            r.kind == "ConfigMap" && r.name == name && r.namespace == deployment.namespace
        });
        let automated = application
            .spec
            .sync_policy
            .as_ref()
            .is_some_and(|p| p.automated.is_some());
        Ok(Some((deployment, managed.then_some((app.name, automated)))))
    }

    /// The restore to offer for a ConfigMap changed in place under one of the target's
    /// Deployments.
    pub(super) async fn cluster_restore_offer(
        &self,
        target: &Target,
        change: &Deploy,
    ) -> Result<Option<RestoreOffer>, BackendError> {
        let Some(cluster) = &self.cluster else {
            return Ok(None);
        };
        let Some((name, _)) = changed_config_map(change) else {
            return Ok(None);
        };
        let Some((deployment, app)) = self.restored_deployment(target, None, name).await? else {
            return Ok(None);
        };
        let app = app
            .as_ref()
            .map(|(name, automated)| (name.as_str(), *automated));
        cluster
            .kube
            .offer_restore_in(&deployment.namespace, change, app)
            .await
    }

    /// Writes the kept state back and restarts the Deployment reading it.
    pub(super) async fn restore_config(
        &self,
        call: &RollbackCall,
    ) -> Result<Operation, BackendError> {
        let Some(cluster) = &self.cluster else {
            return Err(BackendError::unsupported(format!(
                "backends.{} does not watch its cluster (watch_config = false), so it cannot \
                 restore a ConfigMap; nothing was written",
                self.name
            )));
        };
        let snapshot = cluster.kube.planned_snapshot(call).await?;
        let object = &snapshot.object;
        let Some((deployment, ..)) = self
            .restored_deployment(&call.target, Some(&object.namespace), &object.name)
            .await?
        else {
            return Err(BackendError::new(
                BackendErrorKind::NotFound,
                format!(
                    "no Deployment of the Argo CD application of {} reads ConfigMap {} any \
                     more; nothing was written. Ask for a fresh plan",
                    call.target, object
                ),
            ));
        };
        let deployment = DeploymentRef {
            namespace: deployment.namespace,
            name: deployment.name,
            version_from: VersionFrom::Image,
        };
        let mut operation = cluster.kube.restore_and_restart(call, &deployment).await?;
        operation.handle = json!({ RESTORE_HANDLE: operation.handle });
        Ok(operation)
    }

    /// Follows a restore's restart as the Kubernetes backend follows it.
    pub(super) async fn wait_restore(
        &self,
        operation: &Operation,
        handle: &Value,
        progress: ProgressFn<'_>,
    ) -> Result<Outcome, BackendError> {
        let Some(cluster) = &self.cluster else {
            return Err(BackendError::unsupported(format!(
                "backends.{} no longer watches its cluster (watch_config = false), so breakwater \
                 cannot follow the restart of this restore; check it with `kubectl rollout \
                 status`",
                self.name
            )));
        };
        let inner = Operation {
            handle: handle.clone(),
            ..operation.clone()
        };
        cluster.kube.wait(&inner, progress).await
    }
}
