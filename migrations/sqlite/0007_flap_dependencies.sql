-- Dependencies and flap detection (issue 14, DESIGN §10).
-- `depends_on`: the integrations this one depends on (JSON array of ids, set by users).
-- `suppressed_by`: the degraded or failed integrations it depends on, directly or through
-- others, while its failures are of class `dependency` (written by its monitor actor).
-- `flapping` and `flap_transitions`: the flap detector's state (the times of the latest
-- transitions, JSON array, oldest first), written with every transition the monitor commits,
-- so a restarted monitor counts on from the same times.
-- The list's JSON (0006) gains `dependsOn`, `suppressedBy` and `flapping` at the end of its
-- tail, where serde writes them, so both triggers are made again with them.
ALTER TABLE integrations ADD COLUMN depends_on TEXT NOT NULL DEFAULT '[]';
ALTER TABLE integrations ADD COLUMN suppressed_by TEXT NOT NULL DEFAULT '[]';
ALTER TABLE integrations ADD COLUMN flapping BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE integrations ADD COLUMN flap_transitions TEXT NOT NULL DEFAULT '[]';

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
        'flapping', json(CASE WHEN NEW.flapping THEN 'true' ELSE 'false' END)), '{')
    WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER integrations_list_json_update AFTER UPDATE OF
    integration_id, tenant_id, name, description, type, provider, base_url, auth_ref, configuration, environment, tags, owner_id, health_check, status, paused, pause_reason, pause_ticket, created_at, created_by, modified_at, modified_by, version, depends_on, suppressed_by, flapping
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
        'flapping', json(CASE WHEN NEW.flapping THEN 'true' ELSE 'false' END)), '{')
    WHERE rowid = NEW.rowid;
END;

-- The rows already there.
UPDATE integrations SET name = name;
