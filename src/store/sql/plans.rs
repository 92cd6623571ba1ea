//! Rollback plans and their state machine, confirmations, and the processed-event claims that keep a retried delivery from acting twice.

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
    // --- plans -----------------------------------------------------------------------------

    pub(crate) async fn insert_plan(
        conn: &mut DB::Connection,
        plan: &RollbackPlan,
    ) -> StoreResult<()> {
        let result = sqlx::query(
            "INSERT INTO rollback_plans (id, service, service_key, environment, environment_key, \
             from_id, from_version, to_id, to_version, reason, alert_group, offered_at, \
             expires_at, message, requested_by, state, approved_by, started_by, started_at, \
             finished_at, outcome, operation, verified_at, action) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20, $21, $22, $23, $24)",
        )
        .bind(plan.id.to_string())
        .bind(plan.target.service.to_string())
        .bind(plan.target.service.key())
        .bind(plan.target.environment.to_string())
        .bind(plan.target.environment.key())
        .bind(plan.from.id.clone())
        .bind(plan.from.version.clone())
        .bind(plan.to.id.clone())
        .bind(plan.to.version.clone())
        .bind(plan.reason.clone())
        .bind(plan.alert_group)
        .bind(micros(plan.offered_at))
        .bind(micros(plan.expires_at))
        .bind(opt_to_json("plan message", plan.message.as_ref())?)
        .bind(opt_to_json(
            "plan requested_by",
            plan.requested_by.as_ref(),
        )?)
        .bind(plan.state.as_str())
        .bind(opt_to_json("plan approved_by", plan.approved_by.as_ref())?)
        .bind(opt_to_json("plan started_by", plan.started_by.as_ref())?)
        .bind(opt_micros(plan.started_at))
        .bind(opt_micros(plan.finished_at))
        .bind(plan.outcome.clone())
        .bind(opt_to_json("plan operation", plan.operation.as_ref())?)
        .bind(opt_micros(plan.verified_at))
        .bind(plan.action.as_str())
        .execute(&mut *conn)
        .await;
        let error = match result {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        // A running plan can violate two unique indexes: its id (a plain error) or the one
        // that allows a single running plan per target.
        if is_unique_violation(&error)
            && plan.state == PlanState::Running
            && Self::plan(conn, &plan.id).await?.is_none()
        {
            return Err(StoreError::TargetBusy(plan.target.clone()));
        }
        Err(error.into())
    }

    pub(crate) async fn plan(
        conn: &mut DB::Connection,
        id: &PlanId,
    ) -> StoreResult<Option<RollbackPlan>> {
        let row: Option<PlanRow> = sqlx::query_as(concat!(
            "SELECT ",
            plan_columns!(),
            " FROM rollback_plans WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
        row.map(PlanRow::into_plan).transpose()
    }

    /// One conditional `UPDATE`: the database decides which of several concurrent callers
    /// moves the plan, and its partial unique index refuses a second running plan of a
    /// target.
    pub(crate) async fn transition_plan(
        conn: &mut DB::Connection,
        id: &PlanId,
        from: &[PlanState],
        to: PlanState,
        patch: &PlanPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RollbackPlan>> {
        if from.is_empty() {
            return Ok(None);
        }
        let mut sql = QueryBuilder::<DB>::new("UPDATE rollback_plans SET state = ");
        sql.push_bind(to.as_str())
            .push(", approved_by = COALESCE(")
            .push_bind(opt_to_json("plan approved_by", patch.approved_by.as_ref())?)
            .push(", approved_by), started_by = COALESCE(")
            .push_bind(opt_to_json("plan started_by", patch.started_by.as_ref())?)
            .push(", started_by), started_at = COALESCE(")
            .push_bind(opt_micros(patch.started_at))
            .push(", started_at), finished_at = COALESCE(")
            .push_bind(opt_micros(patch.finished_at))
            .push(", finished_at), outcome = COALESCE(")
            .push_bind(patch.outcome.clone())
            .push(", outcome)");
        if let Some(runner) = &patch.runner {
            sql.push(", runner = ")
                .push_bind(runner.clone())
                .push(", heartbeat_at = ")
                .push_bind(micros(now));
        }
        sql.push(" WHERE id = ")
            .push_bind(id.to_string())
            .push(" AND state IN (");
        let mut states = sql.separated(", ");
        for state in state_list(from) {
            states.push_bind(state);
        }
        sql.push(")");
        if to == PlanState::Running {
            sql.push(" AND expires_at > ").push_bind(micros(now));
        }
        sql.push(concat!(" RETURNING ", plan_columns!()));
        let result: Result<Option<PlanRow>, sqlx::Error> =
            sql.build_query_as().fetch_optional(&mut *conn).await;
        match result {
            Ok(row) => row.map(PlanRow::into_plan).transpose(),
            // The id does not change, so the only unique index an update can violate is
            // the one-running-plan-per-target index.
            Err(error) if is_unique_violation(&error) => {
                let plan = Self::plan(conn, id)
                    .await?
                    .ok_or(StoreError::Database(Box::new(error)))?;
                Err(StoreError::TargetBusy(plan.target))
            }
            Err(error) => Err(error.into()),
        }
    }

    pub(crate) async fn set_plan_message(
        conn: &mut DB::Connection,
        id: &PlanId,
        message: &MessageRef,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE rollback_plans SET message = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(to_json("plan message", message)?)
            .execute(conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn set_plan_operation(
        conn: &mut DB::Connection,
        id: &PlanId,
        operation: &crate::core::backend::Operation,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE rollback_plans SET operation = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(to_json("plan operation", operation)?)
            .execute(conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn set_plan_verified(
        conn: &mut DB::Connection,
        id: &PlanId,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE rollback_plans SET verified_at = $2 WHERE id = $1 AND verified_at IS NULL",
        )
        .bind(id.to_string())
        .bind(micros(at))
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn plans_in_state(
        conn: &mut DB::Connection,
        states: &[PlanState],
    ) -> StoreResult<Vec<RollbackPlan>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = QueryBuilder::<DB>::new(concat!(
            "SELECT ",
            plan_columns!(),
            " FROM rollback_plans WHERE state IN ("
        ));
        let mut list = sql.separated(", ");
        for state in state_list(states) {
            list.push_bind(state);
        }
        sql.push(") ORDER BY offered_at, id");
        let rows: Vec<PlanRow> = sql.build_query_as().fetch_all(conn).await?;
        collect(rows, PlanRow::into_plan)
    }

    pub(crate) async fn plans_for_group(
        conn: &mut DB::Connection,
        group_id: i64,
    ) -> StoreResult<Vec<RollbackPlan>> {
        let rows: Vec<PlanRow> = sqlx::query_as(concat!(
            "SELECT ",
            plan_columns!(),
            " FROM rollback_plans WHERE alert_group = $1 ORDER BY offered_at, id"
        ))
        .bind(group_id)
        .fetch_all(conn)
        .await?;
        collect(rows, PlanRow::into_plan)
    }

    pub(crate) async fn last_rollback_finished(
        conn: &mut DB::Connection,
        target: &Target,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        // Failed plans count once the backend accepted the call (an operation is stored):
        // a call it refused (a 409, a missing permission) changed nothing, and the fresh
        // plan offered after it must not wait out the cooldown. Only rollbacks count: an
        // abort is usually followed by the rollback that makes it final.
        let row: MaxRow = sqlx::query_as(
            "SELECT MAX(finished_at) AS finished_at FROM rollback_plans \
             WHERE service_key = $1 AND environment_key = $2 AND action = $3 \
             AND (state = $4 OR (state = $5 AND operation IS NOT NULL))",
        )
        .bind(target.service.key())
        .bind(target.environment.key())
        .bind(Action::Rollback.as_str())
        .bind(PlanState::Succeeded.as_str())
        .bind(PlanState::Failed.as_str())
        .fetch_one(conn)
        .await?;
        opt_time(row.finished_at)
    }

    pub(crate) async fn plans_awaiting_verification(
        conn: &mut DB::Connection,
    ) -> StoreResult<Vec<RollbackPlan>> {
        let rows: Vec<PlanRow> = sqlx::query_as(concat!(
            "SELECT ",
            plan_columns!(),
            " FROM rollback_plans WHERE state = $1 AND verified_at IS NULL \
              ORDER BY finished_at, id"
        ))
        .bind(PlanState::Succeeded.as_str())
        .fetch_all(conn)
        .await?;
        collect(rows, PlanRow::into_plan)
    }

    /// Keeps a runner's claim on the rollbacks it follows alive.
    pub(crate) async fn heartbeat_plans(
        conn: &mut DB::Connection,
        runner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let result = sqlx::query(
            "UPDATE rollback_plans SET heartbeat_at = $1 WHERE state = $2 AND runner = $3",
        )
        .bind(micros(now))
        .bind(PlanState::Running.as_str())
        .bind(runner.to_owned())
        .execute(conn)
        .await?;
        Ok(result.rows_affected())
    }

    /// Takes over running rollbacks whose runner stopped heartbeating (or never had one),
    /// in one conditional update so that two processes never adopt the same plan.
    pub(crate) async fn adopt_running_plans(
        conn: &mut DB::Connection,
        runner: &str,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RollbackPlan>> {
        let rows: Vec<PlanRow> = sqlx::query_as(concat!(
            "UPDATE rollback_plans SET runner = $1, heartbeat_at = $2 \
             WHERE state = $3 AND (heartbeat_at IS NULL OR heartbeat_at < $4) RETURNING ",
            plan_columns!()
        ))
        .bind(runner.to_owned())
        .bind(micros(now))
        .bind(PlanState::Running.as_str())
        .bind(micros(stale_before))
        .fetch_all(conn)
        .await?;
        collect(rows, PlanRow::into_plan)
    }

    /// Running rollbacks recorded under `runner` (its previous run), heartbeat refreshed.
    pub(crate) async fn reclaim_running_plans(
        conn: &mut DB::Connection,
        runner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RollbackPlan>> {
        let rows: Vec<PlanRow> = sqlx::query_as(concat!(
            "UPDATE rollback_plans SET heartbeat_at = $1 WHERE state = $2 AND runner = $3 \
             RETURNING ",
            plan_columns!()
        ))
        .bind(micros(now))
        .bind(PlanState::Running.as_str())
        .bind(runner.to_owned())
        .fetch_all(conn)
        .await?;
        collect(rows, PlanRow::into_plan)
    }

    // --- confirmations ---------------------------------------------------------------------

    pub(crate) async fn insert_confirmation(
        conn: &mut DB::Connection,
        confirmation: &Confirmation,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO confirmations \
             (id, plan_id, actor, created_at, expires_at, disable_auto_sync) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(confirmation.id.to_string())
        .bind(confirmation.plan.to_string())
        .bind(to_json("confirmation actor", &confirmation.actor)?)
        .bind(micros(confirmation.created_at))
        .bind(micros(confirmation.expires_at))
        .bind(i64::from(confirmation.disable_auto_sync))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// `DELETE … RETURNING`: of two concurrent takes, one deletes the row and the other
    /// finds nothing.
    pub(crate) async fn take_confirmation(
        conn: &mut DB::Connection,
        id: &PlanId,
    ) -> StoreResult<Option<Confirmation>> {
        let row: Option<ConfirmationRow> = sqlx::query_as(
            "DELETE FROM confirmations WHERE id = $1 \
             RETURNING id, plan_id, actor, created_at, expires_at, disable_auto_sync",
        )
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
        row.map(ConfirmationRow::into_confirmation).transpose()
    }

    pub(crate) async fn confirmation(
        conn: &mut DB::Connection,
        id: &PlanId,
    ) -> StoreResult<Option<Confirmation>> {
        let row: Option<ConfirmationRow> = sqlx::query_as(
            "SELECT id, plan_id, actor, created_at, expires_at, disable_auto_sync \
             FROM confirmations WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
        row.map(ConfirmationRow::into_confirmation).transpose()
    }

    // --- processed events ------------------------------------------------------------------

    /// Insert-if-absent on the primary key: the database admits exactly one first claim.
    pub(crate) async fn claim_event(
        conn: &mut DB::Connection,
        key: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO event_claims (key, claimed_at) VALUES ($1, $2) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key.to_owned())
        .bind(micros(now))
        .execute(conn)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub(crate) async fn prune_event_claims(
        conn: &mut DB::Connection,
        before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM event_claims WHERE claimed_at < $1")
            .bind(micros(before))
            .execute(conn)
            .await?;
        Ok(result.rows_affected())
    }
}
