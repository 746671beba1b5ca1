//! VMs: students' personal machines and their lifecycle.
//!
//! A VM is a row (intent) plus, while it runs, a transient libvirt domain named
//! `pvce-<vm-id>` whose UUID is the VM id (what runs). Its disk is a personal
//! qcow2 overlay backed by the course template's layer.
//!
//! Invariants:
//! - One domain per VM: every state change of a VM happens under that VM's
//!   async lock, and a start first looks for an existing domain, so two
//!   concurrent starts yield one domain.
//! - A failed start leaves no domain behind (it is destroyed) and the VM
//!   `stopped` with `last_error` set.
//! - The API state follows libvirt: reads refresh a VM from its node, and the
//!   reconcile loop adopts/clears domains after restarts and guest shutdowns.
//! - A personal layer is replaced only while the VM is stopped, atomically
//!   (new file renamed over the old), so a crash never leaves half a layer.
//! - A VM of a lab-network course starts on its student's network, on the
//!   node where the student's other VMs of the course run; the network goes
//!   when the last of them stops ([`crate::labnets`]).
//!
//! Node failure and fencing. A VM whose node stops answering is shown as
//! `node_down`, never silently `running`: its QEMU may still run there and
//! hold the layer. The layer must never be opened by two QEMUs at once, so
//! such a VM starts again (on any node; layers are on shared storage) only
//! after its old node is *fenced*, i.e. confirmed gone:
//! - the node answers again and runs no domain for the VM (the reconcile loop
//!   or a read then marks it `stopped`; a domain still running is adopted), or
//! - an admin confirms the node is powered off (`POST /api/nodes/{id}/fence`,
//!   refused while the node answers), which releases its VMs as `stopped`.
//!
//! Until then a start is refused with 409 `node_down`. Should a fenced node
//! come back with a domain for a VM that meanwhile runs elsewhere, that stale
//! copy is destroyed at once.
//!
//! Live migration (`migrate`, admin) moves a running VM between nodes that
//! share its layer, with its console re-addressed to the target node; tokens
//! for the old node are void (they are bound to the node). Maintenance with
//! `drain` migrates a node's running VMs away one by one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use crate::auth::Role;
use crate::console::{self, ConsoleTarget};
use crate::courses::VmSpec;
use crate::db::{self, Pool};
use crate::events::{self, EventKind, NewEvent};
use crate::images::{self, ImageError};
use crate::labnets::{self, LabNetError, LabNets};
use crate::layers::{LayerError, LayerLocation, LayerStorage, Layers};
use crate::libvirt::{self, DomainState, GraphicsKind, LibvirtError};
use crate::nodes::{NodeError, Nodes};
use crate::placement::{Candidate, Constraint, PlacementError, Policy, Reservations};
use crate::portable::ChainLayer;
use crate::storage::{self, Storage};
use crate::stores::{StoreError, Stores};
use crate::templates;
use crate::users::User;

/// Longest a read of one VM's domain may take (a frozen node must not hold up
/// API reads of its VMs for the whole libvirt call timeout).
const SYNC_DEADLINE: Duration = Duration::from_secs(5);
/// Longest a live migration may take before pvce stops waiting (libvirt goes
/// on; the reconcile loop then finds the domain wherever it ended up).
const MIGRATE_DEADLINE: Duration = Duration::from_secs(300);
/// Longest one node's part of a reconcile pass may take.
const RECONCILE_NODE_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    Stopped,
    Starting,
    Running,
    Stopping,
    Error,
    /// The VM was active on a node that stopped answering: it may still run
    /// there (and hold its layer), so it is neither running nor stopped until
    /// the node is fenced (see the module docs).
    #[serde(rename = "node_down")]
    NodeDown,
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Stopped => "stopped",
            VmState::Starting => "starting",
            VmState::Running => "running",
            VmState::Stopping => "stopping",
            VmState::Error => "error",
            VmState::NodeDown => "node_down",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "starting" => VmState::Starting,
            "running" => VmState::Running,
            "stopping" => VmState::Stopping,
            "error" => VmState::Error,
            "node_down" => VmState::NodeDown,
            _ => VmState::Stopped,
        }
    }
    /// True while a QEMU may hold the VM's layer open (a VM on a down node
    /// counts: it may still run there).
    fn is_active(self) -> bool {
        matches!(
            self,
            VmState::Starting | VmState::Running | VmState::Stopping | VmState::NodeDown
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Vm {
    pub id: Uuid,
    pub name: String,
    /// The course of a student's personal VM; `None` for a template build VM.
    pub course_id: Option<Uuid>,
    /// The draft template a build VM prepares; `None` for personal VMs.
    pub build_template_id: Option<Uuid>,
    pub owner_id: Uuid,
    pub template_id: Uuid,
    pub node_id: Option<Uuid>,
    pub state: VmState,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub overlay_bytes: u64,
    pub last_error: Option<String>,
    pub last_started_at: Option<String>,
    pub created_at: String,
    /// Where the personal layer lives ([`crate::layers`]).
    pub layer_storage: LayerStorage,
    /// Node-local layer: the VM's home node, once its layer exists.
    pub layer_node_id: Option<Uuid>,
    /// Shared layer: the layer file. Node-local: where the server keeps a
    /// working copy while it works on the layer offline.
    #[serde(skip)]
    pub overlay_path: PathBuf,
    /// Node-local layer: its volume in the node's layer pool.
    #[serde(skip)]
    pub layer_volume: Option<String>,
}

impl Vm {
    /// Where the VM's layer is.
    pub fn layer(&self) -> LayerLocation {
        LayerLocation {
            storage: self.layer_storage,
            node_id: self.layer_node_id,
            volume: self.layer_volume.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("no such VM")]
    NotFound,
    /// A state conflict: (error code, message), e.g. `vm_running`.
    #[error("{1}")]
    Conflict(&'static str, String),
    /// A well-formed request that cannot be acted on: (error code, message).
    #[error("{1}")]
    Unprocessable(&'static str, String),
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Libvirt(#[from] LibvirtError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    LabNet(#[from] LabNetError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error("template error: {0}")]
    Template(String),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

const COLUMNS: &str = "id, name, course_id, build_template_id, owner_id, template_id, node_id, state, node_down, vcpus, memory_mib, overlay_path, last_error, last_started_at, created_at, layer_storage, layer_node_id, layer_volume, layer_bytes";

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Vm, sqlx::Error> {
    let overlay_path = PathBuf::from(row.try_get::<String, _>("overlay_path")?);
    let layer_storage =
        LayerStorage::parse(&row.try_get::<String, _>("layer_storage")?).unwrap_or_default();
    let overlay_bytes = match layer_storage {
        // Bytes the personal layer really occupies (sparse-aware).
        LayerStorage::Shared => {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&overlay_path)
                .map(|m| m.blocks() * 512)
                .unwrap_or(0)
        }
        // On another node: its size as last read through libvirt.
        LayerStorage::NodeLocal => row
            .try_get::<Option<i64>, _>("layer_bytes")?
            .and_then(|b| u64::try_from(b).ok())
            .unwrap_or(0),
    };
    Ok(Vm {
        id: db::uuid(row, "id")?,
        name: row.try_get("name")?,
        course_id: db::opt_uuid(row, "course_id")?,
        build_template_id: db::opt_uuid(row, "build_template_id")?,
        owner_id: db::uuid(row, "owner_id")?,
        template_id: db::uuid(row, "template_id")?,
        node_id: db::opt_uuid(row, "node_id")?,
        // `node_down` is a flag beside the last known state (migration 0005).
        state: match VmState::parse(&row.try_get::<String, _>("state")?) {
            s if s.is_active() && row.try_get::<i64, _>("node_down")? != 0 => VmState::NodeDown,
            s => s,
        },
        vcpus: u32::try_from(row.try_get::<i64, _>("vcpus")?).unwrap_or(1),
        memory_mib: u32::try_from(row.try_get::<i64, _>("memory_mib")?).unwrap_or(64),
        overlay_bytes,
        last_error: row.try_get("last_error")?,
        last_started_at: row.try_get("last_started_at")?,
        created_at: row.try_get("created_at")?,
        layer_storage,
        layer_node_id: db::opt_uuid(row, "layer_node_id")?,
        layer_volume: row.try_get("layer_volume")?,
        overlay_path,
    })
}

/// Loads a VM row without any access check.
pub(crate) async fn load(pool: &Pool, id: Uuid) -> Result<Vm, VmError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM vms WHERE id = ?"))
        .bind(id.to_string())
        .fetch_optional(pool)
        .await?;
    row.as_ref()
        .map(from_row)
        .transpose()?
        .ok_or(VmError::NotFound)
}

/// Suffix of a personal layer written but not yet published: its VM row is
/// not committed yet (or the server died between the commit and the rename,
/// which [`sweep_layers_at_start`] completes).
pub const STAGING_SUFFIX: &str = ".staging";

/// Personal VMs about to be created: their layers are written under staging
/// names, their rows not yet inserted. [`Provision::insert`] writes the rows
/// in the caller's transaction; after the commit [`Provision::publish`]
/// moves the layers into place. Until then nothing a student could see
/// exists, and a crash leaves only staged files the start-up sweep removes.
#[derive(Debug)]
pub struct Provision {
    course_id: Uuid,
    layer_storage: LayerStorage,
    todo: Vec<NewVm>,
}

#[derive(Debug)]
struct NewVm {
    id: Uuid,
    name: String,
    spec_id: Uuid,
    template_id: Uuid,
    vcpus: u32,
    memory_mib: u32,
    owner: Uuid,
    path: PathBuf,
    staged: Option<PathBuf>,
}

fn staging_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(STAGING_SUFFIX);
    PathBuf::from(s)
}

impl Provision {
    /// Plans one VM per (owner, spec) that has none yet in the course and, for
    /// shared layers, writes their staged overlays (node-local layers are
    /// created at first start).
    pub async fn stage(
        pool: &Pool,
        storage: &Storage,
        layer_storage: LayerStorage,
        course_id: Uuid,
        specs: &[VmSpec],
        owners: &[Uuid],
    ) -> Result<Provision, VmError> {
        let mut plan = Provision {
            course_id,
            layer_storage,
            todo: Vec::new(),
        };
        if owners.is_empty() || specs.is_empty() {
            return Ok(plan);
        }
        let existing: Vec<(String, String)> =
            sqlx::query_as("SELECT spec_id, owner_id FROM vms WHERE course_id = ?")
                .bind(course_id.to_string())
                .fetch_all(pool)
                .await?;
        let existing: std::collections::HashSet<(String, String)> = existing.into_iter().collect();
        let mut backing = HashMap::new();
        for spec in specs {
            let t = templates::get(pool, spec.template_id)
                .await
                .map_err(|e| VmError::Template(e.to_string()))?;
            backing.insert(spec.id, (storage.template_path(t.id), t.virtual_size_bytes));
        }
        for owner in owners {
            if layer_storage == LayerStorage::Shared {
                storage.ensure_overlay_dir(*owner, course_id)?;
            }
            for spec in specs {
                if existing.contains(&(spec.id.to_string(), owner.to_string())) {
                    continue;
                }
                let id = Uuid::new_v4();
                let path = storage.overlay_path(*owner, course_id, id);
                plan.todo.push(NewVm {
                    id,
                    name: spec.name.clone(),
                    spec_id: spec.id,
                    template_id: spec.template_id,
                    vcpus: spec.vcpus,
                    memory_mib: spec.memory_mib,
                    owner: *owner,
                    staged: (layer_storage == LayerStorage::Shared).then(|| staging_path(&path)),
                    path,
                });
            }
        }
        let jobs: Vec<images::OverlayJob> = plan
            .todo
            .iter()
            .filter_map(|n| {
                let (b, size) = &backing[&n.spec_id];
                Some(images::OverlayJob {
                    path: n.staged.clone()?,
                    backing: b.clone(),
                    virtual_size: *size,
                })
            })
            .collect();
        if jobs.is_empty() {
            return Ok(plan);
        }
        let created =
            tokio::task::spawn_blocking(move || images::overlay::create_overlays_parallel(&jobs))
                .await
                .map_err(|e| VmError::Io(std::io::Error::other(e.to_string())))?;
        if let Some(e) = created.into_iter().find_map(Result::err) {
            plan.discard();
            return Err(e.into());
        }
        Ok(plan)
    }

    /// VMs this provision creates.
    pub fn count(&self) -> u64 {
        self.todo.len() as u64
    }

    /// Inserts the VM rows in the caller's transaction.
    pub async fn insert(&self, tx: &mut sqlx::SqliteConnection) -> Result<(), VmError> {
        let now = db::now();
        for n in &self.todo {
            let inserted = sqlx::query(
                "INSERT INTO vms (id, name, course_id, spec_id, owner_id, template_id, state, vcpus, memory_mib, overlay_path, created_at, layer_storage)
                 VALUES (?, ?, ?, ?, ?, ?, 'stopped', ?, ?, ?, ?, ?)",
            )
            .bind(n.id.to_string())
            .bind(&n.name)
            .bind(self.course_id.to_string())
            .bind(n.spec_id.to_string())
            .bind(n.owner.to_string())
            .bind(n.template_id.to_string())
            .bind(i64::from(n.vcpus))
            .bind(i64::from(n.memory_mib))
            .bind(n.path.to_string_lossy().into_owned())
            .bind(&now)
            .bind(self.layer_storage.as_str())
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(e) if db::unique_violation(&e).is_some() => {
                    return Err(VmError::Conflict(
                        "enrolment_in_progress",
                        "another enrolment of the same students is running; retry".into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Moves the staged layers into place once their rows are committed.
    /// A failure here leaves rows whose layer is still staged; the start-up
    /// sweep finishes the move, so it is logged rather than undone.
    pub async fn publish(self) -> Result<(), VmError> {
        let moves: Vec<(PathBuf, PathBuf)> = self
            .todo
            .into_iter()
            .filter_map(|n| Some((n.staged?, n.path)))
            .collect();
        tokio::task::spawn_blocking(move || publish_staged(&moves))
            .await
            .map_err(|e| VmError::Io(std::io::Error::other(e.to_string())))??;
        Ok(())
    }

    /// Removes the staged layers (the rows were not committed).
    pub fn discard(self) {
        for n in &self.todo {
            if let Some(p) = &n.staged {
                let _ = storage::remove_file_if_exists(p);
            }
        }
    }
}

/// Renames staged layers to their final names and syncs each directory once.
fn publish_staged(moves: &[(PathBuf, PathBuf)]) -> std::io::Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    for (staged, path) in moves {
        std::fs::rename(staged, path)?;
        if let Some(d) = path.parent() {
            dirs.insert(d.to_path_buf());
        }
    }
    for d in dirs {
        std::fs::File::open(&d)?.sync_all()?;
    }
    Ok(())
}

/// What the start-up sweep of personal layers did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Staged layers of committed VMs moved into place.
    pub published: u64,
    /// Fresh (never written) layers no VM names, removed.
    pub removed: u64,
    /// Layers no VM names that hold data, moved to `quarantine/`.
    pub quarantined: Vec<PathBuf>,
}

/// Brings `overlays/` in line with the `vms` table after a crash, before the
/// server serves: a staged layer whose VM row exists is published; any file
/// no VM row names is removed if it is a pristine overlay (no cluster
/// allocated: it cannot hold student data) and otherwise moved to
/// `quarantine/<time>/…` — never deleted. Runs while nothing else touches
/// the layers (start-up).
pub async fn sweep_layers_at_start(pool: &Pool, storage: &Storage) -> Result<SweepReport, VmError> {
    let known: Vec<String> = sqlx::query_scalar("SELECT overlay_path FROM vms")
        .fetch_all(pool)
        .await?;
    let known: std::collections::HashSet<PathBuf> = known.into_iter().map(PathBuf::from).collect();
    let root = storage.root().join("overlays");
    let quarantine = storage
        .root()
        .join("quarantine")
        .join(db::now().replace(':', ""));
    tokio::task::spawn_blocking(move || sweep_dir(&root, &known, &quarantine))
        .await
        .map_err(|e| VmError::Io(std::io::Error::other(e.to_string())))?
        .map_err(VmError::Io)
}

fn sweep_dir(
    root: &Path,
    known: &std::collections::HashSet<PathBuf>,
    quarantine: &Path,
) -> std::io::Result<SweepReport> {
    let mut report = SweepReport::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            if !kind.is_file() || known.contains(&path) {
                continue;
            }
            let name = path.to_string_lossy();
            if let Some(final_name) = name.strip_suffix(STAGING_SUFFIX) {
                let final_path = PathBuf::from(final_name);
                if known.contains(&final_path) && !final_path.exists() {
                    std::fs::rename(&path, &final_path)?;
                    report.published += 1;
                    continue;
                }
            }
            if images::overlay::is_pristine(&path).unwrap_or(false) {
                std::fs::remove_file(&path)?;
                report.removed += 1;
            } else {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let to = quarantine.join(rel);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::rename(&path, &to)?;
                report.quarantined.push(to);
            }
        }
    }
    Ok(report)
}

/// Deletes the VMs (and layers) of a course, or of one student in it.
/// Refuses while any of them is active.
pub async fn delete_for(
    pool: &Pool,
    storage: &Storage,
    layers: &Layers,
    course_id: Uuid,
    owner: Option<Uuid>,
) -> Result<(), VmError> {
    let mut sql = format!("SELECT {COLUMNS} FROM vms WHERE course_id = ?");
    if owner.is_some() {
        sql.push_str(" AND owner_id = ?");
    }
    let mut q = sqlx::query(&sql).bind(course_id.to_string());
    if let Some(o) = owner {
        q = q.bind(o.to_string());
    }
    let vms: Vec<Vm> = q
        .fetch_all(pool)
        .await?
        .iter()
        .map(from_row)
        .collect::<Result<_, _>>()?;
    if let Some(active) = vms.iter().find(|v| v.state.is_active()) {
        return Err(VmError::Conflict(
            "vm_running",
            format!(
                "VM {} is {}; stop it first",
                active.name,
                active.state.as_str()
            ),
        ));
    }
    // Node-local layers: all homes must answer, or nothing is deleted.
    let locations: Vec<LayerLocation> = vms.iter().map(Vm::layer).collect();
    layers.require_reachable(&locations).await?;
    for vm in &vms {
        // Removes backup layers kept beside the overlay (rows cascade anyway).
        crate::snapshots::forget_all(pool, vm).await?;
    }
    let mut tx = pool.begin().await?;
    for vm in &vms {
        sqlx::query("DELETE FROM vms WHERE id = ?")
            .bind(vm.id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    for vm in &vms {
        layers.delete_volume(vm.id, &vm.layer()).await;
        storage::remove_file_if_exists(&vm.overlay_path)?;
        storage::remove_file_if_exists(&storage.console_log_path(vm.id))?;
    }
    Ok(())
}

/// What a native viewer needs to reach a running VM's console (`.vv`).
/// `Debug` leaves the password out.
pub struct ViewerTicket {
    pub vm: Vm,
    pub kind: GraphicsKind,
    pub host: String,
    pub port: u16,
    pub password: String,
    pub valid_to: time::OffsetDateTime,
    /// Window title: owner / course / VM.
    pub title: String,
}

impl std::fmt::Debug for ViewerTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerTicket")
            .field("vm", &self.vm.id)
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("valid_to", &self.valid_to)
            .finish_non_exhaustive()
    }
}

/// A change of a VM's state, broadcast to console sessions and UI streams.
#[derive(Debug, Clone, Serialize)]
pub struct VmEvent {
    pub vm_id: Uuid,
    pub state: VmState,
    pub node_id: Option<Uuid>,
}

/// Runs VM lifecycle operations against the nodes.
#[derive(Debug)]
pub struct VmManager {
    pool: Pool,
    storage: Storage,
    nodes: Arc<Nodes>,
    stores: Arc<Stores>,
    reservations: Reservations,
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    shutdown_timeout: Duration,
    policy: Policy,
    /// Memory placement keeps free on every node for the host itself.
    host_reserve_mib: u64,
    domain_prefix: String,
    disk_cache: libvirt::DiskCache,
    events: tokio::sync::broadcast::Sender<VmEvent>,
    /// Serialises console password changes (expiry renewal, `.vv` tickets).
    console_passwords: tokio::sync::Mutex<()>,
    labnets: LabNets,
    layers: Layers,
}

impl VmManager {
    pub fn new(
        pool: Pool,
        storage: Storage,
        nodes: Arc<Nodes>,
        stores: Arc<Stores>,
        shutdown_timeout: Duration,
        domain_prefix: String,
    ) -> Self {
        let labnets = LabNets::new(pool.clone(), nodes.clone(), domain_prefix.clone());
        let layers = Layers::new(
            pool.clone(),
            nodes.clone(),
            LayerStorage::Shared,
            "pvce-layers".into(),
            storage.root().join("node-layers"),
        );
        Self {
            layers,
            pool,
            storage,
            nodes,
            stores,
            reservations: Reservations::default(),
            locks: Mutex::new(HashMap::new()),
            shutdown_timeout,
            policy: Policy::Spread,
            host_reserve_mib: crate::placement::DEFAULT_HOST_RESERVE_MIB,
            labnets,
            domain_prefix,
            disk_cache: libvirt::DiskCache::default(),
            events: tokio::sync::broadcast::channel(1024).0,
            console_passwords: tokio::sync::Mutex::new(()),
        }
    }

    /// Host cache mode of VM disks (`none` for live migration on shared storage).
    #[must_use]
    pub fn with_disk_cache(mut self, cache: libvirt::DiskCache) -> Self {
        self.disk_cache = cache;
        self
    }

    /// The placement policy of starts and drains, and the memory kept free on
    /// every node for the host.
    #[must_use]
    pub fn with_placement(mut self, policy: Policy, host_reserve_mib: u64) -> Self {
        self.policy = policy;
        self.host_reserve_mib = host_reserve_mib;
        self
    }

    /// Layer storage of new VMs and the node-local layer pools.
    #[must_use]
    pub fn with_layers(mut self, layers: Layers) -> Self {
        self.layers = layers;
        self
    }

    pub fn layers(&self) -> &Layers {
        &self.layers
    }

    /// Subscribes to VM state changes.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<VmEvent> {
        self.events.subscribe()
    }

    fn notify(&self, vm_id: Uuid, state: VmState, node_id: Option<Uuid>) {
        // No subscribers is fine: nobody is watching.
        let _ = self.events.send(VmEvent {
            vm_id,
            state,
            node_id,
        });
    }

    /// The libvirt domain name of a VM.
    pub fn domain_name(&self, vm_id: Uuid) -> String {
        format!("{}{vm_id}", self.domain_prefix)
    }

    /// The VM's lifecycle lock: hold it for any operation that must not race a
    /// start/stop (e.g. touching the personal layer of a stopped VM).
    pub(crate) fn lock_for(&self, id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id).or_default().clone()
    }

    /// Lists the VMs a user may see, optionally for one course.
    pub async fn list(&self, user: &User, course_id: Option<Uuid>) -> Result<Vec<Vm>, VmError> {
        let mut sql = format!("SELECT {COLUMNS} FROM vms v WHERE 1=1");
        let uid = user.id.to_string();
        match user.role {
            Role::Admin => {}
            Role::Teacher => sql.push_str(
                " AND (v.owner_id = ? OR v.course_id IN (SELECT id FROM courses WHERE teacher_id = ?))",
            ),
            Role::Student => sql.push_str(" AND v.owner_id = ?"),
            // Staff see the VMs named in open tickets (and their own).
            Role::Staff => sql.push_str(&format!(
                " AND (v.owner_id = ? OR v.id IN ({}))",
                crate::desk::tickets::VMS_IN_OPEN_TICKETS
            )),
        }
        if course_id.is_some() {
            sql.push_str(" AND v.course_id = ?");
        }
        sql.push_str(" ORDER BY v.created_at, v.name");
        let mut q = sqlx::query(&sql);
        match user.role {
            Role::Admin => {}
            Role::Teacher => q = q.bind(uid.clone()).bind(uid),
            Role::Student | Role::Staff => q = q.bind(uid),
        }
        if let Some(c) = course_id {
            q = q.bind(c.to_string());
        }
        let rows = q.fetch_all(&self.pool).await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// A VM the user may act on (owner, the course's teacher, admin), else NotFound.
    pub async fn get_for(&self, user: &User, id: Uuid) -> Result<Vm, VmError> {
        let vm = load(&self.pool, id).await?;
        let allowed = match user.role {
            Role::Admin => true,
            _ if vm.owner_id == user.id => true,
            // A build VM has no course: only its owner (and admins) reach it.
            Role::Teacher if vm.course_id.is_some() => {
                let teacher: Option<String> =
                    sqlx::query_scalar("SELECT teacher_id FROM courses WHERE id = ?")
                        .bind(vm.course_id.map(|c| c.to_string()))
                        .fetch_optional(&self.pool)
                        .await?;
                teacher.as_deref() == Some(user.id.to_string().as_str())
            }
            Role::Staff => crate::desk::tickets::vm_in_open_ticket(&self.pool, id).await?,
            Role::Teacher | Role::Student => false,
        };
        if allowed {
            Ok(vm)
        } else {
            Err(VmError::NotFound)
        }
    }

    /// A VM whose personal layer the user may change or copy (reset,
    /// snapshots, export, import): as [`Self::get_for`], except that staff
    /// reach the VMs of tickets only to look, power and open the console;
    /// a student's data is not theirs to roll back or take away.
    pub async fn get_for_layer(&self, user: &User, id: Uuid) -> Result<Vm, VmError> {
        let vm = self.get_for(user, id).await?;
        if user.role == Role::Staff && vm.owner_id != user.id {
            return Err(VmError::NotFound);
        }
        Ok(vm)
    }

    /// Brings one VM's row in line with libvirt and returns it.
    pub async fn refresh(&self, id: Uuid) -> Result<Vm, VmError> {
        let lock = self.lock_for(id);
        // A start/stop in flight owns the VM; its result will be written by it.
        let Ok(_guard) = lock.try_lock() else {
            return load(&self.pool, id).await;
        };
        let vm = load(&self.pool, id).await?;
        self.sync_with_node(vm).await
    }

    /// Re-reads the VM's domain on its node and updates the row to match.
    pub(crate) async fn sync_with_node(&self, vm: Vm) -> Result<Vm, VmError> {
        let Some(node_id) = vm.node_id else {
            return Ok(vm);
        };
        let Ok(conn) = self.nodes.conn(node_id).await else {
            // Node unreachable: the VM may still run there, so it is not
            // `running` (nobody can reach it) nor `stopped` (its layer may be
            // open): `node_down` until the node is back or fenced.
            if vm.state.is_active() && vm.state != VmState::NodeDown {
                self.set_state(vm.id, VmState::NodeDown, Some(node_id), None)
                    .await?;
                return load(&self.pool, vm.id).await;
            }
            return Ok(vm);
        };
        let name = self.domain_name(vm.id);
        let found = tokio::time::timeout(SYNC_DEADLINE, conn.domain(&name))
            .await
            .unwrap_or(Err(LibvirtError::Timeout));
        // The node answered: for a `node_down` VM this is the fence — a
        // missing domain means nothing holds the layer any more.
        match found {
            Ok(Some(d)) if matches!(d.state, DomainState::Running | DomainState::Paused) => {
                if vm.state != VmState::Running && vm.state != VmState::Stopping {
                    self.set_state(vm.id, VmState::Running, Some(node_id), None)
                        .await?;
                }
            }
            // Still shutting down (or otherwise alive): QEMU holds the layer,
            // so the VM is not stopped yet.
            Ok(Some(d)) if d.state != DomainState::Shutoff => {
                if vm.state != VmState::Stopping {
                    self.set_state(vm.id, VmState::Stopping, Some(node_id), None)
                        .await?;
                }
            }
            Ok(_) => {
                self.set_state(vm.id, VmState::Stopped, None, None).await?;
            }
            Err(e) => tracing::warn!(vm = %vm.id, error = %e, "could not read domain state"),
        }
        load(&self.pool, vm.id).await
    }

    async fn set_state(
        &self,
        id: Uuid,
        state: VmState,
        node_id: Option<Uuid>,
        error: Option<String>,
    ) -> Result<(), VmError> {
        // `node_down` keeps the last known state underneath (see migration 0005).
        let (column_state, node_down) = match state {
            VmState::NodeDown => (None, 1),
            s => (Some(s.as_str()), 0),
        };
        sqlx::query("UPDATE vms SET state = COALESCE(?, state), node_down = ?, node_id = ?, last_error = COALESCE(?, last_error) WHERE id = ?")
            .bind(column_state)
            .bind(node_down)
            .bind(node_id.map(|n| n.to_string()))
            .bind(error)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        self.notify(id, state, node_id);
        Ok(())
    }

    /// The nodes placement may consider for a VM of `chain` with `graphics`.
    async fn candidates(
        &self,
        chain: &[ChainLayer],
        graphics: GraphicsKind,
    ) -> Result<Vec<Candidate>, VmError> {
        // A node qualifies for the template if its store holds the whole chain,
        // or has room to receive it (or its store has not been sampled yet:
        // the copy itself will tell).
        let (holders, chain_bytes) = self.stores.holders(chain).await?;
        let nodes = self.nodes.list().await?;
        let committed = self.committed_mib().await?;
        Ok(nodes
            .into_iter()
            .map(|n| Candidate {
                node_id: n.id,
                up: n.state != "down",
                maintenance: n.maintenance,
                has_template: holders.contains(&n.id)
                    || n.store_free.is_none_or(|free| free >= chain_bytes),
                mem_total_mib: n.mem_total_mib,
                mem_used_mib: n
                    .mem_used_mib
                    .saturating_add(committed.get(&n.id).copied().unwrap_or(0)),
                cpu_percent: n.cpu_percent,
                vms_running: n.vms_running,
                unsupported: n
                    .capabilities
                    .as_ref()
                    .and_then(|c| c.lacks(graphics, self.nodes.accel())),
                name: n.name,
            })
            .collect())
    }

    /// Memory promised to the VMs placed on each node. A guest touches its
    /// memory lazily, so a node's own figures lag far behind what its VMs may
    /// claim; counting the promise on top keeps placement (and migration
    /// targets) from piling VMs onto a node whose stats have not caught up
    /// (conservative: what a guest already touched counts twice).
    async fn committed_mib(&self) -> Result<HashMap<Uuid, u64>, VmError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT node_id, SUM(memory_mib) FROM vms WHERE node_id IS NOT NULL
             AND state IN ('starting', 'running', 'stopping') GROUP BY node_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(node, mib)| {
                Some((
                    Uuid::parse_str(&node).ok()?,
                    u64::try_from(mib).unwrap_or(0),
                ))
            })
            .collect())
    }

    /// Starts a VM (idempotent: a running VM is returned as it is).
    pub async fn start(&self, vm: &Vm, owner_name: &str, course_code: &str) -> Result<Vm, VmError> {
        let lock = self.lock_for(vm.id);
        let _guard = lock.lock().await;
        let vm = self.sync_with_node(load(&self.pool, vm.id).await?).await?;
        match vm.state {
            VmState::Running | VmState::Starting => return Ok(vm),
            VmState::Stopping => {
                return Err(VmError::Conflict(
                    "vm_stopping",
                    "the VM is shutting down; try again when it has stopped".into(),
                ));
            }
            VmState::NodeDown => return Err(node_down_conflict()),
            VmState::Stopped | VmState::Error => {}
        }
        // A lab-network VM: hold its student's network lock for the whole start,
        // so the student's concurrent starts agree on a node and one network.
        let lab = match vm.course_id {
            Some(c) if labnets::course_has_lab_network(&self.pool, c).await? => {
                Some((c, vm.owner_id))
            }
            _ => None,
        };
        let lab_lock = lab.map(|pair| self.labnets.lock_for(pair));
        let _lab_guard = match &lab_lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let constraint = match lab {
            Some(pair) => self.labnets.constraint(pair, vm.id).await?,
            None => Constraint::Anywhere,
        };
        // A node-local layer pins the VM to its home node.
        let constraint = match (self.layers.pinned_node(&vm.layer()).await?, constraint) {
            (None, c) => c,
            (Some(home), Constraint::Anywhere) => Constraint::OnNode(home),
            (Some(home), Constraint::OnNode(n)) if n == home => constraint,
            (Some(_), Constraint::OnNode(_)) => {
                return Err(VmError::Conflict(
                    "lab_network",
                    "this VM's disk is on another node than the one running the student's other VMs on the same lab network; stop those VMs first".into(),
                ));
            }
        };
        let chain = self.stores.chain(vm.template_id).await?;
        let graphics = graphics_of(&self.pool, vm.id).await?;
        let candidates = self.candidates(&chain, graphics).await?;
        let reservation = self.reservations.place(
            &candidates,
            u64::from(vm.memory_mib),
            self.host_reserve_mib,
            self.policy,
            constraint,
        )?;
        let node_id = reservation.node_id();
        let node = self.nodes.get(node_id).await?;
        let conn = self.nodes.conn(node_id).await?;
        // The template's layers must be in the node's store before QEMU opens
        // the chain (a no-op once they are).
        self.stores.ensure_chain(node_id, &chain).await?;
        // A node-local layer not created yet is created on the chosen node,
        // which becomes its home (undone below if the start fails).
        let mut layer = vm.layer();
        let created_layer = layer.storage == LayerStorage::NodeLocal && layer.volume.is_none();
        if created_layer {
            let t = templates::get(&self.pool, vm.template_id)
                .await
                .map_err(|e| VmError::Template(e.to_string()))?;
            layer = self
                .layers
                .create(
                    node_id,
                    vm.id,
                    &self.storage.template_path(t.id),
                    t.virtual_size_bytes,
                )
                .await?;
        }
        self.set_state(vm.id, VmState::Starting, Some(node_id), None)
            .await?;
        let network = match lab {
            Some(pair) => match self.labnets.ensure(node_id, &conn, pair).await {
                Ok(name) => Some(name),
                Err(e) => {
                    tracing::warn!(vm = %vm.id, error = %e, "lab network unavailable");
                    if created_layer {
                        self.discard_new_layer(vm.id, &layer).await;
                    }
                    if let Err(e2) = self.labnets.release_locked(pair).await {
                        tracing::warn!(vm = %vm.id, error = %e2, "lab network cleanup failed");
                    }
                    self.set_state(vm.id, VmState::Stopped, None, Some(e.to_string()))
                        .await?;
                    return Err(e.into());
                }
            },
            None => None,
        };
        let spec = libvirt::DomainSpec {
            name: self.domain_name(vm.id),
            uuid: vm.id,
            title: format!("{owner_name} / {course_code} / {}", vm.name),
            vcpus: vm.vcpus,
            memory_mib: u64::from(vm.memory_mib),
            hypervisor: conn.hypervisor_for(self.nodes.accel()).await?,
            disk_path: self.layers.disk_path(&vm.overlay_path, &layer),
            graphics,
            graphics_listen: node.console_address.clone(),
            // Per boot, never stored: the console proxy reads it back from libvirt.
            graphics_password: Some(console::new_console_password(graphics)),
            serial_log: Some(self.storage.console_log_path(vm.id)),
            smbios_serial: format!("vm-{}", &vm.id.simple().to_string()[..12]),
            disk_cache: self.disk_cache,
            metadata: libvirt::PvceMetadata {
                id: vm.id.to_string(),
                owner: vm.owner_id.to_string(),
                course: vm.course_id.map(|c| c.to_string()),
                template: vm.build_template_id.map(|t| t.to_string()),
            },
            network,
        };
        match conn.create_domain(&spec).await {
            Ok(_) => {
                sqlx::query("UPDATE vms SET state = 'running', node_id = ?, last_error = NULL, last_started_at = ? WHERE id = ?")
                    .bind(node_id.to_string())
                    .bind(db::now())
                    .bind(vm.id.to_string())
                    .execute(&self.pool)
                    .await?;
                drop(reservation);
                self.notify(vm.id, VmState::Running, Some(node_id));
                load(&self.pool, vm.id).await
            }
            Err(e) => {
                // Never leave a half-started domain (or an unused network) behind.
                let destroyed = conn.destroy(&spec.name).await;
                if created_layer && destroyed.is_ok() {
                    self.discard_new_layer(vm.id, &layer).await;
                }
                if let Some(pair) = lab
                    && let Err(e2) = self.labnets.release_locked(pair).await
                {
                    tracing::warn!(vm = %vm.id, error = %e2, "lab network cleanup failed");
                }
                tracing::warn!(vm = %vm.id, error = %e, "start failed");
                if e.is_unavailable() && destroyed.is_err() {
                    // The node stopped answering mid-start: the domain may run
                    // there after all, so the VM is fenced like any other.
                    self.set_state(vm.id, VmState::NodeDown, Some(node_id), Some(e.to_string()))
                        .await?;
                } else {
                    self.set_state(vm.id, VmState::Stopped, None, Some(e.to_string()))
                        .await?;
                }
                Err(e.into())
            }
        }
    }

    /// The stopped VM's layer as a file on the server at its `overlay_path`
    /// (a download for a node-local layer, see [`crate::layers`]); commit
    /// the checkout after changing the file. Call under the VM's lock.
    pub(crate) async fn checkout_layer(
        &self,
        vm: &Vm,
    ) -> Result<crate::layers::Checkout<'_>, VmError> {
        let (backing, size) = match vm.layer_storage {
            LayerStorage::Shared => (PathBuf::new(), 0),
            LayerStorage::NodeLocal => {
                let t = templates::get(&self.pool, vm.template_id)
                    .await
                    .map_err(|e| VmError::Template(e.to_string()))?;
                (self.storage.template_path(t.id), t.virtual_size_bytes)
            }
        };
        Ok(self
            .layers
            .checkout(vm.id, &vm.overlay_path, &vm.layer(), &backing, size)
            .await?)
    }

    /// Removes a node-local layer created by a start that then failed, so
    /// the next start is placed afresh (logged if the node does not answer;
    /// the layer then stays the VM's, empty).
    async fn discard_new_layer(&self, vm_id: Uuid, layer: &LayerLocation) {
        if let Err(e) = self.layers.discard(vm_id, layer).await {
            tracing::warn!(vm = %vm_id, error = %e, "could not remove the layer of a failed start");
        }
    }

    /// After a stop: a node-local layer's size, as the UI shows it.
    async fn refresh_layer_bytes(&self, vm_id: Uuid) {
        if let Ok(vm) = load(&self.pool, vm_id).await
            && vm.layer_storage == LayerStorage::NodeLocal
            && let Err(e) = self.layers.refresh_bytes(vm_id, &vm.layer()).await
        {
            tracing::debug!(vm = %vm_id, error = %e, "could not read the layer size");
        }
    }

    async fn require_running(&self, vm: &Vm) -> Result<(Vm, libvirt::Node), VmError> {
        let vm = self.sync_with_node(load(&self.pool, vm.id).await?).await?;
        let node_id = match (vm.state, vm.node_id) {
            (VmState::Running | VmState::Stopping, Some(n)) => n,
            (VmState::NodeDown, _) => return Err(node_down_conflict()),
            _ => {
                return Err(VmError::Conflict(
                    "vm_not_running",
                    "the VM is not running".into(),
                ));
            }
        };
        let conn = self.nodes.conn(node_id).await?;
        Ok((vm, conn))
    }

    /// ACPI shutdown; forced off if the guest has not stopped after the timeout.
    pub async fn shutdown(self: &Arc<Self>, vm: &Vm) -> Result<Vm, VmError> {
        let lock = self.lock_for(vm.id);
        let _guard = lock.lock().await;
        let current = self.sync_with_node(load(&self.pool, vm.id).await?).await?;
        if current.state == VmState::Stopped {
            return Ok(current);
        }
        let (vm, conn) = self.require_running(&current).await?;
        conn.shutdown(&self.domain_name(vm.id)).await?;
        self.set_state(vm.id, VmState::Stopping, vm.node_id, None)
            .await?;
        let this = Arc::clone(self);
        let vm_id = vm.id;
        tokio::spawn(async move { this.finish_shutdown(vm_id, conn).await });
        load(&self.pool, vm.id).await
    }

    async fn finish_shutdown(&self, vm_id: Uuid, conn: libvirt::Node) {
        let name = self.domain_name(vm_id);
        let deadline = Instant::now() + self.shutdown_timeout;
        loop {
            match conn.domain(&name).await {
                Ok(None) => break,
                Ok(Some(d)) if d.state == DomainState::Shutoff => break,
                _ => {}
            }
            if Instant::now() >= deadline {
                tracing::info!(vm = %vm_id, "ACPI shutdown timed out; forcing off");
                let _ = conn.destroy(&name).await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let lock = self.lock_for(vm_id);
        let _guard = lock.lock().await;
        let _ = self.set_state(vm_id, VmState::Stopped, None, None).await;
        if let Ok(vm) = load(&self.pool, vm_id).await {
            self.release_lab_network(&vm).await;
        }
        self.refresh_layer_bytes(vm_id).await;
    }

    /// After a stop: removes the VM's lab network if no VM of its student in
    /// its course runs on the node any more. Failures are logged; the
    /// reconcile loop retries.
    async fn release_lab_network(&self, vm: &Vm) {
        let Some(course) = vm.course_id else {
            return;
        };
        if let Err(e) = self.labnets.release((course, vm.owner_id)).await {
            tracing::warn!(vm = %vm.id, error = %e, "lab network cleanup failed; reconcile retries");
        }
    }

    /// Forced power-off.
    pub async fn poweroff(&self, vm: &Vm) -> Result<Vm, VmError> {
        let lock = self.lock_for(vm.id);
        let _guard = lock.lock().await;
        let current = self.sync_with_node(load(&self.pool, vm.id).await?).await?;
        if current.state == VmState::Stopped {
            return Ok(current);
        }
        let (vm, conn) = self.require_running(&current).await?;
        conn.destroy(&self.domain_name(vm.id)).await?;
        self.set_state(vm.id, VmState::Stopped, None, None).await?;
        self.release_lab_network(&vm).await;
        self.refresh_layer_bytes(vm.id).await;
        load(&self.pool, vm.id).await
    }

    pub async fn reboot(&self, vm: &Vm) -> Result<Vm, VmError> {
        let lock = self.lock_for(vm.id);
        let _guard = lock.lock().await;
        let (vm, conn) = self.require_running(vm).await?;
        conn.reboot(&self.domain_name(vm.id)).await?;
        Ok(vm)
    }

    /// Discards the personal layer: a fresh overlay on the template replaces it.
    pub async fn reset(&self, vm: &Vm) -> Result<Vm, VmError> {
        let lock = self.lock_for(vm.id);
        let _guard = lock.lock().await;
        let vm = self.sync_with_node(load(&self.pool, vm.id).await?).await?;
        if vm.state.is_active() {
            return Err(VmError::Conflict(
                "vm_running",
                "stop the VM before resetting it".into(),
            ));
        }
        match vm.layer_storage {
            LayerStorage::Shared => {
                let t = templates::get(&self.pool, vm.template_id)
                    .await
                    .map_err(|e| VmError::Template(e.to_string()))?;
                let path = vm.overlay_path.clone();
                let backing = self.storage.template_path(t.id);
                let size = t.virtual_size_bytes;
                tokio::task::spawn_blocking(move || images::replace_overlay(&path, &backing, size))
                    .await
                    .map_err(|e| VmError::Io(std::io::Error::other(e.to_string())))??;
            }
            // The next start creates a fresh layer wherever placement says.
            LayerStorage::NodeLocal => self.layers.discard(vm.id, &vm.layer()).await?,
        }
        // The old layer's snapshots went with it.
        crate::snapshots::forget_all(&self.pool, &vm).await?;
        sqlx::query(
            "UPDATE vms SET state = 'stopped', node_id = NULL, last_error = NULL WHERE id = ?",
        )
        .bind(vm.id.to_string())
        .execute(&self.pool)
        .await?;
        self.notify(vm.id, VmState::Stopped, None);
        load(&self.pool, vm.id).await
    }

    /// One pass of reconciliation between the database and every node, all
    /// nodes at once, each bounded by [`RECONCILE_NODE_DEADLINE`] so a frozen
    /// node holds up nobody:
    /// - on a `down` node, active VMs become `node_down` (never silently
    ///   `running`);
    /// - on a reachable node, active rows whose domain is gone become
    ///   `stopped` (for `node_down` rows this is the fence: the node answers
    ///   and runs nothing for them), and domains carrying our metadata for a
    ///   known VM are adopted — unless the VM is active on another node, in
    ///   which case the domain is a stale copy on a node that was fenced and
    ///   is destroyed;
    /// - domains without pvce's metadata, or for VMs this database does not
    ///   know, are never touched.
    ///
    /// VMs whose lifecycle lock is held (a start, stop or migration in
    /// flight) are skipped; their operation writes the outcome.
    pub async fn reconcile_once(&self) -> Result<(), VmError> {
        let nodes = self.nodes.list().await?;
        let passes = nodes.iter().map(|node| async move {
            if node.state == "down" {
                return self.mark_node_down(node.id).await;
            }
            match tokio::time::timeout(RECONCILE_NODE_DEADLINE, self.reconcile_node(node)).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(node = %node.name, "reconcile timed out");
                    Ok(())
                }
            }
        });
        for r in futures::future::join_all(passes).await {
            r?;
        }
        // Lab networks whose VMs are all gone (guest shutdowns, crashes,
        // failed cleanups, restarts).
        if let Err(e) = self.labnets.sweep().await {
            tracing::warn!(error = %e, "lab network sweep failed");
        }
        Ok(())
    }

    /// Marks the active VMs of a node that stopped answering `node_down`.
    async fn mark_node_down(&self, node_id: Uuid) -> Result<(), VmError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM vms WHERE node_id = ? AND state IN ('starting', 'running', 'stopping') AND node_down = 0"
        ))
        .bind(node_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let vm = from_row(row)?;
            let lock = self.lock_for(vm.id);
            let Ok(_guard) = lock.try_lock() else {
                continue;
            };
            tracing::warn!(vm = %vm.id, node = %node_id, "node down: VM state unknown until fenced");
            self.set_state(vm.id, VmState::NodeDown, Some(node_id), None)
                .await?;
        }
        Ok(())
    }

    /// Removes node-local layer volumes no VM names (see
    /// [`Layers::unreferenced`]); failures are logged and retried next pass.
    async fn sweep_layers(&self, node: &crate::nodes::Node, conn: &libvirt::Node) {
        let orphans = match self.layers.unreferenced(node.id, conn).await {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(node = %node.name, error = %e, "layer sweep skipped");
                return;
            }
        };
        for (vm_id, volume) in orphans {
            let lock = self.lock_for(vm_id);
            let Ok(_guard) = lock.try_lock() else {
                continue;
            };
            match self
                .layers
                .remove_unreferenced(node.id, conn, &volume)
                .await
            {
                Ok(true) => {
                    tracing::warn!(node = %node.name, %volume, "removed a layer volume no VM uses (left by an interrupted operation)");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(node = %node.name, %volume, error = %e, "could not remove an unused layer volume")
                }
            }
        }
    }

    async fn reconcile_node(&self, node: &crate::nodes::Node) -> Result<(), VmError> {
        let Ok(conn) = self.nodes.conn(node.id).await else {
            return Ok(());
        };
        self.sweep_layers(node, &conn).await;
        let Ok(domains) = conn.list_pvce_domains().await else {
            return Ok(());
        };
        let running: HashMap<Uuid, DomainState> = domains
            .iter()
            .filter_map(|d| {
                let id = Uuid::parse_str(&d.metadata.as_ref()?.id).ok()?;
                Some((id, d.state))
            })
            .collect();
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM vms WHERE node_id = ? OR id IN (SELECT value FROM json_each(?))"
        ))
        .bind(node.id.to_string())
        .bind(
            serde_json::to_string(&running.keys().map(Uuid::to_string).collect::<Vec<_>>())
                .unwrap_or_else(|_| "[]".into()),
        )
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let vm = from_row(row)?;
            let lock = self.lock_for(vm.id);
            let Ok(_guard) = lock.try_lock() else {
                continue;
            };
            let seen = running.get(&vm.id).copied();
            if reconcile_action(vm.state, vm.node_id, node.id, seen) == ReconcileAction::None {
                continue;
            }
            // The listing and the rows were read before the lock was taken: an
            // operation may have finished in between. Decide again on fresh
            // facts (only for the few VMs that need acting on).
            let vm = load(&self.pool, vm.id).await?;
            let seen = match conn.domain(&self.domain_name(vm.id)).await {
                Ok(d) => d.map(|d| d.state),
                Err(_) => continue,
            };
            match reconcile_action(vm.state, vm.node_id, node.id, seen) {
                ReconcileAction::None => {}
                ReconcileAction::DestroyStaleCopy => {
                    tracing::warn!(vm = %vm.id, node = %node.name, "destroying a stale copy on a fenced node");
                    conn.destroy(&self.domain_name(vm.id)).await?;
                }
                ReconcileAction::Adopt => {
                    tracing::info!(vm = %vm.id, node = %node.name, state = vm.state.as_str(), "adopting running domain");
                    self.set_state(vm.id, VmState::Running, Some(node.id), None)
                        .await?;
                }
                ReconcileAction::MarkStopped { interrupted_start } => {
                    let reason = interrupted_start.then(|| {
                        "the start was interrupted (the server stopped while the VM was starting); start it again".to_owned()
                    });
                    self.set_state(vm.id, VmState::Stopped, None, reason)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// An admin's confirmation that a `down` node is powered off (or its
    /// QEMUs are otherwise gone): its VMs are fenced and become `stopped`, so
    /// they can start on another node. Refused (409 `node_up`) while the node
    /// answers — then the node itself tells what still runs. Returns how many
    /// VMs were released.
    pub async fn fence_node(&self, node_id: Uuid, actor: Option<&str>) -> Result<u64, VmError> {
        let node = self.nodes.get(node_id).await?;
        if node.state != "down" || self.nodes.probe(node_id).await.is_ok() {
            return Err(VmError::Conflict(
                "node_up",
                "the node answers; its VMs are stopped through it, not fenced".into(),
            ));
        }
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM vms WHERE node_id = ? AND state IN ('starting', 'running', 'stopping')"
        ))
        .bind(node_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut released = 0;
        for row in &rows {
            let vm = from_row(row)?;
            let lock = self.lock_for(vm.id);
            let _guard = lock.lock().await;
            tracing::warn!(vm = %vm.id, node = %node.name, "fenced by admin: node confirmed powered off");
            self.set_state(
                vm.id,
                VmState::Stopped,
                None,
                Some(format!(
                    "node {} was fenced (confirmed powered off)",
                    node.name
                )),
            )
            .await?;
            released += 1;
        }
        events::record(
            &self.pool,
            NewEvent::node(
                EventKind::NodeFenced,
                node_id,
                &node.name,
                format!("confirmed powered off; {released} VM(s) released to start elsewhere"),
            )
            .by(actor),
        )
        .await;
        Ok(released)
    }

    pub fn spawn_reconciler(
        self: Arc<Self>,
        health: &Arc<crate::health::Health>,
    ) -> tokio::task::JoinHandle<()> {
        crate::health::spawn_periodic(health, "reconciler", Duration::from_secs(2), move || {
            let this = self.clone();
            async move { this.reconcile_once().await }
        })
    }

    /// Live-migrates a running VM to `target` (shared storage: only memory
    /// moves). The VM stays `running` throughout and ends on `target` with
    /// its console listening on the target's console address; console tokens
    /// issued for the old node are void (they are bound to the node).
    /// `actor`: the admin who asked (for the event log).
    pub async fn migrate(&self, vm: &Vm, target: Uuid, actor: Option<&str>) -> Result<Vm, VmError> {
        let lock = self.lock_for(vm.id);
        let _guard = lock.lock().await;
        let (vm, src) = self.require_running(vm).await?;
        let (VmState::Running, Some(source)) = (vm.state, vm.node_id) else {
            return Err(VmError::Conflict(
                "vm_not_running",
                "only a running VM can be migrated".into(),
            ));
        };
        if vm.layer_storage == LayerStorage::NodeLocal {
            return Err(VmError::Conflict(
                "layer_node_local",
                "this VM's disk is local to its node, so it cannot live-migrate; stop it, then move it (POST /api/vms/{id}/move)".into(),
            ));
        }
        // A lab network lives on one node; multi-node lab networks do not exist yet.
        if let Some(c) = vm.course_id
            && labnets::course_has_lab_network(&self.pool, c).await?
        {
            return Err(VmError::Conflict(
                "lab_network",
                "VMs on a lab network cannot move to another node yet".into(),
            ));
        }
        if source == target {
            return Err(VmError::Unprocessable(
                "same_node",
                "the VM already runs on this node".into(),
            ));
        }
        let node = self.target_node(target).await?;
        let committed = self.committed_mib().await?;
        let candidate = Candidate {
            node_id: node.id,
            name: node.name.clone(),
            up: true,
            maintenance: false,
            has_template: true,
            mem_total_mib: node.mem_total_mib,
            mem_used_mib: node
                .mem_used_mib
                .saturating_add(committed.get(&node.id).copied().unwrap_or(0)),
            cpu_percent: node.cpu_percent,
            vms_running: node.vms_running,
            // An explicit target: the admin chose it, libvirt has the last word.
            unsupported: None,
        };
        let _reservation = self
            .reservations
            .place(
                std::slice::from_ref(&candidate),
                u64::from(vm.memory_mib),
                self.host_reserve_mib,
                self.policy,
                Constraint::Anywhere,
            )
            .map_err(|_| {
                VmError::Conflict(
                    "insufficient_memory",
                    format!(
                        "node {} lacks {} MiB of free memory for this VM",
                        node.name, vm.memory_mib
                    ),
                )
            })?;
        // Shared storage carries the layer, not the template: the target's
        // store must hold the chain before QEMU there opens it.
        let chain = self.stores.chain(vm.template_id).await?;
        self.stores.ensure_chain(target, &chain).await?;
        let listen: std::net::IpAddr = node.console_address.parse().map_err(|_| {
            VmError::Unprocessable(
                "bad_console_address",
                "the target node's console address is not an IP".into(),
            )
        })?;
        let dst = self.nodes.conn(target).await?;
        tracing::info!(vm = %vm.id, from = %source, to = %node.name, "live migration");
        let source_name = self
            .nodes
            .get(source)
            .await
            .map(|n| n.name)
            .unwrap_or_default();
        let result = src
            .migrate_to(&self.domain_name(vm.id), &dst, listen, MIGRATE_DEADLINE)
            .await;
        let event = match &result {
            Ok(_) => NewEvent::node(
                EventKind::VmMigrated,
                source,
                &source_name,
                format!("live-migrated to {}", node.name),
            ),
            Err(e) => NewEvent::node(
                EventKind::VmMigrationFailed,
                source,
                &source_name,
                format!("live migration to {} failed: {e}", node.name),
            ),
        };
        events::record(&self.pool, event.vm(vm.id).by(actor)).await;
        result?;
        self.set_state(vm.id, VmState::Running, Some(target), None)
            .await?;
        load(&self.pool, vm.id).await
    }

    /// A node a VM may be moved to (migration, layer move): known (else 422
    /// `unknown_node`), up and not in maintenance (else 409).
    async fn target_node(&self, target: Uuid) -> Result<crate::nodes::Node, VmError> {
        let node = match self.nodes.get(target).await {
            Err(NodeError::NotFound) => {
                return Err(VmError::Unprocessable(
                    "unknown_node",
                    "no such target node".into(),
                ));
            }
            other => other?,
        };
        if node.maintenance {
            return Err(VmError::Conflict(
                "node_maintenance",
                format!("node {} is in maintenance", node.name),
            ));
        }
        if node.state == "down" {
            return Err(VmError::Conflict(
                "node_down",
                format!("node {} is down", node.name),
            ));
        }
        Ok(node)
    }

    /// Moves a stopped VM's node-local layer to node `target` (admin): the
    /// target's template store gets the chain, the layer is copied through
    /// the server and verified, then the VM's home is the target. 409
    /// `layer_shared` for a shared layer (it needs no move).
    pub async fn move_layer(
        &self,
        vm: &Vm,
        target: Uuid,
        actor: Option<&str>,
    ) -> Result<Vm, VmError> {
        let lock = self.lock_for(vm.id);
        let _guard = lock.lock().await;
        let vm = self.sync_with_node(load(&self.pool, vm.id).await?).await?;
        if vm.state.is_active() {
            return Err(VmError::Conflict(
                "vm_running",
                "stop the VM before moving its disk".into(),
            ));
        }
        if vm.layer_storage == LayerStorage::Shared {
            return Err(LayerError::Shared.into());
        }
        let node = self.target_node(target).await?;
        let chain = self.stores.chain(vm.template_id).await?;
        self.stores.ensure_chain(target, &chain).await?;
        let t = templates::get(&self.pool, vm.template_id)
            .await
            .map_err(|e| VmError::Template(e.to_string()))?;
        tracing::info!(vm = %vm.id, to = %node.name, "moving a node-local layer");
        let home = vm.layer().node_id;
        self.layers
            .move_to(
                vm.id,
                &vm.overlay_path,
                &vm.layer(),
                target,
                &self.storage.template_path(t.id),
                t.virtual_size_bytes,
            )
            .await?;
        let from = match home {
            Some(h) => self.nodes.get(h).await.map(|n| n.name).unwrap_or_default(),
            None => String::new(),
        };
        events::record(
            &self.pool,
            NewEvent::node(
                EventKind::VmMoved,
                target,
                &node.name,
                format!("disk moved here from {from}"),
            )
            .vm(vm.id)
            .by(actor),
        )
        .await;
        load(&self.pool, vm.id).await
    }

    /// Live-migrates every running VM off a node (after maintenance was
    /// switched on), one at a time, each to the node placement picks among
    /// the others. VMs that cannot move (no room, a failed migration) stay
    /// where they are and are logged; the admin sees them on the node.
    pub fn spawn_drain(self: &Arc<Self>, node_id: Uuid, actor: Option<String>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = this.drain(node_id, actor.as_deref()).await {
                tracing::warn!(node = %node_id, error = %e, "drain failed");
            }
        });
    }

    async fn drain(&self, node_id: Uuid, actor: Option<&str>) -> Result<(), VmError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM vms WHERE node_id = ? AND state = 'running' ORDER BY id"
        ))
        .bind(node_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let name = self.nodes.get(node_id).await?.name;
        events::record(
            &self.pool,
            NewEvent::node(
                EventKind::DrainStarted,
                node_id,
                &name,
                format!("moving {} running VM(s) to other nodes", rows.len()),
            )
            .by(actor),
        )
        .await;
        for row in &rows {
            let vm = from_row(row)?;
            if vm.layer_storage == LayerStorage::NodeLocal {
                let why = "the VM's disk is local to this node; stop it, then move it";
                self.left_behind((node_id, &name), vm.id, actor, why.into())
                    .await;
                continue;
            }
            let chain = self.stores.chain(vm.template_id).await?;
            let graphics = graphics_of(&self.pool, vm.id).await?;
            let candidates = self.candidates(&chain, graphics).await?;
            let target = crate::placement::choose(
                &candidates,
                u64::from(vm.memory_mib),
                self.host_reserve_mib,
                &HashMap::new(),
                self.policy,
                Constraint::Anywhere,
            );
            match target {
                Ok(target) => match self.migrate(&vm, target, actor).await {
                    Ok(_) => tracing::info!(vm = %vm.id, "drained"),
                    Err(e) => tracing::warn!(vm = %vm.id, error = %e, "drain: migration failed"),
                },
                Err(e) => {
                    let why = format!("no node can take the VM: {e}");
                    self.left_behind((node_id, &name), vm.id, actor, why).await;
                }
            }
        }
        Ok(())
    }

    /// A VM a drain cannot move stays on its node; the log and the event
    /// log say why.
    async fn left_behind(&self, node: (Uuid, &str), vm: Uuid, actor: Option<&str>, why: String) {
        tracing::warn!(vm = %vm, why, "drain: the VM stays");
        let event = NewEvent::node(
            EventKind::VmMigrationFailed,
            node.0,
            node.1,
            format!("drain: {why}"),
        );
        events::record(&self.pool, event.vm(vm).by(actor)).await;
    }

    /// The running VM, its node and that node's connection; `vm_not_running`
    /// otherwise.
    async fn running_on_node(
        &self,
        id: Uuid,
    ) -> Result<(Vm, crate::nodes::Node, libvirt::Node), VmError> {
        let vm = self.sync_with_node(load(&self.pool, id).await?).await?;
        let (VmState::Running, Some(node_id)) = (vm.state, vm.node_id) else {
            return Err(VmError::Conflict(
                "vm_not_running",
                "the VM is not running".into(),
            ));
        };
        let node = self.nodes.get(node_id).await?;
        let conn = self.nodes.conn(node_id).await?;
        Ok((vm, node, conn))
    }

    fn no_console() -> VmError {
        VmError::Conflict("vm_not_running", "the VM has no console yet".into())
    }

    /// Where a running VM's console listens: (vm, host, port, protocol).
    pub async fn console_endpoint(
        &self,
        id: Uuid,
    ) -> Result<(Vm, String, u16, GraphicsKind), VmError> {
        let (vm, node, conn) = self.running_on_node(id).await?;
        let graphics = conn
            .domain(&self.domain_name(vm.id))
            .await?
            .and_then(|d| d.graphics)
            .ok_or_else(Self::no_console)?;
        Ok((vm, node.console_address, graphics.port, graphics.kind))
    }

    /// What the console proxy connects to: the running VM's console and the
    /// password it requires *now*, read from libvirt at every connect. If
    /// that password has expired (a `.vv` ticket's `passwdValidTo` passed),
    /// a fresh per-boot password without expiry replaces it first, so the
    /// proxy always gets in (rule in `console`'s module docs).
    pub async fn console_target(&self, id: Uuid) -> Result<(Vm, ConsoleTarget), VmError> {
        let (vm, node, conn) = self.running_on_node(id).await?;
        let name = self.domain_name(vm.id);
        let (graphics, mut auth) = conn.console(&name).await?.ok_or_else(Self::no_console)?;
        if console::password_expired(&auth) {
            let _guard = self.console_passwords.lock().await;
            // Another connect may have renewed it while we waited.
            let (_, current) = conn.console(&name).await?.ok_or_else(Self::no_console)?;
            auth = current;
            if console::password_expired(&auth) {
                let fresh = console::new_console_password(graphics.kind);
                conn.set_console_password(&name, &fresh, None)
                    .await?
                    .ok_or_else(Self::no_console)?;
                auth.password = Some(fresh);
                auth.valid_to = None;
            }
        }
        let target = ConsoleTarget {
            host: node.console_address,
            port: graphics.port,
            protocol: graphics.kind,
            password: auth.password,
        };
        Ok((vm, target))
    }

    /// A one-time console password for a native viewer (`.vv` file): a fresh
    /// random password set on the live console with `passwdValidTo` = now +
    /// `ttl`, replacing the per-boot one (sessions already open stay open).
    /// Returns where the console listens and the ticket. Never log the result.
    pub async fn console_ticket(&self, id: Uuid, ttl: Duration) -> Result<ViewerTicket, VmError> {
        let (vm, node, conn) = self.running_on_node(id).await?;
        let name = self.domain_name(vm.id);
        let _guard = self.console_passwords.lock().await;
        let kind = conn
            .console(&name)
            .await?
            .ok_or_else(Self::no_console)?
            .0
            .kind;
        let password = console::new_console_password(kind);
        let ttl = time::Duration::seconds(i64::try_from(ttl.as_secs()).unwrap_or(3600));
        // Whole seconds: that is what libvirt stores.
        let valid_to = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
            + ttl;
        let live = conn
            .set_console_password(&name, &password, Some(valid_to))
            .await?
            .ok_or_else(Self::no_console)?;
        let (owner, context) = labels(&self.pool, &vm).await?;
        Ok(ViewerTicket {
            title: format!("{owner} / {context} / {}", vm.name),
            vm,
            kind: live.kind,
            host: node.console_address,
            port: live.port,
            password,
            valid_to,
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }
}

/// The console protocol a VM starts with: its course spec's (build VMs: VNC).
async fn graphics_of(pool: &Pool, vm_id: Uuid) -> Result<GraphicsKind, VmError> {
    let g: Option<String> = sqlx::query_scalar(
        "SELECT s.graphics FROM vms v JOIN vm_specs s ON s.id = v.spec_id WHERE v.id = ?",
    )
    .bind(vm_id.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(g.map_or(GraphicsKind::Vnc, |g| crate::courses::graphics_from_db(&g)))
}

fn node_down_conflict() -> VmError {
    VmError::Conflict(
        "node_down",
        "the VM's node is down; the VM can be started again once the node answers or an admin confirms it is powered off".into(),
    )
}

/// How many users a problem with `vm` affects, at least its owner: the
/// owners of the VMs active on its node, or, for a VM that is not placed,
/// the owners of its template's VMs that failed (the desk's impact).
pub async fn users_affected(pool: &Pool, vm: &Vm) -> Result<u64, VmError> {
    let n: i64 = match vm.node_id {
        Some(node) => {
            sqlx::query_scalar(
                "SELECT COUNT(DISTINCT owner_id) FROM vms WHERE node_id = ?
             AND state IN ('starting', 'running', 'stopping')",
            )
            .bind(node.to_string())
            .fetch_one(pool)
            .await?
        }
        None => sqlx::query_scalar(
            "SELECT COUNT(DISTINCT owner_id) FROM vms WHERE template_id = ? AND state = 'error'",
        )
        .bind(vm.template_id.to_string())
        .fetch_one(pool)
        .await?,
    };
    Ok(u64::try_from(n).unwrap_or(0).max(1))
}

/// The owner's username and the course code (or "template build"), for the domain title.
pub async fn labels(pool: &Pool, vm: &Vm) -> Result<(String, String), VmError> {
    let owner: String = sqlx::query_scalar("SELECT username FROM users WHERE id = ?")
        .bind(vm.owner_id.to_string())
        .fetch_one(pool)
        .await?;
    let context: Option<String> = sqlx::query_scalar("SELECT code FROM courses WHERE id = ?")
        .bind(vm.course_id.map(|c| c.to_string()))
        .fetch_optional(pool)
        .await?;
    Ok((owner, context.unwrap_or_else(|| "template build".into())))
}

/// What the reconciler does about one VM on the node it is looking at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReconcileAction {
    None,
    /// The VM runs elsewhere (after this node was fenced): this copy must not
    /// keep writing the layer.
    DestroyStaleCopy,
    /// The domain runs here but the database says otherwise — including a
    /// `starting`/`stopping` whose operation died with a previous server
    /// process (no operation holds the VM's lock when this is asked).
    Adopt,
    /// No domain here for a VM the database thinks is active.
    MarkStopped {
        interrupted_start: bool,
    },
}

/// The reconcile rule, as a pure function of the VM's recorded state and
/// node, the node being reconciled, and the domain's state there (`None`:
/// no such domain). Only called for VMs whose lifecycle lock is free.
fn reconcile_action(
    state: VmState,
    vm_node: Option<Uuid>,
    node: Uuid,
    domain: Option<DomainState>,
) -> ReconcileAction {
    let alive = matches!(domain, Some(DomainState::Running | DomainState::Paused));
    // A domain still shutting down holds the layer: not stopped yet.
    let present = domain.is_some_and(|s| s != DomainState::Shutoff);
    let here = vm_node == Some(node);
    if alive && !here && vm_node.is_some() && state.is_active() {
        ReconcileAction::DestroyStaleCopy
    } else if alive && (!here || state != VmState::Running) {
        ReconcileAction::Adopt
    } else if !present && here && state.is_active() {
        ReconcileAction::MarkStopped {
            interrupted_start: state == VmState::Starting,
        }
    } else {
        ReconcileAction::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_settles_every_transitional_state() {
        use DomainState::{Paused, Running, Shutoff};
        let here = Uuid::new_v4();
        let other = Uuid::new_v4();
        let act = |s, n, d| reconcile_action(s, n, here, d);
        // A start or stop that died with the server: the domain decides.
        assert_eq!(
            act(VmState::Starting, Some(here), Some(Running)),
            ReconcileAction::Adopt
        );
        assert_eq!(
            act(VmState::Stopping, Some(here), Some(Running)),
            ReconcileAction::Adopt
        );
        assert_eq!(
            act(VmState::Starting, Some(here), None),
            ReconcileAction::MarkStopped {
                interrupted_start: true
            }
        );
        assert_eq!(
            act(VmState::Stopping, Some(here), None),
            ReconcileAction::MarkStopped {
                interrupted_start: false
            }
        );
        assert_eq!(
            act(VmState::Running, Some(here), Some(Shutoff)),
            ReconcileAction::MarkStopped {
                interrupted_start: false
            }
        );
        // Steady states are left alone.
        assert_eq!(
            act(VmState::Running, Some(here), Some(Running)),
            ReconcileAction::None
        );
        assert_eq!(
            act(VmState::Running, Some(here), Some(Paused)),
            ReconcileAction::None
        );
        assert_eq!(act(VmState::Stopped, None, None), ReconcileAction::None);
        // A stopped VM found running here is adopted; a copy of a VM active
        // elsewhere is destroyed.
        assert_eq!(
            act(VmState::Stopped, None, Some(Running)),
            ReconcileAction::Adopt
        );
        assert_eq!(
            act(VmState::Running, Some(other), Some(Running)),
            ReconcileAction::DestroyStaleCopy
        );
        // Another node's VM with no domain here is not this pass's business.
        assert_eq!(
            act(VmState::Running, Some(other), None),
            ReconcileAction::None
        );
    }
}
