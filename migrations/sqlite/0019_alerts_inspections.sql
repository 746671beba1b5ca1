-- Alerts at levels (src/alerts/service.rs) and the daily inspection
-- (src/inspection/). Times are Unix seconds: the loops take them from a
-- clock the tests control, and windows are integer maths.

-- The admins' rule set (one row; absent: the built-in defaults), JSON of
-- `alerts::rules::RuleSet`.
CREATE TABLE alert_rules (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    rules       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT
);

-- The engine's memory: one lifecycle state per (rule, subject), JSON of
-- `alerts::lifecycle::AlertState`, so a restart neither forgets an open
-- alert nor fires it again.
CREATE TABLE alert_states (
    rule        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    state       TEXT NOT NULL,
    PRIMARY KEY (rule, subject)
) WITHOUT ROWID;

-- One row per alert from firing to resolved; at most one open per
-- (rule, subject).
CREATE TABLE alerts (
    id              TEXT PRIMARY KEY,
    rule            TEXT NOT NULL,
    metric          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    subject_name    TEXT NOT NULL,
    level           TEXT NOT NULL CHECK (level IN ('info', 'warning', 'critical')),
    status          TEXT NOT NULL CHECK (status IN ('firing', 'acknowledged', 'resolved')),
    cause           TEXT,
    value           REAL,
    flapping        INTEGER NOT NULL DEFAULT 0,
    fired_at        INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    acknowledged_at INTEGER,
    acknowledged_by TEXT,
    resolved_at     INTEGER,
    ticket_id       TEXT
);
CREATE UNIQUE INDEX alerts_open ON alerts (rule, subject) WHERE status <> 'resolved';
CREATE INDEX alerts_fired ON alerts (fired_at);

-- Every transition of an alert (also written to the event log).
CREATE TABLE alert_transitions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id    TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    level       TEXT,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alert_transitions_alert ON alert_transitions (alert_id, id);

-- Inspections (巡检): the checklist of one run, JSON of
-- `inspection::Item`s.
CREATE TABLE inspections (
    id              TEXT PRIMARY KEY,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER NOT NULL,
    trigger         TEXT NOT NULL CHECK (trigger IN ('scheduled', 'manual')),
    requested_by    TEXT,
    full_check      INTEGER NOT NULL,
    failed          INTEGER NOT NULL,
    items           TEXT NOT NULL
);
CREATE INDEX inspections_started ON inspections (started_at);

-- Series the alert loop records itself because nothing else keeps their
-- history (template-store and layer-storage use, %): what the capacity
-- forecasts are drawn from. Kept eight days.
CREATE TABLE alert_samples (
    series      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    at          INTEGER NOT NULL,
    value       REAL NOT NULL,
    PRIMARY KEY (series, subject, at)
) WITHOUT ROWID;
