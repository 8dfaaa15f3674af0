-- catalogd schema, PostgreSQL flavour. Keep in step with migrations/sqlite/0001_schema.sql:
-- both backends run the same SQL text, so table and column names must match exactly.
--
-- Names are COLLATE "C": ordering is bytewise, as with SQLite's BINARY collation, so both
-- backends list in the same order and a name-prefix range `name >= p AND name < p'` is an
-- index range scan whatever the database's default locale.

-- The integration resource (DESIGN §3). Names are unique per tenant, never globally: a global
-- unique constraint would tell one tenant which names another tenant uses.
CREATE TABLE integrations (
    integration_id        UUID        NOT NULL PRIMARY KEY,
    tenant_id             TEXT        NOT NULL,
    name                  TEXT        COLLATE "C" NOT NULL,
    description           TEXT,
    type                  TEXT        NOT NULL,
    provider              TEXT        NOT NULL,
    base_url              TEXT,
    auth_ref              TEXT,
    configuration         JSONB       NOT NULL,
    environment           TEXT,
    tags                  JSONB       NOT NULL,  -- array, in the user's order
    owner_id              TEXT,
    health_check          JSONB       NOT NULL,
    status                TEXT        NOT NULL,
    paused                BOOLEAN     NOT NULL,
    pause_reason          TEXT,
    pause_ticket          TEXT,
    last_tested_at        TIMESTAMPTZ,
    last_test_success     BOOLEAN,
    consecutive_failures  BIGINT      NOT NULL,
    consecutive_successes BIGINT      NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    created_by            TEXT        NOT NULL,
    modified_at           TIMESTAMPTZ NOT NULL,
    modified_by           TEXT        NOT NULL,
    version               BIGINT      NOT NULL,
    CONSTRAINT integrations_tenant_name UNIQUE (tenant_id, name)
);

-- Keyset lists: `(name, integration_id) > ($a, $b) ORDER BY name, integration_id`, one index
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
    name           TEXT COLLATE "C" NOT NULL,
    integration_id UUID NOT NULL REFERENCES integrations (integration_id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, tag, name, integration_id)
);

CREATE INDEX integration_tags_by_integration ON integration_tags (integration_id);

-- The hash-chained audit trail (see src/store/audit_chain.rs), one chain per tenant.
-- Snapshots are canonical JSON TEXT, never JSONB: JSONB would re-encode what was hashed.
CREATE TABLE audit_log (
    tenant_id    TEXT        NOT NULL,
    sequence     BIGINT      NOT NULL,
    entry_id     UUID        NOT NULL,
    actor        TEXT        NOT NULL,
    action       TEXT        NOT NULL,
    target_type  TEXT        NOT NULL,
    target_id    UUID        NOT NULL,
    before_state TEXT,
    after_state  TEXT,
    reason       TEXT,
    ticket       TEXT,
    occurred_at  TIMESTAMPTZ NOT NULL,
    prev_hash    TEXT        NOT NULL,
    hash         TEXT        NOT NULL,
    PRIMARY KEY (tenant_id, sequence)
);

CREATE INDEX audit_log_by_target ON audit_log (tenant_id, target_id, sequence);

-- Append-only. Row triggers refuse UPDATE and DELETE; TRUNCATE bypasses row triggers, so a
-- statement trigger refuses it too. A superuser can still disable triggers; the hash chain and
-- audit_heads are what detect that.
CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Each tenant's chain head. Appending locks this row (SELECT ... FOR UPDATE) first, so appends
-- to one tenant's chain are serialized and the chain cannot fork; verification compares the
-- chain's end with it, which detects deleted trailing entries.
CREATE TABLE audit_heads (
    tenant_id TEXT   NOT NULL PRIMARY KEY,
    sequence  BIGINT NOT NULL,
    hash      TEXT   NOT NULL
);
