-- The web console's channel and sessions, kept in the database so that the channel
-- survives restarts and every replica shows the same messages to the same signed-in
-- people. Keep in step with ../sqlite/0003_console.sql.

CREATE TABLE console_messages (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel    TEXT    NOT NULL,
    -- The thread's first message; NULL for a top-level message.
    thread_id  BIGINT  REFERENCES console_messages (id),
    -- The one console user who sees a private reply; NULL for everyone.
    audience   TEXT,
    message    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    -- Grows with every update, so a page can tell a newer rendering from an older one.
    revision   BIGINT  NOT NULL
);
CREATE INDEX console_messages_threads ON console_messages (channel, thread_id, id);
CREATE INDEX console_messages_replies ON console_messages (thread_id, id);
CREATE INDEX console_messages_updated ON console_messages (updated_at, id);

CREATE TABLE console_sessions (
    -- SHA-256 of the cookie's token: a leaked database holds no usable session.
    token_hash TEXT    PRIMARY KEY,
    user_name  TEXT    NOT NULL,
    csrf_token TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
