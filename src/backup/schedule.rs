//! When backups run: pure functions of the instant and what the last runs
//! did, so the loop (wall clock) and the tests (their own instants) ask the
//! same question.
//!
//! - A run is due once per daily slot (`--backup-at HH:MM`, UTC). With no run
//!   yet, the reference is when the schedule started watching, so a fresh
//!   server waits for its first slot instead of backing up at start-up; a
//!   missed slot (server down) runs once when it comes back.
//! - A failed run is retried after [`RETRY_SECS`] × the failures in a row
//!   (a linear backoff), at most [`MAX_RETRIES`] times before the next slot.
//! - The repository's own `restic check` runs with the first run at least
//!   [`CHECK_EVERY_SECS`] (a week) after the last check.

/// Seconds in a day.
const DAY: i64 = 86_400;
/// First wait before a failed run is tried again.
pub const RETRY_SECS: i64 = 15 * 60;
/// Tries after a failed run before waiting for the next slot.
pub const MAX_RETRIES: u32 = 3;
/// How often the repository is checked.
pub const CHECK_EVERY_SECS: i64 = 7 * DAY;

/// What the schedule needs to know of the last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRun {
    /// When it started (Unix seconds).
    pub started_at: i64,
    /// Whether every item of it succeeded.
    pub ok: bool,
    /// Failed runs in a row, this one included (0 when `ok`).
    pub failures_in_a_row: u32,
}

pub use crate::daily::last_slot;

/// Whether a run is due at `now` (see the module doc). `since`: when the
/// schedule started watching.
pub fn due(now: i64, last: Option<LastRun>, since: i64, minute_of_day: u32) -> bool {
    let slot = last_slot(now, minute_of_day);
    let reference = last.map_or(since, |l| l.started_at);
    if reference < slot && slot <= now {
        return true;
    }
    match last {
        Some(l) if !l.ok && (1..=MAX_RETRIES).contains(&l.failures_in_a_row) => {
            now >= l.started_at + RETRY_SECS * i64::from(l.failures_in_a_row)
        }
        _ => false,
    }
}

/// Whether the repository's own check is due at `now`.
pub fn check_due(now: i64, last_check: Option<i64>) -> bool {
    last_check.is_none_or(|at| now - at >= CHECK_EVERY_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_796_256_000; // 2026-12-03 00:00 UTC

    #[test]
    fn a_fresh_server_waits_for_its_slot() {
        let since = T0 + 3600; // started 01:00, slot 02:00
        assert!(!due(T0 + 3600 + 60, None, since, 120));
        assert!(due(T0 + 2 * 3600, None, since, 120));
    }

    #[test]
    fn a_failed_run_is_retried_with_backoff_then_waits() {
        let last = |f| LastRun {
            started_at: T0 + 7200,
            ok: false,
            failures_in_a_row: f,
        };
        assert!(!due(T0 + 7200 + RETRY_SECS - 1, Some(last(1)), T0, 120));
        assert!(due(T0 + 7200 + RETRY_SECS, Some(last(1)), T0, 120));
        assert!(!due(T0 + 7200 + RETRY_SECS, Some(last(2)), T0, 120));
        assert!(due(T0 + 7200 + 2 * RETRY_SECS, Some(last(2)), T0, 120));
        // Given up after MAX_RETRIES: the next slot only.
        let gave_up = last(MAX_RETRIES + 1);
        assert!(!due(T0 + 7200 + 20 * RETRY_SECS, Some(gave_up), T0, 120));
        assert!(due(T0 + DAY + 7200, Some(gave_up), T0, 120));
    }

    #[test]
    fn the_check_runs_weekly() {
        assert!(check_due(T0, None));
        assert!(!check_due(T0 + CHECK_EVERY_SECS - 1, Some(T0)));
        assert!(check_due(T0 + CHECK_EVERY_SECS, Some(T0)));
    }

    proptest! {
        /// A good run is not followed by another before the next slot.
        #[test]
        fn once_per_slot_after_success(
            start in 0i64..(30 * DAY), minute in 0u32..1440, later in 0i64..(2 * DAY)
        ) {
            let started_at = T0 + start;
            let last = LastRun { started_at, ok: true, failures_in_a_row: 0 };
            let now = started_at + later;
            let next_slot = last_slot(started_at, minute) + DAY;
            prop_assert_eq!(due(now, Some(last), T0, minute), now >= next_slot);
        }

        /// Whatever happened, a slot that passed without a run since is due,
        /// and nothing is ever due before the watch started or at its start.
        #[test]
        fn a_passed_slot_is_always_due(
            start in 0i64..(30 * DAY), minute in 0u32..1440, gap in DAY..(5 * DAY),
            ok in any::<bool>(), f in 0u32..10
        ) {
            let started_at = T0 + start;
            let last = LastRun { started_at, ok, failures_in_a_row: if ok { 0 } else { f } };
            prop_assert!(due(started_at + gap, Some(last), T0, minute));
            prop_assert!(!due(T0 + start, None, T0 + start, minute)
                || last_slot(T0 + start, minute) == T0 + start);
        }

        /// Retries never come sooner than the backoff allows, nor more than
        /// MAX_RETRIES times between two slots.
        #[test]
        fn retries_respect_the_backoff(
            minute in 0u32..1440, f in 1u32..10, after in 0i64..(DAY / 2)
        ) {
            let started_at = last_slot(T0 + DAY, minute) + 1;
            let last = LastRun { started_at, ok: false, failures_in_a_row: f };
            let now = started_at + after;
            let next_slot = last_slot(started_at, minute) + DAY;
            if now < next_slot && due(now, Some(last), T0, minute) {
                prop_assert!(f <= MAX_RETRIES);
                prop_assert!(after >= RETRY_SECS * i64::from(f));
            }
        }
    }
}
