//! The life of one alert, identified by (rule, subject): a pure state machine.
//!
//! ```text
//!            level seen for hold_secs           acknowledge
//! Inactive ───────────────────────────▶ Firing ─────────────▶ Acknowledged
//!    ▲   (Pending while waiting)          │  ▲                     │
//!    │                                    │  └── escalated ────────┘
//!    └──── clear for clear_secs (Resolved) ◀────────────────────────┘
//! ```
//!
//! [`step`] takes the state, one [`Input`] (an observed level, `None` when
//! the rule is not tripped, or an acknowledgement) and the time, and returns
//! the next state and the [`Transition`]s to write to the event log and to
//! notify. The caller keeps one [`AlertState`] per (rule, subject) — that is
//! the deduplication: a condition that stays true is one alert, however many
//! observations confirm it.
//!
//! Flapping is suppressed in three layers: hysteresis in the rule's
//! threshold (see [`super::rules::Threshold`]), a hold time before firing
//! and a clear time before resolving or de-escalating, and a budget of state
//! changes: fired and resolved each count one, and a resolve that would make
//! `flap_max_changes` changes within `flap_window_secs` is not made — the
//! alert stays open, marked flapping ([`Transition::FlappingStarted`]), and
//! resolves only once the rule has been clear for a whole `flap_window_secs`.
//! So in any window of `flap_window_secs` ending with a resolve there are
//! fewer than `flap_max_changes` changes (a property test checks it).
//!
//! Escalation is immediate (a critical must not wait) and re-opens an
//! acknowledged alert: the person who acknowledged a warning has not seen the
//! critical. Time going backwards (a clock step) counts as no time passing.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::Level;

/// Timing of the lifecycle; part of each rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A level must be observed this long before the alert fires.
    pub hold_secs: i64,
    /// The rule must be clear (or lower) this long before the alert resolves
    /// (or de-escalates).
    pub clear_secs: i64,
    pub flap_window_secs: i64,
    /// At least 2.
    pub flap_max_changes: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            hold_secs: 300,
            clear_secs: 300,
            flap_window_secs: 3600,
            flap_max_changes: 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Inactive,
    /// Tripped, waiting out the hold time; nobody is told yet.
    Pending,
    Firing,
    Acknowledged,
}

/// Everything [`step`] needs to remember about one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub status: Status,
    /// The level shown (Pending: the highest seen while waiting).
    pub level: Option<Level>,
    /// When the current status began.
    pub since: i64,
    /// Since when the observations have been below `level`, and the highest
    /// level seen in that time (`None`: clear throughout).
    pub lower: Option<(i64, Option<Level>)>,
    pub flapping: bool,
    /// Times of recent fired/resolved changes (pruned to the flap window).
    pub changes: VecDeque<i64>,
    /// Time of the last input, so a clock step back is harmless.
    pub last: i64,
}

impl AlertState {
    pub fn new(now: i64) -> Self {
        AlertState {
            status: Status::Inactive,
            level: None,
            since: now,
            lower: None,
            flapping: false,
            changes: VecDeque::new(),
            last: now,
        }
    }

    /// Open means people have been told and it is not over.
    pub fn is_open(&self) -> bool {
        matches!(self.status, Status::Firing | Status::Acknowledged)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Input {
    /// The rule's level now (`None`: not tripped).
    Observed {
        level: Option<Level>,
    },
    Acknowledge {
        by: String,
    },
}

/// What happened, for the event log and notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transition {
    Fired { level: Level },
    Escalated { from: Level, to: Level },
    Deescalated { from: Level, to: Level },
    Acknowledged { by: String },
    FlappingStarted,
    Resolved,
}

/// One step of the alert's life. See the module doc for the rules.
pub fn step(
    mut s: AlertState,
    input: Input,
    now: i64,
    p: &Policy,
) -> (AlertState, Vec<Transition>) {
    let now = now.max(s.last);
    s.last = now;
    while s
        .changes
        .front()
        .is_some_and(|&t| t <= now - p.flap_window_secs)
    {
        s.changes.pop_front();
    }
    let mut out = Vec::new();
    let observed = match input {
        Input::Acknowledge { by } => {
            if s.status == Status::Firing {
                s.status = Status::Acknowledged;
                out.push(Transition::Acknowledged { by });
            }
            return (s, out);
        }
        Input::Observed { level } => level,
    };
    match s.status {
        Status::Inactive => {
            if let Some(l) = observed {
                s.status = Status::Pending;
                s.level = Some(l);
                s.since = now;
                fire_if_held(&mut s, now, p, &mut out);
            }
        }
        Status::Pending => match observed {
            None => {
                s.status = Status::Inactive;
                s.level = None;
                s.since = now;
            }
            Some(l) => {
                s.level = s.level.max(Some(l));
                fire_if_held(&mut s, now, p, &mut out);
            }
        },
        Status::Firing | Status::Acknowledged => {
            let current = s.level.unwrap_or(Level::Info);
            match observed {
                Some(l) if l > current => {
                    s.level = Some(l);
                    s.lower = None;
                    s.status = Status::Firing;
                    out.push(Transition::Escalated {
                        from: current,
                        to: l,
                    });
                }
                Some(l) if l == current => s.lower = None,
                lower => {
                    let (from, highest) = match s.lower {
                        Some((t, h)) => (t, h.max(lower)),
                        None => (now, lower),
                    };
                    s.lower = Some((from, highest));
                    let wait = if s.flapping && highest.is_none() {
                        p.flap_window_secs.max(p.clear_secs)
                    } else {
                        p.clear_secs
                    };
                    if now - from >= wait {
                        settle(&mut s, highest, lower, current, now, p, &mut out);
                    }
                }
            }
        }
    }
    (s, out)
}

fn fire_if_held(s: &mut AlertState, now: i64, p: &Policy, out: &mut Vec<Transition>) {
    if now - s.since >= p.hold_secs {
        let level = s.level.unwrap_or(Level::Info);
        s.status = Status::Firing;
        s.since = now;
        s.lower = None;
        s.changes.push_back(now);
        out.push(Transition::Fired { level });
    }
}

/// The observations have stayed below `current` long enough: de-escalate to
/// `highest`, or resolve when it was clear — unless that resolve would exceed
/// the flap budget. `observed` is this step's observation.
fn settle(
    s: &mut AlertState,
    highest: Option<Level>,
    observed: Option<Level>,
    current: Level,
    now: i64,
    p: &Policy,
    out: &mut Vec<Transition>,
) {
    s.lower = None;
    match highest {
        Some(l) => {
            s.level = Some(l);
            out.push(Transition::Deescalated {
                from: current,
                to: l,
            });
            // This observation may already be below the new level: the next
            // lower period starts now.
            if observed < Some(l) {
                s.lower = Some((now, observed));
            }
        }
        None if s.changes.len() + 1 >= p.flap_max_changes as usize => {
            if !s.flapping {
                s.flapping = true;
                out.push(Transition::FlappingStarted);
            }
            // Keep waiting from now: the window must see no trip at all.
            s.lower = Some((now, None));
        }
        None => {
            s.status = Status::Inactive;
            s.level = None;
            s.since = now;
            s.flapping = false;
            s.changes.push_back(now);
            out.push(Transition::Resolved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn obs(l: Option<Level>) -> Input {
        Input::Observed { level: l }
    }
    const W: Option<Level> = Some(Level::Warning);
    const C: Option<Level> = Some(Level::Critical);

    /// Feeds `inputs` at the given times; returns the final state and every
    /// transition with its time.
    fn run(inputs: &[(i64, Input)], p: &Policy) -> (AlertState, Vec<(i64, Transition)>) {
        let mut s = AlertState::new(0);
        let mut log = Vec::new();
        for (t, i) in inputs {
            let (n, tr) = step(s, i.clone(), *t, p);
            s = n;
            log.extend(tr.into_iter().map(|x| (*t, x)));
        }
        (s, log)
    }

    #[test]
    fn fires_after_the_hold_and_resolves_after_the_clear_time() {
        let p = Policy::default();
        let (s, log) = run(&[(0, obs(W)), (200, obs(W))], &p);
        assert_eq!((s.status, log.len()), (Status::Pending, 0));
        let (s, log) = run(
            &[
                (0, obs(W)),
                (300, obs(W)),
                (360, obs(W)),
                (400, obs(None)),
                (650, obs(None)),
            ],
            &p,
        );
        assert_eq!(
            log,
            vec![(
                300,
                Transition::Fired {
                    level: Level::Warning
                }
            )]
        );
        assert_eq!(s.status, Status::Firing, "clear for 250 s only");
        let (s, log) = run(
            &[
                (0, obs(W)),
                (300, obs(W)),
                (400, obs(None)),
                (700, obs(None)),
            ],
            &p,
        );
        assert_eq!(log[1], (700, Transition::Resolved));
        assert_eq!(s.status, Status::Inactive);
    }

    #[test]
    fn a_blip_shorter_than_the_hold_never_fires() {
        let (s, log) = run(
            &[(0, obs(C)), (100, obs(None)), (400, obs(C))],
            &Policy::default(),
        );
        assert!(log.is_empty());
        assert_eq!((s.status, s.since), (Status::Pending, 400));
    }

    #[test]
    fn acknowledge_escalate_deescalate() {
        let p = Policy {
            hold_secs: 0,
            ..Policy::default()
        };
        let (s, log) = run(
            &[
                (0, obs(W)),
                (10, Input::Acknowledge { by: "ops".into() }),
                (20, obs(W)),
                (30, obs(C)),
                (40, obs(W)),
                (400, obs(W)),
            ],
            &p,
        );
        assert_eq!(
            log,
            vec![
                (
                    0,
                    Transition::Fired {
                        level: Level::Warning
                    }
                ),
                (10, Transition::Acknowledged { by: "ops".into() }),
                (
                    30,
                    Transition::Escalated {
                        from: Level::Warning,
                        to: Level::Critical
                    }
                ),
                (
                    400,
                    Transition::Deescalated {
                        from: Level::Critical,
                        to: Level::Warning
                    }
                ),
            ]
        );
        assert_eq!(
            (s.status, s.level),
            (Status::Firing, W),
            "escalation re-opened it"
        );
        // Acknowledging what is not firing does nothing.
        let (_, log) = run(&[(0, Input::Acknowledge { by: "x".into() })], &p);
        assert!(log.is_empty());
    }

    #[test]
    fn flapping_keeps_one_alert_open() {
        let p = Policy {
            hold_secs: 0,
            clear_secs: 0,
            flap_window_secs: 1000,
            flap_max_changes: 4,
        };
        let mut inputs = Vec::new();
        for k in 0..10 {
            inputs.push((k * 20, obs(W)));
            inputs.push((k * 20 + 10, obs(None)));
        }
        let (s, log) = run(&inputs, &p);
        let kinds: Vec<&Transition> = log.iter().map(|(_, t)| t).collect();
        assert_eq!(
            kinds,
            vec![
                &Transition::Fired {
                    level: Level::Warning
                },
                &Transition::Resolved,
                &Transition::Fired {
                    level: Level::Warning
                },
                &Transition::FlappingStarted,
            ]
        );
        assert!(s.flapping && s.is_open());
        // Quiet for a whole window: resolved.
        let (s, tr) = step(s, obs(None), 190 + 1000, &p);
        assert_eq!(tr, vec![Transition::Resolved]);
        assert!(!s.flapping && !s.is_open());
    }

    #[test]
    fn time_going_backwards_is_no_time() {
        let p = Policy::default();
        let (s, log) = run(&[(1000, obs(W)), (0, obs(W)), (1200, obs(W))], &p);
        assert!(log.is_empty());
        assert_eq!(s.status, Status::Pending);
    }

    fn arb_input() -> impl Strategy<Value = Input> {
        prop_oneof![
            4 => proptest::option::of(prop_oneof![Just(Level::Info), Just(Level::Warning), Just(Level::Critical)])
                .prop_map(|level| Input::Observed { level }),
            1 => Just(Input::Acknowledge { by: "a".into() }),
        ]
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        (0i64..200, 0i64..200, 1i64..2000, 2u32..8).prop_map(|(h, c, w, m)| Policy {
            hold_secs: h,
            clear_secs: c,
            flap_window_secs: w,
            flap_max_changes: m,
        })
    }

    proptest! {
        /// Whatever the inputs: fired and resolved alternate, starting with
        /// fired (deduplication), nothing but Fired opens an alert, and
        /// escalations only go up.
        #[test]
        fn transitions_are_well_formed(
            p in arb_policy(),
            inputs in proptest::collection::vec((0i64..100, arb_input()), 0..200),
        ) {
            let mut t = 0;
            let timed: Vec<(i64, Input)> = inputs.into_iter().map(|(d, i)| { t += d; (t, i) }).collect();
            let (s, log) = run(&timed, &p);
            let mut open = false;
            for (_, tr) in &log {
                match tr {
                    Transition::Fired { .. } => { prop_assert!(!open); open = true; }
                    Transition::Resolved => { prop_assert!(open); open = false; }
                    Transition::Escalated { from, to } | Transition::Deescalated { to: from, from: to } => {
                        prop_assert!(open); prop_assert!(from < to);
                    }
                    Transition::Acknowledged { .. } | Transition::FlappingStarted => prop_assert!(open),
                }
            }
            prop_assert_eq!(open, s.is_open());
        }

        /// The flap budget: a resolve never completes `flap_max_changes`
        /// fired/resolved changes within one window.
        #[test]
        fn resolves_respect_the_flap_budget(
            p in arb_policy(),
            inputs in proptest::collection::vec((0i64..100, arb_input()), 0..300),
        ) {
            let mut t = 0;
            let timed: Vec<(i64, Input)> = inputs.into_iter().map(|(d, i)| { t += d; (t, i) }).collect();
            let (_, log) = run(&timed, &p);
            let changes: Vec<i64> = log.iter()
                .filter(|(_, tr)| matches!(tr, Transition::Fired { .. } | Transition::Resolved))
                .map(|(t, _)| *t).collect();
            let mut seen = 0;
            for (t, tr) in &log {
                if matches!(tr, Transition::Fired { .. } | Transition::Resolved) {
                    seen += 1;
                }
                if *tr == Transition::Resolved {
                    // Changes up to and including this one (later ones may share its time).
                    let n = changes[..seen].iter().filter(|&&c| c > t - p.flap_window_secs).count();
                    prop_assert!(n < p.flap_max_changes as usize, "{n} changes by {t}");
                }
            }
        }

        /// Liveness: once the rule stays clear long enough, the alert is over.
        #[test]
        fn clear_long_enough_resolves(
            p in arb_policy(),
            inputs in proptest::collection::vec((0i64..100, arb_input()), 0..100),
        ) {
            let mut t = 0;
            let mut timed: Vec<(i64, Input)> = inputs.into_iter().map(|(d, i)| { t += d; (t, i) }).collect();
            let quiet = p.flap_window_secs.max(p.clear_secs);
            // At most: a de-escalation, flapping, then the resolve.
            for k in 1..=4 {
                timed.push((t + k * (quiet + 1), obs(None)));
            }
            let (s, _) = run(&timed, &p);
            prop_assert_eq!(s.status, Status::Inactive);
        }
    }
}
