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
//! - A VM of a lab-network course starts on its student's network: on the
//!   node where the student's other VMs of the course run, or anywhere when
//!   every node has the VXLAN overlay; on each node the network goes when
//!   the student's last VM there stops ([`crate::labnets`]).
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

pub mod gate;
pub mod layers;
mod lifecycle;
pub mod lock;
mod migrate;
mod model;
pub mod offline;
mod power;
pub mod power_log;
mod provision;
mod reconcile;
pub use reconcile::{RECONCILE_PARALLEL_NODES, down_rows_sql, node_rows_sql};
mod rule;
pub mod snapshots;
pub mod starts;

pub(crate) use model::graphics_from_db;
pub(crate) use model::load;
use model::{COLUMNS, from_row};
pub use model::{Vm, VmError, VmSpec, VmState, audit_target, labels, users_affected};
pub use power::Power;
pub use provision::{NewBuildVm, Provision, STAGING_SUFFIX, SweepReport, sweep_layers_at_start};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use crate::auth::Role;
use crate::db::{self, Pool};
use crate::labnets::LabNets;
use crate::libvirt::{self};
use crate::nodes::Nodes;
use crate::placement::{Policy, Reservations};
use crate::storage::Storage;
use crate::stores::Stores;
use crate::users::User;
use crate::vms::layers::{LayerStorage, Layers};

/// SQL selecting the ids of VMs named in open tickets: staff reach those
/// (the desk's rule, issue 13). It is the VM's access rule, so it lives here
/// and reads the desk's table, which keeps `vms` below `desk`.
const VMS_IN_OPEN_TICKETS: &str =
    "SELECT vm_id FROM tickets WHERE vm_id IS NOT NULL AND state NOT IN ('resolved', 'closed')";

/// Whether an open ticket names the VM.
async fn in_open_ticket(pool: &Pool, vm_id: Uuid) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM ({VMS_IN_OPEN_TICKETS}) AS open_ticket_vms WHERE vm_id = $1"
    ))
    .bind(vm_id.to_string())
    .fetch_one(pool)
    .await?;
    Ok(n > 0)
}

/// The VMs of a course, whoever owns them (no access check: the caller's).
pub async fn load_of_course(pool: &Pool, course_id: Uuid) -> Result<Vec<Vm>, VmError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM vms v WHERE v.course_id = $1 ORDER BY v.created_at, v.name"
    ))
    .bind(course_id.to_string())
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// 409 `course_archived` when the VM's course is archived (the end of a
/// term, [`crate::term`]): `what` says what is refused. The archive is the
/// course's column; the term module sets it, every start and layer change
/// reads it here.
pub(crate) async fn require_open_course(pool: &Pool, vm: &Vm, what: &str) -> Result<(), VmError> {
    let Some(course) = vm.course_id else {
        return Ok(());
    };
    let archived: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT code, archived_at FROM courses WHERE id = $1 AND archived_at IS NOT NULL",
    )
    .bind(course.to_string())
    .fetch_optional(pool)
    .await?;
    match archived {
        Some((code, at)) => Err(VmError::CourseArchived(format!(
            "the course {code} ended and was archived ({}): {what}; you can still download your work",
            at.unwrap_or_default()
        ))),
        None => Ok(()),
    }
}

/// What a state change does to a VM's `last_error`.
#[derive(Debug)]
enum LastError {
    Keep,
    Set(String),
    Clear,
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
    locks: Arc<lock::VmLocks>,
    shutdown_timeout: Duration,
    policy: Policy,
    /// Memory placement keeps free on every node for the host itself.
    host_reserve_mib: u64,
    domain_prefix: String,
    disk_cache: libvirt::DiskCache,
    events: tokio::sync::broadcast::Sender<VmEvent>,
    /// VMs whose graceful shutdown is waiting for the guest (see
    /// [`rule::Stop::Pending`]), with that shutdown's deadline
    /// as recorded (a later shutdown of the same VM replaces it).
    stops_in_flight: Mutex<HashMap<Uuid, String>>,
    labnets: LabNets,
    layers: Layers,
    /// The quotas every start passes ([`gate`]); set once at wiring.
    gate: std::sync::OnceLock<Arc<dyn gate::StartGate>>,
    /// This installation's id, written into every domain's metadata and
    /// required on any domain pvce destroys (src/installation).
    installation: String,
    /// Running domains an older pvce created under the old name
    /// (`pvce-<vm id>`), adopted until they stop (see [`Self::domain_name`]).
    legacy_names: Mutex<HashMap<Uuid, String>>,
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
            locks: Arc::default(),
            shutdown_timeout,
            policy: Policy::Spread,
            host_reserve_mib: crate::placement::DEFAULT_HOST_RESERVE_MIB,
            labnets,
            domain_prefix,
            disk_cache: libvirt::DiskCache::default(),
            events: tokio::sync::broadcast::channel(1024).0,
            stops_in_flight: Mutex::default(),
            gate: std::sync::OnceLock::new(),
            installation: String::new(),
            legacy_names: Mutex::default(),
        }
    }

    /// Shares the VMs' operation locks with the other servers of a
    /// PostgreSQL database through `leases` (on SQLite, one server: the
    /// process's locks are the cluster's).
    #[must_use]
    pub fn with_leases(mut self, leases: Arc<crate::lease::Leases>) -> Self {
        if crate::db::backend(&self.pool) == crate::db::Backend::Postgres {
            self.locks = Arc::new(lock::VmLocks::clustered(leases));
        }
        self
    }

    /// Sets the start gate (the quotas); only the first call counts.
    pub fn set_gate(&self, gate: Arc<dyn gate::StartGate>) {
        let _ = self.gate.set(gate);
    }

    /// The installation whose domains and lab networks these are.
    #[must_use]
    pub fn with_installation(mut self, mark: String) -> Self {
        self.labnets.set_installation(mark.clone());
        self.installation = mark;
        self
    }

    /// Upgrade path (src/installation): adopts the template store and layer
    /// pools an older pvce named without the installation id. At start-up.
    pub async fn adopt_legacy_pools(&self) -> usize {
        self.stores.adopt_legacy().await + self.layers.adopt_legacy().await
    }

    /// The installation mark of this manager's domains.
    pub fn installation(&self) -> &str {
        &self.installation
    }

    /// Host cache mode of VM disks (`none` for live migration on shared storage).
    #[must_use]
    pub fn with_disk_cache(mut self, cache: libvirt::DiskCache) -> Self {
        self.disk_cache = cache;
        self
    }

    /// The VNIs students' lab networks that span nodes get (`--lab-vni-range`).
    #[must_use]
    pub fn with_lab_vni_range(mut self, range: crate::labnets::VniRange) -> Self {
        self.labnets.set_vni_range(range);
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

    /// Where new personal layers are made (server or node-local).
    pub fn layer_mode(&self) -> LayerStorage {
        self.layers.mode()
    }

    /// Deletes the (stopped) VMs of a course, or of one owner in it, with
    /// their layers; 409 `vm_running` while one of them is active.
    pub async fn delete_for(&self, course_id: Uuid, owner: Option<Uuid>) -> Result<(), VmError> {
        provision::delete_for(&self.pool, &self.storage, &self.layers, course_id, owner).await
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
    /// The running VM, its node and that node's connection; `vm_not_running`
    /// otherwise.
    pub async fn running_on_node(
        &self,
        id: Uuid,
    ) -> Result<(Vm, crate::nodes::Node, libvirt::Node), VmError> {
        let vm = self.sync_with_node(load(&self.pool, id).await?).await?;
        let (VmState::Running, Some(node_id)) = (vm.state, vm.node_id) else {
            return Err(VmError::NotRunning("the VM is not running".into()));
        };
        let node = self.nodes.get(node_id).await?;
        let conn = self.nodes.conn(node_id).await?;
        Ok((vm, node, conn))
    }

    /// The libvirt domain name of a VM: `<prefix><vm id>`, or the older
    /// name its running domain was adopted under after an upgrade.
    pub fn domain_name(&self, vm_id: Uuid) -> String {
        if let Some(old) = self.legacy_names_mut().get(&vm_id) {
            return old.clone();
        }
        format!("{}{vm_id}", self.domain_prefix)
    }

    /// The domain name prefix of this installation's new domains.
    pub fn domain_prefix(&self) -> &str {
        &self.domain_prefix
    }

    fn legacy_names_mut(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, String>> {
        self.legacy_names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The VM's lifecycle lock: hold it for any operation that must not race a
    /// start/stop (e.g. touching the personal layer of a stopped VM) — in
    /// this process and, on PostgreSQL, on every server ([`lock`]).
    pub(crate) fn lock_for(&self, id: Uuid) -> lock::VmLock {
        self.locks.of(id)
    }

    /// Takes the VM's lock (held while the guard lives), then reads the VM
    /// as its node has it now.
    pub(crate) async fn locked(&self, id: Uuid) -> Result<(lock::VmGuard, Vm), VmError> {
        let guard = self.lock_for(id).lock().await;
        let vm = self.sync_with_node(load(&self.pool, id).await?).await?;
        Ok((guard, vm))
    }

    /// The VM's lock if nobody holds it: background passes skip a VM an
    /// operation is busy with and look again next pass.
    pub(crate) async fn try_locked(&self, id: Uuid) -> Option<lock::VmGuard> {
        self.lock_for(id).try_lock().await.ok()
    }

    fn stops_in_flight_mut(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, String>> {
        self.stops_in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// True while a graceful shutdown of the VM waits for its guest.
    fn stop_in_flight(&self, id: Uuid) -> bool {
        self.stops_in_flight_mut().contains_key(&id)
    }

    /// The shutdown with `deadline` no longer waits (a later one's entry
    /// stays).
    fn forget_stop(&self, id: Uuid, deadline: &str) {
        let mut stops = self.stops_in_flight_mut();
        if stops.get(&id).is_some_and(|d| d == deadline) {
            stops.remove(&id);
        }
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
                VMS_IN_OPEN_TICKETS
            )),
        }
        if course_id.is_some() {
            sql.push_str(" AND v.course_id = ?");
        }
        sql.push_str(" ORDER BY v.created_at, v.name");
        let sql = db::numbered(&sql);
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

    /// The VMs of a course, whoever owns them (for class time: a session's
    /// pre-starts and its stop at the end).
    pub async fn of_course(&self, course_id: Uuid) -> Result<Vec<Vm>, VmError> {
        load_of_course(&self.pool, course_id).await
    }

    /// Every VM whose start is under way or whose guest may still be
    /// booting, with its node: `starting`, or `running` since `since` (a
    /// start's success stamps `last_started_at`). Whichever server made the
    /// start: the database is the one place they all write. The class-time
    /// admission counts these per node (src/classtime).
    pub async fn booting_since(
        &self,
        since: time::OffsetDateTime,
    ) -> Result<Vec<(Uuid, Uuid)>, VmError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, node_id FROM vms WHERE node_id IS NOT NULL AND node_down = 0
             AND (state = 'starting' OR (state = 'running' AND last_started_at >= $1))",
        )
        .bind(db::format_time(since))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|(vm, node)| Some((vm.parse().ok()?, node.parse().ok()?)))
            .collect())
    }

    /// Starts a VM for the system (no user asked): on `node` where it may go
    /// anywhere (see [`Self::start_preferring`]).
    pub async fn start_on(&self, id: Uuid, node: Uuid) -> Result<Vm, VmError> {
        let vm = load(&self.pool, id).await?;
        let (owner, course) = labels(&self.pool, &vm).await?;
        self.start_preferring(&vm, &owner, &course, Some(node), gate::StartBy::Timetable)
            .await
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
                    sqlx::query_scalar("SELECT teacher_id FROM courses WHERE id = $1")
                        .bind(vm.course_id.map(|c| c.to_string()))
                        .fetch_optional(&self.pool)
                        .await?;
                teacher.as_deref() == Some(user.id.to_string().as_str())
            }
            Role::Staff => in_open_ticket(&self.pool, id).await?,
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

    /// [`Self::get_for_layer`] for an operation that changes the layer
    /// (reset, snapshots, import, restore): refused with 409
    /// `course_archived` once the VM's course is archived.
    pub async fn get_for_layer_write(&self, user: &User, id: Uuid) -> Result<Vm, VmError> {
        let vm = self.get_for_layer(user, id).await?;
        require_open_course(&self.pool, &vm, "its disk can no longer be changed").await?;
        Ok(vm)
    }

    /// Writes a VM's state (keeping its last error, or setting it to
    /// `error`) and notifies subscribers: see [`Self::write_state`].
    async fn set_state(
        &self,
        id: Uuid,
        state: VmState,
        node_id: Option<Uuid>,
        error: Option<String>,
    ) -> Result<(), VmError> {
        let last_error = match error {
            Some(e) => LastError::Set(e),
            None => LastError::Keep,
        };
        self.write_state(id, state, node_id, last_error, false, None)
            .await
    }

    /// The one writer of a VM's state: every change of `state`/`node_id`
    /// goes through here, so subscribers (console sessions, UI streams) hear
    /// of each one. `started`: this is a start's success (stamps
    /// `last_started_at`). `stop_deadline`: when a shutdown the server asked
    /// for forces the VM off; kept while the VM stays `stopping`, cleared by
    /// any other state.
    async fn write_state(
        &self,
        id: Uuid,
        state: VmState,
        node_id: Option<Uuid>,
        last_error: LastError,
        started: bool,
        stop_deadline: Option<String>,
    ) -> Result<(), VmError> {
        // `node_down` keeps the last known state underneath (see migration 0005).
        let (column_state, node_down) = match state {
            VmState::NodeDown => (None, 1),
            s => (Some(s.as_str()), 0),
        };
        let (keep_error, error) = match last_error {
            LastError::Keep => (true, None),
            LastError::Set(e) => (false, Some(e)),
            LastError::Clear => (false, None),
        };
        sqlx::query(
            "UPDATE vms SET state = COALESCE($1, state), node_down = $2, node_id = $3,
             last_error = CASE WHEN $4 THEN last_error ELSE $5 END,
             last_started_at = COALESCE($6, last_started_at),
             stop_deadline = CASE WHEN $7 THEN COALESCE($8, stop_deadline) ELSE NULL END
             WHERE id = $9",
        )
        .bind(column_state)
        .bind(node_down)
        .bind(node_id.map(|n| n.to_string()))
        .bind(keep_error)
        .bind(error)
        .bind(started.then(crate::db::now))
        .bind(state == VmState::Stopping)
        .bind(stop_deadline)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        // Usage metering reads the power history (src/usage/).
        power_log::record(&self.pool, id, state, time::OffsetDateTime::now_utc()).await?;
        self.notify(id, state, node_id);
        Ok(())
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }
}
