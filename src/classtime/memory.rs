//! What the class-time loop ([`super::class`]) remembers across a restart:
//! the rows of migration 0039 it alone writes — VMs pre-started per
//! occurrence, courses stopped at an occurrence's end, and 15-minute
//! extensions — read back whole when the loop is created.
//!
//! Invariants: instants are stored as Unix milliseconds and session
//! instants are whole seconds, so what is read back is equal to what the
//! loop compares it with; every write is idempotent (a marker written twice
//! is one row), so a write repeated after a failed tick is harmless.

use std::collections::{HashMap, HashSet};

use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::timetable::Occurrence;
use crate::db::{self, Pool, from_unix_ms, unix_ms};

/// (VM, occurrence start) → occurrence end.
pub type Prestarted = HashMap<(Uuid, OffsetDateTime), OffsetDateTime>;
/// (course, occurrence end).
pub type Stopped = HashSet<(Uuid, OffsetDateTime)>;
/// VM → (its session's end, until when it may run).
pub type Extended = HashMap<Uuid, (OffsetDateTime, OffsetDateTime)>;

/// Everything stored, as the loop keeps it in memory.
#[derive(Debug, Default)]
pub struct Remembered {
    pub prestarted: Prestarted,
    pub stopped: Stopped,
    pub extended: Extended,
}

pub async fn load(pool: &Pool) -> Result<Remembered, sqlx::Error> {
    let mut out = Remembered::default();
    for r in sqlx::query("SELECT vm_id, session_start_ms, session_end_ms FROM class_prestarts_done")
        .fetch_all(pool)
        .await?
    {
        out.prestarted.insert(
            (
                db::uuid(&r, "vm_id")?,
                from_unix_ms(r.try_get("session_start_ms")?),
            ),
            from_unix_ms(r.try_get("session_end_ms")?),
        );
    }
    for r in sqlx::query("SELECT course_id, session_end_ms FROM class_stops_done")
        .fetch_all(pool)
        .await?
    {
        out.stopped.insert((
            db::uuid(&r, "course_id")?,
            from_unix_ms(r.try_get("session_end_ms")?),
        ));
    }
    for r in sqlx::query("SELECT vm_id, session_end_ms, until_ms FROM class_extensions")
        .fetch_all(pool)
        .await?
    {
        out.extended.insert(
            db::uuid(&r, "vm_id")?,
            (
                from_unix_ms(r.try_get("session_end_ms")?),
                from_unix_ms(r.try_get("until_ms")?),
            ),
        );
    }
    Ok(out)
}

/// Marks VMs as pre-started in their occurrence (one transaction).
pub async fn mark_prestarted(pool: &Pool, vms: &[(Uuid, Occurrence)]) -> Result<(), sqlx::Error> {
    if vms.is_empty() {
        return Ok(());
    }
    let mut tx = db::begin(pool).await?;
    for (vm, o) in vms {
        sqlx::query(
            "INSERT INTO class_prestarts_done (vm_id, session_start_ms, session_end_ms)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(vm.to_string())
        .bind(unix_ms(o.starts_at))
        .bind(unix_ms(o.ends_at))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Marks a course's VMs as stopped at the end of an occurrence.
pub async fn mark_stopped(
    pool: &Pool,
    course: Uuid,
    ends_at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO class_stops_done (course_id, session_end_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(course.to_string())
    .bind(unix_ms(ends_at))
    .execute(pool)
    .await?;
    Ok(())
}

/// Stores a VM's extension (replacing an older one of another session).
pub async fn put_extension(
    pool: &Pool,
    vm: Uuid,
    ends_at: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO class_extensions (vm_id, session_end_ms, until_ms) VALUES ($1, $2, $3)
         ON CONFLICT (vm_id) DO UPDATE SET session_end_ms = excluded.session_end_ms,
         until_ms = excluded.until_ms",
    )
    .bind(vm.to_string())
    .bind(unix_ms(ends_at))
    .bind(unix_ms(until))
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets extensions that ran out.
pub async fn drop_extensions(pool: &Pool, vms: &[Uuid]) -> Result<(), sqlx::Error> {
    if vms.is_empty() {
        return Ok(());
    }
    let mut tx = db::begin(pool).await?;
    for vm in vms {
        sqlx::query("DELETE FROM class_extensions WHERE vm_id = $1")
            .bind(vm.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Forgets the markers of occurrences that ended before `before`.
pub async fn prune(pool: &Pool, before: OffsetDateTime) -> Result<(), sqlx::Error> {
    let mut tx = db::begin(pool).await?;
    sqlx::query("DELETE FROM class_prestarts_done WHERE session_end_ms < $1")
        .bind(unix_ms(before))
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM class_stops_done WHERE session_end_ms < $1")
        .bind(unix_ms(before))
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
