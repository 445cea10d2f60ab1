-- The revocation feed: an ordered log of the key hashes whose lookup answer changed (revoke,
-- delete, renew, rotate). Read by the filter through GET /v1/changes. See src/feed.rs.

-- One row. `log_id` names this log: generated once, when the schema is created, so a database
-- restored from another one (or a backup of another one) hands out cursors nobody else has.
-- `last_seq` is the counter every writing transaction bumps: its row lock serializes the writers,
-- so sequence order is commit order. `trimmed_through` is the highest sequence number retention
-- has deleted: a cursor below it has missed changes.
CREATE TABLE change_log (
    id              INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    log_id          TEXT NOT NULL CHECK (length(log_id) = 32),
    last_seq        INTEGER NOT NULL CHECK (last_seq >= 0),
    trimmed_through INTEGER NOT NULL CHECK (trimmed_through >= 0 AND trimmed_through <= last_seq)
) STRICT;

INSERT INTO change_log (id, log_id, last_seq, trimmed_through)
VALUES (1, lower(hex(randomblob(16))), 0, 0);

CREATE TABLE changes (
    seq        INTEGER PRIMARY KEY NOT NULL CHECK (seq > 0),
    -- SHA-256 of a key secret, 32 bytes. Never a key.
    key_hash   BLOB NOT NULL CHECK (length(key_hash) = 32),
    -- Unix seconds (UTC), for retention.
    changed_at INTEGER NOT NULL
) STRICT;

-- Retention finds the newest change older than its window without scanning the log.
CREATE INDEX changes_by_time ON changes (changed_at);
