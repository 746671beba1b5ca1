-- Leases on the cluster-wide background work: see migrations/sqlite/0042_leases.sql.
CREATE TABLE leases (
    name TEXT COLLATE "C" CONSTRAINT "leases.name" PRIMARY KEY,
    holder TEXT COLLATE "C" NOT NULL,
    expires_ms BIGINT NOT NULL
);
