-- Portcullis schema version 2 for SQLite: the OAuth authorization server.
--
-- Same conventions as version 1: INTEGER milliseconds, UUID TEXT ids,
-- space-separated scopes, STRICT tables. Every secret (client secret,
-- authorization code, refresh token, session id) is stored only as its
-- HMAC-SHA-256 under the pepper.

CREATE TABLE oauth_clients (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    confidential INTEGER NOT NULL CHECK (confidential IN (0, 1)),
    -- Space-separated RFC 6749 names.
    grant_types TEXT NOT NULL,
    scopes TEXT NOT NULL,
    -- Space-separated; a registered redirect URI contains no space.
    redirect_uris TEXT NOT NULL,
    auth_method TEXT NOT NULL CHECK (auth_method IN
        ('client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none')),
    jwks TEXT,
    access_token_ttl_seconds INTEGER NOT NULL CHECK (access_token_ttl_seconds > 0),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    revoked_reason TEXT,
    CHECK ((auth_method = 'none') = (confidential = 0))
) STRICT;

CREATE INDEX oauth_clients_tenant_created ON oauth_clients (tenant_id, created_at);

CREATE TABLE oauth_client_secrets (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES oauth_clients (id),
    secret_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
) STRICT;

CREATE INDEX oauth_client_secrets_client ON oauth_client_secrets (client_id);

-- E-mail addresses are stored lower-cased, so the unique constraint also
-- rejects a second address that differs only in case.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'developer', 'viewer')),
    created_at INTEGER NOT NULL,
    disabled_at INTEGER,
    UNIQUE (tenant_id, email)
) STRICT;

CREATE TABLE authorization_codes (
    code_hash BLOB PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES oauth_clients (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scopes TEXT NOT NULL,
    resource TEXT,
    family_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
) STRICT;

CREATE INDEX authorization_codes_expires ON authorization_codes (expires_at);

CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    family_id TEXT NOT NULL,
    client_id TEXT NOT NULL REFERENCES oauth_clients (id),
    user_id TEXT REFERENCES users (id),
    scopes TEXT NOT NULL,
    resource TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    revoked_at INTEGER
) STRICT;

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_client ON refresh_tokens (client_id);

-- One row per issued JWT access token, so that a revoked family or client
-- can revoke its tokens and the gateways can rebuild their deny lists.
CREATE TABLE access_tokens (
    jti TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES oauth_clients (id),
    family_id TEXT,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE INDEX access_tokens_family ON access_tokens (family_id);
CREATE INDEX access_tokens_client ON access_tokens (client_id);
CREATE INDEX access_tokens_revoked_expires ON access_tokens (expires_at)
    WHERE revoked_at IS NOT NULL;

CREATE TABLE consents (
    user_id TEXT NOT NULL REFERENCES users (id),
    client_id TEXT NOT NULL REFERENCES oauth_clients (id),
    scopes TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
) STRICT;

-- The jti of each client assertion (RFC 7523) seen, kept until the
-- assertion expires, so that each is accepted once.
CREATE TABLE client_assertion_jtis (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
) STRICT;

CREATE INDEX client_assertion_jtis_expires ON client_assertion_jtis (expires_at);

CREATE TABLE login_sessions (
    session_hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    idle_expires_at INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX login_sessions_user ON login_sessions (user_id);

-- Token-signing keys. The private key is sealed with a key derived from the
-- master key. At most one key is active.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL CHECK (algorithm IN ('ES256', 'RS256', 'EdDSA')),
    state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retired')),
    public_jwk TEXT NOT NULL,
    sealed_private_key BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    activates_at INTEGER NOT NULL,
    retired_at INTEGER,
    publish_until INTEGER
) STRICT;

CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';

-- The change feed also names revoked access tokens (one row per jti, with
-- the token's expiry), changed clients and changed signing keys.
ALTER TABLE changes ADD COLUMN client_id TEXT;
ALTER TABLE changes ADD COLUMN jti TEXT;
ALTER TABLE changes ADD COLUMN jti_expires_at INTEGER;
ALTER TABLE changes ADD COLUMN kid TEXT;
