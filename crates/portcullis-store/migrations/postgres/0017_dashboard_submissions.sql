-- Portcullis schema version 17 for PostgreSQL: one-time form submissions
-- of the dashboard.
--
-- A dashboard form whose answer shows a secret once carries a submission
-- token. Its first POST claims the token here before the action runs and
-- then records the id of what it created (target), so a re-sent POST
-- finds the row and does nothing. No secret is kept. Rows belong to a
-- sign-in session and go with it; pruning also removes expired ones.
CREATE TABLE dashboard_submissions (
    session_hash bytea NOT NULL REFERENCES login_sessions (session_hash) ON DELETE CASCADE,
    nonce text NOT NULL,
    kind text NOT NULL,
    target text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (session_hash, nonce)
);

CREATE INDEX dashboard_submissions_expires ON dashboard_submissions (expires_at);
