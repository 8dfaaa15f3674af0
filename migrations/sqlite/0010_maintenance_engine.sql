-- Maintenance windows in the engine (issue 14, DESIGN §10).
-- `integrations.maintenance`: the window the integration is in, as its monitor committed it,
-- the resource's `maintenance` field as JSON (`{"windowId":…,"endsAt":…}`, or `null`).
-- `check_results.maintenance`: 1 for a check that ran in a window. The rollups' successes,
-- failures, skipped and latency leave such checks out (uptime leaves the window's time out),
-- and their `maintenance` counts them (the status page marks those days).
-- The list's JSON (0006, 0007) gains `maintenance` at the end of its tail, where serde writes
-- it, so both triggers are made again with it.
ALTER TABLE integrations ADD COLUMN maintenance TEXT NOT NULL DEFAULT 'null';
ALTER TABLE check_results ADD COLUMN maintenance INTEGER NOT NULL DEFAULT 0;
ALTER TABLE check_rollups_hourly ADD COLUMN maintenance INTEGER NOT NULL DEFAULT 0;
ALTER TABLE check_rollups_daily ADD COLUMN maintenance INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER integrations_list_json_insert;
DROP TRIGGER integrations_list_json_update;

CREATE TRIGGER integrations_list_json_insert AFTER INSERT ON integrations
BEGIN
    UPDATE integrations SET
    list_head = rtrim(json_object(
        'integrationId', lower(hex(substr(NEW.integration_id, 1, 4)) || '-' || hex(substr(NEW.integration_id, 5, 2)) || '-' ||
            hex(substr(NEW.integration_id, 7, 2)) || '-' || hex(substr(NEW.integration_id, 9, 2)) || '-' || hex(substr(NEW.integration_id, 11, 6))),
        'tenantId', NEW.tenant_id,
        'name', NEW.name,
        'description', NEW.description,
        'type', NEW.type,
        'provider', NEW.provider,
        'baseUrl', NEW.base_url,
        'authRef', NEW.auth_ref,
        'configuration', json(NEW.configuration),
        'environment', NEW.environment,
        'tags', json(NEW.tags),
        'ownerId', NEW.owner_id,
        'healthCheck', json(NEW.health_check),
        'status', NEW.status,
        'paused', json(CASE WHEN NEW.paused THEN 'true' ELSE 'false' END),
        'pauseReason', NEW.pause_reason,
        'pauseTicket', NEW.pause_ticket), '}'),
    list_tail = ltrim(json_object(
        'createdAt', replace(NEW.created_at, '+00:00', 'Z'),
        'createdBy', NEW.created_by,
        'modifiedAt', replace(NEW.modified_at, '+00:00', 'Z'),
        'modifiedBy', NEW.modified_by,
        'version', NEW.version,
        'dependsOn', json(NEW.depends_on),
        'suppressedBy', json(NEW.suppressed_by),
        'flapping', json(CASE WHEN NEW.flapping THEN 'true' ELSE 'false' END),
        'maintenance', json(NEW.maintenance)), '{')
    WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER integrations_list_json_update AFTER UPDATE OF
    integration_id, tenant_id, name, description, type, provider, base_url, auth_ref, configuration, environment, tags, owner_id, health_check, status, paused, pause_reason, pause_ticket, created_at, created_by, modified_at, modified_by, version, depends_on, suppressed_by, flapping, maintenance
    ON integrations
BEGIN
    UPDATE integrations SET
    list_head = rtrim(json_object(
        'integrationId', lower(hex(substr(NEW.integration_id, 1, 4)) || '-' || hex(substr(NEW.integration_id, 5, 2)) || '-' ||
            hex(substr(NEW.integration_id, 7, 2)) || '-' || hex(substr(NEW.integration_id, 9, 2)) || '-' || hex(substr(NEW.integration_id, 11, 6))),
        'tenantId', NEW.tenant_id,
        'name', NEW.name,
        'description', NEW.description,
        'type', NEW.type,
        'provider', NEW.provider,
        'baseUrl', NEW.base_url,
        'authRef', NEW.auth_ref,
        'configuration', json(NEW.configuration),
        'environment', NEW.environment,
        'tags', json(NEW.tags),
        'ownerId', NEW.owner_id,
        'healthCheck', json(NEW.health_check),
        'status', NEW.status,
        'paused', json(CASE WHEN NEW.paused THEN 'true' ELSE 'false' END),
        'pauseReason', NEW.pause_reason,
        'pauseTicket', NEW.pause_ticket), '}'),
    list_tail = ltrim(json_object(
        'createdAt', replace(NEW.created_at, '+00:00', 'Z'),
        'createdBy', NEW.created_by,
        'modifiedAt', replace(NEW.modified_at, '+00:00', 'Z'),
        'modifiedBy', NEW.modified_by,
        'version', NEW.version,
        'dependsOn', json(NEW.depends_on),
        'suppressedBy', json(NEW.suppressed_by),
        'flapping', json(CASE WHEN NEW.flapping THEN 'true' ELSE 'false' END),
        'maintenance', json(NEW.maintenance)), '{')
    WHERE rowid = NEW.rowid;
END;

-- The rows already there.
UPDATE integrations SET name = name;
