-- Portcullis schema version 18 for SQLite: an operator can revoke a
-- token-signing key after a compromise.
--
-- A revoked key has state 'revoked', the time and reason of the
-- revocation, and an empty sealed_private_key, because it never signs
-- again. SQLite cannot change a column's CHECK constraint in place, so the
-- table is copied into one with the new state allowed. No other table
-- refers to signing_keys.
CREATE TABLE signing_keys_v18 (
    kid TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL CHECK (algorithm IN ('ES256', 'RS256', 'EdDSA')),
    state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retired', 'revoked')),
    public_jwk TEXT NOT NULL,
    sealed_private_key BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    activates_at INTEGER NOT NULL,
    retired_at INTEGER,
    publish_until INTEGER,
    revoked_at INTEGER,
    revoked_reason TEXT,
    CHECK ((state = 'revoked') = (revoked_at IS NOT NULL))
) STRICT;

INSERT INTO signing_keys_v18 (kid, algorithm, state, public_jwk, sealed_private_key,
    created_at, activates_at, retired_at, publish_until)
SELECT kid, algorithm, state, public_jwk, sealed_private_key,
    created_at, activates_at, retired_at, publish_until
FROM signing_keys;

DROP TABLE signing_keys;
ALTER TABLE signing_keys_v18 RENAME TO signing_keys;

CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';
