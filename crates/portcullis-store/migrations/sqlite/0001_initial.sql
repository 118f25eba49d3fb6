-- Portcullis schema version 1 for SQLite.
--
-- Times are INTEGER milliseconds since the Unix epoch (UTC). Ids are UUIDs
-- in hyphenated lower-case TEXT. Scopes are one space-separated TEXT value.
-- Tables are STRICT, so a value of the wrong type is rejected on write.

-- The check value of the master key that first opened this database, so a
-- server started with another master key stops instead of issuing keys that
-- the other servers cannot verify.
CREATE TABLE master_key_check (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    check_value BLOB NOT NULL
) STRICT;

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('tenant', 'operator')),
    tenant_id TEXT REFERENCES tenants (id),
    name TEXT,
    environment TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    visible_prefix TEXT NOT NULL,
    -- HMAC-SHA-256 of the whole key under the pepper; never the key itself.
    secret_hash BLOB NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    revoked_reason TEXT,
    rotated_to TEXT REFERENCES api_keys (id),
    last_used_at INTEGER,
    last_used_from TEXT,
    use_count INTEGER NOT NULL DEFAULT 0,
    CHECK ((kind = 'tenant') = (tenant_id IS NOT NULL))
) STRICT;

CREATE INDEX api_keys_created ON api_keys (created_at);
CREATE INDEX api_keys_tenant_created ON api_keys (tenant_id, created_at);

-- Audit records have no foreign keys, so that a record outlives whatever it
-- names.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    tenant_id TEXT,
    target TEXT,
    remote_addr TEXT,
    details TEXT NOT NULL
) STRICT;

CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_tenant_at ON audit_events (tenant_id, at);
CREATE INDEX audit_events_target_at ON audit_events (target, at);

-- The change feed that keeps credential caches current. AUTOINCREMENT keeps
-- ids from being reused after old rows are pruned.
CREATE TABLE changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id TEXT,
    tenant_id TEXT,
    at INTEGER NOT NULL
) STRICT;

CREATE INDEX changes_at ON changes (at);
