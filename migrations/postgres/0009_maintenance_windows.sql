-- Maintenance windows (DESIGN §10). The window is stored whole as its JSON resource (`body`,
-- what the API returns): it is read whole and never filtered on a field inside it, so columns
-- would only be a second copy to keep in step. `name` is copied out for the list's order.
CREATE TABLE maintenance_windows (
    window_id  UUID NOT NULL PRIMARY KEY,
    tenant_id  TEXT    NOT NULL,
    name       TEXT    COLLATE "C" NOT NULL,
    version    BIGINT  NOT NULL,
    body       TEXT    NOT NULL
);

CREATE INDEX maintenance_windows_by_name ON maintenance_windows (tenant_id, name, window_id);
