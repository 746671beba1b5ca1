-- Snapshots of personal VMs (src/snapshots.rs).
-- kind 'internal': an internal qcow2 snapshot inside the VM's current layer, tagged
--   with this row's id (user-chosen names never reach qemu-img).
-- kind 'backup': a whole former layer kept beside the current one as
--   `<vm-id>.backup-<snapshot-id>.qcow2` (made by an import; at most one per VM).
CREATE TABLE snapshots (
    id          TEXT PRIMARY KEY,
    vm_id       TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('internal', 'backup')),
    size_bytes  INTEGER,
    created_at  TEXT NOT NULL,
    CONSTRAINT snapshots_vm_name_key UNIQUE (vm_id, name)
);
CREATE INDEX snapshots_vm_idx ON snapshots(vm_id);
