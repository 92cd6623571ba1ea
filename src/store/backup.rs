//! `breakwater backup --to FILE`: an online, consistent copy of a SQLite store.
//!
//! `VACUUM INTO` copies the database as one read transaction sees it, so the copy is
//! consistent while the bot keeps writing (WAL mode lets it write meanwhile), and the copy
//! is compacted and self-contained (no `-wal` file beside it). PostgreSQL has its own
//! tool for this, `pg_dump`, which the error for a `postgres://` URL names.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

/// Why a backup was not written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "database.url is PostgreSQL: back it up with pg_dump (pg_dump --format=custom --file=breakwater.dump \"$DATABASE_URL\")"
    )]
    Postgres,
    #[error("database URL {0:?} is not sqlite://")]
    UnsupportedUrl(String),
    #[error("{0} already exists; a backup never overwrites a file")]
    TargetExists(String),
    #[error("the backup path {0} is not valid UTF-8")]
    TargetPath(String),
    /// Names the file and what to change, like every other database that cannot be opened.
    #[error("{0}")]
    Open(super::OpenError),
    #[error("backup failed: {0}")]
    Copy(sqlx::Error),
}

/// How long the copy waits for a writer holding the file's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Copies the SQLite database `url` names to `to`, which must not exist. The source is
/// opened read-only and never created, so a mistyped path fails instead of backing up
/// a new empty database.
pub async fn backup_sqlite(url: &str, to: &Path) -> Result<(), BackupError> {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        return Err(BackupError::Postgres);
    }
    if !url.starts_with("sqlite:") || url.contains(":memory:") {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        return Err(BackupError::UnsupportedUrl(format!("{scheme}:…")));
    }
    if to.exists() {
        return Err(BackupError::TargetExists(to.display().to_string()));
    }
    let target = to
        .to_str()
        .ok_or_else(|| BackupError::TargetPath(to.display().to_string()))?;
    let cannot_open =
        |error: sqlx::Error| BackupError::Open(super::open::existing_sqlite(url, &error));
    let options = SqliteConnectOptions::from_str(url)
        .map_err(cannot_open)?
        .create_if_missing(false)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT);
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .map_err(cannot_open)?;
    let copied = sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut connection)
        .await
        .map_err(BackupError::Copy);
    let _ = connection.close().await;
    copied.map(|_| ())
}
