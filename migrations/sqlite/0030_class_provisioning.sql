-- Class provisioning (src/slo, recorded by the class-time loop in
-- src/classtime/class.rs): when a class session's pre-start queued the
-- course's stopped VMs, and when each of them was usable (its start
-- returned with the VM running) or failed. Times are Unix milliseconds of
-- the loop's clock. No foreign keys on purpose, as for the other slo_ tables:
-- a record outlives the course and VMs it names.

-- One row per pre-started occurrence of a session (a restart of the server
-- re-queues the class; the first pre-start is kept).
CREATE TABLE slo_class_prestarts (
    id               TEXT PRIMARY KEY,
    course_id        TEXT NOT NULL,
    session_start_ms INTEGER NOT NULL,
    session_end_ms   INTEGER NOT NULL,
    prestart_ms      INTEGER NOT NULL,
    CONSTRAINT slo_class_prestarts_once UNIQUE (course_id, session_start_ms)
);
CREATE INDEX slo_class_prestarts_at ON slo_class_prestarts (session_start_ms);

-- The VMs a pre-start queued; ready_ms / failed_ms once its start returned.
CREATE TABLE slo_class_prestart_vms (
    prestart_id TEXT NOT NULL,
    vm_id       TEXT NOT NULL,
    ready_ms    INTEGER,
    failed_ms   INTEGER,
    PRIMARY KEY (prestart_id, vm_id)
);
CREATE INDEX slo_class_prestart_vms_vm ON slo_class_prestart_vms (vm_id);
