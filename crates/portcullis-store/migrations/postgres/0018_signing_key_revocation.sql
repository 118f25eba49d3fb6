-- Portcullis schema version 18 for PostgreSQL: an operator can revoke a
-- token-signing key after a compromise.
--
-- A revoked key has state 'revoked', the time and reason of the
-- revocation, and an empty sealed_private_key, because it never signs
-- again.
ALTER TABLE signing_keys DROP CONSTRAINT signing_keys_state_check;
ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_state_check
    CHECK (state IN ('pending', 'active', 'retired', 'revoked'));
ALTER TABLE signing_keys ADD COLUMN revoked_at timestamptz;
ALTER TABLE signing_keys ADD COLUMN revoked_reason text;
ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_revoked_at_check
    CHECK ((state = 'revoked') = (revoked_at IS NOT NULL));
