//! Opening the database at start-up (and testing it for `check-config --connect`) with
//! errors that say what to do: one line naming `database.url` without its password, the
//! cause in plain words, and what to change. The driver alone says "unable to open
//! database file" with no path, or, for a PostgreSQL that is down, nothing until the pool
//! gives up with "pool timed out": so SQLite's file and directory are examined when the
//! driver fails, and PostgreSQL is first tried with one plain connection under a short
//! timeout, whose error still carries the cause the pool's retries would hide.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use super::{PostgresStore, SqliteStore, StoreError};
use crate::config::io_message;

/// How long start-up waits for PostgreSQL to answer: a database that is down must fail
/// the start within seconds, not after the pool's retries.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The database named by `database.url` cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot open the database {url}: {cause}")]
pub struct OpenError {
    /// `database.url` without its password.
    pub url: String,
    pub cause: OpenCause,
}

/// Why the database cannot be opened, each with the change that fixes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenCause {
    #[error(
        "the directory {} does not exist; create it or change the path in database.url",
        .0.display()
    )]
    DirectoryMissing(PathBuf),
    #[error(
        "permission denied on {}; let the user breakwater runs as read and write it, or \
         change the path in database.url",
        .0.display()
    )]
    PermissionDenied(PathBuf),
    #[error(
        "{} is read-only; breakwater writes its database there: make it writable or change \
         the path in database.url",
        .0.display()
    )]
    ReadOnly(PathBuf),
    #[error("{} does not exist; correct the path in database.url", .0.display())]
    FileMissing(PathBuf),
    #[error(
        "{} is a directory; database.url must name a file, such as sqlite://{}/breakwater.db",
        .0.display(),
        .0.display()
    )]
    IsDirectory(PathBuf),
    #[error("{} is not a SQLite database; change the path in database.url", .0.display())]
    NotADatabase(PathBuf),
    #[error(
        "connection refused by {0}; start PostgreSQL there or correct the host and port in \
         database.url"
    )]
    Refused(String),
    #[error("unknown host {0}; correct the host in database.url")]
    UnknownHost(String),
    #[error(
        "no answer from {0} within {seconds} s; check that PostgreSQL runs there and is \
         reachable from this host, or correct database.url",
        seconds = CONNECT_TIMEOUT.as_secs()
    )]
    Timeout(String),
    #[error("authentication failed for user {0}; correct the user or password in database.url")]
    AuthenticationFailed(String),
    #[error(
        "database {0} does not exist; create it (createdb {0}) or correct the database name \
         in database.url"
    )]
    NoDatabase(String),
    #[error(
        "permission denied for user {user} ({message}); grant it or use another user in database.url"
    )]
    NotAllowed { user: String, message: String },
    #[error("the server accepts only reads (a standby?); point database.url at the primary")]
    ReadOnlyServer,
    #[error("TLS failed ({0}); check sslmode and sslrootcert in database.url")]
    Tls(String),
    #[error("{0}; check database.url")]
    Other(String),
}

/// `url` as it may be shown: a PostgreSQL URL without its password (in the user part or
/// a `password=` parameter); SQLite URLs name a file and carry none.
pub fn redact(url: &str) -> String {
    if url.starts_with("sqlite:") {
        return url.to_owned();
    }
    let Ok(mut parsed) = url::Url::parse(url) else {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        return format!("{scheme}:…");
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(None);
    }
    if parsed.query_pairs().any(|(key, _)| key == "password") {
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(key, _)| key != "password")
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    parsed.to_string()
}

/// Opens (creating if missing) the SQLite database `url` names, migrated.
pub(super) async fn sqlite(url: &str) -> Result<SqliteStore, OpenError> {
    let fail = |cause| OpenError {
        url: redact(url),
        cause,
    };
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|error| fail(OpenCause::Other(driver_message(&error))))?;
    let path = (!super::sqlite::is_in_memory(url)).then(|| options.get_filename().to_owned());
    if let Some(cause) = path.as_deref().and_then(file_problem) {
        return Err(fail(cause));
    }
    SqliteStore::connect(url).await.map_err(|error| {
        fail(match &path {
            Some(path) => sqlite_cause(path, &error),
            None => store_cause(&error, |e| OpenCause::Other(driver_message(e))),
        })
    })
}

/// Connects to the PostgreSQL database `url` names and migrates it, failing within
/// [`CONNECT_TIMEOUT`] with the cause when the server cannot be reached.
pub(super) async fn postgres(url: &str) -> Result<PostgresStore, OpenError> {
    let options = postgres_options(url)?;
    probe_postgres(url, &options).await?;
    PostgresStore::connect(url)
        .await
        .map_err(|error| OpenError {
            url: redact(url),
            cause: store_cause(&error, |e| postgres_cause(&options, e)),
        })
}

/// Whether `serve` could open the database, changing nothing: PostgreSQL accepts a
/// connection; an existing SQLite file opens for reading and writing, or its directory
/// lets breakwater create one.
pub async fn check(url: &str) -> Result<(), OpenError> {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let options = postgres_options(url)?;
        return probe_postgres(url, &options).await;
    }
    let fail = |cause| OpenError {
        url: redact(url),
        cause,
    };
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|error| fail(OpenCause::Other(driver_message(&error))))?;
    if super::sqlite::is_in_memory(url) {
        return Ok(());
    }
    let path = options.get_filename().to_owned();
    if let Some(cause) = file_problem(&path) {
        return Err(fail(cause));
    }
    if !path.exists() {
        return match tempfile::tempfile_in(directory_of(&path)) {
            Ok(_) => Ok(()),
            Err(error) => Err(fail(io_cause(&directory_of(&path), &error))),
        };
    }
    let opened = async {
        let mut connection =
            SqliteConnection::connect_with(&options.create_if_missing(false)).await?;
        sqlx::query("SELECT count(*) FROM sqlite_master")
            .execute(&mut connection)
            .await?;
        connection.close().await
    };
    opened
        .await
        .map_err(|error| fail(sqlite_cause(&path, &StoreError::from(error))))
}

/// Why a command that reads an existing SQLite database and never creates one (`backup`)
/// could not open the one `url` names.
pub(super) fn existing_sqlite(url: &str, error: &sqlx::Error) -> OpenError {
    let path = SqliteConnectOptions::from_str(url)
        .map(|options| options.get_filename().to_owned())
        .ok();
    let cause = match path {
        Some(path) if directory_of(&path).is_dir() && !path.exists() => {
            OpenCause::FileMissing(shown(&path))
        }
        Some(path) => sqlite_driver_cause(&path, error),
        None => OpenCause::Other(driver_message(error)),
    };
    OpenError {
        url: redact(url),
        cause,
    }
}

fn postgres_options(url: &str) -> Result<PgConnectOptions, OpenError> {
    url.parse().map_err(|error| OpenError {
        url: redact(url),
        cause: OpenCause::Other(driver_message(&error)),
    })
}

/// One connection, under [`CONNECT_TIMEOUT`]: the pool would retry a refused connection
/// until its own timeout and then report only that it timed out.
async fn probe_postgres(url: &str, options: &PgConnectOptions) -> Result<(), OpenError> {
    let cause =
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                return Ok(());
            }
            Ok(Err(error)) => postgres_cause(options, &error),
            Err(_) => OpenCause::Timeout(server_of(options)),
        };
    Err(OpenError {
        url: redact(url),
        cause,
    })
}

/// Where the PostgreSQL server is: its socket, or host and port.
fn server_of(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

fn postgres_cause(options: &PgConnectOptions, error: &sqlx::Error) -> OpenCause {
    let user = options.get_username().to_owned();
    match error {
        sqlx::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused | ErrorKind::NotFound => {
                OpenCause::Refused(server_of(options))
            }
            ErrorKind::TimedOut => OpenCause::Timeout(server_of(options)),
            _ if io.to_string().starts_with("failed to lookup address") => {
                OpenCause::UnknownHost(options.get_host().to_owned())
            }
            _ => OpenCause::Other(driver_message(error)),
        },
        sqlx::Error::PoolTimedOut => OpenCause::Timeout(server_of(options)),
        sqlx::Error::Tls(tls) => OpenCause::Tls(tls.to_string()),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01" | "28000") => OpenCause::AuthenticationFailed(user),
            Some("3D000") => {
                OpenCause::NoDatabase(options.get_database().unwrap_or(user.as_str()).to_owned())
            }
            Some("42501") => OpenCause::NotAllowed {
                user,
                message: db.message().to_owned(),
            },
            Some("25006") => OpenCause::ReadOnlyServer,
            _ => OpenCause::Other(db.message().to_owned()),
        },
        _ => OpenCause::Other(driver_message(error)),
    }
}

/// What is wrong with the file or its directory before SQLite is asked, if anything.
fn file_problem(path: &Path) -> Option<OpenCause> {
    let directory = directory_of(path);
    match std::fs::metadata(&directory) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Some(OpenCause::DirectoryMissing(shown(&directory))),
        Err(error) => return Some(io_cause(&directory, &error)),
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Some(OpenCause::IsDirectory(shown(path))),
        Ok(_) => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .err()
            .map(|error| io_cause(path, &error)),
        Err(error) if error.kind() == ErrorKind::NotFound => None,
        Err(error) => Some(io_cause(path, &error)),
    }
}

/// SQLite failed although the file and directory looked usable: the directory may refuse
/// the new file (or the journal beside it), or the file is not a database.
fn sqlite_cause(path: &Path, error: &StoreError) -> OpenCause {
    store_cause(error, |error| sqlite_driver_cause(path, error))
}

fn sqlite_driver_cause(path: &Path, error: &sqlx::Error) -> OpenCause {
    if let Some(cause) = file_problem(path) {
        return cause;
    }
    if let Err(io) = tempfile::tempfile_in(directory_of(path)) {
        return io_cause(&directory_of(path), &io);
    }
    match error {
        sqlx::Error::Database(db) => match db.code().and_then(|c| c.parse::<i64>().ok()) {
            // SQLITE_READONLY, SQLITE_NOTADB (primary codes, in the low byte).
            Some(code) if code & 0xff == 8 => OpenCause::ReadOnly(shown(path)),
            Some(code) if code & 0xff == 26 => OpenCause::NotADatabase(shown(path)),
            _ => OpenCause::Other(db.message().to_owned()),
        },
        other => OpenCause::Other(driver_message(other)),
    }
}

/// The cause in a store error: the driver's error as `driver` reads it, or a migration
/// that could not run.
fn store_cause(error: &StoreError, driver: impl Fn(&sqlx::Error) -> OpenCause) -> OpenCause {
    use sqlx::migrate::MigrateError;
    match error {
        StoreError::Unavailable(cause) | StoreError::Database(cause) => {
            match cause.downcast_ref::<sqlx::Error>() {
                Some(error) => driver(error),
                None => OpenCause::Other(cause.to_string()),
            }
        }
        StoreError::Migration(cause) => match cause.downcast_ref::<MigrateError>() {
            Some(MigrateError::Execute(error) | MigrateError::ExecuteMigration(error, _)) => {
                driver(error)
            }
            Some(MigrateError::VersionMissing(_) | MigrateError::VersionTooNew(..)) => {
                OpenCause::Other(
                    "it was written by a newer breakwater (its schema has migrations this \
                     version does not know); run that version or restore a backup"
                        .to_owned(),
                )
            }
            _ => OpenCause::Other(error.to_string()),
        },
        other => OpenCause::Other(other.to_string()),
    }
}

fn io_cause(path: &Path, error: &std::io::Error) -> OpenCause {
    match error.kind() {
        // Only directories are looked up without treating "missing" as "to be created".
        ErrorKind::NotFound => OpenCause::DirectoryMissing(shown(path)),
        ErrorKind::PermissionDenied => OpenCause::PermissionDenied(shown(path)),
        ErrorKind::ReadOnlyFilesystem => OpenCause::ReadOnly(shown(path)),
        ErrorKind::IsADirectory => OpenCause::IsDirectory(shown(path)),
        _ => OpenCause::Other(format!("{}: {}", shown(path).display(), io_message(error))),
    }
}

/// The directory a database file is in; `.` for a bare file name.
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// A path as shown in messages: absolute, since a relative one depends on the directory
/// breakwater was started in.
fn shown(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// The driver's message without its wrapping ("error returned from database:", SQLite's
/// result code), which says nothing to an operator.
fn driver_message(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) => io_message(io),
        sqlx::Error::Configuration(inner) | sqlx::Error::Tls(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_is_shown_without_its_password() {
        assert_eq!(
            redact("postgres://app:hunter2@db.internal:5432/breakwater"),
            "postgres://app@db.internal:5432/breakwater"
        );
        assert_eq!(
            redact("postgres://app@db/breakwater?sslmode=require&password=hunter2"),
            "postgres://app@db/breakwater?sslmode=require"
        );
        assert_eq!(
            redact("sqlite:///var/lib/breakwater/breakwater.db"),
            "sqlite:///var/lib/breakwater/breakwater.db"
        );
    }

    #[test]
    fn file_permission_and_read_only_errors_name_the_file_and_the_setting() {
        let path = Path::new("/var/lib/breakwater/breakwater.db");
        let denied = io_cause(path, &std::io::Error::from(ErrorKind::PermissionDenied));
        let read_only = io_cause(path, &std::io::Error::from(ErrorKind::ReadOnlyFilesystem));

        assert_eq!(
            denied.to_string(),
            "permission denied on /var/lib/breakwater/breakwater.db; let the user breakwater \
             runs as read and write it, or change the path in database.url"
        );
        assert_eq!(
            read_only.to_string(),
            "/var/lib/breakwater/breakwater.db is read-only; breakwater writes its database \
             there: make it writable or change the path in database.url"
        );
    }

    #[test]
    fn a_refused_postgres_connection_names_the_server() {
        let options: PgConnectOptions = "postgres://app@db.internal:6543/bw".parse().expect("url");
        let refused = sqlx::Error::Io(std::io::Error::from(ErrorKind::ConnectionRefused));

        assert_eq!(
            postgres_cause(&options, &refused),
            OpenCause::Refused("db.internal:6543".to_owned())
        );
    }
}
