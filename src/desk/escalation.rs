//! SLA clocks on tickets and the escalation pass.
//!
//! [`evaluate`] runs the pure engine ([`super::sla`]) over a ticket's clock
//! history ([`super::clock`]) with the stored settings; [`apply`] puts the
//! result on the ticket the API shows. [`Desk::escalate`] is the background
//! pass: at the instant it is given it evaluates every open ticket (and
//! every finished one whose timeline grew since it last looked, so a clock
//! that stopped late still has its breach recorded), and for each step newly
//! crossed writes an `escalated` timeline row (internal; no actor: the
//! server; data: the [`sla::Step`] and the clock's `due_at`) that the
//! notifications turn into messages. A breach also stamps the ticket's
//! `response_breached_at` / `resolution_breached_at` with the due instant,
//! which the stats count.
//!
//! Invariants: a step is written once per ticket and clock — the taken
//! steps ([`sla::Escalated`]) are stored with a compare-and-set, so two
//! passes at once cannot both write it; the pass takes its time as an
//! argument (the server's loop passes the wall clock, tests their own).

use std::collections::HashMap;

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::clock::{self, Transition};
use super::priority::Priority;
use super::settings::{self, SlaSettings};
use super::sla::{self, Evaluation, Level};
use super::tickets::{self, NewEvent, Ticket};
use super::{Desk, DeskError};
use crate::db::{self, Pool};

fn engine_priority(p: Priority) -> sla::Priority {
    match p {
        Priority::P1 => sla::Priority::P1,
        Priority::P2 => sla::Priority::P2,
        Priority::P3 => sla::Priority::P3,
        Priority::P4 => sla::Priority::P4,
    }
}

fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// The state changes of these tickets, in one query (the list of a queue
/// page must not cost a query per ticket).
pub async fn transitions(
    pool: &Pool,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Transition>>, sqlx::Error> {
    let mut out: HashMap<Uuid, Vec<Transition>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let list = serde_json::Value::from(ids.iter().map(|i| i.to_string()).collect::<Vec<_>>());
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT ticket_id, at, data FROM ticket_events
         WHERE ticket_id IN (SELECT value FROM json_each($1))
           AND data IS NOT NULL AND json_extract(data, '$.to') IS NOT NULL
         ORDER BY id",
    )
    .bind(list.to_string())
    .fetch_all(pool)
    .await?;
    for (id, at, data) in rows {
        let data = data.and_then(|d| serde_json::from_str(&d).ok());
        if let (Ok(id), Some(t)) = (
            Uuid::parse_str(&id),
            Transition::from_row(&at, data.as_ref()),
        ) {
            out.entry(id).or_default().push(t);
        }
    }
    Ok(out)
}

/// Both clocks of `t` at `now`.
pub fn evaluate(
    t: &Ticket,
    transitions: &[Transition],
    s: &SlaSettings,
    now: OffsetDateTime,
) -> Evaluation {
    let opened = parse(&t.created_at).unwrap_or(now);
    let responded = t.responded_at.as_deref().and_then(parse);
    let history = clock::history(opened, responded, transitions);
    sla::evaluate(
        &history,
        engine_priority(t.priority),
        &s.policy,
        &s.calendar,
        now,
    )
}

/// Fills the ticket's SLA fields at `now`: the due instants and, in
/// `sla_breached`, each clock's level, state, percent and remaining seconds
/// (what the queue's countdown shows).
pub fn apply(t: &mut Ticket, transitions: &[Transition], s: &SlaSettings, now: OffsetDateTime) {
    let ev = evaluate(t, transitions, s, now);
    t.response_due = ev.response.due_at.map(db::format_time);
    t.resolution_due = ev.resolution.due_at.map(db::format_time);
    t.sla_breached = Some(json!({
        "response": ev.response.level == Level::Breached,
        "resolution": ev.resolution.level == Level::Breached,
        "response_level": ev.response.level,
        "resolution_level": ev.resolution.level,
        "response_state": ev.response.state,
        "resolution_state": ev.resolution.state,
        "response_percent": ev.response.percent,
        "resolution_percent": ev.resolution.percent,
        "response_remaining_secs": ev.response.remaining.whole_seconds(),
        "resolution_remaining_secs": ev.resolution.remaining.whole_seconds(),
    }));
}

impl Desk {
    /// Puts the SLA fields on tickets listed together (one settings read,
    /// one timeline query).
    pub(super) async fn apply_sla(
        &self,
        list: &mut [Ticket],
        now: OffsetDateTime,
    ) -> Result<(), DeskError> {
        let s = settings::load(&self.pool).await?;
        let ids: Vec<Uuid> = list.iter().map(|t| t.id).collect();
        let ts = transitions(&self.pool, &ids).await?;
        for t in list {
            apply(t, ts.get(&t.id).map_or(&[][..], Vec::as_slice), &s, now);
        }
        Ok(())
    }

    /// The escalation pass at `now` (see the module doc). Returns how many
    /// steps it wrote.
    pub async fn escalate(&self, now: OffsetDateTime) -> Result<u64, DeskError> {
        let s = settings::load(&self.pool).await?;
        // With the last timeline row each has and the last one the pass saw.
        let candidates: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT t.id, t.sla_seen_event,
                    COALESCE((SELECT MAX(e.id) FROM ticket_events e WHERE e.ticket_id = t.id), 0) AS last
             FROM tickets t
             WHERE t.state NOT IN ('resolved', 'closed')
                OR EXISTS (SELECT 1 FROM ticket_events e WHERE e.ticket_id = t.id AND e.id > t.sla_seen_event)",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut written = 0;
        for chunk in candidates.chunks(200) {
            let ids = chunk
                .iter()
                .map(|(i, _, _)| db::parse_uuid(i))
                .collect::<Result<Vec<_>, _>>()?;
            let ts = transitions(&self.pool, &ids).await?;
            for (id, (_, seen, last)) in ids.into_iter().zip(chunk) {
                let ts = ts.get(&id).map_or(&[][..], Vec::as_slice);
                written += self.escalate_one(id, ts, &s, now, seen == last).await?;
            }
        }
        Ok(written)
    }

    async fn escalate_one(
        &self,
        id: Uuid,
        transitions: &[Transition],
        s: &SlaSettings,
        now: OffsetDateTime,
        seen_all: bool,
    ) -> Result<u64, DeskError> {
        let Some(t) = tickets::load(&self.pool, id).await? else {
            return Ok(0);
        };
        let stored: Option<String> =
            sqlx::query_scalar("SELECT sla_escalated FROM tickets WHERE id = $1")
                .bind(id.to_string())
                .fetch_one(&self.pool)
                .await?;
        let done: sla::Escalated = stored
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let ev = evaluate(&t, transitions, s, now);
        let steps = sla::new_steps(
            &ev,
            engine_priority(t.priority),
            t.assignee_id.is_some(),
            done,
        );
        if steps.is_empty() && seen_all {
            // Nothing new to write or to mark as seen.
            return Ok(0);
        }
        let after = done.after(&steps);
        let after_json = serde_json::to_string(&after)
            .map_err(|e| DeskError::Io(std::io::Error::other(e.to_string())))?;
        let at = db::format_time(now);
        let mut tx = db::begin(&self.pool).await?;
        // Compare-and-set on the steps taken: a concurrent pass that got
        // here first wrote them already.
        let claimed = sqlx::query(
            "UPDATE tickets SET sla_escalated = $1 WHERE id = $2 AND sla_escalated IS NOT DISTINCT FROM $3",
        )
        .bind(&after_json)
        .bind(id.to_string())
        .bind(stored.as_deref())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            return Ok(0);
        }
        for step in &steps {
            let due_at = ev.clock(step.clock).due_at.map(db::format_time);
            let mut data = serde_json::to_value(step)
                .map_err(|e| DeskError::Io(std::io::Error::other(e.to_string())))?;
            data["due_at"] = json!(due_at);
            tickets::add_event(
                &mut tx,
                id,
                &at,
                NewEvent::system("escalated").internal(true).data(data),
            )
            .await?;
            if step.breach {
                let col = match step.clock {
                    sla::Clock::Response => "response_breached_at",
                    sla::Clock::Resolution => "resolution_breached_at",
                };
                tickets::update(
                    &mut tx,
                    id,
                    &format!("{col} = COALESCE({col}, ?)"),
                    &[Some(due_at.unwrap_or_else(|| at.clone()))],
                )
                .await?;
            }
        }
        sqlx::query(
            "UPDATE tickets SET sla_seen_event =
               COALESCE((SELECT MAX(id) FROM ticket_events WHERE ticket_id = $1), 0)
             WHERE id = $1",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if !steps.is_empty() {
            tracing::info!(ticket = %id, steps = steps.len(), "SLA escalation");
        }
        Ok(u64::try_from(steps.len()).unwrap_or(u64::MAX))
    }
}
