-- How a layer's backup point read the disk (src/backup/mod.rs, PointSource):
-- 'layer_file' (the VM was stopped), 'running_whole' (a copy of the running
-- VM's whole disk) or 'running_changes' (only the clusters written since the
-- previous copy, from a checkpoint — src/backup/live.rs); NULL for points made
-- before this column and for the control plane's. disk_read_bytes: what QEMU
-- read for a running VM's copy.
ALTER TABLE backup_points ADD COLUMN source TEXT
    CHECK (source IS NULL OR source IN ('layer_file', 'running_whole', 'running_changes'));
ALTER TABLE backup_points ADD COLUMN disk_read_bytes INTEGER;
