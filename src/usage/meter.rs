//! Usage metering, pure: how long VMs ran per local day, inside and outside
//! the course's sessions. Functions of (power history, sessions, lab offset,
//! window) — no clock, no database — pinned down by unit and property tests.
//!
//! Invariants ([`meter`]): the running spans are merged before anything is
//! counted, and so are the sessions, so a second counted twice is
//! impossible (overlapping or repeated spans count once); every second of a
//! day's total is either inside a session or outside (`in + out = total`);
//! a day's total is at most the day's length; nothing outside the window
//! `[from, to)` counts. Seconds are exact; minutes are for showing.

use std::collections::BTreeMap;

use serde::Serialize;
use time::{Date, Duration, OffsetDateTime, Time, UtcOffset};

/// A half-open span of time `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

impl Span {
    pub fn new(start: OffsetDateTime, end: OffsetDateTime) -> Self {
        Self { start, end }
    }
    fn secs(&self) -> i64 {
        (self.end - self.start).whole_seconds().max(0)
    }
}

/// The seconds a VM ran on one local date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct DaySecs {
    pub in_session: i64,
    pub outside: i64,
}

impl DaySecs {
    pub fn total(&self) -> i64 {
        self.in_session + self.outside
    }
}

/// The spans a VM was on, from its power changes `(at, on)` (oldest first);
/// a VM still on is on until `now`. Repeated values are ignored (the first
/// of them counts), so is a change dated before the one it follows.
pub fn on_spans(changes: &[(OffsetDateTime, bool)], now: OffsetDateTime) -> Vec<Span> {
    let mut out = Vec::new();
    let mut since: Option<OffsetDateTime> = None;
    for &(at, on) in changes {
        match (since, on) {
            (None, true) => since = Some(at),
            (Some(s), false) => {
                if at > s {
                    out.push(Span::new(s, at));
                }
                since = None;
            }
            _ => {}
        }
    }
    if let Some(s) = since
        && now > s
    {
        out.push(Span::new(s, now));
    }
    out
}

/// Sorted, non-overlapping, non-empty spans covering exactly the union of
/// `spans` clipped to `window`.
pub fn merge(spans: &[Span], window: Span) -> Vec<Span> {
    let mut clipped: Vec<Span> = spans
        .iter()
        .map(|s| Span::new(s.start.max(window.start), s.end.min(window.end)))
        .filter(|s| s.end > s.start)
        .collect();
    clipped.sort();
    let mut out: Vec<Span> = Vec::with_capacity(clipped.len());
    for s in clipped {
        match out.last_mut() {
            Some(last) if s.start <= last.end => last.end = last.end.max(s.end),
            _ => out.push(s),
        }
    }
    out
}

/// Seconds of `span` covered by the merged (sorted, disjoint) `cover`.
fn covered(span: Span, cover: &[Span]) -> i64 {
    // The first cover span that may reach into `span`.
    let first = cover.partition_point(|c| c.end <= span.start);
    cover[first..]
        .iter()
        .take_while(|c| c.start < span.end)
        .map(|c| Span::new(c.start.max(span.start), c.end.min(span.end)).secs())
        .sum()
}

/// The local midnight (lab offset) that ends the local date of `t`.
fn next_midnight(t: OffsetDateTime, lab: UtcOffset) -> OffsetDateTime {
    let local = t.to_offset(lab);
    let next = local
        .date()
        .next_day()
        .unwrap_or(local.date())
        .with_time(Time::MIDNIGHT)
        .assume_offset(lab);
    if next > t {
        next
    } else {
        t + Duration::days(1)
    }
}

/// Seconds per local date that the `running` spans cover within `window`,
/// split by whether a `sessions` span covers them.
pub fn meter(
    running: &[Span],
    sessions: &[Span],
    lab: UtcOffset,
    window: Span,
) -> BTreeMap<Date, DaySecs> {
    let running = merge(running, window);
    let sessions = merge(sessions, window);
    let mut days: BTreeMap<Date, DaySecs> = BTreeMap::new();
    for span in running {
        let mut start = span.start;
        while start < span.end {
            let end = next_midnight(start, lab).min(span.end);
            let piece = Span::new(start, end);
            let inside = covered(piece, &sessions);
            let day = days.entry(start.to_offset(lab).date()).or_default();
            day.in_session += inside;
            day.outside += piece.secs() - inside;
            start = end;
        }
    }
    days
}

/// Seconds outside sessions in total (the hour budget counts these).
pub fn outside_secs(running: &[Span], sessions: &[Span], window: Span) -> i64 {
    let running = merge(running, window);
    let sessions = merge(sessions, window);
    running
        .iter()
        .map(|s| s.secs() - covered(*s, &sessions))
        .sum()
}

/// Seconds the `running` spans (one user's VMs of a course) cover from the
/// first of them until `now`: (in sessions, outside). Sessions outside that
/// window change nothing, so the course's sessions read once for all its
/// users give each of them what sessions read for their own window give.
pub fn owner_secs(running: &[Span], sessions: &[Span], now: OffsetDateTime) -> (i64, i64) {
    let Some(first) = running.iter().map(|s| s.start).min() else {
        return (0, 0);
    };
    let window = Span::new(first, now);
    let total: i64 = merge(running, window).iter().map(Span::secs).sum();
    let outside = outside_secs(running, sessions, window);
    (total - outside, outside)
}

/// Whole minutes of `secs`, rounded to the nearest (for showing).
pub fn minutes(secs: i64) -> i64 {
    (secs + 30).div_euclid(60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::{datetime, offset};

    const LAB: UtcOffset = offset!(+8);

    fn at(mins: i64) -> OffsetDateTime {
        datetime!(2026-09-07 00:00 +8) + Duration::minutes(mins)
    }
    fn span(a: i64, b: i64) -> Span {
        Span::new(at(a), at(b))
    }
    fn window() -> Span {
        span(0, 3 * 24 * 60)
    }

    #[test]
    fn a_session_splits_the_running_time() {
        // On 08:00–10:30, session 08:00–09:40: 100 min in, 50 out.
        let days = meter(&[span(480, 630)], &[span(480, 580)], LAB, window());
        let d = days[&datetime!(2026-09-07 0:00 +8).date()];
        assert_eq!(d.in_session, 100 * 60);
        assert_eq!(d.outside, 50 * 60);
        assert_eq!(days.len(), 1);
    }

    #[test]
    fn midnight_of_the_lab_splits_days() {
        // 23:00 to 01:00 local: an hour on each date, though UTC has no midnight there.
        let days = meter(&[span(23 * 60, 25 * 60)], &[], LAB, window());
        let secs: Vec<i64> = days.values().map(DaySecs::total).collect();
        assert_eq!(secs, vec![3600, 3600]);
    }

    #[test]
    fn still_on_counts_until_now_and_repeats_are_ignored() {
        let changes = [
            (at(10), true),
            (at(12), true),
            (at(20), false),
            (at(30), true),
        ];
        assert_eq!(on_spans(&changes, at(35)), vec![span(10, 20), span(30, 35)]);
        assert_eq!(on_spans(&[(at(5), false)], at(35)), vec![]);
    }

    #[test]
    fn nothing_outside_the_window_counts() {
        let days = meter(&[span(-60, 60)], &[], LAB, span(0, 30));
        assert_eq!(days.values().map(DaySecs::total).sum::<i64>(), 30 * 60);
    }

    #[test]
    fn minutes_round_to_the_nearest() {
        assert_eq!(minutes(29), 0);
        assert_eq!(minutes(30), 1);
        assert_eq!(minutes(3600), 60);
    }

    fn spans() -> impl Strategy<Value = Vec<Span>> {
        prop::collection::vec((-100i64..4400, 0i64..900), 0..8)
            .prop_map(|v| v.into_iter().map(|(a, len)| span(a, a + len)).collect())
    }

    /// Measure of the union of spans within the window, minute by minute
    /// (the spans are whole minutes): the reference the fast code must match.
    fn reference(running: &[Span], sessions: &[Span], w: Span) -> (i64, i64) {
        let covers = |v: &[Span], t: OffsetDateTime| v.iter().any(|s| s.start <= t && t < s.end);
        let (mut inside, mut outside) = (0, 0);
        let mut t = w.start;
        while t < w.end {
            if covers(running, t) {
                if covers(sessions, t) {
                    inside += 60;
                } else {
                    outside += 60;
                }
            }
            t += Duration::minutes(1);
        }
        (inside, outside)
    }

    /// The spans as a power history says them (on at each start, off at
    /// each end, in order) and [`on_spans`] reads them back until `now`.
    fn on_spans_of(spans: &[Span], now: OffsetDateTime) -> Vec<Span> {
        let mut sorted = spans.to_vec();
        sorted.sort();
        let changes: Vec<(OffsetDateTime, bool)> = sorted
            .iter()
            .flat_map(|s| [(s.start, true), (s.end, false)])
            .collect();
        on_spans(&changes, now)
    }

    proptest! {
        #[test]
        fn in_plus_out_is_total_and_no_minute_counts_twice(run in spans(), ses in spans()) {
            let w = window();
            let days = meter(&run, &ses, LAB, w);
            let inside: i64 = days.values().map(|d| d.in_session).sum();
            let outside: i64 = days.values().map(|d| d.outside).sum();
            prop_assert_eq!((inside, outside), reference(&run, &ses, w));
            prop_assert_eq!(outside, outside_secs(&run, &ses, w));
            for d in days.values() {
                prop_assert!(d.in_session >= 0 && d.outside >= 0);
                prop_assert!(d.total() <= 24 * 3600);
            }
        }

        #[test]
        fn sessions_read_once_per_course_give_each_user_the_same(
            owners in prop::collection::vec(spans(), 1..4), ses in spans(), now in 0i64..4400,
        ) {
            let now = at(now);
            // Each owner's running spans, and the course's window from the
            // first start of anyone's (as Usage::course_hours reads them).
            let running: Vec<Vec<Span>> = owners.iter().map(|o| on_spans_of(o, now)).collect();
            let course_window = running
                .iter()
                .flatten()
                .map(|s| s.start)
                .min()
                .map(|f| Span::new(f, now));
            // Sessions overlapping the course's window (what is read once)
            // vs those overlapping the owner's own window (what was read
            // per owner before).
            let overlapping = |w: Span| -> Vec<Span> {
                ses.iter().copied().filter(|s| s.end > w.start && s.start < w.end).collect()
            };
            let course_sessions = course_window.map(overlapping).unwrap_or_default();
            for running in &running {
                let mine = running
                    .iter()
                    .map(|s| s.start)
                    .min()
                    .map(|f| overlapping(Span::new(f, now)))
                    .unwrap_or_default();
                prop_assert_eq!(
                    owner_secs(running, &course_sessions, now),
                    owner_secs(running, &mine, now)
                );
                let (inside, outside) = owner_secs(running, &course_sessions, now);
                prop_assert!(inside >= 0 && outside >= 0);
            }
        }

        #[test]
        fn repeating_or_splitting_spans_changes_nothing(run in spans(), ses in spans(), cut in 0i64..900) {
            let w = window();
            let once = meter(&run, &ses, LAB, w);
            let mut twice = run.clone();
            twice.extend(run.iter().copied());
            prop_assert_eq!(&meter(&twice, &ses, LAB, w), &once);
            let split: Vec<Span> = run
                .iter()
                .flat_map(|s| {
                    let mid = (s.start + Duration::minutes(cut)).min(s.end);
                    [Span::new(s.start, mid), Span::new(mid, s.end)]
                })
                .collect();
            prop_assert_eq!(&meter(&split, &ses, LAB, w), &once);
        }
    }
}
