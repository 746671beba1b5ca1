-- Lab networks (src/labnets.rs).
-- A course may ask for a private isolated network per student.
ALTER TABLE courses ADD COLUMN lab_network INTEGER NOT NULL DEFAULT 0 CHECK (lab_network IN (0, 1));

-- The lab networks pvce created on nodes: the record of what it owns. A row is
-- written before its network is created and deleted after the network is gone.
-- No foreign keys on purpose: a row must outlive its course, student or node
-- until the network is removed.
CREATE TABLE lab_networks (
    course_id   TEXT NOT NULL,
    owner_id    TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (course_id, owner_id, node_id)
);
