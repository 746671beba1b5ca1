//! The lab's service desk (issue 13): fault reports that carry the VM's live
//! context, dispatch, work logs, confirmation and rating.
//!
//! [`Desk`] is the service the HTTP handlers call; it owns its dependencies
//! (the pool, the nodes, the VM manager, the screenshot store). Pieces:
//! - [`tickets`]: kinds, channels, states and the pure state machine, rows
//!   and timelines;
//! - [`priority`]: impact × urgency → P1–P4 (pure);
//! - [`screenshot`]: the VM's screen as PNG, stored by SHA-256;
//! - [`kb`], [`problems`], [`stats`]: the knowledge base, problem records,
//!   the desk's figures;
//! - [`system`]: when the server opens an incident itself (a node down with
//!   users' VMs on it), joins or annotates one (pure); `Desk::node_changed`
//!   writes it, fed by the node monitor's changes (`Nodes::watch`);
//! - [`calendar`] is the lab's service calendar (opening hours, holidays)
//!   that business time is counted in; [`sla`] is the pure SLA engine
//!   evaluated over a ticket's clock history, which [`clock`] reads from its
//!   timeline; [`settings`] stores the policy and calendar; [`escalation`]
//!   puts the clocks on tickets and runs the escalation pass.
//!
//! Invariants:
//! - Who may do what is decided here, per ticket ([`Desk::allowed`]): the
//!   reporter follows, confirms, rates and reopens their ticket; a course's
//!   teacher reads its students' tickets; staff take tickets, work them and
//!   override priorities; admins also dispatch to anyone on the desk.
//! - Context is captured when the ticket is made, as the reporter could see
//!   it (the VM must be theirs to see), and never changes afterwards.
//! - Text is bounded and stored as typed; the UI renders it as text.
//! - Every ticket the desk returns carries its SLA clocks as of the
//!   request (`response_due`, `resolution_due`, `sla_breached`), computed
//!   from its timeline with the stored settings; nothing about them is
//!   stored but what the escalation pass took (see [`escalation`]).

pub mod calendar;
pub mod clock;
pub mod escalation;
pub mod kb;
pub mod notices;
pub mod notify;
pub mod priority;
pub mod problems;
pub mod requests;
pub mod screenshot;
pub mod settings;
pub mod sla;
pub mod stats;
pub mod system;
pub mod tickets;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::auth::Role;
use crate::db::{self, Pool};
use crate::libvirt::LibvirtError;
use crate::nodes::{NodeError, Nodes};
use crate::users::User;
use crate::vms::{self, Vm, VmError, VmManager, VmState};
use priority::{Impact, Priority, Urgency};
use screenshot::{ShotError, ShotStore};
use tickets::{Action, Channel, Kind, NewEvent, State, Ticket, TicketEvent, WrongState};

/// Days a resolved ticket waits for its reporter (`--desk-confirm-days`).
pub const DEFAULT_CONFIRM_DAYS: u32 = 7;
/// How often the desk's background pass runs.
pub const PASS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest description, comment, resolution or reason, in characters.
pub const MAX_TEXT: usize = 10_000;
/// How many recent event-log entries a report carries.
const CONTEXT_EVENTS: u32 = 10;
/// Screenshots taken for a report that was never sent are removed after this.
const UNCLAIMED_SHOT_HOURS: i64 = 24;

#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("no such ticket")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unacceptable(String),
    #[error(transparent)]
    WrongState(#[from] WrongState),
    #[error("the ticket changed meanwhile; reload it and try again")]
    Changed,
    #[error("the problem is resolved; open a new one")]
    ProblemResolved,
    #[error("the article was edited meanwhile; reload it and try again")]
    ArticleChanged,
    #[error("the article is retired and can no longer be edited")]
    ArticleRetired,
    #[error("the VM is not running, so its screen cannot be captured")]
    VmNotRunning,
    #[error(transparent)]
    Policy(#[from] sla::SlaError),
    #[error(transparent)]
    Calendar(#[from] calendar::CalendarError),
    #[error(transparent)]
    Shot(#[from] ShotError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Libvirt(#[from] LibvirtError),
    #[error(transparent)]
    Users(#[from] crate::users::UserError),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Range(#[from] crate::range::RangeError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A system incident to open or join ([`Desk::open_system_incident`]).
#[derive(Debug)]
pub struct SystemIncident<'a> {
    /// Identifies what the incident is about (`alert:<rule>:<subject>`,
    /// `inspection:<item>`): at most one open incident per key.
    pub key: &'a str,
    pub title: &'a str,
    /// The first description, then each repeat's work-log line.
    pub description: &'a str,
    pub node_id: Option<Uuid>,
    pub context: serde_json::Value,
}

/// A report to file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTicket {
    pub kind: Kind,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub vm_id: Option<Uuid>,
    #[serde(default)]
    pub urgency: Urgency,
    /// `web` (default); staff: `phone`, `email`, `walk_in`.
    pub channel: Option<Channel>,
    /// Staff: the username of the person the report is for.
    pub on_behalf_of: Option<String>,
    /// A screenshot taken with `POST /api/desk/screenshots` and kept.
    pub screenshot_id: Option<Uuid>,
    /// `false`: no screenshot (the reporter removed it). Default: with a
    /// `vm_id` and no `screenshot_id`, the running VM's screen is captured.
    pub screenshot: Option<bool>,
}

/// A comment or work-log line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    pub text: String,
    /// Staff and admins: never shown to the reporter.
    #[serde(default)]
    pub internal: bool,
    /// Staff and admins: a work-log entry (运维日志) rather than a reply.
    #[serde(default)]
    pub worklog: bool,
}

/// A ticket with its timeline and what the viewer may do with it.
#[derive(Debug, Serialize)]
pub struct TicketView {
    #[serde(flatten)]
    pub ticket: Ticket,
    pub events: Vec<TicketEvent>,
    pub can: Allowed,
}

/// The actions open to one user on one ticket (for the UI's buttons; every
/// action checks again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Allowed {
    pub take: bool,
    pub dispatch: bool,
    pub start: bool,
    pub wait: bool,
    pub resolve: bool,
    pub confirm: bool,
    pub reopen: bool,
    pub comment: bool,
    pub internal: bool,
    pub priority: bool,
    pub callback: bool,
    /// An admin answers a complaint in writing.
    pub reply: bool,
    /// Link an open service request to the template it leads to.
    pub link_template: bool,
}

/// A screenshot taken for a report not sent yet.
#[derive(Debug, Serialize)]
pub struct Shot {
    pub id: Uuid,
    pub vm_id: Uuid,
    pub bytes: u64,
    pub sha256: String,
    pub taken_at: String,
}

/// Someone a ticket may be assigned to.
#[derive(Debug, Serialize)]
pub struct DeskMember {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub role: Role,
}

/// What staff record of a phone callback (电话回访).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCallback {
    pub outcome: CallbackOutcome,
    /// When the call was made (RFC 3339); now when omitted.
    pub at: Option<String>,
    /// The reporter's rating given on the phone (1–5): closes a resolved ticket.
    pub rating: Option<u8>,
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackOutcome {
    /// The reporter was reached and asked.
    Reached,
    NoAnswer,
}

impl CallbackOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CallbackOutcome::Reached => "reached",
            CallbackOutcome::NoAnswer => "no_answer",
        }
    }
}

/// The instant before which a resolved ticket closes unrated, at `now`
/// (pure: the background pass passes its clock's time).
pub fn confirm_cutoff(now: time::OffsetDateTime, days: u32) -> time::OffsetDateTime {
    now - time::Duration::days(i64::from(days))
}

/// A system incident as [`Desk::insert_system_incident`] writes it: an
/// incident on the system channel; the rest is what it is about.
struct SystemIncidentRow<'a> {
    title: &'a str,
    description: &'a str,
    impact: Impact,
    urgency: Urgency,
    /// Every ticket has a reporter (who may follow it).
    reporter: Uuid,
    vm_id: Option<Uuid>,
    node_id: Option<Uuid>,
    course_id: Option<Uuid>,
    template_id: Option<Uuid>,
    context: &'a serde_json::Value,
    /// Fields added to the `created` timeline entry.
    created: serde_json::Value,
}

#[derive(Debug)]
pub struct Desk {
    pool: Pool,
    nodes: Arc<Nodes>,
    vms: Arc<VmManager>,
    shots: ShotStore,
    confirm_days: u32,
}

fn on_desk(user: &User) -> bool {
    matches!(user.role, Role::Staff | Role::Admin)
}

/// Who else a system incident affects is the desk's to know: the students
/// it lists see their own incident, not their classmates' names.
fn redact(user: &User, t: &mut Ticket) {
    if !on_desk(user)
        && t.channel == Channel::System
        && let Some(c) = t.context.as_object_mut()
    {
        c.remove("users");
        c.remove("user_ids");
    }
}

/// Trims and bounds a text field; `single_line` refuses line breaks, and
/// control characters other than line breaks and tabs are always refused.
fn text(field: &str, value: &str, max: usize, single_line: bool) -> Result<String, DeskError> {
    let v = value.trim();
    if v.chars().count() > max {
        return Err(DeskError::Invalid(format!(
            "{field} is longer than {max} characters"
        )));
    }
    let bad = |c: char| c.is_control() && (single_line || !matches!(c, '\n' | '\t' | '\r'));
    if v.chars().any(bad) {
        return Err(DeskError::Invalid(format!(
            "{field} contains control characters"
        )));
    }
    Ok(v.to_owned())
}

fn required(field: &str, value: &str, max: usize, single_line: bool) -> Result<String, DeskError> {
    let v = text(field, value, max, single_line)?;
    if v.is_empty() {
        return Err(DeskError::Invalid(format!("{field} is required")));
    }
    Ok(v)
}

impl Desk {
    pub fn new(
        pool: Pool,
        nodes: Arc<Nodes>,
        vms: Arc<VmManager>,
        data_dir: &std::path::Path,
    ) -> Self {
        Self {
            pool,
            nodes,
            vms,
            shots: ShotStore::new(data_dir),
            confirm_days: DEFAULT_CONFIRM_DAYS,
        }
    }

    /// Days a resolved ticket waits for its reporter before closing unrated.
    #[must_use]
    pub fn with_confirm_days(mut self, days: u32) -> Self {
        self.confirm_days = days;
        self
    }

    /// The background pass at `now`: resolved tickets whose reporter did not
    /// answer within the configured days close unrated (a timeline line by
    /// the server says so). Returns how many closed.
    pub async fn close_unconfirmed(&self, now: time::OffsetDateTime) -> Result<u64, DeskError> {
        let cutoff = db::format_time(confirm_cutoff(now, self.confirm_days));
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM tickets WHERE state = 'resolved' AND resolved_at < $1",
        )
        .bind(&cutoff)
        .fetch_all(&self.pool)
        .await?;
        let at = db::format_time(now);
        let mut closed = 0;
        for id in ids {
            let id = db::parse_uuid(&id)?;
            let mut tx = db::begin(&self.pool).await?;
            // Only if still resolved: the reporter may have answered meanwhile.
            if !tickets::set_state(&mut tx, id, State::Resolved, State::Closed, &at).await? {
                continue;
            }
            tickets::update(&mut tx, id, "closed_at = ?", &[Some(at.clone())]).await?;
            tickets::add_event(
                &mut tx,
                id,
                &at,
                NewEvent {
                    actor: None,
                    kind: "auto_closed",
                    internal: false,
                    text: None,
                    data: Some(
                        json!({"days": self.confirm_days, "from": "resolved", "to": "closed"}),
                    ),
                },
            )
            .await?;
            tx.commit().await?;
            closed += 1;
        }
        Ok(closed)
    }

    /// A node changed state (from [`Nodes::watch`]): a node down with
    /// users' VMs on it opens one system incident listing them, or joins
    /// the one already open; a node back up adds a work-log line to it (see
    /// [`system`]). The event-log entry is linked by its id.
    pub async fn node_changed(&self, node: Uuid, up: bool) -> Result<(), DeskError> {
        let open: Option<String> = sqlx::query_scalar(
            "SELECT id FROM tickets WHERE channel = 'system' AND node_id = $1 AND vm_id IS NULL
             AND state NOT IN ('resolved', 'closed') ORDER BY created_at LIMIT 1",
        )
        .bind(node.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let open = open.map(|id| db::parse_uuid(&id)).transpose()?;
        let kind = if up { "node_up" } else { "node_down" };
        let event: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT id, COALESCE(node_name, ''), message FROM events WHERE node_id = $1 AND kind = $2
             ORDER BY id DESC LIMIT 1",
        )
        .bind(node.to_string())
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?;
        let (event_id, node_name, message) = event.unwrap_or_default();
        // The users whose VMs were on the node when it went down, by name.
        let affected: Vec<(String, String)> = if up {
            Vec::new()
        } else {
            sqlx::query_as(
                "SELECT DISTINCT u.id, u.username FROM vms v JOIN users u ON u.id = v.owner_id
                 WHERE v.node_id = $1 AND v.state IN ('starting', 'running', 'stopping')
                 ORDER BY u.username",
            )
            .bind(node.to_string())
            .fetch_all(&self.pool)
            .await?
        };
        let users = u64::try_from(affected.len()).unwrap_or(u64::MAX);
        let fact = if up {
            system::Fact::NodeUp
        } else {
            system::Fact::NodeDown { users }
        };
        let now = db::now();
        let usernames: Vec<&str> = affected.iter().map(|(_, n)| n.as_str()).collect();
        match system::decide(fact, open) {
            system::Decision::Nothing => Ok(()),
            system::Decision::Join(id) | system::Decision::Annotate(id) => {
                let text = if up {
                    format!("Node {node_name} answers again; check its VMs before resolving.")
                } else {
                    format!("Node {node_name} went down again: {message}")
                };
                let mut tx = db::begin(&self.pool).await?;
                tickets::add_event(
                    &mut tx,
                    id,
                    &now,
                    NewEvent::system("worklog").text(&text).data(json!({
                        "event_id": event_id,
                        "node_up": up,
                        "users_affected": users,
                    })),
                )
                .await?;
                tickets::update(&mut tx, id, "updated_at = ?", &[Some(now.clone())]).await?;
                tx.commit().await?;
                Ok(())
            }
            system::Decision::Open => {
                // Every ticket has a reporter: the first affected user (by
                // name); all of them are listed and may follow it.
                let Some((first, _)) = affected.first() else {
                    return Ok(());
                };
                let reporter = db::parse_uuid(first)?;
                let impact = Impact::of_users(users);
                let urgency = Urgency::Blocked;
                let title = format!("Node {node_name} is down ({users} users affected)");
                // The names stay in the context, which only the desk reads.
                let description = format!(
                    "The server marked node {node_name} down: {message}\nUsers affected: {users}"
                );
                let context = json!({
                    "node": {"id": node, "name": node_name, "state": "down"},
                    "users": usernames,
                    "user_ids": affected.iter().map(|(id, _)| id).collect::<Vec<_>>(),
                    "users_affected": users,
                    "event_ids": [event_id],
                    // What the UI words in the reader's language; `title`
                    // stays the English fallback (API, e-mail).
                    "system": {"kind": "node_down", "node": node_name, "users": users},
                });
                let id = self
                    .insert_system_incident(
                        SystemIncidentRow {
                            title: &title,
                            description: &description,
                            impact,
                            urgency,
                            reporter,
                            vm_id: None,
                            node_id: Some(node),
                            course_id: None,
                            template_id: None,
                            context: &context,
                            created: json!({"users_affected": users, "event_id": event_id}),
                        },
                        &now,
                    )
                    .await?;
                tracing::info!(node = %node, ticket = %id, users, "system incident opened");
                Ok(())
            }
        }
    }

    /// A VM's state changed (from [`VmManager::subscribe`]): if a start
    /// failure was just logged and not yet handled, counts its failures in
    /// the last [`system::FAILURE_WINDOW_MINUTES`]; repeated ones open one
    /// system incident for the VM (or join the open one), see [`system`].
    pub async fn vm_changed(&self, vm_id: Uuid) -> Result<(), DeskError> {
        let since = db::format_time(
            time::OffsetDateTime::now_utc()
                - time::Duration::minutes(system::FAILURE_WINDOW_MINUTES),
        );
        let failures: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, message FROM events WHERE vm_id = $1 AND kind = 'vm_start_failed' AND at >= $2
             ORDER BY id",
        )
        .bind(vm_id.to_string())
        .bind(&since)
        .fetch_all(&self.pool)
        .await?;
        let Some((latest, message)) = failures.last().cloned() else {
            return Ok(());
        };
        // Each failure is handled once, whatever else the VM does after it.
        let handled: db::Flag = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id
             WHERE t.vm_id = $1 AND t.channel = 'system' AND CAST(json_extract(e.data, '$.event_id') AS BIGINT) = $2)",
        )
        .bind(vm_id.to_string())
        .bind(latest)
        .fetch_one(&self.pool)
        .await?;
        if handled.0 {
            return Ok(());
        }
        let open: Option<String> = sqlx::query_scalar(
            "SELECT id FROM tickets WHERE channel = 'system' AND vm_id = $1
             AND state NOT IN ('resolved', 'closed') ORDER BY created_at LIMIT 1",
        )
        .bind(vm_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let open = open.map(|id| db::parse_uuid(&id)).transpose()?;
        let recent = u32::try_from(failures.len()).unwrap_or(u32::MAX);
        let now = db::now();
        match system::decide(system::Fact::StartFailed { recent }, open) {
            system::Decision::Nothing | system::Decision::Annotate(_) => Ok(()),
            system::Decision::Join(id) => {
                let text = format!("The VM failed to start again: {message}");
                let mut tx = db::begin(&self.pool).await?;
                tickets::add_event(
                    &mut tx,
                    id,
                    &now,
                    NewEvent::system("worklog")
                        .text(&text)
                        .data(json!({"event_id": latest, "failures": recent})),
                )
                .await?;
                tickets::update(&mut tx, id, "updated_at = ?", &[Some(now.clone())]).await?;
                tx.commit().await?;
                Ok(())
            }
            system::Decision::Open => {
                let vm = vms::load(&self.pool, vm_id).await?;
                let impact = Impact::User;
                let urgency = Urgency::Blocked;
                let title = format!("VM {} failed to start {recent} times", vm.name);
                let description = format!(
                    "The VM failed to start {recent} times within {} minutes. Last error: {message}",
                    system::FAILURE_WINDOW_MINUTES
                );
                let mut context = self.context(&vm, 1).await;
                context["event_ids"] = json!(failures.iter().map(|(id, _)| id).collect::<Vec<_>>());
                context["system"] = json!({"kind": "start_failed", "vm": vm.name, "count": recent});
                let id = self
                    .insert_system_incident(
                        SystemIncidentRow {
                            title: &title,
                            description: &description,
                            impact,
                            urgency,
                            reporter: vm.owner_id,
                            vm_id: Some(vm.id),
                            node_id: vm.node_id.or(vm.layer_node_id),
                            course_id: vm.course_id,
                            template_id: Some(vm.template_id),
                            context: &context,
                            created: json!({
                                "users_affected": 1,
                                "event_id": latest,
                                "failures": recent,
                            }),
                        },
                        &now,
                    )
                    .await?;
                tracing::info!(vm = %vm_id, ticket = %id, "system incident opened");
                Ok(())
            }
        }
    }

    /// A system incident about something the server itself found (a
    /// critical alert, a failed inspection item), identified by `s.key`: a
    /// ticket still open for the same key — or, for a node, the node's own
    /// open system incident (see [`Self::node_changed`]) — is joined with a
    /// work-log line; otherwise a new incident is opened, reported by the
    /// first admin (a ticket needs a reporter). `Ok(None)`: no admin yet, so
    /// nothing was written.
    pub async fn open_system_incident(
        &self,
        s: &SystemIncident<'_>,
    ) -> Result<Option<Uuid>, DeskError> {
        let open: Option<String> = sqlx::query_scalar(
            "SELECT id FROM tickets WHERE channel = 'system' AND state NOT IN ('resolved', 'closed')
             AND (json_extract(context, '$.system_key') = $1
                  OR ($2 IS NOT NULL AND node_id = $2 AND vm_id IS NULL))
             ORDER BY created_at LIMIT 1",
        )
        .bind(s.key)
        .bind(s.node_id.map(|n| n.to_string()))
        .fetch_optional(&self.pool)
        .await?;
        let now = db::now();
        if let Some(id) = open {
            let id = db::parse_uuid(&id)?;
            let mut tx = db::begin(&self.pool).await?;
            tickets::add_event(
                &mut tx,
                id,
                &now,
                NewEvent::system("worklog")
                    .text(s.description)
                    .data(json!({"system_key": s.key})),
            )
            .await?;
            tickets::update(&mut tx, id, "updated_at = ?", &[Some(now.clone())]).await?;
            tx.commit().await?;
            return Ok(Some(id));
        }
        let admin: Option<String> = sqlx::query_scalar(
            "SELECT id FROM users WHERE role = 'admin' AND disabled = 0 ORDER BY created_at, username LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(admin) = admin else {
            return Ok(None);
        };
        let reporter = db::parse_uuid(&admin)?;
        let (impact, urgency) = (Impact::Lab, Urgency::NotBlocking);
        let mut context = s.context.clone();
        context["system_key"] = json!(s.key);
        let id = self
            .insert_system_incident(
                SystemIncidentRow {
                    title: s.title,
                    description: s.description,
                    impact,
                    urgency,
                    reporter,
                    vm_id: None,
                    node_id: s.node_id,
                    course_id: None,
                    template_id: None,
                    context: &context,
                    created: json!({"system_key": s.key}),
                },
                &now,
            )
            .await?;
        tracing::info!(key = s.key, ticket = %id, "system incident opened");
        Ok(Some(id))
    }

    /// Writes a system incident and its `created` timeline entry in one
    /// transaction; `created` adds fields to that entry's data.
    async fn insert_system_incident(
        &self,
        r: SystemIncidentRow<'_>,
        now: &str,
    ) -> Result<Uuid, DeskError> {
        let priority = priority::priority(r.impact, r.urgency);
        let id = Uuid::new_v4();
        let mut tx = db::begin(&self.pool).await?;
        tickets::insert(
            &mut tx,
            &tickets::NewTicketRow {
                id,
                kind: Kind::Incident,
                title: r.title,
                description: r.description,
                priority,
                impact: r.impact,
                urgency: r.urgency,
                channel: Channel::System,
                reporter_id: r.reporter,
                created_by: r.reporter,
                vm_id: r.vm_id,
                node_id: r.node_id,
                course_id: r.course_id,
                template_id: r.template_id,
                context: r.context,
                screenshot: None,
            },
            now,
        )
        .await?;
        let mut data = json!({
            "channel": "system",
            "priority": priority.as_str(),
            "impact": r.impact.as_str(),
            "urgency": r.urgency.as_str(),
        });
        if let (Some(d), Some(extra)) = (data.as_object_mut(), r.created.as_object()) {
            d.extend(extra.clone());
        }
        tickets::add_event(&mut tx, id, now, NewEvent::system("created").data(data)).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Staff record a phone callback: who called, when, the outcome; a
    /// rating the reporter gave on the phone closes a resolved ticket.
    pub async fn callback(
        &self,
        actor: &User,
        id: Uuid,
        c: NewCallback,
    ) -> Result<TicketView, DeskError> {
        if !on_desk(actor) {
            return Err(DeskError::Forbidden(
                "this action needs the staff or admin role".into(),
            ));
        }
        let t = self.visible(actor, id).await?;
        let note = text("text", &c.text, MAX_TEXT, false)?;
        let at = match c.at.as_deref() {
            None => db::now(),
            Some(s) => {
                let when =
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .map_err(|_| DeskError::Invalid("at: an RFC 3339 time".into()))?;
                if when > time::OffsetDateTime::now_utc() + time::Duration::minutes(5) {
                    return Err(DeskError::Invalid(
                        "at: a callback cannot be in the future".into(),
                    ));
                }
                db::format_time(when)
            }
        };
        match c.rating {
            Some(r) if !(1..=5).contains(&r) => {
                return Err(DeskError::Invalid("rating must be 1 to 5".into()));
            }
            Some(_) if c.outcome != CallbackOutcome::Reached => {
                return Err(DeskError::Invalid(
                    "rating: only a reporter who was reached can give one".into(),
                ));
            }
            Some(r) => {
                let mut event = NewEvent::by(actor.id, "callback").data(json!({
                    "outcome": c.outcome.as_str(), "at": at, "rating": r,
                    "from": t.state.as_str(), "to": State::Closed.as_str(),
                }));
                if !note.is_empty() {
                    event = event.text(&note);
                }
                self.act(
                    &t,
                    Action::Confirm,
                    event,
                    "rating = CAST(? AS BIGINT), rating_comment = ?, closed_at = ?",
                    &[
                        Some(r.to_string()),
                        Some(note.clone()).filter(|n| !n.is_empty()),
                        Some(db::now()),
                    ],
                )
                .await?;
            }
            None => {
                let mut event = NewEvent::by(actor.id, "callback")
                    .data(json!({"outcome": c.outcome.as_str(), "at": at}));
                if !note.is_empty() {
                    event = event.text(&note);
                }
                self.record(id, &db::now(), "", &[], event).await?;
            }
        }
        self.view(actor, id).await
    }

    /// What `user` may do with `t` (pure; see the module doc).
    pub fn allowed(user: &User, t: &Ticket) -> Allowed {
        let desk = on_desk(user);
        let assignee = t.assignee_id == Some(user.id);
        let reporter = t.reporter_id == user.id;
        let open = t.state.is_open();
        let ok = |a: Action| tickets::next_state(t.state, a, t.assignee_id.is_some()).is_ok();
        Allowed {
            take: desk && open && !assignee,
            dispatch: user.role == Role::Admin && open,
            start: (assignee || user.role == Role::Admin) && ok(Action::StartWork),
            wait: (assignee || user.role == Role::Admin) && ok(Action::WaitForReporter),
            resolve: (assignee || user.role == Role::Admin) && ok(Action::Resolve),
            confirm: reporter && ok(Action::Confirm),
            reopen: reporter && ok(Action::Reopen),
            comment: t.state != State::Closed,
            internal: desk,
            priority: desk && open,
            callback: desk && !open,
            reply: user.role == Role::Admin && t.kind == Kind::Complaint,
            link_template: open
                && t.kind == Kind::Request
                && (desk || (reporter && user.role == Role::Teacher)),
        }
    }

    /// Files a report (see [`NewTicket`]).
    pub async fn create(&self, actor: &User, new: NewTicket) -> Result<TicketView, DeskError> {
        let title = required("title", &new.title, MAX_TITLE, true)?;
        let description = text("description", &new.description, MAX_TEXT, false)?;
        let channel = new.channel.unwrap_or(Channel::Web);
        let reporter = match (&new.on_behalf_of, channel) {
            (_, Channel::System) => {
                return Err(DeskError::Invalid(
                    "channel: system tickets are opened by the server".into(),
                ));
            }
            (None, Channel::Web) => actor.clone(),
            _ if !on_desk(actor) => {
                return Err(DeskError::Forbidden(
                    "only staff and admins enter reports for someone else".into(),
                ));
            }
            (None, _) => {
                return Err(DeskError::Invalid(
                    "on_behalf_of: whom the phone, e-mail or walk-in report is for".into(),
                ));
            }
            (Some(_), Channel::Web) => {
                return Err(DeskError::Invalid(
                    "channel: say how the report came in (phone, email or walk_in)".into(),
                ));
            }
            (Some(name), _) => {
                crate::users::find_by_usernames(&self.pool, std::slice::from_ref(name))
                    .await?
                    .0
                    .into_iter()
                    .find(|u| !u.disabled)
                    .ok_or_else(|| DeskError::Unacceptable("on_behalf_of: no such user".into()))?
            }
        };
        let mut context = json!({});
        let (mut vm_row, mut users) = (None, 1);
        if let Some(vm_id) = new.vm_id {
            // The VM must be one the reporter could see themselves.
            let vm = self
                .vms
                .get_for(&reporter, vm_id)
                .await
                .map_err(|e| match e {
                    VmError::NotFound => {
                        DeskError::Unacceptable("vm_id: no such VM of the reporter".into())
                    }
                    e => e.into(),
                })?;
            // Its live state, if its node answers; what the database knows otherwise.
            let vm = match self.vms.refresh(vm.id).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(vm = %vm.id, error = %e, "report: VM state not refreshed");
                    vm
                }
            };
            users = vms::users_affected(&self.pool, &vm).await?;
            context = self.context(&vm, users).await;
            vm_row = Some(vm);
        }
        let impact = Impact::of_users(users);
        let priority = priority::priority(impact, new.urgency);
        let shot = match (&vm_row, new.screenshot_id, new.screenshot) {
            (None, Some(_), _) => {
                return Err(DeskError::Invalid("screenshot_id needs a vm_id".into()));
            }
            (Some(vm), Some(id), _) => Some(self.claimable_shot(actor, vm.id, id).await?),
            (Some(vm), None, None | Some(true)) if vm.state == VmState::Running => {
                match self.capture(vm).await {
                    Ok((sha, _)) => Some(sha),
                    Err(e) => {
                        tracing::warn!(vm = %vm.id, error = %e, "report: no screenshot");
                        None
                    }
                }
            }
            _ => None,
        };
        let id = Uuid::new_v4();
        let now = db::now();
        let mut tx = db::begin(&self.pool).await?;
        tickets::insert(
            &mut tx,
            &tickets::NewTicketRow {
                id,
                kind: new.kind,
                title: &title,
                description: &description,
                priority,
                impact,
                urgency: new.urgency,
                channel,
                reporter_id: reporter.id,
                created_by: actor.id,
                vm_id: vm_row.as_ref().map(|v| v.id),
                node_id: vm_row.as_ref().and_then(|v| v.node_id.or(v.layer_node_id)),
                course_id: vm_row.as_ref().and_then(|v| v.course_id),
                template_id: vm_row.as_ref().map(|v| v.template_id),
                context: &context,
                screenshot: shot.as_deref(),
            },
            &now,
        )
        .await?;
        if let Some(shot_id) = new.screenshot_id {
            sqlx::query("UPDATE desk_screenshots SET ticket_id = $1 WHERE id = $2")
                .bind(id.to_string())
                .bind(shot_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tickets::add_event(
            &mut tx,
            id,
            &now,
            NewEvent::by(actor.id, "created").data(json!({
                "channel": channel.as_str(),
                "priority": priority.as_str(),
                "impact": impact.as_str(),
                "urgency": new.urgency.as_str(),
                "users_affected": users,
            })),
        )
        .await?;
        tx.commit().await?;
        self.view(actor, id).await
    }

    /// What a report carries about its VM: state, node, template, course,
    /// the last start error and recent event-log entries. Parts that cannot
    /// be read are left out rather than failing the report.
    async fn context(&self, vm: &Vm, users: u64) -> serde_json::Value {
        let node = match vm.node_id {
            Some(n) => self.nodes.get(n).await.ok(),
            None => None,
        };
        let template = crate::templates::get(&self.pool, vm.template_id).await.ok();
        let course = match vm.course_id {
            Some(c) => crate::courses::load(&self.pool, c).await.ok(),
            None => None,
        };
        let events = crate::events::recent_for(&self.pool, Some(vm.id), vm.node_id, CONTEXT_EVENTS)
            .await
            .unwrap_or_default();
        json!({
            "vm": {
                "id": vm.id,
                "name": vm.name,
                "state": vm.state.as_str(),
                "vcpus": vm.vcpus,
                "memory_mib": vm.memory_mib,
                "disk_bytes": vm.overlay_bytes,
                "last_error": vm.last_error,
                "last_started_at": vm.last_started_at,
            },
            "node": node.map(|n| json!({"id": n.id, "name": n.name, "state": n.state, "maintenance": n.maintenance})),
            "template": template.map(|t| json!({"id": t.id, "name": t.name, "os": t.os})),
            "course": course.map(|c| json!({"id": c.id, "code": c.code, "name": c.name})),
            "events": events.iter().map(|e| json!({
                "at": e.at, "kind": e.kind, "node_name": e.node_name, "message": e.message,
            })).collect::<Vec<_>>(),
            "users_affected": users,
        })
    }

    /// The tickets `user` may see, filtered.
    pub async fn list(&self, user: &User, f: &tickets::Filter) -> Result<Vec<Ticket>, DeskError> {
        if f.limit.is_some_and(|l| l == 0 || l > tickets::MAX_LIST) {
            return Err(DeskError::Invalid(format!(
                "limit must be 1 to {}",
                tickets::MAX_LIST
            )));
        }
        if let Some(a) = f.assignee_id.as_deref()
            && a != "none"
            && Uuid::parse_str(a).is_err()
        {
            return Err(DeskError::Invalid("assignee_id: a user id or none".into()));
        }
        let mut list = tickets::list(&self.pool, user, f).await?;
        self.apply_sla(&mut list, time::OffsetDateTime::now_utc())
            .await?;
        for t in &mut list {
            redact(user, t);
        }
        Ok(list)
    }

    /// A ticket `user` may see, else NotFound.
    async fn visible(&self, user: &User, id: Uuid) -> Result<Ticket, DeskError> {
        let t = tickets::load(&self.pool, id)
            .await?
            .ok_or(DeskError::NotFound)?;
        if tickets::can_view(&self.pool, user, &t).await? {
            Ok(t)
        } else {
            Err(DeskError::NotFound)
        }
    }

    /// The ticket with its timeline as `user` may see it.
    pub async fn view(&self, user: &User, id: Uuid) -> Result<TicketView, DeskError> {
        let mut ticket = self.visible(user, id).await?;
        self.apply_sla(
            std::slice::from_mut(&mut ticket),
            time::OffsetDateTime::now_utc(),
        )
        .await?;
        redact(user, &mut ticket);
        let events = tickets::events(&self.pool, id, on_desk(user)).await?;
        Ok(TicketView {
            can: Self::allowed(user, &ticket),
            ticket,
            events,
        })
    }

    /// Moves `t` by `action` and writes the timeline entry, in one transaction.
    /// `set`/`binds`: further columns to update alongside.
    async fn act(
        &self,
        t: &Ticket,
        action: Action,
        event: NewEvent<'_>,
        set: &str,
        binds: &[Option<String>],
    ) -> Result<(), DeskError> {
        let to = tickets::next_state(t.state, action, t.assignee_id.is_some())?;
        let now = db::now();
        let mut tx = db::begin(&self.pool).await?;
        if !tickets::set_state(&mut tx, t.id, t.state, to, &now).await? {
            return Err(DeskError::Changed);
        }
        if !set.is_empty() {
            tickets::update(&mut tx, t.id, set, binds).await?;
        }
        let mut event = event;
        if to != t.state && event.data.is_none() {
            event = event.data(json!({"from": t.state.as_str(), "to": to.as_str()}));
        }
        tickets::add_event(&mut tx, t.id, &now, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Logs `event` on ticket `id` at `now` and, in the same transaction,
    /// stamps `updated_at` and applies `set` (SQL assignments with `binds`,
    /// none when empty).
    async fn record(
        &self,
        id: Uuid,
        now: &str,
        set: &str,
        binds: &[Option<String>],
        event: NewEvent<'_>,
    ) -> Result<(), DeskError> {
        let mut tx = db::begin(&self.pool).await?;
        let set = if set.is_empty() {
            "updated_at = ?".to_owned()
        } else {
            format!("updated_at = ?, {set}")
        };
        let binds: Vec<Option<String>> = std::iter::once(Some(now.to_owned()))
            .chain(binds.iter().cloned())
            .collect();
        tickets::update(&mut tx, id, &set, &binds).await?;
        tickets::add_event(&mut tx, id, now, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Assigns the ticket: staff take it themselves, admins dispatch it to
    /// anyone on the desk.
    pub async fn assign(
        &self,
        actor: &User,
        id: Uuid,
        assignee_id: Uuid,
    ) -> Result<TicketView, DeskError> {
        let t = self.visible(actor, id).await?;
        match actor.role {
            Role::Admin => {}
            Role::Staff if assignee_id == actor.id => {}
            Role::Staff => {
                return Err(DeskError::Forbidden(
                    "staff take tickets themselves; only admins dispatch them to others".into(),
                ));
            }
            _ => {
                return Err(DeskError::Forbidden(
                    "this action needs the staff or admin role".into(),
                ));
            }
        }
        let assignee = crate::users::get(&self.pool, assignee_id)
            .await
            .map_err(|_| DeskError::Unacceptable("assignee_id: no such user".into()))?;
        if !on_desk(&assignee) || assignee.disabled {
            return Err(DeskError::Unacceptable(
                "assignee_id: tickets go to staff or admins".into(),
            ));
        }
        let now = db::now();
        self.act(
            &t,
            Action::Assign,
            NewEvent::by(actor.id, "assigned").data(json!({
                "assignee_id": assignee.id,
                "assignee_name": if assignee.display_name.is_empty() { &assignee.username } else { &assignee.display_name },
                "from": t.state.as_str(),
                "to": State::Assigned.as_str(),
            })),
            "assignee_id = ?, responded_at = COALESCE(responded_at, ?)",
            &[Some(assignee.id.to_string()), Some(now)],
        )
        .await?;
        self.view(actor, id).await
    }

    /// Only the assignee (or an admin) works a ticket.
    fn require_worker(actor: &User, t: &Ticket) -> Result<(), DeskError> {
        if actor.role == Role::Admin
            || (actor.role == Role::Staff && t.assignee_id == Some(actor.id))
        {
            Ok(())
        } else if on_desk(actor) {
            Err(DeskError::Forbidden(
                "only the ticket's assignee or an admin may do this; take it first".into(),
            ))
        } else {
            Err(DeskError::Forbidden(
                "this action needs the staff or admin role".into(),
            ))
        }
    }

    /// Work starts (`in_progress`) or waits for the reporter (`waiting`).
    pub async fn set_state(
        &self,
        actor: &User,
        id: Uuid,
        to: State,
        note: Option<&str>,
    ) -> Result<TicketView, DeskError> {
        let t = self.visible(actor, id).await?;
        Self::require_worker(actor, &t)?;
        let action = match to {
            State::InProgress => Action::StartWork,
            State::Waiting => Action::WaitForReporter,
            _ => {
                return Err(DeskError::Invalid(
                    "state: in_progress or waiting (resolve, confirm and reopen have their own routes)".into(),
                ));
            }
        };
        let note = note.map(|n| text("text", n, MAX_TEXT, false)).transpose()?;
        let mut event = NewEvent::by(actor.id, "state");
        if let Some(n) = note.as_deref().filter(|n| !n.is_empty()) {
            event = event.text(n);
        }
        self.act(&t, action, event, "", &[]).await?;
        self.view(actor, id).await
    }

    /// Staff override the computed priority, saying why.
    pub async fn set_priority(
        &self,
        actor: &User,
        id: Uuid,
        priority: Priority,
        reason: &str,
    ) -> Result<TicketView, DeskError> {
        if !on_desk(actor) {
            return Err(DeskError::Forbidden(
                "this action needs the staff or admin role".into(),
            ));
        }
        let t = self.visible(actor, id).await?;
        if !t.state.is_open() {
            return Err(WrongState {
                state: t.state,
                hint: "the priority of a finished ticket stays",
            }
            .into());
        }
        let reason = required("reason", reason, MAX_TEXT, false)?;
        let now = db::now();
        self.record(
            id,
            &now,
            "priority = ?",
            &[Some(priority.as_str().to_owned())],
            NewEvent::by(actor.id, "priority")
                .text(&reason)
                .data(json!({"from": t.priority.as_str(), "to": priority.as_str()})),
        )
        .await?;
        self.view(actor, id).await
    }

    /// A reply, an internal note or a work-log entry. The reporter's reply
    /// to a ticket waiting for them puts it back in progress.
    pub async fn comment(
        &self,
        actor: &User,
        id: Uuid,
        c: NewComment,
    ) -> Result<TicketView, DeskError> {
        let t = self.visible(actor, id).await?;
        let body = required("text", &c.text, MAX_TEXT, false)?;
        if (c.internal || c.worklog) && !on_desk(actor) {
            return Err(DeskError::Forbidden(
                "internal notes and work-log entries are for staff and admins".into(),
            ));
        }
        if t.state == State::Closed {
            return Err(WrongState {
                state: t.state,
                hint: "reopen it or file a new report",
            }
            .into());
        }
        let kind = if c.worklog { "worklog" } else { "comment" };
        let event = NewEvent::by(actor.id, kind)
            .text(&body)
            .internal(c.internal);
        if actor.id == t.reporter_id && t.state == State::Waiting {
            self.act(&t, Action::ReporterReplied, event, "", &[])
                .await?;
        } else {
            let now = db::now();
            // A public answer from the desk is its first response.
            let responded = on_desk(actor) && !c.internal && actor.id != t.reporter_id;
            self.record(
                id,
                &now,
                "responded_at = CASE WHEN CAST(? AS BIGINT) <> 0 THEN COALESCE(responded_at, ?) ELSE responded_at END",
                &[Some(i64::from(responded).to_string()), Some(now.clone())],
                event,
            )
            .await?;
        }
        self.view(actor, id).await
    }

    /// The assignee (or an admin) resolves the ticket, saying how; the
    /// reporter is then asked to confirm or reopen.
    pub async fn resolve(
        &self,
        actor: &User,
        id: Uuid,
        resolution: &str,
    ) -> Result<TicketView, DeskError> {
        let t = self.visible(actor, id).await?;
        Self::require_worker(actor, &t)?;
        let resolution = required("resolution", resolution, MAX_TEXT, false)?;
        let now = db::now();
        self.act(
            &t,
            Action::Resolve,
            NewEvent::by(actor.id, "resolved").text(&resolution),
            "resolution = ?, resolved_at = ?, responded_at = COALESCE(responded_at, ?)",
            &[Some(resolution.clone()), Some(now.clone()), Some(now)],
        )
        .await?;
        self.view(actor, id).await
    }

    fn require_reporter(actor: &User, t: &Ticket) -> Result<(), DeskError> {
        if t.reporter_id == actor.id {
            Ok(())
        } else {
            Err(DeskError::Forbidden(
                "only the ticket's reporter may do this".into(),
            ))
        }
    }

    /// The reporter confirms the fix and rates it (1–5); the ticket closes.
    pub async fn confirm(
        &self,
        actor: &User,
        id: Uuid,
        rating: u8,
        comment: Option<&str>,
    ) -> Result<TicketView, DeskError> {
        let t = self.visible(actor, id).await?;
        Self::require_reporter(actor, &t)?;
        if !(1..=5).contains(&rating) {
            return Err(DeskError::Invalid("rating must be 1 to 5".into()));
        }
        let comment = comment
            .map(|c| text("comment", c, MAX_TEXT, false))
            .transpose()?
            .filter(|c| !c.is_empty());
        let now = db::now();
        let mut event = NewEvent::by(actor.id, "confirmed").data(json!({
            "rating": rating, "from": t.state.as_str(), "to": State::Closed.as_str(),
        }));
        if let Some(c) = comment.as_deref() {
            event = event.text(c);
        }
        self.act(
            &t,
            Action::Confirm,
            event,
            "rating = CAST(? AS BIGINT), rating_comment = ?, closed_at = ?",
            &[Some(rating.to_string()), comment.clone(), Some(now)],
        )
        .await?;
        self.view(actor, id).await
    }

    /// The reporter says it is not fixed: back to its assignee (counts
    /// against first-time fix).
    pub async fn reopen(
        &self,
        actor: &User,
        id: Uuid,
        reason: &str,
    ) -> Result<TicketView, DeskError> {
        let t = self.visible(actor, id).await?;
        Self::require_reporter(actor, &t)?;
        let reason = required("reason", reason, MAX_TEXT, false)?;
        self.act(
            &t,
            Action::Reopen,
            NewEvent::by(actor.id, "reopened").text(&reason),
            "reopen_count = reopen_count + 1, resolved_at = NULL, resolution = NULL",
            &[],
        )
        .await?;
        self.view(actor, id).await
    }

    /// An admin's written reply to a complaint (see [`requests`]).
    pub async fn reply(&self, actor: &User, id: Uuid, text: &str) -> Result<TicketView, DeskError> {
        if actor.role != Role::Admin {
            return Err(DeskError::Forbidden("an admin answers complaints".into()));
        }
        let t = self.visible(actor, id).await?;
        if t.kind != Kind::Complaint {
            return Err(DeskError::Invalid(
                "only a complaint gets a formal reply; comment instead".into(),
            ));
        }
        let text = required("text", text, MAX_TEXT, false)?;
        requests::write_reply(&self.pool, actor.id, id, &text).await?;
        self.view(actor, id).await
    }

    /// Links a service request to the template it leads to: sealing that
    /// template resolves it (see [`requests`]). Staff, admins, or the
    /// teacher who asked.
    pub async fn link_template(
        &self,
        actor: &User,
        id: Uuid,
        template_id: Uuid,
    ) -> Result<TicketView, DeskError> {
        let t = self.visible(actor, id).await?;
        if t.kind != Kind::Request {
            return Err(DeskError::Invalid(
                "only a service request leads to a template".into(),
            ));
        }
        if !t.state.is_open() {
            return Err(WrongState {
                state: t.state,
                hint: "a finished request keeps what it led to",
            }
            .into());
        }
        if !Self::allowed(actor, &t).link_template {
            return Err(DeskError::Forbidden(
                "staff, admins or the teacher who asked link a request to a template".into(),
            ));
        }
        requests::link_template(&self.pool, actor.id, id, template_id).await?;
        self.view(actor, id).await
    }

    /// The periodic catch-up of [`requests::resolve_sealed`] at `now`.
    pub async fn resolve_sealed_requests(
        &self,
        now: time::OffsetDateTime,
    ) -> Result<u64, DeskError> {
        requests::resolve_sealed(&self.pool, now).await
    }

    /// Who tickets can be assigned to: staff and admins.
    pub async fn members(&self, actor: &User) -> Result<Vec<DeskMember>, DeskError> {
        if !on_desk(actor) {
            return Err(DeskError::Forbidden(
                "this action needs the staff or admin role".into(),
            ));
        }
        let users = crate::users::list(&self.pool).await?;
        Ok(users
            .into_iter()
            .filter(|u| on_desk(u) && !u.disabled)
            .map(|u| DeskMember {
                id: u.id,
                username: u.username,
                display_name: u.display_name,
                role: u.role,
            })
            .collect())
    }

    // ---------------------------------------------------------- knowledge base

    pub async fn kb_search(
        &self,
        actor: &User,
        s: &kb::Search,
    ) -> Result<Vec<kb::Article>, DeskError> {
        kb::search(&self.pool, actor, s).await
    }

    pub async fn kb_article(&self, actor: &User, id: Uuid) -> Result<kb::Article, DeskError> {
        kb::read(&self.pool, actor, id).await
    }

    pub async fn kb_update(
        &self,
        actor: &User,
        id: Uuid,
        edit: kb::ArticleEdit,
    ) -> Result<kb::Article, DeskError> {
        kb::update(&self.pool, actor, id, edit).await
    }

    pub async fn kb_retire(&self, actor: &User, id: Uuid) -> Result<kb::Article, DeskError> {
        kb::retire(&self.pool, actor, id).await
    }

    pub async fn kb_revisions(
        &self,
        actor: &User,
        id: Uuid,
    ) -> Result<Vec<kb::Revision>, DeskError> {
        kb::revisions(&self.pool, actor, id).await
    }

    pub async fn kb_create(
        &self,
        actor: &User,
        new: kb::NewArticle,
    ) -> Result<kb::Article, DeskError> {
        kb::create(&self.pool, actor, new).await
    }

    pub async fn kb_helped(
        &self,
        user: &User,
        id: Uuid,
        vm_id: Option<Uuid>,
    ) -> Result<kb::Article, DeskError> {
        kb::helped(&self.pool, user, id, vm_id).await
    }

    // ---------------------------------------------------------- screenshots

    /// Captures the running VM's screen as PNG and stores it; returns its
    /// SHA-256 and size.
    async fn capture(&self, vm: &Vm) -> Result<(String, u64), DeskError> {
        let (Some(node), VmState::Running) = (vm.node_id, vm.state) else {
            return Err(DeskError::VmNotRunning);
        };
        let conn = self.nodes.conn(node).await?;
        let domain = self.vms.domain_name(vm.id);
        let (mime, raw) = conn
            .screenshot(&domain, screenshot::MAX_RAW_BYTES)
            .await
            .map_err(|e| match e {
                LibvirtError::TooLarge(_) => DeskError::Shot(ShotError::TooLarge),
                e => e.into(),
            })?
            .ok_or(DeskError::VmNotRunning)?;
        let shots = self.shots.clone();
        let stored = tokio::task::spawn_blocking(move || -> Result<(String, u64), DeskError> {
            let png = screenshot::to_png(&mime, &raw)?;
            let sha = shots.put(&png)?;
            Ok((sha, png.len() as u64))
        })
        .await
        .map_err(|e| DeskError::Io(std::io::Error::other(e.to_string())))??;
        Ok(stored)
    }

    /// Takes a screenshot of a VM `user` may reach, for a report about to
    /// be written (previewed, then kept or dropped).
    pub async fn take_screenshot(&self, user: &User, vm_id: Uuid) -> Result<Shot, DeskError> {
        let vm = self.vms.get_for(user, vm_id).await?;
        let vm = self.vms.refresh(vm.id).await?;
        let (sha, bytes) = self.capture(&vm).await?;
        let shot = Shot {
            id: Uuid::new_v4(),
            vm_id: vm.id,
            bytes,
            sha256: sha,
            taken_at: db::now(),
        };
        sqlx::query(
            "INSERT INTO desk_screenshots (id, sha256, bytes, taken_by, vm_id, taken_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(shot.id.to_string())
        .bind(&shot.sha256)
        .bind(i64::try_from(shot.bytes).unwrap_or(i64::MAX))
        .bind(user.id.to_string())
        .bind(vm.id.to_string())
        .bind(&shot.taken_at)
        .execute(&self.pool)
        .await?;
        Ok(shot)
    }

    /// A screenshot the actor took for `vm_id` and has not sent yet: its SHA-256.
    async fn claimable_shot(
        &self,
        actor: &User,
        vm_id: Uuid,
        id: Uuid,
    ) -> Result<String, DeskError> {
        let sha: Option<String> = sqlx::query_scalar(
            "SELECT sha256 FROM desk_screenshots WHERE id = $1 AND taken_by = $2 AND vm_id = $3 AND ticket_id IS NULL",
        )
        .bind(id.to_string())
        .bind(actor.id.to_string())
        .bind(vm_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        sha.ok_or_else(|| {
            DeskError::Unacceptable("screenshot_id: no unsent screenshot of this VM by you".into())
        })
    }

    /// The PNG of a screenshot the user took and has not sent.
    pub async fn screenshot(&self, user: &User, id: Uuid) -> Result<Vec<u8>, DeskError> {
        let sha: Option<String> = sqlx::query_scalar(
            "SELECT sha256 FROM desk_screenshots WHERE id = $1 AND taken_by = $2",
        )
        .bind(id.to_string())
        .bind(user.id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        self.read_shot(sha.as_deref()).await
    }

    /// Drops a screenshot the user took and has not sent.
    pub async fn drop_screenshot(&self, user: &User, id: Uuid) -> Result<(), DeskError> {
        let sha: Option<String> = sqlx::query_scalar(
            "DELETE FROM desk_screenshots WHERE id = $1 AND taken_by = $2 AND ticket_id IS NULL RETURNING sha256",
        )
        .bind(id.to_string())
        .bind(user.id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let sha = sha.ok_or(DeskError::NotFound)?;
        self.remove_if_unused(&sha).await
    }

    /// The screenshot attached to a ticket the user may see.
    pub async fn ticket_screenshot(&self, user: &User, id: Uuid) -> Result<Vec<u8>, DeskError> {
        let t = self.visible(user, id).await?;
        self.read_shot(t.screenshot.as_deref()).await
    }

    async fn read_shot(&self, sha: Option<&str>) -> Result<Vec<u8>, DeskError> {
        let path = sha
            .and_then(|s| self.shots.path(s))
            .ok_or(DeskError::NotFound)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DeskError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the file of `sha` unless a ticket or another screenshot uses it.
    async fn remove_if_unused(&self, sha: &str) -> Result<(), DeskError> {
        let used: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM desk_screenshots WHERE sha256 = $1) + (SELECT COUNT(*) FROM tickets WHERE screenshot = $1)",
        )
        .bind(sha)
        .fetch_one(&self.pool)
        .await?;
        if used == 0 {
            let shots = self.shots.clone();
            let sha = sha.to_owned();
            tokio::task::spawn_blocking(move || shots.remove(&sha))
                .await
                .map_err(|e| DeskError::Io(std::io::Error::other(e.to_string())))??;
        }
        Ok(())
    }

    /// Drops screenshots taken for reports that were never sent, taken
    /// more than [`UNCLAIMED_SHOT_HOURS`] before `now`, and the files of
    /// the store no row names, modified before the same bound (the desk's
    /// periodic pass and start-up run it). Returns how many rows and files
    /// went.
    pub async fn sweep_screenshots(
        &self,
        now: time::OffsetDateTime,
    ) -> Result<(u64, u64), DeskError> {
        let cutoff = now - time::Duration::hours(UNCLAIMED_SHOT_HOURS);
        let gone: Vec<String> = sqlx::query_scalar(
            "DELETE FROM desk_screenshots WHERE ticket_id IS NULL AND taken_at < $1 RETURNING sha256",
        )
        .bind(db::format_time(cutoff))
        .fetch_all(&self.pool)
        .await?;
        let rows = gone.len() as u64;
        for sha in gone {
            self.remove_if_unused(&sha).await?;
        }
        let known: std::collections::HashSet<String> = sqlx::query_scalar(
            "SELECT sha256 FROM desk_screenshots UNION SELECT screenshot FROM tickets WHERE screenshot IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .collect();
        let shots = self.shots.clone();
        let cutoff = std::time::SystemTime::from(cutoff);
        let files = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let stray = screenshot::stray_files(&shots.files()?, &known, cutoff);
            for name in &stray {
                shots.remove_file(name)?;
            }
            Ok(stray.len() as u64)
        })
        .await
        .map_err(|e| DeskError::Io(std::io::Error::other(e.to_string())))??;
        if rows + files > 0 {
            tracing::info!(
                rows,
                files,
                "removed screenshots never attached to a report"
            );
        }
        Ok((rows, files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confirm_cutoff_is_the_configured_days_back() {
        let now = time::macros::datetime!(2026-03-10 12:00 UTC);
        assert_eq!(
            confirm_cutoff(now, 7),
            time::macros::datetime!(2026-03-03 12:00 UTC)
        );
        assert_eq!(
            confirm_cutoff(now, 1),
            time::macros::datetime!(2026-03-09 12:00 UTC)
        );
    }
}
