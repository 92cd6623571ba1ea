//! The built `breakwater` binary as operators use it: check-config and the audit commands,
//! including a log tampered with behind breakwater's back.

use std::path::Path;
use std::process::Output;

use sqlx::Connection;

use crate::support::{actor, spawn_app};

fn breakwater(args: &[&str], config: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("BREAKWATER_CONFIG")
        .output()
        .expect("run breakwater")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A stopped application whose audit log holds an alert, a summary and a rollback.
async fn app_with_history() -> (tempfile::TempDir, std::path::PathBuf) {
    let app = spawn_app().await;
    app.deploy("checkout", "production", "v41", 300).await;
    app.deploy("checkout", "production", "v42", 18).await;
    app.fire_alert("HighErrorRate", "checkout", "production")
        .await;
    let summary = app.summary().await;
    app.press(&summary, "Roll back", &actor("console:alice", "Alice"))
        .await;
    app.chat.wait_for_update(&summary.at, "Rolled back").await;
    let config = app.config_path.clone();
    let dir = app.stop().await;
    (dir, config)
}

async fn tamper(dir: &Path, statements: &[&'static str]) {
    let url = format!("sqlite://{}/breakwater.db", dir.display());
    let mut connection = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    for statement in statements {
        sqlx::query(*statement)
            .execute(&mut connection)
            .await
            .expect("tamper");
    }
}

#[tokio::test]
async fn check_config_accepts_a_valid_file() {
    let app = spawn_app().await;
    let output = breakwater(&["check-config"], &app.config_path);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("ok (2 services, 1 backends)"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test]
async fn check_config_prints_every_problem_with_its_key_path_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"nowhere\"\n[policy]\nlookbak = \"6h\"\nrollback_allowed = [\"alice\"]\n[api]\ntoken = \"inline-secret-0123456789\"\n",
    )
    .expect("write");
    let output = breakwater(&["check-config"], &path);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    for expected in [
        "server.listen:",
        "policy.lookbak: unknown key",
        "policy.rollback_allowed[0]:",
        "api.token: must not be written inline",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}

#[tokio::test]
async fn the_example_configuration_is_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("audit-key");
    std::fs::write(&key, "k".repeat(40)).expect("write");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/breakwater.toml"
    ))
    .expect("read example")
    .replace(
        "/run/secrets/breakwater-audit-key",
        &key.display().to_string(),
    );
    let path = dir.path().join("breakwater.toml");
    std::fs::write(&path, example).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args(["check-config", "--config"])
        .arg(&path)
        .envs([
            ("BREAKWATER_API_TOKEN", "api-token-0123456789abcdef"),
            ("BREAKWATER_WEBHOOK_TOKEN", "webhook-token-0123456789ab"),
            ("SLACK_BOT_TOKEN", "xoxb-1-2-3"),
            ("SLACK_APP_TOKEN", "xapp-1-2-3"),
            ("SLACK_SIGNING_SECRET", "signing-secret"),
            ("DISCORD_TOKEN", "discord-token"),
            ("DEPLOYER_SECRET", "deployer-secret"),
            ("ARGOCD_TOKEN", "argocd-token"),
        ])
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn audit_verify_reports_the_count_and_head_of_an_intact_log() {
    let (_dir, config) = app_with_history().await;
    let output = breakwater(&["audit", "verify"], &config);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(
        stdout(&output).starts_with("audit chain intact: "),
        "{}",
        stdout(&output)
    );
}

#[tokio::test]
async fn audit_verify_names_an_edited_record() {
    let (dir, config) = app_with_history().await;
    tamper(
        dir.path(),
        &["UPDATE audit_log SET actor_name = 'mallory' WHERE seq = 3"],
    )
    .await;
    let output = breakwater(&["audit", "verify"], &config);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("record 3: content does not match its hash (edited)"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test]
async fn audit_verify_names_a_deleted_record() {
    let (dir, config) = app_with_history().await;
    tamper(dir.path(), &["DELETE FROM audit_log WHERE seq = 4"]).await;
    let output = breakwater(&["audit", "verify"], &config);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("record 4: is missing (deleted)"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test]
async fn audit_verify_catches_records_cut_from_the_end() {
    let (dir, config) = app_with_history().await;
    tamper(
        dir.path(),
        &["DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)"],
    )
    .await;
    let output = breakwater(&["audit", "verify"], &config);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("the chain head says the log ends at record"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test]
async fn audit_verify_catches_reordered_records() {
    let (dir, config) = app_with_history().await;
    // Swap the contents of records 2 and 3, keeping their sequence numbers.
    tamper(
        dir.path(),
        &[
            "UPDATE audit_log SET seq = -2 WHERE seq = 2",
            "UPDATE audit_log SET seq = 2 WHERE seq = 3",
            "UPDATE audit_log SET seq = 3 WHERE seq = -2",
        ],
    )
    .await;
    let output = breakwater(&["audit", "verify"], &config);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("record 2:"), "{}", stdout(&output));
}

#[tokio::test]
async fn audit_export_writes_every_record_as_jsonl_and_csv() {
    let (_dir, config) = app_with_history().await;
    let jsonl = breakwater(&["audit", "export", "--format", "jsonl"], &config);
    assert!(jsonl.status.success());
    let lines: Vec<serde_json::Value> = stdout(&jsonl)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|r| r["action"] == "rollback.succeeded" && r["actor"] == "console:alice")
    );
    assert_eq!(lines[0]["seq"], 1);
    let csv = breakwater(&["audit", "export", "--format", "csv"], &config);
    assert!(csv.status.success());
    let text = stdout(&csv);
    assert!(
        text.starts_with(
            "seq,at,actor,actor_name,action,service,environment,details,prev_hash,hash"
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), lines.len() + 1);
    let since = breakwater(
        &["audit", "export", "--since", "2999-01-01T00:00:00Z"],
        &config,
    );
    assert!(stdout(&since).is_empty());
}

/// Kills the demo child process when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn demo_starts_and_serves_the_console_sign_in_page() {
    use std::io::BufRead;
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_breakwater"))
            .args(["demo", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the demo"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let lines = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|line| !line.starts_with("  Data:"))
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(std::time::Duration::from_secs(60), lines)
        .await
        .expect("the demo prints its URL")
        .expect("read stdout");
    let field = |name: &str| {
        lines
            .iter()
            .find_map(|line| line.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {name} line in {lines:#?}"))
    };
    let url = field("Console:");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(field("User:"), "demo");
    assert_eq!(field("Password:").len(), 16);
    let page = reqwest::get(format!("{url}/login")).await.expect("request");
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .expect("body")
            .contains("Sign in to the breakwater console")
    );
    assert!(data.path().join("breakwater.db").exists());
}

fn hash_password_of(input: &str) -> Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run breakwater");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write password");
    child.wait_with_output().expect("output")
}

#[test]
fn hash_password_prints_an_argon2id_hash_that_verifies() {
    let output = hash_password_of("correct horse battery staple\n");
    assert!(output.status.success(), "{output:?}");
    let hash = stdout(&output).trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(breakwater::chat::console::auth::verify_password(
        "correct horse battery staple",
        &hash
    ));
    assert!(!breakwater::chat::console::auth::verify_password(
        "correct horse battery staple\n",
        &hash
    ));
}

#[test]
fn hash_password_refuses_an_empty_password() {
    let output = hash_password_of("\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("empty"));
}
