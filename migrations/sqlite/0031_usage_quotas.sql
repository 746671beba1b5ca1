-- Usage metering and quotas (issue 15).
--
-- `vm_power_log`: a VM's power history, one row per change between off and
-- on (on = starting, running or stopping: the VM holds a node's resources).
-- Written by the one writer of VM states (src/vms/mod.rs `write_state`) only
-- when the VM's on/off changes; src/usage/ turns it into minutes per day.
CREATE TABLE vm_power_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    vm_id   TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
    at      TEXT NOT NULL,
    running INTEGER NOT NULL CHECK (running IN (0, 1))
);
CREATE INDEX vm_power_log_vm ON vm_power_log (vm_id, id);

-- Quotas of a course: the hours each student may run the course's VMs
-- outside its sessions (NULL: no budget), and how many of its VMs may run at
-- once (NULL: no limit).
CREATE TABLE course_quotas (
    course_id          TEXT PRIMARY KEY REFERENCES courses(id) ON DELETE CASCADE,
    hours_outside      INTEGER,
    max_concurrent_vms INTEGER,
    CONSTRAINT course_quotas_hours CHECK (hours_outside IS NULL OR hours_outside BETWEEN 0 AND 10000),
    CONSTRAINT course_quotas_concurrent CHECK (max_concurrent_vms IS NULL OR max_concurrent_vms BETWEEN 1 AND 10000)
);

-- Extra hours a course's teacher granted one student on top of the budget.
CREATE TABLE quota_extra_hours (
    course_id   TEXT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    extra_hours INTEGER NOT NULL,
    PRIMARY KEY (course_id, user_id),
    CONSTRAINT quota_extra_hours_range CHECK (extra_hours BETWEEN 0 AND 10000)
);

-- The lab's limits per user (one row; NULL: no limit): VMs running at once,
-- their vCPUs and memory together.
CREATE TABLE user_limits (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    max_running_vms INTEGER,
    max_vcpus       INTEGER,
    max_memory_mib  INTEGER,
    CONSTRAINT user_limits_positive CHECK (
        (max_running_vms IS NULL OR max_running_vms BETWEEN 1 AND 1000)
        AND (max_vcpus IS NULL OR max_vcpus BETWEEN 1 AND 100000)
        AND (max_memory_mib IS NULL OR max_memory_mib BETWEEN 1 AND 100000000))
);

-- Idle auto-stop of a course's VMs (src/idle/); no row or every rule NULL:
-- off (the default). A VM is stopped when no console has been connected for
-- `disconnected_minutes`, when it was started but never connected to within
-- `never_connected_minutes`, or when its guest's CPU stayed under
-- `cpu_below_percent` for `cpu_minutes`.
CREATE TABLE course_idle (
    course_id               TEXT PRIMARY KEY REFERENCES courses(id) ON DELETE CASCADE,
    disconnected_minutes    INTEGER,
    never_connected_minutes INTEGER,
    cpu_below_percent       REAL,
    cpu_minutes             INTEGER,
    CONSTRAINT course_idle_ranges CHECK (
        (disconnected_minutes IS NULL OR disconnected_minutes BETWEEN 1 AND 10080)
        AND (never_connected_minutes IS NULL OR never_connected_minutes BETWEEN 1 AND 10080)
        AND (cpu_below_percent IS NULL OR (cpu_below_percent > 0 AND cpu_below_percent <= 100))
        AND (cpu_minutes IS NULL OR cpu_minutes BETWEEN 1 AND 10080)
        AND ((cpu_below_percent IS NULL) = (cpu_minutes IS NULL)))
);

-- The 15-minute extension at the end of a session (src/classtime/extension.rs):
-- whether the course's teacher lets students ask for it (no row: denied).
CREATE TABLE class_extension_rules (
    course_id TEXT PRIMARY KEY REFERENCES courses(id) ON DELETE CASCADE,
    allowed   INTEGER NOT NULL CHECK (allowed IN (0, 1))
);
