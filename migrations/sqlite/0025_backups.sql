-- Backups (issue 20): runs of the backup job, the backup points each made
-- (one restic snapshot each), and per subject (a VM's personal layer, or
-- `control` for the database and template store) when it was last backed
-- up well and what failed since. Times are Unix seconds.
CREATE TABLE backup_runs (
    id TEXT PRIMARY KEY,
    started_at INTEGER NOT NULL,
    -- NULL while running (or when the server died mid-run: then it failed).
    finished_at INTEGER,
    trigger TEXT NOT NULL CHECK (trigger IN ('scheduled', 'manual')),
    requested_by TEXT,
    ok INTEGER NOT NULL DEFAULT 0,
    backed_up INTEGER NOT NULL DEFAULT 0,
    unchanged INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    bytes_added INTEGER NOT NULL DEFAULT 0,
    -- Whether this run ran the repository's own check, and its outcome.
    checked INTEGER NOT NULL DEFAULT 0,
    check_ok INTEGER,
    error TEXT
);
CREATE INDEX backup_runs_started ON backup_runs (started_at);

CREATE TABLE backup_points (
    id TEXT PRIMARY KEY,
    -- The VM whose layer this is; NULL for the control plane. No foreign
    -- key: the backup of a deleted VM's layer outlives its row.
    vm_id TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('layer', 'control')),
    snapshot TEXT NOT NULL UNIQUE,
    -- The path restic recorded (what `restic dump` reads back).
    path TEXT NOT NULL,
    at INTEGER NOT NULL,
    bytes_added INTEGER NOT NULL,
    bytes_total INTEGER NOT NULL,
    run_id TEXT REFERENCES backup_runs (id) ON DELETE SET NULL
);
CREATE INDEX backup_points_vm ON backup_points (vm_id, at);

CREATE TABLE backup_items (
    -- A VM id, or 'control'.
    subject TEXT PRIMARY KEY,
    -- size:mtime of the layer file at its last good backup.
    signature TEXT,
    last_good_at INTEGER,
    last_attempt_at INTEGER,
    failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);

-- Restores of a VM's layer from a backup point: who, when, which point, and
-- the snapshot that keeps the layer it replaced (until the student deletes it).
CREATE TABLE backup_restores (
    id TEXT PRIMARY KEY,
    vm_id TEXT NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
    point_id TEXT NOT NULL,
    point_at INTEGER NOT NULL,
    by_user TEXT NOT NULL,
    at TEXT NOT NULL,
    kept_snapshot_id TEXT NOT NULL
);
CREATE INDEX backup_restores_vm ON backup_restores (vm_id);
