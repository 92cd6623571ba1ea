//! Built without the `kubernetes` feature: an Argo CD backend cannot reach its cluster, so
//! `watch_config = true` is refused at start-up and no restore is offered.

use serde_json::Value;

use super::ArgoCdBackend;
use crate::config::{KubernetesBackendConfig, ServiceConfig};
use crate::core::backend::{
    BackendError, Operation, Outcome, ProgressFn, RestoreOffer, RollbackCall,
};
use crate::core::deploy::{Deploy, Target};

/// Where a restore's handle would sit; no restore is ever started here.
pub(super) const RESTORE_HANDLE: &str = "restore";

/// Never built: without the feature there is no cluster client.
pub(super) enum Cluster {}

impl Cluster {
    pub(super) fn new(
        name: &str,
        config: Option<&KubernetesBackendConfig>,
        _services: &[ServiceConfig],
    ) -> Result<Option<Self>, crate::backends::BuildError> {
        match config {
            None => Ok(None),
            Some(_) => Err(crate::backends::BuildError::Kubeconfig {
                name: name.to_owned(),
                key: "watch_config",
                reason: "this breakwater was built without the kubernetes feature, so it cannot \
                         watch the cluster; set watch_config = false"
                    .to_owned(),
            }),
        }
    }
}

impl ArgoCdBackend {
    pub(super) async fn cluster_restore_offer(
        &self,
        _target: &Target,
        _change: &Deploy,
    ) -> Result<Option<RestoreOffer>, BackendError> {
        // `Cluster` has no values here: there is never a cluster to restore in.
        match &self.cluster {
            None => Ok(None),
            Some(cluster) => match *cluster {},
        }
    }

    pub(super) async fn restore_config(
        &self,
        _call: &RollbackCall,
    ) -> Result<Operation, BackendError> {
        Err(BackendError::unsupported(
            "this breakwater was built without the kubernetes feature, so it cannot restore a \
             ConfigMap; nothing was written",
        ))
    }

    pub(super) async fn wait_restore(
        &self,
        _operation: &Operation,
        _handle: &Value,
        _progress: ProgressFn<'_>,
    ) -> Result<Outcome, BackendError> {
        Err(BackendError::unsupported(
            "this breakwater was built without the kubernetes feature, so it cannot follow the \
             restart of a restore; check it with `kubectl rollout status`",
        ))
    }
}
