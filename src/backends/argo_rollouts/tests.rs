//! The canary weight read from a Rollout's status and steps, with and without a traffic router.

use super::*;

fn rollout(value: Value) -> DynamicObject {
    serde_json::from_value(value).expect("rollout")
}

#[test]
fn the_canary_weight_is_the_last_set_weight_step_reached_without_a_traffic_router() {
    let object = rollout(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "orders", "generation": 3},
        "spec": {"strategy": {"canary": {"steps": [
            {"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "5m"}}
        ]}}},
        "status": {"phase": "Paused", "currentStepIndex": 1, "observedGeneration": "3"}
    }));
    let state = State::of(&object);
    assert_eq!(state.weight(), Some(20));
    assert!(state.observed);
    assert_eq!(state.phase, "Paused");
}

#[test]
fn a_traffic_router_weight_wins_over_the_steps() {
    let object = rollout(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "orders", "generation": 3},
        "spec": {"strategy": {"canary": {"steps": [{"setWeight": 20}]}}},
        "status": {"currentStepIndex": 0, "observedGeneration": "2",
            "canary": {"weights": {"canary": {"weight": 5}}}}
    }));
    let state = State::of(&object);
    assert_eq!(state.weight(), Some(5));
    assert!(!state.observed, "generation 3 is not observed yet");
}
