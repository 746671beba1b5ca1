//! The indicators, objectives and status levels, computed from loaded rows
//! with no I/O and no clock: every function here takes the window it
//! measures and the rows, so unit and property tests give hand-computed
//! numbers.
//!
//! Definitions (what the SLO page shows):
//! - **VM start**: an attempt is a start of a VM that was not running; a
//!   failure whose kind is the user's own doing ([`USER_CAUSED`]) is no
//!   attempt. Success rate = ok / attempts; time to `running` and to the
//!   first console frame as nearest-rank p50/p95.
//! - **Console**: a token issued is not yet a session (it may be dropped, or
//!   refused for a bad Origin or another user's cookie — not the service's
//!   fault). A session *attempt* is one the relay took; it fails if it ends
//!   with an error close code (4003 node unreachable, 4005 the node refused
//!   pvce, 1002/1003/1009 a broken handshake or WebSocket — [`ended_by`]), or when pvce ended it
//!   just before its node was marked down ([`reclassify`]). Session minutes run from
//!   the handshake to the end (or the window's end).
//! - **Availability in wanted time**: each start request says the student
//!   wants that VM for [`WANTED_WINDOW_MS`] (a double class period), or until
//!   their next start request of it. Unusable through no act of the user: the
//!   whole wanted time after a failed start (until the next request), the
//!   VM's node being down after it ran, and the time from a console error
//!   until the next console session of the VM was established. Attributed
//!   to the start's course and node; overall includes all.
//! - **Node availability**: 1 − down time / window, from the event log's
//!   `node_down` / `node_up` transitions (a node down at the window's end is
//!   down until then).
//! - **Budget and burn**: an objective allows a fraction of bad events
//!   (1 − target for a ratio, 5 % for a p95); budget left = 1 − bad / allowed
//!   over the period (below 0: overspent); burn rate = the bad fraction over
//!   the last hour / the allowed fraction (1 spends the budget exactly in one
//!   period).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// How long a start request says the VM is wanted: two 45-minute periods.
pub const WANTED_WINDOW_MS: i64 = 90 * MINUTE_MS;
/// Start failures that are the user's own doing (starting a VM while it
/// shuts down): no attempt.
pub const USER_CAUSED: &[&str] = &["vm_stopping"];
/// A session the system ended (its node's stream closed: "VM stopped")
/// at most this long before its node was marked down ended because the
/// node died: an error. (A crashed host's QEMU is gone and its stream
/// closes at once; the monitor needs up to 10 s to call the node down.)
pub const DOWN_GRACE_MS: i64 = 30_000;
/// A burn rate at or above this over one hour turns a service red (the SRE
/// workbook's fast-burn page: 2 % of a 30-day budget in one hour).
pub const RED_BURN: f64 = 14.4;

/// A measured interval `[from_ms, to_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Window {
    pub fn len_ms(self) -> i64 {
        (self.to_ms - self.from_ms).max(0)
    }
    fn contains(self, t: i64) -> bool {
        t >= self.from_ms && t < self.to_ms
    }
    /// The last hour of the window (or all of it, if shorter).
    pub fn last_hour(self) -> Window {
        self.last(HOUR_MS)
    }
    /// The last `len_ms` of the window (or all of it, if shorter).
    pub fn last(self, len_ms: i64) -> Window {
        Window {
            from_ms: (self.to_ms - len_ms).max(self.from_ms),
            to_ms: self.to_ms,
        }
    }
}

/// How a console session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    /// The user (or their browser) closed it.
    User,
    /// It could not connect or broke: counts against the service.
    Error,
    /// pvce ended it for a reason of state: the VM stopped or moved, the
    /// server shut down, a session limit.
    System,
}

impl EndedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Error => "error",
            Self::System => "system",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::User, Self::Error, Self::System]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One recorded start attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct StartRow {
    pub vm_id: Uuid,
    pub course_id: Option<Uuid>,
    pub node_id: Option<Uuid>,
    pub requested_ms: i64,
    pub ok: bool,
    pub error_code: Option<String>,
    pub running_ms: Option<i64>,
    pub first_frame_ms: Option<i64>,
}

impl StartRow {
    fn counts(&self) -> bool {
        counts_as_attempt(self.ok, self.error_code.as_deref())
    }
}

/// Whether a recorded start is an attempt (module doc): the SLO page and
/// `/metrics` ([`super::exposition`]) both count by this.
pub fn counts_as_attempt(ok: bool, error_code: Option<&str>) -> bool {
    ok || !error_code.is_some_and(|c| USER_CAUSED.contains(&c))
}

/// One recorded console token and its session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub vm_id: Uuid,
    pub node_id: Option<Uuid>,
    pub issued_ms: i64,
    pub opened_ms: Option<i64>,
    pub established_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub ended_by: Option<EndedBy>,
}

/// A node going down or coming back (the event log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeTransition {
    pub node_id: Uuid,
    pub at_ms: i64,
    pub down: bool,
}

/// Everything the indicators are computed from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Starts requested from `WANTED_WINDOW_MS` before the window on.
    pub starts: Vec<StartRow>,
    pub sessions: Vec<SessionRow>,
    /// All known transitions up to the window's end, any order.
    pub transitions: Vec<NodeTransition>,
    /// The nodes to report on (id, name).
    pub nodes: Vec<(Uuid, String)>,
    /// Per-minute node samples: (node, minute start ms, VMs running).
    pub vm_samples: Vec<(Uuid, i64, i64)>,
    /// The desk's response clocks of the tickets created in the window
    /// (the desk's own SLA figures, `desk::stats::sla_compliance`).
    pub ticket_response: TicketResponse,
}

/// Tickets whose response clock stopped within the SLA (`met`) and those
/// whose breach was recorded (`breached`); running clocks not yet
/// breached do not count (as on the desk's statistics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TicketResponse {
    pub met: i64,
    pub breached: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StartFigures {
    pub attempts: u64,
    pub ok: u64,
    pub failed: u64,
    pub success_rate: Option<f64>,
    pub running_p50_seconds: Option<f64>,
    pub running_p95_seconds: Option<f64>,
    pub first_frame_p50_seconds: Option<f64>,
    pub first_frame_p95_seconds: Option<f64>,
    /// Successful starts that reached `running` within the p95 target.
    pub within_target: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConsoleFigures {
    pub issued: u64,
    pub attempts: u64,
    pub established: u64,
    pub errors: u64,
    pub ended_by_user: u64,
    pub ended_by_system: u64,
    pub success_rate: Option<f64>,
    pub session_minutes: f64,
    pub peak_concurrent: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Availability {
    pub wanted_minutes: f64,
    pub unusable_minutes: f64,
    pub ratio: Option<f64>,
}

impl Availability {
    fn add(&mut self, wanted_ms: i64, unusable_ms: i64) {
        self.wanted_minutes += wanted_ms as f64 / MINUTE_MS as f64;
        self.unusable_minutes += unusable_ms as f64 / MINUTE_MS as f64;
        self.ratio =
            (self.wanted_minutes > 0.0).then(|| 1.0 - self.unusable_minutes / self.wanted_minutes);
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AvailabilityFigures {
    pub overall: Availability,
    pub per_course: BTreeMap<String, Availability>,
    pub per_node: BTreeMap<String, Availability>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeFigures {
    pub node_id: Uuid,
    pub name: String,
    pub down_minutes: f64,
    pub availability: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub starts: StartFigures,
    pub consoles: ConsoleFigures,
    pub availability: AvailabilityFigures,
    pub nodes: Vec<NodeFigures>,
    pub peak_concurrent_vms: u64,
    pub ticket_response: TicketResponse,
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn pct(values: &mut [f64], p: f64) -> Option<f64> {
    crate::quantile::percentile(values, p)
}

/// The start figures of the starts requested in `w`; `p95_target_ms` is
/// what counts as "within target".
pub fn start_figures(rows: &[StartRow], w: Window, p95_target_ms: i64) -> StartFigures {
    let mut f = StartFigures::default();
    let mut running = Vec::new();
    let mut frame = Vec::new();
    for r in rows
        .iter()
        .filter(|r| w.contains(r.requested_ms) && r.counts())
    {
        f.attempts += 1;
        if !r.ok {
            f.failed += 1;
            continue;
        }
        f.ok += 1;
        if let Some(t) = r.running_ms {
            let d = t - r.requested_ms;
            running.push(seconds(d));
            if d <= p95_target_ms {
                f.within_target += 1;
            }
        }
        if let Some(t) = r.first_frame_ms {
            frame.push(seconds(t - r.requested_ms));
        }
    }
    f.success_rate = (f.attempts > 0).then(|| f.ok as f64 / f.attempts as f64);
    f.running_p50_seconds = pct(&mut running, 50.0);
    f.running_p95_seconds = pct(&mut running, 95.0);
    f.first_frame_p50_seconds = pct(&mut frame, 50.0);
    f.first_frame_p95_seconds = pct(&mut frame, 95.0);
    f
}

/// The largest number of intervals `[a, b)` open at once.
pub fn peak_concurrent(intervals: &[(i64, i64)]) -> u64 {
    let mut edges: Vec<(i64, i64)> = Vec::with_capacity(intervals.len() * 2);
    for &(a, b) in intervals.iter().filter(|(a, b)| b > a) {
        edges.push((a, 1));
        edges.push((b, -1));
    }
    // Ends before starts at the same instant: back-to-back is not overlap.
    edges.sort_unstable();
    let (mut open, mut peak) = (0i64, 0i64);
    for (_, d) in edges {
        open += d;
        peak = peak.max(open);
    }
    u64::try_from(peak).unwrap_or(0)
}

/// The console figures of the tokens issued in `w`.
pub fn console_figures(rows: &[SessionRow], w: Window) -> ConsoleFigures {
    let mut f = ConsoleFigures::default();
    let mut live = Vec::new();
    let mut minutes_ms = 0i64;
    for r in rows {
        // Sessions established before the window still add their minutes in it.
        if let Some(e) = r.established_ms {
            let end = r.ended_ms.unwrap_or(w.to_ms).min(w.to_ms);
            let start = e.max(w.from_ms);
            if end > start {
                minutes_ms += end - start;
                live.push((start, end));
            }
        }
        if !w.contains(r.issued_ms) {
            continue;
        }
        f.issued += 1;
        if r.opened_ms.is_none() {
            continue;
        }
        f.attempts += 1;
        if r.established_ms.is_some() {
            f.established += 1;
        }
        match r.ended_by {
            Some(EndedBy::Error) => f.errors += 1,
            Some(EndedBy::User) => f.ended_by_user += 1,
            Some(EndedBy::System) => f.ended_by_system += 1,
            None => {}
        }
    }
    f.success_rate = (f.attempts > 0).then(|| (f.attempts - f.errors) as f64 / f.attempts as f64);
    f.session_minutes = minutes_ms as f64 / MINUTE_MS as f64;
    f.peak_concurrent = peak_concurrent(&live);
    f
}

/// Each node's down intervals clipped to `w`, from its transitions (in any
/// order); a node still down at the end is down until `w.to_ms`.
pub fn down_intervals(transitions: &[NodeTransition], w: Window) -> HashMap<Uuid, Vec<(i64, i64)>> {
    let mut sorted: Vec<&NodeTransition> =
        transitions.iter().filter(|t| t.at_ms < w.to_ms).collect();
    sorted.sort_by_key(|t| t.at_ms);
    let mut since: HashMap<Uuid, i64> = HashMap::new();
    let mut out: HashMap<Uuid, Vec<(i64, i64)>> = HashMap::new();
    let mut push = |node: Uuid, a: i64, b: i64| {
        let (a, b) = (a.max(w.from_ms), b.min(w.to_ms));
        if b > a {
            out.entry(node).or_default().push((a, b));
        }
    };
    for t in sorted {
        match (t.down, since.get(&t.node_id).copied()) {
            (true, None) => {
                since.insert(t.node_id, t.at_ms);
            }
            (false, Some(a)) => {
                since.remove(&t.node_id);
                push(t.node_id, a, t.at_ms);
            }
            // A repeated "down" keeps the first; an "up" of an up node is nothing.
            _ => {}
        }
    }
    for (node, a) in since {
        push(node, a, w.to_ms);
    }
    out
}

/// Total length of the union of `intervals`.
pub fn union_ms(intervals: &mut [(i64, i64)]) -> i64 {
    intervals.sort_unstable();
    let mut total = 0;
    let mut cur: Option<(i64, i64)> = None;
    for &(a, b) in intervals.iter().filter(|(a, b)| b > a) {
        cur = match cur {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((a, b)) = cur {
        total += b - a;
    }
    total
}

/// Availability in wanted time (module doc) over `w`.
pub fn availability(
    starts: &[StartRow],
    sessions: &[SessionRow],
    down: &HashMap<Uuid, Vec<(i64, i64)>>,
    w: Window,
) -> AvailabilityFigures {
    let mut by_vm: HashMap<Uuid, Vec<&StartRow>> = HashMap::new();
    for s in starts.iter().filter(|s| s.counts()) {
        by_vm.entry(s.vm_id).or_default().push(s);
    }
    let mut sessions_by_vm: HashMap<Uuid, Vec<&SessionRow>> = HashMap::new();
    for s in sessions.iter().filter(|s| s.opened_ms.is_some()) {
        sessions_by_vm.entry(s.vm_id).or_default().push(s);
    }
    let mut out = AvailabilityFigures::default();
    for (vm, mut list) in by_vm {
        list.sort_by_key(|s| s.requested_ms);
        let vm_sessions = sessions_by_vm.get(&vm).map(Vec::as_slice).unwrap_or(&[]);
        for (i, s) in list.iter().enumerate() {
            let next = list.get(i + 1).map_or(i64::MAX, |n| n.requested_ms);
            let end = (s.requested_ms + WANTED_WINDOW_MS).min(next).min(w.to_ms);
            let begin = s.requested_ms.max(w.from_ms);
            if end <= begin {
                continue;
            }
            let mut bad: Vec<(i64, i64)> = Vec::new();
            if !s.ok {
                bad.push((s.requested_ms, end));
            } else {
                let ran = s.running_ms.unwrap_or(s.requested_ms);
                if let Some(node) = s.node_id {
                    for &(a, b) in down.get(&node).map(Vec::as_slice).unwrap_or(&[]) {
                        bad.push((a.max(ran), b));
                    }
                }
                for e in vm_sessions
                    .iter()
                    .filter(|x| x.ended_by == Some(EndedBy::Error))
                {
                    let t0 = e.ended_ms.or(e.opened_ms).unwrap_or(e.issued_ms);
                    if t0 < s.requested_ms || t0 >= end {
                        continue;
                    }
                    let recovered = vm_sessions
                        .iter()
                        .filter_map(|x| x.established_ms)
                        .filter(|&t| t > t0)
                        .min()
                        .unwrap_or(end);
                    bad.push((t0, recovered));
                }
            }
            let mut clipped: Vec<(i64, i64)> = bad
                .into_iter()
                .map(|(a, b)| (a.max(begin), b.min(end)))
                .collect();
            let unusable = union_ms(&mut clipped);
            let wanted = end - begin;
            out.overall.add(wanted, unusable);
            if let Some(c) = s.course_id {
                out.per_course
                    .entry(c.to_string())
                    .or_default()
                    .add(wanted, unusable);
            }
            if let Some(n) = s.node_id {
                out.per_node
                    .entry(n.to_string())
                    .or_default()
                    .add(wanted, unusable);
            }
        }
    }
    out
}

/// The largest sum of VMs running over the nodes in one sampled minute.
pub fn peak_vms(samples: &[(Uuid, i64, i64)], w: Window) -> u64 {
    let mut per_minute: HashMap<i64, i64> = HashMap::new();
    for &(_, at, n) in samples.iter().filter(|s| w.contains(s.1)) {
        *per_minute.entry(at).or_default() += n.max(0);
    }
    per_minute
        .values()
        .max()
        .and_then(|&n| u64::try_from(n).ok())
        .unwrap_or(0)
}

/// The sessions with those the system ended just before their node went
/// down ([`DOWN_GRACE_MS`]) counted as errors.
pub fn reclassify(sessions: &[SessionRow], transitions: &[NodeTransition]) -> Vec<SessionRow> {
    let mut downs: HashMap<Uuid, Vec<i64>> = HashMap::new();
    for t in transitions.iter().filter(|t| t.down) {
        downs.entry(t.node_id).or_default().push(t.at_ms);
    }
    sessions
        .iter()
        .map(|s| {
            let mut s = s.clone();
            if let (Some(EndedBy::System), Some(end), Some(node)) =
                (s.ended_by, s.ended_ms, s.node_id)
                && downs
                    .get(&node)
                    .is_some_and(|d| d.iter().any(|&a| a >= end && a - end <= DOWN_GRACE_MS))
            {
                s.ended_by = Some(EndedBy::Error);
            }
            s
        })
        .collect()
}

/// All the indicators over `w`.
pub fn figures(inputs: &Inputs, w: Window, p95_target_ms: i64) -> Figures {
    let down = down_intervals(&inputs.transitions, w);
    let sessions = reclassify(&inputs.sessions, &inputs.transitions);
    let nodes = inputs
        .nodes
        .iter()
        .map(|(id, name)| {
            let down_ms: i64 = down
                .get(id)
                .map_or(0, |v| v.iter().map(|(a, b)| b - a).sum());
            NodeFigures {
                node_id: *id,
                name: name.clone(),
                down_minutes: down_ms as f64 / MINUTE_MS as f64,
                availability: (w.len_ms() > 0).then(|| 1.0 - down_ms as f64 / w.len_ms() as f64),
            }
        })
        .collect();
    Figures {
        starts: start_figures(&inputs.starts, w, p95_target_ms),
        consoles: console_figures(&sessions, w),
        availability: availability(&inputs.starts, &sessions, &down, w),
        nodes,
        peak_concurrent_vms: peak_vms(&inputs.vm_samples, w),
        ticket_response: inputs.ticket_response,
    }
}

// ---------------------------------------------------------------- objectives

/// An indicator with an objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    ConsoleSuccess,
    StartSuccess,
    StartP95,
    VmAvailability,
    NodeAvailability,
    /// Tickets answered within their response SLA.
    TicketResponse,
}

/// What a target is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A fraction 0..1; the actual must be at least the target.
    Ratio,
    /// Seconds; the actual (a p95) must be at most the target.
    Seconds,
}

impl Indicator {
    pub const ALL: [Self; 6] = [
        Self::ConsoleSuccess,
        Self::StartSuccess,
        Self::StartP95,
        Self::VmAvailability,
        Self::NodeAvailability,
        Self::TicketResponse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsoleSuccess => "console_success",
            Self::StartSuccess => "start_success",
            Self::StartP95 => "start_p95",
            Self::VmAvailability => "vm_availability",
            Self::NodeAvailability => "node_availability",
            Self::TicketResponse => "ticket_response",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn unit(self) -> Unit {
        match self {
            Self::StartP95 => Unit::Seconds,
            _ => Unit::Ratio,
        }
    }

    /// The defaults: consoles and VMs in wanted time 99.5 %; starts 99 %;
    /// a start reaches `running` within 120 s at p95 (a tiny guest under
    /// TCG takes 5–10 s; a full desktop image under TCG about a minute);
    /// nodes 99.5 %; tickets answered within their response SLA 95 %.
    pub fn default_target(self) -> f64 {
        match self {
            Self::ConsoleSuccess | Self::VmAvailability | Self::NodeAvailability => 0.995,
            Self::TicketResponse => 0.95,
            Self::StartSuccess => 0.99,
            Self::StartP95 => 120.0,
        }
    }

    /// A target admins may set: a ratio in [0.5, 0.99999] (1 would leave no
    /// budget), seconds in [1, 3600].
    pub fn valid(self, target: f64) -> bool {
        target.is_finite()
            && match self.unit() {
                Unit::Ratio => (0.5..=0.99999).contains(&target),
                Unit::Seconds => (1.0..=3600.0).contains(&target),
            }
    }

    /// The fraction of events an objective allows to be bad.
    pub fn allowed_bad(self, target: f64) -> f64 {
        match self.unit() {
            Unit::Ratio => 1.0 - target,
            Unit::Seconds => 0.05,
        }
    }
}

/// Good events (or minutes) out of all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Tally {
    pub good: f64,
    pub total: f64,
}

impl Tally {
    fn bad_fraction(self) -> Option<f64> {
        (self.total > 0.0).then(|| (self.total - self.good) / self.total)
    }
}

/// 1 − bad / allowed bad over the period; `None` without events.
pub fn budget_left(t: Tally, allowed_bad: f64) -> Option<f64> {
    let bad = t.bad_fraction()?;
    Some(if allowed_bad > 0.0 {
        1.0 - bad / allowed_bad
    } else if bad > 0.0 {
        f64::NEG_INFINITY
    } else {
        1.0
    })
    .filter(|v| v.is_finite())
}

/// The bad fraction / the allowed one; `None` without events.
pub fn burn_rate(t: Tally, allowed_bad: f64) -> Option<f64> {
    let bad = t.bad_fraction()?;
    (allowed_bad > 0.0).then(|| bad / allowed_bad)
}

/// The tally of `indicator` in `f` (`target` for the p95's threshold).
pub fn tally(indicator: Indicator, f: &Figures, window_ms: i64) -> Tally {
    match indicator {
        Indicator::ConsoleSuccess => Tally {
            good: (f.consoles.attempts - f.consoles.errors) as f64,
            total: f.consoles.attempts as f64,
        },
        Indicator::StartSuccess => Tally {
            good: f.starts.ok as f64,
            total: f.starts.attempts as f64,
        },
        Indicator::StartP95 => Tally {
            good: f.starts.within_target as f64,
            total: f.starts.ok as f64,
        },
        Indicator::VmAvailability => Tally {
            good: f.availability.overall.wanted_minutes - f.availability.overall.unusable_minutes,
            total: f.availability.overall.wanted_minutes,
        },
        Indicator::TicketResponse => Tally {
            good: f.ticket_response.met as f64,
            total: (f.ticket_response.met + f.ticket_response.breached) as f64,
        },
        Indicator::NodeAvailability => {
            let total = f.nodes.len() as f64 * window_ms as f64 / MINUTE_MS as f64;
            let down: f64 = f.nodes.iter().map(|n| n.down_minutes).sum();
            Tally {
                good: total - down,
                total,
            }
        }
    }
}

/// One objective as the SLO page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Objective {
    pub indicator: Indicator,
    pub unit: Unit,
    pub target: f64,
    /// The measured value (a ratio, or the p95 in seconds); `None` without events.
    pub actual: Option<f64>,
    pub met: Option<bool>,
    pub good: f64,
    pub total: f64,
    pub budget_left: Option<f64>,
    pub burn_rate_1h: Option<f64>,
    /// Over the last six hours: the long window of the slower burn alert.
    pub burn_rate_6h: Option<f64>,
}

/// A window's figures and its length (the node tally needs it).
#[derive(Debug, Clone, Copy)]
pub struct Measured<'a> {
    pub figures: &'a Figures,
    pub window_ms: i64,
}

/// The objectives from the period's figures and the last hour's and six
/// hours'.
pub fn objectives(
    period: Measured<'_>,
    hour: Measured<'_>,
    six_hours: Measured<'_>,
    targets: &BTreeMap<Indicator, f64>,
) -> Vec<Objective> {
    let Measured {
        figures: period,
        window_ms: period_ms,
    } = period;
    Indicator::ALL
        .into_iter()
        .map(|i| {
            let target = targets.get(&i).copied().unwrap_or(i.default_target());
            let allowed = i.allowed_bad(target);
            let t = tally(i, period, period_ms);
            let actual = match i.unit() {
                Unit::Seconds => period.starts.running_p95_seconds,
                Unit::Ratio => (t.total > 0.0).then(|| t.good / t.total),
            };
            let met = actual.map(|a| match i.unit() {
                Unit::Seconds => a <= target,
                Unit::Ratio => a >= target,
            });
            Objective {
                indicator: i,
                unit: i.unit(),
                target,
                actual,
                met,
                good: t.good,
                total: t.total,
                budget_left: budget_left(t, allowed),
                burn_rate_1h: burn_rate(tally(i, hour.figures, hour.window_ms), allowed),
                burn_rate_6h: burn_rate(tally(i, six_hours.figures, six_hours.window_ms), allowed),
            }
        })
        .collect()
}

// ---------------------------------------------------------------- capacity

/// A store's use now and when it is full by the trend, as the SLO page
/// shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capacity {
    /// `layer_storage`, or `store` (a node's template store).
    pub kind: &'static str,
    /// The node's name for a store; empty for the layer storage.
    pub name: String,
    /// The newest recorded use, %.
    pub used_percent: Option<f64>,
    /// Days until 100 % by the trend of the last week (the alert loop's
    /// forecast); 0 when full already; `None` when not growing or unknown.
    pub days_until_full: Option<f64>,
}

/// A store's use and forecast from the alert loop's recorded points (any
/// order, `at` in Unix seconds) at `now_s`: the same forecast the capacity
/// alerts level by.
pub fn capacity(
    kind: &'static str,
    name: String,
    points: &[crate::alerts::Point],
    now_s: i64,
) -> Capacity {
    use crate::alerts::forecast::{Forecast, TREND_WINDOW_SECS, days_until_full};
    let recent: Vec<crate::alerts::Point> = points
        .iter()
        .copied()
        .filter(|p| p.at > now_s - TREND_WINDOW_SECS && p.at <= now_s)
        .collect();
    let used_percent = recent.iter().max_by_key(|p| p.at).map(|p| p.value);
    let days_until_full = match days_until_full(&recent, 100.0, now_s, crate::alerts::DAY) {
        Forecast::Full => Some(0.0),
        Forecast::InDays { days } => Some(days),
        Forecast::Unknown | Forecast::NotGrowing => None,
    };
    Capacity {
        kind,
        name,
        used_percent,
        days_until_full,
    }
}

// ---------------------------------------------------------------- alerts

/// What the alert loop reads from the service levels: the last hour's
/// console error and start failure shares (percent of attempts, `None`
/// without attempts) and each objective's burn rate over that hour.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSignals {
    pub console_error_percent: Option<f64>,
    pub start_failure_percent: Option<f64>,
    /// Every indicator with its burn rate (`None` without events), in
    /// [`Indicator::ALL`] order.
    pub burn_rates: Vec<(Indicator, Option<f64>)>,
}

/// The alert signals from the figures of one window (the last hour):
/// the same tallies and burn rates the SLO page and the status page use,
/// so an alert never disagrees with them.
pub fn alert_signals(
    hour: &Figures,
    hour_ms: i64,
    targets: &BTreeMap<Indicator, f64>,
) -> AlertSignals {
    let bad_percent = |i: Indicator| {
        let t = tally(i, hour, hour_ms);
        t.bad_fraction().map(|b| 100.0 * b)
    };
    AlertSignals {
        console_error_percent: bad_percent(Indicator::ConsoleSuccess),
        start_failure_percent: bad_percent(Indicator::StartSuccess),
        burn_rates: burn_rates(hour, hour_ms, targets),
    }
}

/// Every indicator's burn rate over one window's figures (`None` without
/// events), in [`Indicator::ALL`] order: the alert loop's and `/metrics`'.
pub fn burn_rates(
    f: &Figures,
    window_ms: i64,
    targets: &BTreeMap<Indicator, f64>,
) -> Vec<(Indicator, Option<f64>)> {
    Indicator::ALL
        .into_iter()
        .map(|i| {
            let target = targets.get(&i).copied().unwrap_or(i.default_target());
            (i, burn_rate(tally(i, f, window_ms), i.allowed_bad(target)))
        })
        .collect()
}

// ---------------------------------------------------------------- status

/// A service's state on the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Green,
    Amber,
    Red,
}

/// From an objective's burn rate over the last hour: green up to 1 (on
/// budget), red from [`RED_BURN`], amber between; green without events.
pub fn level_from_burn(burn: Option<f64>) -> Level {
    match burn {
        Some(b) if b >= RED_BURN => Level::Red,
        Some(b) if b > 1.0 => Level::Amber,
        _ => Level::Green,
    }
}

/// Nodes: green when none is down, red when none answers (or there are
/// none), amber otherwise.
pub fn node_level(down: usize, total: usize) -> Level {
    if total == 0 || down >= total {
        Level::Red
    } else if down > 0 {
        Level::Amber
    } else {
        Level::Green
    }
}

/// The desk: green without open system incidents, red with a P1 among
/// them, amber otherwise.
pub fn desk_level(priorities: &[String]) -> Level {
    if priorities.is_empty() {
        Level::Green
    } else if priorities.iter().any(|p| p == "P1") {
        Level::Red
    } else {
        Level::Amber
    }
}

#[cfg(test)]
mod tests;
