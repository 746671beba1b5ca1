-- Every directory sync that changed (or could have changed) accounts: when,
-- what started it, and its report. The scheduled sync reads its last run
-- here; the admin's Users page shows the recent ones.
CREATE TABLE directory_syncs (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    trigger  TEXT NOT NULL CHECK (trigger IN ('scheduled', 'admin', 'command')),
    report   TEXT NOT NULL
);
CREATE INDEX directory_syncs_trigger_at_idx ON directory_syncs(trigger, at);
