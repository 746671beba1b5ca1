-- The periodic service report (src/reports/): generated from the records as a
-- draft, its analysis written by an admin, reviewed, published. `figures` is the
-- JSON snapshot of every figure at generation: a published report never changes
-- even when the records it was made from are later pruned. `texts` holds the
-- admin's analysis per section and the improvement plan (JSON object).
CREATE TABLE reports (
    id            TEXT PRIMARY KEY,
    period        TEXT NOT NULL CHECK (period IN ('week', 'month', 'quarter', 'custom')),
    range_from    TEXT NOT NULL,
    range_to      TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('draft', 'reviewed', 'published')),
    figures       TEXT NOT NULL,
    texts         TEXT NOT NULL DEFAULT '{}',
    created_by    TEXT NOT NULL REFERENCES users(id),
    created_at    TEXT NOT NULL,
    generated_at  TEXT NOT NULL,
    reviewed_by   TEXT REFERENCES users(id),
    reviewed_at   TEXT,
    published_by  TEXT REFERENCES users(id),
    published_at  TEXT
);
CREATE INDEX reports_state ON reports (state, range_from);
