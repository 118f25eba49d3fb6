-- Portcullis schema version 11 for SQLite: rate limits of OAuth clients.
--
-- As for API keys (version 5): rate_limits holds the client's own rates
-- joined by commas, plan names a plan of the server's [limits.plans], and
-- both are NULL for a client without limits.
ALTER TABLE oauth_clients ADD COLUMN rate_limits TEXT;
ALTER TABLE oauth_clients ADD COLUMN plan TEXT;
