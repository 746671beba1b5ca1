//! Reading a timetable from an iCalendar file (RFC 5545), as the
//! university's timetable system, Outlook or Google Calendar export it.
//!
//! Hand-written rather than a crate: the parsers available return the
//! properties as strings (and pull in `chrono`), while the part that takes
//! care — what a `DTSTART` means, which `RRULE`s a timetable uses — would be
//! ours anyway. What is read:
//! - content lines, unfolded (a line starting with a space or tab continues
//!   the previous one), `\r\n` or `\n`; parameters with quoted values;
//! - each `VEVENT` (components nested in it, like `VALARM`, are skipped):
//!   `SUMMARY`, `UID`, `DTSTART`, `DTEND` or `DURATION`, `RRULE`, `EXDATE`,
//!   `STATUS:CANCELLED` (skipped);
//! - date-times in UTC (`…Z`), floating (the lab's time), or with a `TZID`:
//!   a `VTIMEZONE` of the file with one fixed offset (no daylight saving) is
//!   used; any other zone is taken to be the lab's own wall clock — a
//!   timetable system exports in the university's zone, which is the lab's;
//! - `RRULE:FREQ=WEEKLY` with `INTERVAL=1`, `UNTIL` or `COUNT`, and `BYDAY`
//!   (`BYDAY=MO,WE` becomes one weekly session per day).
//!
//! Everything else is reported, not guessed: an event that cannot be read
//! becomes a [`Skipped`] with the reason (all-day events, other
//! frequencies, rules without an end), and the rest is still imported.
//! Bounded: at most [`MAX_EVENTS`] events, so a file cannot make the server
//! loop long or store much.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, Weekday};

use super::timetable::Schedule;

pub const MAX_EVENTS: usize = 500;
const MAX_TITLE_CHARS: usize = 200;

/// An event read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub title: String,
    pub schedule: Schedule,
}

/// An event left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub uid: Option<String>,
    pub summary: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IcsError {
    #[error("this is not an iCalendar file (no BEGIN:VCALENDAR)")]
    NotCalendar,
    #[error("the file has more than {MAX_EVENTS} events")]
    TooManyEvents,
}

/// One content line: `NAME;PARAM=VALUE:value`.
#[derive(Debug, Clone)]
struct Line {
    name: String,
    params: Vec<(String, String)>,
    value: String,
}

impl Line {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn unfold(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix([' ', '\t'])
            && let Some(last) = out.last_mut()
        {
            last.push_str(rest);
        } else if !raw.is_empty() {
            out.push(raw.to_owned());
        }
    }
    out
}

fn parse_line(s: &str) -> Option<Line> {
    // The name and parameters end at the first ':' outside double quotes.
    let mut in_quotes = false;
    let mut colon = None;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ':' if !in_quotes => {
                colon = Some(i);
                break;
            }
            _ => {}
        }
    }
    let colon = colon?;
    let (head, value) = (&s[..colon], &s[colon + 1..]);
    let mut parts = split_outside_quotes(head, ';').into_iter();
    let name = parts.next()?.trim().to_ascii_uppercase();
    if name.is_empty() {
        return None;
    }
    let params = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((
                k.trim().to_ascii_uppercase(),
                v.trim_matches('"').to_owned(),
            ))
        })
        .collect();
    Some(Line {
        name,
        params,
        value: value.to_owned(),
    })
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == '"' {
            in_quotes = !in_quotes;
        } else if c == sep && !in_quotes {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// TEXT values: `\n`, `\,`, `\;`, `\\` escapes.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push(' '),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `DATE-TIME` or `DATE` value as the file wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Utc(PrimitiveDateTime),
    Local(PrimitiveDateTime, UtcOffset),
    Day(Date),
}

impl When {
    fn instant(self) -> Option<OffsetDateTime> {
        match self {
            When::Utc(t) => Some(t.assume_utc()),
            When::Local(t, off) => Some(t.assume_offset(off)),
            When::Day(_) => None,
        }
    }
}

fn parse_date(s: &str) -> Option<Date> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i32 = s[0..4].parse().ok()?;
    let m: u8 = s[4..6].parse().ok()?;
    let d: u8 = s[6..8].parse().ok()?;
    Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()
}

fn parse_when(s: &str, zone: UtcOffset) -> Option<When> {
    let s = s.trim();
    let Some((d, t)) = s.split_once(['T', 't']) else {
        return parse_date(s).map(When::Day);
    };
    let date = parse_date(d)?;
    let (t, utc) = match t.strip_suffix(['Z', 'z']) {
        Some(t) => (t, true),
        None => (t, false),
    };
    if t.len() != 6 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let time = Time::from_hms(t[0..2].parse().ok()?, t[2..4].parse().ok()?, {
        // A leap second (60) is read as 59.
        t[4..6].parse::<u8>().ok()?.min(59)
    })
    .ok()?;
    let at = PrimitiveDateTime::new(date, time);
    Some(if utc {
        When::Utc(at)
    } else {
        When::Local(at, zone)
    })
}

/// `DURATION` values: `PT1H40M`, `P1D`, `-PT…` refused (a session has a length).
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim().strip_prefix('+').unwrap_or(s.trim());
    let rest = s.strip_prefix('P')?;
    let (days_part, time_part) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = Duration::ZERO;
    let mut read = |part: &str, units: &[(char, i64)]| -> Option<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                num.push(c);
            } else {
                let (_, secs) = units.iter().find(|(u, _)| *u == c)?;
                let n: i64 = num.parse().ok()?;
                total += Duration::seconds(n.checked_mul(*secs)?);
                num.clear();
            }
        }
        num.is_empty().then_some(())
    };
    read(days_part, &[('W', 7 * 86400), ('D', 86400)])?;
    if let Some(t) = time_part {
        read(t, &[('H', 3600), ('M', 60), ('S', 1)])?;
    }
    (total > Duration::ZERO).then_some(total)
}

fn weekday_code(s: &str) -> Option<Weekday> {
    Some(match s {
        "MO" => Weekday::Monday,
        "TU" => Weekday::Tuesday,
        "WE" => Weekday::Wednesday,
        "TH" => Weekday::Thursday,
        "FR" => Weekday::Friday,
        "SA" => Weekday::Saturday,
        "SU" => Weekday::Sunday,
        _ => return None,
    })
}

#[derive(Debug, Default)]
struct Event {
    uid: Option<String>,
    summary: Option<String>,
    start: Option<Line>,
    end: Option<Line>,
    duration: Option<String>,
    rrule: Option<String>,
    exdates: Vec<Line>,
    cancelled: bool,
}

/// Reads the events of `text`; `lab` is the lab's offset, used for floating
/// times and zones the file does not define with a fixed offset.
pub fn parse(text: &str, lab: UtcOffset) -> Result<Vec<Result<Imported, Skipped>>, IcsError> {
    let lines: Vec<Line> = unfold(text).iter().filter_map(|l| parse_line(l)).collect();
    if !lines
        .iter()
        .any(|l| l.name == "BEGIN" && l.value.trim().eq_ignore_ascii_case("VCALENDAR"))
    {
        return Err(IcsError::NotCalendar);
    }
    let zones = fixed_zones(&lines);
    let mut events = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut current: Option<Event> = None;
    for line in lines {
        let value = line.value.trim().to_ascii_uppercase();
        match line.name.as_str() {
            "BEGIN" => {
                if value == "VEVENT" && current.is_none() {
                    if events.len() >= MAX_EVENTS {
                        return Err(IcsError::TooManyEvents);
                    }
                    current = Some(Event::default());
                }
                stack.push(value);
                continue;
            }
            "END" => {
                stack.pop();
                if value == "VEVENT"
                    && !stack.iter().any(|c| c == "VEVENT")
                    && let Some(ev) = current.take()
                {
                    events.push(ev);
                }
                continue;
            }
            _ => {}
        }
        // Only the event's own properties, not those of a nested VALARM.
        let (Some(ev), Some("VEVENT")) = (current.as_mut(), stack.last().map(String::as_str))
        else {
            continue;
        };
        match line.name.as_str() {
            "UID" => ev.uid = Some(line.value.chars().take(MAX_TITLE_CHARS).collect()),
            "SUMMARY" => {
                ev.summary = Some(
                    unescape(&line.value)
                        .chars()
                        .take(MAX_TITLE_CHARS)
                        .collect(),
                )
            }
            "DTSTART" => ev.start = Some(line),
            "DTEND" => ev.end = Some(line),
            "DURATION" => ev.duration = Some(line.value),
            "RRULE" => ev.rrule = Some(line.value),
            "EXDATE" => ev.exdates.push(line),
            "STATUS" => ev.cancelled = value == "CANCELLED",
            _ => {}
        }
    }
    Ok(events
        .into_iter()
        .flat_map(|ev| match read_event(&ev, lab, &zones) {
            Ok(list) => list.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(reason) => vec![Err(Skipped {
                uid: ev.uid.clone(),
                summary: ev.summary.clone(),
                reason: reason.to_owned(),
            })],
        })
        .collect())
}

/// The file's `VTIMEZONE`s that have one offset all year (no `DAYLIGHT`).
fn fixed_zones(lines: &[Line]) -> HashMap<String, UtcOffset> {
    let mut zones = HashMap::new();
    let mut in_zone = false;
    let (mut tzid, mut offsets, mut daylight) = (None, BTreeSet::new(), false);
    for l in lines {
        let value = l.value.trim();
        match l.name.as_str() {
            "BEGIN" if value.eq_ignore_ascii_case("VTIMEZONE") => {
                in_zone = true;
                (tzid, offsets, daylight) = (None, BTreeSet::new(), false);
            }
            "BEGIN" if in_zone && value.eq_ignore_ascii_case("DAYLIGHT") => daylight = true,
            "END" if value.eq_ignore_ascii_case("VTIMEZONE") => {
                in_zone = false;
                if let (Some(id), false, 1) = (tzid.take(), daylight, offsets.len())
                    && let Some(off) = offsets.first().copied()
                {
                    zones.insert(id, off);
                }
            }
            "TZID" if in_zone => tzid = Some(value.to_owned()),
            "TZOFFSETTO" if in_zone => {
                if let Some(off) = parse_offset(value) {
                    offsets.insert(off);
                }
            }
            _ => {}
        }
    }
    zones
}

/// `+0800`, `-0530`, `+083000`.
fn parse_offset(s: &str) -> Option<UtcOffset> {
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if !(digits.len() == 4 || digits.len() == 6) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i8 = digits[0..2].parse().ok()?;
    let m: i8 = digits[2..4].parse().ok()?;
    let sec: i8 = if digits.len() == 6 {
        digits[4..6].parse().ok()?
    } else {
        0
    };
    UtcOffset::from_hms(sign * h, sign * m, sign * sec).ok()
}

fn zone_of(line: &Line, lab: UtcOffset, zones: &HashMap<String, UtcOffset>) -> UtcOffset {
    line.param("TZID")
        .and_then(|id| zones.get(id).copied())
        .unwrap_or(lab)
}

fn read_event(
    ev: &Event,
    lab: UtcOffset,
    zones: &HashMap<String, UtcOffset>,
) -> Result<Vec<Imported>, &'static str> {
    if ev.cancelled {
        return Err("the event is cancelled");
    }
    let start_line = ev.start.as_ref().ok_or("the event has no DTSTART")?;
    let zone = zone_of(start_line, lab, zones);
    let start = parse_when(&start_line.value, zone).ok_or("DTSTART is not a date-time")?;
    let starts_at = start
        .instant()
        .ok_or("all-day events are not lab sessions")?;
    let ends_at = match (&ev.end, &ev.duration) {
        (Some(end), _) => parse_when(&end.value, zone_of(end, lab, zones))
            .and_then(When::instant)
            .ok_or("DTEND is not a date-time")?,
        (None, Some(d)) => starts_at + parse_duration(d).ok_or("DURATION is not understood")?,
        (None, None) => return Err("the event has no end (DTEND or DURATION)"),
    };
    let length = ends_at - starts_at;
    let mut exceptions = BTreeSet::new();
    for line in &ev.exdates {
        let z = zone_of(line, lab, zones);
        for v in line.value.split(',') {
            let date = match parse_when(v, z).ok_or("EXDATE is not understood")? {
                When::Day(d) => d,
                w => w
                    .instant()
                    .ok_or("EXDATE is not understood")?
                    .to_offset(lab)
                    .date(),
            };
            exceptions.insert(date);
        }
    }
    let title = ev.summary.clone().unwrap_or_default();
    let Some(rule) = &ev.rrule else {
        // An EXDATE without a rule excludes nothing that could happen.
        return Ok(vec![Imported {
            title,
            schedule: Schedule {
                starts_at,
                ends_at,
                weekly_until: None,
                exceptions: BTreeSet::new(),
            },
        }]);
    };
    let mut freq = None;
    let (mut until, mut count, mut days) = (None, None, Vec::new());
    for part in rule.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or("RRULE is not understood")?;
        match k.trim().to_ascii_uppercase().as_str() {
            "FREQ" => freq = Some(v.trim().to_ascii_uppercase()),
            "INTERVAL" if v.trim() == "1" => {}
            "INTERVAL" => return Err("only weekly repetition (INTERVAL=1) is supported"),
            "UNTIL" => {
                let w = parse_when(v, zone).ok_or("RRULE UNTIL is not understood")?;
                until = Some(match w {
                    When::Day(d) => d,
                    w => w
                        .instant()
                        .ok_or("RRULE UNTIL is not understood")?
                        .to_offset(lab)
                        .date(),
                });
            }
            "COUNT" => {
                let n: i64 = v
                    .trim()
                    .parse()
                    .map_err(|_| "RRULE COUNT is not a number")?;
                if n < 1 {
                    return Err("RRULE COUNT must be at least 1");
                }
                count = Some(n);
            }
            "BYDAY" => {
                for d in v.split(',') {
                    days.push(
                        weekday_code(d.trim().to_ascii_uppercase().as_str())
                            .ok_or("BYDAY with positions (like 1MO) is not supported")?,
                    );
                }
            }
            "WKST" => {}
            _ => {
                return Err(
                    "only simple weekly rules (FREQ=WEEKLY, BYDAY, UNTIL/COUNT) are supported",
                );
            }
        }
    }
    if freq.as_deref() != Some("WEEKLY") {
        return Err("only weekly repetition (FREQ=WEEKLY) is supported");
    }
    let first_local = starts_at.to_offset(lab);
    if days.is_empty() {
        days.push(first_local.weekday());
    }
    days.sort_by_key(|d| d.number_days_from_monday());
    days.dedup();
    let until = match (until, count) {
        (Some(u), None) => u,
        (None, Some(n)) if days.len() == 1 => {
            let first = first_day_on(first_local.date(), days[0]);
            first + Duration::days(7 * (n.min(60) - 1))
        }
        (None, Some(_)) => return Err("COUNT with several BYDAY days is not supported; use UNTIL"),
        (Some(_), Some(_)) => return Err("RRULE has both UNTIL and COUNT"),
        (None, None) => return Err("the rule repeats forever; give it an UNTIL or COUNT"),
    };
    let out: Vec<Imported> = days
        .into_iter()
        .filter_map(|day| {
            // The first occurrence on that weekday on or after DTSTART's date.
            let date = first_day_on(first_local.date(), day);
            let first = PrimitiveDateTime::new(date, first_local.time()).assume_offset(lab);
            (date <= until).then(|| Imported {
                title: title.clone(),
                schedule: Schedule {
                    starts_at: first,
                    ends_at: first + length,
                    weekly_until: Some(until),
                    exceptions: exceptions.clone(),
                },
            })
        })
        .collect();
    if out.is_empty() {
        return Err("the rule ends before it first takes place");
    }
    Ok(out)
}

fn first_day_on(from: Date, day: Weekday) -> Date {
    let ahead = (day.number_days_from_monday() + 7 - from.weekday().number_days_from_monday()) % 7;
    from + Duration::days(i64::from(ahead))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime, offset};

    const CST: UtcOffset = offset!(+08:00);

    fn ok(items: Vec<Result<Imported, Skipped>>) -> Vec<Imported> {
        items.into_iter().filter_map(Result::ok).collect()
    }

    #[test]
    fn a_timetable_export_is_read() {
        // As a timetable system writes it: CRLF, folded lines, a VTIMEZONE
        // for China, a weekly course on two days with a holiday left out,
        // an alarm inside the event, escaped text.
        let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Univ//Timetable//EN\r\n\
BEGIN:VTIMEZONE\r\nTZID:Asia/Shanghai\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n\
TZOFFSETFROM:+0800\r\nTZOFFSETTO:+0800\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n\
BEGIN:VEVENT\r\nUID:os101-lab@univ\r\nSUMMARY:OS-101 Lab\\, section A\r\n\
DTSTART;TZID=Asia/Shanghai:20260907T080000\r\nDTEND;TZID=Asia/Shanghai:20260907T094\r\n 000\r\n\
RRULE:FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20261231T155959Z\r\n\
EXDATE;TZID=Asia/Shanghai:20261005T080000,20261007T080000\r\n\
BEGIN:VALARM\r\nTRIGGER:-PT15M\r\nDTSTART:19990101T000000Z\r\nEND:VALARM\r\n\
END:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:exam@univ\r\nSUMMARY:Exam\r\nDTSTART:20261215T060000Z\r\nDURATION:PT2H\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:day@univ\r\nSUMMARY:Holiday\r\nDTSTART;VALUE=DATE:20261001\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:monthly@univ\r\nDTSTART:20260901T000000Z\r\nDTEND:20260901T010000Z\r\nRRULE:FREQ=MONTHLY;COUNT=3\r\nEND:VEVENT\r\n\
END:VCALENDAR\r\n";
        let items = parse(text, CST).expect("calendar");
        let skipped: Vec<_> = items.iter().filter_map(|i| i.as_ref().err()).collect();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped.iter().any(|s| s.uid.as_deref() == Some("day@univ")));
        assert!(skipped.iter().any(|s| s.reason.contains("weekly")));
        let got = ok(items);
        assert_eq!(got.len(), 3, "{got:?}");
        let monday = &got[0];
        assert_eq!(monday.title, "OS-101 Lab, section A");
        assert_eq!(
            monday.schedule.starts_at,
            datetime!(2026-09-07 08:00 +08:00)
        );
        assert_eq!(monday.schedule.ends_at, datetime!(2026-09-07 09:40 +08:00));
        assert_eq!(monday.schedule.weekly_until, Some(date!(2026 - 12 - 31)));
        assert!(monday.schedule.exceptions.contains(&date!(2026 - 10 - 05)));
        let wednesday = &got[1];
        assert_eq!(
            wednesday.schedule.starts_at,
            datetime!(2026-09-09 08:00 +08:00)
        );
        // The Wednesday of the national-day week is not held.
        assert!(
            !wednesday
                .schedule
                .all(CST)
                .iter()
                .any(|o| o.starts_at.to_offset(CST).date() == date!(2026 - 10 - 07))
        );
        let exam = &got[2];
        assert_eq!(exam.schedule.weekly_until, None);
        assert_eq!(
            exam.schedule.ends_at - exam.schedule.starts_at,
            Duration::hours(2)
        );
    }

    #[test]
    fn unknown_zones_and_floating_times_are_the_labs_and_count_ends_the_rule() {
        let text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;TZID=\"Custom: zone\":20260908T140000\n\
DTEND:20260908T153000\nRRULE:FREQ=WEEKLY;COUNT=4\nEND:VEVENT\nEND:VCALENDAR\n";
        let got = ok(parse(text, CST).expect("calendar"));
        assert_eq!(got.len(), 1);
        let s = &got[0].schedule;
        assert_eq!(s.starts_at, datetime!(2026-09-08 14:00 +08:00));
        assert_eq!(s.all(CST).len(), 4);
    }

    #[test]
    fn garbage_is_refused_or_skipped_never_a_panic() {
        assert_eq!(parse("hello", CST), Err(IcsError::NotCalendar));
        for body in [
            "BEGIN:VEVENT\nEND:VEVENT",
            "BEGIN:VEVENT\nDTSTART:2026\nEND:VEVENT",
            "BEGIN:VEVENT\nDTSTART:20261301T000000Z\nDTEND:x\nEND:VEVENT",
            "BEGIN:VEVENT\nDTSTART:20260101T000000Z\nDURATION:PXYZ\nEND:VEVENT",
            "BEGIN:VEVENT\nDTSTART:20260101T000000Z\nDURATION:PT1H\nRRULE:FREQ=WEEKLY\nEND:VEVENT",
            "BEGIN:VEVENT\nDTSTART:20260101T000000Z\nDURATION:PT1H\nRRULE:FREQ=WEEKLY;BYDAY=1MO;COUNT=2\nEND:VEVENT",
            "BEGIN:VEVENT\nDTSTART:20260101T000000Z\nDURATION:PT1H\nRRULE:garbage\nEND:VEVENT",
            "BEGIN:VEVENT\nDTSTART:20260101T000000Z\nDURATION:PT1H\nEXDATE:nope\nEND:VEVENT",
            "BEGIN:VEVENT\nDTSTART;TZID=\":20260101T000000Z\nEND:VEVENT",
        ] {
            let text = format!("BEGIN:VCALENDAR\n{body}\nEND:VCALENDAR");
            let items = parse(&text, CST).expect("calendar");
            assert!(items.iter().all(Result::is_err), "{body}: {items:?}");
        }
        let many = format!(
            "BEGIN:VCALENDAR\n{}END:VCALENDAR",
            "BEGIN:VEVENT\nEND:VEVENT\n".repeat(MAX_EVENTS + 1)
        );
        assert_eq!(parse(&many, CST), Err(IcsError::TooManyEvents));
    }

    #[test]
    fn durations_and_offsets_parse() {
        assert_eq!(parse_duration("PT1H40M"), Some(Duration::minutes(100)));
        assert_eq!(parse_duration("P1DT1S"), Some(Duration::seconds(86401)));
        assert_eq!(parse_duration("-PT1H"), None);
        assert_eq!(parse_duration("PT"), None);
        assert_eq!(parse_offset("+0800"), Some(offset!(+08:00)));
        assert_eq!(parse_offset("-0530"), Some(offset!(-05:30)));
        assert_eq!(parse_offset("0800"), None);
    }
}
