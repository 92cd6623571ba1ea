-- A confirmation remembers whether the press asked to turn Argo CD auto-sync off first,
-- so that the Confirm step on Discord and the console carries that consent on.
ALTER TABLE confirmations ADD COLUMN disable_auto_sync BIGINT NOT NULL DEFAULT 0;
