-- Roles, tenant admins and the audit log (issue 10). Times are Unix seconds (UTC).

-- The visible start of the current secret (`kg_3f9a…`), shown in lists. NULL for credentials
-- created before this column.
ALTER TABLE keys ADD COLUMN secret_hint TEXT;
ALTER TABLE clients ADD COLUMN secret_hint TEXT;

-- Tenant admins: the third kind of credential, the same columns as clients. Their secrets
-- (`kgta_…`) authenticate on the admin API within one tenant.
CREATE TABLE tenant_admins (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    -- JSON array of permission strings, granted directly.
    permissions TEXT NOT NULL,
    secret_hint TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
) STRICT;

CREATE INDEX tenant_admins_by_tenant ON tenant_admins (tenant, created_at);

CREATE TABLE tenant_admin_secrets (
    -- SHA-256 of the full secret string, 32 bytes.
    hash       BLOB PRIMARY KEY NOT NULL CHECK (length(hash) = 32),
    admin_id   TEXT NOT NULL REFERENCES tenant_admins (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    retires_at INTEGER
) STRICT;

CREATE INDEX tenant_admin_secrets_by_admin ON tenant_admin_secrets (admin_id);

CREATE TABLE roles (
    id          TEXT PRIMARY KEY NOT NULL,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    -- JSON array of permission strings.
    permissions TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (tenant, name)
) STRICT;

-- Which credential (key, client or tenant admin: the id's prefix tells) holds which role. The
-- holder's rows go with it when it is deleted (in the same transaction); a role with holders
-- cannot be deleted.
CREATE TABLE role_grants (
    holder_id TEXT NOT NULL,
    role_id   TEXT NOT NULL REFERENCES roles (id),
    PRIMARY KEY (holder_id, role_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX role_grants_by_role ON role_grants (role_id, holder_id);

-- Append-only: rows are inserted, and deleted only by retention. Never a secret.
CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    -- `admin`, a tenant admin id, or a client id.
    actor       TEXT NOT NULL,
    -- `key.create`, `role.update`, `auth.failure`, ...
    action      TEXT NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    tenant      TEXT,
    -- The peer address.
    source      TEXT,
    outcome     TEXT NOT NULL,
    request_id  TEXT
) STRICT;

CREATE INDEX audit_events_by_time ON audit_events (at);
CREATE INDEX audit_events_by_tenant ON audit_events (tenant, seq);
CREATE INDEX audit_events_by_target ON audit_events (target_id, seq);

CREATE TRIGGER audit_events_are_append_only BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
