//! The demo's Flagger canary: a storefront run in analysis, and Flagger played in-process
//! (taking the armed rollback and reporting the canary Failed) so a newcomer sees Roll
//! back canary end to end without a cluster.

use super::*;

/// The service deployed by a Flagger Canary (`flagger_canary` in `config/demo.toml`), its
/// Canary, the run in its analysis and the one the primary serves.
pub(super) const FLAGGER: (&str, &str) = ("storefront", "production");
pub(super) const FLAGGER_CANARY: (&str, &str) = ("shop", "storefront");
pub(super) const FLAGGER_RUN: &str = "7c4f9e2a1b";
pub(super) const FLAGGER_PRIMARY: &str = "3e8d1c5f60";

/// The Canary's runs, as Flagger's event webhook records them: one promoted a day ago, one
/// in its analysis at 30 % of the traffic.
pub(super) async fn seed_flagger_canary(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let target = Target::new(name(FLAGGER.0)?, env(FLAGGER.1)?);
    for (version, minutes_ago, status, description) in [
        (
            FLAGGER_PRIMARY,
            26 * 60,
            DeployStatus::Succeeded,
            "canary promoted by Flagger",
        ),
        (
            FLAGGER_RUN,
            9,
            DeployStatus::Started,
            "canary Progressing, 30 % of traffic",
        ),
    ] {
        store
            .record_deploy(&flagger_run(
                &target,
                version,
                now,
                minutes_ago,
                status,
                description,
            ))
            .await?;
    }
    Ok(())
}

pub(super) fn flagger_run(
    target: &Target,
    version: &str,
    now: DateTime<Utc>,
    minutes_ago: i64,
    status: DeployStatus,
    description: &str,
) -> Deploy {
    let started_at = now - chrono::Duration::minutes(minutes_ago);
    Deploy {
        target: target.clone(),
        version: version.to_owned(),
        previous_version: None,
        revision: None,
        commit: None,
        author: Some(crate::core::bot::FLAGGER_AUTHOR.to_owned()),
        description: Some(description.to_owned()),
        url: None,
        started_at,
        finished_at: (status != DeployStatus::Started)
            .then_some(started_at + chrono::Duration::minutes(12)),
        status,
        changes: Vec::new(),
        config_changes: Vec::new(),
        source: DeploySource::Api,
    }
}

/// Flagger's part, simulated: when a press armed the rollback request, its next analysis
/// iteration takes it (through the store function the rollback hook uses, audited as the
/// hook does), and a moment later it reports the canary `Failed`.
pub(super) async fn play_flagger(bot: Bot) {
    let (namespace, canary) = FLAGGER_CANARY;
    let mut every = tokio::time::interval(Duration::from_secs(2));
    let taken = loop {
        every.tick().await;
        match bot
            .store()
            .take_canary_rollback(namespace, canary, Utc::now())
            .await
        {
            Ok(Some(taken)) => break taken,
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "demo: cannot read the canary rollback request"),
        }
    };
    let audit = bot.audit();
    let entry = audit
        .entry(actions::CANARY_ROLLBACK_TAKEN)
        .details(serde_json::json!({
            "namespace": taken.namespace,
            "canary": taken.name,
            "plan": taken.plan_id,
            "requested_by": taken.requested_by,
            "phase": "Progressing",
        }));
    if let Err(error) = audit.append(entry).await {
        tracing::warn!(%error, "demo: cannot audit the simulated hook call");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (Ok(service), Ok(environment)) = (name(FLAGGER.0), env(FLAGGER.1)) else {
        return;
    };
    let target = Target::new(service, environment);
    let run = match bot
        .store()
        .latest_deploy_of_version(&target, FLAGGER_RUN)
        .await
    {
        Ok(Some(run)) => run,
        _ => return,
    };
    let failed = Deploy {
        status: DeployStatus::Failed,
        finished_at: Some(Utc::now()),
        ..run
    };
    match bot.store().record_deploy(&failed).await {
        Ok(recorded) => {
            let description = "canary failed: Flagger rolled it back to the primary";
            if let Err(error) = bot
                .store()
                .set_deploy_description(recorded.id, description)
                .await
            {
                tracing::warn!(%error, "demo: cannot describe the failed canary");
            }
        }
        Err(error) => tracing::warn!(%error, "demo: cannot record the failed canary"),
    }
}

pub(super) fn flagger_alert(target: &Target, status: AlertStatus, now: DateTime<Utc>) -> Alert {
    let description = format!(
        "5xx rate of {target} is 6.1 % over the last 5 minutes (threshold 1 %), since the \
         Flagger canary took 30 % of the traffic."
    );
    demo_alert(target, "HighErrorRate", description, status, now)
}
