-- Notifications of the service desk (issue 13): in-app rows (the bell),
-- e-mail and webhook deliveries with their retries, each user's settings,
-- and the cursor of the dispatcher over the tickets' timelines
-- (src/desk/notices.rs).

-- One in-app notification: one timeline entry for one recipient. `event` is
-- the JSON of `notify::Event`, rendered in the reader's language when shown.
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    ticket_id   TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    event_id    INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    event       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    read_at     TEXT,
    CONSTRAINT notifications_user_event_key UNIQUE (user_id, event_id)
);
CREATE INDEX notifications_user ON notifications (user_id, id);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;

-- One e-mail or webhook to send, kept until it went out or was given up:
-- a failed send is retried later and never touches the in-app row.
-- `user_id` NULL: one of the server-wide webhook targets (`target`, its
-- position in the configuration). The destination of a user's delivery is
-- read from their settings when it is sent.
CREATE TABLE notification_deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    INTEGER NOT NULL,
    user_id     TEXT REFERENCES users(id) ON DELETE CASCADE,
    channel     TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    target      INTEGER,
    lang        TEXT NOT NULL,
    event       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     TEXT NOT NULL,
    sent_at     TEXT,
    gave_up_at  TEXT,
    last_error  TEXT
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_at)
    WHERE sent_at IS NULL AND gave_up_at IS NULL;

-- Each user's choices; no row: the defaults (every event in-app, e-mail and
-- webhook once an address or URL is set; zh-CN).
CREATE TABLE notification_settings (
    user_id         TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    lang            TEXT NOT NULL DEFAULT 'zh-CN',
    email           TEXT,
    webhook_url     TEXT,
    webhook_format  TEXT NOT NULL DEFAULT 'json',
    prefs           TEXT NOT NULL DEFAULT '{}'
);

-- The last timeline entry the dispatcher handled. It starts at the newest
-- entry at upgrade: history from before notifications existed is not sent.
CREATE TABLE notify_cursor (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    last_event_id   INTEGER NOT NULL
);
INSERT INTO notify_cursor (id, last_event_id) SELECT 1, COALESCE(MAX(id), 0) FROM ticket_events;

-- A complaint's formal written reply by an admin (issue 13: 投诉 needs one),
-- and the template a service request leads to: sealing that template
-- resolves the request with a work-log line (src/desk/requests.rs).
-- `leads_to_handled_at`: when the sealed template was acted on, so the
-- desk's pass does it once.
ALTER TABLE tickets ADD COLUMN reply TEXT;
ALTER TABLE tickets ADD COLUMN replied_at TEXT;
ALTER TABLE tickets ADD COLUMN replied_by TEXT REFERENCES users(id);
ALTER TABLE tickets ADD COLUMN leads_to_template_id TEXT;
ALTER TABLE tickets ADD COLUMN leads_to_handled_at TEXT;
CREATE INDEX tickets_leads_to ON tickets (leads_to_template_id)
    WHERE leads_to_template_id IS NOT NULL AND leads_to_handled_at IS NULL;
