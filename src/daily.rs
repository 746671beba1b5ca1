//! A time of day something runs at every day (`HH:MM` UTC, or `off`), as the
//! daily inspection and the nightly backup take it, and the slots it gives.
//! Pure; each schedule keeps its own type and error message.

/// Seconds in a day.
const DAY: i64 = 86_400;

/// `Some(minutes after midnight)` for `HH:MM` (00:00 to 23:59), `Some(None)`
/// for `off`; `None` for anything else (each schedule names its own error).
pub fn parse(s: &str) -> Option<Option<u32>> {
    if s.eq_ignore_ascii_case("off") {
        return Some(None);
    }
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    if h > 23 || m > 59 {
        return None;
    }
    Some(Some(h * 60 + m))
}

/// `HH:MM` or `off`, as [`parse`] reads it.
pub fn format(minute_of_day: Option<u32>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match minute_of_day {
        None => f.write_str("off"),
        Some(m) => write!(f, "{:02}:{:02}", m / 60, m % 60),
    }
}

/// The latest scheduled instant (Unix seconds) at or before `now`.
pub fn last_slot(now: i64, minute_of_day: u32) -> i64 {
    let slot = now - now.rem_euclid(DAY) + i64::from(minute_of_day) * 60;
    if slot > now { slot - DAY } else { slot }
}

/// Whether a run is due at `now`: a scheduled instant has passed since the
/// last run — or, with none yet, since `since` (when the schedule started
/// watching), so a fresh server waits for its first slot instead of running
/// at start-up. A missed slot (server down) is run once when it comes back,
/// not once per missed day.
pub fn is_due(now: i64, last: Option<i64>, since: i64, minute_of_day: u32) -> bool {
    let reference = last.unwrap_or(since);
    let slot = last_slot(now, minute_of_day);
    reference < slot && slot <= now
}
