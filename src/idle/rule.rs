//! The idle rule, pure: whether a running VM of a course should be stopped
//! at `now`, from (the course's rule, when the VM started, its console
//! sessions, its guest's CPU samples, whether a warning was already shown).
//! No clock, no database — unit and property tests pin it down.
//!
//! Rules (each off when unset):
//! - **disconnected** N: no console connected since N minutes (counted from
//!   the later of the start and the last console's end);
//! - **never connected** M: started M minutes ago and no console was ever
//!   opened since;
//! - **guest idle** x %, N: every CPU sample of the last N minutes is under
//!   x %, the VM has run N minutes, and the samples cover the window (no gap
//!   over [`MAX_SAMPLE_GAP`], edges included: missing data is not idleness).
//!
//! - **hours spent** (from the course's hour quota, not the idle rule): a
//!   VM running outside sessions stops when its owner's budget of hours in
//!   the course is spent ([`hours`]), with a warning [`WARN_AHEAD`] before.
//!
//! Invariants: a VM with a console open is never stopped without a warning
//! first — the guest-idle rule (the only one that can fire then) answers
//! [`Verdict::Warn`] and stops only [`WARN_AHEAD`] after the warning was
//! given; with no rule set nothing is ever stopped; a verdict never depends
//! on anything after `now`.

use time::{Duration, OffsetDateTime};

/// How long before a stop someone connected is warned.
pub const WARN_AHEAD: Duration = Duration::minutes(5);
/// The largest gap between CPU samples the guest-idle rule accepts.
pub const MAX_SAMPLE_GAP: Duration = Duration::minutes(3);

/// A course's idle rule.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IdleRule {
    pub disconnected: Option<Duration>,
    pub never_connected: Option<Duration>,
    /// CPU under this percentage …
    pub cpu_below_percent: Option<f64>,
    /// … for this long.
    pub cpu_for: Option<Duration>,
}

impl IdleRule {
    pub fn is_off(&self) -> bool {
        self.disconnected.is_none()
            && self.never_connected.is_none()
            && (self.cpu_below_percent.is_none() || self.cpu_for.is_none())
    }
}

/// One console session: opened, and ended (`None`: still open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleSpan {
    pub opened: OffsetDateTime,
    pub ended: Option<OffsetDateTime>,
}

/// What is known of a running VM.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// When it last started.
    pub started: Option<OffsetDateTime>,
    pub consoles: Vec<ConsoleSpan>,
    /// CPU samples `(at, percent)`.
    pub cpu: Vec<(OffsetDateTime, f64)>,
}

/// Why a VM is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Disconnected,
    NeverConnected,
    GuestIdle,
    HoursSpent,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Disconnected => "disconnected",
            Reason::NeverConnected => "never_connected",
            Reason::GuestIdle => "guest_idle",
            Reason::HoursSpent => "hours_spent",
        }
    }
}

/// What to do with the VM at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Someone is connected: tell them the VM stops at `stop_at`.
    Warn {
        stop_at: OffsetDateTime,
    },
    Stop(Reason),
}

fn guest_idle(
    rule: &IdleRule,
    facts: &Facts,
    started: OffsetDateTime,
    now: OffsetDateTime,
) -> bool {
    let (Some(below), Some(span)) = (rule.cpu_below_percent, rule.cpu_for) else {
        return false;
    };
    let from = now - span;
    if started > from {
        return false;
    }
    let mut window: Vec<(OffsetDateTime, f64)> = facts
        .cpu
        .iter()
        .copied()
        .filter(|(at, _)| *at >= from && *at <= now)
        .collect();
    if window.is_empty() {
        return false;
    }
    window.sort_by_key(|a| a.0);
    let mut last = from;
    for (at, cpu) in &window {
        // NaN is not under anything: not idle.
        if *at - last > MAX_SAMPLE_GAP || cpu.partial_cmp(&below) != Some(std::cmp::Ordering::Less)
        {
            return false;
        }
        last = *at;
    }
    now - last <= MAX_SAMPLE_GAP
}

/// The verdict for a running VM at `now`; `warned`: when a warning for it
/// was given (and the rule has held since).
/// The hour budget's verdict for a VM running outside sessions whose owner
/// has `left` of their budget at `now`: stop when none is left, warn when
/// the end is nearer than [`WARN_AHEAD`] (the stop instant is known: the
/// budget's end), keep otherwise.
pub fn hours(left: Duration, now: OffsetDateTime) -> Verdict {
    if left <= Duration::ZERO {
        Verdict::Stop(Reason::HoursSpent)
    } else if left <= WARN_AHEAD {
        Verdict::Warn {
            stop_at: now + left,
        }
    } else {
        Verdict::Keep
    }
}

pub fn decide(
    rule: &IdleRule,
    facts: &Facts,
    warned: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Verdict {
    let Some(started) = facts.started.filter(|s| *s <= now) else {
        return Verdict::Keep;
    };
    // Consoles of this run, as known at `now`.
    let consoles: Vec<ConsoleSpan> = facts
        .consoles
        .iter()
        .copied()
        .filter(|c| c.opened <= now && c.ended.is_none_or(|e| e >= started))
        .collect();
    let connected = consoles.iter().any(|c| c.ended.is_none_or(|e| e > now));
    if !connected {
        // Any console overlapping this run was a connection during it.
        let ever = !consoles.is_empty();
        if let Some(m) = rule.never_connected
            && !ever
            && now - started >= m
        {
            return Verdict::Stop(Reason::NeverConnected);
        }
        if let Some(n) = rule.disconnected {
            let since = consoles
                .iter()
                .filter_map(|c| c.ended)
                .fold(started, OffsetDateTime::max);
            if now - since >= n {
                return Verdict::Stop(Reason::Disconnected);
            }
        }
    }
    if guest_idle(rule, facts, started, now) {
        if !connected {
            return Verdict::Stop(Reason::GuestIdle);
        }
        return match warned {
            Some(w) if w <= now && now - w >= WARN_AHEAD => Verdict::Stop(Reason::GuestIdle),
            Some(w) if w <= now => Verdict::Warn {
                stop_at: w + WARN_AHEAD,
            },
            _ => Verdict::Warn {
                stop_at: now + WARN_AHEAD,
            },
        };
    }
    Verdict::Keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn at(min: i64) -> OffsetDateTime {
        datetime!(2026-12-01 08:00 UTC) + Duration::minutes(min)
    }
    fn rule() -> IdleRule {
        IdleRule {
            disconnected: Some(Duration::minutes(20)),
            never_connected: Some(Duration::minutes(10)),
            cpu_below_percent: Some(5.0),
            cpu_for: Some(Duration::minutes(30)),
        }
    }
    fn idle_cpu(from: i64, to: i64, pct: f64) -> Vec<(OffsetDateTime, f64)> {
        (from..=to).map(|m| (at(m), pct)).collect()
    }

    #[test]
    fn never_connected_stops_after_m_minutes() {
        let f = Facts {
            started: Some(at(0)),
            ..Facts::default()
        };
        assert_eq!(decide(&rule(), &f, None, at(9)), Verdict::Keep);
        assert_eq!(
            decide(&rule(), &f, None, at(10)),
            Verdict::Stop(Reason::NeverConnected)
        );
    }

    #[test]
    fn disconnected_counts_from_the_last_console() {
        let f = Facts {
            started: Some(at(0)),
            consoles: vec![ConsoleSpan {
                opened: at(1),
                ended: Some(at(15)),
            }],
            ..Facts::default()
        };
        assert_eq!(decide(&rule(), &f, None, at(34)), Verdict::Keep);
        assert_eq!(
            decide(&rule(), &f, None, at(35)),
            Verdict::Stop(Reason::Disconnected)
        );
        // While connected, neither console rule applies.
        let open = Facts {
            consoles: vec![ConsoleSpan {
                opened: at(1),
                ended: None,
            }],
            ..f
        };
        assert_eq!(decide(&rule(), &open, None, at(500)), Verdict::Keep);
    }

    #[test]
    fn an_idle_guest_with_someone_connected_is_warned_first() {
        let f = Facts {
            started: Some(at(0)),
            consoles: vec![ConsoleSpan {
                opened: at(1),
                ended: None,
            }],
            cpu: idle_cpu(0, 60, 1.0),
        };
        assert_eq!(
            decide(&rule(), &f, None, at(40)),
            Verdict::Warn { stop_at: at(45) }
        );
        assert_eq!(
            decide(&rule(), &f, Some(at(40)), at(42)),
            Verdict::Warn { stop_at: at(45) }
        );
        assert_eq!(
            decide(&rule(), &f, Some(at(40)), at(45)),
            Verdict::Stop(Reason::GuestIdle)
        );
        // Nobody connected: straight to the stop (no one to warn).
        let alone = Facts {
            consoles: vec![],
            ..f
        };
        let only_cpu = IdleRule {
            disconnected: None,
            never_connected: None,
            ..rule()
        };
        assert_eq!(
            decide(&only_cpu, &alone, None, at(40)),
            Verdict::Stop(Reason::GuestIdle)
        );
    }

    #[test]
    fn a_busy_guest_or_missing_samples_are_not_idle() {
        let only_cpu = IdleRule {
            disconnected: None,
            never_connected: None,
            ..rule()
        };
        let mut cpu = idle_cpu(0, 60, 1.0);
        cpu[45].1 = 50.0;
        let busy = Facts {
            started: Some(at(0)),
            consoles: vec![],
            cpu,
        };
        assert_eq!(decide(&only_cpu, &busy, None, at(60)), Verdict::Keep);
        let gap: Vec<_> = idle_cpu(0, 60, 1.0)
            .into_iter()
            .filter(|(t, _)| *t < at(40) || *t > at(44))
            .collect();
        let gappy = Facts {
            cpu: gap,
            ..busy.clone()
        };
        assert_eq!(decide(&only_cpu, &gappy, None, at(60)), Verdict::Keep);
        // Run for less than the window: not yet.
        let young = Facts {
            started: Some(at(40)),
            cpu: idle_cpu(40, 60, 1.0),
            consoles: vec![],
        };
        assert_eq!(decide(&only_cpu, &young, None, at(60)), Verdict::Keep);
    }

    fn facts() -> impl Strategy<Value = Facts> {
        (
            0i64..120,
            prop::collection::vec((0i64..200, prop::option::of(0i64..60)), 0..4),
            prop::collection::vec((0i64..200, 0.0f64..100.0), 0..60),
        )
            .prop_map(|(start, consoles, cpu)| Facts {
                started: Some(at(start)),
                consoles: consoles
                    .into_iter()
                    .map(|(o, len)| ConsoleSpan {
                        opened: at(o),
                        ended: len.map(|l| at(o + l)),
                    })
                    .collect(),
                cpu: cpu.into_iter().map(|(m, p)| (at(m), p)).collect(),
            })
    }

    proptest! {
        #[test]
        fn someone_connected_is_never_stopped_unwarned(f in facts(), now in 0i64..240) {
            let now = at(now);
            let connected = f
                .consoles
                .iter()
                .any(|c| c.opened <= now && c.ended.is_none_or(|e| e > now));
            if connected {
                prop_assert!(!matches!(decide(&rule(), &f, None, now), Verdict::Stop(_)));
            }
        }

        #[test]
        fn no_rule_never_stops(f in facts(), now in 0i64..240) {
            prop_assert_eq!(decide(&IdleRule::default(), &f, None, at(now)), Verdict::Keep);
        }

        #[test]
        fn the_future_does_not_count(f in facts(), now in 0i64..240) {
            // Removing everything after `now` changes nothing.
            let now = at(now);
            let past = Facts {
                started: f.started,
                consoles: f
                    .consoles
                    .iter()
                    .filter(|c| c.opened <= now)
                    .map(|c| ConsoleSpan { opened: c.opened, ended: c.ended.filter(|e| *e <= now) })
                    .collect(),
                cpu: f.cpu.iter().copied().filter(|(t, _)| *t <= now).collect(),
            };
            prop_assert_eq!(decide(&rule(), &f, None, now), decide(&rule(), &past, None, now));
        }

        #[test]
        fn a_warning_comes_warn_ahead_before_the_stop(f in facts(), now in 0i64..240) {
            let now = at(now);
            if let Verdict::Warn { stop_at } = decide(&rule(), &f, None, now) {
                prop_assert_eq!(stop_at, now + WARN_AHEAD);
            }
        }
    }

    #[test]
    fn hours_stop_when_spent_and_warn_before() {
        let now = time::macros::datetime!(2026-12-01 10:00 UTC);
        assert_eq!(hours(Duration::minutes(30), now), Verdict::Keep);
        assert_eq!(
            hours(Duration::minutes(5), now),
            Verdict::Warn {
                stop_at: now + Duration::minutes(5)
            }
        );
        assert_eq!(
            hours(Duration::seconds(1), now),
            Verdict::Warn {
                stop_at: now + Duration::seconds(1)
            }
        );
        assert_eq!(
            hours(Duration::ZERO, now),
            Verdict::Stop(Reason::HoursSpent)
        );
        assert_eq!(
            hours(Duration::minutes(-90), now),
            Verdict::Stop(Reason::HoursSpent)
        );
    }
}
