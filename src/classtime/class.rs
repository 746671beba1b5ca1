//! The class-time loop: what the timetable makes happen to a class's VMs.
//!
//! On each [`ClassTime::tick`] (the app's loop passes the wall clock, tests
//! their own instant):
//! - **pre-start**: from `lead` before a session begins until it ends, every
//!   stopped VM of the course is queued to start, once per occurrence (a
//!   student who shuts their VM down in class is not overruled);
//! - **admission**: the queue is served by the pure [`admission::admit`]
//!   within the per-node and cluster limits of concurrent starts; a start
//!   counts as in flight from its admission until its start returned and
//!   `boot` has passed (the guest boots after QEMU is up: the heavy part).
//!   Starts this loop did not make count the same way, read from the VMs'
//!   rows (`starting`, or started within `boot`): a student's own, and
//!   those of a server that died mid-class — the loop that takes its lease
//!   over does not pile a second boot storm onto the first;
//! - **retry**: a pre-start that failed (a node short of memory or
//!   unreachable for a moment, a layer on shared storage not there) is
//!   queued again after [`retry_delay`] (pure: 30 s, then 60 s), at most
//!   [`MAX_ATTEMPTS`] times in all, while the session lasts; the last
//!   failure marks the VM as pre-started like a success (the student can
//!   still start it by hand);
//! - **end**: at the end of a session its course's running VMs get an ACPI
//!   shutdown, forced off after the shutdown timeout (the VM manager's
//!   shutdown), once per occurrence; queued starts of the course are dropped.
//!
//! - **extension**: a student given 15 more minutes ([`ClassTime::extend`],
//!   the rule in [`super::extension`]) keeps the VM past the end; it is
//!   shut down (the same way) when they run out.
//!
//! Each pre-start and each pre-started VM's outcome is recorded for the
//! class provisioning indicator ([`crate::slo::provisioning`]).
//!
//! Warnings before the end (T−15, T−5) are not pushed: [`ClassTime::status`]
//! says, for a VM and an instant, which session it is in and what warning is
//! due ([`end_warning`], pure), and the desktop page polls it.
//!
//! What must survive a restart is stored (migration 0039, [`super::memory`],
//! written only by this loop and loaded by [`ClassTime::load`]; memory holds
//! a copy):
//! - which VMs each occurrence pre-started: marked when the pre-start
//!   returned, or when the loop found the VM already running — so a class
//!   is never pre-started twice, and a student who shut their VM down in
//!   class is not overruled by a restarted server;
//! - which courses were stopped at an occurrence's end, marked after the
//!   shutdowns were asked (a stop repeated is harmless, one forgotten is
//!   not): a restart within the stop window does not stop again a VM its
//!   student started since;
//! - the 15-minute extensions, stored before they are granted: a restart
//!   neither stops an extended VM at the end nor lets it run past its
//!   extension.
//!
//! Markers go once their occurrence is past the stop window. The admission
//! queue, the starts in flight, the queue places and the peaks stay in
//! memory: they are work under way in this process, and the restarted loop
//! rebuilds them — a VM that was still waiting, or whose start was cut
//! short (the VM manager's reconcile at start-up settles it), is not marked
//! yet, so the next tick queues it again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::admission::{self, Limits, NodeSlots, QueuePlace, Waiting};
use super::memory::{self, Extended, Prestarted, Stopped};
use super::timetable::Occurrence;
use super::{ClassError, Sessions};
use crate::db::unix_ms;
use crate::nodes::{NodeState, Nodes};
use crate::users::User;
use crate::vms::{VmManager, VmState};

/// How long after a session's end its VMs are still stopped by the loop
/// (a server down at the end catches up when it is back within this).
const STOP_WINDOW: Duration = Duration::minutes(10);

/// How many times one VM's pre-start of one occurrence is tried.
pub const MAX_ATTEMPTS: u8 = 3;

/// How long after failed attempt number `attempt` (1-based) a pre-start is
/// tried again, or `None` when it has had its [`MAX_ATTEMPTS`]: long enough
/// for a node's memory or health to change, short enough to be ready for
/// the class (the lead is 10 minutes by default).
pub fn retry_delay(attempt: u8) -> Option<Duration> {
    (attempt < MAX_ATTEMPTS).then(|| Duration::seconds(30 * i64::from(attempt.max(1))))
}

/// Settings of the class-time loop.
#[derive(Debug, Clone, Copy)]
pub struct ClassSettings {
    pub limits: Limits,
    /// How long before a session its VMs are started.
    pub lead: Duration,
    /// How long after its start call returned a start still counts as in
    /// flight (the guest's boot).
    pub boot: Duration,
}

/// The warning due at `now` for a session ending at `ends_at`: 15 in its last
/// fifteen minutes, 5 in its last five, none before or after.
pub fn end_warning(ends_at: OffsetDateTime, now: OffsetDateTime) -> Option<u8> {
    let left = ends_at - now;
    if left <= Duration::ZERO {
        None
    } else if left <= Duration::minutes(5) {
        Some(5)
    } else if left <= Duration::minutes(15) {
        Some(15)
    } else {
        None
    }
}

/// What a session means for its VMs at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not yet in the pre-start window.
    Before,
    /// From `lead` before the start until the end: the class's VMs should run.
    Run,
    /// Over (within the stop window): the class's VMs should stop.
    Ended,
}

/// The phase of an occurrence at `now` (pure).
pub fn phase(o: &Occurrence, now: OffsetDateTime, lead: Duration) -> Phase {
    if now >= o.ends_at {
        Phase::Ended
    } else if now >= o.starts_at - lead {
        Phase::Run
    } else {
        Phase::Before
    }
}

/// A VM waiting in the admission queue for its pre-start.
#[derive(Debug, Clone, Copy)]
struct Queued {
    waiting: Waiting,
    course: Uuid,
    occurrence: Occurrence,
    /// Attempts made so far (0 for a first start).
    attempts: u8,
    /// Not admitted before this instant (a retry's back-off).
    not_before: OffsetDateTime,
}

#[derive(Debug)]
struct Flight {
    node: Uuid,
    admitted: OffsetDateTime,
    done: bool,
}

#[derive(Debug, Default)]
struct LoopState {
    queue: Vec<Queued>,
    in_flight: HashMap<Uuid, Flight>,
    places: HashMap<Uuid, QueuePlace>,
    /// (vm, occurrence start) → its end: already pre-started (queued by
    /// this process, or stored).
    prestarted: Prestarted,
    /// (course, occurrence end) already stopped.
    stopped: Stopped,
    /// VMs given 15 more minutes: (session end, until).
    extended: Extended,
    /// The most starts in flight seen at once, per node and in total.
    peak_node: HashMap<Uuid, u32>,
    peak_total: u32,
}

/// What one tick did.
#[derive(Debug, Default, Serialize)]
pub struct TickReport {
    pub queued: usize,
    pub admitted: Vec<Uuid>,
    pub waiting: usize,
    pub stopped: Vec<Uuid>,
}

/// A VM's class-time status for the desktop page.
#[derive(Debug, Serialize)]
pub struct VmClassStatus {
    /// The session the VM's course is in (or about to be), if any.
    pub session: Option<Occurrence>,
    /// 15 or 5 (minutes left) when a warning is due.
    pub warning_minutes: Option<u8>,
    /// The VM's place in the admission queue, while it waits.
    pub queue: Option<QueuePlace>,
    /// The student may ask for 15 more minutes now (see [`super::extension`]).
    pub can_extend: bool,
    /// The VM was given more time: it shuts down then.
    #[serde(with = "time::serde::rfc3339::option")]
    pub extended_until: Option<OffsetDateTime>,
}

#[derive(Debug)]
pub struct ClassTime {
    sessions: Arc<Sessions>,
    vms: Arc<VmManager>,
    nodes: Arc<Nodes>,
    settings: ClassSettings,
    state: Arc<Mutex<LoopState>>,
}

impl ClassTime {
    /// The loop, with what a previous run did still remembered.
    pub async fn load(
        sessions: Arc<Sessions>,
        vms: Arc<VmManager>,
        nodes: Arc<Nodes>,
        settings: ClassSettings,
    ) -> Result<Self, sqlx::Error> {
        let stored = memory::load(sessions.pool()).await?;
        Ok(Self {
            sessions,
            vms,
            nodes,
            settings,
            state: Arc::new(Mutex::new(LoopState {
                prestarted: stored.prestarted,
                stopped: stored.stopped,
                extended: stored.extended,
                ..LoopState::default()
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoopState> {
        // A panic while holding the lock leaves plain data: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One pass at `now` (see the module docs).
    pub async fn tick(&self, now: OffsetDateTime) -> Result<TickReport, ClassError> {
        let mut report = TickReport::default();
        let pool = self.sessions.pool();
        // Extensions that ran out: those VMs shut down now, then the
        // extensions are forgotten.
        let expired: Vec<Uuid> = self
            .lock()
            .extended
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(vm, _)| *vm)
            .collect();
        for &id in &expired {
            let vm = match crate::vms::load(self.vms.pool(), id).await {
                Ok(vm) => vm,
                Err(_) => continue, // deleted meanwhile
            };
            if matches!(vm.state, VmState::Running | VmState::Starting) {
                match self.vms.shutdown(&vm).await {
                    Ok(_) => report.stopped.push(vm.id),
                    Err(e) => {
                        tracing::warn!(vm = %vm.id, error = %e, "end of extension: shutdown failed")
                    }
                }
            }
        }
        if !expired.is_empty() {
            memory::drop_extensions(pool, &expired).await?;
            let mut st = self.lock();
            for vm in &expired {
                st.extended.remove(vm);
            }
        }
        self.prune(now).await?;
        let occurrences = self
            .sessions
            .occurrences_between(now - STOP_WINDOW, now + self.settings.lead)
            .await?;
        // A course with back-to-back sessions keeps its VMs running.
        let running: HashSet<Uuid> = occurrences
            .iter()
            .filter(|(_, o)| phase(o, now, self.settings.lead) == Phase::Run)
            .map(|(c, _)| *c)
            .collect();
        for (course, o) in occurrences {
            match phase(&o, now, self.settings.lead) {
                Phase::Before => {}
                Phase::Run => {
                    let vms = self.vms.of_course(course).await?;
                    // Found running (or on its way) when first seen: nothing
                    // to start, and marked at once — stopped since, it was
                    // stopped by its student, who is not overruled.
                    let seen: Vec<(Uuid, Occurrence)> = {
                        let st = self.lock();
                        vms.iter()
                            .filter(|vm| {
                                vm.state != VmState::Stopped
                                    && !st.prestarted.contains_key(&(vm.id, o.starts_at))
                            })
                            .map(|vm| (vm.id, o))
                            .collect()
                    };
                    memory::mark_prestarted(pool, &seen).await?;
                    let mut queued = Vec::new();
                    {
                        let mut st = self.lock();
                        for vm in &vms {
                            // Marked in memory whatever its state (stored
                            // when its pre-start returns).
                            let first = st
                                .prestarted
                                .insert((vm.id, o.starts_at), o.ends_at)
                                .is_none();
                            if !first
                                || vm.state != VmState::Stopped
                                || st.in_flight.contains_key(&vm.id)
                                || st.queue.iter().any(|q| q.waiting.vm == vm.id)
                            {
                                continue;
                            }
                            st.queue.push(Queued {
                                waiting: Waiting {
                                    vm: vm.id,
                                    pinned: None,
                                },
                                course,
                                occurrence: o,
                                attempts: 0,
                                not_before: now,
                            });
                            report.queued += 1;
                            queued.push(vm.id);
                        }
                    }
                    if !queued.is_empty() {
                        // For the class provisioning indicator (src/slo).
                        crate::slo::record::class_prestart(
                            pool,
                            course,
                            (unix_ms(o.starts_at), unix_ms(o.ends_at)),
                            unix_ms(now),
                            &queued,
                        )
                        .await;
                    }
                }
                Phase::Ended => {
                    if running.contains(&course)
                        || self.lock().stopped.contains(&(course, o.ends_at))
                    {
                        continue;
                    }
                    self.lock().queue.retain(|q| q.course != course);
                    for vm in self.vms.of_course(course).await? {
                        // Given 15 more minutes: stopped when they run out.
                        let extended = self
                            .lock()
                            .extended
                            .get(&vm.id)
                            .is_some_and(|(end, until)| *end == o.ends_at && now < *until);
                        if extended {
                            continue;
                        }
                        if matches!(vm.state, VmState::Running | VmState::Starting) {
                            match self.vms.shutdown(&vm).await {
                                Ok(_) => report.stopped.push(vm.id),
                                Err(e) => {
                                    tracing::warn!(vm = %vm.id, error = %e, "end of session: shutdown failed")
                                }
                            }
                        }
                    }
                    memory::mark_stopped(pool, course, o.ends_at).await?;
                    self.lock().stopped.insert((course, o.ends_at));
                }
            }
        }
        self.admit(now, &mut report).await?;
        Ok(report)
    }

    async fn admit(&self, now: OffsetDateTime, report: &mut TickReport) -> Result<(), ClassError> {
        let nodes = self.nodes.list().await?;
        let boot = self.settings.boot;
        // Starts this loop did not make count too: those of the loop this
        // one took over from (a server that died mid-class leaves its
        // starts booting), and students' own. Read only while a start waits.
        let waiting = !self.lock().queue.is_empty();
        let booting = if waiting {
            self.vms.booting_since(now - boot).await?
        } else {
            Vec::new()
        };
        let (decision, starts) = {
            let mut st = self.lock();
            // Starts whose call returned and whose boot time passed are done.
            st.in_flight
                .retain(|_, f| !(f.done && now - f.admitted >= boot));
            let others = booting
                .iter()
                .filter(|(vm, _)| !st.in_flight.contains_key(vm))
                .map(|(_, node)| *node);
            let counts =
                admission::count_by_node(st.in_flight.values().map(|f| f.node).chain(others));
            let slots: Vec<NodeSlots> = nodes
                .iter()
                .map(|n| NodeSlots {
                    id: n.id,
                    usable: n.state == NodeState::Up,
                    starting: counts.get(&n.id).copied().unwrap_or(0),
                })
                .collect();
            // A retry queued by a start that returned after its session
            // ended is not for this class any more.
            st.queue.retain(|q| now < q.occurrence.ends_at);
            // Retries still in their back-off wait outside the admission.
            let queue: Vec<Waiting> = st
                .queue
                .iter()
                .filter(|q| q.not_before <= now)
                .map(|q| q.waiting)
                .collect();
            let d = admission::admit(self.settings.limits, &slots, &queue);
            let admitted: HashMap<Uuid, Uuid> = d.admitted.iter().copied().collect();
            // Each admitted VM with its queue entry, marked when it returns.
            let mut starts = Vec::new();
            st.queue.retain(|q| match admitted.get(&q.waiting.vm) {
                Some(node) => {
                    starts.push((*node, *q));
                    false
                }
                None => true,
            });
            for (vm, node) in &d.admitted {
                st.in_flight.insert(
                    *vm,
                    Flight {
                        node: *node,
                        admitted: now,
                        done: false,
                    },
                );
            }
            let usable = slots.iter().filter(|s| s.usable).count();
            st.places = d
                .waiting
                .iter()
                .map(|(vm, place)| {
                    (
                        *vm,
                        QueuePlace {
                            place: *place,
                            estimate_secs: admission::estimate_secs(
                                *place,
                                self.settings.limits,
                                usable,
                                u32::try_from(boot.whole_seconds().max(1)).unwrap_or(u32::MAX),
                            ),
                        },
                    )
                })
                .collect();
            // The peaks, for the operators and the tests.
            let counts = admission::count_by_node(st.in_flight.values().map(|f| f.node));
            let total: u32 = counts.values().sum();
            st.peak_total = st.peak_total.max(total);
            for (node, n) in counts {
                let peak = st.peak_node.entry(node).or_insert(0);
                *peak = (*peak).max(n);
            }
            (d, starts)
        };
        report.waiting = decision.waiting.len();
        for (node, queued) in starts {
            let vm = queued.waiting.vm;
            let occurrence = queued.occurrence;
            report.admitted.push(vm);
            let vms = self.vms.clone();
            let state = self.state.clone();
            let pool = self.sessions.pool().clone();
            tokio::spawn(async move {
                // Usable when the start returned: the admission instant (the
                // loop's clock) plus how long the start took.
                let took = std::time::Instant::now();
                let result = vms.start_on(vm, node).await;
                let at = unix_ms(now) + i64::try_from(took.elapsed().as_millis()).unwrap_or(0);
                crate::slo::record::class_vm_started(&pool, vm, at, result.is_ok()).await;
                let attempts = queued.attempts.saturating_add(1);
                let retry = match &result {
                    Ok(_) => None,
                    Err(e) => {
                        let delay = retry_delay(attempts);
                        tracing::warn!(vm = %vm, error = %e, attempt = attempts,
                            retry_in_secs = delay.map(|d| d.whole_seconds()),
                            "class pre-start failed");
                        delay
                    }
                };
                // Done (or given up) for this occurrence: a restarted loop
                // leaves it be. Unwritten (a retry pending), a restart only
                // queues it again.
                if retry.is_none()
                    && let Err(e) = memory::mark_prestarted(&pool, &[(vm, occurrence)]).await
                {
                    tracing::warn!(vm = %vm, error = %e, "could not record a class pre-start");
                }
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(f) = st.in_flight.get_mut(&vm) {
                    f.done = true;
                }
                if let Some(delay) = retry {
                    st.queue.push(Queued {
                        attempts,
                        not_before: now + delay,
                        ..queued
                    });
                }
            });
        }
        Ok(())
    }

    /// Forgets the markers of occurrences past the stop window (they can
    /// no longer be pre-started nor stopped by the loop).
    async fn prune(&self, now: OffsetDateTime) -> Result<(), ClassError> {
        let before = now - STOP_WINDOW;
        let stale = {
            let st = self.lock();
            st.prestarted.values().any(|end| *end < before)
                || st.stopped.iter().any(|(_, end)| *end < before)
        };
        if stale {
            memory::prune(self.sessions.pool(), before).await?;
            let mut st = self.lock();
            st.prestarted.retain(|_, end| *end >= before);
            st.stopped.retain(|(_, end)| *end >= before);
        }
        Ok(())
    }

    /// The most starts seen in flight at once: (per node, in total).
    pub fn peaks(&self) -> (HashMap<Uuid, u32>, u32) {
        let st = self.lock();
        (st.peak_node.clone(), st.peak_total)
    }

    /// VMs waiting for a (re)start, in the admission queue or a retry's
    /// back-off: zero when every pre-start was admitted or given up.
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Starts admitted whose start call has not returned yet.
    pub fn starts_in_flight(&self) -> usize {
        self.lock().in_flight.values().filter(|f| !f.done).count()
    }

    /// A VM's class-time status at `now`, for whoever may see the VM.
    pub async fn status(
        &self,
        user: &User,
        vm_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<VmClassStatus, ClassError> {
        let vm = self.vms.get_for(user, vm_id).await?;
        let session = match vm.course_id {
            Some(course) => self
                .sessions
                .occurrences_between(now, now + self.settings.lead)
                .await?
                .into_iter()
                .filter(|(c, o)| *c == course && phase(o, now, self.settings.lead) == Phase::Run)
                .map(|(_, o)| o)
                .next(),
            None => None,
        };
        let extended_until = self
            .lock()
            .extended
            .get(&vm.id)
            .map(|(_, until)| *until)
            .filter(|until| now < *until);
        let can_extend = match (session, vm.course_id, extended_until) {
            (Some(o), Some(course), None) => {
                end_warning(o.ends_at, now).is_some()
                    && self.sessions.extension_allowed(course).await?
            }
            _ => false,
        };
        Ok(VmClassStatus {
            // With more time, the warnings count down to its end.
            warning_minutes: match extended_until {
                Some(until) => end_warning(until, now),
                None => session.and_then(|o| end_warning(o.ends_at, now)),
            },
            session,
            queue: self.lock().places.get(&vm.id).copied(),
            can_extend,
            extended_until,
        })
    }

    /// Gives the user's VM 15 more minutes at the end of its session, if
    /// the course's rule allows and no other class needs the nodes
    /// ([`super::extension::decide`]); the VM then shuts down at the new end.
    pub async fn extend(
        &self,
        user: &User,
        vm_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<VmClassStatus, ClassError> {
        use super::extension::{self, EXTENSION, Refusal};
        let vm = self.vms.get_for(user, vm_id).await?;
        let Some(course) = vm.course_id else {
            return Err(ClassError::Extension(Refusal::NotNow));
        };
        let lead = self.settings.lead;
        let all = self
            .sessions
            .occurrences_between(now, now + EXTENSION + lead + Duration::minutes(1))
            .await?;
        let Some(session) = all
            .iter()
            .filter(|(c, o)| *c == course && phase(o, now, lead) == Phase::Run)
            .map(|(_, o)| *o)
            .next()
        else {
            return Err(ClassError::Extension(Refusal::NotNow));
        };
        let others: Vec<Occurrence> = all
            .iter()
            .filter(|(c, _)| *c != course)
            .map(|(_, o)| *o)
            .collect();
        let allowed = self.sessions.extension_allowed(course).await?;
        let already = self
            .lock()
            .extended
            .get(&vm.id)
            .is_some_and(|(end, _)| *end == session.ends_at);
        let until = extension::decide(allowed, &session, &others, lead, already, now)
            .map_err(ClassError::Extension)?;
        memory::put_extension(self.sessions.pool(), vm.id, session.ends_at, until).await?;
        self.lock().extended.insert(vm.id, (session.ends_at, until));
        self.status(user, vm_id, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_prestart_is_tried_again_later_and_at_most_three_times() {
        assert_eq!(retry_delay(1), Some(Duration::seconds(30)));
        assert_eq!(retry_delay(2), Some(Duration::seconds(60)));
        assert_eq!(retry_delay(MAX_ATTEMPTS), None);
        assert_eq!(retry_delay(u8::MAX), None);
        // Every delay fits in the default 10-minute lead, all of them too.
        let total: i64 = (1..MAX_ATTEMPTS)
            .filter_map(retry_delay)
            .map(|d| d.whole_seconds())
            .sum();
        assert!(total < 600, "{total}");
    }
    use time::macros::datetime;

    #[test]
    fn warnings_come_at_fifteen_and_five_minutes_before_the_end() {
        let end = datetime!(2026-12-07 09:40 UTC);
        let at = |m: i64| end - Duration::minutes(m);
        assert_eq!(end_warning(end, at(16)), None);
        assert_eq!(end_warning(end, at(15)), Some(15));
        assert_eq!(end_warning(end, at(6)), Some(15));
        assert_eq!(end_warning(end, at(5)), Some(5));
        assert_eq!(end_warning(end, end - Duration::seconds(1)), Some(5));
        assert_eq!(end_warning(end, end), None);
    }

    #[test]
    fn phases_follow_the_lead_and_the_end() {
        let o = Occurrence {
            starts_at: datetime!(2026-12-07 08:00 UTC),
            ends_at: datetime!(2026-12-07 09:40 UTC),
        };
        let lead = Duration::minutes(10);
        assert_eq!(
            phase(&o, datetime!(2026-12-07 07:49 UTC), lead),
            Phase::Before
        );
        assert_eq!(phase(&o, datetime!(2026-12-07 07:50 UTC), lead), Phase::Run);
        assert_eq!(phase(&o, datetime!(2026-12-07 09:39 UTC), lead), Phase::Run);
        assert_eq!(
            phase(&o, datetime!(2026-12-07 09:40 UTC), lead),
            Phase::Ended
        );
    }
}
