-- breakwater schema, SQLite dialect. Times are integer microseconds since the Unix epoch;
-- structured values are JSON text. Keep in step with ../postgres/0001_initial.sql.

CREATE TABLE deploys (
    id               INTEGER PRIMARY KEY,
    service          TEXT    NOT NULL,
    service_key      TEXT    NOT NULL,
    environment      TEXT    NOT NULL,
    environment_key  TEXT    NOT NULL,
    version          TEXT    NOT NULL,
    previous_version TEXT,
    revision         TEXT,
    commit_sha       TEXT,
    author           TEXT,
    description      TEXT,
    url              TEXT,
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    status           TEXT    NOT NULL,
    changes          TEXT    NOT NULL,
    config_changes   TEXT    NOT NULL,
    source           TEXT    NOT NULL
);
-- A re-posted deploy is recognised by this identity.
CREATE UNIQUE INDEX deploys_identity
    ON deploys (service_key, environment_key, version, started_at);
-- "Recent deploys of a target": an index seek plus a short backwards-ordered scan.
CREATE INDEX deploys_target_recent
    ON deploys (service_key, environment_key, started_at DESC, id DESC);
CREATE INDEX deploys_recent ON deploys (started_at DESC, id DESC);

CREATE TABLE alert_groups (
    id            INTEGER PRIMARY KEY,
    key           TEXT    NOT NULL,
    service       TEXT,
    environment   TEXT,
    title         TEXT    NOT NULL,
    opened_at     INTEGER NOT NULL,
    last_alert_at INTEGER NOT NULL,
    alert_count   INTEGER NOT NULL,
    firing_count  INTEGER NOT NULL,
    resolved_at   INTEGER
);
CREATE INDEX alert_groups_open ON alert_groups (key, last_alert_at) WHERE resolved_at IS NULL;
CREATE INDEX alert_groups_recent ON alert_groups (last_alert_at DESC, id DESC);

CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY,
    group_id    INTEGER NOT NULL REFERENCES alert_groups (id),
    source      TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    service     TEXT,
    environment TEXT,
    severity    TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    description TEXT    NOT NULL,
    ended_at    INTEGER,
    labels      TEXT    NOT NULL,
    link        TEXT,
    received_at INTEGER NOT NULL
);
-- One row per alert occurrence: repeats of a notification find it here.
CREATE UNIQUE INDEX alerts_identity ON alerts (source, fingerprint, started_at);
CREATE INDEX alerts_group ON alerts (group_id, id);

CREATE TABLE group_threads (
    id            INTEGER PRIMARY KEY,
    group_id      INTEGER NOT NULL REFERENCES alert_groups (id),
    platform      TEXT    NOT NULL,
    channel       TEXT    NOT NULL,
    message_id    TEXT    NOT NULL,
    alert_message TEXT    NOT NULL,
    summary       TEXT
);
CREATE UNIQUE INDEX group_threads_message
    ON group_threads (group_id, platform, channel, message_id);

CREATE TABLE rollback_plans (
    id              TEXT    PRIMARY KEY,
    service         TEXT    NOT NULL,
    service_key     TEXT    NOT NULL,
    environment     TEXT    NOT NULL,
    environment_key TEXT    NOT NULL,
    from_id         TEXT    NOT NULL,
    from_version    TEXT    NOT NULL,
    to_id           TEXT    NOT NULL,
    to_version      TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    alert_group     INTEGER,
    offered_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    message         TEXT,
    requested_by    TEXT,
    state           TEXT    NOT NULL,
    approved_by     TEXT,
    started_by      TEXT,
    started_at      INTEGER,
    finished_at     INTEGER,
    outcome         TEXT,
    operation       TEXT,
    verified_at     INTEGER,
    -- Which breakwater process follows a running rollback, and when it last said so:
    -- another process adopts the rollback when the heartbeat stops.
    runner          TEXT,
    heartbeat_at    INTEGER
);
-- The database itself refuses a second running rollback of a target.
CREATE UNIQUE INDEX rollback_plans_one_running
    ON rollback_plans (service_key, environment_key) WHERE state = 'running';
CREATE INDEX rollback_plans_state ON rollback_plans (state, offered_at);
CREATE INDEX rollback_plans_group ON rollback_plans (alert_group, offered_at);
CREATE INDEX rollback_plans_target ON rollback_plans (service_key, environment_key, finished_at);

CREATE TABLE confirmations (
    id         TEXT    PRIMARY KEY,
    plan_id    TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE event_claims (
    key        TEXT    PRIMARY KEY,
    claimed_at INTEGER NOT NULL
);
CREATE INDEX event_claims_claimed_at ON event_claims (claimed_at);

CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    actor_name  TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    service     TEXT    NOT NULL,
    environment TEXT    NOT NULL,
    details     TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
CREATE INDEX audit_log_service ON audit_log (service, seq);

-- The chain head, moved in the same transaction as each append, so that records cut from
-- the end of the log are noticed. Seq 0 means the log is empty.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
