//! The `breakwater` command line: parses arguments, sets up logging, and calls into the
//! library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use breakwater::app::Application;
use breakwater::audit::{AuditLog, ExportFormat};
use breakwater::config::{Config, ConfigError, DEFAULT_CONFIG_PATH, StoreConfig};
use breakwater::core::clock::SystemClock;
use breakwater::demo::{Demo, DemoError, DemoOptions};
use clap::{Parser, Subcommand, ValueEnum};

/// `breakwater --version`: the release and the commit it was built from (see `build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BREAKWATER_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "breakwater",
    version = VERSION,
    about = "Incident-response chat bot: deploy summaries for alerts and one-click, audited rollbacks"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Configuration file.
    #[arg(long, env = "BREAKWATER_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the bot.
    Serve(ConfigArg),
    /// Validate the configuration and the files it names: exit 0, or print each problem
    /// with its key path and exit 1.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
        /// Also connect to the database (database.url), changing nothing in it.
        #[arg(long)]
        connect: bool,
    },
    /// Run the whole bot with no accounts: the web console as the chat, a simulated
    /// backend with a deploy history, and a scripted alert shortly after start.
    Demo {
        /// Address of the console and the API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Keep the database in this directory instead of a temporary one.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Read a password and print its argon2id hash, for console.users[].password_hash. On a
    /// terminal it is asked for twice without being shown; otherwise the first line of
    /// standard input is read.
    HashPassword,
    /// Write a consistent copy of a SQLite store to FILE while the bot keeps running
    /// (PostgreSQL: use pg_dump).
    Backup {
        #[command(flatten)]
        config: ConfigArg,
        /// Where the copy goes; must not exist yet.
        #[arg(long)]
        to: PathBuf,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Incidents (alert groups) after the fact.
    Incident {
        #[command(subcommand)]
        command: IncidentCommand,
    },
}

#[derive(Subcommand)]
enum IncidentCommand {
    /// Write an incident's timeline and postmortem draft to standard output.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// The incident's id (its alert group's id, as shown by `/breakwater timeline`).
        id: i64,
        #[arg(long, value_enum, default_value_t = IncidentFormat::Markdown)]
        format: IncidentFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum IncidentFormat {
    Markdown,
    Json,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain: exit 0 with the count and head hash, or 1 naming the first bad record.
    Verify(ConfigArg),
    /// Write the audit log to standard output.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        /// Only records at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Jsonl,
    Csv,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("breakwater=info,warn"));
    // Colour only for a person at a terminal: escape codes in a journal or a log file are
    // noise, and NO_COLOR (https://no-color.org) turns them off everywhere.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if std::env::var("BREAKWATER_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The database and audit sections only: what the offline commands need, so that they
/// run without the chat and API secrets of `serve`.
fn load_store_config(arg: &ConfigArg) -> Result<StoreConfig, ExitCode> {
    StoreConfig::load(&arg.config).map_err(|error| config_failed(arg, &error))
}

/// Prints why the configuration cannot be used: a file that cannot be read says so (and
/// how to name another) on its own; problems in it follow the file's name.
fn config_failed(arg: &ConfigArg, error: &ConfigError) -> ExitCode {
    match error {
        ConfigError::Read { .. } => eprintln!("error: {error}"),
        ConfigError::Invalid(_) => eprintln!("{}: {error}", arg.config.display()),
    }
    ExitCode::from(1)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Commands::Serve(arg) => {
            let config = match Config::load(&arg.config) {
                Ok(config) => config,
                Err(error) => return Ok(config_failed(&arg, &error)),
            };
            for warning in &config.warnings {
                tracing::warn!("{}: {warning}", arg.config.display());
            }
            Application::build(config)
                .await?
                .run_until_stopped()
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::CheckConfig {
            config: arg,
            connect,
        } => check_config(&arg, connect).await,
        Commands::Audit { command } => audit(command).await,
        Commands::Incident { command } => incident(command).await,
        Commands::Backup { config, to } => backup(&config, &to).await,
        Commands::Demo { listen, data } => demo(listen, data).await,
        Commands::HashPassword => hash_password().await,
    }
}

async fn check_config(arg: &ConfigArg, connect: bool) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&arg.config) {
        Ok(config) => config,
        Err(error) => {
            for problem in error.problems() {
                println!("{problem}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let mut problems = breakwater::backends::credential_problems(&config);
    problems.extend(config.file_problems().iter().map(ToString::to_string));
    if connect {
        breakwater::app::install_tls_provider();
        let url = config.database.url.expose();
        match breakwater::store::check_database(url).await {
            Ok(()) => println!("database.url: ok ({})", breakwater::store::redact_url(url)),
            Err(error) => problems.push(error.to_string()),
        }
    }
    if !problems.is_empty() {
        for problem in problems {
            println!("{problem}");
        }
        return Ok(ExitCode::from(1));
    }
    for warning in &config.warnings {
        println!("warning: {warning}");
    }
    println!(
        "{}: ok ({} services, {} backends)",
        arg.config.display(),
        config.services.len(),
        config.backends.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn demo(listen: std::net::SocketAddr, data: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let demo = match Demo::build(DemoOptions {
        listen,
        data_dir: data,
        ..DemoOptions::default()
    })
    .await
    {
        Ok(demo) => demo,
        Err(error @ DemoError::Start(_)) => {
            eprintln!("error: {error}");
            eprintln!("(another address: breakwater demo --listen 127.0.0.1:8081)");
            return Ok(ExitCode::from(1));
        }
        Err(error) => return Err(error.into()),
    };
    println!(
        "breakwater demo is running (started in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("  Console:  {}", demo.url());
    println!("  User:     {}", demo.user());
    println!("  Password: {}", demo.password());
    println!();
    println!(
        "  An alert for {} fires in about 10 seconds. Roll it back from the console.",
        demo.incident()
    );
    println!(
        "  Another fires for {}, in the middle of a canary: abort the rollout.",
        demo.canary()
    );
    println!("  Data: {} (Ctrl-C to stop)", demo.data_dir().display());
    std::io::Write::flush(&mut std::io::stdout())?;
    demo.run_until(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn hash_password() -> anyhow::Result<ExitCode> {
    let input = if std::io::stdin().is_terminal() {
        let first = read_hidden("Password: ")
            .await
            .context("reading the password")?;
        let again = read_hidden("Repeat the password: ")
            .await
            .context("reading the password")?;
        if first != again {
            eprintln!("error: the passwords do not match; nothing was hashed");
            return Ok(ExitCode::from(1));
        }
        first
    } else {
        let mut input = String::new();
        std::io::stdin()
            .read_line(&mut input)
            .context("reading the password from standard input")?;
        input
    };
    let password = input.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("error: the password on standard input is empty");
        return Ok(ExitCode::from(1));
    }
    let hash = breakwater::chat::console::auth::hash_password(password)
        .map_err(|error| anyhow::anyhow!("hashing failed: {error}"))?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}

/// Asks for a line on the terminal at standard input without echoing what is typed (the
/// Enter still moves to the next line), then restores the terminal as it was — also when the
/// person gives up with Ctrl-C, which would otherwise leave their shell without echo.
#[cfg(unix)]
async fn read_hidden(prompt: &str) -> std::io::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    use std::io::Write;
    use std::os::fd::AsFd;
    use tokio::signal::unix::{SignalKind, signal};

    /// Puts the saved settings back however reading ends.
    struct Restore(rustix::termios::Termios);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.0);
        }
    }

    // Ctrl-C is caught from before echo goes off until the terminal is restored.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let stdin = std::io::stdin();
    let saved = tcgetattr(stdin.as_fd())?;
    let mut hidden = saved.clone();
    hidden.local_modes.remove(LocalModes::ECHO);
    hidden.local_modes.insert(LocalModes::ECHONL);
    // Echo goes off before the prompt shows, so nothing typed after it is seen.
    tcsetattr(stdin.as_fd(), OptionalActions::Now, &hidden)?;
    let restore = Restore(saved);
    let mut stderr = std::io::stderr();
    stderr.write_all(prompt.as_bytes())?;
    stderr.flush()?;
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    });
    tokio::select! {
        line = read => line.map_err(std::io::Error::other)?,
        _ = interrupt.recv() => {
            drop(restore);
            eprintln!();
            // The blocked read cannot be cancelled; leave at once, as Ctrl-C would have.
            std::process::exit(130);
        }
    }
}

/// Without termios the password is read as typed.
#[cfg(not(unix))]
async fn read_hidden(prompt: &str) -> std::io::Result<String> {
    eprint!("{prompt}");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line)
}

async fn audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    let arg = match &command {
        AuditCommand::Verify(arg) | AuditCommand::Export { config: arg, .. } => arg,
    };
    let (_, log) = match open_audit_log(arg).await? {
        Ok(opened) => opened,
        Err(code) => return Ok(code),
    };
    match command {
        AuditCommand::Verify(_) => {
            let report = log.verify().await?;
            match report.problem {
                None => {
                    println!(
                        "audit chain intact: {} records, head {}",
                        report.count, report.head_hash
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some(problem) => {
                    println!(
                        "audit chain BROKEN at {problem} ({} records verified before it)",
                        report.count
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::Export { format, since, .. } => {
            let format = match format {
                Format::Jsonl => ExportFormat::Jsonl,
                Format::Csv => ExportFormat::Csv,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            log.export(format, since, &mut out).await?;
            std::io::Write::flush(&mut out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The store and its audit log from the database and audit sections only.
async fn open_audit_log(
    arg: &ConfigArg,
) -> anyhow::Result<Result<(std::sync::Arc<dyn breakwater::store::Store>, AuditLog), ExitCode>> {
    let config = match load_store_config(arg) {
        Ok(config) => config,
        Err(code) => return Ok(Err(code)),
    };
    breakwater::app::install_tls_provider();
    // The error is already one line naming database.url, the cause and the fix.
    let store = breakwater::store::connect(config.database.url.expose()).await?;
    let sealer = breakwater::app::audit_sealer(&config.audit);
    let log = AuditLog::new(store.clone(), sealer, std::sync::Arc::new(SystemClock));
    Ok(Ok((store, log)))
}

async fn incident(command: IncidentCommand) -> anyhow::Result<ExitCode> {
    let IncidentCommand::Export { config, id, format } = command;
    let (store, log) = match open_audit_log(&config).await? {
        Ok(opened) => opened,
        Err(code) => return Ok(code),
    };
    let Some(incident) = breakwater::core::incident::load(&store, &log, id, true).await? else {
        eprintln!(
            "error: no incident {id} in the database that database.url in {} names; `/breakwater timeline` shows the latest incident and its id",
            config.config.display()
        );
        return Ok(ExitCode::from(1));
    };
    let text = match format {
        IncidentFormat::Markdown => breakwater::core::incident::to_markdown(&incident),
        IncidentFormat::Json => breakwater::core::incident::to_json(&incident),
    };
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

async fn backup(arg: &ConfigArg, to: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = match load_store_config(arg) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    match breakwater::store::backup_sqlite(config.database.url.expose(), to).await {
        Ok(()) => {
            println!("backup written to {}", to.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(1))
        }
    }
}
