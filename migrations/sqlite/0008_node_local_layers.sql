-- Where a personal VM's layer lives (src/layers.rs).
-- `shared`: the file `overlay_path` on the data directory every node mounts.
-- `node-local`: a volume `layer_volume` in the layer pool of node
-- `layer_node_id` (NULL until the VM's first start creates it there);
-- `overlay_path` is then only where the server keeps a working copy while it
-- works on the layer offline. `layer_bytes` is the volume's size as last read
-- (the server cannot stat a file on another node).
ALTER TABLE vms ADD COLUMN layer_storage TEXT NOT NULL DEFAULT 'shared'
    CHECK (layer_storage IN ('shared', 'node-local'));
ALTER TABLE vms ADD COLUMN layer_node_id TEXT REFERENCES nodes(id);
ALTER TABLE vms ADD COLUMN layer_volume TEXT;
ALTER TABLE vms ADD COLUMN layer_bytes INTEGER;
CREATE INDEX vms_layer_node_idx ON vms(layer_node_id);
