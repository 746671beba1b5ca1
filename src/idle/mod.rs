//! Idle auto-stop (issue 15): a course's running VMs are shut down when
//! nobody uses them — no console connected for N minutes, started but never
//! connected to within M minutes, or the guest idle (CPU under x % for N
//! minutes, from the load history). The rule is [`rule::decide`] (pure);
//! this service keeps each course's rule, runs it on [`Idle::tick`] and
//! answers the desktop page's question "is this VM about to be stopped?".
//!
//! The same loop ends runs that outlast the owner's hours: a VM running
//! outside sessions in a course with an hour quota is shut down when its
//! owner's budget there (course hours plus extra hours) is spent, with the
//! same warning ahead ([`rule::hours`]; the quota itself refuses starts in
//! [`crate::usage::quota`]). Session time never counts.
//!
//! Invariants: off by default (a course without a rule is never touched);
//! only personal VMs of courses are considered, never template builds; a
//! stop is the VM manager's graceful shutdown (ACPI, forced off after the
//! shutdown timeout: nothing written to the layer is lost); someone
//! connected is warned [`rule::WARN_AHEAD`] before (the desktop page polls
//! [`Idle::warning`]); only who manages a course changes its rule. Nothing
//! here reads a clock: `now` comes from the caller (the app's loop passes
//! the wall clock, tests their own instant).
//!
//! Warnings are remembered (table `idle_warnings`, written only here at the
//! end of each tick, loaded by [`Idle::load`]): after a restart a VM warned
//! at T−5 is stopped at T, not given a fresh five minutes, and the desktop
//! page keeps showing the same stop instant. The copy in memory is what the
//! stored rows say; a tick that cannot write them leaves both unchanged, so
//! the next tick writes them again.

pub mod rule;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::courses::{self, CourseError};
use crate::db::{Pool, from_unix_ms as from_millis, unix_ms as millis};
use crate::usage::{Usage, UsageError};
use crate::users::User;
use crate::vms::{VmError, VmManager, VmState};
use rule::{ConsoleSpan, Facts, IdleRule, Reason, Verdict};

/// Longest minutes of any rule (a week).
pub const MAX_MINUTES: i64 = 10_080;

#[derive(Debug, thiserror::Error)]
pub enum IdleError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Course(#[from] CourseError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A course's idle rule as the API shows and takes it (null: that rule off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdleSettings {
    #[serde(default)]
    pub disconnected_minutes: Option<i64>,
    #[serde(default)]
    pub never_connected_minutes: Option<i64>,
    #[serde(default)]
    pub cpu_below_percent: Option<f64>,
    #[serde(default)]
    pub cpu_minutes: Option<i64>,
}

impl IdleSettings {
    fn validate(&self) -> Result<(), IdleError> {
        for (field, v) in [
            ("disconnected_minutes", self.disconnected_minutes),
            ("never_connected_minutes", self.never_connected_minutes),
            ("cpu_minutes", self.cpu_minutes),
        ] {
            if let Some(v) = v
                && !(1..=MAX_MINUTES).contains(&v)
            {
                return Err(IdleError::Invalid(format!(
                    "{field} must be between 1 and {MAX_MINUTES}, or null for off"
                )));
            }
        }
        if let Some(p) = self.cpu_below_percent
            && !(p > 0.0 && p <= 100.0)
        {
            return Err(IdleError::Invalid(
                "cpu_below_percent must be above 0 and at most 100, or null for off".into(),
            ));
        }
        if self.cpu_below_percent.is_some() != self.cpu_minutes.is_some() {
            return Err(IdleError::Invalid(
                "cpu_below_percent and cpu_minutes go together (both set or both null)".into(),
            ));
        }
        Ok(())
    }

    pub fn rule(&self) -> IdleRule {
        IdleRule {
            disconnected: self.disconnected_minutes.map(Duration::minutes),
            never_connected: self.never_connected_minutes.map(Duration::minutes),
            cpu_below_percent: self.cpu_below_percent,
            cpu_for: self.cpu_minutes.map(Duration::minutes),
        }
    }
}

/// What one tick did.
#[derive(Debug, Default, Serialize)]
pub struct IdleReport {
    /// VMs whose shutdown was asked for, with the rule that fired.
    pub stopped: Vec<(Uuid, &'static str)>,
    /// VMs whose user is warned.
    pub warned: Vec<Uuid>,
}

/// The desktop page's answer: when the VM will be stopped for idleness or
/// because its owner's hours are spent (null: it will not, as far as is
/// known now).
#[derive(Debug, Clone, Serialize)]
pub struct IdleWarning {
    #[serde(with = "time::serde::rfc3339::option")]
    pub stop_at: Option<OffsetDateTime>,
    /// `idle` or `hours` (null with `stop_at`).
    pub reason: Option<&'static str>,
}

/// A warning given: when (the stop comes [`rule::WARN_AHEAD`] later; to the
/// millisecond, as stored) and whether for the hours rather than idleness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Warned {
    at: OffsetDateTime,
    hours: bool,
}

/// The idle auto-stop service.
#[derive(Debug)]
pub struct Idle {
    pool: Pool,
    vms: Arc<VmManager>,
    usage: Arc<Usage>,
    /// VM → when its user was first warned (while the rule keeps holding).
    warned: Mutex<HashMap<Uuid, Warned>>,
}

impl Warned {
    /// A warning given at `at`, cut to the millisecond as it is stored (the
    /// copy in memory and the row must say the same).
    fn new(at: OffsetDateTime, hours: bool) -> Self {
        Self {
            at: from_millis(millis(at)),
            hours,
        }
    }
}

/// What to write so that the stored warnings go from `before` to `after`
/// (pure): the warnings new or changed, and the VMs no longer warned.
fn changes(
    before: &HashMap<Uuid, Warned>,
    after: &HashMap<Uuid, Warned>,
) -> (Vec<(Uuid, Warned)>, Vec<Uuid>) {
    let mut put: Vec<(Uuid, Warned)> = after
        .iter()
        .filter(|(id, w)| before.get(id) != Some(w))
        .map(|(id, w)| (*id, *w))
        .collect();
    let mut gone: Vec<Uuid> = before
        .keys()
        .filter(|id| !after.contains_key(id))
        .copied()
        .collect();
    put.sort_by_key(|(id, _)| *id);
    gone.sort();
    (put, gone)
}

async fn load_warnings(pool: &Pool) -> Result<HashMap<Uuid, Warned>, sqlx::Error> {
    let rows = sqlx::query("SELECT vm_id, warned_ms, reason FROM idle_warnings")
        .fetch_all(pool)
        .await?;
    let mut out = HashMap::new();
    for r in rows {
        let reason: String = r.try_get("reason")?;
        out.insert(
            crate::db::uuid(&r, "vm_id")?,
            Warned {
                at: from_millis(r.try_get("warned_ms")?),
                hours: reason == "hours",
            },
        );
    }
    Ok(out)
}

async fn load_settings(pool: &Pool, course_id: Uuid) -> Result<IdleSettings, sqlx::Error> {
    let row = sqlx::query(
        "SELECT disconnected_minutes, never_connected_minutes, cpu_below_percent, cpu_minutes
         FROM course_idle WHERE course_id = $1",
    )
    .bind(course_id.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        None => IdleSettings::default(),
        Some(r) => IdleSettings {
            disconnected_minutes: r.try_get("disconnected_minutes")?,
            never_connected_minutes: r.try_get("never_connected_minutes")?,
            cpu_below_percent: r.try_get("cpu_below_percent")?,
            cpu_minutes: r.try_get("cpu_minutes")?,
        },
    })
}

impl Idle {
    /// The service, with the warnings a previous run gave still in force.
    pub async fn load(
        pool: Pool,
        vms: Arc<VmManager>,
        usage: Arc<Usage>,
    ) -> Result<Self, sqlx::Error> {
        let warned = load_warnings(&pool).await?;
        Ok(Self {
            pool,
            vms,
            usage,
            warned: Mutex::new(warned),
        })
    }

    /// Writes the warnings' changes from `before` to `after` in one
    /// transaction.
    async fn save(
        &self,
        before: &HashMap<Uuid, Warned>,
        after: &HashMap<Uuid, Warned>,
    ) -> Result<(), sqlx::Error> {
        let (put, gone) = changes(before, after);
        if put.is_empty() && gone.is_empty() {
            return Ok(());
        }
        let mut tx = crate::db::begin(&self.pool).await?;
        for (vm, w) in put {
            sqlx::query(
                "INSERT INTO idle_warnings (vm_id, warned_ms, reason) VALUES ($1, $2, $3)
                 ON CONFLICT (vm_id) DO UPDATE SET warned_ms = excluded.warned_ms,
                 reason = excluded.reason",
            )
            .bind(vm.to_string())
            .bind(millis(w.at))
            .bind(if w.hours { "hours" } else { "idle" })
            .execute(&mut *tx)
            .await?;
        }
        for vm in gone {
            sqlx::query("DELETE FROM idle_warnings WHERE vm_id = $1")
                .bind(vm.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    fn warned_mut(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Warned>> {
        self.warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A course's idle rule, for who manages the course.
    pub async fn settings(&self, user: &User, course_id: Uuid) -> Result<IdleSettings, IdleError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        Ok(load_settings(&self.pool, course.id).await?)
    }

    /// Replaces a course's idle rule (all null: off).
    pub async fn set_settings(
        &self,
        user: &User,
        course_id: Uuid,
        s: IdleSettings,
    ) -> Result<IdleSettings, IdleError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        s.validate()?;
        sqlx::query(
            "INSERT INTO course_idle (course_id, disconnected_minutes, never_connected_minutes,
             cpu_below_percent, cpu_minutes) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (course_id) DO UPDATE SET disconnected_minutes = excluded.disconnected_minutes,
             never_connected_minutes = excluded.never_connected_minutes,
             cpu_below_percent = excluded.cpu_below_percent, cpu_minutes = excluded.cpu_minutes",
        )
        .bind(course.id.to_string())
        .bind(s.disconnected_minutes)
        .bind(s.never_connected_minutes)
        .bind(crate::db::Real(s.cpu_below_percent))
        .bind(s.cpu_minutes)
        .execute(&self.pool)
        .await?;
        Ok(load_settings(&self.pool, course.id).await?)
    }

    /// What is known of a running VM that started at `started`.
    async fn facts(&self, vm_id: Uuid, started: OffsetDateTime) -> Result<Facts, IdleError> {
        let consoles = crate::slo::record::console_spans(&self.pool, vm_id, millis(started))
            .await?
            .into_iter()
            .map(|(o, e)| ConsoleSpan {
                opened: from_millis(o),
                ended: e.map(from_millis),
            })
            .collect();
        let cpu = crate::monitor::vm_cpu_since(&self.pool, vm_id, started.unix_timestamp())
            .await?
            .into_iter()
            .filter_map(|(at, p)| Some((OffsetDateTime::from_unix_timestamp(at).ok()?, p)))
            .collect();
        Ok(Facts {
            started: Some(started),
            consoles,
            cpu,
        })
    }

    /// Runs every course's rule at `now`: shuts down the VMs it says to
    /// (each shutdown in its own task: a guest may take the whole shutdown
    /// timeout) and notes the warnings.
    pub async fn tick(&self, now: OffsetDateTime) -> Result<IdleReport, IdleError> {
        let courses: Vec<String> = sqlx::query_scalar(
            "SELECT course_id FROM course_idle WHERE disconnected_minutes IS NOT NULL
             OR never_connected_minutes IS NOT NULL OR cpu_minutes IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut report = IdleReport::default();
        let mut still_warned = Vec::new();
        // This tick works on a copy: memory takes it once it is stored.
        let before = self.warned_mut().clone();
        let mut warnings = before.clone();
        for course in courses {
            let course = crate::db::parse_uuid(&course)?;
            let rule = load_settings(&self.pool, course).await?.rule();
            if rule.is_off() {
                continue;
            }
            for vm in crate::vms::load_of_course(&self.pool, course).await? {
                // A build VM has no course, so it never gets here.
                let started = vm
                    .last_started_at
                    .as_deref()
                    .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
                let (VmState::Running, Some(started)) = (vm.state, started) else {
                    continue;
                };
                let facts = self.facts(vm.id, started).await?;
                let warned = warnings.get(&vm.id).filter(|w| !w.hours).map(|w| w.at);
                match rule::decide(&rule, &facts, warned, now) {
                    Verdict::Keep => {}
                    Verdict::Warn { .. } => {
                        warnings.entry(vm.id).or_insert(Warned::new(now, false));
                        still_warned.push(vm.id);
                        report.warned.push(vm.id);
                    }
                    Verdict::Stop(reason) => {
                        report.stopped.push((vm.id, reason.as_str()));
                        self.stop(vm, reason);
                    }
                }
            }
        }
        self.hours_tick(now, &mut report, &mut warnings, &mut still_warned)
            .await?;
        // A warning lapses when its rule stops holding (the guest got busy,
        // extra hours were granted, a session began) or the VM is stopped.
        warnings.retain(|id, _| still_warned.contains(id));
        self.save(&before, &warnings).await?;
        *self.warned_mut() = warnings;
        Ok(report)
    }

    /// The hour budgets: running VMs outside sessions of courses with an
    /// hour quota, stopped when their owner's budget there is spent.
    async fn hours_tick(
        &self,
        now: OffsetDateTime,
        report: &mut IdleReport,
        warnings: &mut HashMap<Uuid, Warned>,
        still_warned: &mut Vec<Uuid>,
    ) -> Result<(), IdleError> {
        let courses: Vec<String> = sqlx::query_scalar(
            "SELECT course_id FROM course_quotas WHERE hours_outside IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        for course in courses {
            let course = crate::db::parse_uuid(&course)?;
            let running: Vec<crate::vms::Vm> = crate::vms::load_of_course(&self.pool, course)
                .await?
                .into_iter()
                .filter(|v| {
                    v.state == VmState::Running && !report.stopped.iter().any(|s| s.0 == v.id)
                })
                .collect();
            if running.is_empty() || self.usage.in_session(course, now).await? {
                continue;
            }
            // The course's power history and sessions, read once for all
            // its running VMs.
            let hours = self.usage.course_hours(course, now).await?;
            for vm in running {
                let Some(budget) =
                    crate::usage::budget_minutes(&self.pool, course, vm.owner_id).await?
                else {
                    continue;
                };
                let (_, outside) = hours.secs_of(vm.owner_id);
                let left = Duration::minutes(budget) - Duration::seconds(outside);
                match rule::hours(left, now) {
                    Verdict::Keep => {}
                    Verdict::Warn { stop_at } => {
                        // The stop instant is the budget's end: the warning
                        // is dated so that it says so.
                        warnings.insert(vm.id, Warned::new(stop_at - rule::WARN_AHEAD, true));
                        still_warned.push(vm.id);
                        report.warned.push(vm.id);
                    }
                    Verdict::Stop(reason) => {
                        report.stopped.push((vm.id, reason.as_str()));
                        self.stop(vm, reason);
                    }
                }
            }
        }
        Ok(())
    }

    fn stop(&self, vm: crate::vms::Vm, reason: Reason) {
        let vms = self.vms.clone();
        tracing::info!(vm = %vm.id, rule = reason.as_str(), "auto-stop: shutting down");
        tokio::spawn(async move {
            if let Err(e) = vms.shutdown(&vm).await {
                tracing::warn!(vm = %vm.id, error = %e, "idle auto-stop: shutdown failed");
            }
        });
    }

    /// When the VM will be stopped for idleness, for who may use the VM.
    pub async fn warning(&self, user: &User, vm_id: Uuid) -> Result<IdleWarning, IdleError> {
        let vm = self.vms.get_for(user, vm_id).await?;
        let warned = self.warned_mut().get(&vm.id).copied();
        Ok(IdleWarning {
            stop_at: warned.map(|w| w.at + rule::WARN_AHEAD),
            reason: warned.map(|w| if w.hours { "hours" } else { "idle" }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_warning_is_kept_to_the_millisecond_it_is_stored_with() {
        let at = datetime!(2026-12-07 09:35:00.123456789 UTC);
        let w = Warned::new(at, false);
        assert_eq!(w.at, datetime!(2026-12-07 09:35:00.123 UTC));
        assert_eq!(from_millis(millis(w.at)), w.at, "reads back the same");
    }

    #[test]
    fn only_what_changed_is_written() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let t = datetime!(2026-12-07 09:35 UTC);
        let before = HashMap::from([(a, Warned::new(t, false)), (b, Warned::new(t, true))]);
        // Nothing changed: nothing written.
        assert_eq!(changes(&before, &before), (vec![], vec![]));
        // a kept, b's hours moved, c new; then a lapses.
        let mut after = before.clone();
        let moved = Warned::new(t + Duration::minutes(1), true);
        after.insert(b, moved);
        after.insert(c, Warned::new(t, false));
        assert_eq!(
            changes(&before, &after),
            (vec![(b, moved), (c, Warned::new(t, false))], vec![])
        );
        after.remove(&a);
        assert_eq!(changes(&before, &after).1, vec![a]);
    }
}
