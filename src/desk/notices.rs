//! The desk's notifications: who hears of what happened to a ticket, in-app
//! (the bell), by e-mail and by webhook, per each user's settings.
//!
//! The tickets' timelines (`ticket_events`) are the outbox: every desk
//! happening is already a row there, written in the transaction of the
//! change. [`Notices::dispatch`] reads the rows past a persisted cursor,
//! decides the recipients ([`recipients`], pure), and in one transaction
//! writes the in-app notifications, the e-mail and webhook deliveries the
//! recipients' settings ask for, and the new cursor. [`Notices::deliver`]
//! then sends the deliveries that are due; a failed send is retried later
//! ([`retry_at`], pure) and never touches the in-app row.
//!
//! Invariants:
//! - nobody is notified of their own action;
//! - an internal entry (a staff note) only ever reaches staff and admins;
//! - a disabled user gets nothing;
//! - messages are rendered in the recipient's language (their settings), and
//!   in-app ones in the reader's language when shown;
//! - a webhook URL carries a token: it is never logged (errors name the
//!   host), and only admins may point theirs anywhere; everyone else is
//!   held to the URL prefixes the server allows (`--notify-webhook-allow`),
//!   so the server cannot be made to post into the lab's internal network.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::Role;
use crate::db::{self, Pool};
use crate::desk::notify::{
    AlertChange, AlertRef, CourseRef, Destination, Event, EventKind, Lang, Notifier, NotifyError,
    TicketRef, WebhookFormat, WebhookTarget, render,
};
use crate::users::User;

/// Timeline entries handled per dispatch pass (the rest wait for the next).
const DISPATCH_BATCH: i64 = 500;
/// Deliveries sent per pass.
const DELIVER_BATCH: i64 = 50;
/// Sends of one delivery before it is given up.
pub const MAX_ATTEMPTS: u32 = 8;
/// How often the background loop runs both passes.
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(3);
/// Longest comment excerpt a notification carries, in characters.
const EXCERPT_CHARS: usize = 500;
/// Longest e-mail address accepted in the settings.
const MAX_EMAIL: usize = 254;

#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("no such notification")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error(
        "this webhook URL is not one the server allows; ask an administrator for the allowed addresses"
    )]
    WebhookNotAllowed,
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

// ---------------------------------------------------------------- preferences

/// The channels of one event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channels {
    pub in_app: bool,
    /// Only with an e-mail address set (and a mail server configured).
    pub email: bool,
    /// Only with a webhook URL set.
    pub webhook: bool,
}

impl Default for Channels {
    fn default() -> Self {
        Self {
            in_app: true,
            email: true,
            webhook: true,
        }
    }
}

/// Per event kind, which channels a user wants (every one by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prefs {
    pub assigned: Channels,
    pub commented: Channels,
    pub escalated: Channels,
    pub resolved: Channels,
    pub callback: Channels,
    /// Alerts of the lab's monitoring (only staff and admins receive them).
    pub alert: Channels,
    /// A course of theirs ends soon (only students receive them).
    pub term: Channels,
}

impl Prefs {
    pub fn get(&self, kind: EventKind) -> Channels {
        match kind {
            EventKind::Assigned => self.assigned,
            EventKind::Commented => self.commented,
            EventKind::Escalated => self.escalated,
            EventKind::Resolved => self.resolved,
            EventKind::Callback => self.callback,
            EventKind::Alert => self.alert,
            EventKind::Term => self.term,
        }
    }
}

/// A user's notification settings as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub lang: Lang,
    pub email: Option<String>,
    pub webhook: Option<WebhookTarget>,
    pub prefs: Prefs,
}

/// Where one notification of `kind` goes for a user with `s` (pure): the
/// in-app row, and the outside channels they chose and can receive.
/// `mail`: a mail server is configured.
pub fn channels_for(s: &Settings, kind: EventKind, mail: bool) -> (bool, Vec<Destination>) {
    let c = s.prefs.get(kind);
    let mut out = Vec::new();
    if c.email
        && mail
        && let Some(address) = &s.email
    {
        out.push(Destination::Email {
            address: address.clone(),
            lang: s.lang,
        });
    }
    if c.webhook
        && let Some(target) = &s.webhook
    {
        out.push(Destination::Webhook {
            target: target.clone(),
            lang: s.lang,
        });
    }
    (c.in_app, out)
}

/// Whether a non-admin may post to `url`: it must start with one of the
/// allowed prefixes, compared on the parsed URL (so `https://ok.example@evil`
/// or a different port cannot pass as `https://ok.example/`).
pub fn webhook_allowed(url: &reqwest::Url, allowed: &[String]) -> bool {
    allowed.iter().any(|prefix| {
        let Ok(p) = reqwest::Url::parse(prefix) else {
            return false;
        };
        p.scheme() == url.scheme()
            && p.host_str() == url.host_str()
            && p.port_or_known_default() == url.port_or_known_default()
            && url.username().is_empty()
            && url.password().is_none()
            && url.path().starts_with(p.path())
    })
}

/// When to try a delivery again after `attempts` failed sends (pure): one
/// minute, doubling, at most an hour apart; `None` once [`MAX_ATTEMPTS`]
/// sends failed (it is given up).
pub fn retry_at(attempts: u32, failed_at: OffsetDateTime) -> Option<OffsetDateTime> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let wait = (60i64 << attempts.saturating_sub(1).min(10)).min(3600);
    Some(failed_at + time::Duration::seconds(wait))
}

// ---------------------------------------------------------------- recipients

/// Who is around a ticket when one of its timeline entries is dispatched.
#[derive(Debug, Clone, Default)]
pub struct Around {
    pub reporter: Uuid,
    pub assignee: Option<Uuid>,
    /// The teacher of the ticket's course.
    pub teacher: Option<Uuid>,
    /// Staff members (enabled).
    pub staff: Vec<Uuid>,
    /// Admins (enabled).
    pub admins: Vec<Uuid>,
}

/// One timeline entry, as the dispatcher reads it.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub kind: &'a str,
    pub actor: Option<Uuid>,
    pub internal: bool,
    pub data: &'a Value,
}

/// What a timeline entry notifies, and to whom (pure). `None` for entries
/// nobody is notified of (a report filed, a priority changed…).
///
/// - `assigned`: the new assignee;
/// - `comment`, `worklog`, `reopened`, `reply` (to a complaint): the
///   reporter, the assignee and the course's teacher;
/// - `resolved`: the reporter;
/// - `callback`: the assignee;
/// - `escalated`: as the step says (assignee — the whole desk while nobody
///   has the ticket —, the desk, or the admins); a breach also reaches the
///   admins and the assignee.
///
/// Then: never the actor, internal entries only to staff and admins, each
/// person once.
pub fn recipients(e: &Entry<'_>, a: &Around) -> Option<(EventKind, Vec<Uuid>)> {
    let uuid_at = |key: &str| {
        e.data
            .get(key)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
    };
    let (kind, mut people): (EventKind, Vec<Uuid>) = match e.kind {
        "assigned" => (
            EventKind::Assigned,
            uuid_at("assignee_id").into_iter().collect(),
        ),
        "comment" | "worklog" | "reopened" | "reply" => (
            EventKind::Commented,
            [Some(a.reporter), a.assignee, a.teacher]
                .into_iter()
                .flatten()
                .collect(),
        ),
        "resolved" => (EventKind::Resolved, vec![a.reporter]),
        "callback" => (EventKind::Callback, a.assignee.into_iter().collect()),
        "escalated" => {
            let breach = e.data.get("breach").and_then(Value::as_bool) == Some(true);
            let mut people = match e.data.get("notify").and_then(Value::as_str) {
                Some("admins") => a.admins.clone(),
                Some("desk") => a.staff.clone(),
                _ => match a.assignee {
                    Some(x) => vec![x],
                    None => a.staff.clone(),
                },
            };
            if breach {
                people.extend(a.assignee);
                people.extend(a.admins.iter().copied());
            }
            (EventKind::Escalated, people)
        }
        _ => return None,
    };
    let desk = |u: &Uuid| a.staff.contains(u) || a.admins.contains(u);
    let mut seen = std::collections::HashSet::new();
    people.retain(|u| Some(*u) != e.actor && (!e.internal || desk(u)) && seen.insert(*u));
    Some((kind, people))
}

/// Cuts user text to `max` characters (an excerpt; the ticket has it whole).
fn excerpt(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        s.to_owned()
    }
}

/// The message of a timeline entry (pure; `actor`: the actor's name);
/// `None` for a kind no timeline entry has (alerts and the end of a term
/// come from their own outboxes).
fn event_of(kind: EventKind, ticket: TicketRef, actor: &str, row: &RawEntry) -> Option<Event> {
    let text = row.text.clone().unwrap_or_default();
    let data: Value = row
        .data
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(Value::Null);
    let by = actor.to_owned();
    Some(match kind {
        EventKind::Alert | EventKind::Term => return None,
        EventKind::Assigned => Event::Assigned { ticket, by },
        EventKind::Commented => Event::Commented {
            ticket,
            author: by,
            excerpt: excerpt(&text, EXCERPT_CHARS),
        },
        EventKind::Resolved => Event::Resolved {
            ticket,
            by,
            resolution: excerpt(&text, EXCERPT_CHARS),
        },
        EventKind::Callback => Event::Callback {
            ticket,
            by,
            outcome: data
                .get("outcome")
                .and_then(Value::as_str)
                .map(|o| {
                    if text.is_empty() {
                        o.to_owned()
                    } else {
                        format!("{o}: {}", excerpt(&text, EXCERPT_CHARS))
                    }
                })
                .unwrap_or_default(),
        },
        EventKind::Escalated => Event::Escalated {
            ticket,
            clock: serde_json::from_value(data["clock"].clone())
                .unwrap_or(crate::desk::sla::Clock::Resolution),
            percent: data["percent"]
                .as_u64()
                .and_then(|p| u8::try_from(p).ok())
                .unwrap_or(100),
            breach: data["breach"].as_bool().unwrap_or(false),
            due_at: data["due_at"].as_str().and_then(|s| {
                OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            }),
        },
    })
}

/// Which outbox an event came from, and what it is about.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    Ticket(&'a str),
    Alert(&'a str),
    /// A course's end, told to one student.
    Term(&'a str),
}

/// One event on its way to its recipients.
struct Outgoing<'a> {
    source: Source<'a>,
    event_id: i64,
    at: &'a str,
    event: &'a Event,
    server_hooks: bool,
}

#[derive(sqlx::FromRow)]
struct AlertRow {
    id: i64,
    alert_id: String,
    at: String,
    change: String,
    level: String,
    rule: String,
    subject: String,
    value: Option<String>,
    cause: Option<String>,
}

fn alert_change(s: &str) -> Option<AlertChange> {
    [
        AlertChange::Fired,
        AlertChange::Escalated,
        AlertChange::Resolved,
    ]
    .into_iter()
    .find(|c| {
        serde_json::to_value(c)
            .ok()
            .as_ref()
            .and_then(Value::as_str)
            == Some(s)
    })
}

/// Who hears of an alert at `level` (pure): warnings and critical alerts go
/// to the whole desk (staff and admins), each person once; `info` alerts
/// only to the alerts page. A resolution is told to those its level reached.
pub fn alert_recipients(level: &str, staff: &[Uuid], admins: &[Uuid]) -> Vec<Uuid> {
    if !matches!(level, "warning" | "critical") {
        return Vec::new();
    }
    let mut seen = std::collections::HashSet::new();
    staff
        .iter()
        .chain(admins)
        .copied()
        .filter(|u| seen.insert(*u))
        .collect()
}

/// An alert's change, for the desk's outbox.
#[derive(Debug, Clone)]
pub struct AlertNotice<'a> {
    pub alert_id: Uuid,
    /// Unix seconds (the alert loop's clock).
    pub at: i64,
    pub change: AlertChange,
    /// `info`, `warning` or `critical`: the level reached (for a
    /// resolution, the level it had).
    pub level: &'a str,
    pub rule: &'a str,
    pub subject: &'a str,
    pub value: Option<f64>,
    pub cause: Option<&'a str>,
}

/// Puts an alert's change into the desk's outbox; the next dispatch pass
/// tells the desk (the alert loop calls this, so the alert module needs
/// nothing of the notifications but this).
pub async fn queue_alert(pool: &Pool, n: &AlertNotice<'_>) -> Result<(), sqlx::Error> {
    let at = OffsetDateTime::from_unix_timestamp(n.at).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let change = serde_json::to_value(n.change)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    sqlx::query(
        "INSERT INTO alert_notices (alert_id, at, change, level, rule, subject, value, cause)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(n.alert_id.to_string())
    .bind(db::format_time(at))
    .bind(change)
    .bind(n.level)
    .bind(n.rule)
    .bind(n.subject)
    .bind(n.value.map(|v| format!("{v:.1}")))
    .bind(n.cause)
    .execute(pool)
    .await?;
    Ok(())
}

/// A course's end, to tell one student (the term loop's selection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermEnding {
    pub user_id: Uuid,
    pub course_id: Uuid,
    pub ends_at: OffsetDateTime,
    /// `None` while an admin holds the course or the student.
    pub download_until: Option<OffsetDateTime>,
}

/// Puts the end of a term into the desk's outbox, once per student, course
/// and end date (the unique key: a second pass, or a restart, inserts
/// nothing); the next dispatch pass tells each student. Returns how many
/// were new. The term loop calls this, so it needs nothing of the
/// notifications but this and [`terms_told`].
pub async fn queue_terms(
    pool: &Pool,
    endings: &[TermEnding],
    now: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    if endings.is_empty() {
        return Ok(0);
    }
    let mut tx = db::begin(pool).await?;
    let mut new = 0;
    for e in endings {
        new += sqlx::query(
            "INSERT INTO term_notices (user_id, course_id, ends_at, download_until, at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(e.user_id.to_string())
        .bind(e.course_id.to_string())
        .bind(db::format_time(e.ends_at))
        .bind(e.download_until.map(db::format_time))
        .bind(db::format_time(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(new)
}

/// The (student, course, end) already told, for the courses not archived
/// yet (the only ones the term loop still tells).
pub async fn terms_told(pool: &Pool) -> Result<Vec<(Uuid, Uuid, OffsetDateTime)>, sqlx::Error> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT t.user_id, t.course_id, t.ends_at FROM term_notices t
         JOIN courses c ON c.id = t.course_id WHERE c.archived_at IS NULL",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (user, course, ends_at) in rows {
        let Ok(end) =
            OffsetDateTime::parse(&ends_at, &time::format_description::well_known::Rfc3339)
        else {
            continue;
        };
        out.push((db::parse_uuid(&user)?, db::parse_uuid(&course)?, end));
    }
    Ok(out)
}

#[derive(sqlx::FromRow)]
struct TermRow {
    id: i64,
    user_id: String,
    course_id: String,
    code: String,
    name: String,
    ends_at: String,
    download_until: Option<String>,
    at: String,
}

struct RawEntry {
    id: i64,
    ticket_id: String,
    at: String,
    actor_id: Option<String>,
    actor_name: Option<String>,
    kind: String,
    internal: bool,
    text: Option<String>,
    data: Option<String>,
}

// ---------------------------------------------------------------- the service

/// The server-wide settings (from `Config`).
#[derive(Debug, Clone)]
pub struct NoticeConfig {
    /// The URL users reach pvce at: links in messages.
    pub public_url: Option<String>,
    /// Webhooks that hear of every notified event (once per event).
    pub hooks: Vec<WebhookTarget>,
    /// Their language.
    pub hooks_lang: Lang,
    /// URL prefixes non-admins may point their own webhook at.
    pub allowed_webhooks: Vec<String>,
    /// The lab's wall-clock offset: dates in messages are shown in it.
    pub lab_offset: time::UtcOffset,
}

#[derive(Debug)]
pub struct Notices {
    pool: Pool,
    notifier: Notifier,
    mail: bool,
    config: NoticeConfig,
    /// One pass at a time: the loop and a test calling a pass directly
    /// must not both move the cursor.
    running: tokio::sync::Mutex<()>,
}

/// One in-app notification as the API shows it.
#[derive(Debug, Serialize)]
pub struct Notice {
    pub id: i64,
    /// The ticket it is about (`None` for an alert's or a term's).
    pub ticket_id: Option<Uuid>,
    pub ticket_number: Option<String>,
    /// The course whose end it tells (a term's only).
    pub course_id: Option<Uuid>,
    pub kind: EventKind,
    /// The one-line subject in the asked language.
    pub subject: String,
    /// The plain-text message.
    pub text: String,
    pub created_at: String,
    pub read: bool,
}

/// A page of notifications and how many are unread in all.
#[derive(Debug, Serialize)]
pub struct Page {
    pub unread: i64,
    pub items: Vec<Notice>,
}

/// `GET /api/me/notifications`'s query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only unread ones.
    #[serde(default)]
    pub unread: bool,
    /// At most this many (1..=100, 20 when omitted).
    pub limit: Option<u32>,
    /// Older than this notification id (paging).
    pub before: Option<i64>,
    /// The language to render them in (`zh-CN` or `en`; the settings' otherwise).
    pub lang: Option<String>,
}

/// The settings as the API shows and takes them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// `zh-CN` or `en`: the language of e-mails and webhooks.
    pub lang: Lang,
    pub email: Option<String>,
    pub webhook_url: Option<String>,
    #[serde(default)]
    pub webhook_format: WebhookFormat,
    #[serde(default)]
    pub events: Prefs,
}

/// What the settings page also needs to know.
#[derive(Debug, Serialize)]
pub struct SettingsView {
    #[serde(flatten)]
    pub settings: SettingsBody,
    /// A mail server is configured (else e-mail is never sent).
    pub email_available: bool,
    /// The viewer may use any http(s) webhook URL (admins).
    pub webhook_any_url: bool,
    /// Otherwise, the URL prefixes allowed.
    pub webhook_allowed: Vec<String>,
}

impl Notices {
    pub fn new(pool: Pool, notifier: Notifier, mail: bool, config: NoticeConfig) -> Self {
        Self {
            pool,
            notifier,
            mail,
            config,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Both passes at `now` (the background loop's; tests call it directly).
    pub async fn run_once(&self, now: OffsetDateTime) -> Result<(), NoticeError> {
        self.dispatch(now).await?;
        self.deliver(now).await?;
        Ok(())
    }

    /// Reads the timeline past the cursor and writes notifications and
    /// deliveries; returns how many entries it handled.
    pub async fn dispatch(&self, now: OffsetDateTime) -> Result<u64, NoticeError> {
        let _one = self.running.lock().await;
        // Anything to do? Asked outside the transaction: a pass with nothing
        // waiting writes nothing.
        let waiting: db::Flag = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM ticket_events
                            WHERE id > (SELECT last_event_id FROM notify_cursor WHERE id = 1))
                 OR EXISTS (SELECT 1 FROM alert_notices
                            WHERE id > (SELECT last_alert_notice_id FROM notify_cursor WHERE id = 1))
                 OR EXISTS (SELECT 1 FROM term_notices
                            WHERE id > (SELECT last_term_notice_id FROM notify_cursor WHERE id = 1))",
        )
        .fetch_one(&self.pool)
        .await?;
        if !waiting.0 {
            return Ok(0);
        }
        let mut tx = db::begin(&self.pool).await?;
        // Take the write lock first (waiting like any write): a transaction
        // that reads, then writes, fails at once ("database is locked") when
        // another writer committed in between.
        sqlx::query("UPDATE notify_cursor SET last_event_id = last_event_id WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let cursor: i64 =
            sqlx::query_scalar("SELECT last_event_id FROM notify_cursor WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(0);
        let rows = sqlx::query(
            "SELECT e.id, e.ticket_id, e.at, e.actor_id, COALESCE(NULLIF(u.display_name, ''), u.username) AS actor_name,
                    e.kind, e.internal, e.text, e.data
             FROM ticket_events e LEFT JOIN users u ON u.id = e.actor_id
             WHERE e.id > $1 ORDER BY e.id LIMIT $2",
        )
        .bind(cursor)
        .bind(DISPATCH_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let entries = rows
            .iter()
            .map(|r| {
                Ok(RawEntry {
                    id: r.try_get("id")?,
                    ticket_id: r.try_get("ticket_id")?,
                    at: r.try_get("at")?,
                    actor_id: r.try_get("actor_id")?,
                    actor_name: r.try_get("actor_name")?,
                    kind: r.try_get("kind")?,
                    internal: r.try_get::<i64, _>("internal")? != 0,
                    text: r.try_get("text")?,
                    data: r.try_get("data")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let desk: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, role FROM users WHERE role IN ('staff', 'admin') AND disabled = 0",
        )
        .fetch_all(&mut *tx)
        .await?;
        let ids = |role: &str| -> Vec<Uuid> {
            desk.iter()
                .filter(|(_, r)| r == role)
                .filter_map(|(id, _)| Uuid::parse_str(id).ok())
                .collect()
        };
        let (staff, admins) = (ids("staff"), ids("admin"));
        let next_at = db::format_time(now);
        let last = entries.last().map_or(cursor, |e| e.id);
        for entry in &entries {
            let t = sqlx::query(
                "SELECT t.number, t.title, t.reporter_id, t.assignee_id, c.teacher_id
                 FROM tickets t LEFT JOIN courses c ON c.id = t.course_id WHERE t.id = $1",
            )
            .bind(&entry.ticket_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(t) = t else { continue };
            let around = Around {
                reporter: db::uuid(&t, "reporter_id")?,
                assignee: db::opt_uuid(&t, "assignee_id")?,
                teacher: db::opt_uuid(&t, "teacher_id")?,
                staff: staff.clone(),
                admins: admins.clone(),
            };
            let data: Value = entry
                .data
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            let actor = entry
                .actor_id
                .as_deref()
                .and_then(|a| Uuid::parse_str(a).ok());
            let Some((kind, people)) = recipients(
                &Entry {
                    kind: &entry.kind,
                    actor,
                    internal: entry.internal,
                    data: &data,
                },
                &around,
            ) else {
                continue;
            };
            let number: i64 = t.try_get("number")?;
            let ticket = TicketRef {
                number: number.to_string(),
                title: t.try_get("title")?,
                url: self
                    .config
                    .public_url
                    .as_ref()
                    .map(|u| format!("{u}/#/tickets/{}", entry.ticket_id)),
            };
            let actor_name = entry.actor_name.clone().unwrap_or_else(|| "pvce".into());
            let Some(event) = event_of(kind, ticket, &actor_name, entry) else {
                continue;
            };
            let out = Outgoing {
                source: Source::Ticket(&entry.ticket_id),
                event_id: entry.id,
                at: &entry.at,
                event: &event,
                // The server's own webhooks hear of every notified event
                // once, except internal notes (a chat room is not the desk).
                server_hooks: !entry.internal,
            };
            self.fan_out(&mut tx, &out, &people, &next_at).await?;
        }
        let alert_cursor = self
            .dispatch_alerts(&mut tx, &staff, &admins, &next_at)
            .await?;
        let term_cursor = self.dispatch_terms(&mut tx, &next_at).await?;
        sqlx::query(
            "UPDATE notify_cursor SET last_event_id = $1, last_alert_notice_id = $2, last_term_notice_id = $3
             WHERE id = 1",
        )
        .bind(last)
        .bind(alert_cursor.1)
        .bind(term_cursor.1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(entries.len() as u64 + alert_cursor.0 + term_cursor.0)
    }

    /// The term outbox past its cursor: each row tells its one student (by
    /// their settings; never the server's webhooks — a chat room is not
    /// where a student's deadline goes). Returns (entries handled, new cursor).
    async fn dispatch_terms(
        &self,
        tx: &mut crate::db::Tx,
        next_at: &str,
    ) -> Result<(u64, i64), NoticeError> {
        let cursor: i64 =
            sqlx::query_scalar("SELECT last_term_notice_id FROM notify_cursor WHERE id = 1")
                .fetch_optional(&mut **tx)
                .await?
                .unwrap_or(0);
        let rows: Vec<TermRow> = sqlx::query_as(
            "SELECT t.id, t.user_id, t.course_id, c.code, c.name, t.ends_at, t.download_until, t.at
             FROM term_notices t JOIN courses c ON c.id = t.course_id
             WHERE t.id > $1 ORDER BY t.id LIMIT $2",
        )
        .bind(cursor)
        .bind(DISPATCH_BATCH)
        .fetch_all(&mut **tx)
        .await?;
        // (A deleted course takes its rows along: the join drops none.)
        let last = rows.last().map_or(cursor, |r| r.id);
        let parse = |s: &str| {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| t.to_offset(self.config.lab_offset))
        };
        for r in &rows {
            let (Some(ends_at), Ok(user)) = (parse(&r.ends_at), Uuid::parse_str(&r.user_id)) else {
                continue;
            };
            let event = Event::TermEnding {
                course: CourseRef {
                    id: r.course_id.clone(),
                    code: r.code.clone(),
                    name: r.name.clone(),
                    url: self
                        .config
                        .public_url
                        .as_ref()
                        .map(|u| format!("{u}/#/courses")),
                },
                ends_at,
                download_until: r.download_until.as_deref().and_then(parse),
            };
            let out = Outgoing {
                source: Source::Term(&r.course_id),
                event_id: r.id,
                at: &r.at,
                event: &event,
                server_hooks: false,
            };
            self.fan_out(tx, &out, &[user], next_at).await?;
        }
        Ok((rows.len() as u64, last))
    }

    /// The alert outbox past its cursor: notifications and deliveries for
    /// the desk (see [`alert_recipients`]). Returns (entries handled, new cursor).
    async fn dispatch_alerts(
        &self,
        tx: &mut crate::db::Tx,
        staff: &[Uuid],
        admins: &[Uuid],
        next_at: &str,
    ) -> Result<(u64, i64), NoticeError> {
        let cursor: i64 =
            sqlx::query_scalar("SELECT last_alert_notice_id FROM notify_cursor WHERE id = 1")
                .fetch_optional(&mut **tx)
                .await?
                .unwrap_or(0);
        let rows: Vec<AlertRow> = sqlx::query_as(
            "SELECT id, alert_id, at, change, level, rule, subject, value, cause
             FROM alert_notices WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(cursor)
        .bind(DISPATCH_BATCH)
        .fetch_all(&mut **tx)
        .await?;
        let last = rows.last().map_or(cursor, |r| r.id);
        for r in &rows {
            let Some(change) = alert_change(&r.change) else {
                continue;
            };
            let event = Event::Alert {
                alert: AlertRef {
                    id: r.alert_id.clone(),
                    rule: r.rule.clone(),
                    subject: r.subject.clone(),
                    url: self
                        .config
                        .public_url
                        .as_ref()
                        .map(|u| format!("{u}/#/alerts")),
                },
                change,
                level: r.level.clone(),
                value: r.value.clone(),
                cause: r.cause.clone(),
            };
            let people = alert_recipients(&r.level, staff, admins);
            let out = Outgoing {
                source: Source::Alert(&r.alert_id),
                event_id: r.id,
                at: &r.at,
                event: &event,
                // Only alerts someone is told of reach the server's hooks.
                server_hooks: !people.is_empty(),
            };
            self.fan_out(tx, &out, &people, next_at).await?;
        }
        Ok((rows.len() as u64, last))
    }

    /// Writes one event's in-app rows and deliveries for `people` (each by
    /// their settings) and for the server's own webhooks.
    async fn fan_out(
        &self,
        tx: &mut crate::db::Tx,
        out: &Outgoing<'_>,
        people: &[Uuid],
        next_at: &str,
    ) -> Result<(), NoticeError> {
        let kind = out.event.kind();
        let event_json = serde_json::to_string(out.event).unwrap_or_default();
        let (source, ticket_id, alert_id, course_id) = match out.source {
            Source::Ticket(t) => ("ticket", Some(t), None, None),
            Source::Alert(a) => ("alert", None, Some(a), None),
            Source::Term(c) => ("term", None, None, Some(c)),
        };
        for user in people {
            let Some(settings) = load_settings(tx, *user, true).await? else {
                continue; // disabled or gone
            };
            let (in_app, outside) = channels_for(&settings, kind, self.mail);
            if in_app {
                sqlx::query(
                    "INSERT INTO notifications (user_id, source, ticket_id, alert_id, course_id, event_id, kind, event, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                )
                .bind(user.to_string())
                .bind(source)
                .bind(ticket_id)
                .bind(alert_id)
                .bind(course_id)
                .bind(out.event_id)
                .bind(kind.as_str())
                .bind(&event_json)
                .bind(out.at)
                .execute(&mut **tx)
                .await?;
            }
            for d in outside {
                let channel = match d {
                    Destination::Email { .. } => "email",
                    Destination::Webhook { .. } => "webhook",
                };
                sqlx::query(
                    "INSERT INTO notification_deliveries (source, event_id, user_id, channel, lang, event, next_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(source)
                .bind(out.event_id)
                .bind(user.to_string())
                .bind(channel)
                .bind(settings.lang.tag())
                .bind(&event_json)
                .bind(next_at)
                .execute(&mut **tx)
                .await?;
            }
        }
        if out.server_hooks {
            for i in 0..self.config.hooks.len() {
                sqlx::query(
                    "INSERT INTO notification_deliveries (source, event_id, user_id, channel, target, lang, event, next_at)
                     VALUES ($1, $2, NULL, 'webhook', $3, $4, $5, $6)",
                )
                .bind(source)
                .bind(out.event_id)
                .bind(i64::try_from(i).unwrap_or(i64::MAX))
                .bind(self.config.hooks_lang.tag())
                .bind(&event_json)
                .bind(next_at)
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok(())
    }

    /// Sends the deliveries due at `now`; returns (sent, failed).
    pub async fn deliver(&self, now: OffsetDateTime) -> Result<(u64, u64), NoticeError> {
        let _one = self.running.lock().await;
        let due = sqlx::query(
            "SELECT id, user_id, channel, target, lang, event, attempts FROM notification_deliveries
             WHERE sent_at IS NULL AND gave_up_at IS NULL AND next_at <= $1 ORDER BY next_at, id LIMIT $2",
        )
        .bind(db::format_time(now))
        .bind(DELIVER_BATCH)
        .fetch_all(&self.pool)
        .await?;
        let (mut sent, mut failed) = (0, 0);
        for row in due {
            let id: i64 = row.try_get("id")?;
            let attempts = u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0) + 1;
            let lang = Lang::from_tag(&row.try_get::<String, _>("lang")?);
            let event: Option<Event> =
                serde_json::from_str(&row.try_get::<String, _>("event")?).ok();
            let channel: String = row.try_get("channel")?;
            let dest = match db::opt_uuid(&row, "user_id")? {
                // A user's: where their settings say now (they may have
                // changed the address since); a user disabled since gets nothing.
                Some(user) => {
                    let mut conn = self.pool.acquire().await?;
                    load_settings(&mut conn, user, true).await?.and_then(|s| {
                        match channel.as_str() {
                            "email" => s.email.map(|address| Destination::Email { address, lang }),
                            _ => s
                                .webhook
                                .map(|target| Destination::Webhook { target, lang }),
                        }
                    })
                }
                None => row
                    .try_get::<Option<i64>, _>("target")?
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| self.config.hooks.get(i).cloned())
                    .map(|target| Destination::Webhook { target, lang }),
            };
            let result = match (dest, event) {
                (Some(dest), Some(event)) => self.notifier.deliver(&dest, &event).await,
                // Nowhere to send it any more: nothing to retry.
                _ => {
                    sqlx::query("UPDATE notification_deliveries SET gave_up_at = $1, last_error = 'no destination' WHERE id = $2")
                        .bind(db::format_time(now))
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                    continue;
                }
            };
            match result {
                Ok(()) => {
                    sent += 1;
                    sqlx::query("UPDATE notification_deliveries SET sent_at = $1, attempts = $2, last_error = NULL WHERE id = $3")
                        .bind(db::format_time(now))
                        .bind(i64::from(attempts))
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                }
                Err(e) => {
                    failed += 1;
                    // The error names the host only, never the URL or a password.
                    tracing::warn!(delivery = id, channel = %channel, attempts, error = %e, "notification not sent");
                    let next = retry_at(attempts, now);
                    sqlx::query(
                        "UPDATE notification_deliveries SET attempts = $1, last_error = $2, next_at = COALESCE($3, next_at),
                         gave_up_at = CASE WHEN $4 IS NULL THEN $5 ELSE NULL END WHERE id = $6",
                    )
                    .bind(i64::from(attempts))
                    .bind(e.to_string())
                    .bind(next.map(db::format_time))
                    .bind(next.map(db::format_time))
                    .bind(db::format_time(now))
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                }
            }
        }
        Ok((sent, failed))
    }

    /// The user's notifications, newest first, with the unread count.
    pub async fn list(&self, user: &User, q: &ListQuery) -> Result<Page, NoticeError> {
        let limit = q.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(NoticeError::Invalid("limit must be 1 to 100".into()));
        }
        let lang = match q.lang.as_deref() {
            Some(l @ ("zh-CN" | "en")) => Lang::from_tag(l),
            Some(_) => return Err(NoticeError::Invalid("lang: zh-CN or en".into())),
            None => {
                let mut conn = self.pool.acquire().await?;
                load_settings(&mut conn, user.id, false)
                    .await?
                    .unwrap_or_default()
                    .lang
            }
        };
        let unread: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL",
        )
        .bind(user.id.to_string())
        .fetch_one(&self.pool)
        .await?;
        let rows = sqlx::query(
            "SELECT id, ticket_id, course_id, kind, event, created_at, read_at FROM notifications
             WHERE user_id = $1 AND ($2 = 0 OR read_at IS NULL) AND id < $3 ORDER BY id DESC LIMIT $4",
        )
        .bind(user.id.to_string())
        .bind(q.unread)
        .bind(q.before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in rows {
            let Ok(event) = serde_json::from_str::<Event>(&r.try_get::<String, _>("event")?) else {
                continue;
            };
            let m = render(&event, lang);
            items.push(Notice {
                id: r.try_get("id")?,
                ticket_id: db::opt_uuid(&r, "ticket_id")?,
                ticket_number: event.ticket().map(|t| t.number.clone()),
                course_id: db::opt_uuid(&r, "course_id")?,
                kind: event.kind(),
                subject: m.subject,
                text: m.text,
                created_at: r.try_get("created_at")?,
                read: r.try_get::<Option<String>, _>("read_at")?.is_some(),
            });
        }
        Ok(Page { unread, items })
    }

    /// Marks one of the user's notifications read.
    pub async fn mark_read(&self, user: &User, id: i64) -> Result<(), NoticeError> {
        let done = sqlx::query(
            "UPDATE notifications SET read_at = COALESCE(read_at, $1) WHERE id = $2 AND user_id = $3",
        )
        .bind(db::now())
        .bind(id)
        .bind(user.id.to_string())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(NoticeError::NotFound);
        }
        Ok(())
    }

    /// Marks all of the user's notifications read; returns how many were unread.
    pub async fn mark_all_read(&self, user: &User) -> Result<u64, NoticeError> {
        let done = sqlx::query(
            "UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL",
        )
        .bind(db::now())
        .bind(user.id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    fn view(&self, user: &User, s: Settings) -> SettingsView {
        let admin = user.role == Role::Admin;
        SettingsView {
            settings: SettingsBody {
                lang: s.lang,
                email: s.email,
                webhook_format: s.webhook.as_ref().map(|w| w.format).unwrap_or_default(),
                webhook_url: s.webhook.map(|w| w.url),
                events: s.prefs,
            },
            email_available: self.mail,
            webhook_any_url: admin,
            webhook_allowed: if admin {
                Vec::new()
            } else {
                self.config.allowed_webhooks.clone()
            },
        }
    }

    /// The user's settings (the defaults if they never saved any).
    pub async fn settings(&self, user: &User) -> Result<SettingsView, NoticeError> {
        let mut conn = self.pool.acquire().await?;
        let s = load_settings(&mut conn, user.id, false)
            .await?
            .unwrap_or_default();
        Ok(self.view(user, s))
    }

    /// Replaces the user's settings, after checking the address and URL.
    pub async fn put_settings(
        &self,
        user: &User,
        body: SettingsBody,
    ) -> Result<SettingsView, NoticeError> {
        let email = match body.email.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(e) => {
                if e.chars().count() > MAX_EMAIL
                    || e.chars().any(char::is_control)
                    || e.parse::<lettre::Address>().is_err()
                {
                    return Err(NoticeError::Invalid(
                        "email: an address like name@example.edu".into(),
                    ));
                }
                Some(e.to_owned())
            }
        };
        let webhook = match body.webhook_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) => {
                let target = WebhookTarget {
                    url: u.to_owned(),
                    format: body.webhook_format,
                };
                let url = target.validate()?;
                if user.role != Role::Admin && !webhook_allowed(&url, &self.config.allowed_webhooks)
                {
                    return Err(NoticeError::WebhookNotAllowed);
                }
                Some(target)
            }
        };
        let s = Settings {
            lang: body.lang,
            email,
            webhook,
            prefs: body.events,
        };
        sqlx::query(
            "INSERT INTO notification_settings (user_id, lang, email, webhook_url, webhook_format, prefs)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id) DO UPDATE SET lang = excluded.lang, email = excluded.email,
               webhook_url = excluded.webhook_url, webhook_format = excluded.webhook_format, prefs = excluded.prefs",
        )
        .bind(user.id.to_string())
        .bind(s.lang.tag())
        .bind(&s.email)
        .bind(s.webhook.as_ref().map(|w| w.url.clone()))
        .bind(format_name(s.webhook.as_ref().map(|w| w.format).unwrap_or_default()))
        .bind(serde_json::to_string(&s.prefs).unwrap_or_default())
        .execute(&self.pool)
        .await?;
        // A webhook URL may carry its receiver's secret: only whether one is set.
        crate::audit::settings_changed(
            &self.pool,
            crate::audit::Actor::user(user.id, &user.username),
            crate::audit::Action::SettingsNotifications,
            "notifications",
            serde_json::json!({
                "lang": s.lang.tag(),
                "email_set": s.email.is_some(),
                "webhook_set": s.webhook.is_some(),
                "events": s.prefs,
            }),
        )
        .await;
        Ok(self.view(user, s))
    }
}

fn format_name(f: WebhookFormat) -> String {
    serde_json::to_value(f)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "json".into())
}

/// A user's settings; `None` if the user is gone or (`enabled_only`) disabled.
async fn load_settings(
    conn: &mut crate::db::Conn,
    user: Uuid,
    enabled_only: bool,
) -> Result<Option<Settings>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT u.disabled, s.lang, s.email, s.webhook_url, s.webhook_format, s.prefs
         FROM users u LEFT JOIN notification_settings s ON s.user_id = u.id WHERE u.id = $1",
    )
    .bind(user.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    if enabled_only && row.try_get::<i64, _>("disabled")? != 0 {
        return Ok(None);
    }
    let lang: Option<String> = row.try_get("lang")?;
    let format: Option<String> = row.try_get("webhook_format")?;
    let prefs: Option<String> = row.try_get("prefs")?;
    Ok(Some(Settings {
        lang: lang.map(|l| Lang::from_tag(&l)).unwrap_or_default(),
        email: row.try_get("email")?,
        webhook: row
            .try_get::<Option<String>, _>("webhook_url")?
            .map(|url| WebhookTarget {
                url,
                format: format
                    .and_then(|f| serde_json::from_value(Value::String(f)).ok())
                    .unwrap_or_default(),
            }),
        prefs: prefs
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    struct World {
        reporter: Uuid,
        assignee: Uuid,
        teacher: Uuid,
        other_staff: Uuid,
        admin: Uuid,
        around: Around,
    }

    fn world() -> World {
        let p = ids(5);
        World {
            reporter: p[0],
            assignee: p[1],
            teacher: p[2],
            other_staff: p[3],
            admin: p[4],
            around: Around {
                reporter: p[0],
                assignee: Some(p[1]),
                teacher: Some(p[2]),
                staff: vec![p[1], p[3]],
                admins: vec![p[4]],
            },
        }
    }

    fn entry<'a>(kind: &'a str, actor: Uuid, data: &'a Value) -> Entry<'a> {
        Entry {
            kind,
            actor: Some(actor),
            internal: false,
            data,
        }
    }

    #[test]
    fn a_comment_reaches_the_reporter_assignee_and_teacher_but_not_its_author() {
        let w = world();
        let d = Value::Null;
        let (kind, got) = recipients(&entry("comment", w.assignee, &d), &w.around).unwrap();
        assert_eq!(kind, EventKind::Commented);
        assert_eq!(got, vec![w.reporter, w.teacher]);
        let (_, got) = recipients(&entry("comment", w.reporter, &d), &w.around).unwrap();
        assert_eq!(got, vec![w.assignee, w.teacher]);
    }

    #[test]
    fn internal_notes_never_reach_the_reporter_or_teacher() {
        let w = world();
        let d = Value::Null;
        let mut e = entry("comment", w.admin, &d);
        e.internal = true;
        let (_, got) = recipients(&e, &w.around).unwrap();
        assert_eq!(got, vec![w.assignee]);
        // Even when a staff member reported the ticket themselves... the
        // assignee writing an internal note reaches nobody else here.
        e.actor = Some(w.assignee);
        assert_eq!(recipients(&e, &w.around).unwrap().1, Vec::<Uuid>::new());
    }

    #[test]
    fn assignment_goes_to_the_assignee_unless_they_took_it() {
        let w = world();
        let d = json!({"assignee_id": w.assignee.to_string()});
        let (kind, got) = recipients(&entry("assigned", w.admin, &d), &w.around).unwrap();
        assert_eq!(kind, EventKind::Assigned);
        assert_eq!(got, vec![w.assignee]);
        assert!(
            recipients(&entry("assigned", w.assignee, &d), &w.around)
                .unwrap()
                .1
                .is_empty()
        );
    }

    #[test]
    fn resolution_goes_to_the_reporter_and_callbacks_to_the_assignee() {
        let w = world();
        let d = Value::Null;
        assert_eq!(
            recipients(&entry("resolved", w.assignee, &d), &w.around).unwrap(),
            (EventKind::Resolved, vec![w.reporter])
        );
        assert_eq!(
            recipients(&entry("callback", w.other_staff, &d), &w.around).unwrap(),
            (EventKind::Callback, vec![w.assignee])
        );
    }

    #[test]
    fn escalations_follow_the_step_and_breaches_reach_admins() {
        let w = world();
        let warn =
            json!({"clock": "response", "percent": 50, "breach": false, "notify": "assignee"});
        let e = Entry {
            kind: "escalated",
            actor: None,
            internal: false,
            data: &warn,
        };
        assert_eq!(recipients(&e, &w.around).unwrap().1, vec![w.assignee]);
        // Unassigned: the whole desk hears of it.
        let mut nobody = w.around.clone();
        nobody.assignee = None;
        assert_eq!(
            recipients(&e, &nobody).unwrap().1,
            vec![w.assignee, w.other_staff]
        );
        let breach =
            json!({"clock": "resolution", "percent": 100, "breach": true, "notify": "admins"});
        let e = Entry { data: &breach, ..e };
        assert_eq!(
            recipients(&e, &w.around).unwrap().1,
            vec![w.admin, w.assignee]
        );
    }

    #[test]
    fn warnings_and_critical_alerts_reach_the_desk_once_info_nobody() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert!(alert_recipients("info", &[a], &[b]).is_empty());
        assert_eq!(alert_recipients("warning", &[a, c], &[b]), vec![a, c, b]);
        // An admin who is also listed as staff hears of it once.
        assert_eq!(alert_recipients("critical", &[a], &[a, b]), vec![a, b]);
        assert!(alert_recipients("bogus", &[a], &[b]).is_empty());
        for change in ["fired", "escalated", "resolved"] {
            assert!(alert_change(change).is_some(), "{change}");
        }
        assert_eq!(alert_change("acknowledged"), None);
    }

    #[test]
    fn other_entries_notify_nobody() {
        let w = world();
        let d = Value::Null;
        for k in ["created", "state", "priority", "confirmed", "auto_closed"] {
            assert!(
                recipients(&entry(k, w.reporter, &d), &w.around).is_none(),
                "{k}"
            );
        }
    }

    #[test]
    fn channels_follow_preferences_and_what_is_set() {
        let mut s = Settings::default();
        let (in_app, out) = channels_for(&s, EventKind::Assigned, true);
        assert!(in_app);
        assert!(out.is_empty(), "no address, no URL: in-app only");
        s.email = Some("a@lab.example".into());
        s.lang = Lang::En;
        let (_, out) = channels_for(&s, EventKind::Assigned, true);
        assert_eq!(
            out,
            vec![Destination::Email {
                address: "a@lab.example".into(),
                lang: Lang::En
            }]
        );
        assert!(
            channels_for(&s, EventKind::Assigned, false).1.is_empty(),
            "no mail server"
        );
        s.prefs.assigned.email = false;
        s.prefs.assigned.in_app = false;
        let (in_app, out) = channels_for(&s, EventKind::Assigned, true);
        assert!(!in_app && out.is_empty());
        assert_eq!(channels_for(&s, EventKind::Resolved, true).1.len(), 1);
    }

    #[test]
    fn prefs_round_trip_and_default_missing_kinds() {
        let p: Prefs = serde_json::from_value(
            json!({"assigned": {"in_app": false, "email": false, "webhook": true}}),
        )
        .unwrap();
        assert!(!p.assigned.in_app && p.assigned.webhook);
        assert_eq!(p.resolved, Channels::default());
        assert!(serde_json::from_value::<Prefs>(json!({"bogus": {}})).is_err());
    }

    #[test]
    fn retries_back_off_and_give_up() {
        let t0 = time::macros::datetime!(2026-03-10 12:00 UTC);
        assert_eq!(retry_at(1, t0), Some(t0 + time::Duration::minutes(1)));
        assert_eq!(retry_at(2, t0), Some(t0 + time::Duration::minutes(2)));
        assert_eq!(retry_at(3, t0), Some(t0 + time::Duration::minutes(4)));
        assert_eq!(retry_at(7, t0), Some(t0 + time::Duration::hours(1)));
        assert_eq!(retry_at(MAX_ATTEMPTS, t0), None);
        let mut last = t0;
        for n in 1..MAX_ATTEMPTS {
            let next = retry_at(n, t0).unwrap();
            assert!(next >= last && next <= t0 + time::Duration::hours(1));
            last = next;
        }
    }

    #[test]
    fn only_allowed_webhook_prefixes_pass() {
        let allowed = vec!["https://chat.lab.example/hooks/".to_string()];
        let ok = |u: &str| webhook_allowed(&reqwest::Url::parse(u).unwrap(), &allowed);
        assert!(ok("https://chat.lab.example/hooks/abc?token=1"));
        assert!(!ok("https://chat.lab.example/admin"));
        assert!(!ok("http://chat.lab.example/hooks/abc"));
        assert!(!ok("https://chat.lab.example:8443/hooks/abc"));
        assert!(!ok("https://chat.lab.example.evil.example/hooks/abc"));
        assert!(!ok("https://x@chat.lab.example/hooks/abc"));
        assert!(!ok("http://127.0.0.1/hooks/"));
        assert!(!webhook_allowed(
            &reqwest::Url::parse("https://chat.lab.example/hooks/x").unwrap(),
            &[]
        ));
    }
}
