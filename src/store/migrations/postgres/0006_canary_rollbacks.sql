-- Flagger canary rollbacks a person asked for. Pressing "Roll back canary" arms one row
-- for the Canary; Flagger's `rollback` hook takes it (one conditional UPDATE, so exactly
-- one hook call is answered 2xx per press, across replicas). An armed row expires, so a
-- press Flagger never acts on cannot roll back a later canary run.
-- Keep in step with ../sqlite/0006_canary_rollbacks.sql.

CREATE TABLE canary_rollbacks (
    namespace    TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    -- The plan whose press armed it.
    plan_id      TEXT    NOT NULL,
    requested_by TEXT    NOT NULL,
    -- Microseconds since the Unix epoch.
    armed_at     BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    -- When Flagger's hook was answered 2xx for it; NULL while armed.
    taken_at     BIGINT,
    PRIMARY KEY (namespace, name)
);
