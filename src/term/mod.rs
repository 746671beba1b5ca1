//! The end of a term: a course's end date and retention, its archive, the
//! erasure of its students' layers after the retention, the erase records
//! kept instead of the data, and admin holds against erasure.
//!
//! The life of a course's data:
//! 1. **active** — before `ends_at`; from [`rules::NOTICE_LEAD_DAYS`] before
//!    it, students are told (the desktop page's banner, `GET /api/me/term`)
//!    until when they can download their work (the layer export, and their
//!    own data, [`crate::mydata`]); the loop also tells each of them once
//!    through the desk's notifications (the bell, e-mail in their language:
//!    [`rules::notices_due`] picks who, the desk's outbox
//!    [`crate::desk::notices::queue_terms`] records it once per end date);
//! 2. **archived** — at `ends_at` (the loop, [`Term::tick`]) or by hand
//!    (`POST /api/courses/{id}/archive`): running VMs are shut down, no VM
//!    of the course starts and its layers are read-only (409
//!    `course_archived`, enforced in [`crate::vms`]); export still works;
//! 3. **erased** — `retention_days` after the end: each student's layers are
//!    removed with their snapshots, their backups are pruned from the
//!    repository, and an erase record says what, whose, when and by which
//!    rule. The course row stays (archived).
//!
//! A student moving on to a follow-up course takes a disk along with
//! [`carry`] (when the new template descends from the old one).
//!
//! Invariants:
//! - what is archived and erased is decided by the pure functions of
//!   [`rules`] from (courses, layers, holds, now); the loop takes `now` from
//!   its caller, so tests choose the instant;
//! - nothing of an active course, a held course or a held student is ever
//!   erased (property-tested in [`rules`]);
//! - backups are pruned before the layer goes; a layer whose backups
//!   cannot be pruned (repository unreachable) stays until a later pass;
//! - the erase record is written before the data is removed and is unique
//!   per VM, so a pass interrupted in between finishes later with one record.

pub mod carry;
pub mod rules;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::auth::Role;
use crate::backup::Backups;
use crate::courses::{self, Course, CourseError};
use crate::db::{self, Pool};
use crate::users::User;
use crate::vms::{VmError, VmManager};
use rules::{CourseTerm, Holds, LayerRef, Student};

/// Longest reason of a hold, in characters.
pub const MAX_REASON: usize = 500;
/// How often the background loop runs a pass (an end date is a day, not a
/// second: five minutes late is on time).
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);
/// The `archived_by` of the loop's archive.
pub const BY_END_DATE: &str = "rule:ends_at";

#[derive(Debug, thiserror::Error)]
pub enum TermError {
    #[error("{0}")]
    Invalid(String),
    /// Well-formed but naming nothing that exists (a hold's course or user).
    #[error("{0}")]
    Unacceptable(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Archived(String),
    #[error("{0}")]
    HoldExists(String),
    /// Carry-over: the new course's template does not descend from the old.
    #[error("{0}")]
    NotDescendant(String),
    /// Carry-over: the new VM's disk already holds work.
    #[error("{0}")]
    LayerInUse(String),
    #[error(transparent)]
    Course(#[from] CourseError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// `PATCH /api/courses/{id}`: the end of the term. `ends_at: null` removes
/// the end date; a field left out is unchanged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermPatch {
    #[serde(default, deserialize_with = "crate::patch::present")]
    pub ends_at: Option<Option<String>>,
    #[serde(default)]
    pub retention_days: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    #[serde(default)]
    pub course_id: Option<Uuid>,
    #[serde(default)]
    pub user_id: Option<Uuid>,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Hold {
    pub id: Uuid,
    pub course_id: Option<Uuid>,
    pub course_code: Option<String>,
    pub user_id: Option<Uuid>,
    pub username: Option<String>,
    pub reason: String,
    pub created_by: String,
    pub created_at: String,
}

/// An erase record: what was erased, whose, when and by which rule.
#[derive(Debug, Serialize)]
pub struct Erasure {
    pub id: Uuid,
    pub at: String,
    pub user_id: Uuid,
    pub course_id: Uuid,
    pub course_code: String,
    pub vm_id: Uuid,
    pub vm_name: String,
    /// `layer`: the VM's personal layer with its snapshots and backups.
    pub what: String,
    pub rule: String,
    pub bytes: i64,
    pub backups_pruned: i64,
}

/// What a student is told about a course of theirs that ends.
#[derive(Debug, Serialize)]
pub struct TermNotice {
    pub course_id: Uuid,
    pub code: String,
    pub name: String,
    pub ends_at: Option<String>,
    /// `active` | `archived`
    pub state: &'static str,
    /// Until when the work can be downloaded (then it is erased); none
    /// while an admin holds the course or the student.
    pub download_until: Option<String>,
    pub held: bool,
}

/// What one pass of the loop did.
#[derive(Debug, Default, Serialize)]
pub struct TickReport {
    /// Students newly told of a course's end (bell and e-mail).
    pub told: u64,
    pub archived: Vec<Uuid>,
    pub erased: u64,
}

#[derive(Debug)]
pub struct Term {
    pool: Pool,
    vms: Arc<VmManager>,
    backups: Arc<Backups>,
}

fn parse_time(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

fn format_unix(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .map(db::format_time)
        .unwrap_or_default()
}

impl Term {
    pub fn new(pool: Pool, vms: Arc<VmManager>, backups: Arc<Backups>) -> Self {
        Self { pool, vms, backups }
    }

    /// Sets a managed course's end date and retention.
    pub async fn set(&self, user: &User, id: Uuid, patch: TermPatch) -> Result<Course, TermError> {
        let course = courses::get_managed(&self.pool, user, id).await?;
        let ends_at = match &patch.ends_at {
            None => None,
            Some(None) => Some(None),
            Some(Some(s)) => {
                let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
                    TermError::Invalid("ends_at must be an RFC 3339 date-time".into())
                })?;
                Some(Some(db::format_time(t)))
            }
        };
        if let Some(days) = patch.retention_days
            && !(0..=3650).contains(&days)
        {
            return Err(TermError::Invalid("retention_days must be 0-3650".into()));
        }
        if ends_at.is_some() && course.archived_at.is_some() {
            return Err(TermError::Archived(
                "the course is archived: its end can no longer be moved (its retention can)".into(),
            ));
        }
        sqlx::query(
            "UPDATE courses SET ends_at = CASE WHEN $1 THEN $2 ELSE ends_at END,
                    retention_days = COALESCE($3, retention_days) WHERE id = $4",
        )
        .bind(ends_at.is_some())
        .bind(ends_at.flatten())
        .bind(patch.retention_days)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(courses::load(&self.pool, id).await?)
    }

    /// Archives a managed course now (idempotent: an archived course is
    /// returned as it is).
    pub async fn archive(&self, user: &User, id: Uuid) -> Result<Course, TermError> {
        let course = courses::get_managed(&self.pool, user, id).await?;
        if course.archived_at.is_none() {
            self.archive_course(
                id,
                &user.id.to_string(),
                OffsetDateTime::now_utc().unix_timestamp(),
            )
            .await?;
        }
        Ok(courses::load(&self.pool, id).await?)
    }

    /// Marks the course archived at `now` (once), then shuts its running
    /// VMs down (forced off after the shutdown timeout). A VM that cannot be
    /// stopped now is logged; it cannot start again either way.
    async fn archive_course(&self, id: Uuid, by: &str, now: i64) -> Result<(), TermError> {
        sqlx::query(
            "UPDATE courses SET archived_at = $1, archived_by = $2 WHERE id = $3 AND archived_at IS NULL",
        )
        .bind(format_unix(now))
        .bind(by)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        for vm in self.vms.of_course(id).await? {
            if matches!(vm.state.as_str(), "stopped" | "error") {
                continue;
            }
            if let Err(e) = self.vms.shutdown(&vm).await {
                tracing::warn!(vm = %vm.id, error = %e, "could not shut down a VM of an archived course");
            }
        }
        Ok(())
    }

    async fn course_terms(&self) -> Result<Vec<CourseTerm>, TermError> {
        let rows = sqlx::query("SELECT id, ends_at, retention_days, archived_at FROM courses")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(course_term(r)?);
        }
        Ok(out)
    }

    async fn holds_set(&self) -> Result<Holds, TermError> {
        let rows: Vec<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT course_id, user_id FROM term_holds")
                .fetch_all(&self.pool)
                .await?;
        let mut holds = Holds::default();
        for (c, u) in rows {
            if let Some(c) = c {
                holds.courses.insert(db::parse_uuid(&c)?);
            }
            if let Some(u) = u {
                holds.users.insert(db::parse_uuid(&u)?);
            }
        }
        Ok(holds)
    }

    /// One pass at `now`: tells the students of courses in their notice
    /// window ([`rules::notices_due`]), archives the courses whose end came,
    /// then erases the layers the rules select ([`rules::to_erase`]).
    pub async fn tick(&self, now: OffsetDateTime) -> Result<TickReport, TermError> {
        let mut report = TickReport {
            told: self.tell(now).await?,
            ..TickReport::default()
        };
        let now = now.unix_timestamp();
        for id in rules::to_archive(&self.course_terms().await?, now) {
            self.archive_course(id, BY_END_DATE, now).await?;
            report.archived.push(id);
        }
        let courses = self.course_terms().await?;
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT v.id, v.course_id, v.owner_id FROM vms v JOIN courses c ON c.id = v.course_id
             WHERE c.archived_at IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut layers = Vec::with_capacity(rows.len());
        for (vm, course, owner) in rows {
            layers.push(LayerRef {
                vm_id: db::parse_uuid(&vm)?,
                course_id: db::parse_uuid(&course)?,
                owner_id: db::parse_uuid(&owner)?,
            });
        }
        let holds = self.holds_set().await?;
        // Each student's layers of a course go together (the VM manager
        // deletes them per course and owner; the rules never split them).
        let mut groups: BTreeMap<(Uuid, Uuid), Vec<Uuid>> = BTreeMap::new();
        for l in rules::to_erase(&courses, &layers, &holds, now) {
            groups
                .entry((l.course_id, l.owner_id))
                .or_default()
                .push(l.vm_id);
        }
        for ((course, owner), _) in groups {
            match self.erase(course, owner, now).await {
                Ok(n) => report.erased += n,
                // One student's failure (a VM still stopping, the backup
                // repository away) does not hold up the others.
                Err(e) => {
                    tracing::warn!(course = %course, user = %owner, error = %e, "erasure postponed");
                }
            }
        }
        Ok(report)
    }

    /// Queues the notices due at `now` into the desk's outbox (which sends
    /// each once per student, course and end date); returns how many were new.
    async fn tell(&self, at: OffsetDateTime) -> Result<u64, TermError> {
        let now = at.unix_timestamp();
        let courses = self.course_terms().await?;
        if !courses.iter().any(|c| rules::in_notice_window(c, now)) {
            return Ok(0);
        }
        // Enabled students with work in a course that has an end and is not
        // archived (the window itself is the rules' business).
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT e.course_id, e.user_id FROM enrolments e
             JOIN users u ON u.id = e.user_id JOIN courses c ON c.id = e.course_id
             WHERE u.role = 'student' AND u.disabled = 0
               AND c.ends_at IS NOT NULL AND c.archived_at IS NULL
               AND EXISTS (SELECT 1 FROM vms v WHERE v.course_id = e.course_id AND v.owner_id = e.user_id)",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut students = Vec::with_capacity(rows.len());
        for (course, user) in rows {
            students.push(Student {
                course_id: db::parse_uuid(&course)?,
                user_id: db::parse_uuid(&user)?,
            });
        }
        let told: rules::Told = crate::desk::notices::terms_told(&self.pool)
            .await?
            .into_iter()
            .map(|(user, course, end)| (user, course, end.unix_timestamp()))
            .collect();
        let holds = self.holds_set().await?;
        let at_unix = |t: i64| OffsetDateTime::from_unix_timestamp(t).ok();
        let endings: Vec<_> = rules::notices_due(&courses, &students, &holds, &told, now)
            .into_iter()
            .filter_map(|n| {
                Some(crate::desk::notices::TermEnding {
                    user_id: n.user_id,
                    course_id: n.course_id,
                    ends_at: at_unix(n.ends_at)?,
                    download_until: n.download_until.and_then(at_unix),
                })
            })
            .collect();
        Ok(crate::desk::notices::queue_terms(&self.pool, &endings, at).await?)
    }

    /// Erases one student's layers of an archived course: backups pruned,
    /// records written, then the VMs and their files removed.
    async fn erase(&self, course: Uuid, owner: Uuid, now: i64) -> Result<u64, TermError> {
        let vms: Vec<_> = self
            .vms
            .of_course(course)
            .await?
            .into_iter()
            .filter(|v| v.owner_id == owner)
            .collect();
        if let Some(v) = vms
            .iter()
            .find(|v| !matches!(v.state.as_str(), "stopped" | "error"))
        {
            return Err(TermError::Vm(VmError::Running(format!(
                "VM {} is still {}",
                v.id,
                v.state.as_str()
            ))));
        }
        let code: String = sqlx::query_scalar("SELECT code FROM courses WHERE id = $1")
            .bind(course.to_string())
            .fetch_one(&self.pool)
            .await?;
        let mut pruned = Vec::with_capacity(vms.len());
        for vm in &vms {
            let n = self.backups.forget_vm(vm.id).await.map_err(|e| {
                TermError::Vm(VmError::Io(std::io::Error::other(format!(
                    "pruning the backups of VM {}: {e}",
                    vm.id
                ))))
            })?;
            pruned.push(n);
        }
        let at = format_unix(now);
        let mut tx = db::begin(&self.pool).await?;
        for (vm, n) in vms.iter().zip(&pruned) {
            let bytes = std::fs::metadata(&vm.overlay_path)
                .map(|m| m.len())
                .unwrap_or(vm.overlay_bytes);
            sqlx::query(
                "INSERT INTO erasures (id, at, user_id, course_id, course_code, vm_id, vm_name, what, rule, bytes, backups_pruned)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'layer', $8, $9, $10) ON CONFLICT DO NOTHING",
            )
            .bind(Uuid::new_v4().to_string())
            .bind(&at)
            .bind(owner.to_string())
            .bind(course.to_string())
            .bind(&code)
            .bind(vm.id.to_string())
            .bind(&vm.name)
            .bind(rules::RULE_RETENTION)
            .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
            .bind(i64::try_from(*n).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.vms.delete_for(course, Some(owner)).await?;
        tracing::info!(course = %code, user = %owner, layers = vms.len(), "erased at the end of the retention");
        Ok(vms.len() as u64)
    }

    /// Carries the disk of the caller's VM `from` into their VM `target` of
    /// a follow-up course ([`carry`]).
    pub async fn carry_over(
        &self,
        user: &User,
        target: Uuid,
        from: Uuid,
    ) -> Result<crate::vms::Vm, TermError> {
        carry::carry_over(&self.pool, &self.vms, user, target, from).await
    }

    /// Erase records: an admin's are everyone's (newest first, at most
    /// 1000), everyone else's their own.
    pub async fn erasures(&self, user: &User) -> Result<Vec<Erasure>, TermError> {
        let sql = "SELECT id, at, user_id, course_id, course_code, vm_id, vm_name, what, rule, bytes, backups_pruned
                   FROM erasures";
        let rows = if user.role == Role::Admin {
            sqlx::query(&format!("{sql} ORDER BY at DESC, vm_id LIMIT 1000"))
                .fetch_all(&self.pool)
                .await?
        } else {
            sqlx::query(&format!("{sql} WHERE user_id = $1 ORDER BY at DESC, vm_id"))
                .bind(user.id.to_string())
                .fetch_all(&self.pool)
                .await?
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(Erasure {
                id: db::uuid(r, "id")?,
                at: r.try_get("at")?,
                user_id: db::uuid(r, "user_id")?,
                course_id: db::uuid(r, "course_id")?,
                course_code: r.try_get("course_code")?,
                vm_id: db::uuid(r, "vm_id")?,
                vm_name: r.try_get("vm_name")?,
                what: r.try_get("what")?,
                rule: r.try_get("rule")?,
                bytes: r.try_get("bytes")?,
                backups_pruned: r.try_get("backups_pruned")?,
            });
        }
        Ok(out)
    }

    /// The user's courses whose end they are told about at `now`.
    pub async fn notices(
        &self,
        user: &User,
        now: OffsetDateTime,
    ) -> Result<Vec<TermNotice>, TermError> {
        let now = now.unix_timestamp();
        let rows = sqlx::query(
            "SELECT c.id, c.code, c.name, c.ends_at, c.retention_days, c.archived_at,
                    EXISTS (SELECT 1 FROM term_holds h WHERE h.course_id = c.id OR h.user_id = e.user_id) AS held
             FROM courses c JOIN enrolments e ON e.course_id = c.id
             -- Nothing to tell once the work of the student there is gone (erased).
             WHERE e.user_id = $1
               AND EXISTS (SELECT 1 FROM vms v WHERE v.course_id = c.id AND v.owner_id = e.user_id)
             ORDER BY c.code",
        )
        .bind(user.id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let term = course_term(r)?;
            if !rules::notice_shown(&term, now) {
                continue;
            }
            let held = r.try_get::<db::Flag, _>("held")?.0;
            out.push(TermNotice {
                course_id: term.id,
                code: r.try_get("code")?,
                name: r.try_get("name")?,
                ends_at: r.try_get("ends_at")?,
                state: if term.archived_at.is_some() {
                    "archived"
                } else {
                    "active"
                },
                download_until: if held {
                    None
                } else {
                    term.download_until().map(format_unix)
                },
                held,
            });
        }
        Ok(out)
    }

    pub async fn holds(&self) -> Result<Vec<Hold>, TermError> {
        let rows = sqlx::query(
            "SELECT h.id, h.course_id, c.code AS course_code, h.user_id, u.username, h.reason, h.created_by, h.created_at
             FROM term_holds h LEFT JOIN courses c ON c.id = h.course_id LEFT JOIN users u ON u.id = h.user_id
             ORDER BY h.created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(Hold {
                id: db::uuid(r, "id")?,
                course_id: db::opt_uuid(r, "course_id")?,
                course_code: r.try_get("course_code")?,
                user_id: db::opt_uuid(r, "user_id")?,
                username: r.try_get("username")?,
                reason: r.try_get("reason")?,
                created_by: r.try_get("created_by")?,
                created_at: r.try_get("created_at")?,
            });
        }
        Ok(out)
    }

    /// Holds a course or a student against erasure (admins).
    pub async fn add_hold(&self, admin: &User, new: NewHold) -> Result<Hold, TermError> {
        let reason = new.reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON {
            return Err(TermError::Invalid(format!(
                "reason must be 1-{MAX_REASON} characters"
            )));
        }
        if reason.chars().any(char::is_control) {
            return Err(TermError::Invalid(
                "reason must not contain control characters".into(),
            ));
        }
        if new.course_id.is_some() == new.user_id.is_some() {
            return Err(TermError::Unacceptable(
                "give exactly one of course_id and user_id".into(),
            ));
        }
        let id = Uuid::new_v4();
        let res = sqlx::query(
            "INSERT INTO term_holds (id, course_id, user_id, reason, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(new.course_id.map(|c| c.to_string()))
        .bind(new.user_id.map(|u| u.to_string()))
        .bind(reason)
        .bind(&admin.username)
        .bind(db::now())
        .execute(&self.pool)
        .await;
        match res {
            Err(e) if db::unique_violation(&e).is_some() => {
                return Err(TermError::HoldExists(
                    "there is already a hold on this course or student".into(),
                ));
            }
            Err(e) if db::is_foreign_key_violation(&e) => {
                return Err(TermError::Unacceptable("no such course or user".into()));
            }
            other => {
                other?;
            }
        }
        self.holds()
            .await?
            .into_iter()
            .find(|h| h.id == id)
            .ok_or(TermError::NotFound)
    }

    pub async fn remove_hold(&self, id: Uuid) -> Result<(), TermError> {
        let done = sqlx::query("DELETE FROM term_holds WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(TermError::NotFound);
        }
        Ok(())
    }
}

fn course_term(r: &crate::db::Row) -> Result<CourseTerm, sqlx::Error> {
    Ok(CourseTerm {
        id: db::uuid(r, "id")?,
        ends_at: r
            .try_get::<Option<String>, _>("ends_at")?
            .as_deref()
            .and_then(parse_time),
        retention_days: r.try_get("retention_days")?,
        archived_at: r
            .try_get::<Option<String>, _>("archived_at")?
            .as_deref()
            .and_then(parse_time),
    })
}
