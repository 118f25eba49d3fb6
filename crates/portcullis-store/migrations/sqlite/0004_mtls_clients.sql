-- Portcullis schema version 4 for SQLite: OAuth clients that authenticate
-- with a TLS client certificate (RFC 8705 §2) and certificate-bound access
-- tokens (RFC 8705 §3).
--
-- SQLite cannot change a CHECK constraint in place, so oauth_clients is
-- rebuilt. Six tables reference it and migrations run inside one
-- transaction, where foreign keys cannot be switched off. With
-- defer_foreign_keys, dropping the old table only counts the child rows it
-- orphans, and inserting the same ids into the new table, after it has taken
-- the old name, counts them back, so the check at commit passes. The
-- setting ends with the transaction.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE oauth_clients_v4 (
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
        ('client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none',
         'tls_client_auth', 'self_signed_tls_client_auth')),
    jwks TEXT,
    -- The RFC 8705 §2.1.2 member name, such as tls_client_auth_san_dns, and
    -- its value. Set exactly for tls_client_auth clients.
    tls_subject_kind TEXT CHECK (tls_subject_kind IN
        ('tls_client_auth_subject_dn', 'tls_client_auth_san_dns', 'tls_client_auth_san_uri',
         'tls_client_auth_san_ip', 'tls_client_auth_san_email')),
    tls_subject TEXT,
    access_token_ttl_seconds INTEGER NOT NULL CHECK (access_token_ttl_seconds > 0),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    revoked_reason TEXT,
    CHECK ((auth_method = 'none') = (confidential = 0)),
    CHECK ((tls_subject_kind IS NULL) = (tls_subject IS NULL)),
    CHECK ((auth_method = 'tls_client_auth') = (tls_subject IS NOT NULL)),
    CHECK (auth_method NOT IN ('private_key_jwt', 'self_signed_tls_client_auth')
        OR jwks IS NOT NULL)
) STRICT;

CREATE TABLE oauth_clients_copy AS SELECT * FROM oauth_clients;

DROP TABLE oauth_clients;

ALTER TABLE oauth_clients_v4 RENAME TO oauth_clients;

INSERT INTO oauth_clients (id, tenant_id, name, confidential, grant_types, scopes,
    redirect_uris, auth_method, jwks, access_token_ttl_seconds, created_at, revoked_at,
    revoked_reason)
SELECT id, tenant_id, name, confidential, grant_types, scopes, redirect_uris, auth_method,
    jwks, access_token_ttl_seconds, created_at, revoked_at, revoked_reason
FROM oauth_clients_copy;

DROP TABLE oauth_clients_copy;

CREATE INDEX oauth_clients_tenant_created ON oauth_clients (tenant_id, created_at);

-- The x5t#S256 confirmation of a certificate-bound access token (RFC 8705
-- §3.1), which introspection returns as cnf.
ALTER TABLE access_tokens ADD COLUMN certificate_thumbprint TEXT;
