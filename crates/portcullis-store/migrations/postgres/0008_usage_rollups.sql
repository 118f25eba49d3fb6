-- Portcullis schema version 8 for PostgreSQL: usage rollups.
--
-- usage_hours and usage_days count, per credential and UTC hour or day,
-- the requests that presented the credential and those of them that
-- authentication rejected. credential_kind is 'key' (an API key) or
-- 'client' (an OAuth client, for its access tokens and certificates).
-- period_start is the start of the hour or day. The rows carry no foreign keys, so usage outlives what it
-- counts, as audit records do.
CREATE TABLE usage_hours (
    credential_kind text NOT NULL CHECK (credential_kind IN ('key', 'client')),
    credential_id uuid NOT NULL,
    period_start timestamptz NOT NULL,
    tenant_id uuid,
    requests bigint NOT NULL CHECK (requests >= 0),
    failures bigint NOT NULL CHECK (failures >= 0),
    PRIMARY KEY (credential_kind, credential_id, period_start)
);

CREATE INDEX usage_hours_tenant ON usage_hours (tenant_id, period_start);
CREATE INDEX usage_hours_start ON usage_hours (period_start);

CREATE TABLE usage_days (
    credential_kind text NOT NULL CHECK (credential_kind IN ('key', 'client')),
    credential_id uuid NOT NULL,
    period_start timestamptz NOT NULL,
    tenant_id uuid,
    requests bigint NOT NULL CHECK (requests >= 0),
    failures bigint NOT NULL CHECK (failures >= 0),
    PRIMARY KEY (credential_kind, credential_id, period_start)
);

CREATE INDEX usage_days_tenant ON usage_days (tenant_id, period_start);
CREATE INDEX usage_days_start ON usage_days (period_start);

-- The scopes a credential exercised, one row per credential, UTC day and
-- scope a route required, so the credential audit can name granted scopes
-- that went unused and the narrower set that the observed requests need.
CREATE TABLE scope_uses (
    credential_kind text NOT NULL CHECK (credential_kind IN ('key', 'client')),
    credential_id uuid NOT NULL,
    day_start timestamptz NOT NULL,
    scope text NOT NULL,
    PRIMARY KEY (credential_kind, credential_id, day_start, scope)
);

CREATE INDEX scope_uses_day ON scope_uses (day_start);
