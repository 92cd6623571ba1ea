//! `kubectl rollout status`'s rules and the version a revision is known by, on hand-built objects.

use super::revisions::version_of;
use super::*;

fn deployment(value: Value) -> Deployment {
    serde_json::from_value(value).expect("deployment")
}

#[test]
fn rollout_status_follows_kubectl_rules() {
    let base = |status: Value| {
        deployment(json!({
            "metadata": {"name": "checkout", "generation": 4},
            "spec": {"replicas": 3, "selector": {}, "template": {}},
            "status": status,
        }))
    };
    assert!(matches!(
        rollout_status(&base(json!({"observedGeneration": 3}))),
        Rollout::Progressing(line) if line.contains("to be observed")
    ));
    assert_eq!(
        rollout_status(&base(
            json!({"observedGeneration": 4, "updatedReplicas": 1, "replicas": 3})
        )),
        Rollout::Progressing("1 of 3 new replicas have been updated".into())
    );
    assert_eq!(
        rollout_status(&base(
            json!({"observedGeneration": 4, "updatedReplicas": 3, "replicas": 4})
        )),
        Rollout::Progressing("1 old replicas are pending termination".into())
    );
    assert_eq!(
        rollout_status(&base(
            json!({"observedGeneration": 4, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2})
        )),
        Rollout::Progressing("2 of 3 updated replicas are available".into())
    );
    assert!(matches!(
        rollout_status(&base(
            json!({"observedGeneration": 4, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3})
        )),
        Rollout::Complete(_)
    ));
    assert_eq!(
        rollout_status(&base(json!({"observedGeneration": 4, "conditions": [{
            "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"checkout-5d\" has timed out progressing."}]}))),
        Rollout::DeadlineExceeded("ReplicaSet \"checkout-5d\" has timed out progressing.".into())
    );
}

#[test]
fn images_name_their_version_unless_a_label_is_configured() {
    let set = RevisionSet {
        revision: 3,
        first_revision: 3,
        name: "checkout-abc".into(),
        created: None,
        template: json!({
            "metadata": {"labels": {"app.kubernetes.io/version": "2026.11.1"}},
            "spec": {"containers": [
                {"name": "proxy", "image": "envoy:1.30"},
                {"name": "checkout", "image": "ghcr.io/acme/checkout:v1.4.0"}
            ]}
        }),
        annotations: BTreeMap::new(),
    };
    let mut deployment = DeploymentRef {
        namespace: "shop".into(),
        name: "checkout".into(),
        version_from: VersionFrom::Image,
    };
    assert_eq!(version_of(&set, &deployment), "v1.4.0");
    deployment.version_from = VersionFrom::parse(Some("label:app.kubernetes.io/version"));
    assert_eq!(version_of(&set, &deployment), "2026.11.1");
}
