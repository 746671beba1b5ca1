-- The teacher's video wall and assist (issue 15).
-- A student's raised hand ("ask for help") on one of their VMs: a row while
-- it is up; lowered by the student or by whoever helps them. Removed with
-- the VM.
CREATE TABLE vm_hands (
    vm_id     TEXT PRIMARY KEY REFERENCES vms(id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    raised_at TEXT NOT NULL
);
-- A teacher showing their own screen (a VM of theirs in the course) to the
-- class, view-only: at most one per course, while the row exists.
CREATE TABLE course_presentations (
    course_id  TEXT PRIMARY KEY REFERENCES courses(id) ON DELETE CASCADE,
    vm_id      TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    started_at TEXT NOT NULL
);
