-- Portcullis schema version 15 for PostgreSQL: who registered each OAuth
-- client.
--
-- created_by is the audit actor of the registration: `cli`,
-- `operator-key:<uuid>` or `user:<uuid>` for a dashboard user. The
-- dashboard lets a developer manage only the clients they registered.
-- Clients registered before this version have NULL.
ALTER TABLE oauth_clients ADD COLUMN created_by text;
