-- What a plan does when confirmed: a rollback, or another action a backend offers in its
-- place (abort a canary, restore a ConfigMap). Plans written before this column existed are
-- rollbacks. Keep in step with ../postgres/0005_plan_action.sql.

ALTER TABLE rollback_plans ADD COLUMN action TEXT NOT NULL DEFAULT 'rollback';
