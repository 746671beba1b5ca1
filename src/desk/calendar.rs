//! The lab's service calendar: when the service desk counts time.
//!
//! SLA targets ("respond within 4 business hours") are measured in
//! *business time*: the time the lab is open. A [`Calendar`] knows
//! - the lab's wall clock as a fixed offset from UTC (China Standard Time,
//!   `+08:00`, has no daylight-saving time, so a fixed offset is exact there;
//!   a lab in a zone with DST sets the offset it runs on and updates it
//!   twice a year),
//! - its weekly opening hours: any number of intervals per weekday, e.g.
//!   `08:00-12:00` and `13:30-17:30` (lunch closed); `00:00-24:00` is a whole day,
//! - holidays (dates on which it is closed whatever the weekday), and
//! - extra working days (调休: a weekend date that is worked), which take the
//!   hours of [`CalendarSpec::extra_day_hours`] (by default Monday's).
//!
//! Invariants, enforced by [`Calendar::from_spec`] (and so by deserialising):
//! the intervals of a day are sorted, non-empty and do not overlap; no date
//! is both a holiday and an extra working day; the calendar is open at some
//! time every week or has extra working days (so an SLA target is
//! reachable). The two operations are exact (nanosecond arithmetic, no
//! rounding) and consistent with each other:
//! `business_time_between(s, add_business_time(s, d)) == d`, and
//! `add_business_time` returns the *earliest* such instant.
//!
//! The serde form (TOML or JSON) is [`CalendarSpec`]:
//! ```toml
//! utc_offset = "+08:00"
//! holidays = ["2026-10-01", "2026-10-02"]
//! extra_working_days = ["2026-09-27"]
//! [week]
//! mon = ["08:00-12:00", "13:30-17:30"]
//! sat = []
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Upper bounds on what a calendar may hold (settings are user input).
pub const MAX_INTERVALS_PER_DAY: usize = 12;
pub const MAX_DATES: usize = 2000;

/// How far [`Calendar::add_business_time`] looks ahead before it gives up:
/// ten years of days without enough opening hours means the target is never
/// reached (a calendar of holidays only).
const MAX_SEARCH_DAYS: u32 = 3660;

const MINUTES_PER_DAY: u16 = 24 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("utc_offset must look like +08:00 (between -12:00 and +14:00), not {0:?}")]
    BadOffset(String),
    #[error("opening hours must look like 08:00-12:00 (start before end, up to 24:00), not {0:?}")]
    BadInterval(String),
    #[error("opening hours of {day} overlap: {a} and {b}")]
    Overlap {
        day: &'static str,
        a: String,
        b: String,
    },
    #[error("at most {MAX_INTERVALS_PER_DAY} opening-hour intervals per day")]
    TooManyIntervals,
    #[error("dates must look like 2026-10-01, not {0:?}")]
    BadDate(String),
    #[error("at most {MAX_DATES} holidays and extra working days")]
    TooManyDates,
    #[error("{0} is both a holiday and an extra working day")]
    Conflict(String),
    #[error("the calendar is never open: give some weekday opening hours")]
    NeverOpen,
}

/// One opening interval of a day, in minutes after local midnight:
/// `start < end <= 1440`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    start: u16,
    end: u16,
}

impl Interval {
    /// `None` unless `start < end <= 24:00`.
    pub fn new(start_min: u16, end_min: u16) -> Option<Self> {
        (start_min < end_min && end_min <= MINUTES_PER_DAY).then_some(Self {
            start: start_min,
            end: end_min,
        })
    }
    pub const WHOLE_DAY: Interval = Interval {
        start: 0,
        end: MINUTES_PER_DAY,
    };
    pub fn start_minute(self) -> u16 {
        self.start
    }
    pub fn end_minute(self) -> u16 {
        self.end
    }
    pub fn length(self) -> Duration {
        Duration::minutes(i64::from(self.end - self.start))
    }
}

impl std::str::FromStr for Interval {
    type Err = CalendarError;
    /// `HH:MM-HH:MM`, end up to `24:00`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CalendarError::BadInterval(s.to_string());
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let minute = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            if h.is_empty() || h.len() > 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && h <= 24).then_some(h * 60 + m)
        };
        Interval::new(minute(a).ok_or_else(bad)?, minute(b).ok_or_else(bad)?).ok_or_else(bad)
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// Opening hours per weekday (serde form: `"HH:MM-HH:MM"` strings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeekSpec {
    pub mon: Vec<String>,
    pub tue: Vec<String>,
    pub wed: Vec<String>,
    pub thu: Vec<String>,
    pub fri: Vec<String>,
    pub sat: Vec<String>,
    pub sun: Vec<String>,
}

/// The settings form of a calendar (TOML / JSON). Parse with
/// [`Calendar::from_spec`], or deserialise a [`Calendar`] directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    /// The lab's wall clock, `+HH:MM` / `-HH:MM` from UTC.
    #[serde(default = "default_offset")]
    pub utc_offset: String,
    pub week: WeekSpec,
    /// Closed all day (`YYYY-MM-DD`, local dates).
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Worked although the weekday is normally closed (调休).
    #[serde(default)]
    pub extra_working_days: Vec<String>,
    /// Hours of an extra working day; absent: Monday's hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_day_hours: Option<Vec<String>>,
}

fn default_offset() -> String {
    "+08:00".to_string()
}

/// A validated service calendar; see the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CalendarSpec", into = "CalendarSpec")]
pub struct Calendar {
    offset: UtcOffset,
    /// Monday first.
    week: [Vec<Interval>; 7],
    holidays: BTreeSet<Date>,
    extra_days: BTreeSet<Date>,
    extra_day_hours: Option<Vec<Interval>>,
}

impl Default for Calendar {
    /// The default lab calendar: UTC+08:00, Monday to Friday 08:00–12:00 and
    /// 13:30–17:30 (8 business hours a day), weekends closed, no holidays.
    fn default() -> Self {
        let day = vec![
            Interval {
                start: 8 * 60,
                end: 12 * 60,
            },
            Interval {
                start: 13 * 60 + 30,
                end: 17 * 60 + 30,
            },
        ];
        Self {
            offset: time::macros::offset!(+8),
            week: [
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day,
                Vec::new(),
                Vec::new(),
            ],
            holidays: BTreeSet::new(),
            extra_days: BTreeSet::new(),
            extra_day_hours: None,
        }
    }
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn parse_offset(s: &str) -> Result<UtcOffset, CalendarError> {
    let bad = || CalendarError::BadOffset(s.to_string());
    let t = s.trim();
    if t.eq_ignore_ascii_case("Z") || t.eq_ignore_ascii_case("UTC") {
        return Ok(UtcOffset::UTC);
    }
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1i8, &t[1..]),
        Some(b'-') => (-1i8, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let minutes = i32::from(sign) * (i32::from(h) * 60 + i32::from(m));
    if m >= 60 || !(-12 * 60..=14 * 60).contains(&minutes) {
        return Err(bad());
    }
    UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| bad())
}

fn format_offset(o: UtcOffset) -> String {
    let total = o.whole_minutes();
    let sign = if total < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", total.abs() / 60, total.abs() % 60)
}

fn parse_date(s: &str) -> Result<Date, CalendarError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s.trim(), &fmt).map_err(|_| CalendarError::BadDate(s.to_string()))
}

fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn parse_day(day: &'static str, items: &[String]) -> Result<Vec<Interval>, CalendarError> {
    if items.len() > MAX_INTERVALS_PER_DAY {
        return Err(CalendarError::TooManyIntervals);
    }
    let mut v = items
        .iter()
        .map(|s| s.parse::<Interval>())
        .collect::<Result<Vec<_>, _>>()?;
    v.sort();
    for w in v.windows(2) {
        // Touching intervals (12:00-13:00, 13:00-14:00) are fine.
        if w[1].start < w[0].end {
            return Err(CalendarError::Overlap {
                day,
                a: w[0].to_string(),
                b: w[1].to_string(),
            });
        }
    }
    Ok(v)
}

fn parse_dates(items: &[String]) -> Result<BTreeSet<Date>, CalendarError> {
    items.iter().map(|s| parse_date(s)).collect()
}

impl TryFrom<CalendarSpec> for Calendar {
    type Error = CalendarError;
    fn try_from(spec: CalendarSpec) -> Result<Self, Self::Error> {
        Calendar::from_spec(&spec)
    }
}

impl From<Calendar> for CalendarSpec {
    fn from(c: Calendar) -> Self {
        c.to_spec()
    }
}

impl Calendar {
    /// Validates a settings form; see the module doc for the rules.
    pub fn from_spec(spec: &CalendarSpec) -> Result<Self, CalendarError> {
        let offset = parse_offset(&spec.utc_offset)?;
        let w = &spec.week;
        let days = [&w.mon, &w.tue, &w.wed, &w.thu, &w.fri, &w.sat, &w.sun];
        let mut week: [Vec<Interval>; 7] = Default::default();
        for (i, items) in days.iter().enumerate() {
            week[i] = parse_day(DAY_NAMES[i], items)?;
        }
        if spec.holidays.len() + spec.extra_working_days.len() > MAX_DATES {
            return Err(CalendarError::TooManyDates);
        }
        let holidays = parse_dates(&spec.holidays)?;
        let extra_days = parse_dates(&spec.extra_working_days)?;
        if let Some(d) = holidays.intersection(&extra_days).next() {
            return Err(CalendarError::Conflict(format_date(*d)));
        }
        let extra_day_hours = spec
            .extra_day_hours
            .as_deref()
            .map(|h| parse_day("extra_day_hours", h))
            .transpose()?;
        let cal = Self {
            offset,
            week,
            holidays,
            extra_days,
            extra_day_hours,
        };
        let extra_open = !cal.extra_days.is_empty() && !cal.extra_hours().is_empty();
        if cal.week.iter().all(Vec::is_empty) && !extra_open {
            return Err(CalendarError::NeverOpen);
        }
        Ok(cal)
    }

    /// The settings form (what [`Calendar::from_spec`] accepts back).
    pub fn to_spec(&self) -> CalendarSpec {
        let s = |v: &[Interval]| v.iter().map(Interval::to_string).collect::<Vec<_>>();
        CalendarSpec {
            utc_offset: format_offset(self.offset),
            week: WeekSpec {
                mon: s(&self.week[0]),
                tue: s(&self.week[1]),
                wed: s(&self.week[2]),
                thu: s(&self.week[3]),
                fri: s(&self.week[4]),
                sat: s(&self.week[5]),
                sun: s(&self.week[6]),
            },
            holidays: self.holidays.iter().map(|d| format_date(*d)).collect(),
            extra_working_days: self.extra_days.iter().map(|d| format_date(*d)).collect(),
            extra_day_hours: self.extra_day_hours.as_deref().map(s),
        }
    }

    /// Open around the clock (7×24), no holidays: business time is wall
    /// time. What a priority set to run 7×24 counts in.
    pub fn always_open() -> Self {
        Self {
            offset: UtcOffset::UTC,
            week: std::array::from_fn(|_| vec![Interval::WHOLE_DAY]),
            holidays: BTreeSet::new(),
            extra_days: BTreeSet::new(),
            extra_day_hours: None,
        }
    }

    /// Every day open 00:00–24:00 and no holiday.
    pub fn is_always_open(&self) -> bool {
        self.holidays.is_empty()
            && self
                .week
                .iter()
                .all(|d| d.as_slice() == [Interval::WHOLE_DAY])
    }

    pub fn utc_offset(&self) -> UtcOffset {
        self.offset
    }

    fn extra_hours(&self) -> &[Interval] {
        self.extra_day_hours.as_deref().unwrap_or(&self.week[0])
    }

    /// The opening intervals of a local date (holidays and extra working
    /// days applied).
    pub fn hours_on(&self, day: Date) -> &[Interval] {
        if self.holidays.contains(&day) {
            &[]
        } else if self.extra_days.contains(&day) {
            self.extra_hours()
        } else {
            &self.week[usize::from(day.weekday().number_days_from_monday())]
        }
    }

    /// Whether the desk is open at instant `t`.
    pub fn is_open(&self, t: OffsetDateTime) -> bool {
        let local = t.to_offset(self.offset);
        let day = local.date();
        self.hours_on(day).iter().any(|iv| {
            let (s, e) = self.bounds(day, *iv);
            s <= t && t < e
        })
    }

    /// The instants an interval of local date `day` starts and ends.
    fn bounds(&self, day: Date, iv: Interval) -> (OffsetDateTime, OffsetDateTime) {
        let midnight = PrimitiveDateTime::new(day, Time::MIDNIGHT).assume_offset(self.offset);
        (
            midnight + Duration::minutes(i64::from(iv.start)),
            midnight + Duration::minutes(i64::from(iv.end)),
        )
    }

    /// Business time in `[a, b)`: how long the lab is open between the two
    /// instants. Zero when `b <= a`. Additive:
    /// `between(a, b) + between(b, c) == between(a, c)` for `a <= b <= c`.
    pub fn business_time_between(&self, a: OffsetDateTime, b: OffsetDateTime) -> Duration {
        if b <= a {
            return Duration::ZERO;
        }
        if self.is_always_open() {
            return b - a;
        }
        let mut day = a.to_offset(self.offset).date();
        let last = b.to_offset(self.offset).date();
        let mut total = Duration::ZERO;
        loop {
            for iv in self.hours_on(day) {
                let (s, e) = self.bounds(day, *iv);
                let (lo, hi) = (s.max(a), e.min(b));
                if hi > lo {
                    total += hi - lo;
                }
            }
            match day.next_day() {
                Some(next) if day < last => day = next,
                _ => break,
            }
        }
        total
    }

    /// The earliest instant `t >= start` with
    /// `business_time_between(start, t) == d`; `start` itself for `d <= 0`.
    /// `None` when the calendar does not hold that much open time in the
    /// next ten years (or the date range of `time` ends).
    pub fn add_business_time(&self, start: OffsetDateTime, d: Duration) -> Option<OffsetDateTime> {
        if d <= Duration::ZERO {
            return Some(start);
        }
        if self.is_always_open() {
            return start.checked_add(d);
        }
        let mut left = d;
        let mut day = start.to_offset(self.offset).date();
        for _ in 0..MAX_SEARCH_DAYS {
            for iv in self.hours_on(day) {
                let (s, e) = self.bounds(day, *iv);
                let lo = s.max(start);
                if e <= lo {
                    continue;
                }
                let avail = e - lo;
                if avail >= left {
                    return Some(lo + left);
                }
                left -= avail;
            }
            day = day.next_day()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use time::Weekday;
    use time::macros::datetime;

    fn lab() -> Calendar {
        Calendar::default()
    }

    #[test]
    fn weekday_business_hours() {
        let c = lab();
        // Monday 2026-11-30, UTC+8: 08:00-12:00 and 13:30-17:30.
        let a = datetime!(2026-11-30 07:00 +8);
        let b = datetime!(2026-11-30 19:00 +8);
        assert_eq!(c.business_time_between(a, b), Duration::hours(8));
        // Inside the lunch break nothing counts.
        let a = datetime!(2026-11-30 12:10 +8);
        let b = datetime!(2026-11-30 13:20 +8);
        assert_eq!(c.business_time_between(a, b), Duration::ZERO);
        // Instants given in UTC are converted to the lab's clock.
        let a = datetime!(2026-11-30 00:00 UTC); // 08:00 local
        let b = datetime!(2026-11-30 01:30 UTC); // 09:30 local
        assert_eq!(c.business_time_between(a, b), Duration::minutes(90));
        assert_eq!(c.business_time_between(b, a), Duration::ZERO);
    }

    #[test]
    fn closed_weekend_counts_nothing() {
        let c = lab();
        let fri_close = datetime!(2026-12-04 17:30 +8);
        let mon_open = datetime!(2026-12-07 08:00 +8);
        assert_eq!(c.business_time_between(fri_close, mon_open), Duration::ZERO);
    }

    #[test]
    fn adding_business_time() {
        let c = lab();
        // "YYYY-MM-DD hh:mm" on the lab's clock (UTC+8).
        let at = |s: &str| {
            PrimitiveDateTime::parse(
                s,
                time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]"),
            )
            .expect("time")
            .assume_offset(time::macros::offset!(+8))
        };
        // (start, business time to add, when it is used up)
        let cases = [
            // Thursday 16:30 + 2 h = Friday 09:00: the night is skipped.
            ("2026-12-03 16:30", Duration::hours(2), "2026-12-04 09:00"),
            // Friday 17:00 + 1 h = Monday 08:30: so is the weekend.
            ("2026-12-04 17:00", Duration::hours(1), "2026-12-07 08:30"),
            // Used up at an interval's end: that end, not the next opening.
            ("2026-11-30 11:00", Duration::hours(1), "2026-11-30 12:00"),
            // Starting while closed: counting begins at the next opening.
            (
                "2026-11-30 12:30",
                Duration::minutes(15),
                "2026-11-30 13:45",
            ),
            // Nothing to add: the start itself, even while closed.
            ("2026-11-30 12:30", Duration::ZERO, "2026-11-30 12:30"),
        ];
        for (start, add, end) in cases {
            assert_eq!(
                c.add_business_time(at(start), add),
                Some(at(end)),
                "{start} + {add}"
            );
        }
    }

    #[test]
    fn holidays_and_extra_working_days() {
        let spec: CalendarSpec = toml::from_str(
            r#"
            utc_offset = "+08:00"
            holidays = ["2026-10-01", "2026-10-02"]
            extra_working_days = ["2026-09-27"]
            [week]
            mon = ["08:00-12:00", "13:30-17:30"]
            tue = ["08:00-12:00", "13:30-17:30"]
            wed = ["08:00-12:00", "13:30-17:30"]
            thu = ["08:00-12:00", "13:30-17:30"]
            fri = ["08:00-12:00", "13:30-17:30"]
            "#,
        )
        .unwrap();
        let c = Calendar::from_spec(&spec).unwrap();
        // 2026-10-01 is a Thursday: a holiday, closed.
        let d = Date::from_calendar_date(2026, time::Month::October, 1).unwrap();
        assert_eq!(d.weekday(), Weekday::Thursday);
        assert!(c.hours_on(d).is_empty());
        assert!(!c.is_open(datetime!(2026-10-01 09:00 +8)));
        // 2026-09-27 is a Sunday worked with Monday's hours.
        let d = Date::from_calendar_date(2026, time::Month::September, 27).unwrap();
        assert_eq!(d.weekday(), Weekday::Sunday);
        assert_eq!(c.hours_on(d).len(), 2);
        assert!(c.is_open(datetime!(2026-09-27 09:00 +8)));
        // Wed 09-30 17:00 + 1 h: Thu and Fri are holidays, Sat/Sun closed → Mon 10-05 08:30.
        let t = c
            .add_business_time(datetime!(2026-09-30 17:00 +8), Duration::hours(1))
            .unwrap();
        assert_eq!(t, datetime!(2026-10-05 08:30 +8));
    }

    #[test]
    fn seven_by_twenty_four() {
        let c = Calendar::always_open();
        assert!(c.is_always_open());
        let a = datetime!(2026-12-05 03:00 +8); // a Saturday night
        assert_eq!(
            c.add_business_time(a, Duration::minutes(15)),
            Some(datetime!(2026-12-05 03:15 +8))
        );
        // The spec form of an always-open calendar is accepted back.
        let back = Calendar::from_spec(&c.to_spec()).unwrap();
        assert!(back.is_always_open());
        assert_eq!(
            back.business_time_between(a, a + Duration::days(3)),
            Duration::days(3)
        );
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let c = lab();
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["utc_offset"], "+08:00");
        assert_eq!(json["week"]["mon"][1], "13:30-17:30");
        let back: Calendar = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<Calendar>(&text).unwrap(), c);

        let spec = |f: &dyn Fn(&mut CalendarSpec)| {
            let mut s = lab().to_spec();
            f(&mut s);
            Calendar::from_spec(&s)
        };
        assert!(matches!(
            spec(&|s| s.utc_offset = "8".into()),
            Err(CalendarError::BadOffset(_))
        ));
        assert!(matches!(
            spec(&|s| s.utc_offset = "+15:00".into()),
            Err(CalendarError::BadOffset(_))
        ));
        assert_eq!(
            spec(&|s| s.utc_offset = "-03:30".into())
                .unwrap()
                .utc_offset(),
            UtcOffset::from_hms(-3, -30, 0).unwrap()
        );
        for bad in [
            "8-12",
            "12:00-08:00",
            "08:00-24:01",
            "25:00-26:00",
            "08:00-08:00",
        ] {
            assert!(
                matches!(
                    spec(&|s| s.week.tue = vec![bad.into()]),
                    Err(CalendarError::BadInterval(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            spec(&|s| s.week.tue = vec!["08:00-12:00".into(), "11:00-13:00".into()]),
            Err(CalendarError::Overlap { day: "tue", .. })
        ));
        // Touching intervals are not an overlap; order does not matter.
        assert!(spec(&|s| s.week.tue = vec!["12:00-13:00".into(), "08:00-12:00".into()]).is_ok());
        assert!(matches!(
            spec(&|s| s.holidays = vec!["2026-13-01".into()]),
            Err(CalendarError::BadDate(_))
        ));
        assert!(matches!(
            spec(&|s| {
                s.holidays = vec!["2026-10-01".into()];
                s.extra_working_days = vec!["2026-10-01".into()];
            }),
            Err(CalendarError::Conflict(_))
        ));
        assert!(matches!(
            spec(&|s| s.week = WeekSpec::default()),
            Err(CalendarError::NeverOpen)
        ));
        assert!(matches!(
            spec(&|s| s.week.sat = vec!["00:00-01:00".into(); 13]),
            Err(CalendarError::TooManyIntervals)
        ));
        // Unknown fields are refused rather than silently ignored.
        assert!(serde_json::from_str::<Calendar>(r#"{"week":{"mon":[]},"holidayz":[]}"#).is_err());
        // A deserialised calendar is validated.
        assert!(serde_json::from_str::<Calendar>(r#"{"week":{}}"#).is_err());
    }

    #[test]
    fn holiday_only_calendar_gives_up() {
        // Open only on one extra working day in the past: never reachable.
        let s = CalendarSpec {
            utc_offset: "+00:00".into(),
            week: WeekSpec::default(),
            holidays: vec![],
            extra_working_days: vec!["2020-01-04".into()],
            extra_day_hours: Some(vec!["09:00-10:00".into()]),
        };
        let c = Calendar::from_spec(&s).unwrap();
        assert_eq!(
            c.add_business_time(datetime!(2026-01-01 00:00 UTC), Duration::minutes(1)),
            None
        );
    }

    /// Calendars for the properties: random weekly hours (some days closed),
    /// a few holidays around the test window, a random offset.
    fn arb_calendar() -> impl Strategy<Value = Calendar> {
        let day = proptest::collection::vec((0u16..=1440, 0u16..=1440), 0..4).prop_map(|pairs| {
            let mut cuts: Vec<u16> = pairs.into_iter().flat_map(|(a, b)| [a, b]).collect();
            cuts.sort();
            cuts.dedup();
            cuts.chunks_exact(2)
                .filter_map(|c| Interval::new(c[0], c[1]))
                .map(|iv| iv.to_string())
                .collect::<Vec<_>>()
        });
        (
            proptest::array::uniform7(day),
            proptest::collection::vec(0u8..60, 0..5),
            -12i8..=14,
        )
            .prop_filter_map("never open", |(days, hol, off)| {
                let [mon, tue, wed, thu, fri, sat, sun] = days;
                let spec = CalendarSpec {
                    utc_offset: format!("{}{:02}:00", if off < 0 { '-' } else { '+' }, off.abs()),
                    week: WeekSpec {
                        mon,
                        tue,
                        wed,
                        thu,
                        fri,
                        sat,
                        sun,
                    },
                    holidays: hol
                        .iter()
                        .map(|d| format_date(base().date() + Duration::days(i64::from(*d))))
                        .collect(),
                    extra_working_days: vec![],
                    extra_day_hours: None,
                };
                Calendar::from_spec(&spec).ok()
            })
    }

    fn base() -> OffsetDateTime {
        datetime!(2026-09-20 00:00 UTC)
    }

    /// An instant within ~40 days of the base, at second resolution.
    fn arb_instant() -> impl Strategy<Value = OffsetDateTime> {
        (0i64..40 * 86400).prop_map(|s| base() + Duration::seconds(s))
    }

    proptest! {
        #[test]
        fn between_is_additive(c in arb_calendar(), mut t in proptest::array::uniform3(arb_instant())) {
            t.sort();
            let [a, b, d] = t;
            prop_assert_eq!(
                c.business_time_between(a, b) + c.business_time_between(b, d),
                c.business_time_between(a, d)
            );
            prop_assert!(c.business_time_between(a, d) <= d - a);
        }

        #[test]
        fn add_then_between_round_trips(c in arb_calendar(), s in arb_instant(), mins in 0i64..5000) {
            let d = Duration::minutes(mins);
            let Some(t) = c.add_business_time(s, d) else {
                // Only a calendar with almost no hours runs out of search days.
                prop_assert!(c.business_time_between(s, s + Duration::days(3000)) < d);
                return Ok(());
            };
            prop_assert!(t >= s);
            prop_assert_eq!(c.business_time_between(s, t), d);
            // ...and it is the earliest such instant.
            if d > Duration::ZERO {
                prop_assert!(c.business_time_between(s, t - Duration::seconds(1)) < d);
                prop_assert!(c.is_open(t - Duration::seconds(1)));
            }
        }

        #[test]
        fn always_open_is_wall_time(a in arb_instant(), b in arb_instant()) {
            let c = Calendar::always_open();
            let expect = if b > a { b - a } else { Duration::ZERO };
            prop_assert_eq!(c.business_time_between(a, b), expect);
        }

        #[test]
        fn closed_days_count_nothing(c in arb_calendar(), day in 0i64..40, from in 0i64..86400, len in 0i64..86400) {
            // Any span inside one local date that has no hours counts zero.
            let local = (base() + Duration::days(day)).to_offset(c.utc_offset()).date();
            prop_assume!(c.hours_on(local).is_empty());
            let midnight = PrimitiveDateTime::new(local, Time::MIDNIGHT).assume_offset(c.utc_offset());
            let a = midnight + Duration::seconds(from);
            let b = (a + Duration::seconds(len)).min(midnight + Duration::days(1));
            prop_assert_eq!(c.business_time_between(a, b), Duration::ZERO);
        }
    }
}
