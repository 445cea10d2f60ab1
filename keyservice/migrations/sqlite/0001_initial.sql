-- Times are Unix seconds (UTC). Key secrets are stored only as their SHA-256.

CREATE TABLE keys (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    -- JSON array of permission strings.
    permissions  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    -- NULL: never expires.
    expires_at   INTEGER,
    -- Set once, never cleared: revocation is final.
    revoked_at   INTEGER,
    last_used_at INTEGER
) STRICT;

CREATE INDEX keys_by_tenant ON keys (tenant, created_at);

CREATE TABLE key_secrets (
    -- SHA-256 of the full key string, 32 bytes.
    hash       BLOB PRIMARY KEY NOT NULL CHECK (length(hash) = 32),
    key_id     TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    -- NULL: the key's current secret. Set on rotation to the end of the grace period.
    retires_at INTEGER
) STRICT;

CREATE INDEX key_secrets_by_key ON key_secrets (key_id);

CREATE TABLE usage_daily (
    key_id TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    -- UTC day, `YYYY-MM-DD`.
    day    TEXT NOT NULL,
    count  INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (key_id, day)
) STRICT, WITHOUT ROWID;

CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
