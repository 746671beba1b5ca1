//! When the daily inspection runs: pure functions of the instant, the last
//! run and the configured time of day (UTC), so the loop and the tests ask
//! the same question with their own clocks.

/// Seconds in a day.
const DAY: i64 = 86_400;

pub use crate::daily::{is_due, last_slot};

/// Day number of `now` (days since 1970-01-01 UTC).
pub fn day(now: i64) -> i64 {
    now.div_euclid(DAY)
}

/// Whether item `index` is checked on day `day` by the daily sample: a
/// seventh of the items each day, in turn, so a week covers them all.
pub fn in_daily_sample(index: usize, day: i64) -> bool {
    let i = i64::try_from(index % 7).unwrap_or(0);
    i == day.rem_euclid(7)
}

/// Whether the run on `day` checks everything (once a week, on Sundays:
/// 1970-01-01 was a Thursday, so day 3 mod 7).
pub fn is_full_day(day: i64) -> bool {
    day.rem_euclid(7) == 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // 2026-12-03 00:00:00 UTC, a Thursday.
    const D: i64 = 1_796_256_000;

    #[test]
    fn due_once_per_slot() {
        let at = 3 * 60; // 03:00
        let slot = D + 3 * 3600;
        // Server up since midnight, nothing run: due at the slot, not before.
        assert!(!is_due(slot - 1, None, D, at));
        assert!(is_due(slot, None, D, at));
        assert!(is_due(slot + 5 * 3600, None, D, at));
        // Run at the slot: not again that day, due next day at the slot.
        assert!(!is_due(slot + 60, Some(slot), D, at));
        assert!(!is_due(slot + DAY - 1, Some(slot), D, at));
        assert!(is_due(slot + DAY, Some(slot), D, at));
        // A server started after today's slot waits for tomorrow's.
        assert!(!is_due(slot + 3600, None, slot + 10, at));
        // A manual run after the slot counts as the day's run.
        assert!(!is_due(slot + 7200, Some(slot + 3600), D, at));
        // Down for three days: one catch-up run.
        assert!(is_due(slot + 3 * DAY + 10, Some(slot), D, at));
        assert!(!is_due(
            slot + 3 * DAY + 20,
            Some(slot + 3 * DAY + 10),
            D,
            at
        ));
    }

    #[test]
    fn a_week_of_samples_covers_everything_once() {
        for n in [0usize, 1, 6, 7, 20] {
            for start in [D / DAY, D / DAY + 3] {
                let mut seen = vec![0; n];
                for d in start..start + 7 {
                    for (i, s) in seen.iter_mut().enumerate() {
                        if in_daily_sample(i, d) {
                            *s += 1;
                        }
                    }
                }
                assert!(seen.iter().all(|&c| c == 1), "{n} {seen:?}");
            }
        }
        // One full day a week, a Sunday.
        let full: Vec<i64> = (day(D)..day(D) + 7).filter(|&d| is_full_day(d)).collect();
        assert_eq!(full, vec![day(D) + 3]);
    }

    proptest! {
        #[test]
        fn due_means_a_slot_lies_between(last in 0i64..4_000_000_000, gap in 0i64..(10 * DAY), at in 0u32..1440) {
            let now = last + gap;
            let due = is_due(now, Some(last), 0, at);
            // Brute force: some instant t in (last, now] at the minute of day.
            let first = last_slot(last, at) + DAY;
            prop_assert_eq!(due, first <= now);
            // After running, not due again until the next slot.
            prop_assert!(!is_due(now, Some(now), 0, at));
        }
    }
}
