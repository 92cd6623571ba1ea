use super::*;

#[test]
fn the_embedded_configuration_is_valid_with_three_simulated_services() {
    let config = Config::parse(DEMO_CONFIG).expect("valid demo configuration");
    assert_eq!(config.services.len(), 4);
    assert!(config.console.enabled);
    assert!(
        config
            .backends
            .values()
            .all(|backend| backend.kind() == "simulated")
    );
}

#[tokio::test]
async fn the_history_makes_the_latest_finished_deploy_the_incident_beside_a_canary() {
    let store = Arc::new(
        crate::store::SqliteStore::connect("sqlite::memory:")
            .await
            .expect("store"),
    );
    let audit = AuditLog::new(
        store.clone(),
        crate::audit::AuditSealer::new(None),
        Arc::new(SystemClock),
    );
    let now = Utc::now();
    let incident = seed_history(&*store, &audit, now).await.expect("seed");
    assert_eq!(incident.to_string(), "checkout production");
    let newest = store
        .deploys(&DeployQuery {
            limit: 1,
            ..DeployQuery::default()
        })
        .await
        .expect("deploys");
    assert_eq!(
        newest[0].target.to_string(),
        "search production",
        "the canary is the newest deploy, still rolling out"
    );
    assert!(newest[0].is_in_progress());
    let latest = store
        .deploys(&DeployQuery {
            service: Some(incident.service.clone()),
            environment: Some(incident.environment.clone()),
            limit: 1,
            ..DeployQuery::default()
        })
        .await
        .expect("deploys");
    let newest = latest;
    assert!(!newest[0].config_changes.is_empty());
    assert_eq!(
        newest[0]
            .config_changes
            .iter()
            .find(|c| c.key == "PAYMENTS_API_TOKEN")
            .and_then(|c| c.new.as_deref()),
        Some(crate::core::deploy::MASKED),
        "secret values are masked"
    );
    // Seeding again (a reused --data directory) adds nothing.
    seed_history(&*store, &audit, now)
        .await
        .expect("seed again");
    let all = store
        .deploys(&DeployQuery::default())
        .await
        .expect("deploys");
    assert_eq!(all.len(), HISTORY.len() + CONFIG_EDITS.len());
    let report = audit.verify().await.expect("verify");
    assert_eq!(
        report.count,
        (HISTORY.len() + CONFIG_EDITS.len()) as i64,
        "each deploy and configuration change audited once"
    );
    let edit = all
        .iter()
        .find(|d| d.is_config_change())
        .expect("the payments ConfigMap edit");
    assert_eq!(edit.target.to_string(), "payments production");
    assert_eq!(
        edit.description.as_deref(),
        Some("ConfigMap payments-env changed")
    );
}

#[test]
fn generated_passwords_are_sixteen_unambiguous_characters() {
    let password = generate_password();
    assert_eq!(password.len(), 16);
    assert!(!password.contains(['0', 'O', 'l', '1', 'I']), "{password}");
}

#[tokio::test]
async fn the_flagger_canary_in_its_analysis_is_offered_roll_back_canary() {
    let store = crate::store::SqliteStore::connect("sqlite::memory:")
        .await
        .expect("store");
    seed_flagger_canary(&store, Utc::now()).await.expect("seed");
    let history = store
        .deploys(&DeployQuery {
            service: Some(name(FLAGGER.0).expect("name")),
            ..DeployQuery::default()
        })
        .await
        .expect("deploys");
    let canary = crate::core::bot::CanaryName {
        namespace: FLAGGER_CANARY.0.to_owned(),
        name: FLAGGER_CANARY.1.to_owned(),
    };
    let offer = crate::core::bot::canary_offer(&canary, &history).expect("offered");
    assert_eq!(offer.from.version, FLAGGER_RUN);
    assert_eq!(offer.to.version, FLAGGER_PRIMARY);
    let config = Config::parse(DEMO_CONFIG).expect("valid demo configuration");
    let storefront = config
        .services
        .iter()
        .find(|s| s.name.as_str() == FLAGGER.0)
        .expect("storefront");
    assert_eq!(
        storefront.sources.flagger_canary.as_deref(),
        Some("shop/storefront")
    );
}
