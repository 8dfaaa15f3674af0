-- Maintenance windows in the engine (issue 14, DESIGN §10).
-- `integrations.maintenance`: the window the integration is in, as its monitor committed it,
-- the resource's `maintenance` field as JSON (`{"windowId":…,"endsAt":…}`, or `null`).
-- `check_results.maintenance`: 1 for a check that ran in a window. The rollups' successes,
-- failures, skipped and latency leave such checks out (uptime leaves the window's time out),
-- and their `maintenance` counts them (the status page marks those days).
-- The list's JSON (0006, 0007) gains `maintenance` at the end of its tail, where serde writes
-- it, so both triggers are made again with it.
ALTER TABLE integrations ADD COLUMN maintenance JSONB NOT NULL DEFAULT 'null';
ALTER TABLE check_results ADD COLUMN maintenance SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE check_rollups_hourly ADD COLUMN maintenance BIGINT NOT NULL DEFAULT 0;
ALTER TABLE check_rollups_daily ADD COLUMN maintenance BIGINT NOT NULL DEFAULT 0;

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
        'flapping', NEW.flapping,
        'maintenance', NEW.maintenance)::text, 2);
    RETURN NEW;
END
$$;

CREATE TRIGGER integrations_list_json BEFORE INSERT OR UPDATE OF
    integration_id, tenant_id, name, description, type, provider, base_url, auth_ref, configuration, environment, tags, owner_id, health_check, status, paused, pause_reason, pause_ticket, created_at, created_by, modified_at, modified_by, version, depends_on, suppressed_by, flapping, maintenance
    ON integrations
    FOR EACH ROW EXECUTE FUNCTION integrations_list_json();

-- The rows already there.
UPDATE integrations SET name = name;
