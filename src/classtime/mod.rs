//! Class time: a course's timetable of sessions (issue 15).
//!
//! A course has sessions, one-off or weekly (see [`timetable`] for the
//! arithmetic and its invariants), entered by the course's teacher (or an
//! admin) one by one or imported from an iCalendar file ([`ics`]), read by the
//! course's students. Times are instants (RFC 3339) in the API and the
//! database; the dates a weekly session recurs until or skips are dates of
//! the lab's wall clock (a fixed offset from UTC, `--lab-utc-offset`).
//!
//! What the timetable makes happen — pre-starting a class through the
//! admission queue ([`admission`]), warning before the end and stopping at
//! it — is the class-time loop, [`class`]; what it must not forget across a
//! restart is stored by [`memory`].
//!
//! Invariants: every stored session satisfies [`timetable::Schedule::validate`]
//! (checked before any write); a session belongs to one course and goes with
//! it; only who manages the course ([`crate::courses::can_manage`]) changes
//! its sessions, and who may see the course may read them — anyone else gets
//! NotFound, never a hint that the course exists. Nothing here reads a clock:
//! methods take `now` (the HTTP handlers pass the real time, tests theirs).

pub mod admission;
pub mod class;
pub mod extension;
pub mod ics;
pub mod memory;
pub mod timetable;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
use uuid::Uuid;

use crate::courses::{self, CourseError};
use crate::db::{self, Pool};
use crate::users::User;
use timetable::{Occurrence, Schedule, ScheduleError};

/// Sessions a course may have (a weekly one counts once).
pub const MAX_SESSIONS_PER_COURSE: i64 = 200;
const MAX_TITLE_CHARS: usize = 200;
/// Upcoming occurrences listed with each session.
const NEXT_SHOWN: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ClassError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Calendar(#[from] ics::IcsError),
    #[error("no such session")]
    NotFound,
    #[error("a course may have at most {MAX_SESSIONS_PER_COURSE} sessions")]
    TooManySessions,
    /// A 15-minute extension refused ([`extension::decide`]).
    #[error("{}", extension_message(*.0))]
    Extension(extension::Refusal),
    #[error(transparent)]
    Course(#[from] CourseError),
    #[error(transparent)]
    Vm(#[from] crate::vms::VmError),
    #[error(transparent)]
    Node(#[from] crate::nodes::NodeError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn extension_message(r: extension::Refusal) -> &'static str {
    use extension::Refusal;
    match r {
        Refusal::Denied => "the teacher of this course does not allow extensions",
        Refusal::NotNow => "an extension can be asked for in the last 15 minutes of a session",
        Refusal::Already => "this VM was extended in this session already",
        Refusal::NodeNeeded => "another class begins soon and needs the lab's nodes",
    }
}

/// Whether a course's teacher lets students extend their session (the
/// 15-minute extension; off unless allowed).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionRule {
    pub allowed: bool,
}

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub id: Uuid,
    pub course_id: Uuid,
    pub title: String,
    /// The first occurrence.
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// `YYYY-MM-DD` (lab date), or null for a one-off session.
    pub weekly_until: Option<String>,
    pub exceptions: Vec<String>,
    /// The first occurrence in the lab's wall clock: `{date, weekday, start, end}`.
    pub local: LocalTimes,
    /// The next occurrences (the one under way first), at most three.
    pub next: Vec<Occurrence>,
    pub source: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LocalTimes {
    pub date: String,
    /// 1 = Monday … 7 = Sunday.
    pub weekday: u8,
    pub start: String,
    pub end: String,
    /// The lab's offset, `+08:00`.
    pub utc_offset: String,
}

/// A session as entered: instants (`starts_at`, `ends_at`, RFC 3339) or the
/// lab's wall clock (`date`, `start`, `end`: `2026-09-07`, `08:00`, `09:40`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    #[serde(default)]
    pub weekly_until: Option<String>,
    #[serde(default)]
    pub exceptions: Vec<String>,
}

/// What a POST carries: one session (JSON) or a calendar file.
#[derive(Debug)]
pub enum SessionInput {
    One(NewSession),
    Calendar(String),
}

/// What a POST did.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Added {
    One(Box<Session>),
    Imported {
        imported: Vec<Session>,
        skipped: Vec<ics::Skipped>,
    },
}

fn parse_instant(field: &str, s: &str) -> Result<OffsetDateTime, ClassError> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|_| {
        ClassError::Invalid(format!(
            "{field} must be an RFC 3339 time like 2026-09-07T08:00:00+08:00"
        ))
    })
}

fn parse_date(field: &str, s: &str) -> Result<Date, ClassError> {
    crate::range::parse_day(s)
        .map_err(|_| ClassError::Invalid(format!("{field} must be a date like 2026-09-07")))
}

fn parse_clock(field: &str, s: &str) -> Result<Time, ClassError> {
    let s = s.trim();
    if s == "24:00" {
        return Err(ClassError::Invalid(format!(
            "{field}: use 23:59 for the end of the day"
        )));
    }
    Time::parse(s, format_description!("[hour]:[minute]"))
        .map_err(|_| ClassError::Invalid(format!("{field} must be a time like 08:00")))
}

fn format_date(d: Date) -> String {
    d.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

impl NewSession {
    /// The title and schedule this input describes, checked.
    pub fn schedule(&self, lab: UtcOffset) -> Result<(String, Schedule), ClassError> {
        let title = self.title.clone().unwrap_or_default().trim().to_owned();
        if title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
            return Err(ClassError::Invalid(format!(
                "title: at most {MAX_TITLE_CHARS} characters, no control characters"
            )));
        }
        let (starts_at, ends_at) = match (
            &self.starts_at,
            &self.ends_at,
            &self.date,
            &self.start,
            &self.end,
        ) {
            (Some(s), Some(e), None, None, None) => {
                (parse_instant("starts_at", s)?, parse_instant("ends_at", e)?)
            }
            (None, None, Some(d), Some(s), Some(e)) => {
                let date = parse_date("date", d)?;
                let at = |t| PrimitiveDateTime::new(date, t).assume_offset(lab);
                (at(parse_clock("start", s)?), at(parse_clock("end", e)?))
            }
            _ => {
                return Err(ClassError::Invalid(
                    "give either starts_at and ends_at, or date, start and end".into(),
                ));
            }
        };
        if self.exceptions.len() > timetable::MAX_EXCEPTIONS {
            return Err(ScheduleError::TooManyExceptions.into());
        }
        let schedule = Schedule {
            starts_at: starts_at.to_offset(UtcOffset::UTC),
            ends_at: ends_at.to_offset(UtcOffset::UTC),
            weekly_until: self
                .weekly_until
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(|s| parse_date("weekly_until", s))
                .transpose()?,
            exceptions: self
                .exceptions
                .iter()
                .map(|s| parse_date("exceptions", s))
                .collect::<Result<BTreeSet<_>, _>>()?,
        };
        schedule.validate(lab)?;
        Ok((title, schedule))
    }
}

/// The timetable service the HTTP handlers call.
#[derive(Debug)]
pub struct Sessions {
    pool: Pool,
    lab: UtcOffset,
}

impl Sessions {
    pub fn new(pool: Pool, lab: UtcOffset) -> Self {
        Self { pool, lab }
    }

    /// The database (the class loop records its pre-starts there).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The lab's offset from UTC.
    pub fn lab_offset(&self) -> UtcOffset {
        self.lab
    }

    /// The sessions of a course the user may see, first occurrence first.
    pub async fn list(
        &self,
        user: &User,
        course_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<Vec<Session>, ClassError> {
        let course = courses::get_visible(&self.pool, user, course_id).await?;
        let rows = load_course(&self.pool, course.id).await?;
        Ok(rows.into_iter().map(|r| self.view(r, now)).collect())
    }

    /// Adds one session, or every event of a calendar file, to a course the
    /// user manages. A file is checked as a whole before anything is stored.
    pub async fn add(
        &self,
        user: &User,
        course_id: Uuid,
        input: SessionInput,
        now: OffsetDateTime,
    ) -> Result<Added, ClassError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        let (items, skipped, source) = match input {
            SessionInput::One(new) => (vec![new.schedule(self.lab)?], Vec::new(), "manual"),
            SessionInput::Calendar(text) => {
                let mut items = Vec::new();
                let mut skipped = Vec::new();
                for item in ics::parse(&text, self.lab)? {
                    match item {
                        Ok(ev) => match ev.schedule.validate(self.lab) {
                            Ok(()) => items.push((ev.title, ev.schedule)),
                            Err(e) => skipped.push(ics::Skipped {
                                uid: None,
                                summary: Some(ev.title),
                                reason: e.to_string(),
                            }),
                        },
                        Err(s) => skipped.push(s),
                    }
                }
                (items, skipped, "ics")
            }
        };
        let mut tx = db::begin(&self.pool).await?;
        let existing: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM class_sessions WHERE course_id = $1")
                .bind(course.id.to_string())
                .fetch_one(&mut *tx)
                .await?;
        if existing + items.len() as i64 > MAX_SESSIONS_PER_COURSE {
            return Err(ClassError::TooManySessions);
        }
        let mut stored = Vec::new();
        for (title, schedule) in items {
            let row = Stored {
                id: Uuid::new_v4(),
                course_id: course.id,
                title,
                schedule,
                source: source.into(),
                created_at: db::format_time(now),
            };
            sqlx::query(
                "INSERT INTO class_sessions (id, course_id, title, starts_at, ends_at, weekly_until, \
                 exceptions, source, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(row.id.to_string())
            .bind(row.course_id.to_string())
            .bind(&row.title)
            .bind(db::format_time(row.schedule.starts_at))
            .bind(db::format_time(row.schedule.ends_at))
            .bind(row.schedule.weekly_until.map(format_date))
            .bind(exceptions_json(&row.schedule))
            .bind(&row.source)
            .bind(user.id.to_string())
            .bind(&row.created_at)
            .execute(&mut *tx)
            .await?;
            stored.push(self.view(row, now));
        }
        tx.commit().await?;
        Ok(match source {
            "manual" => match stored.pop() {
                Some(one) => Added::One(Box::new(one)),
                None => return Err(ClassError::Invalid("nothing to add".into())),
            },
            _ => Added::Imported {
                imported: stored,
                skipped,
            },
        })
    }

    /// Replaces a session's title and schedule.
    pub async fn update(
        &self,
        user: &User,
        course_id: Uuid,
        id: Uuid,
        new: NewSession,
        now: OffsetDateTime,
    ) -> Result<Session, ClassError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        let (title, schedule) = new.schedule(self.lab)?;
        let update = sqlx::query(
            "UPDATE class_sessions SET title = $1, starts_at = $2, ends_at = $3, weekly_until = $4, \
             exceptions = $5 WHERE id = $6 AND course_id = $7",
        )
        .bind(&title)
        .bind(db::format_time(schedule.starts_at))
        .bind(db::format_time(schedule.ends_at))
        .bind(schedule.weekly_until.map(format_date))
        .bind(exceptions_json(&schedule));
        on_session(&self.pool, update, id, course.id).await?;
        let row = load_course(&self.pool, course.id)
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or(ClassError::NotFound)?;
        Ok(self.view(row, now))
    }

    pub async fn delete(&self, user: &User, course_id: Uuid, id: Uuid) -> Result<(), ClassError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        let delete = sqlx::query("DELETE FROM class_sessions WHERE id = $1 AND course_id = $2");
        on_session(&self.pool, delete, id, course.id).await
    }

    /// The course's extension rule, for who manages the course.
    pub async fn extension_rule(
        &self,
        user: &User,
        course_id: Uuid,
    ) -> Result<ExtensionRule, ClassError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        Ok(ExtensionRule {
            allowed: self.extension_allowed(course.id).await?,
        })
    }

    /// Sets the course's extension rule.
    pub async fn set_extension_rule(
        &self,
        user: &User,
        course_id: Uuid,
        rule: ExtensionRule,
    ) -> Result<ExtensionRule, ClassError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        sqlx::query(
            "INSERT INTO class_extension_rules (course_id, allowed) VALUES ($1, $2)
             ON CONFLICT (course_id) DO UPDATE SET allowed = excluded.allowed",
        )
        .bind(course.id.to_string())
        .bind(i64::from(rule.allowed))
        .execute(&self.pool)
        .await?;
        Ok(rule)
    }

    /// Whether students of the course may extend their session.
    pub async fn extension_allowed(&self, course_id: Uuid) -> Result<bool, ClassError> {
        let allowed: Option<i64> =
            sqlx::query_scalar("SELECT allowed FROM class_extension_rules WHERE course_id = $1")
                .bind(course_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(allowed == Some(1))
    }

    /// Every course's occurrences that overlap `[from, to)`, with their course
    /// (for the class-time loop).
    pub async fn occurrences_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<(Uuid, Occurrence)>, ClassError> {
        // A weekly session's rows start before `from`; its first start is at
        // most MAX_SPAN_DAYS before any of its occurrences.
        let earliest = from - time::Duration::days(timetable::MAX_SPAN_DAYS + 1);
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE starts_at < $1 AND starts_at >= $2"
        ))
        .bind(db::format_time(to))
        .bind(db::format_time(earliest))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let s = stored(&row)?;
            for o in s.schedule.between(self.lab, from, to) {
                out.push((s.course_id, o));
            }
        }
        out.sort_by_key(|(c, o)| (*o, *c));
        Ok(out)
    }

    fn view(&self, row: Stored, now: OffsetDateTime) -> Session {
        let first = row.schedule.starts_at.to_offset(self.lab);
        let last = row.schedule.ends_at.to_offset(self.lab);
        let hm = format_description!("[hour]:[minute]");
        Session {
            id: row.id,
            course_id: row.course_id,
            title: row.title,
            starts_at: row.schedule.starts_at,
            ends_at: row.schedule.ends_at,
            weekly_until: row.schedule.weekly_until.map(format_date),
            exceptions: row
                .schedule
                .exceptions
                .iter()
                .copied()
                .map(format_date)
                .collect(),
            local: LocalTimes {
                date: format_date(first.date()),
                weekday: first.weekday().number_from_monday(),
                start: first.format(hm).unwrap_or_default(),
                end: last.format(hm).unwrap_or_default(),
                utc_offset: self
                    .lab
                    .format(format_description!(
                        "[offset_hour sign:mandatory]:[offset_minute]"
                    ))
                    .unwrap_or_default(),
            },
            next: row
                .schedule
                .all(self.lab)
                .into_iter()
                .filter(|o| o.ends_at > now)
                .take(NEXT_SHOWN)
                .collect(),
            source: row.source,
            created_at: row.created_at,
        }
    }
}

/// A stored session.
#[derive(Debug, Clone)]
struct Stored {
    id: Uuid,
    course_id: Uuid,
    title: String,
    schedule: Schedule,
    source: String,
    created_at: String,
}

const SELECT: &str = "SELECT id, course_id, title, starts_at, ends_at, weekly_until, exceptions, \
                      source, created_at FROM class_sessions";

fn exceptions_json(s: &Schedule) -> String {
    let dates: Vec<String> = s.exceptions.iter().copied().map(format_date).collect();
    serde_json::to_string(&dates).unwrap_or_else(|_| "[]".into())
}

fn decode<T>(col: &str, r: Result<T, impl std::fmt::Display>) -> Result<T, sqlx::Error> {
    r.map_err(|e| sqlx::Error::Decode(format!("class_sessions.{col}: {e}").into()))
}

fn stored(row: &crate::db::Row) -> Result<Stored, sqlx::Error> {
    let time = |col: &str| -> Result<OffsetDateTime, sqlx::Error> {
        let s: String = row.try_get(col)?;
        decode(col, OffsetDateTime::parse(&s, &Rfc3339))
    };
    let date_fmt = format_description!("[year]-[month]-[day]");
    let until: Option<String> = row.try_get("weekly_until")?;
    let exceptions: Vec<String> = decode(
        "exceptions",
        serde_json::from_str(&row.try_get::<String, _>("exceptions")?),
    )?;
    Ok(Stored {
        id: db::uuid(row, "id")?,
        course_id: db::uuid(row, "course_id")?,
        title: row.try_get("title")?,
        schedule: Schedule {
            starts_at: time("starts_at")?,
            ends_at: time("ends_at")?,
            weekly_until: until
                .map(|s| decode("weekly_until", Date::parse(&s, date_fmt)))
                .transpose()?,
            exceptions: exceptions
                .iter()
                .map(|s| decode("exceptions", Date::parse(s, date_fmt)))
                .collect::<Result<_, _>>()?,
        },
        source: row.try_get("source")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Runs `statement` (ending `WHERE id = ? AND course_id = ?`, the two binds
/// added here) on one session of the course: a session of another course,
/// or none, is not found.
async fn on_session<'q>(
    pool: &Pool,
    statement: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    id: Uuid,
    course_id: Uuid,
) -> Result<(), ClassError> {
    let done = statement
        .bind(id.to_string())
        .bind(course_id.to_string())
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ClassError::NotFound);
    }
    Ok(())
}

async fn load_course(pool: &Pool, course_id: Uuid) -> Result<Vec<Stored>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE course_id = $1 ORDER BY starts_at, id"
    ))
    .bind(course_id.to_string())
    .fetch_all(pool)
    .await?;
    rows.iter().map(stored).collect()
}
