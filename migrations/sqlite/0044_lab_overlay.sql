-- Lab networks across nodes (src/labnets.rs): a VXLAN segment per student
-- network, made on each node by pvce's libvirt network hook.
--
-- A node's VTEP address: the node's own IPv4 address on the underlay that
-- carries the VXLAN traffic (and its multicast). NULL: the node has no
-- overlay (no hook installed), so lab networks stay on one node.
ALTER TABLE nodes ADD COLUMN vtep_address TEXT;

-- The VNI each (course, student) lab network uses while any node runs it.
-- Allocated under db::begin, freed when the pair's last network is gone.
CREATE TABLE lab_vnis (
    course_id   TEXT NOT NULL,
    owner_id    TEXT NOT NULL,
    vni         INTEGER NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (course_id, owner_id)
);

-- The VNI a recorded network was made with (NULL: a single-node network).
ALTER TABLE lab_networks ADD COLUMN vni INTEGER;
