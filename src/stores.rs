//! Template stores: every node keeps a local copy of the template layers its
//! VMs need (the pVCE paper's per-node template store), so a class booting at
//! once reads its base images from local disk, not from the server.
//!
//! A node's store is a libvirt `dir` storage pool (named by `--template-pool`,
//! default `pvce-<installation>-templates`, see src/installation) whose directory is **the same path as the
//! server's template directory** (`<data dir>/templates`). Same path on every
//! node means the backing-file names written into child layers and personal
//! overlays resolve on whichever node runs the VM, without rewriting any image
//! header. On the server's own node — or where the template directory is a
//! shared mount — the pool *is* the library, the layers are already there and
//! distributing them is only a verification.
//!
//! Before a VM starts on a node, [`Stores::ensure_chain`] makes sure every
//! layer of its template's backing chain is in the node's store: a missing
//! layer is created as a volume and uploaded through libvirt
//! (`virStorageVolUpload`, parents first), then read back
//! (`virStorageVolDownload`) and its SHA-256 compared with the library's. Only
//! a verified layer is recorded in `node_layers`, which placement reads to know
//! which nodes hold (or have room to receive) a template.
//!
//! Invariants:
//! - A volume whose checksum does not match is never used, and pvce deletes
//!   only volumes it has just created itself (a mismatching volume may be the
//!   library file seen through a shared mount: it is reported, not removed).
//! - A failed upload leaves no volume behind (see `Node::upload_volume`).
//! - Concurrent starts needing the same layer on the same node copy it once
//!   (one lock per node and layer).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::db::{self, Pool};
use crate::libvirt::LibvirtError;
use crate::nodes::{NodeError, Nodes};
use crate::storage::Storage;
use crate::templates::TemplateError;
use crate::templates::chain::{self, ChainLayer};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The node's copy of a layer differs from the library's.
    #[error(
        "the template store of node {node} holds a different {layer}; remove it there or fix the library"
    )]
    Mismatch { node: String, layer: String },
    /// The template chain could not be read.
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Libvirt(#[from] LibvirtError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

type LayerLock = Arc<tokio::sync::Mutex<()>>;

/// The stores of all nodes.
#[derive(Debug)]
pub struct Stores {
    pool: Pool,
    storage: Storage,
    nodes: Arc<Nodes>,
    pool_name: String,
    /// What the pool's name lets pvce do on a node (src/installation).
    claim: crate::libvirt::PoolClaim,
    /// One lock per (node, layer).
    locks: Mutex<HashMap<(Uuid, Uuid), LayerLock>>,
}

impl Stores {
    pub fn new(pool: Pool, storage: Storage, nodes: Arc<Nodes>, pool_name: String) -> Self {
        Self {
            pool,
            storage,
            nodes,
            pool_name,
            claim: crate::libvirt::PoolClaim::default(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the pool's name is derived from the installation id and which
    /// older name to adopt (see `Node::ensure_dir_pool`).
    #[must_use]
    pub fn with_claim(mut self, claim: crate::libvirt::PoolClaim) -> Self {
        self.claim = claim;
        self
    }

    /// The libvirt pool name of the stores.
    pub fn pool_name(&self) -> &str {
        &self.pool_name
    }

    fn dir(&self) -> PathBuf {
        self.storage.templates_dir()
    }

    fn lock(&self, node: Uuid, layer: Uuid) -> LayerLock {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((node, layer))
            .or_default()
            .clone()
    }

    /// Upgrade path (src/installation): on every reachable node, a store pool
    /// an older pvce named without the installation id and pointing at
    /// exactly our directory is adopted under this installation's name.
    /// Returns how many were; failures are logged (the next start retries).
    pub async fn adopt_legacy(&self) -> usize {
        adopt_legacy_pools(&self.nodes, &self.pool_name, &self.dir(), &self.claim).await
    }

    /// Reads node `node_id`'s clock through its store pool (set up first
    /// if no template was copied there yet): see `Node::probe_clock`. For
    /// the daily inspection's clock skew check.
    pub async fn probe_clock(
        &self,
        node_id: Uuid,
    ) -> Result<crate::libvirt::ClockProbe, StoreError> {
        let conn = self.nodes.conn(node_id).await?;
        {
            let lock = self.lock(node_id, Uuid::nil());
            let _guard = lock.lock().await;
            conn.ensure_dir_pool(&self.pool_name, &self.dir(), self.claim.clone())
                .await?;
        }
        Ok(conn.probe_clock(&self.pool_name).await?)
    }

    /// The backing chain of `template_id` (child first), read once per start
    /// and handed to [`Self::holders`] and [`Self::ensure_chain`].
    pub async fn chain(&self, template_id: Uuid) -> Result<Vec<ChainLayer>, StoreError> {
        let (_, chain, _) = chain::template_chain(&self.pool, &self.storage, template_id).await?;
        Ok(chain)
    }

    /// Layers (template id → verified SHA-256) node `node_id` holds.
    async fn held(&self, node_id: Uuid) -> Result<HashMap<Uuid, String>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT template_id, sha256 FROM node_layers WHERE node_id = $1")
                .bind(node_id.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(t, s)| Ok((db::parse_uuid(&t)?, s)))
            .collect()
    }

    /// Makes sure node `node_id` holds every layer of `chain` (from
    /// [`Self::chain`]), copying and verifying what is missing. Cheap when
    /// nothing is.
    pub async fn ensure_chain(
        &self,
        node_id: Uuid,
        chain: &[ChainLayer],
    ) -> Result<(), StoreError> {
        let held = self.held(node_id).await?;
        let missing: Vec<&ChainLayer> = chain
            .iter()
            .rev() // parents first: a child's backing file must exist before it
            .filter(|l| held.get(&l.id) != Some(&l.sha256))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let node = self.nodes.get(node_id).await?;
        let conn = self.nodes.conn(node_id).await?;
        {
            // One pool set-up per node at a time (concurrent starts of a class).
            let lock = self.lock(node_id, Uuid::nil());
            let _guard = lock.lock().await;
            conn.ensure_dir_pool(&self.pool_name, &self.dir(), self.claim.clone())
                .await?;
        }
        for layer in missing {
            let lock = self.lock(node_id, layer.id);
            let _guard = lock.lock().await;
            // Someone else may have copied it while we waited.
            if self.held(node_id).await?.get(&layer.id) == Some(&layer.sha256) {
                continue;
            }
            let vol = format!("{}.qcow2", layer.id);
            let mismatch = || StoreError::Mismatch {
                node: node.name.clone(),
                layer: format!("layer of template {}", layer.name),
            };
            match conn.volume_size(&self.pool_name, &vol).await? {
                Some(size) if size == layer.size_bytes => {
                    let sum = conn
                        .volume_sha256(&self.pool_name, &vol, layer.size_bytes)
                        .await?;
                    if sum != layer.sha256 {
                        return Err(mismatch());
                    }
                    tracing::info!(node = %node.name, template = %layer.name, "template layer already in the node's store");
                }
                Some(_) => return Err(mismatch()),
                None => {
                    conn.upload_volume(
                        &self.pool_name,
                        &vol,
                        &self.storage.template_path(layer.id),
                    )
                    .await?;
                    let sum = conn
                        .volume_sha256(&self.pool_name, &vol, layer.size_bytes)
                        .await?;
                    if sum != layer.sha256 {
                        // Ours, just created: safe to remove.
                        let _ = conn.delete_volume(&self.pool_name, &vol).await;
                        return Err(mismatch());
                    }
                    tracing::info!(node = %node.name, template = %layer.name, bytes = layer.size_bytes, "template layer copied to the node's store");
                }
            }
            let res = sqlx::query(
                "INSERT INTO node_layers (node_id, template_id, sha256, verified_at) VALUES ($1, $2, $3, $4) ON CONFLICT (node_id, template_id) DO UPDATE SET sha256 = excluded.sha256, verified_at = excluded.verified_at",
            )
            .bind(node_id.to_string())
            .bind(layer.id.to_string())
            .bind(&layer.sha256)
            .bind(db::now())
            .execute(&self.pool)
            .await;
            match res {
                Ok(_) => {}
                // The template or node was deleted meanwhile: nothing to record.
                Err(e) if db::is_foreign_key_violation(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// For placement: the nodes that hold every layer of `chain`, and the
    /// bytes of that chain (what a node without it must receive).
    pub async fn holders(&self, chain: &[ChainLayer]) -> Result<(HashSet<Uuid>, u64), StoreError> {
        let bytes = chain.iter().map(|l| l.size_bytes).sum();
        if chain.is_empty() {
            return Ok((HashSet::new(), bytes));
        }
        // Only the chain's layers (index `node_layers_template`): at 1,000
        // nodes the whole table is ~30,000 rows, read at every start.
        let sql = db::numbered(&format!(
            "SELECT node_id, template_id, sha256 FROM node_layers WHERE template_id IN ({})",
            vec!["?"; chain.len()].join(", ")
        ));
        let mut q = sqlx::query_as(&sql);
        for l in chain {
            q = q.bind(l.id.to_string());
        }
        let rows: Vec<(String, String, String)> = q.fetch_all(&self.pool).await?;
        let mut per_node: HashMap<Uuid, HashMap<Uuid, String>> = HashMap::new();
        for (n, t, s) in rows {
            per_node
                .entry(db::parse_uuid(&n)?)
                .or_default()
                .insert(db::parse_uuid(&t)?, s);
        }
        let holders = per_node
            .into_iter()
            .filter(|(_, held)| chain.iter().all(|l| held.get(&l.id) == Some(&l.sha256)))
            .map(|(n, _)| n)
            .collect();
        Ok((holders, bytes))
    }
}

/// [`Stores::adopt_legacy`] for any store pool (the node-local layer pools too).
pub async fn adopt_legacy_pools(
    nodes: &Nodes,
    name: &str,
    dir: &std::path::Path,
    claim: &crate::libvirt::PoolClaim,
) -> usize {
    let Some(legacy) = &claim.legacy else {
        return 0;
    };
    let Ok(list) = nodes.list().await else {
        return 0;
    };
    let mut adopted = 0;
    for node in list.iter().filter(|n| n.state.is_up()) {
        let Ok(conn) = nodes.conn(node.id).await else {
            continue;
        };
        match conn.pool_target(legacy).await {
            Ok(Some(path)) if path == dir => {
                match conn.ensure_dir_pool(name, dir, claim.clone()).await {
                    Ok(_) => {
                        tracing::info!(node = %node.name, old = %legacy, new = %name, "adopted an older pvce's store pool");
                        adopted += 1;
                    }
                    Err(e) => {
                        tracing::warn!(node = %node.name, pool = %legacy, error = %e, "could not adopt an older pvce's store pool")
                    }
                }
            }
            // Absent, or another installation's directory: not ours.
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(node = %node.name, error = %e, "could not look for an older store pool")
            }
        }
    }
    adopted
}
