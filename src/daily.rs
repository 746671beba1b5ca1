//! A time of day something runs at every day (`HH:MM` UTC, or `off`) — the
//! daily inspection, the nightly backup and the directory sync each take one
//! ([`TimeOfDay`]) — and the slots it gives. Pure.

use std::str::FromStr;

/// Seconds in a day.
const DAY: i64 = 86_400;

/// The configured time of day of a daily job (`--inspection-at`,
/// `--backup-at`, `--directory-sync-at`: `HH:MM` UTC), or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay(pub Option<u32>);

impl TimeOfDay {
    /// Minutes after midnight UTC; `None` when scheduled runs are off.
    pub fn minute_of_day(self) -> Option<u32> {
        self.0
    }
}

/// The option names itself in the command line's error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a time of day must be HH:MM (00:00 to 23:59, UTC) or off")]
pub struct BadTime;

impl FromStr for TimeOfDay {
    type Err = BadTime;
    fn from_str(s: &str) -> Result<Self, BadTime> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(TimeOfDay(None));
        }
        let (h, m) = s.split_once(':').ok_or(BadTime)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(BadTime);
        }
        let h: u32 = h.parse().map_err(|_| BadTime)?;
        let m: u32 = m.parse().map_err(|_| BadTime)?;
        if h > 23 || m > 59 {
            return Err(BadTime);
        }
        Ok(TimeOfDay(Some(h * 60 + m)))
    }
}

impl std::fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(m) => write!(f, "{:02}:{:02}", m / 60, m % 60),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_and_off() {
        assert_eq!("03:30".parse(), Ok(TimeOfDay(Some(210))));
        assert_eq!("00:00".parse(), Ok(TimeOfDay(Some(0))));
        assert_eq!("OFF".parse(), Ok(TimeOfDay(None)));
        for bad in [
            "24:00", "3:30", "03:60", "", "03-30", "aa:bb", "03:3", "2:00",
        ] {
            assert_eq!(bad.parse::<TimeOfDay>(), Err(BadTime), "{bad}");
        }
        assert_eq!(TimeOfDay(Some(65)).to_string(), "01:05");
        assert_eq!(TimeOfDay(None).to_string(), "off");
    }
}
