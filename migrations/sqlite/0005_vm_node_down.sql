-- A VM whose node stopped answering: it may still run there, so it is shown
-- as `node_down` (see src/vms.rs) until the node answers again or an admin
-- fences it. A flag beside `state` (which keeps what pvce last knew) rather
-- than a new state value, because SQLite cannot widen the CHECK on `state`
-- without rebuilding the table that snapshots reference.
ALTER TABLE vms ADD COLUMN node_down INTEGER NOT NULL DEFAULT 0;
