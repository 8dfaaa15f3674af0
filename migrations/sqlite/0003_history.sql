-- Health history, SQLite flavour (see src/store/history.rs). Keep in step with
-- migrations/postgres/0003_history.sql: the same tables, columns and keys; only the types differ.
--
-- Times in these tables are INTEGER microseconds since the Unix epoch (UTC): 6 bytes a value
-- where the RFC 3339 text of the other tables would take 27, on rows written 16,700 times a
-- second at a million integrations.
--
-- There is no tenant_id and no foreign key here. Every read joins `integrations` on the id and
-- filters on the tenant there; a result of a deleted integration is unreachable and expires
-- with its window. A foreign key would fail a whole batch over one just-deleted integration.

-- Raw check results for `history.raw_retention`: one row per check.
-- outcome: 0 success, 1 failure, 2 skipped (offline mode). failure_class only for failures.
CREATE TABLE check_results (
    integration_id BLOB    NOT NULL,
    checked_at     INTEGER NOT NULL,  -- when the check started
    latency_us     INTEGER NOT NULL,
    lateness_us    INTEGER NOT NULL,  -- how late it started against its schedule
    outcome        INTEGER NOT NULL,
    failure_class  TEXT,
    CONSTRAINT check_results_outcome CHECK (outcome IN (0, 1, 2))
);

-- "The latest N of one integration" and the rollup of one integration's hour are range scans
-- of this index. Unique, so a batch retried after a lost commit acknowledgement inserts nothing
-- twice (ON CONFLICT DO NOTHING).
CREATE UNIQUE INDEX check_results_by_integration ON check_results (integration_id, checked_at);
-- Pruning deletes the oldest rows in bounded batches; appended to at its right edge.
CREATE INDEX check_results_by_time ON check_results (checked_at);

-- Hourly and daily rollups of the raw results, computed set-based from closed windows.
-- A bucket covers [bucket_start, bucket_start + 1 hour or 1 day). latency_* cover the checks
-- that ran (successes and failures), not skipped ones.
CREATE TABLE check_rollups_hourly (
    integration_id BLOB    NOT NULL,
    bucket_start   INTEGER NOT NULL,
    successes      INTEGER NOT NULL,
    failures       INTEGER NOT NULL,
    skipped        INTEGER NOT NULL,
    latency_sum_us INTEGER NOT NULL,
    latency_max_us INTEGER NOT NULL,
    PRIMARY KEY (integration_id, bucket_start)
) WITHOUT ROWID;

CREATE INDEX check_rollups_hourly_by_time ON check_rollups_hourly (bucket_start);

CREATE TABLE check_rollups_daily (
    integration_id BLOB    NOT NULL,
    bucket_start   INTEGER NOT NULL,
    successes      INTEGER NOT NULL,
    failures       INTEGER NOT NULL,
    skipped        INTEGER NOT NULL,
    latency_sum_us INTEGER NOT NULL,
    latency_max_us INTEGER NOT NULL,
    PRIMARY KEY (integration_id, bucket_start)
) WITHOUT ROWID;

CREATE INDEX check_rollups_daily_by_time ON check_rollups_daily (bucket_start);

-- How far each rollup has got: every bucket that starts before rolled_through is complete.
-- resolution is 'hour' or 'day'. Reads take raw results from the hourly mark on, hourly
-- rollups from the daily mark on; pruning never deletes what is not rolled up yet.
CREATE TABLE history_rollup_state (
    resolution     TEXT    NOT NULL PRIMARY KEY,
    rolled_through INTEGER NOT NULL
);
