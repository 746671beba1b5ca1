-- Knowledge-base editing (src/desk/kb.rs): every version of an article's
-- text is kept in kb_revisions with who wrote it and when, so an edit never
-- loses the earlier text; kb_articles holds the current version and its
-- number. A retired article (archived_at set) leaves search and suggestions
-- but stays readable by staff.
ALTER TABLE kb_articles ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
ALTER TABLE kb_articles ADD COLUMN editor_id TEXT REFERENCES users(id);
ALTER TABLE kb_articles ADD COLUMN archived_at TEXT;
ALTER TABLE kb_articles ADD COLUMN archived_by TEXT REFERENCES users(id);

CREATE TABLE kb_revisions (
    article_id  TEXT NOT NULL REFERENCES kb_articles(id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    title       TEXT NOT NULL,
    symptom     TEXT NOT NULL,
    cause       TEXT NOT NULL,
    fix         TEXT NOT NULL,
    lang        TEXT NOT NULL,
    editor_id   TEXT NOT NULL REFERENCES users(id),
    at          TEXT NOT NULL,
    PRIMARY KEY (article_id, number)
);

-- The articles written before editing existed: their text is revision 1.
INSERT INTO kb_revisions (article_id, number, title, symptom, cause, fix, lang, editor_id, at)
SELECT id, 1, title, symptom, cause, fix, lang, author_id, created_at FROM kb_articles;

-- The desk at 100,000 tickets (benches/desk_queue.rs; numbers in README).
-- The queue is ordered open-first, then by priority, newest first
-- (desk::tickets::list); these indexes hold that very order, under each
-- filter the queue page offers, so its first page is read in index order
-- and stops after a page instead of sorting every matching ticket. The
-- expression must stay exactly the one in the query's ORDER BY.
CREATE INDEX tickets_queue_order ON tickets ((state IN ('resolved', 'closed')), priority, created_at DESC);
CREATE INDEX tickets_state_order ON tickets (state, (state IN ('resolved', 'closed')), priority, created_at DESC);
CREATE INDEX tickets_node_order ON tickets (node_id, (state IN ('resolved', 'closed')), priority, created_at DESC);
CREATE INDEX tickets_course_order ON tickets (course_id, (state IN ('resolved', 'closed')), priority, created_at DESC);
CREATE INDEX tickets_assignee_order ON tickets (assignee_id, (state IN ('resolved', 'closed')), priority, created_at DESC);
-- The stats (desk::stats) read every ticket of a range several times:
-- this index covers every column they read, so the wide rows (title,
-- description, context) are never loaded.
CREATE INDEX tickets_stats ON tickets (created_at, kind, channel, priority, state, rating, reopen_count,
    assignee_id, responded_at, resolved_at, response_breached_at, resolution_breached_at);
