-- pvce schema. The database is the source of truth for intent; libvirt for what runs.
-- Constraint names matter: the error mapping in src/db.rs turns them into 409 codes.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('student', 'teacher', 'admin')),
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    CONSTRAINT users_username_key UNIQUE (username)
);

-- Sessions are stored by the SHA-256 of the bearer token, never the token itself.
CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions(user_id);

CREATE TABLE nodes (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    uri             TEXT NOT NULL,
    console_address TEXT NOT NULL,
    maintenance     INTEGER NOT NULL DEFAULT 0,
    state           TEXT NOT NULL DEFAULT 'down' CHECK (state IN ('up', 'down')),
    cpus            INTEGER NOT NULL DEFAULT 0,
    mem_total_mib   INTEGER NOT NULL DEFAULT 0,
    mem_used_mib    INTEGER NOT NULL DEFAULT 0,
    last_seen       TEXT,
    created_at      TEXT NOT NULL,
    CONSTRAINT nodes_name_key UNIQUE (name),
    CONSTRAINT nodes_uri_key UNIQUE (uri)
);

CREATE TABLE templates (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    parent_id          TEXT REFERENCES templates(id),
    os                 TEXT NOT NULL,
    software           TEXT NOT NULL DEFAULT '[]',  -- JSON array, normalised and sorted
    state              TEXT NOT NULL CHECK (state IN ('draft', 'ready', 'failed')),
    size_bytes         INTEGER NOT NULL DEFAULT 0,
    virtual_size_bytes INTEGER NOT NULL DEFAULT 0,
    depth              INTEGER NOT NULL DEFAULT 0,
    checksum           TEXT,
    created_by         TEXT REFERENCES users(id),
    created_at         TEXT NOT NULL,
    CONSTRAINT templates_name_key UNIQUE (name)
);

CREATE TABLE courses (
    id          TEXT PRIMARY KEY,
    code        TEXT NOT NULL,
    name        TEXT NOT NULL,
    teacher_id  TEXT NOT NULL REFERENCES users(id),
    created_at  TEXT NOT NULL,
    CONSTRAINT courses_code_key UNIQUE (code)
);

CREATE TABLE vm_specs (
    id           TEXT PRIMARY KEY,
    course_id    TEXT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    template_id  TEXT NOT NULL REFERENCES templates(id),
    vcpus        INTEGER NOT NULL,
    memory_mib   INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    CONSTRAINT vm_specs_course_name_key UNIQUE (course_id, name)
);

CREATE TABLE enrolments (
    course_id   TEXT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users(id),
    created_at  TEXT NOT NULL,
    CONSTRAINT enrolments_pkey PRIMARY KEY (course_id, user_id)
);

-- A VM is either a student's personal VM of a course spec, or a teacher's
-- build VM for a draft template (derive online), never both.
CREATE TABLE vms (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    course_id    TEXT REFERENCES courses(id),
    spec_id      TEXT REFERENCES vm_specs(id),
    build_template_id TEXT REFERENCES templates(id),
    owner_id     TEXT NOT NULL REFERENCES users(id),
    template_id  TEXT NOT NULL REFERENCES templates(id),
    node_id      TEXT REFERENCES nodes(id),
    state        TEXT NOT NULL CHECK (state IN ('stopped', 'starting', 'running', 'stopping', 'error')),
    vcpus        INTEGER NOT NULL,
    memory_mib   INTEGER NOT NULL,
    overlay_path TEXT NOT NULL,
    last_error   TEXT,
    last_started_at TEXT,
    created_at   TEXT NOT NULL,
    CONSTRAINT vms_spec_owner_key UNIQUE (spec_id, owner_id),
    CONSTRAINT vms_build_template_key UNIQUE (build_template_id),
    CONSTRAINT vms_kind_check CHECK (
        (course_id IS NOT NULL AND spec_id IS NOT NULL AND build_template_id IS NULL)
        OR (course_id IS NULL AND spec_id IS NULL AND build_template_id IS NOT NULL))
);
CREATE INDEX vms_owner_idx ON vms(owner_id);
CREATE INDEX vms_course_idx ON vms(course_id);
CREATE INDEX vms_node_idx ON vms(node_id);
