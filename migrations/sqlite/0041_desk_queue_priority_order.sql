-- The queue filtered by priority (staff watching the open P1 tickets) read
-- every ticket of tickets_queue_order to find the few open P1 ones: the
-- open filter was `state NOT IN (...)`, which no index can seek. The list
-- now says "open" as the indexed expression `(state IN (...)) = 0` (and
-- drops that constant from its ORDER BY), and this index holds the queue
-- order under a priority: priority, open-first, newest first
-- (desk::tickets::list; benches/desk_queue.rs).
CREATE INDEX tickets_priority_order ON tickets (priority, (state IN ('resolved', 'closed')), created_at DESC);
