-- Leases on the cluster-wide background work (src/lease.rs): one row per
-- task name, naming the server process that runs it and until when (Unix
-- milliseconds of that server's clock). A server takes or renews a lease
-- with one conditional upsert — only when the row is its own or expired —
-- so at most one holder per name exists at any instant.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
