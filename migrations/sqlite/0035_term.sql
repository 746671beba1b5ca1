-- The end of a term (issue 20): a course's end and retention, its archive,
-- admin holds against erasure, and the erase records kept after the data
-- is gone (src/term/).
--
-- `ends_at`: RFC 3339 UTC; NULL = the course has no end. `retention_days`:
-- how long after the end the students' layers are kept (180 days unless
-- the teacher says otherwise). The end is when the course was archived if
-- that came first. `archived_at`: set once, when the course was archived
-- (by hand or at `ends_at`); `archived_by`: the user id, or 'rule:ends_at'.
ALTER TABLE courses ADD COLUMN ends_at TEXT;
ALTER TABLE courses ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 180
    CONSTRAINT courses_retention_days_check CHECK (retention_days BETWEEN 0 AND 3650);
ALTER TABLE courses ADD COLUMN archived_at TEXT;
ALTER TABLE courses ADD COLUMN archived_by TEXT;

-- A hold keeps a course, or a student (in every course), from erasure.
CREATE TABLE term_holds (
    id          TEXT PRIMARY KEY,
    course_id   TEXT REFERENCES courses(id) ON DELETE CASCADE,
    user_id     TEXT REFERENCES users(id) ON DELETE CASCADE,
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    CONSTRAINT term_holds_subject CHECK ((course_id IS NULL) <> (user_id IS NULL)),
    CONSTRAINT term_holds_course_key UNIQUE (course_id),
    CONSTRAINT term_holds_user_key UNIQUE (user_id)
);

-- What was erased, whose, when and by which rule: the record, not the data.
-- No foreign keys: the record outlives the VM and may outlive the course.
CREATE TABLE erasures (
    id              TEXT PRIMARY KEY,
    at              TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    course_id       TEXT NOT NULL,
    course_code     TEXT NOT NULL,
    vm_id           TEXT NOT NULL CONSTRAINT erasures_vm_key UNIQUE,
    vm_name         TEXT NOT NULL,
    what            TEXT NOT NULL,
    rule            TEXT NOT NULL,
    bytes           INTEGER NOT NULL DEFAULT 0,
    backups_pruned  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX erasures_user ON erasures (user_id, at);
