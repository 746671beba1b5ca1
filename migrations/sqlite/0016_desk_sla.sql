-- SLA settings and escalation state of the service desk (issue 13,
-- src/desk/settings.rs, Desk::escalate).

-- Desk settings as validated JSON documents, one row per key: `sla_policy`
-- (targets per priority, desk::sla::Policy) and `calendar` (the service
-- calendar, desk::calendar::CalendarSpec). No row: the built-in default.
CREATE TABLE desk_settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT REFERENCES users(id)
);

-- Escalation state per ticket, written by the escalation pass:
-- `sla_escalated`: the highest step taken per clock (desk::sla::Escalated,
-- JSON); `*_breached_at`: the due instant of a clock the pass found
-- breached (the stats count them); `sla_seen_event`: the last timeline row
-- the pass had seen, so it looks again at a finished ticket only if its
-- timeline grew since (a row id, not a time: tests drive the pass with
-- their own clock).
ALTER TABLE tickets ADD COLUMN sla_escalated TEXT;
ALTER TABLE tickets ADD COLUMN response_breached_at TEXT;
ALTER TABLE tickets ADD COLUMN resolution_breached_at TEXT;
ALTER TABLE tickets ADD COLUMN sla_seen_event INTEGER NOT NULL DEFAULT 0;
