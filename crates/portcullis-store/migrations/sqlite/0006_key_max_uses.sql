-- Portcullis schema version 6 for SQLite: usage-limited API keys.
--
-- max_uses is the number of requests a key may make in all, NULL for no
-- maximum. uses_spent counts them, with one conditional UPDATE per admitted
-- request, so every node sees the same count.
ALTER TABLE api_keys ADD COLUMN max_uses INTEGER CHECK (max_uses >= 0);
ALTER TABLE api_keys ADD COLUMN uses_spent INTEGER NOT NULL DEFAULT 0;
