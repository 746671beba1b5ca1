-- The installation's identity (src/installation): generated once, at the first
-- start after this migration, and never changed. Every libvirt object pvce
-- creates is named with its short form and carries the whole id in its
-- metadata, so two installations on one node never touch each other's objects.
-- One row at most (the CHECK); the id itself is made in Rust (a random UUID).
CREATE TABLE installation (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    id          TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
