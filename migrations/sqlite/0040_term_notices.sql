-- The end of a term reaches students through the desk's notifications
-- (issue 20): when a course enters its notice window, the term loop writes
-- one row per student into the outbox `term_notices` (src/term/,
-- src/desk/notices.rs), which the dispatcher reads past its own cursor like
-- the tickets' timelines and the alerts.
--
-- One notice per student, course and end date: the unique key makes the
-- loop's insert idempotent (a restart, a second pass), while a moved end
-- date is a new notice. `ends_at`, `download_until`: RFC 3339 UTC;
-- `download_until` NULL while an admin holds the course or the student.
CREATE TABLE term_notices (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    course_id       TEXT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    ends_at         TEXT NOT NULL,
    download_until  TEXT,
    at              TEXT NOT NULL,
    CONSTRAINT term_notices_key UNIQUE (user_id, course_id, ends_at)
);

ALTER TABLE notify_cursor ADD COLUMN last_term_notice_id INTEGER NOT NULL DEFAULT 0;

-- An in-app notification may now be about a course's end: `source` gains
-- 'term' and `course_id` says which course. SQLite cannot widen a CHECK in
-- place: the table is rebuilt with every row, its indexes and foreign keys
-- (nothing references it). `notification_deliveries.source` has no CHECK.
CREATE TABLE notifications_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    source      TEXT NOT NULL DEFAULT 'ticket' CHECK (source IN ('ticket', 'alert', 'term')),
    ticket_id   TEXT REFERENCES tickets(id) ON DELETE CASCADE,
    alert_id    TEXT,
    course_id   TEXT REFERENCES courses(id) ON DELETE CASCADE,
    event_id    INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    event       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    read_at     TEXT,
    CONSTRAINT notifications_user_event_key UNIQUE (user_id, source, event_id),
    CONSTRAINT notifications_subject CHECK ((source = 'ticket') = (ticket_id IS NOT NULL)),
    CONSTRAINT notifications_course CHECK ((source = 'term') = (course_id IS NOT NULL))
);
INSERT INTO notifications_new (id, user_id, source, ticket_id, alert_id, event_id, kind, event, created_at, read_at)
    SELECT id, user_id, source, ticket_id, alert_id, event_id, kind, event, created_at, read_at FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;
CREATE INDEX notifications_user ON notifications (user_id, id);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;
