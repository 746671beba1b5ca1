-- Alerts reach staff and admins through the desk's channels (issue 14):
-- the alert loop writes each fired / escalated / resolved alert into the
-- desk's outbox `alert_notices` (src/desk/notices.rs), which the
-- dispatcher reads past its own cursor like the tickets' timelines.
CREATE TABLE alert_notices (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id    TEXT NOT NULL,
    at          TEXT NOT NULL,
    change      TEXT NOT NULL CHECK (change IN ('fired', 'escalated', 'resolved')),
    level       TEXT NOT NULL CHECK (level IN ('info', 'warning', 'critical')),
    rule        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    value       TEXT,
    cause       TEXT
);

ALTER TABLE notify_cursor ADD COLUMN last_alert_notice_id INTEGER NOT NULL DEFAULT 0;

-- An in-app notification is about a ticket or an alert: `ticket_id` becomes
-- optional and `source` says which outbox `event_id` counts in. SQLite
-- cannot relax NOT NULL in place: the table is rebuilt (nothing references it).
CREATE TABLE notifications_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    source      TEXT NOT NULL DEFAULT 'ticket' CHECK (source IN ('ticket', 'alert')),
    ticket_id   TEXT REFERENCES tickets(id) ON DELETE CASCADE,
    alert_id    TEXT,
    event_id    INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    event       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    read_at     TEXT,
    CONSTRAINT notifications_user_event_key UNIQUE (user_id, source, event_id),
    CONSTRAINT notifications_subject CHECK ((source = 'ticket') = (ticket_id IS NOT NULL))
);
INSERT INTO notifications_new (id, user_id, source, ticket_id, event_id, kind, event, created_at, read_at)
    SELECT id, user_id, 'ticket', ticket_id, event_id, kind, event, created_at, read_at FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;
CREATE INDEX notifications_user ON notifications (user_id, id);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;

ALTER TABLE notification_deliveries ADD COLUMN source TEXT NOT NULL DEFAULT 'ticket';
