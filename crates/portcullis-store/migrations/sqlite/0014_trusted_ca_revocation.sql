-- Portcullis schema version 14 for SQLite: how each trusted partner CA's
-- certificates are checked for revocation, and trust changes in the
-- change feed.
--
-- crl_files lists absolute paths of PEM CRL files, one per line, that
-- every server reads and rereads when they change. revocation_unchecked
-- is 1 when the operator acknowledged that the CA publishes no CRL, so its
-- certificates are accepted without a revocation check.
ALTER TABLE trusted_cas ADD COLUMN crl_files TEXT NOT NULL DEFAULT '';
ALTER TABLE trusted_cas ADD COLUMN revocation_unchecked INTEGER NOT NULL DEFAULT 0
    CHECK (revocation_unchecked IN (0, 1));

-- The id of a trusted CA that was added, changed or removed, so that every
-- server rebuilds its client certificate trust without waiting for a poll.
ALTER TABLE changes ADD COLUMN trusted_ca_id TEXT;
