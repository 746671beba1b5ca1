//! Tickets: their kinds, channels and states, the state machine (pure), and
//! their rows and timelines in the database.
//!
//! Invariants:
//! - A ticket's state only changes through [`next_state`]; every change,
//!   comment and work-log entry is a row of its timeline (`ticket_events`)
//!   with who and when, written in the same transaction as the change.
//! - Internal entries are never returned to anyone but staff and admins.
//! - Who sees a ticket: its reporter, the teacher of its course, staff and
//!   admins, and the users a system incident lists as affected (its
//!   context's `user_ids`) ([`VISIBLE_TO`]); everyone else gets 404.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use super::priority::{Impact, Priority, Urgency};
use crate::auth::Role;
use crate::db::{self, Pool};
use crate::users::User;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A fault: won't start, black console, slow, lost work…
    Incident,
    /// A service request: more quota, software in a template…
    Request,
    /// A formal complaint (投诉), counted apart from ordinary feedback.
    Complaint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The reporter, in the web UI.
    Web,
    /// Staff entered it for someone who phoned, wrote or walked in.
    Phone,
    Email,
    WalkIn,
    /// The server opened it (a node down, repeated start failures).
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    New,
    Assigned,
    InProgress,
    /// Waiting for the reporter: the SLA clock pauses.
    Waiting,
    Resolved,
    Closed,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$v),*];
        }
    };
}
names!(Kind { Incident => "incident", Request => "request", Complaint => "complaint" });
names!(Channel { Web => "web", Phone => "phone", Email => "email", WalkIn => "walk_in", System => "system" });
names!(State { New => "new", Assigned => "assigned", InProgress => "in_progress", Waiting => "waiting", Resolved => "resolved", Closed => "closed" });

impl State {
    /// Open: someone on the desk still has to act.
    pub fn is_open(self) -> bool {
        !matches!(self, State::Resolved | State::Closed)
    }
}

/// What moves a ticket from one state to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Assign,
    StartWork,
    WaitForReporter,
    /// The reporter answered while the desk was waiting for them.
    ReporterReplied,
    Resolve,
    Confirm,
    Reopen,
}

/// Why an action is not possible in a state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the ticket is {}; {}", .state.as_str(), .hint)]
pub struct WrongState {
    pub state: State,
    pub hint: &'static str,
}

/// The state machine: new → assigned → in progress ⇄ waiting for reporter →
/// resolved → closed, and reopen from resolved. `assigned` says whether the
/// ticket has an assignee (a reopened ticket goes back to them).
pub fn next_state(state: State, action: Action, assigned: bool) -> Result<State, WrongState> {
    use Action as A;
    use State as S;
    let wrong = |hint| Err(WrongState { state, hint });
    match (action, state) {
        (A::Assign, S::New | S::Assigned | S::InProgress | S::Waiting) => Ok(S::Assigned),
        (A::Assign, _) => wrong("only an open ticket can be assigned"),
        (_, S::New) if matches!(action, A::StartWork | A::WaitForReporter | A::Resolve) => {
            wrong("assign it first")
        }
        (A::StartWork, S::Assigned | S::Waiting) => Ok(S::InProgress),
        (A::StartWork, _) => wrong("work starts on an assigned or waiting ticket"),
        (A::WaitForReporter, S::Assigned | S::InProgress) => Ok(S::Waiting),
        (A::WaitForReporter, _) => wrong("only a ticket being worked on can wait for its reporter"),
        (A::ReporterReplied, S::Waiting) => Ok(S::InProgress),
        (A::ReporterReplied, s) => Ok(s),
        (A::Resolve, S::Assigned | S::InProgress | S::Waiting) => Ok(S::Resolved),
        (A::Resolve, _) => wrong("it cannot be resolved again"),
        (A::Confirm, S::Resolved) => Ok(S::Closed),
        (A::Confirm, _) => wrong("only a resolved ticket can be confirmed"),
        (A::Reopen, S::Resolved) if assigned => Ok(S::Assigned),
        (A::Reopen, S::Resolved) => Ok(S::New),
        (A::Reopen, _) => wrong("only a resolved ticket can be reopened"),
    }
}

/// One ticket as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Ticket {
    pub id: Uuid,
    /// A short number people can say on the phone.
    pub number: i64,
    pub kind: Kind,
    pub title: String,
    pub description: String,
    pub state: State,
    pub priority: Priority,
    pub impact: Impact,
    pub urgency: Urgency,
    pub channel: Channel,
    pub reporter_id: Uuid,
    pub reporter_name: String,
    pub created_by: Uuid,
    pub assignee_id: Option<Uuid>,
    pub assignee_name: Option<String>,
    pub vm_id: Option<Uuid>,
    pub node_id: Option<Uuid>,
    pub course_id: Option<Uuid>,
    pub template_id: Option<Uuid>,
    pub created_at: String,
    pub updated_at: String,
    pub responded_at: Option<String>,
    pub resolved_at: Option<String>,
    pub closed_at: Option<String>,
    pub resolution: Option<String>,
    pub rating: Option<i64>,
    pub rating_comment: Option<String>,
    pub reopen_count: i64,
    /// The problem record this incident is linked to.
    pub problem_id: Option<Uuid>,
    pub has_screenshot: bool,
    /// What the VM looked like when it was reported (see `desk::context`).
    pub context: serde_json::Value,
    /// The SLA clocks as of the request (filled by `desk::escalation::apply`):
    /// due instants and, in `sla_breached`, each clock's level, state,
    /// percent used and remaining seconds.
    pub response_due: Option<String>,
    pub resolution_due: Option<String>,
    pub sla_breached: Option<serde_json::Value>,
    #[serde(skip)]
    pub screenshot: Option<String>,
}

/// One line of a ticket's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TicketEvent {
    pub id: i64,
    pub at: String,
    pub actor_id: Option<Uuid>,
    /// The actor's display name (`null`: the server itself).
    pub actor_name: Option<String>,
    /// `created`, `assigned`, `state`, `comment`, `worklog`, `priority`,
    /// `resolved`, `confirmed`, `reopened`, `escalated` (an SLA step, by the
    /// server, internal).
    pub kind: String,
    pub internal: bool,
    pub text: Option<String>,
    pub data: Option<serde_json::Value>,
}

const COLUMNS: &str = "t.id, t.number, t.kind, t.title, t.description, t.state, t.priority, t.impact, t.urgency, t.channel, t.reporter_id, r.display_name AS reporter_name, r.username AS reporter_username, t.created_by, t.assignee_id, a.display_name AS assignee_name, a.username AS assignee_username, t.vm_id, t.node_id, t.course_id, t.template_id, t.context, t.screenshot, t.created_at, t.updated_at, t.responded_at, t.resolved_at, t.closed_at, t.resolution, t.rating, t.rating_comment, t.reopen_count, t.problem_id";
const FROM: &str =
    "FROM tickets t JOIN users r ON r.id = t.reporter_id LEFT JOIN users a ON a.id = t.assignee_id";

/// SQL condition (binding the viewer's id three times) for the tickets a
/// non-staff user may see: their own, a teacher's course's, and the system
/// incidents that list them as affected.
pub const VISIBLE_TO: &str = "(t.reporter_id = ? OR t.course_id IN (SELECT id FROM courses WHERE teacher_id = ?)
     OR (t.channel = 'system' AND EXISTS (SELECT 1 FROM json_each(t.context, '$.user_ids') WHERE value = ?)))";

fn name_of(row: &crate::db::Row, display: &str, user: &str) -> Result<String, sqlx::Error> {
    let d: Option<String> = row.try_get(display)?;
    let u: Option<String> = row.try_get(user)?;
    Ok(d.filter(|d| !d.is_empty()).or(u).unwrap_or_default())
}

fn from_row(row: &crate::db::Row) -> Result<Ticket, sqlx::Error> {
    let text = |c: &str| row.try_get::<String, _>(c);
    let bad = |c: &str| sqlx::Error::ColumnDecode {
        index: c.to_owned(),
        source: "unknown value".into(),
    };
    let assignee_id = db::opt_uuid(row, "assignee_id")?;
    let screenshot: Option<String> = row.try_get("screenshot")?;
    Ok(Ticket {
        id: db::uuid(row, "id")?,
        number: row.try_get("number")?,
        kind: Kind::parse(&text("kind")?).ok_or_else(|| bad("kind"))?,
        title: text("title")?,
        description: text("description")?,
        state: State::parse(&text("state")?).ok_or_else(|| bad("state"))?,
        priority: Priority::parse(&text("priority")?).ok_or_else(|| bad("priority"))?,
        impact: Impact::parse(&text("impact")?).unwrap_or(Impact::User),
        urgency: Urgency::parse(&text("urgency")?).unwrap_or_default(),
        channel: Channel::parse(&text("channel")?).unwrap_or(Channel::Web),
        reporter_id: db::uuid(row, "reporter_id")?,
        reporter_name: name_of(row, "reporter_name", "reporter_username")?,
        created_by: db::uuid(row, "created_by")?,
        assignee_name: match assignee_id {
            Some(_) => Some(name_of(row, "assignee_name", "assignee_username")?),
            None => None,
        },
        assignee_id,
        vm_id: db::opt_uuid(row, "vm_id")?,
        node_id: db::opt_uuid(row, "node_id")?,
        course_id: db::opt_uuid(row, "course_id")?,
        template_id: db::opt_uuid(row, "template_id")?,
        context: serde_json::from_str(&text("context")?).unwrap_or_default(),
        has_screenshot: screenshot.is_some(),
        screenshot,
        created_at: text("created_at")?,
        updated_at: text("updated_at")?,
        responded_at: row.try_get("responded_at")?,
        resolved_at: row.try_get("resolved_at")?,
        closed_at: row.try_get("closed_at")?,
        resolution: row.try_get("resolution")?,
        rating: row.try_get("rating")?,
        rating_comment: row.try_get("rating_comment")?,
        reopen_count: row.try_get("reopen_count")?,
        problem_id: db::opt_uuid(row, "problem_id")?,
        response_due: None,
        resolution_due: None,
        sla_breached: None,
    })
}

/// Loads a ticket without any access check.
pub async fn load(pool: &Pool, id: Uuid) -> Result<Option<Ticket>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} {FROM} WHERE t.id = $1"))
        .bind(id.to_string())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Whether `user` may see `ticket` (see the module doc).
pub async fn can_view(pool: &Pool, user: &User, ticket: &Ticket) -> Result<bool, sqlx::Error> {
    Ok(match user.role {
        Role::Admin | Role::Staff => true,
        _ if ticket.reporter_id == user.id => true,
        // A system incident is every affected user's to follow.
        _ if ticket.channel == Channel::System
            && ticket.context["user_ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|id| id == &user.id.to_string())) =>
        {
            true
        }
        Role::Teacher => match ticket.course_id {
            Some(c) => {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM courses WHERE id = $1 AND teacher_id = $2",
                )
                .bind(c.to_string())
                .bind(user.id.to_string())
                .fetch_one(pool)
                .await?;
                n > 0
            }
            None => false,
        },
        Role::Student => false,
    })
}

/// The queue's filters.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub state: Option<State>,
    /// `open`: every state but resolved and closed.
    pub open: Option<bool>,
    pub priority: Option<Priority>,
    pub kind: Option<Kind>,
    /// A user id, or `none` for unassigned tickets.
    pub assignee_id: Option<String>,
    pub reporter_id: Option<Uuid>,
    pub node_id: Option<Uuid>,
    pub course_id: Option<Uuid>,
    pub vm_id: Option<Uuid>,
    /// At most this many (1..=500, 200 when omitted).
    pub limit: Option<u32>,
}

pub const MAX_LIST: u32 = 500;

/// The tickets `user` may see that match `f`: open ones first, then by
/// priority, newest first.
pub async fn list(pool: &Pool, user: &User, f: &Filter) -> Result<Vec<Ticket>, sqlx::Error> {
    let mut sql = format!("SELECT {COLUMNS} {FROM} WHERE 1=1");
    let mut binds: Vec<String> = Vec::new();
    if !matches!(user.role, Role::Admin | Role::Staff) {
        sql.push_str(&format!(" AND {VISIBLE_TO}"));
        binds.push(user.id.to_string());
        binds.push(user.id.to_string());
        binds.push(user.id.to_string());
    }
    let mut eq = |col: &str, v: Option<String>| {
        if let Some(v) = v {
            sql.push_str(&format!(" AND t.{col} = ?"));
            binds.push(v);
        }
    };
    eq("state", f.state.map(|s| s.as_str().to_owned()));
    eq("priority", f.priority.map(|p| p.as_str().to_owned()));
    eq("kind", f.kind.map(|k| k.as_str().to_owned()));
    eq("reporter_id", f.reporter_id.map(|u| u.to_string()));
    eq("node_id", f.node_id.map(|u| u.to_string()));
    eq("course_id", f.course_id.map(|u| u.to_string()));
    eq("vm_id", f.vm_id.map(|u| u.to_string()));
    match f.assignee_id.as_deref() {
        None => {}
        Some("none") => sql.push_str(" AND t.assignee_id IS NULL"),
        Some(a) => {
            sql.push_str(" AND t.assignee_id = ?");
            binds.push(a.to_owned());
        }
    }
    // The queue's order is open-first, by priority, newest first; the
    // `*_order` indexes (migrations 0021, 0041) hold it under each filter so
    // a page stops after LIMIT rows. "Open" is spelled as the indexed
    // expression so the index can seek it, and being constant then it
    // leaves the ORDER BY (SQLite would sort instead of reading in order).
    if f.open == Some(true) {
        sql.push_str(
            " AND (t.state IN ('resolved', 'closed')) = 0 ORDER BY t.priority, t.created_at DESC",
        );
    } else {
        sql.push_str(" ORDER BY t.state IN ('resolved', 'closed'), t.priority, t.created_at DESC");
    }
    sql.push_str(" LIMIT ?");
    let sql = db::numbered(&sql);
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b);
    }
    let rows = q
        .bind(i64::from(f.limit.unwrap_or(200).min(MAX_LIST)))
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// The timeline, oldest first; internal entries only if `internal`.
pub async fn events(
    pool: &Pool,
    ticket_id: Uuid,
    internal: bool,
) -> Result<Vec<TicketEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT e.id, e.at, e.actor_id, u.display_name, u.username, e.kind, e.internal, e.text, e.data
         FROM ticket_events e LEFT JOIN users u ON u.id = e.actor_id
         WHERE e.ticket_id = $1 AND (e.internal = 0 OR $2) ORDER BY e.id",
    )
    .bind(ticket_id.to_string())
    .bind(internal)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let actor_id = db::opt_uuid(row, "actor_id")?;
            Ok(TicketEvent {
                id: row.try_get("id")?,
                at: row.try_get("at")?,
                actor_name: match actor_id {
                    Some(_) => Some(name_of(row, "display_name", "username")?),
                    None => None,
                },
                actor_id,
                kind: row.try_get("kind")?,
                internal: row.try_get::<i64, _>("internal")? != 0,
                text: row.try_get("text")?,
                data: row
                    .try_get::<Option<String>, _>("data")?
                    .and_then(|d| serde_json::from_str(&d).ok()),
            })
        })
        .collect()
}

/// A timeline entry to write.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub actor: Option<Uuid>,
    pub kind: &'static str,
    pub internal: bool,
    pub text: Option<&'a str>,
    pub data: Option<serde_json::Value>,
}

impl<'a> NewEvent<'a> {
    pub fn by(actor: Uuid, kind: &'static str) -> Self {
        Self {
            actor: Some(actor),
            kind,
            internal: false,
            text: None,
            data: None,
        }
    }
    /// An entry by the server itself (no actor).
    pub fn system(kind: &'static str) -> Self {
        Self {
            actor: None,
            kind,
            internal: false,
            text: None,
            data: None,
        }
    }

    #[must_use]
    pub fn text(mut self, text: &'a str) -> Self {
        self.text = Some(text);
        self
    }
    #[must_use]
    pub fn data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }
    #[must_use]
    pub fn internal(mut self, internal: bool) -> Self {
        self.internal = internal;
        self
    }
}

pub async fn add_event(
    tx: &mut crate::db::Conn,
    ticket_id: Uuid,
    at: &str,
    e: NewEvent<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ticket_events (ticket_id, at, actor_id, kind, internal, text, data) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(ticket_id.to_string())
    .bind(at)
    .bind(e.actor.map(|a| a.to_string()))
    .bind(e.kind)
    .bind(db::Flag(e.internal))
    .bind(e.text)
    .bind(e.data.map(|d| d.to_string()))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A ticket to insert (everything decided by the caller).
#[derive(Debug, Clone)]
pub struct NewTicketRow<'a> {
    pub id: Uuid,
    pub kind: Kind,
    pub title: &'a str,
    pub description: &'a str,
    pub priority: Priority,
    pub impact: Impact,
    pub urgency: Urgency,
    pub channel: Channel,
    pub reporter_id: Uuid,
    pub created_by: Uuid,
    pub vm_id: Option<Uuid>,
    pub node_id: Option<Uuid>,
    pub course_id: Option<Uuid>,
    pub template_id: Option<Uuid>,
    pub context: &'a serde_json::Value,
    pub screenshot: Option<&'a str>,
}

pub async fn insert(
    tx: &mut crate::db::Conn,
    t: &NewTicketRow<'_>,
    now: &str,
) -> Result<(), sqlx::Error> {
    let number: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM tickets")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO tickets (id, number, kind, title, description, state, priority, impact, urgency, channel,
           reporter_id, created_by, vm_id, node_id, course_id, template_id, context, screenshot, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'new', $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
    )
    .bind(t.id.to_string())
    .bind(number)
    .bind(t.kind.as_str())
    .bind(t.title)
    .bind(t.description)
    .bind(t.priority.as_str())
    .bind(t.impact.as_str())
    .bind(t.urgency.as_str())
    .bind(t.channel.as_str())
    .bind(t.reporter_id.to_string())
    .bind(t.created_by.to_string())
    .bind(t.vm_id.map(|v| v.to_string()))
    .bind(t.node_id.map(|v| v.to_string()))
    .bind(t.course_id.map(|v| v.to_string()))
    .bind(t.template_id.map(|v| v.to_string()))
    .bind(t.context.to_string())
    .bind(t.screenshot)
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Sets the state (and `updated_at`), only if it is still `from`: a
/// concurrent change makes this return false instead of overwriting it.
pub async fn set_state(
    tx: &mut crate::db::Conn,
    id: Uuid,
    from: State,
    to: State,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE tickets SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4")
            .bind(to.as_str())
            .bind(now)
            .bind(id.to_string())
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Runs one `UPDATE tickets SET <set> WHERE id = ?` with `binds` before the
/// id (`set` binds with bare `?`).
pub async fn update(
    tx: &mut crate::db::Conn,
    id: Uuid,
    set: &str,
    binds: &[Option<String>],
) -> Result<(), sqlx::Error> {
    let sql = db::numbered(&format!("UPDATE tickets SET {set} WHERE id = ?"));
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b.clone());
    }
    q.bind(id.to_string()).execute(&mut *tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue's order under the filters that take other SQL paths:
    /// open (the indexed expression, no open-first term), open + priority,
    /// and no filter (open first). Real SQLite with the migrations.
    #[tokio::test]
    async fn the_queue_lists_open_first_by_priority_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = db::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .expect("db");
        let admin = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO users (id, username, display_name, role, password_hash, created_at)
             VALUES ($1, 'test-admin', '', 'admin', 'x', '2026-01-01T00:00:00Z')",
        )
        .bind(admin.to_string())
        .execute(&pool)
        .await
        .expect("user");
        // number, state, priority, created_at (day of January)
        let rows = [
            (1, "new", "P3", 1),
            (2, "closed", "P1", 2),
            (3, "in_progress", "P1", 3),
            (4, "resolved", "P2", 4),
            (5, "waiting", "P3", 5),
            (6, "assigned", "P1", 6),
            (7, "closed", "P3", 7),
        ];
        for (n, state, priority, day) in rows {
            sqlx::query(
                "INSERT INTO tickets (id, number, kind, title, description, state, priority, impact,
                     urgency, channel, reporter_id, created_by, context, created_at, updated_at)
                 VALUES ($1, $2, 'incident', 't', 'd', $3, $4, 'user', 'not_blocking', 'web', $5, $6, '{}', $7, $8)",
            )
            .bind(Uuid::new_v4().to_string())
            .bind(n)
            .bind(state)
            .bind(priority)
            .bind(admin.to_string())
            .bind(admin.to_string())
            .bind(format!("2026-01-{day:02}T10:00:00Z"))
            .bind(format!("2026-01-{day:02}T10:00:00Z"))
            .execute(&pool)
            .await
            .expect("ticket");
        }
        let me = User {
            id: admin,
            username: "test-admin".into(),
            display_name: String::new(),
            role: Role::Admin,
            disabled: false,
            must_change_password: false,
        };
        let numbers = |f: Filter| {
            let pool = pool.clone();
            let me = me.clone();
            async move {
                list(&pool, &me, &f)
                    .await
                    .expect("list")
                    .iter()
                    .map(|t| t.number)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(numbers(Filter::default()).await, [6, 3, 5, 1, 2, 4, 7]);
        let open = Filter {
            open: Some(true),
            ..Filter::default()
        };
        assert_eq!(numbers(open.clone()).await, [6, 3, 5, 1]);
        let open_p1 = Filter {
            priority: Some(Priority::P1),
            ..open.clone()
        };
        assert_eq!(numbers(open_p1).await, [6, 3]);
        let p1 = Filter {
            priority: Some(Priority::P1),
            ..Filter::default()
        };
        assert_eq!(numbers(p1).await, [6, 3, 2]);
        let limited = Filter {
            limit: Some(2),
            ..open
        };
        assert_eq!(numbers(limited).await, [6, 3]);
    }

    #[test]
    fn the_happy_path() {
        let mut s = State::New;
        for (a, want) in [
            (Action::Assign, State::Assigned),
            (Action::StartWork, State::InProgress),
            (Action::WaitForReporter, State::Waiting),
            (Action::ReporterReplied, State::InProgress),
            (Action::Resolve, State::Resolved),
            (Action::Confirm, State::Closed),
        ] {
            s = next_state(s, a, true).expect("allowed");
            assert_eq!(s, want);
        }
    }

    #[test]
    fn reopen_goes_back_to_the_assignee_or_the_queue() {
        assert_eq!(
            next_state(State::Resolved, Action::Reopen, true),
            Ok(State::Assigned)
        );
        assert_eq!(
            next_state(State::Resolved, Action::Reopen, false),
            Ok(State::New)
        );
        assert!(next_state(State::Closed, Action::Reopen, true).is_err());
    }

    #[test]
    fn nothing_moves_a_closed_ticket_and_new_ones_need_an_assignee() {
        for a in [
            Action::Assign,
            Action::StartWork,
            Action::WaitForReporter,
            Action::Resolve,
            Action::Confirm,
            Action::Reopen,
        ] {
            assert!(next_state(State::Closed, a, true).is_err(), "{a:?}");
        }
        let e = next_state(State::New, Action::Resolve, false).expect_err("refused");
        assert_eq!(e.hint, "assign it first");
        assert_eq!(
            next_state(State::New, Action::ReporterReplied, false),
            Ok(State::New)
        );
    }

    #[test]
    fn names_round_trip() {
        for s in [
            State::New,
            State::Assigned,
            State::InProgress,
            State::Waiting,
            State::Resolved,
            State::Closed,
        ] {
            assert_eq!(State::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).ok(), Some(s.as_str().into()));
        }
        for c in [
            Channel::Web,
            Channel::Phone,
            Channel::Email,
            Channel::WalkIn,
            Channel::System,
        ] {
            assert_eq!(serde_json::to_value(c).ok(), Some(c.as_str().into()));
        }
    }
}
