
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
