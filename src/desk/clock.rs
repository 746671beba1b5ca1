//! A ticket's SLA clock history, read from its timeline (pure).
//!
//! The SLA engine ([`super::sla`]) replays [`ClockEvent`]s; the desk keeps
//! no separate clock log: every state change is already a `ticket_events`
//! row whose data names `from` and `to`, and the first response is the
//! ticket's `responded_at`. [`history`] turns those into the engine's
//! events, so pauses (waiting for the reporter) and reopens are counted from
//! the same rows the timeline shows.
//!
//! Mapping of a state change `from → to`:
//! - `→ waiting`: both clocks pause ([`ClockEventKind::WaitingForReporter`]);
//! - `waiting →` an open state: they run again ([`ClockEventKind::Resumed`]);
//! - `→ resolved`: [`ClockEventKind::Resolved`]; `→ closed` from an open
//!   state: [`ClockEventKind::Closed`] (a close after a resolve changes
//!   nothing: the clocks already stopped);
//! - `resolved →` an open state: [`ClockEventKind::Reopened`].
//!
//! A state change event without a readable `from`/`to` or time is skipped;
//! the engine ignores events that make no sense in the state reached.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::sla::{ClockEvent, ClockEventKind as K};
use super::tickets::State;

/// One state change of the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub at: OffsetDateTime,
    pub from: State,
    pub to: State,
}

impl Transition {
    /// From a timeline row's time and data (`{"from": .., "to": ..}`);
    /// `None` for rows that are not a state change.
    pub fn from_row(at: &str, data: Option<&serde_json::Value>) -> Option<Self> {
        let d = data?;
        let from = State::parse(d.get("from")?.as_str()?)?;
        let to = State::parse(d.get("to")?.as_str()?)?;
        let at = OffsetDateTime::parse(at, &Rfc3339).ok()?;
        (from != to).then_some(Self { at, from, to })
    }
}

/// The clock events of a ticket opened at `opened`, first answered at
/// `responded` (if yet), with these state changes (any order).
pub fn history(
    opened: OffsetDateTime,
    responded: Option<OffsetDateTime>,
    transitions: &[Transition],
) -> Vec<ClockEvent> {
    let mut out = vec![ClockEvent::new(opened, K::Opened)];
    if let Some(r) = responded {
        out.push(ClockEvent::new(r, K::Responded));
    }
    let mut ts = transitions.to_vec();
    ts.sort_by_key(|t| t.at);
    for t in ts {
        let kind = match (t.from, t.to) {
            (_, State::Waiting) => Some(K::WaitingForReporter),
            (_, State::Resolved) => Some(K::Resolved),
            (State::Resolved, State::Closed) => None,
            (_, State::Closed) => Some(K::Closed),
            (State::Waiting, _) => Some(K::Resumed),
            (State::Resolved, _) => Some(K::Reopened),
            _ => None,
        };
        if let Some(k) = kind {
            out.push(ClockEvent::new(t.at, k));
        }
    }
    // Stable: the response recorded at the instant of a resolve comes first.
    out.sort_by_key(|e| e.at);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::desk::calendar::Calendar;
    use crate::desk::sla::{self, ClockState, Policy, Priority};
    use serde_json::json;
    use time::Duration;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-30 09:00 UTC);

    fn tr(min: i64, from: State, to: State) -> Transition {
        Transition {
            at: T0 + Duration::minutes(min),
            from,
            to,
        }
    }

    fn kinds(h: &[ClockEvent]) -> Vec<K> {
        h.iter().map(|e| e.kind).collect()
    }

    /// The clocks of a P3 ticket on a 7×24 policy at `now`.
    fn around_the_clock(h: &[ClockEvent], now: OffsetDateTime) -> sla::Evaluation {
        let mut p = Policy::default();
        p.p3.around_the_clock = true;
        sla::evaluate(h, Priority::P3, &p, &Calendar::default(), now)
    }

    #[test]
    fn a_plain_ticket_opens_responds_and_resolves() {
        use State::*;
        let h = history(
            T0,
            Some(T0 + Duration::minutes(5)),
            &[
                tr(5, New, Assigned),
                tr(6, Assigned, InProgress),
                tr(30, InProgress, Resolved),
                tr(40, Resolved, Closed),
            ],
        );
        assert_eq!(kinds(&h), vec![K::Opened, K::Responded, K::Resolved]);
        assert_eq!(h[2].at, T0 + Duration::minutes(30));
    }

    #[test]
    fn waiting_pauses_and_the_reply_resumes() {
        use State::*;
        let h = history(
            T0,
            Some(T0 + Duration::minutes(1)),
            &[
                tr(20, Waiting, InProgress),
                tr(10, InProgress, Waiting),
                tr(1, New, Assigned),
            ],
        );
        assert_eq!(
            kinds(&h),
            vec![K::Opened, K::Responded, K::WaitingForReporter, K::Resumed]
        );
        // 7×24: 60 min elapsed less the 10 paused.
        let ev = around_the_clock(&h, T0 + Duration::hours(1));
        assert_eq!(ev.resolution.elapsed, Duration::minutes(50));
        let paused = around_the_clock(&h, T0 + Duration::minutes(15));
        assert_eq!(paused.resolution.state, ClockState::Paused);
        assert_eq!(paused.resolution.elapsed, Duration::minutes(10));
    }

    #[test]
    fn a_reopen_restarts_the_resolution_clock_without_the_resolved_time() {
        use State::*;
        let h = history(
            T0,
            Some(T0),
            &[
                tr(0, New, Assigned),
                tr(30, Assigned, Resolved),
                tr(90, Resolved, Assigned),
            ],
        );
        assert_eq!(
            kinds(&h),
            vec![K::Opened, K::Responded, K::Resolved, K::Reopened]
        );
        let ev = around_the_clock(&h, T0 + Duration::minutes(100));
        assert_eq!(ev.resolution.state, ClockState::Running);
        assert_eq!(ev.resolution.elapsed, Duration::minutes(40));
    }

    #[test]
    fn a_close_without_resolve_stops_the_clocks() {
        use State::*;
        let h = history(T0, None, &[tr(3, New, Closed)]);
        assert_eq!(kinds(&h), vec![K::Opened, K::Closed]);
    }

    use proptest::prelude::*;

    fn arb_action() -> impl Strategy<Value = crate::desk::tickets::Action> {
        use crate::desk::tickets::Action as A;
        prop::sample::select(vec![
            A::Assign,
            A::StartWork,
            A::WaitForReporter,
            A::ReporterReplied,
            A::Resolve,
            A::Confirm,
            A::Reopen,
        ])
    }

    proptest! {
        /// Any life the state machine allows: the history starts with the
        /// opening, is in time order, and (7×24) the clocks never count more
        /// than the wall time since the ticket was opened, nor the
        /// resolution clock more than the time it spent open and not waiting.
        #[test]
        fn histories_of_real_lives_are_ordered_and_bounded(
            steps in prop::collection::vec((arb_action(), 1i64..600), 0..25),
            later in 0i64..10_000,
        ) {
            let mut state = State::New;
            let mut assigned = false;
            let mut at = T0;
            let mut responded = None;
            let mut ts = Vec::new();
            let mut open_not_waiting = Duration::ZERO;
            for (action, gap) in steps {
                let next_at = at + Duration::minutes(gap);
                if state.is_open() && state != State::Waiting {
                    open_not_waiting += next_at - at;
                }
                at = next_at;
                let Ok(to) = crate::desk::tickets::next_state(state, action, assigned) else {
                    continue;
                };
                if action == crate::desk::tickets::Action::Assign {
                    assigned = true;
                    responded.get_or_insert(at);
                }
                if to != state {
                    ts.push(Transition { at, from: state, to });
                    state = to;
                }
            }
            let now = at + Duration::minutes(later);
            if state.is_open() && state != State::Waiting {
                open_not_waiting += now - at;
            }
            let h = history(T0, responded, &ts);
            prop_assert_eq!(h[0].kind, K::Opened);
            prop_assert!(h.windows(2).all(|w| w[0].at <= w[1].at));
            let ev = around_the_clock(&h, now);
            prop_assert!(ev.response.elapsed <= now - T0);
            prop_assert_eq!(ev.resolution.elapsed, open_not_waiting);
        }
    }

    #[test]
    fn rows_that_are_not_state_changes_are_skipped() {
        let at = "2026-11-30T09:00:00Z";
        assert!(Transition::from_row(at, None).is_none());
        assert!(Transition::from_row(at, Some(&json!({"rating": 5}))).is_none());
        assert!(Transition::from_row(at, Some(&json!({"from": "new", "to": "new"}))).is_none());
        assert!(
            Transition::from_row("yesterday", Some(&json!({"from": "new", "to": "assigned"})))
                .is_none()
        );
        let t = Transition::from_row(at, Some(&json!({"from": "waiting", "to": "in_progress"})))
            .unwrap();
        assert_eq!(
            (t.from, t.to, t.at),
            (State::Waiting, State::InProgress, T0)
        );
    }
}
