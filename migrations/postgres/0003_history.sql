-- Health history, PostgreSQL flavour (see src/store/history.rs). Keep in step with
-- migrations/sqlite/0003_history.sql: the same tables, columns and keys; only the types differ.
--
-- Columns are ordered widest-alignment first so rows carry no padding: a raw row is a 24-byte
-- tuple header plus 34 bytes of data.
--
-- There is no tenant_id and no foreign key here. Every read joins `integrations` on the id and
-- filters on the tenant there; a result of a deleted integration is unreachable and expires
-- with its window. A foreign key would fail a whole batch over one just-deleted integration.

-- Raw check results for `history.raw_retention`: one row per check.
-- outcome: 0 success, 1 failure, 2 skipped (offline mode). failure_class only for failures.
-- The primary key serves "the latest N of one integration" and the rollup of one integration's
-- hour; it also makes a batch retried after a lost commit acknowledgement insert nothing twice.
CREATE TABLE check_results (
    integration_id UUID        NOT NULL,
    checked_at     TIMESTAMPTZ NOT NULL,  -- when the check started
    latency_us     INTEGER     NOT NULL,
    lateness_us    INTEGER     NOT NULL,  -- how late it started against its schedule
    outcome        SMALLINT    NOT NULL,
    failure_class  TEXT,
    CONSTRAINT check_results_pkey PRIMARY KEY (integration_id, checked_at),
    CONSTRAINT check_results_outcome CHECK (outcome IN (0, 1, 2))
);

-- Rows arrive in time order, so the heap is physically ordered by time and a BRIN index
-- (a few kB for a billion rows) finds the oldest block ranges for pruning.
CREATE INDEX check_results_by_time ON check_results USING brin (checked_at)
    WITH (pages_per_range = 32, autosummarize = on);

-- Hourly and daily rollups of the raw results, computed set-based from closed windows.
-- A bucket covers [bucket_start, bucket_start + 1 hour or 1 day). latency_* cover the checks
-- that ran (successes and failures), not skipped ones.
CREATE TABLE check_rollups_hourly (
    integration_id UUID        NOT NULL,
    bucket_start   TIMESTAMPTZ NOT NULL,
    latency_sum_us BIGINT      NOT NULL,
    successes      INTEGER     NOT NULL,
    failures       INTEGER     NOT NULL,
    skipped        INTEGER     NOT NULL,
    latency_max_us INTEGER     NOT NULL,
    CONSTRAINT check_rollups_hourly_pkey PRIMARY KEY (integration_id, bucket_start)
);

CREATE INDEX check_rollups_hourly_by_time ON check_rollups_hourly USING brin (bucket_start)
    WITH (autosummarize = on);

CREATE TABLE check_rollups_daily (
    integration_id UUID        NOT NULL,
    bucket_start   TIMESTAMPTZ NOT NULL,
    latency_sum_us BIGINT      NOT NULL,
    successes      INTEGER     NOT NULL,
    failures       INTEGER     NOT NULL,
    skipped        INTEGER     NOT NULL,
    latency_max_us INTEGER     NOT NULL,
    CONSTRAINT check_rollups_daily_pkey PRIMARY KEY (integration_id, bucket_start)
);

CREATE INDEX check_rollups_daily_by_time ON check_rollups_daily USING brin (bucket_start)
    WITH (autosummarize = on);

-- How far each rollup has got: every bucket that starts before rolled_through is complete.
-- resolution is 'hour' or 'day'. Reads take raw results from the hourly mark on, hourly
-- rollups from the daily mark on; pruning never deletes what is not rolled up yet.
CREATE TABLE history_rollup_state (
    resolution     TEXT        NOT NULL PRIMARY KEY,
    rolled_through TIMESTAMPTZ NOT NULL
);
