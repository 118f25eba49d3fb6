-- Portcullis schema version 3 for SQLite: the internal CA, the client
-- certificates it issues and the partner CAs trusted per tenant.
--
-- Same conventions as versions 1 and 2. Serial numbers are lowercase hex,
-- thumbprints the lowercase hex SHA-256 of the DER certificate.

-- The internal CA. Its private key is sealed with a key derived from the
-- master key. At most one CA is active.
CREATE TABLE certificate_authorities (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('active', 'retired')),
    certificate_pem TEXT NOT NULL,
    sealed_private_key BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX certificate_authorities_one_active ON certificate_authorities (state)
    WHERE state = 'active';

CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES oauth_clients (id),
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    subject TEXT NOT NULL,
    -- One name per line, such as `URI:urn:portcullis:client:<id>`.
    subject_alt_names TEXT NOT NULL,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    certificate_pem TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    revoked_reason TEXT
) STRICT;

CREATE INDEX certificates_client ON certificates (client_id, created_at);
CREATE INDEX certificates_tenant ON certificates (tenant_id, created_at);
CREATE INDEX certificates_revoked ON certificates (not_after) WHERE revoked_at IS NOT NULL;

CREATE TABLE trusted_cas (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    subject TEXT NOT NULL,
    certificate_pem TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    UNIQUE (tenant_id, sha256)
) STRICT;

-- The change feed also names revoked certificates, so that every node
-- rejects a revoked serial without a lookup.
ALTER TABLE changes ADD COLUMN cert_serial TEXT;
