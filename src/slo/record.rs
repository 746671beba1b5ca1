//! Recording the facts the indicators are computed from.
//!
//! - Start attempts: [`StartAttempt::begin`] when a start of a stopped VM
//!   begins, [`record_start`] with its outcome (called once by the VM
//!   lifecycle; awaited, it is one insert after a start that took seconds).
//! - Console sessions: the proxy sends [`ConsoleFact`]s (token issued, relay
//!   took it, handshake done, first frame, ended with a close code) through
//!   [`ConsoleRecorder`] to one writer task, so they are written in order and
//!   the relay never waits on the database.
//!
//! A fact that cannot be written is logged and dropped: recording never
//! fails (or slows) what the user asked for.

use tokio::sync::mpsc;
use uuid::Uuid;

use super::compute::EndedBy;
use crate::db::Pool;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// A start attempt in progress.
#[derive(Debug, Clone)]
pub struct StartAttempt {
    pub vm_id: Uuid,
    pub owner_id: Uuid,
    pub course_id: Option<Uuid>,
    pub requested_ms: i64,
}

impl StartAttempt {
    pub fn begin(vm_id: Uuid, owner_id: Uuid, course_id: Option<Uuid>) -> Self {
        Self {
            vm_id,
            owner_id,
            course_id,
            requested_ms: now_ms(),
        }
    }
}

/// Records a start attempt's outcome: `node` where it was placed (if it
/// got that far), `result` the start's (a failure as its kind, e.g.
/// `node_unavailable`: the VM module classifies its errors).
pub async fn record_start(
    pool: &Pool,
    a: &StartAttempt,
    node: Option<Uuid>,
    result: Result<(), &'static str>,
) {
    let (outcome, code, running) = match result {
        Ok(()) => ("ok", None, Some(now_ms())),
        Err(code) => ("failed", Some(code), None),
    };
    let written = sqlx::query(
        "INSERT INTO slo_vm_starts (id, vm_id, user_id, course_id, node_id, requested_ms,
         outcome, error_code, running_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(a.vm_id.to_string())
    .bind(a.owner_id.to_string())
    .bind(a.course_id.map(|c| c.to_string()))
    .bind(node.map(|n| n.to_string()))
    .bind(a.requested_ms)
    .bind(outcome)
    .bind(code)
    .bind(running)
    .execute(pool)
    .await;
    if let Err(e) = written {
        tracing::warn!(vm = %a.vm_id, error = %e, "start attempt not recorded");
    }
}

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
                 VALUES (?, ?, ?, ?, ?)",
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
            sqlx::query("UPDATE slo_console_sessions SET opened_ms = ? WHERE id = ?")
                .bind(at)
                .bind(id.to_string())
                .execute(pool)
                .await?;
        }
        ConsoleFact::Established { id } => {
            sqlx::query("UPDATE slo_console_sessions SET established_ms = ? WHERE id = ?")
                .bind(at)
                .bind(id.to_string())
                .execute(pool)
                .await?;
        }
        ConsoleFact::FirstFrame { id, vm_id } => {
            sqlx::query(
                "UPDATE slo_console_sessions SET first_frame_ms = ? WHERE id = ? AND first_frame_ms IS NULL",
            )
            .bind(at)
            .bind(id.to_string())
            .execute(pool)
            .await?;
            // The boot's first frame: on the VM's latest successful start.
            sqlx::query(
                "UPDATE slo_vm_starts SET first_frame_ms = ?1 WHERE first_frame_ms IS NULL AND id =
                 (SELECT id FROM slo_vm_starts WHERE vm_id = ?2 AND outcome = 'ok'
                  ORDER BY requested_ms DESC LIMIT 1)",
            )
            .bind(at)
            .bind(vm_id.to_string())
            .execute(pool)
            .await?;
        }
        ConsoleFact::Ended { id, code, by } => {
            sqlx::query(
                "UPDATE slo_console_sessions SET ended_ms = ?, ended_by = ?, close_code = ?
                 WHERE id = ? AND ended_ms IS NULL",
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
