-- Portcullis schema version 3 for PostgreSQL: the internal CA, the client
-- certificates it issues and the partner CAs trusted per tenant.
--
-- Same conventions as versions 1 and 2: timestamptz times, uuid ids. Serial numbers are lowercase hex,
-- thumbprints the lowercase hex SHA-256 of the DER certificate.

-- The internal CA. Its private key is sealed with a key derived from the
-- master key. At most one CA is active.
CREATE TABLE certificate_authorities (
    id uuid PRIMARY KEY,
    state text NOT NULL CHECK (state IN ('active', 'retired')),
    certificate_pem text NOT NULL,
    sealed_private_key bytea NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE UNIQUE INDEX certificate_authorities_one_active ON certificate_authorities (state)
    WHERE state = 'active';

CREATE TABLE certificates (
    serial text PRIMARY KEY,
    client_id uuid NOT NULL REFERENCES oauth_clients (id),
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    subject text NOT NULL,
    -- One name per line, such as `URI:urn:portcullis:client:<id>`.
    subject_alt_names text NOT NULL,
    not_before timestamptz NOT NULL,
    not_after timestamptz NOT NULL,
    sha256 text NOT NULL UNIQUE,
    certificate_pem text NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_reason text
);

CREATE INDEX certificates_client ON certificates (client_id, created_at);
CREATE INDEX certificates_tenant ON certificates (tenant_id, created_at);
CREATE INDEX certificates_revoked ON certificates (not_after) WHERE revoked_at IS NOT NULL;

CREATE TABLE trusted_cas (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    subject text NOT NULL,
    certificate_pem text NOT NULL,
    sha256 text NOT NULL,
    added_at timestamptz NOT NULL,
    UNIQUE (tenant_id, sha256)
);

-- The change feed also names revoked certificates, so that every node
-- rejects a revoked serial without a lookup.
ALTER TABLE changes ADD COLUMN cert_serial text;
