//! The Kubernetes API's refusals and failures about a Rollout in the words the on-call
//! engineer needs: what happened, whether anything changed, and what to fix.

use super::*;

impl ArgoRolloutsBackend {
    /// What a failed API call means for the person: which setting or permission to fix.
    pub(super) fn kube_error(
        &self,
        error: &kube::Error,
        connection: &Connection,
        what: &str,
        rollout: &RolloutRef,
        consequence: &str,
    ) -> BackendError {
        let name = &self.name;
        let namespace = &rollout.0.namespace;
        let kube::Error::Api(status) = error else {
            return BackendError::new(
                BackendErrorKind::Unavailable,
                format!(
                    "could not {what} at {} ({}); {consequence}. Check that the cluster is \
                     reachable from breakwater, then try again",
                    connection.cluster_url,
                    error_chain(error)
                ),
            );
        };
        let answer = format!(
            "HTTP {} {}: {}",
            status.code,
            status.reason,
            snippet(&status.message, 300)
        );
        let (kind, advice) = match status.code {
            401 => (
                BackendErrorKind::Unauthorized,
                format!("renew the credentials of backends.{name} (token, kubeconfig user)"),
            ),
            403 => (
                BackendErrorKind::Unauthorized,
                format!(
                    "apply deploy/kubernetes/rbac.yaml in namespace {namespace} (get, list, watch \
                     rollouts and replicasets; patch rollouts and rollouts/status)"
                ),
            ),
            404 => (
                BackendErrorKind::NotFound,
                format!(
                    "check the service's namespace and rollout settings against `kubectl get \
                     rollouts.argoproj.io -n {namespace}` (is Argo Rollouts installed?)"
                ),
            ),
            409 => (
                BackendErrorKind::Conflict,
                format!(
                    "someone else changed {rollout} at the same moment; check `kubectl argo \
                     rollouts get rollout {} -n {namespace}`, then ask for a fresh plan",
                    rollout.0.name
                ),
            ),
            429 | 500..=599 => (
                BackendErrorKind::Unavailable,
                "check the cluster, then try again".to_owned(),
            ),
            _ => (
                BackendErrorKind::Refused,
                "deal with the reason it gives, then ask for a fresh plan".to_owned(),
            ),
        };
        BackendError::new(
            kind,
            format!(
                "the Kubernetes API would not {what} for {rollout} ({answer}); {consequence}. To fix: {advice}"
            ),
        )
    }
}
