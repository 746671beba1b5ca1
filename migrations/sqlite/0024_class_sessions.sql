-- Class time (issue 15): a course's timetabled sessions. `starts_at` and
-- `ends_at` are the first occurrence (RFC 3339 UTC); a weekly session recurs
-- on the same weekday until `weekly_until` (a local date of the lab,
-- inclusive), except on the local dates of `exceptions` (a JSON array).
-- The pure rules are in src/classtime/timetable.rs.
CREATE TABLE class_sessions (
    id           TEXT PRIMARY KEY,
    course_id    TEXT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    title        TEXT NOT NULL DEFAULT '',
    starts_at    TEXT NOT NULL,
    ends_at      TEXT NOT NULL,
    weekly_until TEXT,
    exceptions   TEXT NOT NULL DEFAULT '[]',
    source       TEXT NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'ics')),
    created_by   TEXT REFERENCES users(id) ON DELETE SET NULL,
    created_at   TEXT NOT NULL,
    CONSTRAINT class_sessions_order CHECK (ends_at > starts_at)
);
CREATE INDEX class_sessions_course ON class_sessions (course_id, starts_at);
