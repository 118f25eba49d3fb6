-- Portcullis schema version 2 for PostgreSQL: the OAuth authorization server.
--
-- Same conventions as version 1: timestamptz times, uuid ids and
-- space-separated scopes. Every secret (client secret, authorization code,
-- refresh token, session id) is stored only as its HMAC-SHA-256 under the
-- pepper.

CREATE TABLE oauth_clients (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    name text NOT NULL,
    confidential boolean NOT NULL,
    -- Space-separated RFC 6749 names.
    grant_types text NOT NULL,
    scopes text NOT NULL,
    -- Space-separated; a registered redirect URI contains no space.
    redirect_uris text NOT NULL,
    auth_method text NOT NULL CHECK (auth_method IN
        ('client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none')),
    jwks text,
    access_token_ttl_seconds bigint NOT NULL CHECK (access_token_ttl_seconds > 0),
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_reason text,
    CHECK ((auth_method = 'none') = (NOT confidential))
);

CREATE INDEX oauth_clients_tenant_created ON oauth_clients (tenant_id, created_at);

CREATE TABLE oauth_client_secrets (
    id uuid PRIMARY KEY,
    client_id uuid NOT NULL REFERENCES oauth_clients (id),
    secret_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz
);

CREATE INDEX oauth_client_secrets_client ON oauth_client_secrets (client_id);

-- E-mail addresses are stored lower-cased, so the unique constraint also
-- rejects a second address that differs only in case.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    email text NOT NULL,
    password_hash text NOT NULL,
    role text NOT NULL CHECK (role IN ('admin', 'developer', 'viewer')),
    created_at timestamptz NOT NULL,
    disabled_at timestamptz,
    UNIQUE (tenant_id, email)
);

CREATE TABLE authorization_codes (
    code_hash bytea PRIMARY KEY,
    client_id uuid NOT NULL REFERENCES oauth_clients (id),
    user_id uuid NOT NULL REFERENCES users (id),
    redirect_uri text NOT NULL,
    code_challenge text NOT NULL,
    scopes text NOT NULL,
    resource text,
    family_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);

CREATE INDEX authorization_codes_expires ON authorization_codes (expires_at);

CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    family_id uuid NOT NULL,
    client_id uuid NOT NULL REFERENCES oauth_clients (id),
    user_id uuid REFERENCES users (id),
    scopes text NOT NULL,
    resource text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    revoked_at timestamptz
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_client ON refresh_tokens (client_id);

-- One row per issued JWT access token, so that a revoked family or client
-- can revoke its tokens and the gateways can rebuild their deny lists.
CREATE TABLE access_tokens (
    jti text PRIMARY KEY,
    client_id uuid NOT NULL REFERENCES oauth_clients (id),
    family_id uuid,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);

CREATE INDEX access_tokens_family ON access_tokens (family_id);
CREATE INDEX access_tokens_client ON access_tokens (client_id);
CREATE INDEX access_tokens_revoked_expires ON access_tokens (expires_at)
    WHERE revoked_at IS NOT NULL;

CREATE TABLE consents (
    user_id uuid NOT NULL REFERENCES users (id),
    client_id uuid NOT NULL REFERENCES oauth_clients (id),
    scopes text NOT NULL,
    granted_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- The jti of each client assertion (RFC 7523) seen, kept until the
-- assertion expires, so that each is accepted once.
CREATE TABLE client_assertion_jtis (
    client_id uuid NOT NULL,
    jti text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE INDEX client_assertion_jtis_expires ON client_assertion_jtis (expires_at);

CREATE TABLE login_sessions (
    session_hash bytea PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL,
    idle_expires_at timestamptz NOT NULL,
    absolute_expires_at timestamptz NOT NULL
);

CREATE INDEX login_sessions_user ON login_sessions (user_id);

-- Token-signing keys. The private key is sealed with a key derived from the
-- master key. At most one key is active.
CREATE TABLE signing_keys (
    kid text PRIMARY KEY,
    algorithm text NOT NULL CHECK (algorithm IN ('ES256', 'RS256', 'EdDSA')),
    state text NOT NULL CHECK (state IN ('pending', 'active', 'retired')),
    public_jwk text NOT NULL,
    sealed_private_key bytea NOT NULL,
    created_at timestamptz NOT NULL,
    activates_at timestamptz NOT NULL,
    retired_at timestamptz,
    publish_until timestamptz
);

CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';

-- The change feed also names revoked access tokens (one row per jti, with
-- the token's expiry), changed clients and changed signing keys.
ALTER TABLE changes ADD COLUMN client_id uuid;
ALTER TABLE changes ADD COLUMN jti text;
ALTER TABLE changes ADD COLUMN jti_expires_at timestamptz;
ALTER TABLE changes ADD COLUMN kid text;
