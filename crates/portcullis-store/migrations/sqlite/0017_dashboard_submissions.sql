-- Portcullis schema version 17 for SQLite: one-time form submissions of
-- the dashboard.
--
-- A dashboard form whose answer shows a secret once carries a submission
-- token. Its first POST claims the token here before the action runs and
-- then records the id of what it created (target), so a re-sent POST
-- finds the row and does nothing. No secret is kept. Rows belong to a
-- sign-in session and go with it; pruning also removes expired ones.
CREATE TABLE dashboard_submissions (
    session_hash BLOB NOT NULL REFERENCES login_sessions (session_hash) ON DELETE CASCADE,
    nonce TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (session_hash, nonce)
) STRICT;

CREATE INDEX dashboard_submissions_expires ON dashboard_submissions (expires_at);
