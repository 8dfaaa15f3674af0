-- The list's JSON, kept by the database (issue 13, F8): each row carries its resource's JSON
-- object as two fragments, rendered by this trigger whenever a field in them is written, by
-- any writer (every node of a cluster, an operator's SQL). A list page is then read, not
-- built: `list_head` (`{"integrationId" : …, "pauseTicket" : …`, no closing brace) and
-- `list_tail` (`"createdAt" : …, "version" : …}`, no opening brace) around the fields a check
-- rewrites (`lastTestedAt`, `lastTestSuccess`, `consecutiveFailures`), which
-- src/store/listing.rs renders at read time, so the history writer's batch updates never fire
-- this trigger. The objects mean exactly what serde makes of `Integration`: the keys in its
-- order, times as chrono writes them, JSONB columns embedded as JSON (tests/it/store.rs
-- compares every field with a GET).
ALTER TABLE integrations ADD COLUMN list_head TEXT;
ALTER TABLE integrations ADD COLUMN list_tail TEXT;

-- A time as chrono's `Serialize` writes it: RFC 3339 in UTC with `Z` and 0, 3 or 6 fractional
-- digits, the fewest that hold it (PostgreSQL's own JSON drops trailing zeros one at a time).
-- One expression, not STRICT, no FROM: the planner inlines it into the list's query (a call
-- of a SQL function it cannot inline costs more than the rest of the row).
CREATE FUNCTION integrations_json_time(t TIMESTAMPTZ) RETURNS TEXT
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', CASE
        WHEN date_trunc('second', t AT TIME ZONE 'UTC') = t AT TIME ZONE 'UTC'
            THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
        WHEN date_trunc('milliseconds', t AT TIME ZONE 'UTC') = t AT TIME ZONE 'UTC'
            THEN 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'
        ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)
$$;

CREATE FUNCTION integrations_list_json() RETURNS trigger
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
        'version', NEW.version)::text, 2);
    RETURN NEW;
END
$$;

CREATE TRIGGER integrations_list_json BEFORE INSERT OR UPDATE OF
    integration_id, tenant_id, name, description, type, provider, base_url, auth_ref, configuration, environment, tags, owner_id, health_check, status, paused, pause_reason, pause_ticket, created_at, created_by, modified_at, modified_by, version
    ON integrations
    FOR EACH ROW EXECUTE FUNCTION integrations_list_json();

-- The rows already there.
UPDATE integrations SET name = name;
