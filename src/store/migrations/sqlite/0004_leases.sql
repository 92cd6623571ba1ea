-- Leases: a role only one replica may hold at a time (the Discord gateway session). The
-- holder renews its lease before it expires; once it has expired, another replica takes
-- it over. Keep in step with ../postgres/0004_leases.sql.

CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    -- Which process holds it (host, process id and a random part).
    holder     TEXT    NOT NULL,
    -- Microseconds since the Unix epoch, by the holder's clock.
    expires_at INTEGER NOT NULL
);
