//! The SLA engine: a pure function of (a ticket's clock history, its
//! priority, the SLA policy, the service calendar, now).
//!
//! No database, no clock, no I/O: the desk feeds it the ticket's state
//! changes as [`ClockEvent`]s and the current time, persists what it needs
//! (the highest escalation step taken, [`Escalated`]) and acts on the
//! [`Step`]s it returns. Running it twice with the same input gives the same
//! answer, so the background loop can run it as often as it likes.
//!
//! ## The two clocks
//! Each ticket has a **response** clock and a **resolution** clock, both
//! started by [`ClockEventKind::Opened`] and counting business time of the
//! service calendar — or wall time (7×24) for a priority whose
//! [`Target::around_the_clock`] is set.
//! - Both pause while the ticket waits for the reporter
//!   ([`ClockEventKind::WaitingForReporter`] … [`ClockEventKind::Resumed`]).
//! - The response clock stops at the first [`ClockEventKind::Responded`]; a
//!   resolve (or close) before any response stops it too.
//! - The resolution clock stops at [`ClockEventKind::Resolved`] /
//!   [`ClockEventKind::Closed`] and runs again on
//!   [`ClockEventKind::Reopened`], keeping the time already counted (a
//!   reopened ticket does not get a fresh target; the time it sat resolved
//!   does not count).
//!
//! Events are applied in time order; one that makes no sense in the state
//! reached (a resume while running, a second response) is ignored, and
//! events after `now` are not yet seen. The priority is the ticket's current
//! one: a re-prioritised ticket is measured against its new target with the
//! time already elapsed.
//!
//! ## Levels
//! With `elapsed` business time of a `target`: [`Level::Warning50`] from
//! `elapsed >= target / 2`, [`Level::Warning75`] from `elapsed >= 3/4 target`,
//! and [`Level::Breached`] once the clock is past its *due instant* (the
//! instant `elapsed` reached `target`) without having stopped. A clock
//! stopped at or before its due instant has `met == Some(true)`.
//!
//! ## Escalation
//! [`new_steps`] lists the steps crossed since those already taken:
//!
//! | ticket                 | 25 %        | 50 %          | 75 %          | 100 % (breach) |
//! |------------------------|-------------|---------------|---------------|----------------|
//! | assigned               | –           | warn assignee | warn assignee | notify admins  |
//! | unassigned P3/P4       | –           | warn the desk | warn the desk | notify admins  |
//! | unassigned P1/P2       | warn the desk | notify admins | notify admins | notify admins |
//!
//! An unassigned urgent ticket escalates faster: the desk (all staff) hears
//! of it at a quarter of the target and the admins — who dispatch — at half,
//! instead of only at the breach. "The desk" and "admins" are recipients the
//! caller resolves to people. Warnings are only given while a clock still
//! runs (or is paused); a clock that stopped late still yields its breach
//! step, so every breach is recorded once.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::calendar::Calendar;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    P1,
    P2,
    P3,
    P4,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Priority::P1, Priority::P2, Priority::P3, Priority::P4];
    fn index(self) -> usize {
        self as usize
    }
    /// P1 and P2: the ones that escalate faster while unassigned.
    pub fn is_urgent(self) -> bool {
        matches!(self, Priority::P1 | Priority::P2)
    }
    pub fn as_str(self) -> &'static str {
        ["P1", "P2", "P3", "P4"][self.index()]
    }
}

impl std::str::FromStr for Priority {
    type Err = SlaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| SlaError::BadPriority(s.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlaError {
    #[error("priority must be P1, P2, P3 or P4, not {0:?}")]
    BadPriority(String),
    #[error("{priority} {clock} target must be between 1 minute and {MAX_TARGET_MINUTES} minutes")]
    BadTarget {
        priority: &'static str,
        clock: &'static str,
    },
    #[error("the {priority} response target is longer than its resolution target")]
    ResponseAfterResolution { priority: &'static str },
}

/// A year: longer targets are certainly a typo.
pub const MAX_TARGET_MINUTES: u32 = 366 * 24 * 60;

/// The targets of one priority. Serde form: minutes of business time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub response_minutes: u32,
    pub resolution_minutes: u32,
    /// Count wall time (7×24) instead of the service calendar's hours.
    #[serde(default)]
    pub around_the_clock: bool,
}

impl Target {
    pub fn response(&self) -> Duration {
        Duration::minutes(i64::from(self.response_minutes))
    }
    pub fn resolution(&self) -> Duration {
        Duration::minutes(i64::from(self.resolution_minutes))
    }
}

/// Response and resolution targets per priority (serde: `{"p1": {...}, ...}`).
/// Deserialising validates ([`Policy::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PolicyForm")]
pub struct Policy {
    pub p1: Target,
    pub p2: Target,
    pub p3: Target,
    pub p4: Target,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyForm {
    p1: Target,
    p2: Target,
    p3: Target,
    p4: Target,
}

impl TryFrom<PolicyForm> for Policy {
    type Error = SlaError;
    fn try_from(f: PolicyForm) -> Result<Self, Self::Error> {
        let p = Policy {
            p1: f.p1,
            p2: f.p2,
            p3: f.p3,
            p4: f.p4,
        };
        p.validate()?;
        Ok(p)
    }
}

/// A business day of the default calendar (08:00–12:00, 13:30–17:30).
const BUSINESS_DAY_MINUTES: u32 = 8 * 60;

impl Default for Policy {
    /// P1 15 min / 2 h, P2 1 h / 1 business day, P3 4 h / 3 business days,
    /// P4 1 / 5 business days (a business day: 8 h of the default calendar),
    /// all counted in the service calendar.
    fn default() -> Self {
        let t = |response_minutes, resolution_minutes| Target {
            response_minutes,
            resolution_minutes,
            around_the_clock: false,
        };
        Self {
            p1: t(15, 120),
            p2: t(60, BUSINESS_DAY_MINUTES),
            p3: t(4 * 60, 3 * BUSINESS_DAY_MINUTES),
            p4: t(BUSINESS_DAY_MINUTES, 5 * BUSINESS_DAY_MINUTES),
        }
    }
}

impl Policy {
    pub fn target(&self, p: Priority) -> &Target {
        match p {
            Priority::P1 => &self.p1,
            Priority::P2 => &self.p2,
            Priority::P3 => &self.p3,
            Priority::P4 => &self.p4,
        }
    }

    /// Every target between 1 minute and a year; response no longer than
    /// resolution.
    pub fn validate(&self) -> Result<(), SlaError> {
        for p in Priority::ALL {
            let t = self.target(p);
            for (clock, m) in [
                ("response", t.response_minutes),
                ("resolution", t.resolution_minutes),
            ] {
                if !(1..=MAX_TARGET_MINUTES).contains(&m) {
                    return Err(SlaError::BadTarget {
                        priority: p.as_str(),
                        clock,
                    });
                }
            }
            if t.response_minutes > t.resolution_minutes {
                return Err(SlaError::ResponseAfterResolution {
                    priority: p.as_str(),
                });
            }
        }
        Ok(())
    }
}

/// A change of the ticket that matters to its clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockEventKind {
    /// The ticket was reported: both clocks start.
    Opened,
    /// First response by staff (the desk decides what counts: taking the
    /// ticket, a public comment...). Stops the response clock.
    Responded,
    /// Waiting for the reporter: both clocks pause.
    WaitingForReporter,
    /// The reporter answered (or staff took it back): paused clocks run again.
    Resumed,
    Resolved,
    /// Closed without a resolve first (e.g. withdrawn): stops like a resolve.
    Closed,
    /// The resolution clock runs again.
    Reopened,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: ClockEventKind,
}

impl ClockEvent {
    pub fn new(at: OffsetDateTime, kind: ClockEventKind) -> Self {
        Self { at, kind }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockState {
    /// No `Opened` event at or before `now`.
    NotStarted,
    Running,
    Paused,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    Warning50,
    Warning75,
    Breached,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    Response,
    Resolution,
}

/// Durations as whole seconds in the serde form (what the UI counts down).
mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.whole_seconds())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::seconds(i64::deserialize(d)?))
    }
}

/// One clock as of `now` (serde: durations as `*_secs`, instants RFC 3339).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStatus {
    pub state: ClockState,
    #[serde(rename = "target_secs", with = "secs")]
    pub target: Duration,
    /// Business time counted so far.
    #[serde(rename = "elapsed_secs", with = "secs")]
    pub elapsed: Duration,
    /// `target - elapsed`: negative once overdue.
    #[serde(rename = "remaining_secs", with = "secs")]
    pub remaining: Duration,
    /// When `elapsed` reaches (or reached) `target`: the instant it did, or,
    /// for a running clock, when it will if it keeps running. `None` for a
    /// paused or stopped clock that has not reached it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub due_at: Option<OffsetDateTime>,
    /// `elapsed / target` in whole percent (may exceed 100).
    pub percent: u32,
    pub level: Level,
    /// When the clock stopped (response given / ticket resolved).
    #[serde(with = "time::serde::rfc3339::option")]
    pub stopped_at: Option<OffsetDateTime>,
    /// For a stopped clock: whether it stopped by its due instant.
    pub met: Option<bool>,
}

impl ClockStatus {
    /// Whether `elapsed` is at least `percent` % of the target.
    fn reached(&self, percent: u8) -> bool {
        self.elapsed.whole_nanoseconds() * 100
            >= self.target.whole_nanoseconds() * i128::from(percent)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    pub response: ClockStatus,
    pub resolution: ClockStatus,
}

impl Evaluation {
    pub fn clock(&self, c: Clock) -> &ClockStatus {
        match c {
            Clock::Response => &self.response,
            Clock::Resolution => &self.resolution,
        }
    }
}

/// The replay state of one clock.
struct Replay<'a> {
    cal: &'a Calendar,
    target: Duration,
    state: ClockState,
    since: Option<OffsetDateTime>,
    elapsed: Duration,
    due: Option<OffsetDateTime>,
    stopped_at: Option<OffsetDateTime>,
}

impl<'a> Replay<'a> {
    fn new(cal: &'a Calendar, target: Duration) -> Self {
        Self {
            cal,
            target,
            state: ClockState::NotStarted,
            since: None,
            elapsed: Duration::ZERO,
            due: None,
            stopped_at: None,
        }
    }

    /// Counts the running segment up to `t` (and notes the due instant if
    /// it falls inside).
    fn count_to(&mut self, t: OffsetDateTime) {
        if let Some(s) = self.since {
            let before = self.elapsed;
            self.elapsed += self.cal.business_time_between(s, t);
            if self.due.is_none() && self.elapsed >= self.target {
                self.due = self.cal.add_business_time(s, self.target - before);
            }
            self.since = Some(t);
        }
    }

    fn start(&mut self, t: OffsetDateTime) {
        if self.state == ClockState::NotStarted {
            self.state = ClockState::Running;
            self.since = Some(t);
        }
    }
    fn pause(&mut self, t: OffsetDateTime) {
        if self.state == ClockState::Running {
            self.count_to(t);
            self.since = None;
            self.state = ClockState::Paused;
        }
    }
    fn resume(&mut self, t: OffsetDateTime) {
        if self.state == ClockState::Paused {
            self.since = Some(t);
            self.state = ClockState::Running;
        }
    }
    fn stop(&mut self, t: OffsetDateTime) {
        if matches!(self.state, ClockState::Running | ClockState::Paused) {
            self.count_to(t);
            self.since = None;
            self.state = ClockState::Stopped;
            self.stopped_at = Some(t);
        }
    }
    fn restart(&mut self, t: OffsetDateTime) {
        if self.state == ClockState::Stopped {
            self.state = ClockState::Running;
            self.since = Some(t);
            self.stopped_at = None;
        }
    }

    fn finish(mut self, now: OffsetDateTime) -> ClockStatus {
        self.count_to(now);
        let due_at = match (self.due, self.state) {
            (Some(d), _) => Some(d),
            (None, ClockState::Running) => {
                self.cal.add_business_time(now, self.target - self.elapsed)
            }
            _ => None,
        };
        // Past the due instant: at `now` for a running or paused clock, at
        // the stop for a stopped one.
        let end = self.stopped_at.unwrap_or(now);
        let late = self.due.is_some_and(|d| d < end);
        let met = (self.state == ClockState::Stopped).then_some(!late);
        let mut st = ClockStatus {
            state: self.state,
            target: self.target,
            elapsed: self.elapsed,
            remaining: self.target - self.elapsed,
            due_at,
            percent: u32::try_from(
                self.elapsed.whole_nanoseconds() * 100 / self.target.whole_nanoseconds().max(1),
            )
            .unwrap_or(u32::MAX),
            level: Level::Ok,
            stopped_at: self.stopped_at,
            met,
        };
        st.level = if late {
            Level::Breached
        } else if st.reached(75) {
            Level::Warning75
        } else if st.reached(50) {
            Level::Warning50
        } else {
            Level::Ok
        };
        st
    }
}

/// Evaluates both clocks of a ticket as of `now`; see the module doc.
pub fn evaluate(
    history: &[ClockEvent],
    priority: Priority,
    policy: &Policy,
    calendar: &Calendar,
    now: OffsetDateTime,
) -> Evaluation {
    let target = policy.target(priority);
    let always;
    let cal = if target.around_the_clock {
        always = Calendar::always_open();
        &always
    } else {
        calendar
    };
    let mut events: Vec<ClockEvent> = history.iter().copied().filter(|e| e.at <= now).collect();
    // Stable: events at the same instant keep the order they were given in.
    events.sort_by_key(|e| e.at);
    let mut response = Replay::new(cal, target.response());
    let mut resolution = Replay::new(cal, target.resolution());
    for e in events {
        let t = e.at;
        if resolution.state == ClockState::NotStarted && e.kind != ClockEventKind::Opened {
            continue;
        }
        match e.kind {
            ClockEventKind::Opened => {
                response.start(t);
                resolution.start(t);
            }
            ClockEventKind::Responded => response.stop(t),
            ClockEventKind::WaitingForReporter => {
                response.pause(t);
                resolution.pause(t);
            }
            ClockEventKind::Resumed => {
                response.resume(t);
                resolution.resume(t);
            }
            ClockEventKind::Resolved | ClockEventKind::Closed => {
                response.stop(t);
                resolution.stop(t);
            }
            ClockEventKind::Reopened => resolution.restart(t),
        }
    }
    Evaluation {
        response: response.finish(now),
        resolution: resolution.finish(now),
    }
}

/// Who an escalation step goes to; the caller resolves it to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipient {
    /// The ticket's assignee.
    Assignee,
    /// Every staff member (the desk's shared queue).
    Desk,
    /// The admins (负责人), who dispatch.
    Admins,
}

/// One escalation step newly crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Step {
    pub clock: Clock,
    /// 25, 50, 75 or 100.
    pub percent: u8,
    /// The 100 % step: the target was missed; record the breach.
    pub breach: bool,
    pub notify: Recipient,
}

/// The highest step already taken per clock (0: none). What the desk
/// persists per ticket between evaluations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Escalated {
    pub response: u8,
    pub resolution: u8,
}

impl Escalated {
    fn get(&self, c: Clock) -> u8 {
        match c {
            Clock::Response => self.response,
            Clock::Resolution => self.resolution,
        }
    }
    /// The record after taking `steps`.
    pub fn after(mut self, steps: &[Step]) -> Escalated {
        for s in steps {
            let slot = match s.clock {
                Clock::Response => &mut self.response,
                Clock::Resolution => &mut self.resolution,
            };
            *slot = (*slot).max(s.percent);
        }
        self
    }
}

/// The escalation schedule of a ticket (the table in the module doc).
pub fn schedule(priority: Priority, assigned: bool) -> &'static [(u8, Recipient)] {
    use Recipient::*;
    if assigned {
        &[(50, Assignee), (75, Assignee), (100, Admins)]
    } else if priority.is_urgent() {
        &[(25, Desk), (50, Admins), (75, Admins), (100, Admins)]
    } else {
        &[(50, Desk), (75, Desk), (100, Admins)]
    }
}

/// The steps crossed and not yet taken (`done`), response clock first, in
/// increasing percent. After acting on them, persist `done.after(&steps)`.
pub fn new_steps(
    eval: &Evaluation,
    priority: Priority,
    assigned: bool,
    done: Escalated,
) -> Vec<Step> {
    let mut out = Vec::new();
    for clock in [Clock::Response, Clock::Resolution] {
        let st = eval.clock(clock);
        let live = matches!(st.state, ClockState::Running | ClockState::Paused);
        for &(percent, notify) in schedule(priority, assigned) {
            if percent <= done.get(clock) {
                continue;
            }
            let breach = percent == 100;
            let crossed = if breach {
                st.level == Level::Breached
            } else {
                live && st.reached(percent)
            };
            if crossed {
                out.push(Step {
                    clock,
                    percent,
                    breach,
                    notify,
                });
            }
        }
    }
    out
}

/// When the next step of `schedule(priority, assigned)` not yet taken
/// (`done`) falls due if nothing else happens to the ticket: the earliest
/// instant at which [`new_steps`] would return something it does not return
/// at `now` — so a background loop can sleep until then (on a clock the
/// caller controls) instead of polling. `None` when no clock runs.
///
/// Instants have second resolution (like the stored history): a breach
/// step falls due one second after the due instant.
pub fn next_step_at(
    eval: &Evaluation,
    priority: Priority,
    policy: &Policy,
    calendar: &Calendar,
    assigned: bool,
    done: Escalated,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let cal = if policy.target(priority).around_the_clock {
        &Calendar::always_open()
    } else {
        calendar
    };
    let due_now = new_steps(eval, priority, assigned, done);
    let mut next: Option<OffsetDateTime> = None;
    for clock in [Clock::Response, Clock::Resolution] {
        let st = eval.clock(clock);
        if st.state != ClockState::Running {
            continue;
        }
        for &(percent, _) in schedule(priority, assigned) {
            if percent <= done.get(clock)
                || due_now
                    .iter()
                    .any(|s| s.clock == clock && s.percent == percent)
            {
                continue;
            }
            let at = if percent == 100 {
                st.due_at.map(|d| d + Duration::SECOND)
            } else {
                // The business time still needed to reach `percent` % (rounded up).
                let want = (st.target.whole_nanoseconds() * i128::from(percent) + 99) / 100;
                let need = want - st.elapsed.whole_nanoseconds();
                let need = Duration::nanoseconds(i64::try_from(need.max(0)).unwrap_or(i64::MAX));
                cal.add_business_time(now, need)
            };
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            // Later steps of this clock come later still.
            break;
        }
    }
    next
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ClockEventKind::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn ev(at: OffsetDateTime, kind: ClockEventKind) -> ClockEvent {
        ClockEvent::new(at, kind)
    }

    fn eval_at(h: &[ClockEvent], p: Priority, now: OffsetDateTime) -> Evaluation {
        evaluate(h, p, &Policy::default(), &Calendar::default(), now)
    }

    // 2026-11-30 is a Monday; the default calendar is open 08:00-12:00 and
    // 13:30-17:30 at UTC+8.
    const MON_9: OffsetDateTime = datetime!(2026-11-30 09:00 +8);

    #[test]
    fn defaults() {
        let p = Policy::default();
        p.validate().unwrap();
        assert_eq!(p.p1.response(), Duration::minutes(15));
        assert_eq!(p.p1.resolution(), Duration::hours(2));
        assert_eq!(p.p4.response(), Duration::hours(8));
        assert_eq!(p.p4.resolution(), Duration::hours(40));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["p1"]["response_minutes"], 15);
        assert_eq!(serde_json::from_value::<Policy>(json).unwrap(), p);
    }

    #[test]
    fn policy_validation() {
        let mut p = Policy::default();
        p.p2.response_minutes = 0;
        assert!(matches!(
            p.validate(),
            Err(SlaError::BadTarget { priority: "P2", .. })
        ));
        let mut p = Policy::default();
        p.p3.response_minutes = p.p3.resolution_minutes + 1;
        assert_eq!(
            p.validate(),
            Err(SlaError::ResponseAfterResolution { priority: "P3" })
        );
        let mut json = serde_json::to_value(Policy::default()).unwrap();
        json["p4"]["resolution_minutes"] = (MAX_TARGET_MINUTES + 1).into();
        assert!(serde_json::from_value::<Policy>(json).is_err());
        assert_eq!("p2".parse::<Priority>().unwrap(), Priority::P2);
        assert!("P5".parse::<Priority>().is_err());
    }

    #[test]
    fn running_clock_levels_and_due() {
        let h = [ev(MON_9, Opened)];
        // P1: 15 min response, 2 h resolution.
        let e = eval_at(&h, Priority::P1, MON_9 + Duration::minutes(5));
        assert_eq!(e.response.state, ClockState::Running);
        assert_eq!(e.response.elapsed, Duration::minutes(5));
        assert_eq!(e.response.remaining, Duration::minutes(10));
        assert_eq!(e.response.due_at, Some(MON_9 + Duration::minutes(15)));
        assert_eq!(e.response.level, Level::Ok);
        assert_eq!(e.response.percent, 33);
        assert_eq!(e.resolution.due_at, Some(MON_9 + Duration::hours(2)));

        let e = eval_at(&h, Priority::P1, MON_9 + Duration::seconds(450));
        assert_eq!(e.response.level, Level::Warning50);
        let e = eval_at(&h, Priority::P1, MON_9 + Duration::minutes(12));
        assert_eq!(e.response.level, Level::Warning75);
        // Exactly at the due instant: not yet breached.
        let e = eval_at(&h, Priority::P1, MON_9 + Duration::minutes(15));
        assert_eq!(e.response.level, Level::Warning75);
        assert_eq!(e.response.remaining, Duration::ZERO);
        let e = eval_at(&h, Priority::P1, MON_9 + Duration::minutes(16));
        assert_eq!(e.response.level, Level::Breached);
        assert_eq!(e.response.remaining, -Duration::minutes(1));
        assert_eq!(e.response.due_at, Some(MON_9 + Duration::minutes(15)));
        assert_eq!(e.response.met, None);
    }

    #[test]
    fn due_skips_lunch_and_breach_during_closed_hours() {
        // P2: 1 h response. Opened 11:30 → due 14:00 (lunch 12:00-13:30 skipped).
        let t = datetime!(2026-11-30 11:30 +8);
        let h = [ev(t, Opened)];
        let e = eval_at(&h, Priority::P2, t);
        assert_eq!(e.response.due_at, Some(datetime!(2026-11-30 14:00 +8)));
        // P1 opened 11:50: 10 min before lunch, 5 after → due 13:35.
        let t = datetime!(2026-11-30 11:50 +8);
        let h = [ev(t, Opened)];
        let e = eval_at(&h, Priority::P1, datetime!(2026-11-30 13:00 +8));
        assert_eq!(e.response.due_at, Some(datetime!(2026-11-30 13:35 +8)));
        assert_eq!(e.response.level, Level::Warning50);
        // A target reached exactly at the noon close is breached during lunch:
        // the due instant (12:00) is past although no more business time counts.
        let t = datetime!(2026-11-30 11:45 +8);
        let h = [ev(t, Opened)];
        let e = eval_at(&h, Priority::P1, datetime!(2026-11-30 12:30 +8));
        assert_eq!(e.response.elapsed, Duration::minutes(15));
        assert_eq!(e.response.due_at, Some(datetime!(2026-11-30 12:00 +8)));
        assert_eq!(e.response.level, Level::Breached);
    }

    #[test]
    fn weekend_report_counts_from_monday() {
        let sat = datetime!(2026-12-05 10:00 +8);
        let h = [ev(sat, Opened)];
        let e = eval_at(&h, Priority::P3, datetime!(2026-12-06 22:00 +8));
        assert_eq!(e.response.elapsed, Duration::ZERO);
        assert_eq!(e.response.level, Level::Ok);
        assert_eq!(e.response.due_at, Some(datetime!(2026-12-07 12:00 +8)));
    }

    #[test]
    fn p1_around_the_clock() {
        let mut policy = Policy::default();
        policy.p1.around_the_clock = true;
        let sat_night = datetime!(2026-12-05 23:00 +8);
        let h = [ev(sat_night, Opened)];
        let e = evaluate(
            &h,
            Priority::P1,
            &policy,
            &Calendar::default(),
            sat_night + Duration::minutes(20),
        );
        assert_eq!(e.response.elapsed, Duration::minutes(20));
        assert_eq!(e.response.level, Level::Breached);
        assert_eq!(e.resolution.due_at, Some(sat_night + Duration::hours(2)));
        // P2 is still counted in the calendar.
        let e = evaluate(
            &h,
            Priority::P2,
            &policy,
            &Calendar::default(),
            sat_night + Duration::hours(5),
        );
        assert_eq!(e.response.elapsed, Duration::ZERO);
    }

    #[test]
    fn response_stops_and_is_met_or_missed() {
        let h = [
            ev(MON_9, Opened),
            ev(MON_9 + Duration::minutes(10), Responded),
        ];
        let e = eval_at(&h, Priority::P1, MON_9 + Duration::hours(1));
        assert_eq!(e.response.state, ClockState::Stopped);
        assert_eq!(e.response.elapsed, Duration::minutes(10));
        assert_eq!(e.response.met, Some(true));
        assert_eq!(e.response.due_at, None);
        assert_eq!(e.response.level, Level::Warning50);
        assert_eq!(e.resolution.state, ClockState::Running);
        assert_eq!(e.resolution.elapsed, Duration::hours(1));
        // Responding exactly at the due instant meets it; a second later misses it.
        let h = [
            ev(MON_9, Opened),
            ev(MON_9 + Duration::minutes(15), Responded),
        ];
        assert_eq!(
            eval_at(&h, Priority::P1, MON_9 + Duration::hours(1))
                .response
                .met,
            Some(true)
        );
        let h = [
            ev(MON_9, Opened),
            ev(MON_9 + Duration::seconds(901), Responded),
        ];
        let e = eval_at(&h, Priority::P1, MON_9 + Duration::hours(1));
        assert_eq!(e.response.met, Some(false));
        assert_eq!(e.response.level, Level::Breached);
        // A second response changes nothing.
        let mut h2 = h.to_vec();
        h2.push(ev(MON_9 + Duration::minutes(30), Responded));
        assert_eq!(eval_at(&h2, Priority::P1, MON_9 + Duration::hours(1)), e);
    }

    #[test]
    fn waiting_for_reporter_pauses_both_clocks() {
        let h = [
            ev(MON_9, Opened),
            ev(MON_9 + Duration::minutes(5), WaitingForReporter),
            ev(MON_9 + Duration::hours(2), Resumed),
        ];
        let e = eval_at(&h, Priority::P1, MON_9 + Duration::hours(1));
        assert_eq!(e.response.state, ClockState::Paused);
        assert_eq!(e.response.elapsed, Duration::minutes(5));
        assert_eq!(e.response.due_at, None);
        let e = eval_at(&h, Priority::P1, MON_9 + Duration::minutes(125));
        assert_eq!(e.response.state, ClockState::Running);
        assert_eq!(e.response.elapsed, Duration::minutes(10));
        assert_eq!(e.resolution.elapsed, Duration::minutes(10));
        assert_eq!(e.response.due_at, Some(MON_9 + Duration::minutes(130)));
    }

    #[test]
    fn resolve_stops_reopen_continues() {
        let h = [
            ev(MON_9, Opened),
            ev(MON_9 + Duration::minutes(10), Responded),
            ev(MON_9 + Duration::minutes(60), Resolved),
            ev(MON_9 + Duration::minutes(120), Reopened),
        ];
        let e = eval_at(&h, Priority::P1, MON_9 + Duration::minutes(90));
        assert_eq!(e.resolution.state, ClockState::Stopped);
        assert_eq!(e.resolution.met, Some(true));
        assert_eq!(e.resolution.elapsed, Duration::hours(1));
        assert_eq!(e.resolution.stopped_at, Some(MON_9 + Duration::hours(1)));
        let e = eval_at(&h, Priority::P1, MON_9 + Duration::minutes(150));
        assert_eq!(e.resolution.state, ClockState::Running);
        assert_eq!(e.resolution.elapsed, Duration::minutes(90));
        assert_eq!(e.resolution.met, None);
        assert_eq!(e.response.state, ClockState::Stopped);
        // Resolving before any response stops the response clock too.
        let h = [
            ev(MON_9, Opened),
            ev(MON_9 + Duration::minutes(3), Resolved),
        ];
        let e = eval_at(&h, Priority::P1, MON_9 + Duration::hours(1));
        assert_eq!(e.response.state, ClockState::Stopped);
        assert_eq!(e.response.met, Some(true));
    }

    #[test]
    fn nonsense_and_future_events_are_ignored() {
        let h = [
            ev(MON_9 - Duration::hours(1), Resumed),
            ev(MON_9, Opened),
            ev(MON_9 + Duration::minutes(1), Resumed),
            ev(MON_9 + Duration::minutes(2), Reopened),
            ev(MON_9 + Duration::hours(5), Resolved),
        ];
        let e = eval_at(&h, Priority::P3, MON_9 + Duration::hours(1));
        assert_eq!(e.resolution.state, ClockState::Running);
        assert_eq!(e.resolution.elapsed, Duration::hours(1));
        let e = eval_at(&[], Priority::P3, MON_9);
        assert_eq!(e.response.state, ClockState::NotStarted);
        assert_eq!(e.response.due_at, None);
        assert!(new_steps(&e, Priority::P1, false, Escalated::default()).is_empty());
    }

    #[test]
    fn escalation_of_an_assigned_ticket() {
        let h = [
            ev(MON_9, Opened),
            ev(MON_9 + Duration::minutes(1), Responded),
        ];
        let p = Priority::P2; // 8 business hours to resolve
        let mut done = Escalated::default();
        let e = eval_at(&h, p, MON_9 + Duration::hours(3));
        assert!(new_steps(&e, p, true, done).is_empty());
        let e = eval_at(&h, p, datetime!(2026-11-30 15:30 +8)); // 09:00-12:00 + 13:30-15:30 = 5 h
        let steps = new_steps(&e, p, true, done);
        assert_eq!(
            steps,
            [Step {
                clock: Clock::Resolution,
                percent: 50,
                breach: false,
                notify: Recipient::Assignee
            }]
        );
        done = done.after(&steps);
        assert!(
            new_steps(&e, p, true, done).is_empty(),
            "a step is given once"
        );
        // Next day 10:00 = 8.5 business hours: 75 % and the breach at once.
        let e = eval_at(&h, p, datetime!(2026-12-01 10:00 +8));
        let steps = new_steps(&e, p, true, done);
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.percent, s.notify))
                .collect::<Vec<_>>(),
            [(75, Recipient::Assignee), (100, Recipient::Admins)]
        );
        assert!(steps[1].breach);
        done = done.after(&steps);
        assert_eq!(
            done,
            Escalated {
                response: 0,
                resolution: 100
            }
        );
    }

    #[test]
    fn unassigned_urgent_tickets_escalate_faster() {
        let h = [ev(MON_9, Opened)];
        let steps_at = |p, mins, assigned| {
            let e = eval_at(&h, p, MON_9 + Duration::minutes(mins));
            new_steps(&e, p, assigned, Escalated::default())
                .into_iter()
                .map(|s| (s.clock, s.percent, s.notify))
                .collect::<Vec<_>>()
        };
        // P1 response target 15 min: at 4 min (26 %) the desk is warned,
        // at 8 min (53 %) the admins are told too; an assigned ticket is
        // quiet until 50 % and then only its assignee hears.
        assert_eq!(
            steps_at(Priority::P1, 4, false),
            [(Clock::Response, 25, Recipient::Desk)]
        );
        assert_eq!(
            steps_at(Priority::P1, 8, false),
            [
                (Clock::Response, 25, Recipient::Desk),
                (Clock::Response, 50, Recipient::Admins)
            ]
        );
        assert!(steps_at(Priority::P1, 4, true).is_empty());
        assert_eq!(
            steps_at(Priority::P1, 8, true),
            [(Clock::Response, 50, Recipient::Assignee)]
        );
        // P2 (1 h response) the same; P3 (4 h) unassigned waits until 50 %.
        assert_eq!(
            steps_at(Priority::P2, 16, false),
            [(Clock::Response, 25, Recipient::Desk)]
        );
        assert!(steps_at(Priority::P3, 61, false).is_empty());
    }

    #[test]
    fn unassigned_ordinary_tickets_warn_the_desk() {
        let h = [ev(MON_9, Opened)];
        let e = eval_at(&h, Priority::P4, MON_9 + Duration::hours(3)); // 37 % of 8 h
        assert!(new_steps(&e, Priority::P4, false, Escalated::default()).is_empty());
        let e = eval_at(&h, Priority::P4, MON_9 + Duration::hours(6)); // 09-12 + 13:30-15:00 = 4.5 h
        let steps = new_steps(&e, Priority::P4, false, Escalated::default());
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.clock, s.percent, s.notify))
                .collect::<Vec<_>>(),
            [(Clock::Response, 50, Recipient::Desk)]
        );
    }

    #[test]
    fn stopped_clock_yields_only_its_breach() {
        let h = [
            ev(MON_9, Opened),
            ev(MON_9 + Duration::minutes(20), Responded),
        ];
        let e = eval_at(&h, Priority::P1, MON_9 + Duration::minutes(30));
        let steps = new_steps(&e, Priority::P1, true, Escalated::default());
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.clock, s.percent))
                .collect::<Vec<_>>(),
            [(Clock::Response, 100)]
        );
    }

    // --- properties --------------------------------------------------------

    /// A history: opened at the base, then up to 12 events at increasing
    /// offsets (minutes), kinds at random.
    fn arb_history() -> impl Strategy<Value = Vec<ClockEvent>> {
        let kind = prop_oneof![
            Just(Responded),
            Just(WaitingForReporter),
            Just(Resumed),
            Just(Resolved),
            Just(Reopened),
            Just(Closed),
        ];
        proptest::collection::vec((1i64..3000, kind), 0..12).prop_map(|steps| {
            let mut t = MON_9;
            let mut h = vec![ev(t, Opened)];
            for (gap, k) in steps {
                t += Duration::minutes(gap);
                h.push(ev(t, k));
            }
            h
        })
    }

    fn arb_priority() -> impl Strategy<Value = Priority> {
        prop_oneof![
            Just(Priority::P1),
            Just(Priority::P2),
            Just(Priority::P3),
            Just(Priority::P4)
        ]
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        any::<bool>().prop_map(|p1_7x24| {
            let mut p = Policy::default();
            p.p1.around_the_clock = p1_7x24;
            p
        })
    }

    fn minutes() -> impl Strategy<Value = Duration> {
        (0i64..40_000).prop_map(Duration::minutes)
    }

    proptest! {
        #[test]
        fn elapsed_is_monotone_in_now(h in arb_history(), p in arb_priority(), pol in arb_policy(), a in minutes(), b in minutes()) {
            let cal = Calendar::default();
            let (a, b) = (MON_9 + a.min(b), MON_9 + a.max(b));
            let ea = evaluate(&h, p, &pol, &cal, a);
            let eb = evaluate(&h, p, &pol, &cal, b);
            prop_assert!(ea.response.elapsed <= eb.response.elapsed);
            prop_assert!(ea.resolution.elapsed <= eb.resolution.elapsed);
            prop_assert!(ea.response.level <= eb.response.level);
            prop_assert!(ea.resolution.level <= eb.resolution.level);
        }

        #[test]
        fn clocks_never_count_more_than_the_calendar(h in arb_history(), p in arb_priority(), now in minutes()) {
            let cal = Calendar::default();
            let now = MON_9 + now;
            let e = evaluate(&h, p, &Policy::default(), &cal, now);
            let open = cal.business_time_between(MON_9, now);
            prop_assert!(e.response.elapsed <= open);
            prop_assert!(e.resolution.elapsed <= open);
            prop_assert_eq!(e.response.remaining, e.response.target - e.response.elapsed);
        }

        #[test]
        fn pausing_never_increases_elapsed(
            h in arb_history(), p in arb_priority(), pol in arb_policy(),
            at in minutes(), len in 1i64..5000, now in minutes(),
        ) {
            let cal = Calendar::default();
            let now = MON_9 + now;
            let x = MON_9 + at;
            let y = x + Duration::minutes(len);
            // A pause inserted while the ticket runs, between two of its events.
            prop_assume!(!h.iter().any(|e| e.at >= x && e.at <= y));
            let before = evaluate(&h, p, &pol, &cal, x);
            prop_assume!(before.resolution.state == ClockState::Running);
            let mut paused = h.clone();
            paused.push(ev(x, WaitingForReporter));
            paused.push(ev(y, Resumed));
            let e0 = evaluate(&h, p, &pol, &cal, now);
            let e1 = evaluate(&paused, p, &pol, &cal, now);
            prop_assert!(e1.response.elapsed <= e0.response.elapsed);
            prop_assert!(e1.resolution.elapsed <= e0.resolution.elapsed);
            // ...and by exactly the business time of the pause seen so far.
            let clock_cal = if pol.target(p).around_the_clock { Calendar::always_open() } else { cal.clone() };
            let paused_for = clock_cal.business_time_between(x, y.min(now));
            prop_assert_eq!(e0.resolution.elapsed - e1.resolution.elapsed, paused_for);
        }

        #[test]
        fn due_at_agrees_with_add_business_time(h in arb_history(), p in arb_priority(), pol in arb_policy(), now in minutes()) {
            let cal = Calendar::default();
            let now = MON_9 + now;
            let e = evaluate(&h, p, &pol, &cal, now);
            let clock_cal = if pol.target(p).around_the_clock { Calendar::always_open() } else { cal.clone() };
            for st in [e.response, e.resolution] {
                if st.state == ClockState::Running {
                    prop_assert!(st.due_at.is_some(), "a running clock has a due instant");
                }
                match st.due_at {
                    Some(due) if st.remaining > Duration::ZERO => {
                        // Still ahead: the remaining business time lies between now and due.
                        prop_assert!(due > now);
                        prop_assert_eq!(clock_cal.business_time_between(now, due), st.remaining);
                        prop_assert_eq!(clock_cal.add_business_time(now, st.remaining), Some(due));
                    }
                    Some(due) => prop_assert!(due <= now),
                    None => {}
                }
                if st.level == Level::Breached {
                    prop_assert!(st.due_at.is_some_and(|d| d < now));
                }
            }
            // Only opened: due is the calendar's answer from the opening.
            let only = evaluate(&h[..1], p, &pol, &cal, now);
            prop_assert_eq!(only.resolution.due_at, clock_cal.add_business_time(MON_9, only.resolution.target));
            prop_assert_eq!(only.response.due_at, clock_cal.add_business_time(MON_9, only.response.target));
        }

        #[test]
        fn next_step_at_is_when_the_next_step_falls_due(
            h in arb_history(), p in arb_priority(), pol in arb_policy(), assigned in any::<bool>(), now in minutes(),
        ) {
            let cal = Calendar::default();
            let now = MON_9 + now;
            let e = evaluate(&h, p, &pol, &cal, now);
            let done = Escalated::default().after(&new_steps(&e, p, assigned, Escalated::default()));
            // Only while nothing else happens: no event after now.
            prop_assume!(h.iter().all(|ev| ev.at <= now));
            match next_step_at(&e, p, &pol, &cal, assigned, done, now) {
                None => {
                    let later = evaluate(&h, p, &pol, &cal, now + Duration::days(60));
                    prop_assert!(new_steps(&later, p, assigned, done).is_empty());
                }
                Some(at) => {
                    prop_assert!(at > now);
                    let then = evaluate(&h, p, &pol, &cal, at);
                    prop_assert!(!new_steps(&then, p, assigned, done).is_empty(), "due at {}", at);
                    let just_before = at - Duration::SECOND;
                    if just_before > now {
                        let before = evaluate(&h, p, &pol, &cal, just_before);
                        prop_assert!(new_steps(&before, p, assigned, done).is_empty(), "early at {}", just_before);
                    }
                }
            }
        }

        #[test]
        fn escalation_steps_are_given_once_in_order(h in arb_history(), p in arb_priority(), assigned in any::<bool>(), mut nows in proptest::collection::vec(minutes(), 1..8)) {
            let cal = Calendar::default();
            nows.sort();
            let mut done = Escalated::default();
            let mut seen = Vec::new();
            for n in nows {
                let e = evaluate(&h, p, &Policy::default(), &cal, MON_9 + n);
                let steps = new_steps(&e, p, assigned, done);
                for s in &steps {
                    prop_assert!(s.percent > done.get(s.clock));
                    prop_assert!(!seen.contains(&(s.clock, s.percent)));
                    seen.push((s.clock, s.percent));
                }
                done = done.after(&steps);
            }
        }
    }
}
