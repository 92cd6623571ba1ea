//! Aborting a canary as `kubectl argo rollouts abort` does it, and following the abort until
//! the stable ReplicaSet serves all traffic again.

use super::*;

impl ArgoRolloutsBackend {
    /// Sets `status.abort` as `kubectl argo rollouts abort` does: a JSON merge patch on the
    /// status subresource, or on the Rollout itself where the CRD has none (a 404 there),
    /// carrying the `resourceVersion` read just before so that a write in between (the
    /// controller moving to the next step) refuses it with a 409.
    pub(super) async fn patch_abort(
        &self,
        rollout: &RolloutRef,
        object: &DynamicObject,
    ) -> Result<(), BackendError> {
        let connection = self.cluster.connection().await?;
        let patch = json!({
            "metadata": {
                "resourceVersion": object.metadata.resource_version.clone().unwrap_or_default(),
            },
            "status": { "abort": true },
        });
        let api: Api<DynamicObject> = Api::namespaced_with(
            connection.client.clone(),
            &rollout.0.namespace,
            &rollout_resource(),
        );
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let consequence = "the abort may or may not have been applied";
        let result = match api
            .patch_status(&rollout.0.name, &params, &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 404 => {
                api.patch(&rollout.0.name, &params, &Patch::Merge(&patch))
                    .await
            }
            other => other,
        };
        result.map(|_| ()).map_err(|e| {
            self.kube_error(
                &e,
                connection,
                "patch rollouts/status",
                rollout,
                consequence,
            )
        })
    }

    /// Starts an abort: checks that the Rollout still rolls out the offered canary over the
    /// offered stable revision, then patches `status.abort`.
    pub(super) async fn abort(&self, call: &RollbackCall) -> Result<Operation, BackendError> {
        let rollout = self.rollout_ref(&call.target);
        let object = self.get_rollout(&rollout, "nothing was aborted").await?;
        let revisions = self.revisions(&rollout, &object).await?;
        let state = State::of(&object);
        let running = current_revision_number(&object, &revisions).map(|r| r.to_string());
        let stable = revisions
            .iter()
            .find(|r| Some(&r.hash) == state.stable_hash.as_ref());
        let look = format!(
            "Check `kubectl argo rollouts get rollout {} -n {}`",
            rollout.0.name, rollout.0.namespace
        );
        if running.as_deref() != Some(call.from.id.as_str())
            || stable.map(|s| s.set.revision.to_string()).as_deref() != Some(call.to.id.as_str())
        {
            return Err(BackendError::new(
                BackendErrorKind::Conflict,
                format!(
                    "{rollout} no longer rolls out revision {} over the stable revision {} (it now has revision {}, stable {}); nothing was aborted. {look}, then ask for a fresh plan",
                    call.from.id,
                    call.to.id,
                    running.unwrap_or_else(|| "?".to_owned()),
                    stable.map_or("?".to_owned(), |s| s.set.revision.to_string()),
                ),
            ));
        }
        let (Some(stable), Some(canary_hash)) = (stable, state.current_hash.clone()) else {
            return Err(BackendError::new(
                BackendErrorKind::Protocol,
                format!(
                    "{rollout} reports no stable or current ReplicaSet, so breakwater cannot tell where traffic would go; nothing was aborted. {look}"
                ),
            ));
        };
        if !state.aborted && !state.abortable() {
            return Err(BackendError::new(
                BackendErrorKind::Refused,
                format!(
                    "{rollout} is not rolling out a canary any more ({} is stable); nothing was aborted. Ask for a fresh plan to roll back instead",
                    call.from.version
                ),
            ));
        }
        // Already aborted (by its analysis or by hand): nothing to write, only to follow.
        if !state.aborted {
            self.patch_abort(&rollout, &object).await?;
        }
        tracing::info!(backend = %self.name, %rollout, aborted_before = state.aborted, "aborting the Rollout; following it");
        let handle = AbortHandle {
            namespace: rollout.0.namespace.clone(),
            rollout: rollout.0.name.clone(),
            stable_hash: stable.hash.clone(),
            stable_version: call.to.version.clone(),
            canary_hash,
            canary_version: call.from.version.clone(),
            template: rollout_template(&object),
        };
        Ok(Operation {
            target: call.target.clone(),
            to: call.to.clone(),
            started_at: Utc::now(),
            handle: serde_json::to_value(&handle).unwrap_or(Value::Null),
            finished: None,
        })
    }

    /// Follows an abort until the stable ReplicaSet serves all traffic: the traffic
    /// router's canary weight at 0 (or, without one, no canary pod available) and every
    /// desired pod of the stable ReplicaSet available.
    pub(super) async fn wait_abort(
        &self,
        handle: &AbortHandle,
        progress: ProgressFn<'_>,
    ) -> Result<Outcome, BackendError> {
        let rollout = RolloutRef(DeploymentRef {
            namespace: handle.namespace.clone(),
            name: handle.rollout.clone(),
            version_from: VersionFrom::Image,
        });
        let follow = Follow {
            backend: &self.name,
            subject: &rollout,
            every: self.poll_interval,
            within: self.timeout,
            tolerated_read_failures: FOLLOW_READ_FAILURES,
        };
        let look = format!(
            "check `kubectl argo rollouts get rollout {} -n {}`",
            rollout.0.name, rollout.0.namespace
        );
        let (canary, stable) = (&handle.canary_version, &handle.stable_version);
        follow
            .until(
                progress,
                || async {
                    let object = self
                        .get_rollout(&rollout, "the abort may still be under way")
                        .await?;
                    if rollout_template(&object) != handle.template {
                        return Ok(Look::Done(Outcome::Failed(format!(
                            "{rollout} got a new template while the abort of {canary} was followed: someone deployed or rolled back since; {look} to see what runs now"
                        ))));
                    }
                    let state = State::of(&object);
                    if !state.aborted {
                        return Ok(Look::Done(Outcome::Failed(format!(
                            "the abort of {canary} on {rollout} was lifted (retried or promoted) before all traffic was back on {stable}; the rollout of {canary} goes on. {look}"
                        ))));
                    }
                    let revisions = self.revisions(&rollout, &object).await?;
                    let available = |hash: &str| {
                        revisions
                            .iter()
                            .find(|r| r.hash == hash)
                            .map_or(0, |r| r.available)
                    };
                    let stable_pods = available(&handle.stable_hash);
                    let canary_pods = available(&handle.canary_hash);
                    Ok(match state.canary_weight {
                        Some(weight) if weight > 0 => Look::running(format!(
                            "{weight} % of traffic still goes to the canary {canary}"
                        )),
                        _ if stable_pods < state.desired => Look::running(format!(
                            "{stable_pods} of {} pods of the stable {stable} available",
                            state.desired
                        )),
                        None if canary_pods > 0 => Look::running(format!(
                            "{canary_pods} pods of the canary {canary} still serve traffic"
                        )),
                        _ => Look::Done(Outcome::Succeeded(format!(
                            "{rollout}: the stable ReplicaSet ({stable}) serves all traffic with {stable_pods} of {} pods available, the canary {canary} gets none",
                            state.desired
                        ))),
                    })
                },
                |last| {
                    BackendError::new(
                        BackendErrorKind::Timeout,
                        format!(
                            "the abort of {canary} on {rollout} did not bring all traffic back to {stable} within {}{}; the Rollout is aborted, but {look} before acting again",
                            humantime::format_duration(self.timeout),
                            last.map(|l| format!(" (last seen: {l})"))
                                .unwrap_or_default(),
                        ),
                    )
                },
            )
            .await
    }
}
