-- OAuth 2.0 clients (client credentials grant) and the keys that sign their access tokens.
-- Times are Unix seconds (UTC). Client secrets are stored only as their SHA-256.

CREATE TABLE clients (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    -- JSON array of permission strings: the most a token may carry.
    permissions TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    -- NULL: never expires.
    expires_at  INTEGER,
    -- Set once, never cleared: revocation is final.
    revoked_at  INTEGER
) STRICT;

CREATE INDEX clients_by_tenant ON clients (tenant, created_at);

CREATE TABLE client_secrets (
    -- SHA-256 of the full secret string, 32 bytes.
    hash       BLOB PRIMARY KEY NOT NULL CHECK (length(hash) = 32),
    client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    -- NULL: the client's current secret. Set on rotation to the end of the grace period.
    retires_at INTEGER
) STRICT;

CREATE INDEX client_secrets_by_client ON client_secrets (client_id);

CREATE TABLE signing_keys (
    -- RFC 7638 JWK thumbprint (SHA-256, base64url).
    kid          TEXT PRIMARY KEY NOT NULL,
    -- JOSE algorithm name: EdDSA, ES256 or RS256.
    alg          TEXT NOT NULL,
    -- The private key, PKCS#8 DER. The service must sign, so it is stored as is: protect the
    -- database file.
    private_der  BLOB NOT NULL,
    -- The public JWK as published, for inspection; the service derives it from private_der.
    public_jwk   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    -- From when the key signs. Published in the JWKS from created_at on.
    activates_at INTEGER NOT NULL,
    -- NULL while pending or signing. Set when a later key takes over: the key signs no more and
    -- leaves the JWKS at this time, once every token it signed has expired.
    retires_at   INTEGER
) STRICT;
