-- Portcullis schema version 16 for PostgreSQL: dashboard members and
-- invites.
--
-- last_sign_in_at is when the user last started a sign-in session, at the
-- dashboard or the authorization endpoint; NULL until the first one after
-- this version.
ALTER TABLE users ADD COLUMN last_sign_in_at timestamptz;

-- An admin's invitation of an e-mail address into a tenant with a role.
-- Only the keyed hash of the invite token is kept. An invite is pending
-- while used_at and revoked_at are NULL and expires_at is in the future;
-- accepting it creates the user in the same transaction.
CREATE TABLE user_invites (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    email text NOT NULL,
    role text NOT NULL CHECK (role IN ('admin', 'developer', 'viewer')),
    token_hash bytea NOT NULL UNIQUE,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    user_id uuid REFERENCES users (id),
    revoked_at timestamptz
);

CREATE INDEX user_invites_tenant ON user_invites (tenant_id, created_at);
