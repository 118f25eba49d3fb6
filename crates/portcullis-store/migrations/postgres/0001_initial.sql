-- Portcullis schema version 1 for PostgreSQL.
--
-- Times are timestamptz. Scopes are one space-separated text value.

-- The check value of the master key that first opened this database, so a
-- server started with another master key stops instead of issuing keys that
-- the other servers cannot verify.
CREATE TABLE master_key_check (
    id smallint PRIMARY KEY CHECK (id = 1),
    check_value bytea NOT NULL
);

CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL
);

CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('tenant', 'operator')),
    tenant_id uuid REFERENCES tenants (id),
    name text,
    environment text NOT NULL CHECK (environment IN ('live', 'test')),
    visible_prefix text NOT NULL,
    -- HMAC-SHA-256 of the whole key under the pepper; never the key itself.
    secret_hash bytea NOT NULL UNIQUE,
    scopes text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz,
    revoked_reason text,
    rotated_to uuid REFERENCES api_keys (id),
    last_used_at timestamptz,
    last_used_from text,
    use_count bigint NOT NULL DEFAULT 0,
    CHECK ((kind = 'tenant') = (tenant_id IS NOT NULL))
);

CREATE INDEX api_keys_created ON api_keys (created_at);
CREATE INDEX api_keys_tenant_created ON api_keys (tenant_id, created_at);

-- Audit records have no foreign keys, so that a record outlives whatever it
-- names.
CREATE TABLE audit_events (
    id uuid PRIMARY KEY,
    at timestamptz NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    tenant_id uuid,
    target text,
    remote_addr text,
    details jsonb NOT NULL
);

CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_tenant_at ON audit_events (tenant_id, at);
CREATE INDEX audit_events_target_at ON audit_events (target, at);

-- The change feed that keeps credential caches current. Sequence values can
-- commit out of order, which is why readers also look back in time.
CREATE TABLE changes (
    id bigserial PRIMARY KEY,
    key_id uuid,
    tenant_id uuid,
    at timestamptz NOT NULL
);

CREATE INDEX changes_at ON changes (at);
