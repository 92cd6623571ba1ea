//! The Kubernetes API's refusals and failures in the words the on-call engineer needs:
//! what happened, whether anything changed, and what to fix (credentials, RBAC, names).

use super::{Connection, DeploymentRef, KubernetesBackend, Phase};
use crate::backends::toolkit::{error_chain, snippet};
use crate::core::backend::{BackendError, BackendErrorKind};

impl KubernetesBackend {
    /// What a failed API call means for the person: which setting or permission to fix,
    /// and whether anything was changed.
    pub(super) fn kube_error(
        &self,
        error: &kube::Error,
        connection: &Connection,
        what: &str,
        deployment: &DeploymentRef,
        phase: Phase,
    ) -> BackendError {
        let done = phase.consequence();
        let name = &self.name;
        let namespace = &deployment.namespace;
        match error {
            kube::Error::Api(status) => {
                let said = snippet(&status.message, 300);
                let answer = format!("HTTP {} {}: {said}", status.code, status.reason);
                let (kind, message) = match status.code {
                    401 => (
                        BackendErrorKind::Unauthorized,
                        format!(
                            "the Kubernetes API at {} rejected breakwater's credentials ({answer}); \
                             {done}. Renew the credentials of backends.{name} (token, \
                             kubeconfig user), then try again",
                            connection.cluster_url
                        ),
                    ),
                    403 => (
                        BackendErrorKind::Unauthorized,
                        format!(
                            "breakwater may not {what} in namespace {namespace} ({answer}); {done}. \
                             Apply deploy/kubernetes/rbac.yaml for that namespace (get, list, \
                             watch deployments and replicasets; patch deployments), then try again"
                        ),
                    ),
                    404 => (
                        BackendErrorKind::NotFound,
                        format!(
                            "there is no {deployment} ({answer}); {done}. Check the service's \
                             namespace and deployment settings against `kubectl get deployments \
                             -n {namespace}`"
                        ),
                    ),
                    409 => (
                        BackendErrorKind::Conflict,
                        format!(
                            "someone else changed {deployment} at the same moment ({answer}); \
                             {done}. Check `kubectl rollout history deployment/{} -n {namespace}` \
                             to see what runs now, then ask for a fresh plan",
                            deployment.name
                        ),
                    ),
                    429 | 500..=599 => (
                        BackendErrorKind::Unavailable,
                        format!(
                            "the Kubernetes API failed to {what} ({answer}); {}. Check the cluster \
                             and `kubectl rollout status deployment/{} -n {namespace}` before \
                             retrying",
                            if phase == Phase::Patch {
                                "the rollback may or may not have been applied"
                            } else {
                                done
                            },
                            deployment.name
                        ),
                    ),
                    _ => (
                        BackendErrorKind::Refused,
                        format!(
                            "the Kubernetes API refused to {what} ({answer}); {done}. Deal with \
                             the reason it gives (an admission policy, a validation error), then \
                             ask for a fresh plan"
                        ),
                    ),
                };
                BackendError::new(kind, message)
            }
            kube::Error::SerdeError(e) => BackendError::new(
                BackendErrorKind::Protocol,
                format!(
                    "the Kubernetes API at {} answered something breakwater cannot read while \
                     trying to {what} ({e}); {done}. Check that backends.{name} points at a \
                     Kubernetes API server",
                    connection.cluster_url
                ),
            ),
            other => BackendError::new(
                BackendErrorKind::Unavailable,
                format!(
                    "could not {what} at {} ({}); {}. Check that the cluster is reachable from \
                     breakwater, then try again",
                    connection.cluster_url,
                    error_chain(other),
                    if phase == Phase::Patch {
                        "the rollback may or may not have been applied"
                    } else {
                        done
                    }
                ),
            ),
        }
    }
}
