//! `server.runner_id` and the heartbeat that hands a live rollback to another replica.

use super::*;

struct NoSecrets;

impl SecretResolver for NoSecrets {
    fn env(&self, _name: &str) -> Option<String> {
        None
    }

    fn file(&self, path: &str) -> Result<String, String> {
        Err(format!("cannot read secret file {path}: not found"))
    }
}

fn parse(text: &str) -> Result<Config, Vec<String>> {
    Config::parse_with(text, &NoSecrets)
        .map_err(|e| e.problems().into_iter().map(|p| p.to_string()).collect())
}

#[test]
fn the_runner_id_defaults_to_the_host_and_listen_port() {
    let config = parse("[server]\nlisten = \"127.0.0.1:9000\"\n").expect("valid");
    assert!(
        config.server.runner_id.ends_with(":9000"),
        "{}",
        config.server.runner_id
    );
    assert_eq!(config.server.heartbeat_interval, Duration::from_secs(5));
    assert_eq!(config.server.heartbeat_timeout, Duration::from_secs(15));
}

#[test]
fn an_explicit_runner_id_and_heartbeat_are_taken() {
    let config = parse(
        "[server]\nrunner_id = \"breakwater-0\"\nheartbeat_interval = \"2s\"\nheartbeat_timeout = \"6s\"\n",
    )
    .expect("valid");
    assert_eq!(config.server.runner_id, "breakwater-0");
    assert_eq!(config.server.heartbeat_interval, Duration::from_secs(2));
    assert_eq!(config.server.heartbeat_timeout, Duration::from_secs(6));
}

#[test]
fn a_heartbeat_timeout_shorter_than_two_intervals_is_refused() {
    let problems = parse("[server]\nheartbeat_interval = \"10s\"\nheartbeat_timeout = \"15s\"\n")
        .expect_err("invalid");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("server.heartbeat_timeout:")),
        "{problems:?}"
    );
}

#[test]
fn a_runner_id_with_spaces_is_refused() {
    let problems = parse("[server]\nrunner_id = \"two words\"\n").expect_err("invalid");
    assert!(
        problems.iter().any(|p| p.starts_with("server.runner_id:")),
        "{problems:?}"
    );
}
