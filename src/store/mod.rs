//! Persistence behind one trait: deploys, alerts and their groups, rollback plans with
//! conditional state transitions, processed-event claims, the audit chain, leases (a
//! role one replica holds at a time), and snapshots of watched ConfigMaps (for Restore).
//! SQLite (default) and PostgreSQL (several replicas)
//! implement it and pass the same tests. `backup` copies a SQLite store online; `open`
//! turns a database that cannot be opened into one line with the cause and the fix.
//!
//! Times are stored as integer microseconds since the Unix epoch and structured values
//! as JSON text, so both databases hold the same bytes and compare times the same way.

use std::sync::Arc;

pub use crate::core::store::{
    AlertGroup, CanaryRollback, ConfigObject, ConfigSnapshot, ConsoleMessage, ConsolePlace,
    ConsoleSession, DeployQuery, GroupThread, IncidentHistory, OUTAGE_LOG_EVERY, RecordedAlert,
    RecordedDeploy, SNAPSHOTS_KEPT, Store, StoreError, StoreResult, log_unavailable,
};

mod backup;
mod canary;
mod config_snapshots;
mod forward;
mod lease;
mod open;
mod postgres;
mod rows;
mod sql;
mod sqlite;

pub use backup::{BackupError, backup_sqlite};
pub use lease::DISCORD_GATEWAY_LEASE;
pub use open::{
    CONNECT_TIMEOUT, OpenCause, OpenError, check as check_database, redact as redact_url,
};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            Self::Unavailable(Box::new(error))
        } else {
            Self::Database(Box::new(error))
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migration(Box::new(error))
    }
}

impl From<OpenError> for StoreError {
    fn from(error: OpenError) -> Self {
        Self::Open(Box::new(error))
    }
}

/// Sorts a driver error into "the database is not there" and everything else.
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        // The server's side of the conversation broke off or made no sense: a connection
        // cut mid-handshake, or something that is not the database at database.url.
        | sqlx::Error::Protocol(_)
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| unavailable_code(&code)),
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs and SQLite result codes that mean "not now" rather than "wrong".
fn unavailable_code(code: &str) -> bool {
    // PostgreSQL: class 08 connection exception; 57P01-57P03 admin/crash shutdown and
    // cannot connect now; 53300 too many connections; 53100 disk full; 58030 I/O error;
    // 25006 a read-only standby after a failover.
    if code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "53100" | "58030" | "25006"
        )
    {
        return true;
    }
    // SQLite reports its (extended) result code as a number; the low byte is the primary
    // code: 5 BUSY, 6 LOCKED, 10 IOERR, 13 FULL, 14 CANTOPEN.
    code.parse::<i64>()
        .is_ok_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 13 | 14))
}

/// Opens the store a `database.url` names: `sqlite:…` (the default, one process) or
/// `postgres://…` / `postgresql://…` (several replicas sharing one database). A failure
/// is [`StoreError::Open`], one line saying what is wrong and what to change.
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(open::sqlite(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(open::postgres(url).await?))
    } else {
        // Only the scheme: the rest of a URL may carry a password.
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        Err(StoreError::UnsupportedUrl(format!("{scheme}:…")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_that_cannot_be_reached_is_unavailable() {
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            sqlx::Error::Protocol("unexpected end of file".into()),
        ] {
            let error = StoreError::from(error);
            assert!(error.is_unavailable(), "{error}");
            assert!(error.to_string().contains("database.url"), "{error}");
        }
    }

    #[test]
    fn a_wrong_query_or_row_is_not_an_outage() {
        for error in [
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("x".into()),
        ] {
            assert!(!StoreError::from(error).is_unavailable());
        }
    }

    #[test]
    fn shutdown_and_connection_codes_are_outages_and_constraint_codes_are_not() {
        for code in [
            "57P01", "57P03", "08006", "08001", "53300", "5", "261", "14", "10",
        ] {
            assert!(unavailable_code(code), "{code}");
        }
        for code in ["23505", "42P01", "2067", "19", "1"] {
            assert!(!unavailable_code(code), "{code}");
        }
    }
}
