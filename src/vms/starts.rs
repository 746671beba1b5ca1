//! Start attempts, recorded for the service levels ([`crate::slo`] computes
//! from the rows): [`StartAttempt::begin`] when a start of a stopped VM
//! begins, [`record_start`] with its outcome (called once by the lifecycle;
//! awaited, it is one insert after a start that took seconds). A row that
//! cannot be written is logged: recording never fails a start. The boot's
//! first console frame is added to the row by the console's recorder.

use uuid::Uuid;

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
         outcome, error_code, running_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
