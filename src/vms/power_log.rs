//! A VM's power history (`vm_power_log`, migration 0031): one row per change
//! between off and on, written by the one writer of VM states
//! ([`super::VmManager`]'s `write_state`), read by usage metering
//! ([`crate::usage`]).
//!
//! "On" is starting, running or stopping: the VM holds a node's resources.
//! `node_down` changes nothing (the VM may still run on the silent node; its
//! last known state stands until the node is fenced or answers). A VM with
//! no row yet is off, so a write that would repeat the last row's value is
//! skipped in the same statement: the log holds alternating values only.

use std::collections::HashMap;

use sqlx::Row;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::VmState;
use crate::db::{self, Pool};

/// Whether a state counts as on; `None` for a state that says nothing
/// (the node does not answer).
pub fn is_on(state: VmState) -> Option<bool> {
    match state {
        VmState::Starting | VmState::Running | VmState::Stopping => Some(true),
        VmState::Stopped | VmState::Error => Some(false),
        VmState::NodeDown => None,
    }
}

/// Records that the VM is in `state` at `at`, if that changes on/off.
pub(super) async fn record(
    pool: &Pool,
    vm_id: Uuid,
    state: VmState,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let Some(on) = is_on(state) else {
        return Ok(());
    };
    let id = vm_id.to_string();
    sqlx::query(
        "INSERT INTO vm_power_log (vm_id, at, running) SELECT $1, $2, $3
         WHERE COALESCE((SELECT running FROM vm_power_log WHERE vm_id = $4
                         ORDER BY id DESC LIMIT 1), 0) <> $5",
    )
    .bind(&id)
    .bind(db::format_time(at))
    .bind(i64::from(on))
    .bind(&id)
    .bind(i64::from(on))
    .execute(pool)
    .await?;
    Ok(())
}

/// The power changes `(at, on)` of every VM that tell its state in
/// `[from, to)`: each VM's last change before `from` and those inside,
/// oldest first (RFC 3339 times of one format compare as text), so a range
/// reads its own rows however long the history grows.
pub async fn between(
    pool: &Pool,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<HashMap<Uuid, Vec<(OffsetDateTime, bool)>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT vm_id, at, running FROM vm_power_log
         WHERE at < $2 AND (at >= $1 OR id IN (
             SELECT MAX(id) FROM vm_power_log WHERE at < $1 GROUP BY vm_id))
         ORDER BY id",
    )
    .bind(db::format_time(from))
    .bind(db::format_time(to))
    .fetch_all(pool)
    .await?;
    changes_by_vm(rows)
}

/// The power changes `(at, on)` of every VM of a course, oldest first.
pub async fn of_course(
    pool: &Pool,
    course_id: Uuid,
) -> Result<HashMap<Uuid, Vec<(OffsetDateTime, bool)>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT l.vm_id, l.at, l.running FROM vm_power_log l JOIN vms v ON v.id = l.vm_id
         WHERE v.course_id = $1 ORDER BY l.id",
    )
    .bind(course_id.to_string())
    .fetch_all(pool)
    .await?;
    changes_by_vm(rows)
}

fn changes_by_vm(
    rows: Vec<crate::db::Row>,
) -> Result<HashMap<Uuid, Vec<(OffsetDateTime, bool)>>, sqlx::Error> {
    let mut out: HashMap<Uuid, Vec<(OffsetDateTime, bool)>> = HashMap::new();
    for row in rows {
        let at: String = row.try_get("at")?;
        let at = OffsetDateTime::parse(&at, &Rfc3339)
            .map_err(|e| sqlx::Error::Decode(format!("vm_power_log.at: {e}").into()))?;
        out.entry(db::uuid(&row, "vm_id")?)
            .or_default()
            .push((at, row.try_get::<i64, _>("running")? != 0));
    }
    Ok(out)
}
