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
use time::format_description::well_known::Rfc3339;

use super::{Desk, DeskError, on_desk};
use crate::db;
use crate::users::User;

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
/// (see [`SlaCompliance`]); a resolved or closed ticket's resolution clock
/// has stopped (a reopened one runs again).
const SLA_SUMS: &str =
    "COALESCE(SUM(responded_at IS NOT NULL AND response_breached_at IS NULL), 0),
    COALESCE(SUM(response_breached_at IS NOT NULL), 0),
    COALESCE(SUM(state IN ('resolved', 'closed') AND resolution_breached_at IS NULL), 0),
    COALESCE(SUM(resolution_breached_at IS NOT NULL), 0)";

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
    sqlx::query_as(&format!(
        "SELECT priority, {SLA_SUMS}
         FROM tickets WHERE created_at >= ?1 AND created_at < ?2 GROUP BY priority ORDER BY priority"
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

pub use crate::quantile::percentile;

fn parse_bound(field: &str, s: &str) -> Result<OffsetDateTime, DeskError> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| DeskError::Invalid(format!("{field}: RFC 3339 or YYYY-MM-DD")))
}

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
            Some(s) => parse_bound("to", s)?,
            // Exclusive, and times are stored to the second: what was made
            // this very second counts.
            None => OffsetDateTime::now_utc() + time::Duration::seconds(1),
        };
        let from = match &q.from {
            Some(s) => parse_bound("from", s)?,
            None => to - time::Duration::days(30),
        };
        if from >= to {
            return Err(DeskError::Invalid("from must be before to".into()));
        }
        let (from, to) = (db::format_time(from), db::format_time(to));
        let range = "created_at >= ?1 AND created_at < ?2";
        let count_by = |col: &'static str| {
            let sql = format!("SELECT {col}, COUNT(*) FROM tickets WHERE {range} GROUP BY {col}");
            let (from, to) = (from.clone(), to.clone());
            let pool = self.pool.clone();
            async move {
                let rows: Vec<(Option<String>, i64)> = sqlx::query_as(&sql)
                    .bind(from)
                    .bind(to)
                    .fetch_all(&pool)
                    .await?;
                Ok::<_, sqlx::Error>(
                    rows.into_iter()
                        .map(|(k, n)| (k.unwrap_or_else(|| "none".into()), n))
                        .collect::<BTreeMap<_, _>>(),
                )
            }
        };
        let by_kind = count_by("kind").await?;
        let by_channel = count_by("channel").await?;
        let by_priority = count_by("priority").await?;
        let by_state = count_by("state").await?;
        let total = by_kind.values().sum();
        let satisfaction: BTreeMap<String, i64> = count_by("CAST(rating AS TEXT)")
            .await?
            .into_iter()
            .filter(|(k, _)| k != "none")
            .collect();
        let rated: i64 = satisfaction.values().sum();
        let rating_sum: i64 = satisfaction
            .iter()
            .map(|(k, n)| k.parse::<i64>().unwrap_or(0) * n)
            .sum();

        let durations = |end: &'static str| {
            let sql = format!(
                "SELECT (julianday({end}) - julianday(created_at)) * 86400.0 FROM tickets
                 WHERE {range} AND {end} IS NOT NULL"
            );
            let (from, to) = (from.clone(), to.clone());
            let pool = self.pool.clone();
            async move {
                let mut v: Vec<f64> = sqlx::query_scalar(&sql)
                    .bind(from)
                    .bind(to)
                    .fetch_all(&pool)
                    .await?;
                Ok::<_, sqlx::Error>(Percentiles {
                    count: v.len(),
                    p50_seconds: percentile(&mut v, 50.0),
                    p90_seconds: percentile(&mut v, 90.0),
                })
            }
        };
        let response = durations("responded_at").await?;
        let resolution = durations("resolved_at").await?;

        // `+state`: the range decides the index (the covering
        // `tickets_stats`); an index on state would read every finished
        // ticket of all time.
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS done,
                    COALESCE(SUM(reopen_count = 0), 0) AS first_time,
                    COALESCE(SUM(state = 'closed' AND rating IS NULL), 0) AS unrated,
                    COALESCE(SUM(kind = 'complaint'), 0) AS complaints
             FROM tickets WHERE {range} AND +state IN ('resolved', 'closed')"
        ))
        .bind(&from)
        .bind(&to)
        .fetch_one(&self.pool)
        .await?;
        let done: i64 = row.try_get("done")?;
        let first_time: i64 = row.try_get("first_time")?;
        let complaints: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM tickets WHERE {range} AND kind = 'complaint'"
        ))
        .bind(&from)
        .bind(&to)
        .fetch_one(&self.pool)
        .await?;
        let complaints_replied: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM tickets WHERE {range} AND kind = 'complaint' AND replied_at IS NOT NULL"
        ))
        .bind(&from)
        .bind(&to)
        .fetch_one(&self.pool)
        .await?;

        let staff_rows = sqlx::query(
            "SELECT t.assignee_id, COALESCE(NULLIF(u.display_name, ''), u.username) AS name,
                    COUNT(*) AS assigned, COALESCE(SUM(t.resolved_at IS NOT NULL), 0) AS resolved
             FROM tickets t JOIN users u ON u.id = t.assignee_id
             WHERE t.created_at >= ?1 AND t.created_at < ?2
             GROUP BY t.assignee_id ORDER BY assigned DESC",
        )
        .bind(&from)
        .bind(&to)
        .fetch_all(&self.pool)
        .await?;
        let per_staff = staff_rows
            .iter()
            .map(|r| {
                let assigned: i64 = r.try_get("assigned")?;
                let resolved: i64 = r.try_get("resolved")?;
                Ok(StaffFigures {
                    user_id: r.try_get("assignee_id")?,
                    name: r.try_get("name")?,
                    assigned,
                    resolved,
                    handling_rate: rate(resolved, assigned),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;

        let key = match q.group_by.unwrap_or_default() {
            GroupBy::Day => "substr(created_at, 1, 10)",
            GroupBy::Week => "strftime('%Y-W%W', created_at)",
            GroupBy::Month => "substr(created_at, 1, 7)",
        };
        let series: Vec<(String, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(&format!(
            "SELECT {key} AS period, COUNT(*), COALESCE(SUM(resolved_at IS NOT NULL), 0),
                    {SLA_SUMS}
             FROM tickets WHERE {range} GROUP BY period ORDER BY period"
        ))
        .bind(&from)
        .bind(&to)
        .fetch_all(&self.pool)
        .await?;

        let (sla, sla_compliance) = compliance(&sla_rows(&self.pool, &from, &to).await?);

        Ok(Stats {
            from,
            to,
            total,
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
            unrated: row.try_get("unrated")?,
            complaints,
            complaints_replied,
            per_staff,
            series: series
                .into_iter()
                .map(|(period, created, resolved, rm, rb, sm, sb)| Period {
                    period,
                    created,
                    resolved,
                    response_compliance: rate(rm, rm + rb),
                    resolution_compliance: rate(sm, sm + sb),
                })
                .collect(),
            sla_compliance,
            sla,
        })
    }
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

    #[test]
    fn bounds_take_rfc3339_or_a_date() {
        assert!(parse_bound("from", "2026-03-01").is_ok());
        assert!(parse_bound("from", "2026-03-01T08:00:00Z").is_ok());
        assert!(parse_bound("from", "March").is_err());
    }
}
