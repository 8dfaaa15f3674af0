-- catalogd schema, SQLite flavour. Keep in step with migrations/postgres/0001_schema.sql:
-- both backends run the same SQL text, so table and column names must match exactly.
--
-- Types follow sqlx's SQLite defaults: UUIDs are 16-byte BLOBs (so they sort like
-- PostgreSQL's uuid), times are RFC 3339 TEXT with microseconds, JSON is TEXT.

-- The integration resource (DESIGN §3). Names are unique per tenant, never globally: a global
-- unique constraint would tell one tenant which names another tenant uses.
CREATE TABLE integrations (
    integration_id        BLOB    NOT NULL PRIMARY KEY,
    tenant_id             TEXT    NOT NULL,
    name                  TEXT    NOT NULL,
    description           TEXT,
    type                  TEXT    NOT NULL,
    provider              TEXT    NOT NULL,
    base_url              TEXT,
    auth_ref              TEXT,
    configuration         TEXT    NOT NULL,  -- JSON object
    environment           TEXT,
    tags                  TEXT    NOT NULL,  -- JSON array, in the user's order
    owner_id              TEXT,
    health_check          TEXT    NOT NULL,  -- JSON object
    status                TEXT    NOT NULL,
    paused                BOOLEAN NOT NULL,
    pause_reason          TEXT,
    pause_ticket          TEXT,
    last_tested_at        TEXT,
    last_test_success     BOOLEAN,
    consecutive_failures  INTEGER NOT NULL,
    consecutive_successes INTEGER NOT NULL,
    created_at            TEXT    NOT NULL,
    created_by            TEXT    NOT NULL,
    modified_at           TEXT    NOT NULL,
    modified_by           TEXT    NOT NULL,
    version               INTEGER NOT NULL,
    CONSTRAINT integrations_tenant_name UNIQUE (tenant_id, name)
);

-- Keyset lists: `(name, integration_id) > (?, ?) ORDER BY name, integration_id`, one index
-- per equality filter so every filtered page is a range scan of its own index.
CREATE INDEX integrations_by_name        ON integrations (tenant_id, name, integration_id);
CREATE INDEX integrations_by_status      ON integrations (tenant_id, status, name, integration_id);
CREATE INDEX integrations_by_type        ON integrations (tenant_id, type, name, integration_id);
CREATE INDEX integrations_by_provider    ON integrations (tenant_id, provider, name, integration_id);
CREATE INDEX integrations_by_environment ON integrations (tenant_id, environment, name, integration_id);

-- One row per (integration, distinct tag), for the `tag` filter. The name is copied so a tag
-- list is a keyset range scan of the primary key; the store rewrites these rows whenever an
-- integration's name or tags change, in the same transaction.
CREATE TABLE integration_tags (
    tenant_id      TEXT NOT NULL,
    tag            TEXT NOT NULL,
    name           TEXT NOT NULL,
    integration_id BLOB NOT NULL REFERENCES integrations (integration_id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, tag, name, integration_id)
) WITHOUT ROWID;

CREATE INDEX integration_tags_by_integration ON integration_tags (integration_id);

-- The hash-chained audit trail (see src/store/audit_chain.rs), one chain per tenant.
-- Snapshots are canonical JSON text, exactly the bytes that were hashed.
CREATE TABLE audit_log (
    tenant_id    TEXT    NOT NULL,
    sequence     INTEGER NOT NULL,
    entry_id     BLOB    NOT NULL,
    actor        TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    target_type  TEXT    NOT NULL,
    target_id    BLOB    NOT NULL,
    before_state TEXT,
    after_state  TEXT,
    reason       TEXT,
    ticket       TEXT,
    occurred_at  TEXT    NOT NULL,
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, sequence)
);

CREATE INDEX audit_log_by_target ON audit_log (tenant_id, target_id, sequence);

-- Append-only. An attacker with write access to the file can drop these triggers; the hash
-- chain and audit_heads are what detect that.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- Each tenant's chain head. Appending locks this row first, so appends to one tenant's chain
-- are serialized and the chain cannot fork; verification compares the chain's end with it,
-- which detects deleted trailing entries.
CREATE TABLE audit_heads (
    tenant_id TEXT    NOT NULL PRIMARY KEY,
    sequence  INTEGER NOT NULL,
    hash      TEXT    NOT NULL
);
