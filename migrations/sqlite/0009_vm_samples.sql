-- Per-VM load history (see src/monitor.rs), the same scheme as node_samples:
-- raw samples kept a couple of hours, per-minute averages kept for a week.
-- Only VMs pvce knows get rows; a VM's history goes with the VM. `node_id`
-- records where the VM ran (no foreign key: the history of a VM outlives the
-- removal of a node it once ran on).
CREATE TABLE vm_samples (
    vm_id       TEXT NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    node_id     TEXT NOT NULL,
    -- NULL on the first reading after a (re)start: CPU % needs two.
    cpu_percent REAL,
    -- Memory the guest has (balloon size).
    mem_mib     INTEGER NOT NULL,
    -- Host memory the VM's process occupies; NULL where the driver does not say.
    rss_mib     INTEGER,
    PRIMARY KEY (vm_id, at)
) WITHOUT ROWID;

CREATE INDEX vm_samples_at ON vm_samples (at);

CREATE TABLE vm_samples_minute (
    vm_id       TEXT NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    node_id     TEXT NOT NULL,
    cpu_percent REAL,
    mem_mib     INTEGER NOT NULL,
    rss_mib     INTEGER,
    PRIMARY KEY (vm_id, at)
) WITHOUT ROWID;

CREATE INDEX vm_samples_minute_at ON vm_samples_minute (at);
