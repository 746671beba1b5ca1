-- Problems (src/desk/problems.rs): the root cause behind several incidents,
-- its known error and workaround; resolving it updates its incidents.
CREATE TABLE problems (
    id          TEXT PRIMARY KEY,
    number      INTEGER NOT NULL,
    title       TEXT NOT NULL,
    root_cause  TEXT NOT NULL DEFAULT '',
    workaround  TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL CHECK (state IN ('open', 'known_error', 'resolved')),
    resolution  TEXT,
    created_by  TEXT NOT NULL REFERENCES users(id),
    created_at  TEXT NOT NULL,
    resolved_at TEXT,
    CONSTRAINT problems_number_key UNIQUE (number)
);
ALTER TABLE tickets ADD COLUMN problem_id TEXT REFERENCES problems(id);
CREATE INDEX tickets_problem ON tickets (problem_id);
