//! Snapshots of the ConfigMaps breakwater watches, so a configuration change made in place
//! can be restored: each state the watch sees (its first sight, then every change of its
//! data) is kept once per object and resourceVersion. Bounded: the newest
//! [`SNAPSHOTS_KEPT`] of each object are kept and older ones deleted as new ones arrive, so
//! a restore can go back at most that many changes. Secrets are never snapshotted.

use std::collections::BTreeMap;

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use sqlx::{Database, Decode, Executor, FromRow, IntoArguments};

use super::sql::{Bind, RowsAffected, Sql, micros};
use super::{ConfigObject, ConfigSnapshot, SNAPSHOTS_KEPT, StoreError, StoreResult};

/// The stored data column: both maps in one JSON object.
#[derive(Serialize, Deserialize)]
struct Stored {
    data: BTreeMap<String, String>,
    #[serde(rename = "binaryData", default)]
    binary_data: BTreeMap<String, String>,
}

#[derive(FromRow)]
pub(crate) struct SnapshotRow {
    id: i64,
    backend: String,
    namespace: String,
    name: String,
    resource_version: String,
    data: String,
    taken_at: i64,
}

impl TryFrom<SnapshotRow> for ConfigSnapshot {
    type Error = StoreError;

    fn try_from(row: SnapshotRow) -> StoreResult<Self> {
        let stored: Stored = serde_json::from_str(&row.data)
            .map_err(|e| StoreError::Corrupt(format!("config snapshot {} data: {e}", row.id)))?;
        let taken_at = DateTime::from_timestamp_micros(row.taken_at).ok_or_else(|| {
            StoreError::Corrupt(format!("config snapshot {} time is out of range", row.id))
        })?;
        Ok(Self {
            id: row.id,
            object: ConfigObject {
                backend: row.backend,
                namespace: row.namespace,
                name: row.name,
            },
            resource_version: row.resource_version,
            data: stored.data,
            binary_data: stored.binary_data,
            taken_at,
        })
    }
}

macro_rules! snapshot_columns {
    () => {
        "id, backend, namespace, name, resource_version, data, taken_at"
    };
}

impl<DB> Sql<DB>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    i64: Bind<DB> + for<'r> Decode<'r, DB>,
    String: Bind<DB> + for<'r> Decode<'r, DB>,
    SnapshotRow: for<'r> FromRow<'r, DB::Row>,
{
    /// Keeps `snapshot` unless that object's resourceVersion is already kept, then drops
    /// the object's snapshots beyond the newest [`SNAPSHOTS_KEPT`]. True when it was new.
    pub(crate) async fn record_config_snapshot(
        conn: &mut DB::Connection,
        snapshot: &ConfigSnapshot,
    ) -> StoreResult<bool> {
        let stored = serde_json::to_string(&Stored {
            data: snapshot.data.clone(),
            binary_data: snapshot.binary_data.clone(),
        })
        .map_err(|e| StoreError::Corrupt(format!("cannot encode a config snapshot: {e}")))?;
        let object = &snapshot.object;
        let inserted = sqlx::query(
            "INSERT INTO config_snapshots (backend, namespace, name, resource_version, data, taken_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (backend, namespace, name, resource_version) DO NOTHING",
        )
        .bind(object.backend.clone())
        .bind(object.namespace.clone())
        .bind(object.name.clone())
        .bind(snapshot.resource_version.clone())
        .bind(stored)
        .bind(micros(snapshot.taken_at))
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            sqlx::query(
                "DELETE FROM config_snapshots \
                 WHERE backend = $1 AND namespace = $2 AND name = $3 AND id NOT IN ( \
                     SELECT id FROM config_snapshots \
                     WHERE backend = $4 AND namespace = $5 AND name = $6 \
                     ORDER BY taken_at DESC, id DESC LIMIT $7)",
            )
            .bind(object.backend.clone())
            .bind(object.namespace.clone())
            .bind(object.name.clone())
            .bind(object.backend.clone())
            .bind(object.namespace.clone())
            .bind(object.name.clone())
            .bind(SNAPSHOTS_KEPT)
            .execute(&mut *conn)
            .await?;
        }
        Ok(inserted)
    }

    /// The object's kept snapshots, newest first.
    pub(crate) async fn config_snapshots(
        conn: &mut DB::Connection,
        object: &ConfigObject,
    ) -> StoreResult<Vec<ConfigSnapshot>> {
        let rows: Vec<SnapshotRow> = sqlx::query_as(concat!(
            "SELECT ",
            snapshot_columns!(),
            " FROM config_snapshots WHERE backend = $1 AND namespace = $2 AND name = $3 \
             ORDER BY taken_at DESC, id DESC"
        ))
        .bind(object.backend.clone())
        .bind(object.namespace.clone())
        .bind(object.name.clone())
        .fetch_all(conn)
        .await?;
        rows.into_iter().map(ConfigSnapshot::try_from).collect()
    }

    pub(crate) async fn config_snapshot(
        conn: &mut DB::Connection,
        id: i64,
    ) -> StoreResult<Option<ConfigSnapshot>> {
        let row: Option<SnapshotRow> = sqlx::query_as(concat!(
            "SELECT ",
            snapshot_columns!(),
            " FROM config_snapshots WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await?;
        row.map(ConfigSnapshot::try_from).transpose()
    }
}
