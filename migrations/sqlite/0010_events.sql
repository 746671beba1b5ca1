-- The cluster's event log (src/events.rs): node failures and recoveries,
-- fencing, maintenance, migrations — what an admin needs to reconstruct an
-- incident and count faults per node. No foreign keys on purpose: an event
-- outlives the node or VM it names (the names are copied in).
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    node_id     TEXT,
    node_name   TEXT,
    vm_id       TEXT,
    actor       TEXT,
    message     TEXT NOT NULL
);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_node ON events (node_id, at);
