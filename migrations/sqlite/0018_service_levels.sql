-- Service level indicators (src/slo): what pvce records about its own
-- service, so the figures are computed, never typed in. Times are Unix
-- milliseconds: the indicators are durations and percentiles, and integer
-- maths over them needs no parsing. No foreign keys on purpose: a record
-- outlives the VM, user or node it names.

-- Every VM start attempt (a start of a VM already running is no attempt).
CREATE TABLE slo_vm_starts (
    id              TEXT PRIMARY KEY,
    vm_id           TEXT NOT NULL,
    -- The VM's owner: whose service it is.
    user_id         TEXT NOT NULL,
    course_id       TEXT,
    -- Where it was placed (also for a failure after placement).
    node_id         TEXT,
    requested_ms    INTEGER NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('ok', 'failed')),
    -- The failure's kind (see slo::record::failure_code).
    error_code      TEXT,
    running_ms      INTEGER,
    -- The first console frame of this boot (the console proxy sees it).
    first_frame_ms  INTEGER
);
CREATE INDEX slo_vm_starts_at ON slo_vm_starts (requested_ms);
CREATE INDEX slo_vm_starts_vm ON slo_vm_starts (vm_id, requested_ms);

-- Every console token issued, and what became of it.
CREATE TABLE slo_console_sessions (
    id              TEXT PRIMARY KEY,
    vm_id           TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    node_id         TEXT,
    issued_ms       INTEGER NOT NULL,
    -- The relay took the session (token, Origin and VM checks passed).
    opened_ms       INTEGER,
    -- Both RFB handshakes done (or, for SPICE, the TCP connection made).
    established_ms  INTEGER,
    first_frame_ms  INTEGER,
    ended_ms        INTEGER,
    ended_by        TEXT CHECK (ended_by IN ('user', 'error', 'system')),
    close_code      INTEGER
);
CREATE INDEX slo_console_sessions_at ON slo_console_sessions (issued_ms);
CREATE INDEX slo_console_sessions_vm ON slo_console_sessions (vm_id, issued_ms);

-- Targets set by admins; an indicator without a row has its default.
CREATE TABLE slo_targets (
    indicator   TEXT PRIMARY KEY,
    target      REAL NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT
);

-- The SLO period (one row at most; none: the default).
CREATE TABLE slo_settings (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    period_days INTEGER NOT NULL
);
