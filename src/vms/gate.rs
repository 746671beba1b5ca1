//! The start gate: what a start of a stopped VM must pass before it is
//! placed — the quotas ([`crate::usage::quota`] implements it; this module
//! only names the contract, so `vms` does not depend on `usage`).
//!
//! Invariants: every start goes through [`super::VmManager::start_preferring`],
//! which asks the gate under the VM's lock before anything else happens, so
//! no path starts a VM past it; a refusal changes nothing (no state, no
//! start attempt recorded: a quota is not a failure of the service). The
//! gate hands out a [`StartPermit`] that counts the VM as starting until the
//! start is over, so two concurrent starts cannot both take the last slot.

use std::fmt;

use super::{Vm, VmError};

/// Who asked for a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartBy {
    /// A user (the owner, the course's teacher, an admin).
    User,
    /// The timetable's pre-start of a session ([`crate::classtime`]): time
    /// in a session does not count against the hour budget.
    Timetable,
}

/// The quotas a start can exceed; each is its own API error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// The student's hours outside sessions in the course are used up.
    Hours,
    /// The user's VMs running at once.
    UserVms,
    /// The vCPUs of the user's running VMs together.
    UserVcpus,
    /// The memory of the user's running VMs together.
    UserMemory,
    /// The course's VMs running at once.
    CourseVms,
}

impl Quota {
    pub fn name(self) -> &'static str {
        match self {
            Quota::Hours => "hours_outside_sessions",
            Quota::UserVms => "max_running_vms",
            Quota::UserVcpus => "max_vcpus",
            Quota::UserMemory => "max_memory_mib",
            Quota::CourseVms => "max_concurrent_vms",
        }
    }
}

/// Held while a start is under way: the VM counts against the quotas.
/// What it holds is only ever dropped (that ends the count).
pub struct StartPermit {
    _held: Option<Box<dyn Send + Sync>>,
}

impl StartPermit {
    /// A permit that holds nothing (no gate, or nothing to count).
    pub fn none() -> Self {
        Self { _held: None }
    }
    /// A permit that holds `guard` until the start is over.
    pub fn holding(guard: impl Send + Sync + 'static) -> Self {
        Self {
            _held: Some(Box::new(guard)),
        }
    }
}

impl fmt::Debug for StartPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StartPermit")
    }
}

/// Decides whether a stopped VM may start now.
#[async_trait::async_trait]
pub trait StartGate: Send + Sync + fmt::Debug {
    /// A permit, or [`VmError::Quota`] naming the quota exceeded.
    async fn admit(&self, vm: &Vm, by: StartBy) -> Result<StartPermit, VmError>;
}

/// A VM that counts against quotas: active (starting, running, stopping) or
/// on a node that does not answer (it may still run there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveVm {
    pub id: uuid::Uuid,
    pub owner_id: uuid::Uuid,
    pub course_id: Option<uuid::Uuid>,
    pub vcpus: u32,
    pub memory_mib: u32,
}

/// The active VMs of `owner` or of `course` (for the quotas).
pub async fn active_for(
    pool: &crate::db::Pool,
    owner: uuid::Uuid,
    course: Option<uuid::Uuid>,
) -> Result<Vec<ActiveVm>, VmError> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT id, owner_id, course_id, vcpus, memory_mib FROM vms
         WHERE (owner_id = $1 OR course_id = $2)
           AND (state IN ('starting', 'running', 'stopping') OR node_down = 1)",
    )
    .bind(owner.to_string())
    .bind(course.map(|c| c.to_string()))
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(ActiveVm {
            id: crate::db::uuid(&row, "id")?,
            owner_id: crate::db::uuid(&row, "owner_id")?,
            course_id: crate::db::opt_uuid(&row, "course_id")?,
            vcpus: u32::try_from(row.try_get::<i64, _>("vcpus")?).unwrap_or(0),
            memory_mib: u32::try_from(row.try_get::<i64, _>("memory_mib")?).unwrap_or(0),
        });
    }
    Ok(out)
}
