-- Portcullis schema version 9 for SQLite: anomaly alerts, their webhook
-- outbox and the networks each credential has been seen from.

-- Alerts have no foreign keys, so that an alert outlives the key or tenant
-- it names. credential is a key or OAuth client id as text; details is a
-- JSON object that never holds a secret.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    tenant_id TEXT,
    credential TEXT,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    details TEXT NOT NULL
) STRICT;

CREATE INDEX alerts_tenant ON alerts (tenant_id, id);
CREATE INDEX alerts_credential ON alerts (credential, id);
CREATE INDEX alerts_at ON alerts (at);

-- One row per alert and webhook. A pending row is due at next_attempt_at;
-- a worker that takes it moves next_attempt_at past its request timeout, so
-- a node that dies mid-send leaves the row due again instead of lost.
CREATE TABLE alert_deliveries (
    id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    webhook TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
) STRICT;

CREATE INDEX alert_deliveries_due ON alert_deliveries (state, next_attempt_at);
CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id);

-- The networks (such as an IPv4 /24) each credential was used from, so that
-- a first use from a new network can raise an alert after a restart too.
CREATE TABLE credential_networks (
    credential TEXT NOT NULL,
    network TEXT NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    PRIMARY KEY (credential, network)
) STRICT;
