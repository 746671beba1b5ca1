//! The desk's figures (seed 004: daily, monthly, quarterly; engineers'
//! handling rate): tickets by kind, channel, priority and state; response
//! and resolution time p50/p90; first-time-fix and reopen rates; per-staff
//! workload and handling rate; the satisfaction distribution; complaints;
//! tickets opened and resolved per day, week or month. Over the tickets
//! *created* in `[from, to)`; SLA compliance ([`SlaCompliance`]) per clock
//! and priority, from the breaches the escalation pass recorded.
//!
//! Read from what migration 0038 keeps as tickets change (the triggers on
//! `tickets` are its only writers, so the figures always equal a count
//! over the tickets themselves): per hour, day and week of creation, how
//! many tickets count under each key (`desk_stats_rollup`); per ticket,
//! its response and resolution time and their magnitude bucket
//! (`ticket_clock_facts`). A range is split into whole weeks, days and
//! hours read from the rollup plus the seconds at either end counted from
//! the tickets ([`pieces`], pure); a percentile's bucket is found from the
//! counts ([`locate`], pure) and only that bucket is sorted. A quarter at
//! 100,000 tickets thus reads a few thousand rows instead of evaluating
//! every figure over 25,000 tickets (README, "Desk stats").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::priority::Priority;
use super::tickets::{Channel, Kind, State};
use super::{Desk, DeskError, on_desk};
use crate::users::User;
use crate::{db, range};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    #[default]
    Day,
    Week,
    Month,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// RFC 3339 or `YYYY-MM-DD`; 30 days before `to` when omitted.
    pub from: Option<String>,
    /// RFC 3339 or `YYYY-MM-DD` (exclusive); now when omitted.
    pub to: Option<String>,
    pub group_by: Option<GroupBy>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct StaffFigures {
    pub user_id: String,
    pub name: String,
    pub assigned: i64,
    pub resolved: i64,
    /// resolved / assigned.
    pub handling_rate: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Period {
    pub period: String,
    pub created: i64,
    pub resolved: i64,
    /// SLA compliance of the period's tickets (as [`SlaCompliance`]).
    pub response_compliance: Option<f64>,
    pub resolution_compliance: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub from: String,
    pub to: String,
    pub total: i64,
    pub by_kind: BTreeMap<String, i64>,
    pub by_channel: BTreeMap<String, i64>,
    pub by_priority: BTreeMap<String, i64>,
    pub by_state: BTreeMap<String, i64>,
    pub response: Percentiles,
    pub resolution: Percentiles,
    /// Of the resolved or closed tickets, the share never reopened.
    pub first_time_fix_rate: Option<f64>,
    pub reopen_rate: Option<f64>,
    /// Counts of ratings 1..5.
    pub satisfaction: BTreeMap<String, i64>,
    pub satisfaction_average: Option<f64>,
    /// Closed without a rating (the reporter never answered).
    pub unrated: i64,
    pub complaints: i64,
    /// Of those, the ones an admin answered in writing.
    pub complaints_replied: i64,
    pub per_staff: Vec<StaffFigures>,
    pub series: Vec<Period>,
    /// Share of the finished clocks (both kinds, all priorities) that met
    /// their target; `null` when none finished.
    pub sla_compliance: Option<f64>,
    pub sla: SlaCompliance,
}

/// Met / breached counts of one clock kind.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct ClockFigures {
    /// Stopped in time (responded / resolved with no breach recorded).
    pub met: i64,
    /// Breach recorded by the escalation pass (stopped late, or still open).
    pub breached: i64,
    /// met / (met + breached).
    pub compliance: Option<f64>,
}

impl ClockFigures {
    fn new(met: i64, breached: i64) -> Self {
        Self {
            met,
            breached,
            compliance: rate(met, met + breached),
        }
    }
}

/// SLA compliance of the tickets in range: a clock counts as *breached*
/// once the escalation pass recorded its breach (open or not), as *met*
/// once it stopped without one; running clocks not yet breached do not
/// count. Per priority (`P1`..`P4`) and overall.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct SlaCompliance {
    pub response: ClockFigures,
    pub resolution: ClockFigures,
    pub by_priority: BTreeMap<String, SlaPriority>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct SlaPriority {
    pub response: ClockFigures,
    pub resolution: ClockFigures,
}

/// One priority's compliance counts: priority, response met / breached,
/// resolution met / breached.
type SlaRow = (String, i64, i64, i64, i64);

/// The four compliance counters of a priority (see [`SlaCompliance`]), as
/// the rollup names them (migration 0038, `ticket_stat_keys`).
const SLA_KEYS: [&str; 4] = [
    "response_met",
    "response_breached",
    "resolution_met",
    "resolution_breached",
];

fn sla_key(p: Priority, which: &str) -> String {
    format!("sla:{}:{which}", p.as_str())
}

/// Sums the per-priority rows into [`SlaCompliance`] and the overall share (pure).
pub fn compliance(rows: &[SlaRow]) -> (SlaCompliance, Option<f64>) {
    let mut out = SlaCompliance::default();
    let (mut rm, mut rb, mut sm, mut sb) = (0, 0, 0, 0);
    for (p, r_met, r_breached, s_met, s_breached) in rows {
        out.by_priority.insert(
            p.clone(),
            SlaPriority {
                response: ClockFigures::new(*r_met, *r_breached),
                resolution: ClockFigures::new(*s_met, *s_breached),
            },
        );
        rm += r_met;
        rb += r_breached;
        sm += s_met;
        sb += s_breached;
    }
    out.response = ClockFigures::new(rm, rb);
    out.resolution = ClockFigures::new(sm, sb);
    (out, rate(rm + sm, rm + rb + sm + sb))
}

/// The compliance rows of the counts: one per priority with tickets.
fn sla_rows(c: &Counts) -> Vec<SlaRow> {
    Priority::ALL
        .iter()
        .filter(|p| c.get(&format!("priority:{}", p.as_str())) > 0)
        .map(|p| {
            let [a, b, d, e] = SLA_KEYS.map(|k| c.get(&sla_key(*p, k)));
            (p.as_str().to_owned(), a, b, d, e)
        })
        .collect()
}

/// SLA compliance of the tickets created in `[from, to)`: the figures
/// `GET /api/desk/stats` reports as `sla`, from the same counts — the
/// service levels' ticket-response objective reads it from here.
pub async fn sla_compliance(
    pool: &db::Pool,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<SlaCompliance, sqlx::Error> {
    let (from, to) = (utc_seconds(from), utc_seconds(to));
    if from >= to {
        return Ok(SlaCompliance::default());
    }
    let counts = Counts::read(pool, &pieces(from, to)).await?;
    Ok(compliance(&sla_rows(&counts)).0)
}

pub use crate::quantile::{nearest_rank, percentile};

fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl Desk {
    pub async fn stats(&self, actor: &User, q: &StatsQuery) -> Result<Stats, DeskError> {
        if !on_desk(actor) {
            return Err(DeskError::Forbidden(
                "the desk's figures are for staff and admins".into(),
            ));
        }
        let to = match &q.to {
            Some(s) => range::parse_bound("to", s)?,
            // Exclusive, and times are stored to the second: what was made
            // this very second counts.
            None => OffsetDateTime::now_utc() + time::Duration::seconds(1),
        };
        let from = match &q.from {
            Some(s) => range::parse_bound("from", s)?,
            None => to - time::Duration::days(30),
        };
        range::check(from, to, None)?;
        let (start, end) = (utc_seconds(from), utc_seconds(to));
        let (from, to) = (db::format_time(from), db::format_time(to));
        let group_by = q.group_by.unwrap_or_default();
        let pieces = pieces(start, end);
        let c = Counts::read(&self.pool, &pieces).await?;
        let series = read_series(&self.pool, &pieces, group_by).await?;
        let bounds = (db::format_time(start), db::format_time(end));
        let response = clock_percentiles(&self.pool, Clock::Response, &c, &bounds).await?;
        let resolution = clock_percentiles(&self.pool, Clock::Resolution, &c, &bounds).await?;
        let per_staff = per_staff(&self.pool, &c).await?;

        let counts = |prefix: &str, names: &[&str]| -> BTreeMap<String, i64> {
            names
                .iter()
                .map(|n| ((*n).to_owned(), c.get(&format!("{prefix}:{n}"))))
                .filter(|(_, c)| *c > 0)
                .collect()
        };
        let by_kind = counts(
            "kind",
            &Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        );
        let by_channel = counts(
            "channel",
            &Channel::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        );
        let by_priority = counts(
            "priority",
            &Priority::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        );
        let by_state = counts(
            "state",
            &State::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        );
        let satisfaction = counts("rating", &RATINGS);
        let rated: i64 = satisfaction.values().sum();
        let rating_sum: i64 = satisfaction
            .iter()
            .map(|(k, n)| k.parse::<i64>().unwrap_or(0) * n)
            .sum();
        let (done, first_time) = (c.get("done"), c.get("first_time"));
        let (sla, sla_compliance) = compliance(&sla_rows(&c));

        Ok(Stats {
            from,
            to,
            total: c.get("total"),
            by_kind,
            by_channel,
            by_priority,
            by_state,
            response,
            resolution,
            first_time_fix_rate: rate(first_time, done),
            reopen_rate: rate(done - first_time, done),
            satisfaction_average: rate(rating_sum, rated),
            satisfaction,
            unrated: c.get("unrated"),
            complaints: c.get(&format!("kind:{}", Kind::Complaint.as_str())),
            complaints_replied: c.get("complaint_replied"),
            per_staff,
            series,
            sla_compliance,
            sla,
        })
    }
}

const RATINGS: [&str; 5] = ["1", "2", "3", "4", "5"];

/// `t` in UTC, to the second: the times tickets are stored with.
fn utc_seconds(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Where the figures of `[from, to)` are read from (see [`pieces`]).
#[derive(Debug, PartialEq)]
struct Pieces {
    /// Created-at ranges counted from the tickets themselves: the seconds
    /// before the first whole hour and after the last.
    edges: Vec<(String, String)>,
    /// Rollup ranges `(span, first start, end start)` that together cover
    /// the whole hours between the edges, as few rows as possible: hours
    /// up to the first midnight, days up to the first Monday, weeks, then
    /// days and hours again.
    totals: Vec<(&'static str, String, String)>,
    /// The same hours in hours and days only: a week may straddle the
    /// periods the series group by (a month, or a year's `%W` weeks).
    series: Vec<(&'static str, String, String)>,
}

/// Splits `[from, to)` (UTC, whole seconds) into [`Pieces`] (pure).
fn pieces(from: OffsetDateTime, to: OffsetDateTime) -> Pieces {
    use time::{Duration, Time};
    let hour = |t: OffsetDateTime| {
        t.replace_time(Time::from_hms(t.hour(), 0, 0).unwrap_or(Time::MIDNIGHT))
    };
    let day = |t: OffsetDateTime| t.replace_time(Time::MIDNIGHT);
    let week = |t: OffsetDateTime| {
        day(t) - Duration::days(i64::from(t.weekday().number_days_from_monday()))
    };
    let ceil = |f: &dyn Fn(OffsetDateTime) -> OffsetDateTime, t: OffsetDateTime, step: Duration| {
        if f(t) == t { t } else { f(t) + step }
    };
    let text = |t: OffsetDateTime, len: usize| db::format_time(t)[..len].to_owned();
    let mut p = Pieces {
        edges: Vec::new(),
        totals: Vec::new(),
        series: Vec::new(),
    };
    let mut edge = |a: OffsetDateTime, b: OffsetDateTime| {
        if a < b {
            p.edges.push((db::format_time(a), db::format_time(b)));
        }
    };
    let (a, b) = (ceil(&hour, from, Duration::HOUR), hour(to));
    if a >= b {
        edge(from, to);
        return p;
    }
    edge(from, a);
    edge(b, to);
    let span = |out: &mut Vec<_>, name: &'static str, x: OffsetDateTime, y: OffsetDateTime| {
        if x < y {
            let len = if name == "hour" { 13 } else { 10 };
            out.push((name, text(x, len), text(y, len)));
        }
    };
    let (c, d) = (ceil(&day, a, Duration::DAY), day(b));
    if c >= d {
        span(&mut p.totals, "hour", a, b);
        span(&mut p.series, "hour", a, b);
        return p;
    }
    for (x, y) in [(a, c), (d, b)] {
        span(&mut p.totals, "hour", x, y);
        span(&mut p.series, "hour", x, y);
    }
    span(&mut p.series, "day", c, d);
    let (e, f) = (ceil(&week, c, Duration::WEEK), week(d));
    if e >= f {
        span(&mut p.totals, "day", c, d);
    } else {
        span(&mut p.totals, "day", c, e);
        span(&mut p.totals, "week", e, f);
        span(&mut p.totals, "day", f, d);
    }
    p
}

/// The counters of a range (`key -> tickets`, as migration 0038's
/// `ticket_stat_keys` names them).
struct Counts(BTreeMap<String, i64>);

impl Counts {
    fn get(&self, key: &str) -> i64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// `(value, count)` of the keys `prefix:<integer>`, by value.
    fn numbered(&self, prefix: &str) -> Vec<(i64, i64)> {
        let mut v: Vec<(i64, i64)> = self
            .0
            .iter()
            .filter_map(|(k, n)| Some((k.strip_prefix(prefix)?.parse().ok()?, *n)))
            .collect();
        v.sort_unstable();
        v
    }

    /// One statement: the rollup's rows of each piece and the edges'
    /// tickets, summed per key.
    async fn read(pool: &db::Pool, p: &Pieces) -> Result<Self, sqlx::Error> {
        let mut arms = Vec::new();
        let mut binds = Vec::new();
        for (span, a, b) in &p.totals {
            arms.push(format!(
                "SELECT key, n FROM desk_stats_rollup WHERE span = '{span}' AND start >= ? AND start < ?"
            ));
            binds.extend([a, b]);
        }
        for (a, b) in &p.edges {
            arms.push(
                "SELECT key, 1 AS n FROM ticket_stat_keys WHERE created_at >= ? AND created_at < ?"
                    .into(),
            );
            binds.extend([a, b]);
        }
        let sql = db::numbered(&format!(
            "SELECT key, CAST(SUM(n) AS BIGINT) FROM ({}) AS arms GROUP BY key",
            arms.join(" UNION ALL ")
        ));
        let mut q = sqlx::query_as::<_, (String, i64)>(&sql);
        for b in binds {
            q = q.bind(b);
        }
        Ok(Self(q.fetch_all(pool).await?.into_iter().collect()))
    }
}

/// Created and resolved tickets and SLA compliance per period: the series
/// keys of the hours and days of the range (and its edges' tickets),
/// summed per period.
async fn read_series(
    pool: &db::Pool,
    p: &Pieces,
    group_by: GroupBy,
) -> Result<Vec<Period>, sqlx::Error> {
    let period = |col: &str| match group_by {
        GroupBy::Day => format!("substr({col}, 1, 10)"),
        // SQLite's %W: the week of the year (00-53), weeks from Monday,
        // week 01 beginning on the year's first Monday.
        GroupBy::Week => match db::backend(pool) {
            db::Backend::Sqlite => format!("strftime('%Y-W%W', substr({col}, 1, 10))"),
            db::Backend::Postgres => format!(
                "(to_char(CAST(substr({col}, 1, 10) AS date), 'YYYY') || '-W' || lpad(CAST(\
                 (EXTRACT(DOY FROM CAST(substr({col}, 1, 10) AS date))::int + 6 \
                 - (EXTRACT(ISODOW FROM CAST(substr({col}, 1, 10) AS date))::int - 1)) / 7 AS text), 2, '0'))"
            ),
        },
        GroupBy::Month => format!("substr({col}, 1, 7)"),
    };
    let mut keys = vec!["'total'".to_owned(), "'resolved'".to_owned()];
    for pr in Priority::ALL {
        keys.extend(SLA_KEYS.map(|k| format!("'{}'", sla_key(*pr, k))));
    }
    let keys = keys.join(", ");
    let mut arms = Vec::new();
    let mut binds = Vec::new();
    for (span, a, b) in &p.series {
        arms.push(format!(
            "SELECT {} AS period, key, n FROM desk_stats_rollup INDEXED BY desk_stats_rollup_key
             WHERE span = '{span}' AND key IN ({keys}) AND start >= ? AND start < ?",
            period("start")
        ));
        binds.extend([a, b]);
    }
    for (a, b) in &p.edges {
        arms.push(format!(
            "SELECT {} AS period, key, 1 AS n FROM ticket_stat_keys
             WHERE key IN ({keys}) AND created_at >= ? AND created_at < ?",
            period("created_at")
        ));
        binds.extend([a, b]);
    }
    let sql = db::numbered(&format!(
        "SELECT period, key, CAST(SUM(n) AS BIGINT) FROM ({}) AS arms GROUP BY period, key ORDER BY period",
        arms.join(" UNION ALL ")
    ));
    let sql = db::index_hints(pool, &sql);
    let mut q = sqlx::query_as::<_, (String, String, i64)>(&sql);
    for b in binds {
        q = q.bind(b);
    }
    let mut periods: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (period, key, n) in q.fetch_all(pool).await? {
        periods.entry(period).or_default().insert(key, n);
    }
    Ok(periods
        .into_iter()
        .map(|(period, v)| {
            let c = Counts(v);
            let sum = |which: &str| -> i64 {
                Priority::ALL
                    .iter()
                    .map(|p| c.get(&sla_key(*p, which)))
                    .sum()
            };
            let [rm, rb, sm, sb] = SLA_KEYS.map(sum);
            Period {
                period,
                created: c.get("total"),
                resolved: c.get("resolved"),
                response_compliance: rate(rm, rm + rb),
                resolution_compliance: rate(sm, sm + sb),
            }
        })
        .collect())
}

#[derive(Debug, Clone, Copy)]
enum Clock {
    Response,
    Resolution,
}

impl Clock {
    /// The column prefix in `ticket_clock_facts`, and the counters' names.
    fn name(self) -> &'static str {
        match self {
            Clock::Response => "response",
            Clock::Resolution => "resolution",
        }
    }
}

/// Which bucket holds the `rank`-th smallest time (1-based) and its
/// 0-based place there, given the count of each bucket in bucket order
/// (pure).
fn locate(buckets: &[(i64, i64)], rank: usize) -> Option<(i64, usize)> {
    let mut before = 0usize;
    for (bucket, n) in buckets {
        let n = usize::try_from(*n).unwrap_or(0);
        if rank <= before + n {
            return Some((*bucket, rank.checked_sub(before + 1)?));
        }
        before += n;
    }
    None
}

/// Response or resolution time (seconds from creation) of the range's
/// tickets: the count and the p50/p90 by nearest rank. The counts per
/// bucket say which bucket holds each rank; only that bucket's times of
/// the range are sorted, read from the facts' index.
async fn clock_percentiles(
    pool: &db::Pool,
    clock: Clock,
    c: &Counts,
    (from, to): &(String, String),
) -> Result<Percentiles, sqlx::Error> {
    let name = clock.name();
    let count = usize::try_from(c.get(match clock {
        Clock::Response => "responded",
        Clock::Resolution => "resolved",
    }))
    .unwrap_or(0);
    let buckets = c.numbered(&format!("{name}_bucket:"));
    let at = |p: f64| {
        let place = nearest_rank(count, p).and_then(|r| locate(&buckets, r));
        async move {
            let Some((bucket, offset)) = place else {
                return Ok::<_, sqlx::Error>(None);
            };
            sqlx::query_scalar::<_, f64>(&db::index_hints(
                pool,
                &format!(
                    "SELECT {name}_s FROM ticket_clock_facts INDEXED BY ticket_clock_facts_{name}
                     WHERE {name}_bucket = $1 AND created_at >= $2 AND created_at < $3
                     ORDER BY {name}_s LIMIT 1 OFFSET $4"
                ),
            ))
            .bind(bucket)
            .bind(from)
            .bind(to)
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_optional(pool)
            .await
        }
    };
    let p50_seconds = at(50.0).await?;
    let p90_seconds = at(90.0).await?;
    Ok(Percentiles {
        count,
        p50_seconds,
        p90_seconds,
    })
}

/// Tickets assigned to and resolved by each engineer, most assigned first
/// (engineers no longer among the users left out).
async fn per_staff(pool: &db::Pool, c: &Counts) -> Result<Vec<StaffFigures>, sqlx::Error> {
    let assigned: Vec<(&str, i64)> =
        c.0.iter()
            .filter_map(|(k, n)| Some((k.strip_prefix("assigned:")?, *n)))
            .collect();
    if assigned.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::to_string(&assigned.iter().map(|(id, _)| id).collect::<Vec<_>>())
        .unwrap_or_default();
    let names: BTreeMap<String, String> = sqlx::query_as(
        "SELECT id, COALESCE(NULLIF(display_name, ''), username) FROM users
         WHERE id IN (SELECT value FROM json_each($1))",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let mut out: Vec<StaffFigures> = assigned
        .into_iter()
        .filter_map(|(id, assigned)| {
            let resolved = c.get(&format!("assigned_resolved:{id}"));
            Some(StaffFigures {
                user_id: id.to_owned(),
                name: names.get(id)?.clone(),
                assigned,
                resolved,
                handling_rate: rate(resolved, assigned),
            })
        })
        .collect();
    out.sort_by(|a, b| b.assigned.cmp(&a.assigned).then(a.user_id.cmp(&b.user_id)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).expect("time")
    }

    fn span(name: &'static str, a: &str, b: &str) -> (&'static str, String, String) {
        (name, a.into(), b.into())
    }

    #[test]
    fn a_range_is_weeks_days_hours_and_two_edges() {
        // Wednesday 10:30:15 to the Tuesday four weeks later, 08:00:05.
        let p = pieces(at("2026-01-07T10:30:15Z"), at("2026-02-03T08:00:05Z"));
        assert_eq!(
            p.edges,
            vec![
                ("2026-01-07T10:30:15Z".into(), "2026-01-07T11:00:00Z".into()),
                ("2026-02-03T08:00:00Z".into(), "2026-02-03T08:00:05Z".into()),
            ]
        );
        assert_eq!(
            p.totals,
            vec![
                span("hour", "2026-01-07T11", "2026-01-08T00"),
                span("hour", "2026-02-03T00", "2026-02-03T08"),
                span("day", "2026-01-08", "2026-01-12"),
                span("week", "2026-01-12", "2026-02-02"),
                span("day", "2026-02-02", "2026-02-03"),
            ]
        );
        assert_eq!(
            p.series,
            vec![
                span("hour", "2026-01-07T11", "2026-01-08T00"),
                span("hour", "2026-02-03T00", "2026-02-03T08"),
                span("day", "2026-01-08", "2026-02-03"),
            ]
        );
    }

    #[test]
    fn aligned_and_short_ranges_need_no_edges_or_only_edges() {
        // Whole days from a Monday: no hours, no edges, weeks then a day.
        let p = pieces(at("2026-01-05T00:00:00Z"), at("2026-01-20T00:00:00Z"));
        assert!(p.edges.is_empty());
        assert_eq!(
            p.totals,
            vec![
                span("week", "2026-01-05", "2026-01-19"),
                span("day", "2026-01-19", "2026-01-20"),
            ]
        );
        // Within one hour: the tickets themselves.
        let p = pieces(at("2026-01-05T10:05:00Z"), at("2026-01-05T10:55:00Z"));
        assert_eq!(p.edges.len(), 1);
        assert!(p.totals.is_empty() && p.series.is_empty());
        // Within one day: hours, no days.
        let p = pieces(at("2026-01-05T10:05:00Z"), at("2026-01-05T20:00:00Z"));
        assert_eq!(
            p.totals,
            vec![span("hour", "2026-01-05T11", "2026-01-05T20")]
        );
        assert_eq!(p.series, p.totals);
        // Days that reach no Monday: days only.
        let p = pieces(at("2026-01-06T00:00:00Z"), at("2026-01-09T00:00:00Z"));
        assert_eq!(p.totals, vec![span("day", "2026-01-06", "2026-01-09")]);
    }

    #[test]
    fn a_rank_is_located_in_its_bucket() {
        let b = [(26, 2), (31, 0), (40, 3)];
        assert_eq!(locate(&b, 1), Some((26, 0)));
        assert_eq!(locate(&b, 2), Some((26, 1)));
        assert_eq!(locate(&b, 3), Some((40, 0)));
        assert_eq!(locate(&b, 5), Some((40, 2)));
        assert_eq!(locate(&b, 6), None);
        assert_eq!(locate(&b, 0), None);
    }

    /// Every counter row, and every clock fact, as counted from scratch
    /// over the tickets by the views that define them.
    async fn drift(pool: &db::Pool) -> (i64, i64) {
        let rollup: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (
               SELECT * FROM (SELECT span, start, key, n FROM desk_stats_rollup
                              EXCEPT SELECT span, start, key, COUNT(*) FROM ticket_stat_rows GROUP BY 1, 2, 3)
               UNION ALL
               SELECT * FROM (SELECT span, start, key, COUNT(*) FROM ticket_stat_rows GROUP BY 1, 2, 3
                              EXCEPT SELECT span, start, key, n FROM desk_stats_rollup))",
        )
        .fetch_one(pool)
        .await
        .expect("rollup");
        let facts: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (
               SELECT * FROM (SELECT * FROM ticket_clock_facts EXCEPT SELECT * FROM ticket_clock_times)
               UNION ALL
               SELECT * FROM (SELECT * FROM ticket_clock_times EXCEPT SELECT * FROM ticket_clock_facts))",
        )
        .fetch_one(pool)
        .await
        .expect("facts");
        (rollup, facts)
    }

    async fn keys(pool: &db::Pool, id: &str) -> Vec<String> {
        sqlx::query_scalar("SELECT key FROM ticket_stat_keys WHERE ticket_id = $1 ORDER BY key")
            .bind(id)
            .fetch_all(pool)
            .await
            .expect("keys")
    }

    #[tokio::test]
    async fn a_ticket_counts_under_its_keys_and_the_rollup_follows_every_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = db::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .expect("db");
        let exec = |sql: &'static str| {
            let pool = pool.clone();
            async move { sqlx::query(sql).execute(&pool).await.expect(sql) }
        };
        exec(
            "INSERT INTO users (id, username, display_name, role, password_hash, created_at)
             VALUES ('u', 'test-u', '', 'admin', 'x', '2026-01-01T00:00:00Z'),
                    ('s', 'test-s', '', 'admin', 'x', '2026-01-01T00:00:00Z')",
        )
        .await;
        // A closed P2 complaint, answered after 60 s and resolved after an
        // hour, rated 4; an open P3 incident with a response breach.
        exec(
            "INSERT INTO tickets (id, number, kind, title, description, state, priority, impact, urgency,
                 channel, reporter_id, created_by, assignee_id, created_at, updated_at, responded_at,
                 resolved_at, rating, replied_at)
             VALUES ('a', 1, 'complaint', 't', 'd', 'closed', 'P2', 'x', 'y', 'web', 'u', 'u', 's',
                     '2026-01-07T10:00:00Z', '2026-01-07T10:00:00Z', '2026-01-07T10:01:00Z',
                     '2026-01-07T11:00:00Z', 4, '2026-01-07T10:01:00Z'),
                    ('b', 2, 'incident', 't', 'd', 'in_progress', 'P3', 'x', 'y', 'phone', 'u', 'u', 's',
                     '2026-01-07T10:30:00Z', '2026-01-07T10:30:00Z', NULL, NULL, NULL, NULL)",
        )
        .await;
        assert_eq!(
            keys(&pool, "a").await,
            [
                "assigned:s",
                "assigned_resolved:s",
                "channel:web",
                "complaint_replied",
                "done",
                "first_time",
                "kind:complaint",
                "priority:P2",
                "rating:4",
                // 60 s: 2 digits, 60 >= 56 (9 steps); 3,600 s: 4 digits, 36 >= 33 (6).
                "resolution_bucket:54",
                "resolved",
                "responded",
                "response_bucket:33",
                "sla:P2:resolution_met",
                "sla:P2:response_met",
                "state:closed",
                "total",
            ]
        );
        assert_eq!(drift(&pool).await, (0, 0));
        // Each kind of write: the escalation pass's breach, a state change,
        // a reopen, a rating, a creation time moved to another week, an
        // unrelated column, a deletion.
        for sql in [
            "UPDATE tickets SET response_breached_at = '2026-01-07T11:30:00Z' WHERE id = 'b'",
            "UPDATE tickets SET state = 'resolved', responded_at = '2026-01-07T10:35:00Z',
                 resolved_at = '2026-01-08T10:30:00Z' WHERE id = 'b'",
            "UPDATE tickets SET state = 'assigned', resolved_at = NULL, reopen_count = 1 WHERE id = 'b'",
            "UPDATE tickets SET state = 'closed', rating = 2 WHERE id = 'a'",
            "UPDATE tickets SET created_at = '2025-12-31T23:59:59Z' WHERE id = 'a'",
            "UPDATE tickets SET title = 'x', updated_at = '2026-02-01T00:00:00Z' WHERE id = 'a'",
            "DELETE FROM tickets WHERE id = 'a'",
        ] {
            sqlx::query(sql).execute(&pool).await.expect(sql);
            assert_eq!(drift(&pool).await, (0, 0), "{sql}");
        }
        let b = keys(&pool, "b").await;
        assert!(b.contains(&"sla:P3:response_breached".to_owned()), "{b:?}");
        assert!(!b.iter().any(|k| k.starts_with("resolution")), "{b:?}");
        exec("DELETE FROM tickets").await;
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM desk_stats_rollup")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(left, 0);
    }

    #[test]
    fn compliance_sums_priorities_and_clocks() {
        let (none, overall) = compliance(&[]);
        assert_eq!(overall, None);
        assert_eq!(none.response.compliance, None);
        let (c, overall) = compliance(&[("P1".into(), 1, 1, 0, 2), ("P3".into(), 3, 0, 4, 0)]);
        assert_eq!(
            c.response,
            ClockFigures {
                met: 4,
                breached: 1,
                compliance: Some(0.8)
            }
        );
        assert_eq!(
            c.resolution,
            ClockFigures {
                met: 4,
                breached: 2,
                compliance: Some(4.0 / 6.0)
            }
        );
        assert_eq!(c.by_priority["P1"].resolution.compliance, Some(0.0));
        assert_eq!(c.by_priority["P3"].response.compliance, Some(1.0));
        assert_eq!(overall, Some(8.0 / 11.0));
    }
}
