//! Recording the facts the indicators are computed from.
//!
//! - Start attempts are recorded by the VM module itself
//!   ([`crate::vms::starts`]); the boot's first console frame is added to
//!   its row from here.
//! - Console sessions: the proxy sends [`ConsoleFact`]s (token issued, relay
//!   took it, handshake done, first frame, ended with a close code) through
//!   [`ConsoleRecorder`] to one writer task, so they are written in order and
//!   the relay never waits on the database.
//! - Class pre-starts: the class-time loop records when it queued a
//!   session's VMs and when each start returned ([`class_prestart`],
//!   [`class_vm_started`]; see [`super::provisioning`]).
//!
//! A fact that cannot be written is logged and dropped: recording never
//! fails (or slows) what the user asked for.

use tokio::sync::mpsc;
use uuid::Uuid;

use super::compute::EndedBy;
use crate::db::Pool;
use crate::vms::starts::now_ms;

/// What the console proxy saw happen to a token's session.
#[derive(Debug, Clone, Copy)]
pub enum ConsoleFact {
    Issued {
        id: Uuid,
        vm_id: Uuid,
        user_id: Uuid,
        node_id: Uuid,
    },
    /// The relay took the session (token, Origin and VM checks passed).
    Opened { id: Uuid },
    /// Handshakes done: the user sees the console.
    Established { id: Uuid },
    /// The first bytes from the node after the handshake.
    FirstFrame { id: Uuid, vm_id: Uuid },
    /// The session ended; `code` is the close code pvce sent (`None`: the
    /// browser closed it).
    Ended {
        id: Uuid,
        code: Option<u16>,
        by: EndedBy,
    },
}

/// Hands console facts to the writer task (see the module doc).
#[derive(Debug, Clone)]
pub struct ConsoleRecorder {
    tx: mpsc::UnboundedSender<(ConsoleFact, i64)>,
}

impl ConsoleRecorder {
    /// Starts the writer task (it ends when the last recorder is dropped).
    pub fn spawn(pool: Pool) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(ConsoleFact, i64)>();
        tokio::spawn(async move {
            while let Some((fact, at)) = rx.recv().await {
                if let Err(e) = write(&pool, fact, at).await {
                    tracing::warn!(error = %e, "console session fact not recorded");
                }
            }
        });
        Self { tx }
    }

    /// Records `fact` as of now.
    pub fn note(&self, fact: ConsoleFact) {
        if self.tx.send((fact, now_ms())).is_err() {
            tracing::debug!("console recorder gone; fact dropped");
        }
    }
}

async fn write(pool: &Pool, fact: ConsoleFact, at: i64) -> Result<(), sqlx::Error> {
    match fact {
        ConsoleFact::Issued {
            id,
            vm_id,
            user_id,
            node_id,
        } => {
            sqlx::query(
                "INSERT INTO slo_console_sessions (id, vm_id, user_id, node_id, issued_ms)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id.to_string())
            .bind(vm_id.to_string())
            .bind(user_id.to_string())
            .bind(node_id.to_string())
            .bind(at)
            .execute(pool)
            .await?;
        }
        ConsoleFact::Opened { id } => {
            sqlx::query("UPDATE slo_console_sessions SET opened_ms = $1 WHERE id = $2")
                .bind(at)
                .bind(id.to_string())
                .execute(pool)
                .await?;
        }
        ConsoleFact::Established { id } => {
            sqlx::query("UPDATE slo_console_sessions SET established_ms = $1 WHERE id = $2")
                .bind(at)
                .bind(id.to_string())
                .execute(pool)
                .await?;
        }
        ConsoleFact::FirstFrame { id, vm_id } => {
            sqlx::query(
                "UPDATE slo_console_sessions SET first_frame_ms = $1 WHERE id = $2 AND first_frame_ms IS NULL",
            )
            .bind(at)
            .bind(id.to_string())
            .execute(pool)
            .await?;
            // The boot's first frame: on the VM's latest successful start.
            sqlx::query(
                "UPDATE slo_vm_starts SET first_frame_ms = $1 WHERE first_frame_ms IS NULL AND id =
                 (SELECT id FROM slo_vm_starts WHERE vm_id = $2 AND outcome = 'ok'
                  ORDER BY requested_ms DESC LIMIT 1)",
            )
            .bind(at)
            .bind(vm_id.to_string())
            .execute(pool)
            .await?;
        }
        ConsoleFact::Ended { id, code, by } => {
            sqlx::query(
                "UPDATE slo_console_sessions SET ended_ms = $1, ended_by = $2, close_code = $3
                 WHERE id = $4 AND ended_ms IS NULL",
            )
            .bind(at)
            .bind(by.as_str())
            .bind(code.map(i64::from))
            .bind(id.to_string())
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// The console sessions of a VM opened since `since_ms`, as
/// `(opened_ms, ended_ms)` (`None`: still open), for the idle auto-stop
/// ([`crate::idle`]).
pub async fn console_spans(
    pool: &Pool,
    vm_id: Uuid,
    since_ms: i64,
) -> Result<Vec<(i64, Option<i64>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT opened_ms, ended_ms FROM slo_console_sessions
         WHERE vm_id = $1 AND opened_ms IS NOT NULL AND opened_ms >= $2 ORDER BY opened_ms",
    )
    .bind(vm_id.to_string())
    .bind(since_ms)
    .fetch_all(pool)
    .await
}

/// A class session's pre-start queued `vms` at `at_ms` (the class loop's
/// clock; see [`super::provisioning`]). Repeated for the same occurrence
/// (after a restart), the first pre-start stays and new VMs are added.
pub async fn class_prestart(
    pool: &Pool,
    course_id: Uuid,
    session: (i64, i64),
    at_ms: i64,
    vms: &[Uuid],
) {
    if let Err(e) = write_prestart(pool, course_id, session, at_ms, vms).await {
        tracing::warn!(course = %course_id, error = %e, "class pre-start not recorded");
    }
}

async fn write_prestart(
    pool: &Pool,
    course_id: Uuid,
    (start_ms, end_ms): (i64, i64),
    at_ms: i64,
    vms: &[Uuid],
) -> Result<(), sqlx::Error> {
    let mut tx = crate::db::begin(pool).await?;
    sqlx::query(
        "INSERT INTO slo_class_prestarts (id, course_id, session_start_ms, session_end_ms, prestart_ms)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (course_id, session_start_ms) DO NOTHING",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(course_id.to_string())
    .bind(start_ms)
    .bind(end_ms)
    .bind(at_ms)
    .execute(&mut *tx)
    .await?;
    let (id,): (String,) = sqlx::query_as(
        "SELECT id FROM slo_class_prestarts WHERE course_id = $1 AND session_start_ms = $2",
    )
    .bind(course_id.to_string())
    .bind(start_ms)
    .fetch_one(&mut *tx)
    .await?;
    for vm in vms {
        sqlx::query(
            "INSERT INTO slo_class_prestart_vms (prestart_id, vm_id) VALUES ($1, $2)
             ON CONFLICT (prestart_id, vm_id) DO NOTHING",
        )
        .bind(&id)
        .bind(vm.to_string())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// A pre-started VM's start returned at `at_ms` (the class loop's clock):
/// usable (`ok`) or failed. Goes to the VM's latest pre-start, once.
pub async fn class_vm_started(pool: &Pool, vm_id: Uuid, at_ms: i64, ok: bool) {
    let written = sqlx::query(
        "UPDATE slo_class_prestart_vms SET ready_ms = $1, failed_ms = $2
         WHERE vm_id = $3 AND ready_ms IS NULL AND failed_ms IS NULL AND prestart_id =
         (SELECT p.id FROM slo_class_prestarts p JOIN slo_class_prestart_vms v ON v.prestart_id = p.id
          WHERE v.vm_id = $3 ORDER BY p.prestart_ms DESC LIMIT 1)",
    )
    .bind(ok.then_some(at_ms))
    .bind((!ok).then_some(at_ms))
    .bind(vm_id.to_string())
    .execute(pool)
    .await;
    if let Err(e) = written {
        tracing::warn!(vm = %vm_id, error = %e, "class pre-start outcome not recorded");
    }
}
