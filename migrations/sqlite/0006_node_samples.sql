-- Node load history for the admin charts (see src/monitor.rs).
-- Raw samples at the sampler's cadence, kept a couple of hours; per-minute
-- averages kept for a week. `at` is Unix seconds so buckets are integer maths.
CREATE TABLE node_samples (
    node_id       TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    at            INTEGER NOT NULL,
    cpu_percent   REAL,
    mem_used_mib  INTEGER NOT NULL,
    mem_total_mib INTEGER NOT NULL,
    vms_running   INTEGER NOT NULL,
    PRIMARY KEY (node_id, at)
) WITHOUT ROWID;

CREATE INDEX node_samples_at ON node_samples (at);

CREATE TABLE node_samples_minute (
    node_id       TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    at            INTEGER NOT NULL,
    cpu_percent   REAL,
    mem_used_mib  INTEGER NOT NULL,
    mem_total_mib INTEGER NOT NULL,
    vms_running   INTEGER NOT NULL,
    PRIMARY KEY (node_id, at)
) WITHOUT ROWID;

CREATE INDEX node_samples_minute_at ON node_samples_minute (at);
