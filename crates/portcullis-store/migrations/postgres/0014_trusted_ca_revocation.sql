-- Portcullis schema version 14 for PostgreSQL: how each trusted partner
-- CA's certificates are checked for revocation, and trust changes in the
-- change feed.
--
-- crl_files lists absolute paths of PEM CRL files that every server reads
-- and rereads when they change. revocation_unchecked is true when the
-- operator acknowledged that the CA publishes no CRL, so its certificates
-- are accepted without a revocation check.
ALTER TABLE trusted_cas ADD COLUMN crl_files text[] NOT NULL DEFAULT '{}';
ALTER TABLE trusted_cas ADD COLUMN revocation_unchecked boolean NOT NULL DEFAULT false;

-- The id of a trusted CA that was added, changed or removed, so that every
-- server rebuilds its client certificate trust without waiting for a poll.
ALTER TABLE changes ADD COLUMN trusted_ca_id uuid;
