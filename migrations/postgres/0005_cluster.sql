-- Several daemons on one PostgreSQL (DESIGN §9): the shard count fixed per database, the live
-- nodes, one lease row per shard with its fencing epoch, and a log of every takeover.

CREATE TABLE cluster_settings (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    shards    INTEGER NOT NULL CHECK (shards > 0)
);

-- A node is live while expires_at is in the future (by the database's clock); it renews it
-- every cluster.renew_interval. It is given shards only once ready (its monitors run), so
-- that a node still starting up does not hold shards it cannot check yet.
CREATE TABLE cluster_nodes (
    node_id    TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    ready      BOOLEAN NOT NULL DEFAULT FALSE
);

-- The lease of one shard. epoch grows by one on every acquisition; a monitor write commits
-- only if the row still names its node, at its epoch, unexpired (checked FOR SHARE in the
-- write's own transaction).
CREATE TABLE cluster_shards (
    shard      INTEGER PRIMARY KEY,
    owner      TEXT,
    epoch      BIGINT NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT 'epoch'
);

-- One row per acquisition. taken_at is read after the shard row is locked, so it is later
-- than every write admitted under the epoch before.
CREATE TABLE cluster_takeovers (
    shard          INTEGER NOT NULL,
    epoch          BIGINT NOT NULL,
    node_id        TEXT NOT NULL,
    previous_owner TEXT,
    taken_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (shard, epoch)
);

-- Which node wrote each audit entry and event, and for a monitor's write the claim it was
-- written under: the proof that no stale owner's write landed after a takeover. (Existing
-- rows keep NULLs; the columns are not covered by the audit hash.)
ALTER TABLE audit_log ADD COLUMN written_by TEXT;
ALTER TABLE audit_log ADD COLUMN shard INTEGER;
ALTER TABLE audit_log ADD COLUMN epoch BIGINT;
ALTER TABLE audit_log ADD COLUMN written_at TIMESTAMPTZ;
ALTER TABLE audit_log ALTER COLUMN written_at SET DEFAULT clock_timestamp();

ALTER TABLE outbox ADD COLUMN written_by TEXT;
ALTER TABLE outbox ADD COLUMN shard INTEGER;
ALTER TABLE outbox ADD COLUMN epoch BIGINT;
ALTER TABLE outbox ADD COLUMN written_at TIMESTAMPTZ;
ALTER TABLE outbox ALTER COLUMN written_at SET DEFAULT clock_timestamp();
