//! When a Deployment's running pods started, so a summary can say whether a ConfigMap or
//! Secret changed in place has reached them: containers read environment variables from
//! them only when they start. Needs `list` on `pods` in the service's namespace.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::{DeploymentRef, KubernetesBackend, Phase, selector_of};
use crate::core::backend::BackendError;

/// Start times further ahead than this are not believed (a skewed node clock).
const FUTURE_SLACK: chrono::Duration = chrono::Duration::minutes(5);

impl KubernetesBackend {
    /// The start of each running pod of the Deployment: when its containers' current runs
    /// started (a restarted container reads its environment again), the earliest of them
    /// when it has several, so a pod counts as started after a change only when all its
    /// containers are. Pods on their way out (a deletion timestamp) do not count.
    pub(super) async fn pods_started(
        &self,
        deployment: &DeploymentRef,
    ) -> Result<Vec<DateTime<Utc>>, BackendError> {
        let object = self.get_deployment(deployment, Phase::Read).await?;
        let connection = self.connection().await?;
        let api: Api<Pod> = Api::namespaced(connection.client.clone(), &deployment.namespace);
        let mut params = ListParams::default();
        let selector = selector_of(&object);
        if !selector.is_empty() {
            params = params.labels(&selector);
        }
        let pods = api
            .list(&params)
            .await
            .map_err(|e| self.kube_error(&e, connection, "list pods", deployment, Phase::Read))?;
        let now = Utc::now();
        Ok(pods
            .items
            .iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .filter_map(|pod| pod_started(pod, now))
            .collect())
    }
}

/// When a running pod's containers last started, if it runs and the time is believable.
fn pod_started(pod: &Pod, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let time = |t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| {
        DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().unsigned_abs())
    };
    let containers: Vec<DateTime<Utc>> = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .filter_map(time)
        .collect();
    let started = match containers.iter().min() {
        Some(first) => *first,
        None => status.start_time.as_ref().and_then(time)?,
    };
    (started <= now + FUTURE_SLACK).then_some(started)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("pod")
    }

    #[test]
    fn a_pod_counts_as_started_when_its_earliest_running_container_started() {
        let now = Utc::now();
        let started = pod_started(
            &pod(json!({"status": {
                "phase": "Running",
                "startTime": "2026-12-03T08:00:00Z",
                "containerStatuses": [
                    {"name": "app", "image": "a", "imageID": "", "ready": true, "restartCount": 1,
                     "state": {"running": {"startedAt": "2026-12-03T08:30:00Z"}}},
                    {"name": "proxy", "image": "p", "imageID": "", "ready": true, "restartCount": 0,
                     "state": {"running": {"startedAt": "2026-12-03T08:01:00Z"}}}
                ]
            }})),
            now,
        );
        assert_eq!(
            started.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-12-03T08:01:00+00:00")
        );
    }

    #[test]
    fn pending_pods_and_far_future_times_do_not_count() {
        let now = Utc::now();
        assert_eq!(
            pod_started(
                &pod(json!({"status": {"phase": "Pending", "startTime": "2026-12-03T08:00:00Z"}})),
                now
            ),
            None
        );
        assert_eq!(
            pod_started(
                &pod(json!({"status": {"phase": "Running", "startTime": "2999-01-01T00:00:00Z"}})),
                now
            ),
            None
        );
    }
}
