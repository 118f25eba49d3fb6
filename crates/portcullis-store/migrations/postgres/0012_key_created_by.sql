-- Portcullis schema version 12 for PostgreSQL: who created each API key.
--
-- created_by is the audit actor of the key's creation: `cli`,
-- `operator-key:<uuid>` or `user:<uuid>` for a dashboard user. A rotated
-- key's replacement keeps the creator of the key it replaces. Keys created
-- before this version have NULL.
ALTER TABLE api_keys ADD COLUMN created_by text;
