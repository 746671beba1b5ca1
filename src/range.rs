//! A time range `[from, to)` as the figures' queries take it (the desk's
//! stats, the service levels, the service reports): each bound in RFC 3339
//! or `YYYY-MM-DD` (midnight UTC).
//!
//! Invariant: a range that passed [`check`] has `from < to` and spans at
//! most its limit. A malformed bound is a bad request (400); well-formed
//! bounds that make no range (reversed, too long) are unacceptable (422).

use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("{0}: RFC 3339 or YYYY-MM-DD")]
    Bound(&'static str),
    #[error("from must be before to")]
    Order,
    #[error("the range is at most {0} days")]
    TooLong(i64),
}

/// Why a text is not a `YYYY-MM-DD` day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayError {
    /// Not shaped like `YYYY-MM-DD`.
    Malformed,
    /// Shaped like a date, but no such day (2026-02-30).
    NoSuchDay,
}

/// A calendar day written `YYYY-MM-DD` (surrounding blanks ignored): the one
/// date parser of the API's date fields; each caller maps [`DayError`] to
/// its own error (a malformed field is a 400 everywhere; some also answer
/// an impossible day with a 422).
pub fn parse_day(s: &str) -> Result<Date, DayError> {
    let s = s.trim();
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).map_err(|_| {
        let shaped = s.len() == 10
            && s.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if shaped {
            DayError::NoSuchDay
        } else {
            DayError::Malformed
        }
    })
}

/// One bound; `field` names it in the error.
pub fn parse_bound(field: &'static str, s: &str) -> Result<OffsetDateTime, RangeError> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    parse_day(s)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| RangeError::Bound(field))
}

/// `from < to`, and at most `max_days` apart when a limit is given.
pub fn check(
    from: OffsetDateTime,
    to: OffsetDateTime,
    max_days: Option<i64>,
) -> Result<(), RangeError> {
    if from >= to {
        return Err(RangeError::Order);
    }
    match max_days {
        Some(max) if to - from > Duration::days(max) => Err(RangeError::TooLong(max)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_take_rfc3339_or_a_date() {
        assert!(parse_bound("from", "2026-03-01").is_ok());
        assert_eq!(
            parse_bound("from", "2026-03-01T08:00:00Z").map(|t| t.hour()),
            Ok(8)
        );
        assert_eq!(parse_bound("to", "March"), Err(RangeError::Bound("to")));
        assert_eq!(parse_bound("to", ""), Err(RangeError::Bound("to")));
        assert_eq!(
            parse_bound("to", "2026-02-30"),
            Err(RangeError::Bound("to"))
        );
    }

    #[test]
    fn ranges_are_ordered_and_bounded() {
        let d = |s| parse_bound("x", s).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(check(d("2026-03-01"), d("2026-03-02"), None), Ok(()));
        assert_eq!(
            check(d("2026-03-02"), d("2026-03-02"), None),
            Err(RangeError::Order)
        );
        assert_eq!(
            check(d("2026-03-03"), d("2026-03-02"), None),
            Err(RangeError::Order)
        );
        assert_eq!(check(d("2026-01-01"), d("2026-01-31"), Some(30)), Ok(()));
        assert_eq!(
            check(d("2026-01-01"), d("2026-02-01"), Some(30)),
            Err(RangeError::TooLong(30))
        );
    }

    #[test]
    fn days_are_malformed_or_impossible() {
        assert_eq!(
            parse_day(" 2026-09-07 "),
            Ok(time::macros::date!(2026 - 09 - 07))
        );
        assert_eq!(parse_day("2026-02-30"), Err(DayError::NoSuchDay));
        assert_eq!(parse_day("2026-13-01"), Err(DayError::NoSuchDay));
        for bad in [
            "",
            "2026-9-7",
            "07/09/2026",
            "2026-09-07T00:00",
            "yyyy-mm-dd",
        ] {
            assert_eq!(parse_day(bad), Err(DayError::Malformed), "{bad:?}");
        }
    }
}
