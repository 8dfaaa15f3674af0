-- The outbox relay (src/relay.rs) walks unpublished events by (integration_id, sequence), so
-- that each integration's events go out in order; this partial index holds exactly those rows.
-- Keep in step with the other backend's 0004_outbox_relay.sql.
CREATE INDEX outbox_pending_by_integration ON outbox (integration_id, sequence) WHERE published_at IS NULL;
