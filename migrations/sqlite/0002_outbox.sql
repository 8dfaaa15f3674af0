-- The transactional outbox (DESIGN §4, §6): every lifecycle event is written here in the same
-- transaction as the state change and its audit entry, and published to NATS afterwards.
-- Keep in step with migrations/postgres/0002_outbox.sql.

-- The last event sequence number given to each integration: events of one integration are
-- numbered 1, 2, 3, ... without gaps, in commit order (the row lock serializes them).
ALTER TABLE integrations ADD COLUMN event_sequence INTEGER NOT NULL DEFAULT 0;

CREATE TABLE outbox (
    event_id       BLOB    NOT NULL PRIMARY KEY,
    tenant_id      TEXT    NOT NULL,
    integration_id BLOB    NOT NULL,
    sequence       INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,  -- integration.created, integration.healthy, ...
    subject        TEXT    NOT NULL,  -- the NATS subject it is published on
    payload        TEXT    NOT NULL,  -- the CloudEvent, structured JSON
    created_at     TEXT    NOT NULL,
    published_at   TEXT,
    UNIQUE (integration_id, sequence)
);

-- The relay's work list: unpublished events, oldest first.
CREATE INDEX outbox_pending ON outbox (created_at, integration_id, sequence) WHERE published_at IS NULL;
-- Pruning published events after their retention period.
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
