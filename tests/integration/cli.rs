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
    // The files and programs the example names, under the temporary directory, since
    // check-config checks that they exist.
    let host = dir.path().join("host");
    for directory in ["usr/local/bin", "srv/deploy", "etc/breakwater"] {
        std::fs::create_dir_all(host.join(directory)).expect("mkdir");
    }
    for file in ["etc/breakwater/argocd-ca.pem", "etc/breakwater/kubeconfig"] {
        std::fs::write(host.join(file), "").expect("write");
    }
    for program in ["usr/local/bin/rollback", "usr/local/bin/helm"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(host.join(program), "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(host.join(program), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let mut example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/breakwater.toml"
    ))
    .expect("read example")
    .replace(
        "/run/secrets/breakwater-audit-key",
        &key.display().to_string(),
    );
    for prefix in ["/usr/local/bin/", "/srv/deploy", "/etc/breakwater/"] {
        example = example.replace(
            &format!("\"{prefix}"),
            &format!("\"{}{prefix}", host.display()),
        );
    }
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

// --- errors that say what to do -------------------------------------------------------------

/// A configuration file in a fresh directory; `{dir}` in `text` stands for that directory.
fn config_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("breakwater.toml");
    std::fs::write(
        &path,
        text.replace("{dir}", &dir.path().display().to_string()),
    )
    .expect("write config");
    (dir, path)
}

/// Runs the binary without blocking the test's runtime (fake servers run on it), with a
/// clean environment for what breakwater reads.
async fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args(args)
        .env_remove("BREAKWATER_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .envs(envs.iter().copied())
        .output()
        .await
        .expect("run breakwater")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `serve` with `database.url` from `$DATABASE_URL` (a URL with a password must not be
/// written in the file): what it prints when the database cannot be opened.
async fn serve_with_database(url: &str) -> Output {
    let (_dir, path) = config_file("[database]\nurl = \"${DATABASE_URL}\"\n");
    let path = path.display().to_string();
    run(&["serve", "--config", &path], &[("DATABASE_URL", url)]).await
}

/// A PostgreSQL server that answers every connection's start-up with one FATAL error, as a
/// real server does for a wrong password (28P01) or a missing database (3D000). An
/// `SSLRequest` is answered "N" (no TLS), as by a server without TLS.
async fn postgres_refusing_with(code: &'static str, message: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SSL_REQUEST: [u8; 4] = 80_877_103_u32.to_be_bytes();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                loop {
                    let mut length = [0u8; 4];
                    socket.read_exact(&mut length).await?;
                    let length = u32::from_be_bytes(length) as usize;
                    let mut body = vec![0u8; length.saturating_sub(4)];
                    socket.read_exact(&mut body).await?;
                    if body.starts_with(&SSL_REQUEST) {
                        socket.write_all(b"N").await?;
                    } else {
                        break;
                    }
                }
                let mut fields = Vec::new();
                for (tag, value) in [
                    (b'S', "FATAL"),
                    (b'V', "FATAL"),
                    (b'C', code),
                    (b'M', message),
                ] {
                    fields.push(tag);
                    fields.extend_from_slice(value.as_bytes());
                    fields.push(0);
                }
                fields.push(0);
                let mut reply = vec![b'E'];
                reply.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
                reply.extend_from_slice(&fields);
                socket.write_all(&reply).await?;
                socket.shutdown().await
            });
        }
    });
    address
}

#[tokio::test]
async fn serve_names_a_missing_sqlite_directory_once_with_the_setting_to_fix() {
    let (dir, path) = config_file("[database]\nurl = \"sqlite://{dir}/missing/breakwater.db\"\n");

    let output = run(&["serve", "--config", &path.display().to_string()], &[]).await;

    let dir = dir.path().display();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "error: cannot open the database sqlite://{dir}/missing/breakwater.db: the directory \
             {dir}/missing does not exist; create it or change the path in database.url\n"
        )
    );
}

#[tokio::test]
async fn serve_says_a_sqlite_url_naming_a_directory_must_name_a_file() {
    let (dir, path) = config_file("[database]\nurl = \"sqlite://{dir}\"\n");

    let output = run(&["serve", "--config", &path.display().to_string()], &[]).await;

    let dir = dir.path().display();
    assert_eq!(
        stderr(&output),
        format!(
            "error: cannot open the database sqlite://{dir}: {dir} is a directory; database.url \
             must name a file, such as sqlite://{dir}/breakwater.db\n"
        )
    );
}

#[tokio::test]
async fn serve_says_a_file_that_is_not_a_database_is_not_one() {
    let (dir, path) = config_file("[database]\nurl = \"sqlite://{dir}/notes.txt\"\n");
    std::fs::write(dir.path().join("notes.txt"), "x".repeat(4096)).expect("write");

    let output = run(&["serve", "--config", &path.display().to_string()], &[]).await;

    let dir = dir.path().display();
    assert_eq!(
        stderr(&output),
        format!(
            "error: cannot open the database sqlite://{dir}/notes.txt: {dir}/notes.txt is not a \
             SQLite database; change the path in database.url\n"
        )
    );
}

#[cfg(unix)]
/// `breakwater ARGS` as a user whom file permissions apply to: as root (which they do
/// not bind) through `setpriv` as `nobody`; `None` when that is not possible here.
async fn run_unprivileged(args: &[&str]) -> Option<Output> {
    if !rustix::process::geteuid().is_root() {
        return Some(run(args, &[]).await);
    }
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|path| Path::new(path).exists())?;
    let output = tokio::process::Command::new(setpriv)
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_breakwater"))
        .args(args)
        .env_remove("BREAKWATER_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run breakwater");
    Some(output)
}

#[cfg(unix)]
#[tokio::test]
async fn serve_names_a_sqlite_directory_it_may_not_write() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path) = config_file("[database]\nurl = \"sqlite://{dir}/locked/breakwater.db\"\n");
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).expect("mkdir");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let Some(output) = run_unprivileged(&["serve", "--config", &path.display().to_string()]).await
    else {
        eprintln!("skipping: running as root without setpriv to drop privileges");
        return;
    };

    let dir = dir.path().display();
    assert_eq!(
        stderr(&output),
        format!(
            "error: cannot open the database sqlite://{dir}/locked/breakwater.db: permission \
             denied on {dir}/locked; let the user breakwater runs as read and write it, or change \
             the path in database.url\n"
        )
    );
}

#[tokio::test]
async fn backup_names_a_database_file_that_does_not_exist() {
    let (dir, path) = config_file("[database]\nurl = \"sqlite://{dir}/breakwatr.db\"\n");
    let to = dir.path().join("copy.db");

    let output = run(
        &[
            "backup",
            "--config",
            &path.display().to_string(),
            "--to",
            &to.display().to_string(),
        ],
        &[],
    )
    .await;

    let dir = dir.path().display();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "error: cannot open the database sqlite://{dir}/breakwatr.db: {dir}/breakwatr.db does \
             not exist; correct the path in database.url\n"
        )
    );
}

#[tokio::test]
async fn serve_names_a_refused_postgres_connection_without_the_password() {
    let output = serve_with_database("postgres://breakwater:hunter2@127.0.0.1:1/app").await;

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: cannot open the database postgres://breakwater@127.0.0.1:1/app: connection \
         refused by 127.0.0.1:1; start PostgreSQL there or correct the host and port in \
         database.url\n"
    );
}

#[tokio::test]
async fn serve_names_an_unknown_postgres_host() {
    let output = serve_with_database("postgres://breakwater@no-such-host.invalid/app").await;

    assert_eq!(
        stderr(&output),
        "error: cannot open the database postgres://breakwater@no-such-host.invalid/app: \
         unknown host no-such-host.invalid; correct the host in database.url\n"
    );
}

#[tokio::test]
async fn serve_names_a_rejected_postgres_password() {
    let server = postgres_refusing_with(
        "28P01",
        "password authentication failed for user \"breakwater\"",
    )
    .await;

    let output = serve_with_database(&format!("postgres://breakwater:wrong@{server}/app")).await;

    assert_eq!(
        stderr(&output),
        format!(
            "error: cannot open the database postgres://breakwater@{server}/app: authentication \
             failed for user breakwater; correct the user or password in database.url\n"
        )
    );
}

#[tokio::test]
async fn serve_names_a_missing_postgres_database() {
    let server = postgres_refusing_with("3D000", "database \"app\" does not exist").await;

    let output = serve_with_database(&format!("postgres://breakwater@{server}/app")).await;

    assert_eq!(
        stderr(&output),
        format!(
            "error: cannot open the database postgres://breakwater@{server}/app: database app \
             does not exist; create it (createdb app) or correct the database name in \
             database.url\n"
        )
    );
}

#[tokio::test]
async fn serve_gives_up_on_a_silent_postgres_within_the_connect_timeout() {
    // Accepts connections (the kernel completes them) and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = silent.local_addr().expect("address");
    let started = std::time::Instant::now();

    let output = serve_with_database(&format!("postgres://breakwater@{server}/app")).await;

    assert_eq!(
        stderr(&output),
        format!(
            "error: cannot open the database postgres://breakwater@{server}/app: no answer from \
             {server} within 2 s; check that PostgreSQL runs there and is reachable from this \
             host, or correct database.url\n"
        )
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn check_config_connect_opens_a_new_sqlite_database_without_creating_it() {
    let (dir, path) = config_file("[database]\nurl = \"sqlite://{dir}/breakwater.db\"\n");

    let output = run(
        &[
            "check-config",
            "--connect",
            "--config",
            &path.display().to_string(),
        ],
        &[],
    )
    .await;

    assert!(output.status.success(), "{}", stdout(&output));
    assert!(
        stdout(&output).starts_with(&format!(
            "database.url: ok (sqlite://{}/breakwater.db)\n",
            dir.path().display()
        )),
        "{}",
        stdout(&output)
    );
    assert!(!dir.path().join("breakwater.db").exists());
}

#[tokio::test]
async fn check_config_connect_prints_the_database_problem_and_exits_1() {
    let (_dir, path) = config_file("[database]\nurl = \"${DATABASE_URL}\"\n");

    let output = run(
        &[
            "check-config",
            "--connect",
            "--config",
            &path.display().to_string(),
        ],
        &[(
            "DATABASE_URL",
            "postgres://breakwater:hunter2@127.0.0.1:1/app",
        )],
    )
    .await;

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "cannot open the database postgres://breakwater@127.0.0.1:1/app: connection refused by \
         127.0.0.1:1; start PostgreSQL there or correct the host and port in database.url\n"
    );
}

#[tokio::test]
async fn check_config_connect_reaches_a_running_postgres() {
    let Ok(url) = std::env::var("BREAKWATER_TEST_POSTGRES_URL") else {
        eprintln!("skipping: BREAKWATER_TEST_POSTGRES_URL not set");
        return;
    };
    let (_dir, path) = config_file("[database]\nurl = \"${DATABASE_URL}\"\n");

    let output = run(
        &[
            "check-config",
            "--connect",
            "--config",
            &path.display().to_string(),
        ],
        &[("DATABASE_URL", &url)],
    )
    .await;

    assert!(output.status.success(), "{}", stdout(&output));
    assert!(
        stdout(&output).starts_with("database.url: ok (postgres"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test]
async fn check_config_names_each_missing_file_and_program_by_its_key() {
    let (dir, path) = config_file(
        r#"
        [backends.argo]
        kind = "argocd"
        url = "https://argocd.example"
        token = { file = "argocd-token" }
        ca_file = "{dir}/missing-ca.pem"

        [backends.kube]
        kind = "kubernetes"
        kubeconfig = "{dir}/missing-kubeconfig"

        [backends.charts]
        kind = "helm"
        helm = "no-such-helm-binary"

        [backends.script]
        kind = "command"
        argv = ["{dir}/missing-rollback.sh", "{service}"]
        "#,
    );
    std::fs::write(dir.path().join("argocd-token"), "token").expect("write");

    let output = run(
        &["check-config", "--config", &path.display().to_string()],
        &[],
    )
    .await;

    let dir = dir.path().display();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        format!(
            "backends.argo.ca_file: {dir}/missing-ca.pem does not exist\n\
             backends.charts.helm: program no-such-helm-binary is not found on PATH; install it \
             or give its full path\n\
             backends.kube.kubeconfig: {dir}/missing-kubeconfig does not exist\n\
             backends.script.argv[0]: {dir}/missing-rollback.sh does not exist\n"
        )
    );
}

#[tokio::test]
async fn check_config_names_a_missing_secret_file_by_its_key() {
    let (dir, path) = config_file("[api]\ntoken = { file = \"api-token\" }\n");

    let output = run(
        &["check-config", "--config", &path.display().to_string()],
        &[],
    )
    .await;

    assert_eq!(
        stdout(&output),
        format!(
            "api.token: secret file {}/api-token does not exist\n",
            dir.path().display()
        )
    );
}

#[tokio::test]
async fn check_config_suggests_the_nearest_known_key() {
    let (_dir, path) = config_file("[policy]\nrollback_alowed = [\"console:alice\"]\n");

    let output = run(
        &["check-config", "--config", &path.display().to_string()],
        &[],
    )
    .await;

    assert_eq!(
        stdout(&output),
        "policy.rollback_alowed: unknown key `rollback_alowed` — did you mean `rollback_allowed`?\n"
    );
}

#[tokio::test]
async fn check_config_reports_a_backend_with_a_bad_key_once_not_again_for_its_services() {
    let (_dir, path) = config_file(
        r#"
        [backends.sim]
        kind = "simulated"
        delay = 3

        [[services]]
        name = "checkout"
        environments = ["production"]
        backend = "sim"
        "#,
    );

    let output = run(
        &["check-config", "--config", &path.display().to_string()],
        &[],
    )
    .await;

    assert_eq!(
        stdout(&output),
        "backends.sim.delay: invalid type: integer `3`, expected a string\n"
    );
}

#[tokio::test]
async fn check_config_reports_an_unset_secret_once_not_again_for_the_keys_of_its_backend() {
    let (_dir, path) = config_file(
        r#"
        [backends.argo]
        kind = "argocd"
        url = "https://argocd.example"
        token = "${BREAKWATER_TEST_UNSET_TOKEN}"

        [[services]]
        name = "checkout"
        environments = ["production"]
        backend = "argo"
        app = "checkout-{environment}"
        "#,
    );

    let output = run(
        &["check-config", "--config", &path.display().to_string()],
        &[],
    )
    .await;

    assert_eq!(
        stdout(&output),
        "backends.argo.token: environment variable BREAKWATER_TEST_UNSET_TOKEN is not set\n"
    );
}

#[tokio::test]
async fn a_missing_default_configuration_file_says_how_to_name_another() {
    let cwd = tempfile::tempdir().expect("tempdir");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .arg("serve")
        .current_dir(cwd.path())
        .env_remove("BREAKWATER_CONFIG")
        .output()
        .await
        .expect("run");

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "error: configuration file config/breakwater.toml ({}/config/breakwater.toml) not \
             found; pass --config FILE or set BREAKWATER_CONFIG (default: \
             config/breakwater.toml)\n",
            cwd.path().display()
        )
    );
}

#[tokio::test]
async fn check_config_of_a_missing_file_says_how_to_name_another() {
    let output = run(
        &["check-config", "--config", "/nonexistent/breakwater.toml"],
        &[],
    )
    .await;

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "configuration file /nonexistent/breakwater.toml not found; pass --config FILE or set \
         BREAKWATER_CONFIG (default: config/breakwater.toml)\n"
    );
}

/// A configuration that logs a warning at start (nobody may roll back) and then stops,
/// its database directory missing.
const WARNS_THEN_STOPS: &str = r#"
    [database]
    url = "sqlite://{dir}/missing/breakwater.db"

    [backends.sim]
    kind = "simulated"

    [[services]]
    name = "checkout"
    environments = ["production"]
    backend = "sim"
"#;

#[tokio::test]
async fn logs_to_a_pipe_carry_no_colour_codes() {
    let (_dir, path) = config_file(WARNS_THEN_STOPS);

    let output = run(&["serve", "--config", &path.display().to_string()], &[]).await;

    let text = stderr(&output);
    assert!(text.contains("WARN"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

#[cfg(unix)]
mod on_a_terminal {
    //! The binary with a pseudo-terminal as its standard input and error, as a person at a
    //! terminal runs it; the test plays the person on the other side.

    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use rustix::fs::{Mode, OFlags};
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

    use super::{WARNS_THEN_STOPS, config_file};

    /// The person's side of a pseudo-terminal: what the program wrote, and a keyboard.
    struct Terminal {
        keyboard: std::fs::File,
        screen: mpsc::Receiver<Vec<u8>>,
        shown: Vec<u8>,
    }

    /// A terminal, and the program's side of it to hand to a child.
    fn terminal() -> (Terminal, OwnedFd) {
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        let program_side = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open the terminal");
        let keyboard = std::fs::File::from(master.try_clone().expect("clone"));
        let mut reader = std::fs::File::from(master);
        let (sender, screen) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // Ends when every program-side descriptor is closed (EIO on Linux).
            while let Ok(n @ 1..) = reader.read(&mut buffer) {
                if sender.send(buffer[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        (
            Terminal {
                keyboard,
                screen,
                shown: Vec::new(),
            },
            program_side,
        )
    }

    impl Terminal {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.shown).into_owned()
        }

        /// Waits until the program has shown `text`.
        fn wait_for(&mut self, text: &str) {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !self.text().contains(text) {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.screen.recv_timeout(left) {
                    Ok(bytes) => self.shown.extend(bytes),
                    Err(_) => panic!("{text:?} never shown; the screen: {:?}", self.text()),
                }
            }
        }

        fn type_line(&mut self, line: &str) {
            self.keyboard
                .write_all(format!("{line}\n").as_bytes())
                .expect("type");
        }

        /// Everything shown until the program closed the terminal.
        fn everything(mut self) -> String {
            while let Ok(bytes) = self.screen.recv_timeout(Duration::from_secs(30)) {
                self.shown.extend(bytes);
            }
            self.text()
        }
    }

    #[test]
    fn hash_password_asks_twice_without_showing_what_is_typed() {
        let (mut terminal, program_side) = terminal();
        let child = Command::new(env!("CARGO_BIN_EXE_breakwater"))
            .arg("hash-password")
            .stdin(Stdio::from(program_side.try_clone().expect("clone")))
            .stderr(Stdio::from(program_side))
            .stdout(Stdio::piped())
            .spawn()
            .expect("run breakwater");

        terminal.wait_for("Password: ");
        terminal.type_line("correct horse battery staple");
        terminal.wait_for("Repeat the password: ");
        terminal.type_line("correct horse battery staple");
        let output = child.wait_with_output().expect("output");
        let screen = terminal.everything();

        assert!(output.status.success(), "{screen:?}");
        let hash = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(breakwater::chat::console::auth::verify_password(
            "correct horse battery staple",
            &hash
        ));
        assert!(
            !screen.contains("horse"),
            "the password was shown: {screen:?}"
        );
    }

    #[test]
    fn hash_password_refuses_two_different_passwords() {
        let (mut terminal, program_side) = terminal();
        let child = Command::new(env!("CARGO_BIN_EXE_breakwater"))
            .arg("hash-password")
            .stdin(Stdio::from(program_side.try_clone().expect("clone")))
            .stderr(Stdio::from(program_side))
            .stdout(Stdio::piped())
            .spawn()
            .expect("run breakwater");

        terminal.wait_for("Password: ");
        terminal.type_line("correct horse battery staple");
        terminal.wait_for("Repeat the password: ");
        terminal.type_line("correct horse battery stapel");
        let output = child.wait_with_output().expect("output");
        let screen = terminal.everything();

        assert_eq!(output.status.code(), Some(1));
        assert!(output.stdout.is_empty());
        assert!(
            screen.contains("error: the passwords do not match; nothing was hashed"),
            "{screen:?}"
        );
    }

    #[test]
    fn hash_password_interrupted_at_its_prompt_gives_the_terminal_its_echo_back() {
        let (mut terminal, program_side) = terminal();
        let settings = program_side.try_clone().expect("clone");
        let child = Command::new(env!("CARGO_BIN_EXE_breakwater"))
            .arg("hash-password")
            .stdin(Stdio::from(program_side.try_clone().expect("clone")))
            .stderr(Stdio::from(program_side))
            .stdout(Stdio::piped())
            .spawn()
            .expect("run breakwater");

        terminal.wait_for("Password: ");
        let hidden = rustix::termios::tcgetattr(&settings).expect("tcgetattr");
        assert!(
            !hidden
                .local_modes
                .contains(rustix::termios::LocalModes::ECHO),
            "echo is off while the password is typed"
        );
        // What the terminal sends to its foreground program on Ctrl-C.
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
        let output = child.wait_with_output().expect("output");

        assert_eq!(output.status.code(), Some(130));
        assert!(output.stdout.is_empty());
        let restored = rustix::termios::tcgetattr(&settings).expect("tcgetattr");
        assert!(
            restored
                .local_modes
                .contains(rustix::termios::LocalModes::ECHO),
            "echo is back after Ctrl-C"
        );
    }

    /// What `serve` shows on a terminal as its standard error before it stops.
    fn serve_on_a_terminal(no_color: Option<&str>) -> String {
        let (_dir, path) = config_file(WARNS_THEN_STOPS);
        let (terminal, program_side) = terminal();
        let mut command = Command::new(env!("CARGO_BIN_EXE_breakwater"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(program_side));
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let mut child = command.spawn().expect("run breakwater");
        // The command holds the program's side of the terminal until dropped.
        drop(command);
        child.wait().expect("wait");
        terminal.everything()
    }

    #[test]
    fn logs_on_a_terminal_are_coloured() {
        let screen = serve_on_a_terminal(None);

        assert!(screen.contains("WARN"), "{screen:?}");
        assert!(screen.contains('\u{1b}'), "{screen:?}");
    }

    #[test]
    fn logs_on_a_terminal_carry_no_colour_codes_when_no_color_is_set() {
        let screen = serve_on_a_terminal(Some("1"));

        assert!(screen.contains("WARN"), "{screen:?}");
        assert!(!screen.contains('\u{1b}'), "{screen:?}");
    }
}
