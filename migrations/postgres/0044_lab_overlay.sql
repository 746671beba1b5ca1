-- Lab networks across nodes: see migrations/sqlite/0044_lab_overlay.sql.
ALTER TABLE nodes ADD COLUMN vtep_address TEXT COLLATE "C";

CREATE TABLE lab_vnis (
    course_id TEXT COLLATE "C" NOT NULL,
    owner_id TEXT COLLATE "C" NOT NULL,
    vni BIGINT NOT NULL CONSTRAINT "lab_vnis.vni" UNIQUE,
    created_at TEXT COLLATE "C" NOT NULL,
    CONSTRAINT "lab_vnis.course_id, lab_vnis.owner_id" PRIMARY KEY (course_id, owner_id)
);

ALTER TABLE lab_networks ADD COLUMN vni BIGINT;
