-- The list's JSON, kept by the database (issue 13, F8): each row carries its resource's JSON
-- object as two fragments, rendered by these triggers whenever a field in them is written, by
-- any writer (this daemon, another, an operator's SQL). A list page is then read, not built:
-- `list_head` (`{"integrationId":…,"pauseTicket":…`, no closing brace) and `list_tail`
-- (`"createdAt":…,"version":…}`, no opening brace) around the fields a check rewrites
-- (`lastTestedAt`, `lastTestSuccess`, `consecutiveFailures`), which src/store/listing.rs
-- renders at read time, so the history writer's batch updates never fire these triggers.
-- The objects mean exactly what serde makes of `Integration`: the keys in its order, times
-- as chrono writes them (sqlx stores `+00:00`, serde writes `Z`), 0/1 as booleans, JSON
-- columns embedded as JSON (tests/it/store.rs compares every field with a GET).
-- `rtrim`/`ltrim` drop exactly one brace: the head ends with `pauseTicket`'s string or null,
-- the tail starts with `"createdAt"`.
ALTER TABLE integrations ADD COLUMN list_head TEXT;
ALTER TABLE integrations ADD COLUMN list_tail TEXT;

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
        'version', NEW.version), '{')
    WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER integrations_list_json_update AFTER UPDATE OF
    integration_id, tenant_id, name, description, type, provider, base_url, auth_ref, configuration, environment, tags, owner_id, health_check, status, paused, pause_reason, pause_ticket, created_at, created_by, modified_at, modified_by, version
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
        'version', NEW.version), '{')
    WHERE rowid = NEW.rowid;
END;

-- The rows already there.
UPDATE integrations SET name = name;
