//! How long entries are kept: the pure rules of the daily prune. The loop
//! in `src/app.rs` passes the wall clock's time; tests pass their own.

use time::{Duration, OffsetDateTime};

/// Default retention (`--audit-retention-days`): a bit over a year, so a
/// whole academic year and its disputes are covered.
pub const DEFAULT_DAYS: u32 = 400;

/// How often the background loop runs the prune (it is idempotent).
pub const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The prune horizon at `now`: entries strictly before it may be removed.
/// `days == 0` keeps everything (the horizon is the beginning of time).
pub fn horizon(now: OffsetDateTime, days: u32) -> Option<OffsetDateTime> {
    if days == 0 {
        return None;
    }
    now.checked_sub(Duration::days(i64::from(days)))
}

/// Whether an entry made `at` is past its retention at `now`.
pub fn expired(at: OffsetDateTime, now: OffsetDateTime, days: u32) -> bool {
    horizon(now, days).is_some_and(|h| at < h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn a_day_over_is_expired_a_second_under_is_not() {
        let now = t(1_800_000_000);
        assert!(expired(now - Duration::days(31), now, 30));
        assert!(!expired(
            now - Duration::days(30) + Duration::seconds(1),
            now,
            30
        ));
        assert!(!expired(now - Duration::days(30), now, 30));
    }

    #[test]
    fn zero_days_keeps_everything() {
        let now = t(1_800_000_000);
        assert_eq!(horizon(now, 0), None);
        assert!(!expired(t(0), now, 0));
    }

    proptest! {
        /// The horizon never passes `now`, and moves forward with it: what
        /// one prune removed, a later one would have removed too.
        #[test]
        fn horizon_is_behind_now_and_monotone(now in 0i64..4_000_000_000, later in 0i64..100_000_000, days in 1u32..4000) {
            let (a, b) = (t(now), t(now + later));
            let (ha, hb) = (horizon(a, days), horizon(b, days));
            prop_assert!(ha.is_some_and(|h| h < a));
            prop_assert!(ha <= hb);
        }

        /// Longer retention never expires an entry a shorter one keeps.
        #[test]
        fn longer_retention_keeps_more(at in 0i64..4_000_000_000, now in 0i64..4_000_000_000, d1 in 1u32..4000, extra in 0u32..4000) {
            if expired(t(at), t(now), d1 + extra) {
                prop_assert!(expired(t(at), t(now), d1));
            }
        }
    }
}
