//! Personal layers: where a student VM's copy-on-write layer lives, and how
//! pvce works on it while the VM is stopped.
//!
//! Two layer storages, chosen per server with `--layer-storage` and recorded
//! per VM when it is created (`vms.layer_storage`), so switching the setting
//! affects new VMs only:
//!
//! - **`shared`** (default): the file `overlays/<owner>/<course>/<vm>.qcow2`
//!   under the data directory, which every node mounts at the same path
//!   (NFS / Gluster / Ceph; on a single machine it simply is the local disk).
//!   The VM starts on any node and live-migrates (only memory moves).
//! - **`node-local`**: a qcow2 volume in the libvirt `dir` pool
//!   `--layer-pool` (default `pvce-<installation>-layers`) at `--layer-pool-dir` on one node,
//!   the VM's *home node* (`vms.layer_node_id`). No shared file system is
//!   needed and the VM's disk I/O never leaves its node. The layer is created
//!   through libvirt (`virStorageVolCreateXML` with the template layer as
//!   `<backingStore>`) on the node placement picks for the VM's first start;
//!   from then on the VM is **pinned** there: it starts only on its home node,
//!   cannot live-migrate, and while its home node is down or in maintenance it
//!   does not start at all (409 `layer_node_down` / `layer_node_maintenance`).
//!   An admin moves a stopped VM's layer to another node with
//!   `POST /api/vms/{id}/move`; a reset deletes the layer, so the next start
//!   may go anywhere again.
//!
//! Offline work on a node-local layer (snapshots, import, export, file
//! collection, disk usage) runs on a **working copy**: [`Layers::checkout`]
//! downloads the volume through libvirt to the VM's `overlay_path` on the
//! server — the path a shared layer would have, unused otherwise — and the
//! existing file-based code works on it unchanged. [`Checkout::commit`] sends a
//! changed copy back as a *new* volume (`<vm-id>.<generation>.qcow2`),
//! verifies it by SHA-256 read back through libvirt, points the VM's row at it
//! and only then deletes the old volume. Dropping a checkout removes the copy.
//!
//! Invariants:
//! - At every moment the VM's row names a complete, verified layer: new
//!   content goes to a new volume and the row switches afterwards; a crash
//!   in between leaves at most an unreferenced volume, never a half layer.
//! - Everything here runs under the VM's lifecycle lock with the VM stopped
//!   (callers' duty), so a working copy never races a running QEMU — except
//!   the nightly backup's copy of a running VM's disk
//!   ([`Layers::copy_running_disk`]), which QEMU itself writes, at one
//!   instant, into a scratch volume `pvce-disk-copy-<32 hex>.qcow2`; the
//!   layer volume is only ever read for it.
//! - pvce deletes only volumes named like its layers (`<vm-id>.<8 hex>.qcow2`)
//!   or its disk copies in its own layer pool. The reconcile loop removes such volumes that no
//!   VM row names on that node (an interrupted operation's leftovers), under
//!   the VM's lock, which every volume-creating operation holds until the
//!   row names its volume.
//! - The server never opens a node-local layer through its own file system:
//!   every byte goes through libvirt, so the pool directory may be a disk only
//!   that node has (the multi-node tests mount a private tmpfs per node).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use crate::db::Pool;
use crate::images::{self, ImageError};
use crate::libvirt::LibvirtError;
use crate::nodes::{NodeError, Nodes};
use crate::storage;

/// Where a VM's personal layer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerStorage {
    #[default]
    Shared,
    NodeLocal,
}

impl LayerStorage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::NodeLocal => "node-local",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "shared" => Some(Self::Shared),
            "node-local" => Some(Self::NodeLocal),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(
        "the VM's disk is on node {0}, which is down; the VM can start once that node answers again"
    )]
    HomeDown(String),
    #[error(
        "the VM's disk is on node {0}, which is in maintenance; an admin can move the VM to another node"
    )]
    HomeMaintenance(String),
    #[error("the VM has not been started yet: its disk is created on a node at its first start")]
    NotCreated,
    #[error("the VM's disk is on shared storage: it starts on any node and needs no move")]
    Shared,
    #[error(
        "the copy of the VM's disk written to node {0} does not match what was sent; nothing was changed"
    )]
    CopyMismatch(String),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Libvirt(#[from] LibvirtError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Where one VM's layer is, as the `vms` row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerLocation {
    pub storage: LayerStorage,
    /// Node-local: the home node, once the layer exists.
    pub node_id: Option<Uuid>,
    /// Node-local: the volume's name in the layer pool, once the layer exists.
    pub volume: Option<String>,
}

/// The layer storage of the server and its node-local pools.
#[derive(Debug)]
pub struct Layers {
    pool: Pool,
    nodes: Arc<Nodes>,
    mode: LayerStorage,
    pool_name: String,
    pool_dir: PathBuf,
    /// What the pool's name lets pvce do on a node (src/installation).
    claim: crate::libvirt::PoolClaim,
    /// One pool set-up at a time (a class starting at once).
    setup: tokio::sync::Mutex<()>,
}

impl Layers {
    pub fn new(
        pool: Pool,
        nodes: Arc<Nodes>,
        mode: LayerStorage,
        pool_name: String,
        pool_dir: PathBuf,
    ) -> Self {
        Self {
            pool,
            nodes,
            mode,
            pool_name,
            pool_dir,
            claim: crate::libvirt::PoolClaim::default(),
            setup: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the pool's name is derived from the installation id and which
    /// older name to adopt (see `Node::ensure_dir_pool`).
    #[must_use]
    pub fn with_claim(mut self, claim: crate::libvirt::PoolClaim) -> Self {
        self.claim = claim;
        self
    }

    /// Upgrade path: adopts an older pvce's layer pool on every reachable
    /// node (see [`crate::stores::adopt_legacy_pools`]).
    pub async fn adopt_legacy(&self) -> usize {
        crate::stores::adopt_legacy_pools(&self.nodes, &self.pool_name, &self.pool_dir, &self.claim)
            .await
    }

    /// The storage new VMs get.
    pub fn mode(&self) -> LayerStorage {
        self.mode
    }

    /// The libvirt pool name of node-local layers.
    pub fn pool_name(&self) -> &str {
        &self.pool_name
    }

    /// The path QEMU opens for a VM's layer on the node that runs it.
    pub fn disk_path(&self, overlay_path: &Path, loc: &LayerLocation) -> PathBuf {
        match (&loc.storage, &loc.volume) {
            (LayerStorage::NodeLocal, Some(v)) => self.pool_dir.join(v),
            _ => overlay_path.to_path_buf(),
        }
    }

    async fn ensure_pool(&self, node_id: Uuid) -> Result<crate::libvirt::Node, LayerError> {
        let conn = self.nodes.conn(node_id).await?;
        let _guard = self.setup.lock().await;
        conn.ensure_dir_pool(&self.pool_name, &self.pool_dir, self.claim.clone())
            .await?;
        Ok(conn)
    }

    /// The reachable home node's connection and name, or why there is none.
    async fn home(
        &self,
        loc: &LayerLocation,
    ) -> Result<Option<(Uuid, String, crate::libvirt::Node)>, LayerError> {
        let (LayerStorage::NodeLocal, Some(node_id)) = (loc.storage, loc.node_id) else {
            return Ok(None);
        };
        let node = self.nodes.get(node_id).await?;
        match self.nodes.conn(node_id).await {
            Ok(conn) => Ok(Some((node_id, node.name, conn))),
            Err(NodeError::Unavailable(_)) => Err(LayerError::HomeDown(node.name)),
            Err(e) => Err(e.into()),
        }
    }

    /// The node a start must use (node-local layer that exists), after
    /// checking it can take a start at all.
    pub async fn pinned_node(&self, loc: &LayerLocation) -> Result<Option<Uuid>, LayerError> {
        let (LayerStorage::NodeLocal, Some(node_id)) = (loc.storage, loc.node_id) else {
            return Ok(None);
        };
        let node = self.nodes.get(node_id).await?;
        if !node.state.is_up() {
            return Err(LayerError::HomeDown(node.name));
        }
        if node.maintenance {
            return Err(LayerError::HomeMaintenance(node.name));
        }
        Ok(Some(node_id))
    }

    /// Creates the node-local layer of VM `vm_id` on `node_id` (its first
    /// start there): an empty qcow2 on the template layer `backing`, which
    /// must already be in the node's template store. Records it in the row
    /// and returns the new location.
    pub async fn create(
        &self,
        node_id: Uuid,
        vm_id: Uuid,
        backing: &Path,
        virtual_size: u64,
    ) -> Result<LayerLocation, LayerError> {
        let conn = self.ensure_pool(node_id).await?;
        let volume = volume_name(vm_id);
        conn.create_layer_volume(&self.pool_name, &volume, virtual_size, backing)
            .await?;
        let bytes = conn
            .volume_size(&self.pool_name, &volume)
            .await?
            .unwrap_or(0);
        let res = sqlx::query(
            "UPDATE vms SET layer_node_id = $1, layer_volume = $2, layer_bytes = $3 WHERE id = $4 AND layer_storage = 'node-local'",
        )
        .bind(node_id.to_string())
        .bind(&volume)
        .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
        .bind(vm_id.to_string())
        .execute(&self.pool)
        .await;
        match res {
            Ok(r) if r.rows_affected() == 1 => Ok(LayerLocation {
                storage: LayerStorage::NodeLocal,
                node_id: Some(node_id),
                volume: Some(volume),
            }),
            other => {
                // Ours, just created, unreferenced: safe to remove.
                let _ = conn.delete_volume(&self.pool_name, &volume).await;
                match other {
                    Err(e) => Err(e.into()),
                    Ok(_) => Err(LayerError::Db(sqlx::Error::RowNotFound)),
                }
            }
        }
    }

    /// Discards a VM's node-local layer (reset, a start that failed right
    /// after creating it): the volume goes and the row forgets it, so the
    /// next start creates a fresh one wherever placement says. A shared
    /// layer is left alone (its file is replaced or removed by the caller).
    pub async fn discard(&self, vm_id: Uuid, loc: &LayerLocation) -> Result<(), LayerError> {
        let Some((_, _, conn)) = self.home(loc).await? else {
            return Ok(());
        };
        sqlx::query("UPDATE vms SET layer_node_id = NULL, layer_volume = NULL, layer_bytes = NULL WHERE id = $1")
            .bind(vm_id.to_string())
            .execute(&self.pool)
            .await?;
        if let Some(v) = &loc.volume {
            conn.delete_volume(&self.pool_name, v).await?;
        }
        Ok(())
    }

    /// Fails with `HomeDown` unless every node-local layer's home answers —
    /// checked before a deletion so it removes all layers or none.
    pub async fn require_reachable(&self, locs: &[LayerLocation]) -> Result<(), LayerError> {
        for loc in locs {
            self.home(loc).await?;
        }
        Ok(())
    }

    /// Deletes the volume of a VM whose row is already gone. Failures are
    /// logged (the volume stays, unreferenced), never fatal.
    pub async fn delete_volume(&self, vm_id: Uuid, loc: &LayerLocation) {
        let result = async {
            if let (Some((_, _, conn)), Some(v)) = (self.home(loc).await?, &loc.volume) {
                conn.delete_volume(&self.pool_name, v).await?;
            }
            Ok::<(), LayerError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(vm = %vm_id, error = %e, "could not delete a node-local layer");
        }
    }

    /// A point-in-time copy of a running VM's node-local disk in the local
    /// file `dest` (see [`crate::libvirt::backup`]): libvirt's backup API
    /// writes the copy beside the layer, into a scratch volume of the node's
    /// layer pool (the only place on the node pvce may write), which is then
    /// downloaded through libvirt like a checkout and deleted. `conn` is the
    /// node running domain `domain`. `Ok(None)`: the domain is not running.
    /// The scratch volume is deleted whatever happens; one a killed server
    /// left behind goes with [`Self::sweep_disk_copies`].
    pub async fn copy_running_disk(
        &self,
        conn: &crate::libvirt::Node,
        domain: &str,
        dest: &Path,
        deadline: std::time::Duration,
        plan: &crate::libvirt::backup::CopyPlan,
    ) -> Result<Option<crate::libvirt::backup::DiskCopy>, LayerError> {
        let name = disk_copy_name();
        let result = async {
            let Some(copy) = conn
                .copy_running_disk(domain, &self.pool_dir.join(&name), deadline, plan)
                .await?
            else {
                return Ok(None);
            };
            conn.download_volume(&self.pool_name, &name, dest).await?;
            Ok(Some(copy))
        }
        .await;
        self.drop_disk_copy(conn, &name).await;
        result
    }

    /// Deletes the scratch volumes of disk copies on every node that is up
    /// (left by a server killed mid-copy). Call when no copy is in progress
    /// (a backup run's start: runs are one at a time).
    pub async fn sweep_disk_copies(&self) {
        let Ok(nodes) = self.nodes.list().await else {
            return;
        };
        for node in nodes.iter().filter(|n| n.state.is_up()) {
            let Ok(conn) = self.nodes.conn(node.id).await else {
                continue;
            };
            let Ok(Some(names)) = conn.list_volumes(&self.pool_name).await else {
                continue;
            };
            for name in names.iter().filter(|n| is_disk_copy_name(n)) {
                tracing::warn!(node = %node.name, volume = %name, "removing a dead run's disk copy");
                self.drop_disk_copy(&conn, name).await;
            }
        }
    }

    /// Deletes scratch volume `name` (best effort: logged; the next sweep
    /// tries again). The pool is refreshed first: a copy libvirt wrote
    /// but pvce never read is not in the pool's list yet.
    async fn drop_disk_copy(&self, conn: &crate::libvirt::Node, name: &str) {
        let result = async {
            conn.volume_size(&self.pool_name, name).await?;
            conn.delete_volume(&self.pool_name, name).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(volume = %name, error = %e, "could not delete a disk copy's scratch volume");
        }
    }

    /// Re-reads a node-local layer's size into the row (after the VM ran).
    pub async fn refresh_bytes(&self, vm_id: Uuid, loc: &LayerLocation) -> Result<(), LayerError> {
        let (Some((_, _, conn)), Some(v)) = (self.home(loc).await?, &loc.volume) else {
            return Ok(());
        };
        if let Some(bytes) = conn.volume_size(&self.pool_name, v).await? {
            sqlx::query("UPDATE vms SET layer_bytes = $1 WHERE id = $2")
                .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
                .bind(vm_id.to_string())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// The VM's layer as a file on the server at `overlay_path`: a shared
    /// layer is that file already; a node-local one is downloaded there (a
    /// VM never started gets a fresh empty layer on `backing`, so reading
    /// works; changing it is refused at commit). Call with the VM stopped,
    /// under its lifecycle lock; keep the checkout until the work is done.
    pub async fn checkout(
        &self,
        vm_id: Uuid,
        overlay_path: &Path,
        loc: &LayerLocation,
        backing: &Path,
        virtual_size: u64,
    ) -> Result<Checkout<'_>, LayerError> {
        if loc.storage == LayerStorage::Shared {
            return Ok(Checkout {
                layers: self,
                path: overlay_path.to_path_buf(),
                remote: None,
            });
        }
        if let Some(dir) = overlay_path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let tmp = crate::storage::temp_beside(overlay_path);
        let remote = match (self.home(loc).await?, &loc.volume) {
            (Some((node_id, node_name, conn)), Some(volume)) => {
                let (_, sha256) = conn.download_volume(&self.pool_name, volume, &tmp).await?;
                Remote {
                    vm_id,
                    node: Some((node_id, node_name)),
                    volume: volume.clone(),
                    sha256,
                }
            }
            _ => {
                let (t, b) = (tmp.clone(), backing.to_path_buf());
                tokio::task::spawn_blocking(move || images::replace_overlay(&t, &b, virtual_size))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))??;
                Remote {
                    vm_id,
                    node: None,
                    volume: String::new(),
                    sha256: crate::storage::sha256_file(&tmp).await?,
                }
            }
        };
        if let Err(e) = tokio::fs::rename(&tmp, overlay_path).await {
            let _ = storage::remove_file_if_exists(&tmp);
            return Err(e.into());
        }
        Ok(Checkout {
            layers: self,
            path: overlay_path.to_path_buf(),
            remote: Some(remote),
        })
    }

    /// Moves a stopped VM's node-local layer to node `target` (whose template
    /// store must already hold the VM's template chain): copy, verify, switch
    /// the row, delete the old volume. A layer not created yet has nothing to
    /// move.
    pub async fn move_to(
        &self,
        vm_id: Uuid,
        overlay_path: &Path,
        loc: &LayerLocation,
        target: Uuid,
        backing: &Path,
        virtual_size: u64,
    ) -> Result<(), LayerError> {
        if loc.storage == LayerStorage::Shared {
            return Err(LayerError::Shared);
        }
        if loc.volume.is_none() || loc.node_id == Some(target) {
            return Ok(());
        }
        let mut work = self
            .checkout(vm_id, overlay_path, loc, backing, virtual_size)
            .await?;
        let dst = self.ensure_pool(target).await?;
        let target_name = self.nodes.get(target).await?.name;
        let new_volume = work.send_to(&dst, &target_name).await?;
        let Some(remote) = work.remote.as_mut() else {
            return Ok(());
        };
        sqlx::query("UPDATE vms SET layer_node_id = $1, layer_volume = $2 WHERE id = $3")
            .bind(target.to_string())
            .bind(&new_volume)
            .bind(vm_id.to_string())
            .execute(&self.pool)
            .await?;
        let old = std::mem::replace(&mut remote.volume, new_volume);
        if let Some((old_node, _)) = remote.node.replace((target, target_name)) {
            let deleted = async {
                let conn = self.nodes.conn(old_node).await?;
                conn.delete_volume(&self.pool_name, &old).await?;
                Ok::<(), LayerError>(())
            }
            .await;
            if let Err(e) = deleted {
                tracing::warn!(vm = %vm_id, error = %e, "moved layer: the old volume stays behind");
            }
        }
        Ok(())
    }
}

impl Layers {
    /// Volumes in node `node_id`'s layer pool that are named like a pvce
    /// layer (`<vm-id>.<generation>.qcow2`) but that no VM row names on that
    /// node: left by an interrupted operation (a crash between creating a
    /// volume and recording it) or a delete that failed. Returns (vm id,
    /// volume name); anything not named like ours is never listed.
    pub async fn unreferenced(
        &self,
        node_id: Uuid,
        conn: &crate::libvirt::Node,
    ) -> Result<Vec<(Uuid, String)>, LayerError> {
        let Some(names) = conn.list_volumes(&self.pool_name).await? else {
            return Ok(Vec::new());
        };
        let ours: Vec<(Uuid, String)> = names
            .into_iter()
            .filter_map(|n| parse_volume_name(&n).map(|id| (id, n)))
            .collect();
        if ours.is_empty() {
            return Ok(ours);
        }
        let referenced: std::collections::HashSet<String> = sqlx::query_scalar(
            "SELECT layer_volume FROM vms WHERE layer_node_id = $1 AND layer_volume IS NOT NULL",
        )
        .bind(node_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .collect();
        Ok(ours
            .into_iter()
            .filter(|(_, n)| !referenced.contains(n))
            .collect())
    }

    /// Deletes an unreferenced volume after checking once more that no row
    /// names it. Call holding the lifecycle lock of the VM the name belongs
    /// to (every operation that creates a volume holds it until the row
    /// names the volume).
    pub async fn remove_unreferenced(
        &self,
        node_id: Uuid,
        conn: &crate::libvirt::Node,
        volume: &str,
    ) -> Result<bool, LayerError> {
        let named: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM vms WHERE layer_node_id = $1 AND layer_volume = $2")
                .bind(node_id.to_string())
                .bind(volume)
                .fetch_optional(&self.pool)
                .await?;
        if named.is_some() {
            return Ok(false);
        }
        conn.delete_volume(&self.pool_name, volume).await?;
        Ok(true)
    }
}

/// The VM id of a volume named like a pvce layer, `None` for anything else.
fn parse_volume_name(name: &str) -> Option<Uuid> {
    let stem = name.strip_suffix(".qcow2")?;
    let (text, generation) = stem.split_once('.')?;
    let ok = generation.len() == 8 && generation.bytes().all(|b| b.is_ascii_hexdigit());
    let id = Uuid::parse_str(text).ok()?;
    // Only the hyphenated form pvce writes.
    (ok && id.hyphenated().to_string() == text).then_some(id)
}

/// Scratch volumes of running disk copies: never named like a layer, so the
/// sweep of unreferenced layers leaves them to [`Layers::sweep_disk_copies`].
const DISK_COPY_PREFIX: &str = "pvce-disk-copy-";

fn disk_copy_name() -> String {
    format!("{DISK_COPY_PREFIX}{}.qcow2", Uuid::new_v4().simple())
}

fn is_disk_copy_name(name: &str) -> bool {
    name.strip_prefix(DISK_COPY_PREFIX)
        .and_then(|r| r.strip_suffix(".qcow2"))
        .is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A fresh volume name for a VM's layer: the VM id plus a generation, so a
/// new version never overwrites the one the row names.
fn volume_name(vm_id: Uuid) -> String {
    let generation = Uuid::new_v4().simple().to_string();
    format!("{vm_id}.{}.qcow2", &generation[..8])
}

#[derive(Debug)]
struct Remote {
    vm_id: Uuid,
    /// Home node (id, name); `None` for a layer not created yet.
    node: Option<(Uuid, String)>,
    /// The volume the row names.
    volume: String,
    /// SHA-256 of that volume as downloaded (or of the fresh layer).
    sha256: String,
}

/// A VM's layer checked out as a server-side file ([`Layers::checkout`]).
#[derive(Debug)]
pub struct Checkout<'a> {
    layers: &'a Layers,
    path: PathBuf,
    remote: Option<Remote>,
}

impl Checkout<'_> {
    /// The file to work on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Uploads the working copy to `conn` as a new volume and verifies it;
    /// returns the new volume's name. Removes it again on a mismatch.
    async fn send_to(
        &self,
        conn: &crate::libvirt::Node,
        node_name: &str,
    ) -> Result<String, LayerError> {
        let Some(remote) = &self.remote else {
            return Err(LayerError::Shared);
        };
        let pool = &self.layers.pool_name;
        let volume = volume_name(remote.vm_id);
        let sha256 = crate::storage::sha256_file(&self.path).await?;
        let len = tokio::fs::metadata(&self.path).await?.len();
        conn.upload_volume(pool, &volume, &self.path).await?;
        let sum = conn.volume_sha256(pool, &volume, len).await?;
        if sum != sha256 {
            let _ = conn.delete_volume(pool, &volume).await;
            return Err(LayerError::CopyMismatch(node_name.to_owned()));
        }
        Ok(volume)
    }

    /// Makes the working copy the VM's layer if it changed (no-op for a
    /// shared layer). May be called again after more changes.
    pub async fn commit(&mut self) -> Result<(), LayerError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let sha256 = crate::storage::sha256_file(&self.path).await?;
        if sha256 == remote.sha256 {
            return Ok(());
        }
        let Some((node_id, node_name)) = remote.node.clone() else {
            return Err(LayerError::NotCreated);
        };
        let layers = self.layers;
        let conn = layers
            .nodes
            .conn(node_id)
            .await
            .map_err(|_| LayerError::HomeDown(node_name.clone()))?;
        let new_volume = self.send_to(&conn, &node_name).await?;
        let len = tokio::fs::metadata(&self.path).await?.len();
        let switched = sqlx::query(
            "UPDATE vms SET layer_volume = $1, layer_bytes = $2 WHERE id = $3 AND layer_volume = $4",
        )
        .bind(&new_volume)
        .bind(i64::try_from(len).unwrap_or(i64::MAX))
        .bind(remote.vm_id.to_string())
        .bind(&remote.volume)
        .execute(&layers.pool)
        .await;
        match switched {
            Ok(r) if r.rows_affected() == 1 => {}
            other => {
                let _ = conn.delete_volume(&layers.pool_name, &new_volume).await;
                other?;
                return Err(LayerError::Db(sqlx::Error::RowNotFound));
            }
        }
        if let Err(e) = conn.delete_volume(&layers.pool_name, &remote.volume).await {
            tracing::warn!(vm = %remote.vm_id, error = %e, "the replaced layer volume stays behind");
        }
        if let Some(r) = self.remote.as_mut() {
            r.volume = new_volume;
            r.sha256 = sha256;
        }
        Ok(())
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        // A node-local layer's working copy is only a copy: never leave it
        // behind (the next checkout downloads afresh).
        if self.remote.is_some()
            && let Err(e) = storage::remove_file_if_exists(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove a layer working copy");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_copy_names_are_never_layer_names() {
        let name = disk_copy_name();
        assert!(is_disk_copy_name(&name), "{name}");
        assert_eq!(parse_volume_name(&name), None, "{name}");
        let layer = volume_name(Uuid::new_v4());
        assert!(!is_disk_copy_name(&layer), "{layer}");
        for other in [
            "pvce-disk-copy-.qcow2",
            "pvce-disk-copy-../x.qcow2",
            "test-foreign.qcow2",
            "pvce-disk-copy-0123456789abcdef0123456789abcdef.raw",
        ] {
            assert!(!is_disk_copy_name(other), "{other}");
        }
    }

    #[test]
    fn storage_names_round_trip() {
        for s in [LayerStorage::Shared, LayerStorage::NodeLocal] {
            assert_eq!(LayerStorage::parse(s.as_str()), Some(s));
        }
        assert_eq!(LayerStorage::parse("local"), None);
        assert_eq!(
            serde_json::to_string(&LayerStorage::NodeLocal).expect("json"),
            "\"node-local\""
        );
    }

    #[test]
    fn only_layer_shaped_names_are_ours() {
        let id = Uuid::new_v4();
        assert_eq!(parse_volume_name(&volume_name(id)), Some(id));
        assert_eq!(parse_volume_name(&format!("{id}.0badc0de.qcow2")), Some(id));
        for other in [
            format!("{id}.qcow2"),
            format!("{id}.0badc0de.raw"),
            format!("{id}.0badc0dex.qcow2"),
            format!("{}.0badc0de.qcow2", id.simple()),
            "foreign.qcow2".to_owned(),
            "a.b.qcow2".to_owned(),
        ] {
            assert_eq!(parse_volume_name(&other), None, "{other}");
        }
    }

    #[test]
    fn volume_names_are_per_generation_and_valid() {
        let id = Uuid::new_v4();
        let (a, b) = (volume_name(id), volume_name(id));
        assert_ne!(a, b);
        for v in [a, b] {
            assert!(
                v.starts_with(&id.to_string()) && v.ends_with(".qcow2"),
                "{v}"
            );
            crate::libvirt::storage::layer_volume_xml(&v, 1, Path::new("/t")).expect("valid name");
        }
    }
}
