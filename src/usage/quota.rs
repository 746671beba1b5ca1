//! Quotas: a student's hours outside sessions per course (budget plus extra
//! hours granted), the lab's limits per user (VMs running at once, their
//! vCPUs and memory together) and a course's VMs running at once.
//!
//! [`check`] is the rule (pure, unit tested); [`QuotaGate`] is the VM
//! manager's start gate ([`crate::vms::gate`]) that loads what the rule
//! needs and holds each admitted start as pending until it is over, so two
//! concurrent starts cannot both take the last slot (admissions are
//! serialised; they are a few small queries). [`Quotas`] reads and changes
//! the settings for the HTTP API.
//!
//! Invariants: time in a session never counts against the budget, and a
//! timetable's pre-start is never refused for hours; the user limits apply
//! to personal VMs of courses (a teacher's template build is not limited);
//! a course's quota is changed only by who manages the course, the lab's
//! limits only by admins; a refused start changes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Usage, UsageError};
use crate::courses;
use crate::db::Pool;
use crate::users::User;
use crate::vms::gate::{ActiveVm, Quota, StartBy, StartGate, StartPermit};
use crate::vms::{Vm, VmError};

/// Largest hour figure accepted (budget, extra hours).
pub const MAX_HOURS: i64 = 10_000;

/// The limits that apply to one start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub user: UserLimits,
    pub course_max_vms: Option<u32>,
    /// Budget outside sessions (course hours plus extra), minutes.
    pub budget_minutes: Option<i64>,
}

/// What already runs and what was used, the VM to start not included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub user_vms: u32,
    pub user_vcpus: u32,
    pub user_memory_mib: u64,
    pub course_vms: u32,
    pub outside_minutes: i64,
    /// A session of the VM's course is under way.
    pub in_session: bool,
}

/// The quota a start of a VM with `vcpus` and `memory_mib` would exceed,
/// with a message naming it; `None` if it may start.
pub fn check(
    vcpus: u32,
    memory_mib: u32,
    by: StartBy,
    limits: &Limits,
    load: &Load,
) -> Option<(Quota, String)> {
    if let Some(budget) = limits.budget_minutes
        && by == StartBy::User
        && !load.in_session
        && load.outside_minutes >= budget
    {
        return Some((
            Quota::Hours,
            format!(
                "quota exceeded (hours_outside_sessions): the {} h of this course outside class time are used up; ask your teacher for extra hours or use it in class",
                budget / 60
            ),
        ));
    }
    if let Some(max) = limits.course_max_vms
        && load.course_vms >= max
    {
        return Some((
            Quota::CourseVms,
            format!(
                "quota exceeded (max_concurrent_vms): at most {max} VMs of this course may run at once; try again later"
            ),
        ));
    }
    let u = &limits.user;
    if let Some(max) = u.max_running_vms
        && load.user_vms >= max
    {
        return Some((
            Quota::UserVms,
            format!(
                "quota exceeded (max_running_vms): at most {max} of your VMs may run at once; stop one first"
            ),
        ));
    }
    if let Some(max) = u.max_vcpus
        && load.user_vcpus.saturating_add(vcpus) > max
    {
        return Some((
            Quota::UserVcpus,
            format!(
                "quota exceeded (max_vcpus): your running VMs may have at most {max} vCPUs together; stop one first"
            ),
        ));
    }
    if let Some(max) = u.max_memory_mib
        && load.user_memory_mib.saturating_add(u64::from(memory_mib)) > u64::from(max)
    {
        return Some((
            Quota::UserMemory,
            format!(
                "quota exceeded (max_memory_mib): your running VMs may have at most {max} MiB of memory together; stop one first"
            ),
        ));
    }
    None
}

/// The lab's limits per user (null: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserLimits {
    pub max_running_vms: Option<u32>,
    pub max_vcpus: Option<u32>,
    pub max_memory_mib: Option<u32>,
}

/// A course's quota settings as entered.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourseQuotaInput {
    pub hours_outside: Option<i64>,
    pub max_concurrent_vms: Option<i64>,
}

/// Extra hours for one student, as entered.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraInput {
    pub extra_hours: i64,
}

/// One student's line of a course's quota view.
#[derive(Debug, Clone, Serialize)]
pub struct StudentQuota {
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub extra_hours: i64,
    pub outside_minutes: i64,
    pub budget_minutes: Option<i64>,
    pub left_minutes: Option<i64>,
}

/// A course's quotas with each student's hours.
#[derive(Debug, Clone, Serialize)]
pub struct CourseQuota {
    pub course_id: Uuid,
    pub hours_outside: Option<i64>,
    pub max_concurrent_vms: Option<i64>,
    pub students: Vec<StudentQuota>,
}

async fn course_settings(
    pool: &Pool,
    course_id: Uuid,
) -> Result<(Option<i64>, Option<i64>), sqlx::Error> {
    let row: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT hours_outside, max_concurrent_vms FROM course_quotas WHERE course_id = $1",
    )
    .bind(course_id.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(row.unwrap_or((None, None)))
}

/// The lab's limits per user.
pub async fn user_limits(pool: &Pool) -> Result<UserLimits, sqlx::Error> {
    let row: Option<(Option<i64>, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT max_running_vms, max_vcpus, max_memory_mib FROM user_limits WHERE id = 1",
    )
    .fetch_optional(pool)
    .await?;
    let n = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    Ok(
        row.map_or_else(UserLimits::default, |(a, b, c)| UserLimits {
            max_running_vms: n(a),
            max_vcpus: n(b),
            max_memory_mib: n(c),
        }),
    )
}

fn in_range(field: &str, v: Option<i64>, min: i64, max: i64) -> Result<(), UsageError> {
    match v {
        Some(v) if !(min..=max).contains(&v) => Err(UsageError::Invalid(format!(
            "{field} must be between {min} and {max}, or null for none"
        ))),
        _ => Ok(()),
    }
}

/// Reads and changes quota settings (the HTTP API's service).
#[derive(Debug)]
pub struct Quotas {
    pool: Pool,
    usage: Arc<Usage>,
}

impl Quotas {
    pub fn new(pool: Pool, usage: Arc<Usage>) -> Self {
        Self { pool, usage }
    }

    /// A course's quotas and each student's hours, for who manages it.
    pub async fn course(
        &self,
        user: &User,
        course_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<CourseQuota, UsageError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        let (hours, max_vms) = course_settings(&self.pool, course.id).await?;
        let extras: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
            "SELECT user_id, extra_hours FROM quota_extra_hours WHERE course_id = $1",
        )
        .bind(course.id.to_string())
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .collect();
        let mut students = Vec::new();
        let used = self.usage.course_hours(course.id, now).await?;
        for s in courses::students(&self.pool, course.id).await? {
            let extra = extras.get(&s.id.to_string()).copied().unwrap_or(0);
            let (_, outside) = used.secs_of(s.id);
            let outside_minutes = super::meter::minutes(outside);
            let budget = hours.map(|h| (h + extra) * 60);
            students.push(StudentQuota {
                user_id: s.id,
                username: s.username,
                display_name: s.display_name,
                extra_hours: extra,
                outside_minutes,
                budget_minutes: budget,
                left_minutes: budget.map(|b| (b - outside_minutes).max(0)),
            });
        }
        Ok(CourseQuota {
            course_id: course.id,
            hours_outside: hours,
            max_concurrent_vms: max_vms,
            students,
        })
    }

    /// Sets a course's hour budget and its VMs running at once (null: none).
    pub async fn set_course(
        &self,
        user: &User,
        course_id: Uuid,
        input: CourseQuotaInput,
        now: OffsetDateTime,
    ) -> Result<CourseQuota, UsageError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        in_range("hours_outside", input.hours_outside, 0, MAX_HOURS)?;
        in_range("max_concurrent_vms", input.max_concurrent_vms, 1, MAX_HOURS)?;
        sqlx::query(
            "INSERT INTO course_quotas (course_id, hours_outside, max_concurrent_vms) VALUES ($1, $2, $3)
             ON CONFLICT (course_id) DO UPDATE SET hours_outside = excluded.hours_outside,
             max_concurrent_vms = excluded.max_concurrent_vms",
        )
        .bind(course.id.to_string())
        .bind(input.hours_outside)
        .bind(input.max_concurrent_vms)
        .execute(&self.pool)
        .await?;
        self.course(user, course_id, now).await
    }

    /// Grants a student of the course extra hours (0 takes them back).
    pub async fn set_extra(
        &self,
        user: &User,
        course_id: Uuid,
        student: Uuid,
        input: ExtraInput,
        now: OffsetDateTime,
    ) -> Result<CourseQuota, UsageError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        in_range("extra_hours", Some(input.extra_hours), 0, MAX_HOURS)?;
        let enrolled = courses::students(&self.pool, course.id)
            .await?
            .iter()
            .any(|s| s.id == student);
        if !enrolled {
            return Err(UsageError::NotEnrolled);
        }
        sqlx::query(
            "INSERT INTO quota_extra_hours (course_id, user_id, extra_hours) VALUES ($1, $2, $3)
             ON CONFLICT (course_id, user_id) DO UPDATE SET extra_hours = excluded.extra_hours",
        )
        .bind(course.id.to_string())
        .bind(student.to_string())
        .bind(input.extra_hours)
        .execute(&self.pool)
        .await?;
        self.course(user, course_id, now).await
    }

    /// The lab's limits per user.
    pub async fn limits(&self) -> Result<UserLimits, UsageError> {
        Ok(user_limits(&self.pool).await?)
    }

    /// Sets the lab's limits per user (admins; the handler checks the role).
    pub async fn set_limits(&self, limits: UserLimits) -> Result<UserLimits, UsageError> {
        let w = |v: Option<u32>| v.map(i64::from);
        in_range("max_running_vms", w(limits.max_running_vms), 1, 1000)?;
        in_range("max_vcpus", w(limits.max_vcpus), 1, 100_000)?;
        in_range("max_memory_mib", w(limits.max_memory_mib), 1, 100_000_000)?;
        sqlx::query(
            "INSERT INTO user_limits (id, max_running_vms, max_vcpus, max_memory_mib) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET max_running_vms = excluded.max_running_vms,
             max_vcpus = excluded.max_vcpus, max_memory_mib = excluded.max_memory_mib",
        )
        .bind(w(limits.max_running_vms))
        .bind(w(limits.max_vcpus))
        .bind(w(limits.max_memory_mib))
        .execute(&self.pool)
        .await?;
        self.limits().await
    }
}

/// The VM manager's start gate: the quotas, checked with real time.
#[derive(Debug)]
pub struct QuotaGate {
    pool: Pool,
    usage: Arc<Usage>,
    /// Admissions one at a time: check and count as pending in one step.
    serial: tokio::sync::Mutex<()>,
    /// Starts admitted and not over yet, by VM.
    pending: Arc<Mutex<HashMap<Uuid, ActiveVm>>>,
}

/// Removes its VM from the pending starts when the start is over.
struct Pending {
    vm: Uuid,
    pending: Arc<Mutex<HashMap<Uuid, ActiveVm>>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.vm);
    }
}

impl QuotaGate {
    pub fn new(pool: Pool, usage: Arc<Usage>) -> Self {
        Self {
            pool,
            usage,
            serial: tokio::sync::Mutex::new(()),
            pending: Arc::default(),
        }
    }

    async fn load(
        &self,
        vm: &Vm,
        course: Uuid,
        now: OffsetDateTime,
    ) -> Result<(Limits, Load), UsageError> {
        let (hours, max_vms) = course_settings(&self.pool, course).await?;
        let budget = super::budget_minutes(&self.pool, course, vm.owner_id).await?;
        let mut active: HashMap<Uuid, ActiveVm> =
            crate::vms::gate::active_for(&self.pool, vm.owner_id, Some(course))
                .await?
                .into_iter()
                .map(|a| (a.id, a))
                .collect();
        for (id, a) in self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            active.insert(*id, *a);
        }
        active.remove(&vm.id);
        let mut load = Load::default();
        for a in active.values() {
            if a.owner_id == vm.owner_id && a.course_id.is_some() {
                load.user_vms += 1;
                load.user_vcpus = load.user_vcpus.saturating_add(a.vcpus);
                load.user_memory_mib += u64::from(a.memory_mib);
            }
            if a.course_id == Some(course) {
                load.course_vms += 1;
            }
        }
        if hours.is_some() {
            load.in_session = self.usage.in_session(course, now).await?;
            let (_, outside) = self.usage.secs_of(course, vm.owner_id, now).await?;
            load.outside_minutes = super::meter::minutes(outside);
        }
        let limits = Limits {
            user: user_limits(&self.pool).await?,
            course_max_vms: max_vms.and_then(|m| u32::try_from(m).ok()),
            budget_minutes: budget,
        };
        Ok((limits, load))
    }

    /// Admits a start at `now` (the trait's method passes the real time).
    pub async fn admit_at(
        &self,
        vm: &Vm,
        by: StartBy,
        now: OffsetDateTime,
    ) -> Result<StartPermit, VmError> {
        // A template build VM has no course: no quota applies.
        let Some(course) = vm.course_id else {
            return Ok(StartPermit::none());
        };
        let _serial = self.serial.lock().await;
        let (limits, load) = self.load(vm, course, now).await.map_err(|e| match e {
            UsageError::Vm(v) => v,
            UsageError::Db(d) => VmError::Db(d),
            other => VmError::Db(sqlx::Error::Protocol(other.to_string())),
        })?;
        if let Some((quota, message)) = check(vm.vcpus, vm.memory_mib, by, &limits, &load) {
            return Err(VmError::Quota(quota, message));
        }
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                vm.id,
                ActiveVm {
                    id: vm.id,
                    owner_id: vm.owner_id,
                    course_id: vm.course_id,
                    vcpus: vm.vcpus,
                    memory_mib: vm.memory_mib,
                },
            );
        Ok(StartPermit::holding(Pending {
            vm: vm.id,
            pending: self.pending.clone(),
        }))
    }
}

#[async_trait::async_trait]
impl StartGate for QuotaGate {
    async fn admit(&self, vm: &Vm, by: StartBy) -> Result<StartPermit, VmError> {
        self.admit_at(vm, by, OffsetDateTime::now_utc()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            user: UserLimits {
                max_running_vms: Some(2),
                max_vcpus: Some(4),
                max_memory_mib: Some(4096),
            },
            course_max_vms: Some(30),
            budget_minutes: Some(600),
        }
    }

    fn quota(load: Load, by: StartBy) -> Option<Quota> {
        check(1, 1024, by, &limits(), &load).map(|(q, _)| q)
    }

    #[test]
    fn hours_count_only_outside_sessions_and_never_for_the_timetable() {
        let used_up = Load {
            outside_minutes: 600,
            ..Load::default()
        };
        assert_eq!(quota(used_up, StartBy::User), Some(Quota::Hours));
        let in_class = Load {
            in_session: true,
            ..used_up
        };
        assert_eq!(quota(in_class, StartBy::User), None);
        assert_eq!(quota(used_up, StartBy::Timetable), None);
        let one_left = Load {
            outside_minutes: 599,
            ..Load::default()
        };
        assert_eq!(quota(one_left, StartBy::User), None);
    }

    #[test]
    fn each_limit_is_named() {
        let base = Load::default();
        assert_eq!(
            quota(
                Load {
                    course_vms: 30,
                    ..base
                },
                StartBy::Timetable
            ),
            Some(Quota::CourseVms)
        );
        assert_eq!(
            quota(
                Load {
                    user_vms: 2,
                    ..base
                },
                StartBy::User
            ),
            Some(Quota::UserVms)
        );
        assert_eq!(
            quota(
                Load {
                    user_vms: 1,
                    user_vcpus: 4,
                    ..base
                },
                StartBy::User
            ),
            Some(Quota::UserVcpus)
        );
        assert_eq!(
            quota(
                Load {
                    user_vms: 1,
                    user_vcpus: 1,
                    user_memory_mib: 3500,
                    ..base
                },
                StartBy::User
            ),
            Some(Quota::UserMemory)
        );
        assert_eq!(
            quota(
                Load {
                    user_vms: 1,
                    user_vcpus: 3,
                    user_memory_mib: 3072,
                    ..base
                },
                StartBy::User
            ),
            None
        );
        let msg = check(
            1,
            1024,
            StartBy::User,
            &limits(),
            &Load {
                user_vms: 2,
                ..base
            },
        )
        .expect("refused")
        .1;
        assert!(msg.contains("max_running_vms"), "{msg}");
    }

    proptest::proptest! {
        /// Admitting starts one after the other through the rule never
        /// goes over any limit, whatever the VMs' sizes.
        #[test]
        fn admissions_never_exceed_the_limits(
            sizes in proptest::collection::vec((1u32..8, 128u32..4096), 0..40),
            max_vms in 1u32..6, max_vcpus in 1u32..16, max_mem in 256u32..16384, course_max in 1u32..6,
        ) {
            let limits = Limits {
                user: UserLimits {
                    max_running_vms: Some(max_vms),
                    max_vcpus: Some(max_vcpus),
                    max_memory_mib: Some(max_mem),
                },
                course_max_vms: Some(course_max),
                budget_minutes: None,
            };
            let mut load = Load::default();
            for (vcpus, mem) in sizes {
                if check(vcpus, mem, StartBy::User, &limits, &load).is_none() {
                    load.user_vms += 1;
                    load.course_vms += 1;
                    load.user_vcpus += vcpus;
                    load.user_memory_mib += u64::from(mem);
                }
                proptest::prop_assert!(load.user_vms <= max_vms && load.course_vms <= course_max);
                proptest::prop_assert!(load.user_vcpus <= max_vcpus);
                proptest::prop_assert!(load.user_memory_mib <= u64::from(max_mem));
            }
        }
    }

    #[test]
    fn no_limits_no_refusal() {
        let load = Load {
            user_vms: 1000,
            user_vcpus: 1000,
            user_memory_mib: 1 << 40,
            course_vms: 1000,
            outside_minutes: 1 << 30,
            in_session: false,
        };
        assert_eq!(
            check(64, 1 << 20, StartBy::User, &Limits::default(), &load),
            None
        );
    }
}
