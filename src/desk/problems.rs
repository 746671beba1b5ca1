//! Problems: the root cause behind several incidents (seed 004's
//! 问题管理). Staff link incidents to a problem record with its root cause,
//! known error and workaround; resolving the problem resolves its open
//! incidents (each gets the problem's resolution in its timeline) — a ticket
//! nobody took yet gets a work-log line instead, so the state machine's
//! rule (assign before resolving) holds.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use uuid::Uuid;

use super::tickets::{self, Action, NewEvent, State};
use super::{Desk, DeskError, MAX_TEXT, MAX_TITLE, on_desk, required, text};
use crate::db;
use crate::users::User;

#[derive(Debug, Clone, Serialize)]
pub struct LinkedTicket {
    pub id: Uuid,
    pub number: i64,
    pub title: String,
    pub state: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub id: Uuid,
    pub number: i64,
    pub title: String,
    pub root_cause: String,
    pub workaround: String,
    /// `open`, `known_error` (cause and workaround known), `resolved`.
    pub state: String,
    pub resolution: Option<String>,
    pub created_by: Uuid,
    pub created_at: String,
    pub resolved_at: Option<String>,
    pub tickets: Vec<LinkedTicket>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProblem {
    pub title: String,
    #[serde(default)]
    pub root_cause: String,
    #[serde(default)]
    pub workaround: String,
    /// A first incident to link.
    pub ticket_id: Option<Uuid>,
}

fn require_desk(actor: &User) -> Result<(), DeskError> {
    if on_desk(actor) {
        Ok(())
    } else {
        Err(DeskError::Forbidden(
            "problems are for staff and admins".into(),
        ))
    }
}

impl Desk {
    async fn problem_tickets(&self, id: Uuid) -> Result<Vec<LinkedTicket>, DeskError> {
        let rows = sqlx::query(
            "SELECT id, number, title, state FROM tickets WHERE problem_id = $1 ORDER BY number",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LinkedTicket {
                    id: db::uuid(r, "id")?,
                    number: r.try_get("number")?,
                    title: r.try_get("title")?,
                    state: r.try_get("state")?,
                })
            })
            .collect()
    }

    async fn load_problem(&self, id: Uuid) -> Result<Problem, DeskError> {
        let r = sqlx::query(
            "SELECT id, number, title, root_cause, workaround, state, resolution, created_by, created_at, resolved_at
             FROM problems WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(DeskError::NotFound)?;
        Ok(Problem {
            id: db::uuid(&r, "id")?,
            number: r.try_get("number")?,
            title: r.try_get("title")?,
            root_cause: r.try_get("root_cause")?,
            workaround: r.try_get("workaround")?,
            state: r.try_get("state")?,
            resolution: r.try_get("resolution")?,
            created_by: db::uuid(&r, "created_by")?,
            created_at: r.try_get("created_at")?,
            resolved_at: r.try_get("resolved_at")?,
            tickets: self.problem_tickets(id).await?,
        })
    }

    /// Every problem, open ones first, newest first.
    pub async fn problems(&self, actor: &User) -> Result<Vec<Problem>, DeskError> {
        require_desk(actor)?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM problems ORDER BY state = 'resolved', number DESC LIMIT 200",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.load_problem(db::parse_uuid(&id)?).await?);
        }
        Ok(out)
    }

    pub async fn problem(&self, actor: &User, id: Uuid) -> Result<Problem, DeskError> {
        require_desk(actor)?;
        self.load_problem(id).await
    }

    /// Opens a problem record, linking a first incident if given.
    pub async fn create_problem(
        &self,
        actor: &User,
        new: NewProblem,
    ) -> Result<Problem, DeskError> {
        require_desk(actor)?;
        let title = required("title", &new.title, MAX_TITLE, true)?;
        let root_cause = text("root_cause", &new.root_cause, MAX_TEXT, false)?;
        let workaround = text("workaround", &new.workaround, MAX_TEXT, false)?;
        let state = if !root_cause.is_empty() && !workaround.is_empty() {
            "known_error"
        } else {
            "open"
        };
        let id = Uuid::new_v4();
        // One statement numbers and inserts: a read-then-write transaction
        // cannot take the write lock when another writer committed between
        // (SQLite answers "database is locked" at once, not after the busy
        // timeout); a single INSERT waits for the lock like any write.
        sqlx::query(
            "INSERT INTO problems (id, number, title, root_cause, workaround, state, created_by, created_at)
             VALUES ($1, (SELECT COALESCE(MAX(number), 0) + 1 FROM problems), $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.to_string())
        .bind(&title)
        .bind(&root_cause)
        .bind(&workaround)
        .bind(state)
        .bind(actor.id.to_string())
        .bind(db::now())
        .execute(&self.pool)
        .await?;
        if let Some(t) = new.ticket_id {
            self.link_problem(actor, id, t).await?;
        }
        self.load_problem(id).await
    }

    /// Links an incident to the problem (a line in the ticket's timeline).
    pub async fn link_problem(
        &self,
        actor: &User,
        id: Uuid,
        ticket_id: Uuid,
    ) -> Result<Problem, DeskError> {
        require_desk(actor)?;
        let p = self.load_problem(id).await?;
        if p.state == "resolved" {
            return Err(DeskError::ProblemResolved);
        }
        let t = tickets::load(&self.pool, ticket_id)
            .await?
            .ok_or_else(|| DeskError::Unacceptable("ticket_id: no such ticket".into()))?;
        let now = db::now();
        let mut tx = db::begin(&self.pool).await?;
        tickets::update(
            &mut tx,
            t.id,
            "problem_id = ?, updated_at = ?",
            &[Some(id.to_string()), Some(now.clone())],
        )
        .await?;
        tickets::add_event(
            &mut tx,
            t.id,
            &now,
            NewEvent::by(actor.id, "problem")
                .text(&p.title)
                .data(json!({"problem_id": p.id, "problem_number": p.number})),
        )
        .await?;
        tx.commit().await?;
        self.load_problem(id).await
    }

    /// Resolves the problem and, with it, its open incidents.
    pub async fn resolve_problem(
        &self,
        actor: &User,
        id: Uuid,
        resolution: &str,
    ) -> Result<Problem, DeskError> {
        require_desk(actor)?;
        let p = self.load_problem(id).await?;
        if p.state == "resolved" {
            return Err(DeskError::ProblemResolved);
        }
        let resolution = required("resolution", resolution, MAX_TEXT, false)?;
        let now = db::now();
        sqlx::query(
            "UPDATE problems SET state = 'resolved', resolution = $1, resolved_at = $2 WHERE id = $3 AND state != 'resolved'",
        )
        .bind(&resolution)
        .bind(&now)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        let line = format!("#{} {}: {resolution}", p.number, p.title);
        for lt in &p.tickets {
            let Some(t) = tickets::load(&self.pool, lt.id).await? else {
                continue;
            };
            if !t.state.is_open() {
                continue;
            }
            let data = json!({"problem_id": p.id, "problem_number": p.number});
            if tickets::next_state(t.state, Action::Resolve, t.assignee_id.is_some()).is_ok() {
                let result = self
                    .act(
                        &t,
                        Action::Resolve,
                        NewEvent::by(actor.id, "resolved").text(&line).data(json!({
                            "problem_id": p.id, "problem_number": p.number,
                            "from": t.state.as_str(), "to": State::Resolved.as_str(),
                        })),
                        "resolution = ?, resolved_at = ?, responded_at = COALESCE(responded_at, ?)",
                        &[Some(line.clone()), Some(now.clone()), Some(now.clone())],
                    )
                    .await;
                // A ticket someone changed meanwhile keeps its new state.
                if let Err(e) = result {
                    tracing::warn!(ticket = %t.id, error = %e, "problem resolved; ticket left as it was");
                }
            } else {
                let mut tx = db::begin(&self.pool).await?;
                tickets::add_event(
                    &mut tx,
                    t.id,
                    &now,
                    NewEvent::by(actor.id, "worklog").text(&line).data(data),
                )
                .await?;
                tx.commit().await?;
            }
        }
        self.load_problem(id).await
    }
}
