//! The operator's commands around a running bot: `--version`, `backup --to`, and the
//! audit commands with only the database and audit key configured.

use std::path::Path;
use std::process::{Command, Output};

use sqlx::Connection;

use crate::support::{AppOptions, actor, eventually, spawn_app, spawn_app_with};

fn breakwater(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_breakwater"));
    command.args(args).env_remove("BREAKWATER_CONFIG");
    command
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn count_deploys(database: &Path) -> i64 {
    let url = format!("sqlite://{}?mode=ro", database.display());
    let mut connection = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open the copy");
    sqlx::query_scalar("SELECT COUNT(*) FROM deploys")
        .fetch_one(&mut connection)
        .await
        .expect("count")
}

#[test]
fn version_names_the_release_and_the_commit_it_was_built_from() {
    let output = breakwater(&["--version"]).output().expect("run");
    assert!(output.status.success());
    let version = text(&output);
    assert!(
        version.starts_with(&format!(
            "breakwater {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{version}"
    );
    let commit = version
        .split("(commit ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("a commit");
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit:?} is neither a commit hash nor \"unknown\""
    );
}

#[tokio::test]
async fn backup_writes_a_consistent_copy_while_the_bot_runs() {
    let app = spawn_app().await;
    for version in ["v40", "v41", "v42"] {
        app.deploy("checkout", "production", version, 30).await;
    }
    let copy = app.dir.path().join("copy.db");
    let output = breakwater(&["backup", "--to"])
        .arg(&copy)
        .arg("--config")
        .arg(&app.config_path)
        .output()
        .expect("run backup");
    assert!(output.status.success(), "{}", text(&output));
    // Written while the bot holds the database open; readable on its own (no -wal beside it).
    assert!(!app.dir.path().join("copy.db-wal").exists());
    assert_eq!(count_deploys(&copy).await, 3);

    // The copy is a working store: the audit chain in it verifies.
    let restored = app.dir.path().join("restored.toml");
    std::fs::write(
        &restored,
        format!("[database]\nurl = \"sqlite://{}\"\n", copy.display()),
    )
    .expect("write");
    let verify = breakwater(&["audit", "verify", "--config"])
        .arg(&restored)
        .output()
        .expect("run verify");
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(
        text(&verify).contains("audit chain intact"),
        "{}",
        text(&verify)
    );
    app.stop().await;
}

#[tokio::test]
async fn backup_never_overwrites_a_file() {
    let app = spawn_app().await;
    let existing = app.dir.path().join("existing.db");
    std::fs::write(&existing, "keep me").expect("write");
    let output = breakwater(&["backup", "--to"])
        .arg(&existing)
        .arg("--config")
        .arg(&app.config_path)
        .output()
        .expect("run backup");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("already exists"),
        "{}",
        text(&output)
    );
    assert_eq!(std::fs::read_to_string(&existing).expect("read"), "keep me");
    app.stop().await;
}

#[test]
fn backup_of_a_postgres_store_names_pg_dump() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("breakwater.toml");
    std::fs::write(&config, "[database]\nurl = \"${BW_TEST_DATABASE_URL}\"\n").expect("write");
    let output = breakwater(&["backup", "--to"])
        .arg(dir.path().join("copy.db"))
        .arg("--config")
        .arg(&config)
        .env(
            "BW_TEST_DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/none",
        )
        .output()
        .expect("run backup");
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("pg_dump"), "{}", text(&output));
}

#[test]
fn backup_of_a_missing_database_fails_instead_of_copying_an_empty_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("breakwater.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}/typo.db\"\n",
            dir.path().display()
        ),
    )
    .expect("write");
    let output = breakwater(&["backup", "--to"])
        .arg(dir.path().join("copy.db"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run backup");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(!dir.path().join("typo.db").exists());
    assert!(!dir.path().join("copy.db").exists());
}

#[tokio::test]
async fn audit_commands_need_only_the_database_and_the_audit_key() {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v42", 5).await;
    let dir = app.stop().await;
    // The serve configuration of a real install: every chat and API secret from the
    // environment, none of which the auditor's shell has.
    let config = dir.path().join("audit-only.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[database]
url = "sqlite://{}/breakwater.db"

[api]
token = "${{BW_UNSET_API_TOKEN}}"

[webhooks]
token = "${{BW_UNSET_WEBHOOK_TOKEN}}"

[slack]
mode = "socket"
bot_token = "${{BW_UNSET_SLACK_BOT_TOKEN}}"
app_token = "${{BW_UNSET_SLACK_APP_TOKEN}}"
alert_channels = ["C0ALERTS"]
"#,
            dir.path().display()
        ),
    )
    .expect("write");
    let serve_check = breakwater(&["check-config", "--config"])
        .arg(&config)
        .output()
        .expect("run check-config");
    assert_eq!(
        serve_check.status.code(),
        Some(1),
        "serve would refuse this"
    );

    let verify = breakwater(&["audit", "verify", "--config"])
        .arg(&config)
        .output()
        .expect("run verify");
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(text(&verify).contains("audit chain intact"));

    let export = breakwater(&["audit", "export", "--config"])
        .arg(&config)
        .output()
        .expect("run export");
    assert!(export.status.success(), "{}", text(&export));
    assert!(String::from_utf8_lossy(&export.stdout).contains("deploy"));
}

#[test]
fn audit_commands_still_report_a_bad_database_setting_by_key_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("breakwater.toml");
    std::fs::write(&config, "[database]\nurl = \"mysql://db\"\nurll = 1\n").expect("write");
    let output = breakwater(&["audit", "verify", "--config"])
        .arg(&config)
        .output()
        .expect("run verify");
    assert_eq!(output.status.code(), Some(1));
    let shown = text(&output);
    assert!(shown.contains("database.url"), "{shown}");
    assert!(shown.contains("database.urll: unknown key"), "{shown}");
}

async fn rollbacks_running(app: &crate::support::TestApp) -> String {
    let metrics = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    metrics
        .lines()
        .find(|l| l.starts_with("breakwater_rollbacks_running "))
        .unwrap_or_else(|| panic!("no rollbacks_running gauge in:\n{metrics}"))
        .to_owned()
}

/// A rollback through a command that waits for the test's go-ahead: while it runs,
/// `/metrics` counts it on this replica; once it is done, not any more.
#[tokio::test]
async fn metrics_count_the_rollbacks_this_replica_is_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    let extra_config = format!(
        r#"
[backends.script]
kind = "command"
argv = ["/bin/sh", "-c", "touch started; while [ ! -e release ]; do sleep 0.05; done"]
timeout = "60s"
working_dir = "{work}"

[[services]]
name = "ledger"
environments = ["production"]
backend = "script"
"#,
        work = work.display()
    );
    let app = spawn_app_with(AppOptions {
        extra_config,
        dir: Some(dir),
        ..AppOptions::default()
    })
    .await;
    app.deploy("ledger", "production", "v1", 300).await;
    app.deploy("ledger", "production", "v2", 18).await;
    assert_eq!(
        rollbacks_running(&app).await,
        "breakwater_rollbacks_running 0"
    );
    app.fire_alert("HighErrorRate", "ledger", "production")
        .await;
    let summary = app.summary().await;
    app.press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;

    eventually("the command to start", async || {
        work.join("started").exists().then_some(())
    })
    .await;
    assert_eq!(
        rollbacks_running(&app).await,
        "breakwater_rollbacks_running 1"
    );

    std::fs::write(work.join("release"), "").expect("release");
    app.chat.wait_for_update(&summary.at, "Rolled back").await;
    // The run ends just after its outcome is shown.
    eventually("the finished rollback to leave the gauge", async || {
        let running = rollbacks_running(&app).await;
        if running == "breakwater_rollbacks_running 0" {
            Ok(())
        } else {
            Err(running)
        }
    })
    .await;
    app.stop().await;
}
