-- The head row of the audit chain gets an HMAC-SHA-256 tag over its own
-- fields, under the audit chain key, so that a head moved back, reset or
-- pointed elsewhere by someone without the master key is detected. The
-- column stays NULL until the first write with the key (a new database) or
-- until an operator runs `portcullis audit-log seal` (a database with
-- records from an earlier release). `legacy_chained` goes: records from
-- before the chain are no longer chained at start-up, so a flag that anyone
-- with write access could reset must not decide it.
ALTER TABLE audit_chain ADD COLUMN mac bytea;
ALTER TABLE audit_chain DROP COLUMN legacy_chained;
