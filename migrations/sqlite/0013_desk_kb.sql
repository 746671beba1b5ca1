-- The service desk's knowledge base (src/desk/kb.rs): how faults were
-- fixed, so the next one is faster (seed 004). Searched with FTS5's
-- trigram tokenizer, which matches Chinese text (no word boundaries) as
-- well as English.
CREATE TABLE kb_articles (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    symptom     TEXT NOT NULL,
    cause       TEXT NOT NULL DEFAULT '',
    fix         TEXT NOT NULL,
    lang        TEXT NOT NULL CHECK (lang IN ('en', 'zh-CN')),
    ticket_id   TEXT REFERENCES tickets(id) ON DELETE SET NULL,
    author_id   TEXT NOT NULL REFERENCES users(id),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX kb_articles_created ON kb_articles (created_at);

-- The search index, written in the same transaction as the article.
CREATE VIRTUAL TABLE kb_fts USING fts5(article_id UNINDEXED, title, symptom, cause, fix, tokenize = 'trigram');

-- Deflection: a reporter found the answer in an article instead of sending
-- a report.
CREATE TABLE kb_deflections (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    article_id  TEXT NOT NULL REFERENCES kb_articles(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users(id),
    vm_id       TEXT,
    at          TEXT NOT NULL
);
CREATE INDEX kb_deflections_article ON kb_deflections (article_id);
