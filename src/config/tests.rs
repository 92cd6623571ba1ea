//! The configuration's validation, section by section, through `Config::parse_with` with
//! fake secrets.

use super::*;

struct FakeSecrets;

impl SecretResolver for FakeSecrets {
    fn env(&self, name: &str) -> Option<String> {
        match name {
            "SLACK_BOT_TOKEN" => Some("xoxb-123".into()),
            "SLACK_APP_TOKEN" => Some("xapp-123".into()),
            "API_TOKEN" => Some("0123456789abcdef0123".into()),
            "HOOK_SECRET" => Some("hook-secret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn file(&self, path: &str) -> Result<String, String> {
        match path {
            "/run/secrets/audit" => Ok("k".repeat(40)),
            _ => Err(format!("cannot read secret file {path}: not found")),
        }
    }
}

fn parse(text: &str) -> Result<Config, Vec<String>> {
    Config::parse_with(text, &FakeSecrets)
        .map_err(|e| e.problems().into_iter().map(|p| p.to_string()).collect())
}

const VALID: &str = r#"
        [server]
        listen = "0.0.0.0:9000"

        [database]
        url = "sqlite://data/breakwater.db"

        [api]
        token = "${API_TOKEN}"

        [slack]
        bot_token = "${SLACK_BOT_TOKEN}"
        app_token = "${SLACK_APP_TOKEN}"
        alert_channels = ["C0123ABCD"]

        [backends.deployer]
        kind = "webhook"
        url = "https://deployer.internal/rollback"
        secret = "${HOOK_SECRET}"
        timeout = "5m"

        [[services]]
        name = "checkout"
        environments = ["staging", "production"]
        aliases = ["checkout-svc"]
        backend = "deployer"

        [policy]
        rollback_allowed = ["slack:usergroup:S0123", "console:alice"]
        lookback = "3h"
        two_person = ["production"]

        [[policy.freeze]]
        start = "2026-12-24T00:00:00Z"
        end = "2026-12-27T00:00:00Z"
        environments = ["production"]
        reason = "holidays"

        [audit]
        key = { file = "/run/secrets/audit" }
    "#;

#[test]
fn a_complete_configuration_loads() {
    let config = parse(VALID).expect("valid");
    assert_eq!(config.server.listen.port(), 9000);
    assert_eq!(config.policy.lookback, Duration::from_secs(3 * 3600));
    assert_eq!(
        config.services[0].backend_for(&Environment::parse("production").expect("ok")),
        Some("deployer")
    );
    assert_eq!(config.policy.freezes.len(), 1);
    assert!(config.audit.key.is_some());
    assert_eq!(
        config.slack.expect("slack").api_url.as_str(),
        "https://slack.com/api/"
    );
}

#[test]
fn an_empty_file_uses_defaults() {
    let config = parse("").expect("valid");
    assert_eq!(config.database.url.expose(), "sqlite://breakwater.db");
    assert_eq!(config.policy.lookback, Duration::from_secs(6 * 3600));
}

#[test]
fn unknown_keys_are_reported_with_their_path() {
    let problems =
        parse(&VALID.replace("lookback = \"3h\"", "lookbak = \"3h\"")).expect_err("invalid");
    assert_eq!(
        problems,
        vec!["policy.lookbak: unknown key `lookbak` — did you mean `lookback`?".to_owned()]
    );
}

#[test]
fn an_unknown_key_far_from_any_known_one_lists_the_known_keys() {
    let problems =
        parse(&VALID.replace("timeout = \"5m\"", "colour = \"red\"")).expect_err("invalid");
    assert_eq!(
        problems,
        vec![
            "backends.deployer.colour: unknown key `colour` (known: url, secret, timeout, \
             poll_interval)"
                .to_owned()
        ]
    );
}

#[test]
fn a_misspelt_required_key_is_one_problem_not_two() {
    let problems =
        parse(&VALID.replace("secret = \"${HOOK_SECRET}\"", "secrt = \"${HOOK_SECRET}\""))
            .expect_err("invalid");
    assert_eq!(
        problems,
        vec!["backends.deployer.secrt: unknown key `secrt` — did you mean `secret`?".to_owned()]
    );
}

#[test]
fn a_service_naming_a_backend_with_a_bad_key_is_not_told_the_backend_is_missing() {
    let problems = parse(&VALID.replace("timeout = \"5m\"", "timeout = 5")).expect_err("invalid");
    assert_eq!(
        problems.len(),
        1,
        "only the bad key is a problem: {problems:?}"
    );
    assert!(
        problems[0].starts_with("backends.deployer.timeout:"),
        "{problems:?}"
    );
}

#[test]
fn an_unset_secret_is_one_problem_and_keys_still_fit_their_backend() {
    let text = VALID.replace(
        "[backends.deployer]\n        kind = \"webhook\"\n        url = \"https://deployer.internal/rollback\"\n        secret = \"${HOOK_SECRET}\"\n        timeout = \"5m\"",
        "[backends.deployer]\n        kind = \"argocd\"\n        url = \"https://argocd.internal\"\n        token = \"${ARGOCD_TOKEN}\"",
    )
    .replace("backend = \"deployer\"", "backend = \"deployer\"\n        app = \"checkout-{environment}\"");
    let problems = parse(&text).expect_err("invalid");
    assert_eq!(
        problems,
        vec!["backends.deployer.token: environment variable ARGOCD_TOKEN is not set".to_owned()]
    );
}

#[test]
fn a_freeze_naming_a_service_with_a_problem_is_not_told_the_service_is_missing() {
    let text = VALID
        .replace("aliases = [\"checkout-svc\"]", "aliases = \"checkout-svc\"")
        .replace(
            "environments = [\"production\"]\n        reason",
            "services = [\"checkout\"]\n        reason",
        );
    let problems = parse(&text).expect_err("invalid");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("services[0].aliases:"),
        "{problems:?}"
    );
}

#[test]
fn a_misspelt_slack_mode_is_not_then_held_to_socket_mode() {
    let problems = parse(&VALID.replace(
        "app_token = \"${SLACK_APP_TOKEN}\"",
        "mode = \"htpp\"\n        signing_secret = \"${HOOK_SECRET}\"",
    ))
    .expect_err("invalid");
    assert_eq!(
        problems,
        vec!["slack.mode: \"htpp\" must be \"socket\" or \"http\"".to_owned()]
    );
}

#[test]
fn a_bad_heartbeat_interval_is_not_then_compared_with_the_timeout() {
    let problems = parse(&VALID.replace(
        "listen = \"0.0.0.0:9000\"",
        "listen = \"0.0.0.0:9000\"\n        heartbeat_interval = \"often\"\n        heartbeat_timeout = \"8s\"",
    ))
    .expect_err("invalid");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("server.heartbeat_interval:"),
        "{problems:?}"
    );
}

#[test]
fn a_bad_trusted_proxy_is_not_then_reported_missing() {
    let problems = parse(&format!(
        "{VALID}\n[console]\ntrusted_proxy_header = \"X-User\"\ntrusted_proxies = [\"proxy\"]\n"
    ))
    .expect_err("invalid");
    assert_eq!(
        problems,
        vec!["console.trusted_proxies[0]: \"proxy\" is not an IP address".to_owned()]
    );
}

#[test]
fn a_misspelt_section_is_answered_with_the_nearest_one() {
    let problems = parse("[servr]\nlisten = \"x\"").expect_err("invalid");
    assert_eq!(
        problems,
        vec!["servr: unknown section `servr` — did you mean `server`?".to_owned()]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = VALID
        .replace("lookback = \"3h\"", "lookback = \"three hours\"")
        .replace("backend = \"deployer\"", "backend = \"argo\"")
        .replace("\"console:alice\"", "\"alice\"");
    let problems = parse(&text).expect_err("invalid");
    assert!(
        problems.iter().any(|p| p.starts_with("policy.lookback:")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("services[0] (checkout).backend:")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("policy.rollback_allowed[1]:")),
        "{problems:?}"
    );
}

#[test]
fn inline_secrets_are_refused() {
    let problems = parse(&VALID.replace("\"${API_TOKEN}\"", "\"hunter2hunter2hunter2\""))
        .expect_err("invalid");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("api.token: must not be written inline")),
        "{problems:?}"
    );
}

#[test]
fn missing_environment_variables_are_named() {
    let problems = parse(&VALID.replace("${API_TOKEN}", "${NOPE}")).expect_err("invalid");
    assert!(
        problems.contains(&"api.token: environment variable NOPE is not set".to_owned()),
        "{problems:?}"
    );
}

#[test]
fn unknown_sections_are_reported() {
    let problems = parse("[servr]\nlisten = \"x\"").expect_err("invalid");
    assert!(
        problems[0].starts_with("servr: unknown section"),
        "{problems:?}"
    );
}

#[test]
fn toml_syntax_errors_name_the_line() {
    let problems = parse("[server]\nlisten = ").expect_err("invalid");
    assert!(
        problems[0].starts_with("line 2: invalid TOML"),
        "{problems:?}"
    );
}

#[test]
fn socket_mode_needs_an_app_token() {
    let problems =
        parse(&VALID.replace("app_token = \"${SLACK_APP_TOKEN}\"", "")).expect_err("invalid");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("slack.app_token: is required")),
        "{problems:?}"
    );
}

#[test]
fn a_backend_per_environment_is_accepted() {
    let text = VALID.replace(
        "backend = \"deployer\"",
        "backend = { staging = \"deployer\", production = \"deployer\" }",
    );
    assert!(parse(&text).is_ok());
}

#[test]
fn backend_keys_must_fit_the_backend_kind() {
    let text = VALID.replace(
        "backend = \"deployer\"",
        "backend = \"deployer\"\nrelease = \"checkout\"",
    );
    let problems = parse(&text).expect_err("invalid");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("release: only applies to helm")),
        "{problems:?}"
    );
}

#[test]
fn an_argo_rollouts_backend_takes_the_kubernetes_connection_settings_and_a_rollout_name() {
    let text = VALID
        .replace(
            "backend = \"deployer\"",
            "backend = \"rollouts\"\nnamespace = \"shop\"\nrollout = \"{service}-canary\"",
        )
        .replace(
            "[[services]]",
            "[backends.rollouts]\nkind = \"argo-rollouts\"\ncontext = \"prod\"\ntimeout = \"3m\"\n\n[[services]]",
        );
    let config = parse(&text).expect("valid");
    let Some(BackendConfig::ArgoRollouts(rollouts)) = config.backends.get("rollouts") else {
        panic!("{:?}", config.backends);
    };
    assert_eq!(rollouts.context.as_deref(), Some("prod"));
    assert_eq!(rollouts.timeout, Duration::from_secs(180));
    assert_eq!(
        config.services[0].rollout.as_deref(),
        Some("{service}-canary")
    );
    let text = VALID.replace(
        "backend = \"deployer\"",
        "backend = \"deployer\"\nrollout = \"checkout\"",
    );
    let problems = parse(&text).expect_err("invalid");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("rollout: only applies to argo-rollouts")),
        "{problems:?}"
    );
}

#[test]
fn duplicate_service_names_and_aliases_are_refused() {
    let text = format!(
        "{VALID}\n[[services]]\nname = \"checkout-svc\"\nenvironments = [\"production\"]\nbackend = \"deployer\"\n"
    );
    let problems = parse(&text).expect_err("invalid");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("already used by service checkout")),
        "{problems:?}"
    );
}

#[test]
fn templates_fill_service_and_environment() {
    let config = parse(VALID).expect("valid");
    let service = &config.services[0];
    let env = Environment::parse("production").expect("ok");
    assert_eq!(
        service.setting(&Some("{service}-{environment}".into()), &env, "x"),
        "checkout-production"
    );
    assert_eq!(service.setting(&None, &env, "{service}"), "checkout");
}

#[test]
fn server_connection_limits_have_defaults_and_are_validated() {
    let config = parse(VALID).expect("valid");
    assert_eq!(config.server.connections, ConnectionLimits::default());
    let text = VALID.replace(
        "[server]",
        "[server]\nheader_read_timeout = \"5s\"\nidle_timeout = \"30s\"\nmax_connections = 64",
    );
    let limits = parse(&text).expect("valid").server.connections;
    assert_eq!(limits.header_read_timeout, Duration::from_secs(5));
    assert_eq!(limits.idle_timeout, Duration::from_secs(30));
    assert_eq!(limits.max_connections, 64);
    let text = VALID.replace("[server]", "[server]\nmax_connections = 0");
    let problems = parse(&text).expect_err("invalid");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("server.max_connections")),
        "{problems:?}"
    );
}

#[test]
fn a_service_repository_is_read_with_its_kind_inferred_from_the_host() {
    let text = VALID.replace(
        "backend = \"deployer\"",
        "backend = \"deployer\"\nrepository = \"https://github.com/acme/checkout\"",
    );
    let config = parse(&text).expect("valid");
    let repository = config.services[0].repository.as_ref().expect("set");
    assert_eq!(
        repository.commit_url("abc123").as_deref(),
        Some("https://github.com/acme/checkout/commit/abc123")
    );
}

#[test]
fn a_self_hosted_repository_without_a_kind_is_refused_naming_the_key() {
    let text = VALID.replace(
        "backend = \"deployer\"",
        "backend = \"deployer\"\nrepository = \"https://git.acme.internal/acme/checkout\"",
    );
    let problems = parse(&text).expect_err("invalid");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("services[0] (checkout).repository:")
                && p.contains("repository_kind")),
        "{problems:?}"
    );
}

#[test]
fn deploy_sources_and_service_keys_are_read() {
    let text = VALID.replace(
        "backend = \"deployer\"",
        "backend = \"deployer\"\ngithub_repository = \"acme/checkout\"\nflux_helmrelease = \"apps/checkout-{environment}\"",
    ) + "\n[sources.github]\nsecret = \"${API_TOKEN}\"\n[sources.flux]\nsecret = \"${API_TOKEN}\"\nenvironment = \"production\"\n";
    let config = parse(&text).expect("valid");
    assert!(config.sources.github_secret.is_some());
    assert!(config.sources.gitlab_token.is_none());
    assert_eq!(
        config
            .sources
            .flux_environment
            .as_ref()
            .map(Environment::as_str),
        Some("production")
    );
    assert_eq!(
        config.services[0].sources.github_repository.as_deref(),
        Some("acme/checkout")
    );
}

#[test]
fn a_short_source_secret_and_misshapen_service_keys_are_refused() {
    let text = VALID.replace(
        "backend = \"deployer\"",
        "backend = \"deployer\"\ngithub_repository = \"checkout\"\nflux_kustomization = \"a/b/c\"",
    ) + "\n[sources.gitlab]\ntoken = \"${HOOK_SECRET}\"\n";
    let problems = parse(&text).expect_err("invalid");
    for expected in [
        "sources.gitlab.token: is shorter than 16 characters",
        "github_repository: \"checkout\" must be OWNER/REPOSITORY",
        "flux_kustomization: \"a/b/c\" must be NAME or NAMESPACE/NAME",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:?}"
        );
    }
}

#[test]
fn a_service_key_for_a_source_that_is_off_is_a_warning() {
    let text = VALID.replace(
        "backend = \"deployer\"",
        "backend = \"deployer\"\ngitlab_project = \"acme/shop/checkout\"",
    );
    let config = Config::parse_with(&text, &FakeSecrets).expect("valid");
    assert!(
        config.warnings.iter().any(|w| w
            .to_string()
            .contains("gitlab_project: is set but sources.gitlab.token is not")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn one_repository_cannot_name_two_services() {
    let text = VALID.replace(
        "backend = \"deployer\"",
        "backend = \"deployer\"\ngithub_repository = \"acme/shop\"",
    ) + "\n[[services]]\nname = \"payments\"\nenvironments = [\"production\"]\nbackend = \"deployer\"\ngithub_repository = \"Acme/Shop\"\n";
    let problems = parse(&text).expect_err("invalid");
    assert!(
        problems
            .iter()
            .any(|p| p
                .contains("github_repository: \"Acme/Shop\" is already used by service checkout")),
        "{problems:?}"
    );
}
