-- SQLite is single-node (its serve lock keeps a second daemon away), so it has no lease
-- tables; audit entries and events still say which node wrote them, like PostgreSQL's (the
-- shard and epoch of a fenced write stay NULL here: nothing is fenced).
ALTER TABLE audit_log ADD COLUMN written_by TEXT;
ALTER TABLE audit_log ADD COLUMN shard INTEGER;
ALTER TABLE audit_log ADD COLUMN epoch INTEGER;

ALTER TABLE outbox ADD COLUMN written_by TEXT;
ALTER TABLE outbox ADD COLUMN shard INTEGER;
ALTER TABLE outbox ADD COLUMN epoch INTEGER;
