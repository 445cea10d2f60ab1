-- Roles, tenant admins and the audit log: the same as migrations/sqlite/0004. Times are Unix
-- seconds (UTC).

ALTER TABLE keys ADD COLUMN secret_hint TEXT;
ALTER TABLE clients ADD COLUMN secret_hint TEXT;

CREATE TABLE tenant_admins (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    permissions TEXT NOT NULL,
    secret_hint TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);

CREATE INDEX tenant_admins_by_tenant ON tenant_admins (tenant, created_at);

CREATE TABLE tenant_admin_secrets (
    hash       BYTEA PRIMARY KEY CHECK (octet_length(hash) = 32),
    admin_id   TEXT NOT NULL REFERENCES tenant_admins (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    retires_at BIGINT
);

CREATE INDEX tenant_admin_secrets_by_admin ON tenant_admin_secrets (admin_id);

CREATE TABLE roles (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (tenant, name)
);

CREATE TABLE role_grants (
    holder_id TEXT NOT NULL,
    role_id   TEXT NOT NULL REFERENCES roles (id),
    PRIMARY KEY (holder_id, role_id)
);

CREATE INDEX role_grants_by_role ON role_grants (role_id, holder_id);

CREATE TABLE audit_events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    tenant      TEXT,
    source      TEXT,
    outcome     TEXT NOT NULL,
    request_id  TEXT
);

CREATE INDEX audit_events_by_time ON audit_events (at);
CREATE INDEX audit_events_by_tenant ON audit_events (tenant, seq);
CREATE INDEX audit_events_by_target ON audit_events (target_id, seq);

CREATE FUNCTION audit_events_are_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_are_append_only BEFORE UPDATE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_are_append_only();
