-- Snapshots of the ConfigMaps a kubernetes backend watches (never Secrets), so that a
-- configuration change made in place can be restored. One row per object and
-- resourceVersion; the store keeps the newest 20 per object and deletes older ones.
-- Keep in step with ../sqlite/0007_config_snapshots.sql.

CREATE TABLE config_snapshots (
    id               BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The [backends.NAME] that read it, the object's namespace and name.
    backend          TEXT    NOT NULL,
    namespace        TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    resource_version TEXT    NOT NULL,
    -- JSON: {"data": {...}, "binaryData": {...}} as the API carries them.
    data             TEXT    NOT NULL,
    -- Microseconds since the Unix epoch: when the object got this data.
    taken_at         BIGINT NOT NULL
);
CREATE UNIQUE INDEX config_snapshots_version
    ON config_snapshots (backend, namespace, name, resource_version);
CREATE INDEX config_snapshots_recent
    ON config_snapshots (backend, namespace, name, taken_at DESC, id DESC);
