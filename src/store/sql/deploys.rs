//! Deploys: recording and merging them, and reading them back.

use super::*;

impl<DB> Sql<DB>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    i64: Bind<DB> + for<'r> Decode<'r, DB>,
    Option<i64>: Bind<DB>,
    String: Bind<DB> + for<'r> Decode<'r, DB>,
    Option<String>: Bind<DB>,
    &'static str: Bind<DB>,
    DeployRow: for<'r> FromRow<'r, DB::Row>,
    GroupRow: for<'r> FromRow<'r, DB::Row>,
    AlertRow: for<'r> FromRow<'r, DB::Row>,
    ThreadRow: for<'r> FromRow<'r, DB::Row>,
    PlanRow: for<'r> FromRow<'r, DB::Row>,
    ConfirmationRow: for<'r> FromRow<'r, DB::Row>,
    AuditRow: for<'r> FromRow<'r, DB::Row>,
    HeadRow: for<'r> FromRow<'r, DB::Row>,
    ResolvedRow: for<'r> FromRow<'r, DB::Row>,
    PlanGroupRow: for<'r> FromRow<'r, DB::Row>,
    IdRow: for<'r> FromRow<'r, DB::Row>,
    MaxRow: for<'r> FromRow<'r, DB::Row>,
    ConsoleMessageRow: for<'r> FromRow<'r, DB::Row>,
    ConsoleSessionRow: for<'r> FromRow<'r, DB::Row>,
{
    /// Inserts or merges a deploy. Run inside a transaction: the insert and the merge must
    /// see the same row.
    pub(crate) async fn record_deploy(
        conn: &mut DB::Connection,
        deploy: &Deploy,
    ) -> StoreResult<RecordedDeploy> {
        let values = DeployValues::new(deploy)?;
        let inserted: Option<DeployRow> = sqlx::query_as(concat!(
            "INSERT INTO deploys (service, service_key, environment, environment_key, version, \
             previous_version, revision, commit_sha, author, description, url, started_at, \
             finished_at, status, changes, config_changes, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (service_key, environment_key, version, started_at) DO NOTHING \
             RETURNING ",
            deploy_columns!()
        ))
        .bind(values.service)
        .bind(values.service_key.clone())
        .bind(values.environment)
        .bind(values.environment_key.clone())
        .bind(values.version.clone())
        .bind(values.previous_version.clone())
        .bind(values.revision.clone())
        .bind(values.commit_sha.clone())
        .bind(values.author.clone())
        .bind(values.description.clone())
        .bind(values.url.clone())
        .bind(values.started_at)
        .bind(values.finished_at)
        .bind(values.status.clone())
        .bind(values.changes.clone())
        .bind(values.config_changes.clone())
        .bind(values.source)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = inserted {
            let (id, deploy) = row.into_deploy()?;
            return Ok(RecordedDeploy {
                id,
                deploy,
                created: true,
            });
        }
        // A re-post of a known deploy: status and finish are the caller's (the API applies
        // a report with `Deploy::updated`, which never moves a recorded finish to "now");
        // other fields are only filled where they were empty.
        let row: DeployRow = sqlx::query_as(concat!(
            "UPDATE deploys SET \
               status = $5, \
               finished_at = $6, \
               previous_version = COALESCE(NULLIF(previous_version, ''), $7, previous_version), \
               revision = COALESCE(NULLIF(revision, ''), $8, revision), \
               commit_sha = COALESCE(NULLIF(commit_sha, ''), $9, commit_sha), \
               author = COALESCE(NULLIF(author, ''), $10, author), \
               description = COALESCE(NULLIF(description, ''), $11, description), \
               url = COALESCE(NULLIF(url, ''), $12, url), \
               changes = CASE WHEN changes = '[]' THEN $13 ELSE changes END, \
               config_changes = CASE WHEN config_changes = '[]' THEN $14 ELSE config_changes END \
             WHERE service_key = $1 AND environment_key = $2 AND version = $3 AND started_at = $4 \
             RETURNING ",
            deploy_columns!()
        ))
        .bind(values.service_key)
        .bind(values.environment_key)
        .bind(values.version)
        .bind(values.started_at)
        .bind(values.status)
        .bind(values.finished_at)
        .bind(values.previous_version)
        .bind(values.revision)
        .bind(values.commit_sha)
        .bind(values.author)
        .bind(values.description)
        .bind(values.url)
        .bind(values.changes)
        .bind(values.config_changes)
        .fetch_one(&mut *conn)
        .await?;
        let (id, deploy) = row.into_deploy()?;
        Ok(RecordedDeploy {
            id,
            deploy,
            created: false,
        })
    }

    pub(crate) async fn deploys(
        conn: &mut DB::Connection,
        query: &DeployQuery,
    ) -> StoreResult<Vec<Deploy>> {
        // Built per call so that each filter present becomes an indexable condition rather
        // than an `(? IS NULL OR …)` the planner cannot use.
        let mut sql = QueryBuilder::<DB>::new(concat!(
            "SELECT ",
            deploy_columns!(),
            " FROM deploys WHERE 1 = 1"
        ));
        if let Some(service) = &query.service {
            sql.push(" AND service_key = ").push_bind(service.key());
        }
        if let Some(environment) = &query.environment {
            sql.push(" AND environment_key = ")
                .push_bind(environment.key());
        }
        if let Some(since) = query.since {
            sql.push(" AND started_at >= ").push_bind(micros(since));
        }
        if let Some(before) = query.before {
            sql.push(" AND started_at < ").push_bind(micros(before));
        }
        sql.push(" ORDER BY started_at DESC, id DESC LIMIT ")
            .push_bind(limit(query.limit));
        let rows: Vec<DeployRow> = sql.build_query_as().fetch_all(conn).await?;
        collect(rows, |row| row.into_deploy().map(|(_, deploy)| deploy))
    }

    pub(crate) async fn latest_deploy_of_version(
        conn: &mut DB::Connection,
        target: &Target,
        version: &str,
    ) -> StoreResult<Option<Deploy>> {
        let row: Option<DeployRow> = sqlx::query_as(concat!(
            "SELECT ",
            deploy_columns!(),
            " FROM deploys WHERE service_key = $1 AND environment_key = $2 AND version = $3 \
             ORDER BY started_at DESC, id DESC LIMIT 1"
        ))
        .bind(target.service.key())
        .bind(target.environment.key())
        .bind(version.to_owned())
        .fetch_optional(conn)
        .await?;
        row.map(|row| row.into_deploy().map(|(_, deploy)| deploy))
            .transpose()
    }

    /// Seeds many deploys at once with multi-row inserts, skipping ones already known. Run
    /// inside one transaction so that a million rows cost one commit.
    pub(crate) async fn bulk_insert_deploys(
        conn: &mut DB::Connection,
        deploys: &[Deploy],
    ) -> StoreResult<()> {
        for chunk in deploys.chunks(BULK_ROWS) {
            let values = chunk
                .iter()
                .map(DeployValues::new)
                .collect::<StoreResult<Vec<_>>>()?;
            let mut sql = QueryBuilder::<DB>::new(
                "INSERT INTO deploys (service, service_key, environment, environment_key, \
                 version, previous_version, revision, commit_sha, author, description, url, \
                 started_at, finished_at, status, changes, config_changes, source) ",
            );
            sql.push_values(values, |mut row, v| {
                row.push_bind(v.service)
                    .push_bind(v.service_key)
                    .push_bind(v.environment)
                    .push_bind(v.environment_key)
                    .push_bind(v.version)
                    .push_bind(v.previous_version)
                    .push_bind(v.revision)
                    .push_bind(v.commit_sha)
                    .push_bind(v.author)
                    .push_bind(v.description)
                    .push_bind(v.url)
                    .push_bind(v.started_at)
                    .push_bind(v.finished_at)
                    .push_bind(v.status)
                    .push_bind(v.changes)
                    .push_bind(v.config_changes)
                    .push_bind(v.source);
            });
            sql.push(" ON CONFLICT (service_key, environment_key, version, started_at) DO NOTHING");
            sql.build().execute(&mut *conn).await?;
        }
        Ok(())
    }
}
