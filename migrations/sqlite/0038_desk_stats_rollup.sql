-- The desk's figures at 100,000 tickets (desk::stats, issue 13; numbers in
-- README): counting every figure over a quarter's 25,000 ticket rows cost
-- SQLite ~0.4-0.8 s of per-row expression evaluation, and the response /
-- resolution percentiles sorted every time of the range. Instead:
-- - `desk_stats_rollup` keeps, as tickets change, how many tickets created
--   in each hour, day and week count under each key (`ticket_stat_keys`):
--   a quarter reads ~13 weeks, a few days and hours of counters, and only
--   the seconds at either end of the range read tickets;
-- - `ticket_clock_facts` keeps each ticket's response and resolution time
--   with its magnitude bucket, indexed by bucket: the rollup's bucket counts
--   say which bucket holds a percentile, and only that bucket is sorted.
--
-- One writer: the triggers below are the only writers of both tables, and
-- they fire on every write to `tickets` (the service's, a cascade's, a
-- test's or a benchmark's bulk SQL alike), so the figures cannot drift from
-- the tickets. What a ticket contributes is defined once, by the views
-- `ticket_clock_times` and `ticket_stat_keys`; the triggers subtract a
-- ticket's rows before a change and add them after it.
--
-- Nothing here depends on the current time: an open ticket's SLA breach
-- counts once the escalation pass records it in `*_breached_at` (a write to
-- the ticket like any other), exactly as the figures counted it before.

-- A ticket's response and resolution time in seconds from creation (the
-- very expression the figures always used) and their magnitude buckets:
-- 0 below one second, else 12 times the digits of the whole seconds plus
-- the step of the E12 series (10, 12, 15, 18, 22, 27, 33, 39, 47, 56, 68,
-- 82) at or below their two leading digits: ~20 % wide, and growing with
-- the time, so the k-th smallest time lies in the bucket where the running
-- count over the buckets in order passes k.
CREATE VIEW ticket_clock_times AS
SELECT ticket_id, created_at,
    response_s,
    CASE WHEN response_s < 1 THEN 0 ELSE response_len * 12
        + (response_d >= 12) + (response_d >= 15) + (response_d >= 18) + (response_d >= 22)
        + (response_d >= 27) + (response_d >= 33) + (response_d >= 39) + (response_d >= 47)
        + (response_d >= 56) + (response_d >= 68) + (response_d >= 82) END AS response_bucket,
    resolution_s,
    CASE WHEN resolution_s < 1 THEN 0 ELSE resolution_len * 12
        + (resolution_d >= 12) + (resolution_d >= 15) + (resolution_d >= 18) + (resolution_d >= 22)
        + (resolution_d >= 27) + (resolution_d >= 33) + (resolution_d >= 39) + (resolution_d >= 47)
        + (resolution_d >= 56) + (resolution_d >= 68) + (resolution_d >= 82) END AS resolution_bucket
FROM (SELECT ticket_id, created_at, response_s, resolution_s,
          length(CAST(response_s AS INTEGER)) AS response_len,
          CAST(substr(CAST(response_s AS INTEGER) || '0', 1, 2) AS INTEGER) AS response_d,
          length(CAST(resolution_s AS INTEGER)) AS resolution_len,
          CAST(substr(CAST(resolution_s AS INTEGER) || '0', 1, 2) AS INTEGER) AS resolution_d
      FROM (SELECT id AS ticket_id, created_at,
                (julianday(responded_at) - julianday(created_at)) * 86400.0 AS response_s,
                (julianday(resolved_at) - julianday(created_at)) * 86400.0 AS resolution_s
            FROM tickets));

-- The counters one ticket adds to its creation day. Key names are read by
-- desk::stats (`Counts`); a NULL element is no counter.
CREATE VIEW ticket_stat_keys AS
SELECT t.id AS ticket_id, t.created_at, k.value AS key
FROM tickets t JOIN ticket_clock_times c ON c.ticket_id = t.id, json_each(json_array(
    'total',
    CASE WHEN t.responded_at IS NOT NULL THEN 'responded' END,
    CASE WHEN t.resolved_at IS NOT NULL THEN 'resolved' END,
    'kind:' || t.kind,
    'channel:' || t.channel,
    'priority:' || t.priority,
    'state:' || t.state,
    'rating:' || CAST(t.rating AS TEXT),
    CASE WHEN t.state IN ('resolved', 'closed') THEN 'done' END,
    CASE WHEN t.state IN ('resolved', 'closed') AND t.reopen_count = 0 THEN 'first_time' END,
    CASE WHEN t.state = 'closed' AND t.rating IS NULL THEN 'unrated' END,
    CASE WHEN t.kind = 'complaint' AND t.replied_at IS NOT NULL THEN 'complaint_replied' END,
    -- SLA compliance (desk::stats::SlaCompliance): met = stopped with no
    -- breach recorded, breached = a breach recorded (stopped or not).
    CASE WHEN t.responded_at IS NOT NULL AND t.response_breached_at IS NULL
         THEN 'sla:' || t.priority || ':response_met' END,
    CASE WHEN t.response_breached_at IS NOT NULL
         THEN 'sla:' || t.priority || ':response_breached' END,
    CASE WHEN t.state IN ('resolved', 'closed') AND t.resolution_breached_at IS NULL
         THEN 'sla:' || t.priority || ':resolution_met' END,
    CASE WHEN t.resolution_breached_at IS NOT NULL
         THEN 'sla:' || t.priority || ':resolution_breached' END,
    'assigned:' || t.assignee_id,
    CASE WHEN t.resolved_at IS NOT NULL THEN 'assigned_resolved:' || t.assignee_id END,
    -- How many of the day's response / resolution times fall in each bucket.
    'response_bucket:' || c.response_bucket,
    'resolution_bucket:' || c.resolution_bucket
)) k
WHERE k.value IS NOT NULL;

-- The rows a ticket adds to the rollup: each key under the hour, the day
-- and the week (from Monday, as `%W` counts weeks) of its creation.
CREATE VIEW ticket_stat_rows AS
SELECT k.ticket_id, s.span,
    CASE s.span WHEN 'hour' THEN substr(k.created_at, 1, 13)
                WHEN 'day' THEN substr(k.created_at, 1, 10)
                ELSE date(k.created_at, 'weekday 0', '-6 days') END AS start,
    k.key
FROM ticket_stat_keys k, (SELECT 'hour' AS span UNION ALL SELECT 'day' UNION ALL SELECT 'week') s;

-- The per-ticket fact row of the clock times, indexed by bucket: a
-- percentile sorts the range's times in one bucket, read from the index.
CREATE TABLE ticket_clock_facts (
    ticket_id          TEXT PRIMARY KEY REFERENCES tickets(id) ON DELETE CASCADE,
    created_at         TEXT NOT NULL,
    response_s         REAL,
    response_bucket    INTEGER,
    resolution_s       REAL,
    resolution_bucket  INTEGER
);
CREATE INDEX ticket_clock_facts_response
    ON ticket_clock_facts (response_bucket, created_at, response_s);
CREATE INDEX ticket_clock_facts_resolution
    ON ticket_clock_facts (resolution_bucket, created_at, resolution_s);

-- How many tickets created in the hour / day / week from `start` count
-- under `key`; no row for none. The second index serves the per-period
-- series, which read a few keys of every day.
CREATE TABLE desk_stats_rollup (
    span   TEXT NOT NULL CHECK (span IN ('hour', 'day', 'week')),
    start  TEXT NOT NULL,
    key    TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (span, start, key)
) WITHOUT ROWID;
CREATE INDEX desk_stats_rollup_key ON desk_stats_rollup (span, key, start, n);

-- The update triggers name every column the views read: a write to any
-- other column (the title, `updated_at`, the escalation pass's bookkeeping)
-- leaves the figures alone and fires nothing.
CREATE TRIGGER tickets_stats_insert AFTER INSERT ON tickets BEGIN
    INSERT INTO ticket_clock_facts SELECT * FROM ticket_clock_times WHERE ticket_id = NEW.id;
    INSERT INTO desk_stats_rollup (span, start, key, n)
    SELECT span, start, key, 1 FROM ticket_stat_rows WHERE ticket_id = NEW.id
    ON CONFLICT (span, start, key) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tickets_stats_before_update BEFORE UPDATE OF
    created_at, kind, channel, priority, state, rating, reopen_count, assignee_id,
    responded_at, resolved_at, replied_at, response_breached_at, resolution_breached_at
ON tickets BEGIN
    UPDATE desk_stats_rollup SET n = n - 1 WHERE (span, start, key) IN (
        SELECT span, start, key FROM ticket_stat_rows WHERE ticket_id = OLD.id);
    DELETE FROM desk_stats_rollup WHERE n = 0 AND (span, start, key) IN (
        SELECT span, start, key FROM ticket_stat_rows WHERE ticket_id = OLD.id);
    DELETE FROM ticket_clock_facts WHERE ticket_id = OLD.id;
END;

CREATE TRIGGER tickets_stats_after_update AFTER UPDATE OF
    created_at, kind, channel, priority, state, rating, reopen_count, assignee_id,
    responded_at, resolved_at, replied_at, response_breached_at, resolution_breached_at
ON tickets BEGIN
    INSERT INTO ticket_clock_facts SELECT * FROM ticket_clock_times WHERE ticket_id = NEW.id;
    INSERT INTO desk_stats_rollup (span, start, key, n)
    SELECT span, start, key, 1 FROM ticket_stat_rows WHERE ticket_id = NEW.id
    ON CONFLICT (span, start, key) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tickets_stats_delete BEFORE DELETE ON tickets BEGIN
    UPDATE desk_stats_rollup SET n = n - 1 WHERE (span, start, key) IN (
        SELECT span, start, key FROM ticket_stat_rows WHERE ticket_id = OLD.id);
    DELETE FROM desk_stats_rollup WHERE n = 0 AND (span, start, key) IN (
        SELECT span, start, key FROM ticket_stat_rows WHERE ticket_id = OLD.id);
    DELETE FROM ticket_clock_facts WHERE ticket_id = OLD.id;
END;

-- The stats no longer scan the tickets: their covering index (0021) only
-- cost every ticket write.
DROP INDEX tickets_stats;

-- The tickets written before this migration.
INSERT INTO ticket_clock_facts SELECT * FROM ticket_clock_times;
INSERT INTO desk_stats_rollup (span, start, key, n)
SELECT span, start, key, COUNT(*) FROM ticket_stat_rows GROUP BY 1, 2, 3;
