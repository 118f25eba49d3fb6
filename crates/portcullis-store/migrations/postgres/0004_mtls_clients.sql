-- Portcullis schema version 4 for PostgreSQL: OAuth clients that
-- authenticate with a TLS client certificate (RFC 8705 §2) and
-- certificate-bound access tokens (RFC 8705 §3).

ALTER TABLE oauth_clients DROP CONSTRAINT oauth_clients_auth_method_check;

ALTER TABLE oauth_clients ADD CONSTRAINT oauth_clients_auth_method_check CHECK (auth_method IN
    ('client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none',
     'tls_client_auth', 'self_signed_tls_client_auth'));

-- The RFC 8705 §2.1.2 member name, such as tls_client_auth_san_dns, and its
-- value. Set exactly for tls_client_auth clients.
ALTER TABLE oauth_clients
    ADD COLUMN tls_subject_kind text CHECK (tls_subject_kind IN
        ('tls_client_auth_subject_dn', 'tls_client_auth_san_dns', 'tls_client_auth_san_uri',
         'tls_client_auth_san_ip', 'tls_client_auth_san_email')),
    ADD COLUMN tls_subject text,
    ADD CONSTRAINT oauth_clients_tls_subject_pair
        CHECK ((tls_subject_kind IS NULL) = (tls_subject IS NULL)),
    ADD CONSTRAINT oauth_clients_tls_subject_method
        CHECK ((auth_method = 'tls_client_auth') = (tls_subject IS NOT NULL)),
    ADD CONSTRAINT oauth_clients_jwks_method
        CHECK (auth_method NOT IN ('private_key_jwt', 'self_signed_tls_client_auth')
            OR jwks IS NOT NULL);

-- The x5t#S256 confirmation of a certificate-bound access token (RFC 8705
-- §3.1), which introspection returns as cnf.
ALTER TABLE access_tokens ADD COLUMN certificate_thumbprint text;
