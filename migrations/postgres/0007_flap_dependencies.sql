-- Dependencies and flap detection (issue 14, DESIGN §10).
-- `depends_on`: the integrations this one depends on (JSON array of ids, set by users).
-- `suppressed_by`: the degraded or failed integrations it depends on, directly or through
-- others, while its failures are of class `dependency` (written by its monitor actor).
-- `flapping` and `flap_transitions`: the flap detector's state (the times of the latest
-- transitions, JSON array, oldest first), written with every transition the monitor commits,
-- so a restarted monitor counts on from the same times.
-- The list's JSON (0006) gains `dependsOn`, `suppressedBy` and `flapping` at the end of its
-- tail, where serde writes them, so its function and trigger are made again with them.
ALTER TABLE integrations ADD COLUMN depends_on JSONB NOT NULL DEFAULT '[]';
ALTER TABLE integrations ADD COLUMN suppressed_by JSONB NOT NULL DEFAULT '[]';
ALTER TABLE integrations ADD COLUMN flapping BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE integrations ADD COLUMN flap_transitions JSONB NOT NULL DEFAULT '[]';

DROP TRIGGER integrations_list_json ON integrations;

CREATE OR REPLACE FUNCTION integrations_list_json() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.list_head := left(json_build_object(
        'integrationId', NEW.integration_id,
        'tenantId', NEW.tenant_id,
        'name', NEW.name,
        'description', NEW.description,
        'type', NEW.type,
        'provider', NEW.provider,
        'baseUrl', NEW.base_url,
        'authRef', NEW.auth_ref,
        'configuration', NEW.configuration,
        'environment', NEW.environment,
        'tags', NEW.tags,
        'ownerId', NEW.owner_id,
        'healthCheck', NEW.health_check,
        'status', NEW.status,
        'paused', NEW.paused,
        'pauseReason', NEW.pause_reason,
        'pauseTicket', NEW.pause_ticket)::text, -1);
    NEW.list_tail := substr(json_build_object(
        'createdAt', integrations_json_time(NEW.created_at),
        'createdBy', NEW.created_by,
        'modifiedAt', integrations_json_time(NEW.modified_at),
        'modifiedBy', NEW.modified_by,
        'version', NEW.version,
        'dependsOn', NEW.depends_on,
        'suppressedBy', NEW.suppressed_by,
        'flapping', NEW.flapping)::text, 2);
    RETURN NEW;
END
$$;

CREATE TRIGGER integrations_list_json BEFORE INSERT OR UPDATE OF
    integration_id, tenant_id, name, description, type, provider, base_url, auth_ref, configuration, environment, tags, owner_id, health_check, status, paused, pause_reason, pause_ticket, created_at, created_by, modified_at, modified_by, version, depends_on, suppressed_by, flapping
    ON integrations
    FOR EACH ROW EXECUTE FUNCTION integrations_list_json();

-- The rows already there.
UPDATE integrations SET name = name;
