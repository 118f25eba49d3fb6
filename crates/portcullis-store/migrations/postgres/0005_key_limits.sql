-- Portcullis schema version 5 for PostgreSQL: rate limits of API keys.
--
-- rate_limits holds the key's own rates, such as `100/s burst 200`, joined
-- by commas; plan names a plan of the server's [limits.plans]. Both are
-- NULL for a key without limits.
ALTER TABLE api_keys ADD COLUMN rate_limits text;
ALTER TABLE api_keys ADD COLUMN plan text;
