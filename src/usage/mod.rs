//! Usage and quotas of class time (issue 15): how long students' VMs ran,
//! inside and outside the course's sessions, and the limits on it.
//!
//! Metering ([`meter`], pure) works on the VMs' power history (written by the
//! VM manager, [`crate::vms::power_log`]) and the course's timetable
//! ([`crate::classtime`]); this service loads both and answers:
//! - a course's usage per student, per VM and per local date of the lab, for
//!   a period (course teacher and admins; also as CSV);
//! - a user's own hours per course: used outside sessions, the budget and
//!   what is left (the student's course card);
//! - the quotas ([`quota`]): settings, and the gate every VM start passes.
//!
//! Invariants: time inside a scheduled session never counts against a
//! budget; a course's usage is shown only to who manages the course (anyone
//! else: NotFound, as for the course itself); nothing here reads a clock —
//! methods take `now` (handlers pass the real time, tests theirs).

pub mod meter;
pub mod quota;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, Time};
use uuid::Uuid;

use crate::classtime::Sessions;
use crate::courses::{self, CourseError};
use crate::db::Pool;
use crate::users::User;
use crate::vms::power_log;
use meter::Span;

/// Longest period a usage report covers.
pub const MAX_PERIOD_DAYS: i64 = 366;
/// The period of a report when none is given: the last 30 days.
pub const DEFAULT_PERIOD_DAYS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("{0}")]
    Invalid(String),
    /// A well-formed value that cannot be: a date like 2026-02-30.
    #[error("{0}")]
    Unacceptable(String),
    #[error(transparent)]
    Range(#[from] crate::range::RangeError),
    #[error("no such student in this course")]
    NotEnrolled,
    #[error(transparent)]
    Course(#[from] CourseError),
    #[error(transparent)]
    Class(#[from] crate::classtime::ClassError),
    #[error(transparent)]
    Vm(#[from] crate::vms::VmError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// One VM's minutes on one local date.
#[derive(Debug, Clone, Serialize)]
pub struct DayRow {
    pub date: String,
    pub vm_id: Uuid,
    pub vm_name: String,
    pub in_session_minutes: i64,
    pub outside_minutes: i64,
}

/// One student's usage in a course over a period.
#[derive(Debug, Clone, Serialize)]
pub struct StudentUsage {
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub in_session_minutes: i64,
    pub outside_minutes: i64,
    pub days: Vec<DayRow>,
}

/// A course's usage over a period (lab dates, both included).
#[derive(Debug, Clone, Serialize)]
pub struct CourseUsage {
    pub course_id: Uuid,
    pub course_code: String,
    pub from: String,
    pub to: String,
    pub students: Vec<StudentUsage>,
}

/// A user's hours in one course: outside sessions since the course began
/// (what the budget counts), in sessions, and the budget if there is one.
#[derive(Debug, Clone, Serialize)]
pub struct MyUsage {
    pub course_id: Uuid,
    pub course_code: String,
    pub outside_minutes: i64,
    pub in_session_minutes: i64,
    /// Budget plus extra hours granted, in minutes; null: no budget.
    pub budget_minutes: Option<i64>,
    /// What is left of the budget (never below zero); null: no budget.
    pub left_minutes: Option<i64>,
}

fn format_date(d: Date) -> String {
    d.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

/// Parses a lab date of a query (`2026-09-07`).
pub fn parse_date(field: &str, s: &str) -> Result<Date, UsageError> {
    let why = format!("{field} must be a date like 2026-09-07");
    crate::range::parse_day(s).map_err(|e| match e {
        // Shaped like a date but no such day (2026-02-30): unacceptable, not malformed.
        crate::range::DayError::NoSuchDay => {
            UsageError::Unacceptable(format!("{why}: there is no day {}", s.trim()))
        }
        crate::range::DayError::Malformed => UsageError::Invalid(why),
    })
}

/// The metering service.
#[derive(Debug)]
pub struct Usage {
    pool: Pool,
    sessions: Arc<Sessions>,
}

impl Usage {
    pub fn new(pool: Pool, sessions: Arc<Sessions>) -> Self {
        Self { pool, sessions }
    }

    /// The window of lab dates `from..=to` (defaults: the 30 days up to
    /// today), checked.
    fn period(
        &self,
        from: Option<Date>,
        to: Option<Date>,
        now: OffsetDateTime,
    ) -> Result<(Date, Date, Span), UsageError> {
        let lab = self.sessions.lab_offset();
        let today = now.to_offset(lab).date();
        let to = to.unwrap_or(today);
        let from = from.unwrap_or(to - Duration::days(DEFAULT_PERIOD_DAYS - 1));
        if from > to {
            return Err(crate::range::RangeError::Order.into());
        }
        if (to - from).whole_days() >= MAX_PERIOD_DAYS {
            return Err(crate::range::RangeError::TooLong(MAX_PERIOD_DAYS).into());
        }
        let start = from.with_time(Time::MIDNIGHT).assume_offset(lab);
        let end = to
            .next_day()
            .map_or(start, |d| d.with_time(Time::MIDNIGHT).assume_offset(lab));
        Ok((from, to, Span::new(start, end)))
    }

    /// The course's session occurrences overlapping `window`.
    async fn session_spans(&self, course_id: Uuid, window: Span) -> Result<Vec<Span>, UsageError> {
        Ok(self
            .sessions
            .occurrences_between(window.start, window.end)
            .await?
            .into_iter()
            .filter(|(c, _)| *c == course_id)
            .map(|(_, o)| Span::new(o.starts_at, o.ends_at))
            .collect())
    }

    /// A course's usage per student over lab dates `from..=to`, for who
    /// manages the course.
    pub async fn course(
        &self,
        user: &User,
        course_id: Uuid,
        from: Option<Date>,
        to: Option<Date>,
        now: OffsetDateTime,
    ) -> Result<CourseUsage, UsageError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        let (from, to, window) = self.period(from, to, now)?;
        // Nothing after `now` has happened yet.
        let window = Span::new(window.start, window.end.min(now).max(window.start));
        let sessions = self.session_spans(course.id, window).await?;
        let history = power_log::of_course(&self.pool, course.id).await?;
        let vms = crate::vms::load_of_course(&self.pool, course.id).await?;
        let lab = self.sessions.lab_offset();
        let mut students: BTreeMap<Uuid, StudentUsage> = BTreeMap::new();
        for u in courses::students(&self.pool, course.id).await? {
            students.insert(u.id, student_row(&u));
        }
        for vm in vms {
            let Some(student) = students.get_mut(&vm.owner_id) else {
                continue; // not (or no longer) enrolled: not a student's VM
            };
            let changes = history.get(&vm.id).map(Vec::as_slice).unwrap_or(&[]);
            let running = meter::on_spans(changes, now);
            for (date, secs) in meter::meter(&running, &sessions, lab, window) {
                student.days.push(DayRow {
                    date: format_date(date),
                    vm_id: vm.id,
                    vm_name: vm.name.clone(),
                    in_session_minutes: meter::minutes(secs.in_session),
                    outside_minutes: meter::minutes(secs.outside),
                });
            }
        }
        let mut students: Vec<StudentUsage> = students.into_values().collect();
        for s in &mut students {
            s.days
                .sort_by(|a, b| (&a.date, &a.vm_name).cmp(&(&b.date, &b.vm_name)));
            s.in_session_minutes = s.days.iter().map(|d| d.in_session_minutes).sum();
            s.outside_minutes = s.days.iter().map(|d| d.outside_minutes).sum();
        }
        students.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(CourseUsage {
            course_id: course.id,
            course_code: course.code,
            from: format_date(from),
            to: format_date(to),
            students,
        })
    }

    /// The user's own hours in each course they have VMs in.
    pub async fn mine(&self, user: &User, now: OffsetDateTime) -> Result<Vec<MyUsage>, UsageError> {
        let mut out = Vec::new();
        for course in courses::list(&self.pool, user).await? {
            let vms: Vec<_> = crate::vms::load_of_course(&self.pool, course.id)
                .await?
                .into_iter()
                .filter(|v| v.owner_id == user.id)
                .collect();
            if vms.is_empty() {
                continue;
            }
            let (in_secs, out_secs) = self.secs_of(course.id, user.id, now).await?;
            let budget = budget_minutes(&self.pool, course.id, user.id).await?;
            let outside_minutes = meter::minutes(out_secs);
            out.push(MyUsage {
                course_id: course.id,
                course_code: course.code,
                outside_minutes,
                in_session_minutes: meter::minutes(in_secs),
                budget_minutes: budget,
                left_minutes: budget.map(|b| (b - outside_minutes).max(0)),
            });
        }
        Ok(out)
    }

    /// Whether a session of the course is under way at `now`.
    pub async fn in_session(
        &self,
        course_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<bool, UsageError> {
        let spans = self
            .session_spans(course_id, Span::new(now, now + Duration::seconds(1)))
            .await?;
        Ok(spans.iter().any(|s| s.start <= now && now < s.end))
    }

    /// Seconds the user's VMs of a course ran (in sessions, outside), from
    /// the first power change of any of them until `now`. For several users
    /// of one course, read [`Usage::course_hours`] once instead.
    pub async fn secs_of(
        &self,
        course_id: Uuid,
        owner: Uuid,
        now: OffsetDateTime,
    ) -> Result<(i64, i64), UsageError> {
        Ok(self.course_hours(course_id, now).await?.secs_of(owner))
    }

    /// A course's power history and sessions until `now`, read once: every
    /// user's hours in it without reading them again.
    pub async fn course_hours(
        &self,
        course_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<CourseHours, UsageError> {
        let history = power_log::of_course(&self.pool, course_id).await?;
        let mut running: HashMap<Uuid, Vec<Span>> = HashMap::new();
        for vm in crate::vms::load_of_course(&self.pool, course_id).await? {
            if let Some(changes) = history.get(&vm.id) {
                running
                    .entry(vm.owner_id)
                    .or_default()
                    .extend(meter::on_spans(changes, now));
            }
        }
        // From the first start of anyone's: covers each user's own window
        // (sessions outside it count for nothing, see meter::owner_secs).
        let sessions = match running.values().flatten().map(|s| s.start).min() {
            Some(first) => self.session_spans(course_id, Span::new(first, now)).await?,
            None => Vec::new(),
        };
        Ok(CourseHours {
            running,
            sessions,
            now,
        })
    }
}

/// A course's running spans per user and its sessions, as of `now`
/// ([`Usage::course_hours`]).
#[derive(Debug, Clone)]
pub struct CourseHours {
    running: HashMap<Uuid, Vec<Span>>,
    sessions: Vec<Span>,
    now: OffsetDateTime,
}

impl CourseHours {
    /// Seconds the user's VMs of the course ran: (in sessions, outside).
    pub fn secs_of(&self, owner: Uuid) -> (i64, i64) {
        let running = self.running.get(&owner).map(Vec::as_slice).unwrap_or(&[]);
        meter::owner_secs(running, &self.sessions, self.now)
    }
}

fn student_row(u: &User) -> StudentUsage {
    StudentUsage {
        user_id: u.id,
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        in_session_minutes: 0,
        outside_minutes: 0,
        days: Vec::new(),
    }
}

/// Minutes each VM ran in `[from, to)` with its course's code (`None`: a
/// template build), from the power history — kept for good, unlike the
/// load samples, so a quarter's report counts every hour. VMs that did not
/// run are left out.
pub async fn minutes_by_vm(
    pool: &Pool,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Vec<(Option<String>, i64)>, sqlx::Error> {
    let history = power_log::between(pool, from, to).await?;
    let codes: HashMap<Uuid, Option<String>> = sqlx::query_as::<_, (String, Option<String>)>(
        "SELECT v.id, c.code FROM vms v LEFT JOIN courses c ON c.id = v.course_id",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .filter_map(|(id, code)| Some((Uuid::parse_str(&id).ok()?, code)))
    .collect();
    let window = Span::new(from, to);
    let mut out = Vec::new();
    for (vm, changes) in history {
        // A VM removed since keeps no row to name its course.
        let Some(code) = codes.get(&vm) else {
            continue;
        };
        let secs: i64 = meter::merge(&meter::on_spans(&changes, to), window)
            .iter()
            .map(|s| (s.end - s.start).whole_seconds())
            .sum();
        let minutes = meter::minutes(secs);
        if minutes > 0 {
            out.push((code.clone(), minutes));
        }
    }
    Ok(out)
}

/// The student's budget outside sessions in a course (course hours plus
/// the extra hours granted them), in minutes; `None` without a budget.
pub async fn budget_minutes(
    pool: &Pool,
    course_id: Uuid,
    user_id: Uuid,
) -> Result<Option<i64>, sqlx::Error> {
    let hours: Option<Option<i64>> =
        sqlx::query_scalar("SELECT hours_outside FROM course_quotas WHERE course_id = $1")
            .bind(course_id.to_string())
            .fetch_optional(pool)
            .await?;
    let Some(Some(hours)) = hours else {
        return Ok(None);
    };
    let extra: Option<i64> = sqlx::query_scalar(
        "SELECT extra_hours FROM quota_extra_hours WHERE course_id = $1 AND user_id = $2",
    )
    .bind(course_id.to_string())
    .bind(user_id.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(Some((hours + extra.unwrap_or(0)) * 60))
}

/// A course's usage as CSV: one line per student, VM and date.
pub fn to_csv(u: &CourseUsage) -> String {
    let mut out =
        String::from("course,username,display_name,vm,date,in_session_minutes,outside_minutes\n");
    for s in &u.students {
        for d in &s.days {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{}",
                csv_field(&u.course_code),
                csv_field(&s.username),
                csv_field(&s.display_name),
                csv_field(&d.vm_name),
                d.date,
                d.in_session_minutes,
                d.outside_minutes
            );
        }
    }
    out
}

/// A CSV field, quoted when needed; a leading formula character is
/// neutralised so a spreadsheet does not run it.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}
