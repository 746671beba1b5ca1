//! The VM model: a VM row, its states, its errors, and loading it.
//!
//! `node_down` is not a stored state but a flag beside the last known one
//! (migration 0005): [`VmState::NodeDown`] is what the flag shows as.

use std::path::PathBuf;

use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use crate::db::{self, Pool};
use crate::images::ImageError;
use crate::labnets::LabNetError;
use crate::libvirt::{GraphicsKind, LibvirtError};
use crate::nodes::NodeError;
use crate::placement::PlacementError;
use crate::stores::StoreError;
use crate::vms::layers::{LayerError, LayerLocation, LayerStorage};

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
    /// Every state, in the order the UI and `/metrics` list them.
    pub const ALL: [VmState; 6] = [
        VmState::Stopped,
        VmState::Starting,
        VmState::Running,
        VmState::Stopping,
        VmState::Error,
        VmState::NodeDown,
    ];

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
    pub(super) fn parse(s: &str) -> Self {
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
    pub(super) fn is_active(self) -> bool {
        matches!(
            self,
            VmState::Starting | VmState::Running | VmState::Stopping | VmState::NodeDown
        )
    }
}

#[derive(Debug, Clone, Serialize)]
/// One VM of a course's VM set: every enrolled student gets a VM like it.
pub struct VmSpec {
    pub id: Uuid,
    pub name: String,
    pub template_id: Uuid,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// Console protocol of the spec's VMs: `vnc` (default) or `spice`.
    pub graphics: GraphicsKind,
}

/// The `vm_specs.graphics` column (unknown values are VNC, the default).
pub(crate) fn graphics_from_db(s: &str) -> GraphicsKind {
    if s == "spice" {
        GraphicsKind::Spice
    } else {
        GraphicsKind::Vnc
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
    /// The node the VM runs on, by name (students cannot read `/api/nodes`).
    pub node_name: Option<String>,
    /// The VM's template, by name (students cannot read `/api/templates`).
    pub template_name: Option<String>,
    /// While `stopping` after a shutdown the server asked for: when the VM
    /// will be forced off if the guest has not stopped by then.
    pub stop_deadline: Option<String>,
    /// Where the personal layer lives ([`crate::vms::layers`]).
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
    // What the VM's state (or its node's) does not allow now: each an API
    // code (mapped in src/http/error.rs), carrying the message for the user.
    /// `vm_running`: the operation needs a stopped VM.
    #[error("{0}")]
    Running(String),
    /// `vm_stopping`: a shutdown is under way.
    #[error("{0}")]
    Stopping(String),
    /// `vm_not_running`: the operation needs a running VM.
    #[error("{0}")]
    NotRunning(String),
    /// `node_down`: the VM's (or the target) node does not answer.
    #[error("{0}")]
    NodeDown(String),
    /// `node_up`: a fence was asked for a node that answers.
    #[error("{0}")]
    NodeUp(String),
    /// `node_maintenance`: the target node takes no new VMs.
    #[error("{0}")]
    NodeMaintenance(String),
    /// `lab_network`: the student's lab network pins the VM.
    #[error("{0}")]
    LabNetwork(String),
    /// `layer_node_local`: a node-local layer cannot live-migrate.
    #[error("{0}")]
    LayerNodeLocal(String),
    /// `layer_busy`: the disk is still open.
    #[error("{0}")]
    LayerBusy(String),
    /// `insufficient_memory`: the target node lacks room.
    #[error("{0}")]
    InsufficientMemory(String),
    /// `enrolment_in_progress`: a concurrent enrolment of the same students.
    #[error("{0}")]
    EnrolmentInProgress(String),
    /// `course_archived`: the course ended (see [`crate::term`]): its VMs
    /// no longer start and their layers are read-only.
    #[error("{0}")]
    CourseArchived(String),
    // Well-formed requests that cannot be acted on (422).
    /// `same_node`: a migration to where the VM already runs.
    #[error("{0}")]
    SameNode(String),
    /// `unknown_node`: no such target node.
    #[error("{0}")]
    UnknownNode(String),
    /// `bad_console_address`: the target's console address is not an IP.
    #[error("{0}")]
    BadConsoleAddress(String),
    /// A quota the start would exceed (each quota its own API code).
    #[error("{1}")]
    Quota(super::gate::Quota, String),
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
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl VmError {
    /// The kind of a start failure as the SLO page groups them (coarser than
    /// the API's error codes, which the HTTP layer owns).
    pub fn failure_kind(&self) -> &'static str {
        match self {
            VmError::Stopping(_) => "vm_stopping",
            VmError::NodeDown(_) | VmError::Node(_) => "node_unavailable",
            VmError::Libvirt(l) if l.is_unavailable() => "node_unavailable",
            VmError::Libvirt(_) => "libvirt",
            VmError::Placement(_)
            | VmError::InsufficientMemory(_)
            | VmError::NodeMaintenance(_) => "no_capacity",
            VmError::LabNetwork(_) | VmError::LabNet(_) => "lab_network",
            VmError::Image(_)
            | VmError::Store(_)
            | VmError::Layer(_)
            | VmError::Template(_)
            | VmError::Io(_) => "storage",
            VmError::Db(_) => "internal",
            VmError::Quota(..) => "quota",
            _ => "other",
        }
    }
}

/// A VM row's columns. The names of its node and template are read by
/// subqueries whose unqualified `node_id`/`template_id` are the VM's (the
/// nodes and templates tables have no such columns), so this works both in
/// `FROM vms` and in `FROM vms v`.
pub(super) const COLUMNS: &str = "id, name, course_id, build_template_id, owner_id, template_id, node_id, state, node_down, vcpus, memory_mib, overlay_path, last_error, last_started_at, created_at, layer_storage, layer_node_id, layer_volume, layer_bytes, stop_deadline,
    (SELECT n.name FROM nodes n WHERE n.id = node_id) AS node_name,
    (SELECT t.name FROM templates t WHERE t.id = template_id) AS template_name";

pub(super) fn from_row(row: &crate::db::Row) -> Result<Vm, sqlx::Error> {
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
        node_name: row.try_get("node_name")?,
        template_name: row.try_get("template_name")?,
        // Only meaningful while stopping (write_state clears it otherwise).
        stop_deadline: row.try_get("stop_deadline")?,
        layer_storage,
        layer_node_id: db::opt_uuid(row, "layer_node_id")?,
        layer_volume: row.try_get("layer_volume")?,
        overlay_path,
    })
}

/// Loads a VM row without any access check.
pub(crate) async fn load(pool: &Pool, id: Uuid) -> Result<Vm, VmError> {
    let sql = format!("SELECT {COLUMNS} FROM vms WHERE id = $1");
    db::fetch_row(pool, &sql, &[&id.to_string()], from_row)
        .await?
        .ok_or(VmError::NotFound)
}

/// The console protocol a VM starts with: its course spec's (build VMs: VNC).
pub(super) async fn graphics_of(pool: &Pool, vm_id: Uuid) -> Result<GraphicsKind, VmError> {
    let g: Option<String> = sqlx::query_scalar(
        "SELECT s.graphics FROM vms v JOIN vm_specs s ON s.id = v.spec_id WHERE v.id = $1",
    )
    .bind(vm_id.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(g.map_or(GraphicsKind::Vnc, |g| graphics_from_db(&g)))
}

/// Whether the VM's course asks for a guest-agent clipboard channel
/// (`courses.clipboard_agent`, read here: the courses module depends on
/// this one). A VM without a course (a template build) has none.
pub(super) async fn clipboard_agent_of(pool: &Pool, vm_id: Uuid) -> Result<bool, VmError> {
    let on: Option<i64> = sqlx::query_scalar(
        "SELECT c.clipboard_agent FROM vms v JOIN courses c ON c.id = v.course_id WHERE v.id = $1",
    )
    .bind(vm_id.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(on.is_some_and(|v| v != 0))
}

/// How many users a problem with `vm` affects, at least its owner: the
/// owners of the VMs active on its node, or, for a VM that is not placed,
/// the owners of its template's VMs that failed (the desk's impact).
pub async fn users_affected(pool: &Pool, vm: &Vm) -> Result<u64, VmError> {
    let n: i64 = match vm.node_id {
        Some(node) => {
            sqlx::query_scalar(
                "SELECT COUNT(DISTINCT owner_id) FROM vms WHERE node_id = $1
             AND state IN ('starting', 'running', 'stopping')",
            )
            .bind(node.to_string())
            .fetch_one(pool)
            .await?
        }
        None => sqlx::query_scalar(
            "SELECT COUNT(DISTINCT owner_id) FROM vms WHERE template_id = $1 AND state = 'error'",
        )
        .bind(vm.template_id.to_string())
        .fetch_one(pool)
        .await?,
    };
    Ok(u64::try_from(n).unwrap_or(0).max(1))
}

/// The owner's username and the course code (or "template build"), for the domain title.
pub async fn labels(pool: &Pool, vm: &Vm) -> Result<(String, String), VmError> {
    let owner: String = sqlx::query_scalar("SELECT username FROM users WHERE id = $1")
        .bind(vm.owner_id.to_string())
        .fetch_one(pool)
        .await?;
    let context: Option<String> = sqlx::query_scalar("SELECT code FROM courses WHERE id = $1")
        .bind(vm.course_id.map(|c| c.to_string()))
        .fetch_optional(pool)
        .await?;
    Ok((owner, context.unwrap_or_else(|| "template build".into())))
}

/// How the audit log names a VM: `owner · course · name`, and the owner
/// and course labels (the owner's id when they cannot be read: an entry is
/// never lost for want of a name).
pub async fn audit_target(pool: &Pool, vm: &Vm) -> (crate::audit::Target, String, String) {
    let (owner, course) = labels(pool, vm)
        .await
        .unwrap_or_else(|_| (vm.owner_id.to_string(), String::new()));
    (vm_target(vm, &owner, &course), owner, course)
}

/// The audit target of `vm` with its labels already at hand.
pub fn vm_target(vm: &Vm, owner: &str, course: &str) -> crate::audit::Target {
    let label = format!("{owner} · {course} · {}", vm.name);
    crate::audit::Target::new(crate::audit::TargetKind::Vm, vm.id, &label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_spelled_one_way() {
        for s in VmState::ALL {
            assert_eq!(
                serde_json::to_value(s).expect("json"),
                serde_json::Value::from(s.as_str())
            );
            assert_eq!(VmState::parse(s.as_str()), s);
        }
    }
}
