//! Idle auto-stop (issue 15): a course's running VMs are shut down when
//! nobody uses them — no console connected for N minutes, started but never
//! connected to within M minutes, or the guest idle (CPU under x % for N
//! minutes, from the load history). The rule is [`rule::decide`] (pure);
//! this service keeps each course's rule, runs it on [`Idle::tick`] and
//! answers the desktop page's question "is this VM about to be stopped?".
//!
//! Invariants: off by default (a course without a rule is never touched);
//! only personal VMs of courses are considered, never template builds; a
//! stop is the VM manager's graceful shutdown (ACPI, forced off after the
//! shutdown timeout: nothing written to the layer is lost); someone
//! connected is warned [`rule::WARN_AHEAD`] before (the desktop page polls
//! [`Idle::warning`]); only who manages a course changes its rule. Nothing
//! here reads a clock: `now` comes from the caller (the app's loop passes
//! the wall clock, tests their own instant). Warnings are in memory: after
//! a restart a warning is given again before any stop.

pub mod rule;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::courses::{self, CourseError};
use crate::db::Pool;
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

/// The desktop page's answer: when the VM will be stopped for idleness
/// (null: it will not, as far as is known now).
#[derive(Debug, Clone, Serialize)]
pub struct IdleWarning {
    #[serde(with = "time::serde::rfc3339::option")]
    pub stop_at: Option<OffsetDateTime>,
}

/// The idle auto-stop service.
#[derive(Debug)]
pub struct Idle {
    pool: Pool,
    vms: Arc<VmManager>,
    /// VM → when its user was first warned (while the rule keeps holding).
    warned: Mutex<HashMap<Uuid, OffsetDateTime>>,
}

fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

async fn load_settings(pool: &Pool, course_id: Uuid) -> Result<IdleSettings, sqlx::Error> {
    let row = sqlx::query(
        "SELECT disconnected_minutes, never_connected_minutes, cpu_below_percent, cpu_minutes
         FROM course_idle WHERE course_id = ?",
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
    pub fn new(pool: Pool, vms: Arc<VmManager>) -> Self {
        Self {
            pool,
            vms,
            warned: Mutex::default(),
        }
    }

    fn warned_mut(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, OffsetDateTime>> {
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
             cpu_below_percent, cpu_minutes) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (course_id) DO UPDATE SET disconnected_minutes = excluded.disconnected_minutes,
             never_connected_minutes = excluded.never_connected_minutes,
             cpu_below_percent = excluded.cpu_below_percent, cpu_minutes = excluded.cpu_minutes",
        )
        .bind(course.id.to_string())
        .bind(s.disconnected_minutes)
        .bind(s.never_connected_minutes)
        .bind(s.cpu_below_percent)
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
                let warned = self.warned_mut().get(&vm.id).copied();
                match rule::decide(&rule, &facts, warned, now) {
                    Verdict::Keep => {}
                    Verdict::Warn { .. } => {
                        self.warned_mut().entry(vm.id).or_insert(now);
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
        // A warning lapses when its rule stops holding (the guest got busy).
        self.warned_mut().retain(|id, _| still_warned.contains(id));
        Ok(report)
    }

    fn stop(&self, vm: crate::vms::Vm, reason: Reason) {
        let vms = self.vms.clone();
        tracing::info!(vm = %vm.id, rule = reason.as_str(), "idle auto-stop: shutting down");
        tokio::spawn(async move {
            if let Err(e) = vms.shutdown(&vm).await {
                tracing::warn!(vm = %vm.id, error = %e, "idle auto-stop: shutdown failed");
            }
        });
    }

    /// When the VM will be stopped for idleness, for who may use the VM.
    pub async fn warning(&self, user: &User, vm_id: Uuid) -> Result<IdleWarning, IdleError> {
        let vm = self.vms.get_for(user, vm_id).await?;
        Ok(IdleWarning {
            stop_at: self.warned_mut().get(&vm.id).map(|w| *w + rule::WARN_AHEAD),
        })
    }
}
