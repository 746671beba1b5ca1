-- Per-course clipboard switches of the browser desktop (issue 18): whether
-- students may paste from their computer into their VMs, and copy text out
-- of them. Teachers turn them off for exams; on by default, as before.
ALTER TABLE courses ADD COLUMN clipboard_to_guest INTEGER NOT NULL DEFAULT 1;
ALTER TABLE courses ADD COLUMN clipboard_from_guest INTEGER NOT NULL DEFAULT 1;
