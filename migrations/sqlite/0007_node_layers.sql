-- Per-node template stores (see src/stores.rs): which template layers a node
-- holds, verified against the library's SHA-256, and the store's capacity as
-- last sampled (NULL until the node's store pool exists).
CREATE TABLE node_layers (
    node_id     TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    template_id TEXT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    sha256      TEXT NOT NULL,
    verified_at TEXT NOT NULL,
    PRIMARY KEY (node_id, template_id)
) WITHOUT ROWID;

CREATE INDEX node_layers_template ON node_layers (template_id);

ALTER TABLE nodes ADD COLUMN store_used_bytes INTEGER;
ALTER TABLE nodes ADD COLUMN store_free_bytes INTEGER;
