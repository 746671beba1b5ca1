-- What the class-time loop (src/classtime/class.rs) and the idle auto-stop
-- (src/idle/) must not forget across a restart of the server (issue 15).
-- Each table is written only by the service that owns it and loaded when
-- that service starts; the services keep a copy in memory. Times are Unix
-- milliseconds of the clock the service was given (session instants are
-- whole seconds, so they read back exactly).

-- A VM queued by the pre-start of a session occurrence (or seen there
-- already running): it is not pre-started again in that occurrence, so a
-- student who shut it down in class is not overruled after a restart either.
-- Pruned once the occurrence is past the loop's stop window; no foreign key
-- (as for the slo_ tables): a row of a VM deleted meanwhile is harmless and
-- goes with the pruning.
CREATE TABLE class_prestarts_done (
    vm_id            TEXT NOT NULL,
    session_start_ms INTEGER NOT NULL,
    session_end_ms   INTEGER NOT NULL,
    PRIMARY KEY (vm_id, session_start_ms)
);
CREATE INDEX class_prestarts_done_end ON class_prestarts_done (session_end_ms);

-- A course whose VMs were shut down at the end of an occurrence: a restart
-- within the stop window does not stop them again (a student may have
-- started theirs since, on their hours). Pruned like the pre-starts.
CREATE TABLE class_stops_done (
    course_id      TEXT NOT NULL,
    session_end_ms INTEGER NOT NULL,
    PRIMARY KEY (course_id, session_end_ms)
);

-- A VM given 15 more minutes (src/classtime/extension.rs) at the end of the
-- occurrence ending at `session_end_ms`: shut down at `until_ms`, not at the
-- end. Removed when the loop has shut it down at `until_ms`.
CREATE TABLE class_extensions (
    vm_id          TEXT PRIMARY KEY REFERENCES vms(id) ON DELETE CASCADE,
    session_end_ms INTEGER NOT NULL,
    until_ms       INTEGER NOT NULL,
    CONSTRAINT class_extensions_after_end CHECK (until_ms > session_end_ms)
);

-- A warning shown to the user of a running VM that it is about to be
-- stopped (src/idle/): the stop comes 5 minutes after `warned_ms`, never
-- earlier and never with a fresh 5 minutes after a restart. Removed when the
-- rule stops holding or the VM was stopped.
CREATE TABLE idle_warnings (
    vm_id     TEXT PRIMARY KEY REFERENCES vms(id) ON DELETE CASCADE,
    warned_ms INTEGER NOT NULL,
    reason    TEXT NOT NULL CHECK (reason IN ('idle', 'hours'))
);
