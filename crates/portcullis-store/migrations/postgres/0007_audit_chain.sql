-- Hash chain over audit records. Each record gets a gap-free sequence
-- number, the hash of the record before it and its own hash (HMAC-SHA-256
-- under a key derived from the master key). Records written before this
-- migration have no sequence number until the first start with the master
-- key chains them, in time order.
ALTER TABLE audit_events ADD COLUMN seq bigint;
ALTER TABLE audit_events ADD COLUMN prev_hash bytea;
ALTER TABLE audit_events ADD COLUMN hash bytea;

CREATE UNIQUE INDEX audit_events_seq ON audit_events (seq);
CREATE INDEX audit_events_unchained ON audit_events (at) WHERE seq IS NULL;
CREATE INDEX audit_events_actor_at ON audit_events (actor, at);
CREATE INDEX audit_events_action_at ON audit_events (action, at);

-- The head (newest record) and the checkpoint (last pruned record) of the
-- chain. Every insert of an audit record locks this one row (SELECT … FOR
-- UPDATE) in its own transaction, which serializes the writers of the
-- chain across nodes. `legacy_chained` turns true once the records from
-- before this migration are chained; later rows without a sequence number
-- are never chained.
CREATE TABLE audit_chain (
    id integer PRIMARY KEY CHECK (id = 1),
    head_seq bigint NOT NULL,
    head_hash bytea NOT NULL,
    checkpoint_seq bigint NOT NULL,
    checkpoint_hash bytea NOT NULL,
    legacy_chained boolean NOT NULL
);

INSERT INTO audit_chain (id, head_seq, head_hash, checkpoint_seq, checkpoint_hash, legacy_chained)
VALUES (1, 0, decode(repeat('00', 32), 'hex'), 0, decode(repeat('00', 32), 'hex'), false);
