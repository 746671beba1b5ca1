-- The audit log (issue 16): who did what to what, when, from where, with
-- what outcome. Append-only: the triggers below refuse every UPDATE, and a
-- DELETE of any entry at or after the prune horizon. Only the retention
-- prune deletes, and it first raises the horizon (which never goes down),
-- so nothing can remove recent entries — not even a bug in pvce.
-- No foreign key to users: an entry outlives the account it names, and the
-- name is stored as it was then.
CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    user_id      TEXT,
    user_name    TEXT NOT NULL,
    action       TEXT NOT NULL,
    target_kind  TEXT NOT NULL,
    target_id    TEXT,
    target_label TEXT NOT NULL,
    ip           TEXT,
    outcome      TEXT NOT NULL CHECK (outcome IN ('ok', 'failed')),
    detail       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_user ON audit_log (user_id, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_target ON audit_log (target_kind, target_id, seq);

-- One row: entries before `horizon` (RFC 3339 UTC) may be pruned.
CREATE TABLE audit_horizon (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    horizon TEXT NOT NULL
);
INSERT INTO audit_horizon (id, horizon) VALUES (1, '0000-01-01T00:00:00Z');

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN OLD.at >= (SELECT horizon FROM audit_horizon WHERE id = 1)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_horizon_forward BEFORE UPDATE ON audit_horizon
WHEN NEW.horizon < OLD.horizon
BEGIN
    SELECT RAISE(ABORT, 'audit_horizon never goes back');
END;

CREATE TRIGGER audit_horizon_no_delete BEFORE DELETE ON audit_horizon
BEGIN
    SELECT RAISE(ABORT, 'audit_horizon is kept');
END;
