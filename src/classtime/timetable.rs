//! The timetable's arithmetic: when a session's occurrences are. Pure
//! functions of (schedule, lab offset, window) — no clock, no database — so
//! that unit and property tests pin them down.
//!
//! A [`Schedule`] is its first occurrence (`starts_at`..`ends_at`, instants)
//! and, for a weekly session, the last local date it may recur on
//! (`weekly_until`, inclusive) and the local dates it does not take place on
//! (`exceptions`: holidays, exam weeks). "Local" is the lab's wall clock, a
//! fixed offset from UTC as in the desk's calendar (China has no daylight
//! saving time; a lab with DST sets the offset it runs on). With a fixed
//! offset "the same weekday and wall-clock time a week later" is exactly
//! seven days later, so an occurrence is `starts_at + 7k days`; the offset
//! only decides which local *date* an occurrence falls on, which is what
//! `weekly_until` and `exceptions` are compared with.
//!
//! Invariants ([`Schedule::validate`]): `starts_at < ends_at`, a session lasts
//! at most [`MAX_DURATION_HOURS`]; `weekly_until` is not before the first
//! occurrence's local date and at most [`MAX_SPAN_DAYS`] after it; at most
//! [`MAX_EXCEPTIONS`] exceptions. So a schedule has at most
//! `MAX_SPAN_DAYS / 7 + 1` occurrences, which are sorted and never overlap.

use std::collections::BTreeSet;

use serde::Serialize;
use time::{Date, Duration, OffsetDateTime, UtcOffset};

/// Longest session: a whole day of lab.
pub const MAX_DURATION_HOURS: i64 = 24;
/// Longest repetition: a school year.
pub const MAX_SPAN_DAYS: i64 = 366;
pub const MAX_EXCEPTIONS: usize = 120;

const WEEK: Duration = Duration::days(7);

/// When a session takes place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub starts_at: OffsetDateTime,
    pub ends_at: OffsetDateTime,
    /// Weekly until this local date (inclusive); `None`: once.
    pub weekly_until: Option<Date>,
    /// Local dates on which a weekly session does not take place.
    pub exceptions: BTreeSet<Date>,
}

/// One time a session takes place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Occurrence {
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
}

impl Occurrence {
    /// True while `now` is inside the occurrence (start inclusive, end exclusive).
    pub fn contains(&self, now: OffsetDateTime) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("a session must end after it starts")]
    EndsBeforeStart,
    #[error("a session may last at most {MAX_DURATION_HOURS} hours")]
    TooLong,
    #[error("weekly_until must not be before the first session's date")]
    UntilBeforeStart,
    #[error("a session may repeat for at most {MAX_SPAN_DAYS} days")]
    SpanTooLong,
    #[error("at most {MAX_EXCEPTIONS} exception dates")]
    TooManyExceptions,
    #[error("exception dates are for weekly sessions only")]
    ExceptionsWithoutRepeat,
}

impl Schedule {
    pub fn validate(&self, offset: UtcOffset) -> Result<(), ScheduleError> {
        if self.ends_at <= self.starts_at {
            return Err(ScheduleError::EndsBeforeStart);
        }
        if self.ends_at - self.starts_at > Duration::hours(MAX_DURATION_HOURS) {
            return Err(ScheduleError::TooLong);
        }
        if let Some(until) = self.weekly_until {
            let first = self.starts_at.to_offset(offset).date();
            if until < first {
                return Err(ScheduleError::UntilBeforeStart);
            }
            if until - first > Duration::days(MAX_SPAN_DAYS) {
                return Err(ScheduleError::SpanTooLong);
            }
        }
        if self.exceptions.len() > MAX_EXCEPTIONS {
            return Err(ScheduleError::TooManyExceptions);
        }
        if self.weekly_until.is_none() && !self.exceptions.is_empty() {
            return Err(ScheduleError::ExceptionsWithoutRepeat);
        }
        Ok(())
    }

    /// Every occurrence, in order (exceptions left out). Bounded by the
    /// invariants: at most 53 of them.
    pub fn all(&self, offset: UtcOffset) -> Vec<Occurrence> {
        let length = self.ends_at - self.starts_at;
        let first_date = self.starts_at.to_offset(offset).date();
        let weeks = match self.weekly_until {
            // Clamped again here so a schedule that skipped validation still
            // cannot make this loop long.
            Some(until) if until >= first_date => {
                ((until - first_date).whole_days().min(MAX_SPAN_DAYS)) / 7
            }
            Some(_) => -1,
            None => 0,
        };
        (0..=weeks)
            .filter_map(|k| {
                let starts_at = self.starts_at.checked_add(WEEK * k as i32)?;
                let date = starts_at.to_offset(offset).date();
                (!self.exceptions.contains(&date)).then(|| Occurrence {
                    starts_at,
                    ends_at: starts_at + length,
                })
            })
            .collect()
    }

    /// The occurrences that overlap `[from, to)`.
    pub fn between(
        &self,
        offset: UtcOffset,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Vec<Occurrence> {
        self.all(offset)
            .into_iter()
            .filter(|o| o.ends_at > from && o.starts_at < to)
            .collect()
    }

    /// The occurrence under way at `now` or the next one, if any.
    pub fn current_or_next(&self, offset: UtcOffset, now: OffsetDateTime) -> Option<Occurrence> {
        self.all(offset).into_iter().find(|o| o.ends_at > now)
    }

    /// When the last occurrence ends (`None` if every one is an exception).
    pub fn last_end(&self, offset: UtcOffset) -> Option<OffsetDateTime> {
        self.all(offset).last().map(|o| o.ends_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::{date, datetime, offset};

    const CST: UtcOffset = offset!(+08:00);

    fn weekly(start: OffsetDateTime, minutes: i64, until: Date) -> Schedule {
        Schedule {
            starts_at: start,
            ends_at: start + Duration::minutes(minutes),
            weekly_until: Some(until),
            exceptions: BTreeSet::new(),
        }
    }

    #[test]
    fn a_one_off_session_happens_once() {
        let s = Schedule {
            starts_at: datetime!(2026-12-07 00:00 UTC),
            ends_at: datetime!(2026-12-07 01:40 UTC),
            weekly_until: None,
            exceptions: BTreeSet::new(),
        };
        assert_eq!(s.validate(CST), Ok(()));
        assert_eq!(s.all(CST).len(), 1);
        let o = s.current_or_next(CST, datetime!(2026-12-07 01:00 UTC));
        assert!(o.is_some_and(|o| o.contains(datetime!(2026-12-07 01:00 UTC))));
        assert_eq!(
            s.current_or_next(CST, datetime!(2026-12-07 01:40 UTC)),
            None
        );
    }

    #[test]
    fn weekly_sessions_follow_local_dates() {
        // Mondays 08:00–09:40 in Beijing are Mondays 00:00 UTC; a Monday
        // 07:00 class is a Sunday 23:00 UTC, and its until/exception dates
        // are still the local Mondays.
        let s = weekly(
            datetime!(2026-09-07 07:00 +08:00),
            100,
            date!(2026 - 09 - 28),
        );
        let mut s = s;
        s.exceptions.insert(date!(2026 - 09 - 21));
        let all = s.all(CST);
        let starts: Vec<_> = all.iter().map(|o| o.starts_at.to_offset(CST)).collect();
        assert_eq!(
            starts,
            vec![
                datetime!(2026-09-07 07:00 +08:00),
                datetime!(2026-09-14 07:00 +08:00),
                datetime!(2026-09-28 07:00 +08:00),
            ]
        );
        // The same instants are Sundays in UTC: exceptions are local dates.
        assert_eq!(
            all[0].starts_at.to_offset(UtcOffset::UTC).weekday(),
            time::Weekday::Sunday
        );
        let window = s.between(
            CST,
            datetime!(2026-09-14 08:00 +08:00),
            datetime!(2026-09-30 00:00 +08:00),
        );
        assert_eq!(window.len(), 2, "{window:?}");
    }

    #[test]
    fn bad_schedules_are_refused() {
        let start = datetime!(2026-09-07 08:00 +08:00);
        let mut s = weekly(start, 0, date!(2026 - 12 - 31));
        assert_eq!(s.validate(CST), Err(ScheduleError::EndsBeforeStart));
        s.ends_at = start + Duration::hours(25);
        assert_eq!(s.validate(CST), Err(ScheduleError::TooLong));
        s.ends_at = start + Duration::hours(2);
        s.weekly_until = Some(date!(2026 - 09 - 06));
        assert_eq!(s.validate(CST), Err(ScheduleError::UntilBeforeStart));
        s.weekly_until = Some(date!(2028 - 01 - 01));
        assert_eq!(s.validate(CST), Err(ScheduleError::SpanTooLong));
        s.weekly_until = None;
        s.exceptions.insert(date!(2026 - 09 - 07));
        assert_eq!(s.validate(CST), Err(ScheduleError::ExceptionsWithoutRepeat));
    }

    fn arb_schedule() -> impl Strategy<Value = Schedule> {
        (
            0i64..(3 * 365 * 24 * 60),
            1i64..(24 * 60),
            proptest::option::of(0i64..MAX_SPAN_DAYS),
            proptest::collection::btree_set(0i64..MAX_SPAN_DAYS, 0..8),
        )
            .prop_map(|(start_min, len, until, exc)| {
                let starts_at = datetime!(2026-01-01 00:00 UTC) + Duration::minutes(start_min);
                let first = starts_at.to_offset(CST).date();
                Schedule {
                    starts_at,
                    ends_at: starts_at + Duration::minutes(len),
                    weekly_until: until.map(|d| first + Duration::days(d)),
                    // Exceptions belong to weekly sessions (the invariant).
                    exceptions: match until {
                        Some(_) => exc.into_iter().map(|d| first + Duration::days(d)).collect(),
                        None => BTreeSet::new(),
                    },
                }
            })
    }

    proptest! {
        #[test]
        fn occurrences_keep_the_schedules_promises(
            s in arb_schedule(),
            from_min in 0i64..(4 * 365 * 24 * 60),
            span in 0i64..(60 * 24 * 60),
        ) {
            prop_assert_eq!(s.validate(CST), Ok(()));
            let all = s.all(CST);
            let first_local = s.starts_at.to_offset(CST);
            let length = s.ends_at - s.starts_at;
            for (i, o) in all.iter().enumerate() {
                let local = o.starts_at.to_offset(CST);
                // Same weekday and wall-clock time, same length.
                prop_assert_eq!(local.weekday(), first_local.weekday());
                prop_assert_eq!(local.time(), first_local.time());
                prop_assert_eq!(o.ends_at - o.starts_at, length);
                // Never on an exception, never after until, never before the first.
                prop_assert!(!s.exceptions.contains(&local.date()));
                prop_assert!(o.starts_at >= s.starts_at);
                match s.weekly_until {
                    Some(until) => prop_assert!(local.date() <= until),
                    None => prop_assert_eq!(o.starts_at, s.starts_at),
                }
                // Sorted and disjoint.
                if i > 0 {
                    prop_assert!(all[i - 1].ends_at <= o.starts_at);
                }
            }
            // Nothing missing: every week from the first to until that is not an exception.
            let expected = match s.weekly_until {
                None => 1,
                Some(until) => (0..=((until - first_local.date()).whole_days() / 7))
                    .filter(|k| !s.exceptions.contains(&(first_local.date() + Duration::days(7 * k))))
                    .count(),
            };
            prop_assert_eq!(all.len(), expected);
            // A window holds exactly the occurrences overlapping it.
            let from = datetime!(2026-01-01 00:00 UTC) + Duration::minutes(from_min);
            let to = from + Duration::minutes(span);
            let window = s.between(CST, from, to);
            let overlapping = all.iter().filter(|o| o.ends_at > from && o.starts_at < to).count();
            prop_assert_eq!(window.len(), overlapping);
            // current_or_next is the first not yet over.
            let next = s.current_or_next(CST, from);
            prop_assert_eq!(next, all.iter().copied().find(|o| o.ends_at > from));
            if let Some(n) = next {
                prop_assert!(!all.iter().any(|o| o.ends_at > from && o.starts_at < n.starts_at));
            }
        }
    }
}
