-- The PostgreSQL schema: the same tables as migrations/sqlite/0001..0003, in one step (there were
-- no PostgreSQL databases before them). Times are Unix seconds (UTC). Key and client secrets are
-- stored only as their SHA-256. See src/store/mod.rs.

CREATE TABLE keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    -- JSON array of permission strings.
    permissions  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    -- NULL: never expires.
    expires_at   BIGINT,
    -- Set once, never cleared: revocation is final.
    revoked_at   BIGINT,
    last_used_at BIGINT
);

CREATE INDEX keys_by_tenant ON keys (tenant, created_at);

CREATE TABLE key_secrets (
    -- SHA-256 of the full key string, 32 bytes. The primary key's index serves lookups by hash.
    hash       BYTEA PRIMARY KEY CHECK (octet_length(hash) = 32),
    key_id     TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    -- NULL: the key's current secret. Set on rotation to the end of the grace period.
    retires_at BIGINT
);

CREATE INDEX key_secrets_by_key ON key_secrets (key_id);

CREATE TABLE usage_daily (
    key_id TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    -- UTC day, `YYYY-MM-DD`.
    day    TEXT NOT NULL,
    count  BIGINT NOT NULL CHECK (count >= 0),
    PRIMARY KEY (key_id, day)
);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- OAuth 2.0 clients (client credentials grant) and the keys that sign their access tokens.

CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    -- JSON array of permission strings: the most a token may carry.
    permissions TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);

CREATE INDEX clients_by_tenant ON clients (tenant, created_at);

CREATE TABLE client_secrets (
    hash       BYTEA PRIMARY KEY CHECK (octet_length(hash) = 32),
    client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    retires_at BIGINT
);

CREATE INDEX client_secrets_by_client ON client_secrets (client_id);

CREATE TABLE signing_keys (
    -- RFC 7638 JWK thumbprint (SHA-256, base64url).
    kid          TEXT PRIMARY KEY,
    -- JOSE algorithm name: EdDSA, ES256 or RS256.
    alg          TEXT NOT NULL,
    -- The private key, PKCS#8 DER: protect the database.
    private_der  BYTEA NOT NULL,
    public_jwk   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    retires_at   BIGINT,
    -- Insertion order, the last tie-breaker (SQLite's rowid).
    inserted     BIGINT GENERATED ALWAYS AS IDENTITY
);

-- The revocation feed (see src/feed.rs). One row; `last_seq` is the counter every writing
-- transaction bumps with `UPDATE ... RETURNING`: its row lock, held to commit, serializes the
-- writers across every replica, so sequence order is commit order.
CREATE TABLE change_log (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    log_id          TEXT NOT NULL CHECK (length(log_id) = 32),
    last_seq        BIGINT NOT NULL CHECK (last_seq >= 0),
    trimmed_through BIGINT NOT NULL CHECK (trimmed_through >= 0 AND trimmed_through <= last_seq)
);

INSERT INTO change_log (id, log_id, last_seq, trimmed_through)
VALUES (1, replace(gen_random_uuid()::text, '-', ''), 0, 0);

CREATE TABLE changes (
    seq        BIGINT PRIMARY KEY CHECK (seq > 0),
    -- SHA-256 of a key secret, 32 bytes. Never a key.
    key_hash   BYTEA NOT NULL CHECK (octet_length(key_hash) = 32),
    changed_at BIGINT NOT NULL
);

CREATE INDEX changes_by_time ON changes (changed_at);
