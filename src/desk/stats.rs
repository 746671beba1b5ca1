//! The desk's figures (seed 004: daily, monthly, quarterly; engineers'
//! handling rate): tickets by kind, channel, priority and state; response
//! and resolution time p50/p90; first-time-fix and reopen rates; per-staff
//! workload and handling rate; the satisfaction distribution; complaints;
//! tickets opened and resolved per day, week or month. Over the tickets
//! *created* in `[from, to)`; SLA compliance ([`SlaCompliance`]) per clock
//! and priority, from the breaches the escalation pass recorded.
//!
//! The percentile is pure ([`percentile`]); the rest is SQL over indexed
//! columns (`tickets_created`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;
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

/// One row of the compliance query: priority, response met / breached,
/// resolution met / breached.
type SlaRow = (String, i64, i64, i64, i64);

/// Response met, response breached, resolution met, resolution breached
/// (see [`SlaCompliance`]): the conditions counted, in that order; a
/// resolved or closed ticket's resolution clock has stopped (a reopened one
/// runs again).
const SLA_SUMS: [&str; 4] = [
    "responded_at IS NOT NULL AND response_breached_at IS NULL",
    "response_breached_at IS NOT NULL",
    "state IN ('resolved', 'closed') AND resolution_breached_at IS NULL",
    "resolution_breached_at IS NOT NULL",
];

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

/// The compliance rows of the tickets created in `[from, to)` (text
/// times), one pass per priority.
async fn sla_rows(pool: &db::Pool, from: &str, to: &str) -> Result<Vec<SlaRow>, sqlx::Error> {
    let sums = SLA_SUMS
        .map(|c| format!("COALESCE(SUM({c}), 0)"))
        .join(", ");
    sqlx::query_as(&format!(
        "SELECT priority, {sums} FROM tickets {RANGE} GROUP BY priority ORDER BY priority"
    ))
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}

/// SLA compliance of the tickets created in `[from, to)` (text times): the
/// figures `GET /api/desk/stats` reports as `sla`, by the same query — the
/// service levels' ticket-response objective reads it from here.
pub async fn sla_compliance(
    pool: &db::Pool,
    from: &str,
    to: &str,
) -> Result<SlaCompliance, sqlx::Error> {
    Ok(compliance(&sla_rows(pool, from, to).await?).0)
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
        let (from, to) = (db::format_time(from), db::format_time(to));
        let key = match q.group_by.unwrap_or_default() {
            GroupBy::Day => "substr(created_at, 1, 10)",
            GroupBy::Week => "strftime('%Y-W%W', created_at)",
            GroupBy::Month => "substr(created_at, 1, 7)",
        };
        let tally = Tally::read(&self.pool, key, &from, &to).await?;
        let l = &tally.layout;
        let t = &tally.totals;
        let (response, resolution) =
            durations(&self.pool, (t[l.responded], t[l.resolved]), &from, &to).await?;
        let per_staff = per_staff(&self.pool, &from, &to).await?;
        let complaints_replied: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM tickets {RANGE} AND kind = 'complaint' AND replied_at IS NOT NULL"
        ))
        .bind(&from)
        .bind(&to)
        .fetch_one(&self.pool)
        .await?;

        let counts = |names: &[&str], at: usize| -> BTreeMap<String, i64> {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| ((*n).to_owned(), t[at + i]))
                .filter(|(_, c)| *c > 0)
                .collect()
        };
        let by_kind = counts(
            &Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            l.kind,
        );
        let by_channel = counts(
            &Channel::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            l.channel,
        );
        let by_priority = counts(
            &Priority::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            l.priority,
        );
        let by_state = counts(
            &State::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            l.state,
        );
        let satisfaction = counts(&RATINGS, l.rating);
        let rated: i64 = satisfaction.values().sum();
        let rating_sum: i64 = satisfaction
            .iter()
            .map(|(k, n)| k.parse::<i64>().unwrap_or(0) * n)
            .sum();
        let (done, first_time) = (t[l.done], t[l.first_time]);
        let sla_rows: Vec<SlaRow> = Priority::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| t[l.priority + i] > 0)
            .map(|(i, p)| {
                let c = l.sla + 4 * i;
                (p.as_str().to_owned(), t[c], t[c + 1], t[c + 2], t[c + 3])
            })
            .collect();
        let (sla, sla_compliance) = compliance(&sla_rows);

        Ok(Stats {
            from,
            to,
            total: t[l.total],
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
            unrated: t[l.unrated],
            complaints: t[l.kind + kind_index(Kind::Complaint)],
            complaints_replied,
            per_staff,
            series: tally
                .periods
                .into_iter()
                .map(|(period, v)| {
                    let (mut rm, mut rb, mut sm, mut sb) = (0, 0, 0, 0);
                    for i in 0..Priority::ALL.len() {
                        let c = l.sla + 4 * i;
                        rm += v[c];
                        rb += v[c + 1];
                        sm += v[c + 2];
                        sb += v[c + 3];
                    }
                    Period {
                        period,
                        created: v[l.total],
                        resolved: v[l.resolved],
                        response_compliance: rate(rm, rm + rb),
                        resolution_compliance: rate(sm, sm + sb),
                    }
                })
                .collect(),
            sla_compliance,
            sla,
        })
    }
}

/// The tickets created in `[?1, ?2)`, read through the covering index
/// `tickets_stats` (migration 0021). Named because the server never runs
/// `ANALYZE`, and without statistics SQLite's planner sometimes took the
/// narrower `tickets_created` and read every row from the table — ten times
/// slower at 100,000 tickets.
const RANGE: &str = "INDEXED BY tickets_stats WHERE created_at >= ?1 AND created_at < ?2";

const RATINGS: [&str; 5] = ["1", "2", "3", "4", "5"];

fn kind_index(kind: Kind) -> usize {
    Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

/// Where each count sits in a [`Tally`] row: the counts of one pass, built
/// from the enums so a new state or channel is counted without a new query.
struct Layout {
    total: usize,
    resolved: usize,
    responded: usize,
    kind: usize,
    channel: usize,
    priority: usize,
    state: usize,
    rating: usize,
    done: usize,
    first_time: usize,
    unrated: usize,
    /// Per priority (in [`Priority::ALL`] order) the four [`SLA_SUMS`].
    sla: usize,
    exprs: Vec<String>,
}

impl Layout {
    fn new() -> Self {
        let mut exprs: Vec<String> = Vec::new();
        let mut add = |e: String| {
            exprs.push(e);
            exprs.len() - 1
        };
        let total = add("COUNT(*)".into());
        let resolved = add("SUM(resolved_at IS NOT NULL)".into());
        let responded = add("SUM(responded_at IS NOT NULL)".into());
        let each = |add: &mut dyn FnMut(String) -> usize, col: &str, values: &[&str]| {
            let at = values
                .iter()
                .map(|v| add(format!("SUM({col} = '{v}')")))
                .collect::<Vec<_>>();
            at[0]
        };
        let kind = each(
            &mut add,
            "kind",
            &Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        );
        let channel = each(
            &mut add,
            "channel",
            &Channel::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        );
        let priority = each(
            &mut add,
            "priority",
            &Priority::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        );
        let state = each(
            &mut add,
            "state",
            &State::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        );
        let rating = each(&mut add, "CAST(rating AS TEXT)", &RATINGS);
        let done = add("SUM(state IN ('resolved', 'closed'))".into());
        let first_time = add("SUM(state IN ('resolved', 'closed') AND reopen_count = 0)".into());
        let unrated = add("SUM(state = 'closed' AND rating IS NULL)".into());
        let mut sla = None;
        for p in Priority::ALL {
            for sum in SLA_SUMS {
                let i = add(format!("SUM(priority = '{}' AND {sum})", p.as_str()));
                sla.get_or_insert(i);
            }
        }
        Self {
            total,
            resolved,
            responded,
            kind,
            channel,
            priority,
            state,
            rating,
            done,
            first_time,
            unrated,
            sla: sla.unwrap_or(0),
            exprs,
        }
    }
}

/// Every count of the figures in one pass over the range: per period and
/// summed.
struct Tally {
    layout: Layout,
    periods: Vec<(String, Vec<i64>)>,
    totals: Vec<i64>,
}

impl Tally {
    async fn read(pool: &db::Pool, key: &str, from: &str, to: &str) -> Result<Self, sqlx::Error> {
        let layout = Layout::new();
        let sql = format!(
            "SELECT {key} AS period, {} FROM tickets {RANGE} GROUP BY period ORDER BY period",
            layout.exprs.join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?;
        let mut totals = vec![0; layout.exprs.len()];
        let mut periods = Vec::with_capacity(rows.len());
        for r in &rows {
            let v = (0..layout.exprs.len())
                .map(|i| r.try_get::<i64, _>(i + 1))
                .collect::<Result<Vec<i64>, _>>()?;
            for (t, x) in totals.iter_mut().zip(&v) {
                *t += x;
            }
            periods.push((r.try_get::<String, _>(0)?, v));
        }
        Ok(Self {
            layout,
            periods,
            totals,
        })
    }
}

/// Response and resolution times (seconds from creation) of the range's
/// tickets: the count and the p50/p90 by nearest rank, picked in SQL — the
/// values themselves never cross into Rust (a quarter holds ~25,000 of them,
/// and reading each row through the driver cost more than the scan).
async fn durations(
    pool: &db::Pool,
    counts: (i64, i64),
    from: &str,
    to: &str,
) -> Result<(Percentiles, Percentiles), sqlx::Error> {
    Ok((
        clock_percentiles(pool, "responded_at", counts.0, from, to).await?,
        clock_percentiles(pool, "resolved_at", counts.1, from, to).await?,
    ))
}

/// `n`: how many of the range's tickets have `end` set (from the tally).
async fn clock_percentiles(
    pool: &db::Pool,
    end: &str,
    n: i64,
    from: &str,
    to: &str,
) -> Result<Percentiles, sqlx::Error> {
    let seconds = format!(
        "SELECT (julianday({end}) - julianday(created_at)) * 86400.0 AS s
         FROM tickets {RANGE} AND {end} IS NOT NULL"
    );
    let count = usize::try_from(n).unwrap_or(0);
    let (Some(r50), Some(r90)) = (nearest_rank(count, 50.0), nearest_rank(count, 90.0)) else {
        return Ok(Percentiles {
            count,
            p50_seconds: None,
            p90_seconds: None,
        });
    };
    let picked: Vec<(i64, f64)> = sqlx::query_as(&format!(
        "SELECT rn, s FROM (SELECT s, row_number() OVER (ORDER BY s) AS rn FROM ({seconds}))
         WHERE rn IN (?3, ?4)"
    ))
    .bind(from)
    .bind(to)
    .bind(i64::try_from(r50).unwrap_or(i64::MAX))
    .bind(i64::try_from(r90).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    let at = |r: usize| {
        picked
            .iter()
            .find(|(rn, _)| usize::try_from(*rn).ok() == Some(r))
            .map(|(_, s)| *s)
    };
    Ok(Percentiles {
        count,
        p50_seconds: at(r50),
        p90_seconds: at(r90),
    })
}

/// Tickets assigned to and resolved by each engineer, most assigned first.
async fn per_staff(
    pool: &db::Pool,
    from: &str,
    to: &str,
) -> Result<Vec<StaffFigures>, sqlx::Error> {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(&format!(
        "SELECT s.assignee_id, COALESCE(NULLIF(u.display_name, ''), u.username), s.assigned, s.resolved
         FROM (SELECT assignee_id, COUNT(*) AS assigned, SUM(resolved_at IS NOT NULL) AS resolved
               FROM tickets {RANGE} AND assignee_id IS NOT NULL GROUP BY assignee_id) s
         JOIN users u ON u.id = s.assignee_id
         ORDER BY s.assigned DESC, s.assignee_id"
    ))
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, name, assigned, resolved)| StaffFigures {
            user_id,
            name,
            assigned,
            resolved,
            handling_rate: rate(resolved, assigned),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
