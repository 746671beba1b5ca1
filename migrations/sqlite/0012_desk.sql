-- The service desk (issue 13, src/desk/): the `staff` role, tickets and
-- their timelines, screenshots taken for a report.

-- Role `staff` (lab technicians). SQLite cannot alter a CHECK constraint, and
-- rebuilding `users` would have to name every column other migrations add;
-- loosening a CHECK in place is the procedure SQLite documents for this
-- ("Making Other Kinds Of Table Schema Changes", ALTER TABLE). The schema
-- cookie is bumped by the CREATE TABLEs below, and src/db.rs runs migrations
-- on a connection of their own that is closed afterwards, so every pooled
-- connection parses the new constraint.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, 'CHECK (role IN (''student'', ''teacher'', ''admin''))',
                          'CHECK (role IN (''student'', ''teacher'', ''admin'', ''staff''))')
 WHERE type = 'table' AND name = 'users';
PRAGMA writable_schema = OFF;

-- One ticket. `context` is the JSON snapshot of the VM's situation taken
-- when it was reported (state, node, template, course, last error, recent
-- events); vm/node/course ids are copied out of it for the queue's filters
-- and carry no foreign keys: a ticket outlives the VM it names.
CREATE TABLE tickets (
    id              TEXT PRIMARY KEY,
    number          INTEGER NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('incident', 'request', 'complaint')),
    title           TEXT NOT NULL,
    description     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('new', 'assigned', 'in_progress', 'waiting', 'resolved', 'closed')),
    priority        TEXT NOT NULL CHECK (priority IN ('P1', 'P2', 'P3', 'P4')),
    impact          TEXT NOT NULL,
    urgency         TEXT NOT NULL,
    channel         TEXT NOT NULL,
    reporter_id     TEXT NOT NULL REFERENCES users(id),
    created_by      TEXT NOT NULL REFERENCES users(id),
    assignee_id     TEXT REFERENCES users(id),
    vm_id           TEXT,
    node_id         TEXT,
    course_id       TEXT,
    template_id     TEXT,
    context         TEXT NOT NULL DEFAULT '{}',
    screenshot      TEXT,   -- SHA-256 of the PNG under <data>/desk/screenshots/
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    responded_at    TEXT,
    resolved_at     TEXT,
    closed_at       TEXT,
    resolution      TEXT,
    rating          INTEGER CHECK (rating BETWEEN 1 AND 5),
    rating_comment  TEXT,
    reopen_count    INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT tickets_number_key UNIQUE (number)
);
CREATE INDEX tickets_queue ON tickets (state, priority, created_at);
CREATE INDEX tickets_reporter ON tickets (reporter_id, created_at);
CREATE INDEX tickets_assignee ON tickets (assignee_id, state);
CREATE INDEX tickets_node ON tickets (node_id, state);
CREATE INDEX tickets_course ON tickets (course_id, state);
CREATE INDEX tickets_vm ON tickets (vm_id, state);
CREATE INDEX tickets_created ON tickets (created_at);

-- The timeline: every change, comment and work-log entry, with who and when.
-- `internal` entries are never shown to the reporter.
CREATE TABLE ticket_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id   TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    at          TEXT NOT NULL,
    actor_id    TEXT REFERENCES users(id),
    kind        TEXT NOT NULL,
    internal    INTEGER NOT NULL DEFAULT 0,
    text        TEXT,
    data        TEXT
);
CREATE INDEX ticket_events_ticket ON ticket_events (ticket_id, id);

-- Screenshots taken while a report is written, before it is sent: the
-- reporter previews them and keeps or drops them. Unclaimed ones are removed
-- after a day.
CREATE TABLE desk_screenshots (
    id          TEXT PRIMARY KEY,
    sha256      TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    taken_by    TEXT NOT NULL REFERENCES users(id),
    vm_id       TEXT NOT NULL,
    taken_at    TEXT NOT NULL,
    ticket_id   TEXT REFERENCES tickets(id) ON DELETE SET NULL
);
CREATE INDEX desk_screenshots_sha ON desk_screenshots (sha256);
