-- The status page (DESIGN §11), SQLite flavour. Keep in step with
-- migrations/postgres/0008_status_page.sql: the same table, columns and keys.
--
-- One row per tenant that configured its page; no row means the page is disabled. The
-- selector is a JSON object { integrationIds, tags, environment }, read and written whole.
CREATE TABLE status_pages (
    tenant_id   TEXT    NOT NULL PRIMARY KEY,
    enabled     BOOLEAN NOT NULL,
    public      BOOLEAN NOT NULL,
    title       TEXT    NOT NULL,
    description TEXT,
    selector    TEXT    NOT NULL,  -- JSON object
    modified_at TEXT    NOT NULL,
    modified_by TEXT    NOT NULL,
    version     INTEGER NOT NULL
);

-- The page's incidents are derived from the monitor's transitions of the last 14 days
-- (`integration.health` audit entries): a range scan of this index per page, instead of a
-- scan of the tenant's whole audit trail.
CREATE INDEX audit_log_by_action_time ON audit_log (tenant_id, action, occurred_at);
