//! Reading the recorded node samples into the series the alert engine takes.
//!
//! The sampler ([`crate::monitor`]) keeps raw samples for two hours and
//! per-minute averages for eight days; a series here is the minute averages
//! up to the newest rolled-up minute of the node, then the raw samples after
//! it — each moment counted once. So today's samples give the current value,
//! and the week-old ones the first week of a baseline; baselines over more
//! weeks come from the loop's own copy of the series, one point per
//! [`BASELINE_STEP_SECS`], kept as many weeks as the rule's baseline looks
//! back (`alert_samples`, see [`observe`]).
//!
//! [`observe`] gathers, for every rule of a set, one observation per subject
//! at an instant: node load from the samples, node state and failures from
//! the `nodes` table and the event log, store and layer-storage use (whose
//! history the loop records itself in `alert_samples`, for forecasts), and
//! start failures, console errors and each objective's burn rate from the
//! service levels ([`crate::slo::Slo::alert_signals`]: the last hour's
//! figures, computed as the SLO and status pages compute them, never
//! re-derived here).

use std::path::Path;

use uuid::Uuid;

use super::rules::{Metric, RuleSet};
use super::{DAY, Point, WEEK};
use crate::db::{self, Pool};

/// A node's series the rules use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeSeries {
    /// Host CPU busy, %; samples without a CPU figure are left out.
    CpuPercent,
    /// Host memory in use, % of the total; samples with no total are left out.
    MemoryPercent,
}

impl NodeSeries {
    fn expr(self) -> &'static str {
        match self {
            NodeSeries::CpuPercent => "cpu_percent",
            NodeSeries::MemoryPercent => {
                "CAST(CASE WHEN mem_total_mib > 0 THEN 100.0 * mem_used_mib / mem_total_mib END AS DOUBLE PRECISION)"
            }
        }
    }
}

/// The node's `series` for `from <= at < to` (Unix seconds), oldest first.
pub async fn node_series(
    pool: &Pool,
    node: Uuid,
    series: NodeSeries,
    from: i64,
    to: i64,
) -> Result<Vec<Point>, sqlx::Error> {
    let e = series.expr();
    // Both halves select `v` from the same expression; `e` is one of the
    // constants above, never user text.
    let sql = format!(
        "SELECT at, v FROM (
           SELECT at, {e} AS v FROM node_samples_minute
            WHERE node_id = $1 AND at >= $2 AND at < $3
           UNION ALL
           SELECT at, {e} AS v FROM node_samples
            WHERE node_id = $1 AND at >= $2 AND at < $3
              AND at >= COALESCE((SELECT MAX(at) + 60 FROM node_samples_minute WHERE node_id = $1), 0)
         ) AS samples WHERE v IS NOT NULL ORDER BY at"
    );
    let rows: Vec<(i64, f64)> = sqlx::query_as(&sql)
        .bind(node.to_string())
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(Point::from).collect())
}

/// A sample newer than this is the node's current value.
pub const FRESH_SECS: i64 = 300;
/// How long `alert_samples` rows of capacity series are kept (the forecast
/// trend is a week).
pub const KEEP_SECS: i64 = 8 * DAY;
/// A node-load series for a baseline is kept one point per this many
/// seconds (the sampler's minute rollups last only 8 days; a baseline needs
/// weeks).
pub const BASELINE_STEP_SECS: i64 = 600;

/// One rule's reading of one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub rule: String,
    pub metric: Metric,
    /// The alert's subject key: a node's id, `"site"`.
    pub subject: String,
    /// What the UI shows: a node's name, `"site"`.
    pub subject_name: String,
    pub node_id: Option<Uuid>,
    pub value: Option<f64>,
    /// Past values for the rule's baseline and forecast, oldest first.
    pub history: Vec<Point>,
}

/// Text time (the event log's format) of Unix second `t`.
pub fn text_time(t: i64) -> String {
    db::format_time(
        time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
    )
}

/// % used of the file system holding `path`, as `df` counts it (the
/// blocks reserved for root are not "available").
pub fn used_percent(path: &Path) -> std::io::Result<Option<f64>> {
    let st = rustix::fs::statvfs(path)?;
    let used = st.f_blocks.saturating_sub(st.f_bfree);
    let usable = used.saturating_add(st.f_bavail);
    #[allow(clippy::cast_precision_loss)] // block counts far below 2^52
    Ok((usable > 0).then(|| 100.0 * used as f64 / usable as f64))
}

/// A series the loop records itself (`store` per node id, `layer_storage`
/// of `site`, …) for `from < at <= to`, oldest first.
pub async fn recorded(
    pool: &Pool,
    series: &str,
    subject: &str,
    from: i64,
    to: i64,
) -> Result<Vec<Point>, sqlx::Error> {
    let rows: Vec<(i64, f64)> = sqlx::query_as(
        "SELECT at, value FROM alert_samples WHERE series = $1 AND subject = $2 AND at > $3 AND at <= $4 ORDER BY at",
    )
    .bind(series)
    .bind(subject)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Point::from).collect())
}

/// Records `value` of a series the loop keeps itself, and prunes rows
/// older than `keep` seconds.
async fn record(
    pool: &Pool,
    series: &str,
    subject: &str,
    now: i64,
    value: f64,
    keep: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO alert_samples (series, subject, at, value) VALUES ($1, $2, $3, $4) ON CONFLICT (series, subject, at) DO UPDATE SET value = excluded.value",
    )
    .bind(series)
    .bind(subject)
    .bind(now)
    .bind(value)
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM alert_samples WHERE series = $1 AND subject = $2 AND at < $3")
        .bind(series)
        .bind(subject)
        .bind(now - keep)
        .execute(pool)
        .await?;
    Ok(())
}

/// The service levels' figures over the last hour that alert rules read:
/// console error and start failure shares (percent of attempts, `None`
/// without attempts) and each objective's burn rate by its name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceSignals {
    pub console_error_percent: Option<f64>,
    pub start_failure_percent: Option<f64>,
    pub burn_rates: Vec<(&'static str, Option<f64>)>,
}

/// Where those figures come from: the service levels ([`crate::slo`])
/// implement it. A trait, so the alerts do not depend on the module that
/// reads their own recordings (the SLO page's capacity forecast).
pub trait SignalSource: Send + Sync + std::fmt::Debug {
    fn signals(
        &self,
        now_ms: i64,
    ) -> futures::future::BoxFuture<'_, Result<ServiceSignals, sqlx::Error>>;
}

/// id, name, state, maintenance, store used and free bytes.
type NodeRow = (String, String, String, db::Flag, Option<i64>, Option<i64>);

/// Every rule's observations at `now`. `data_dir` holds the shared layer
/// storage (personal layers), whose file system's use is measured.
pub async fn observe(
    pool: &Pool,
    rules: &RuleSet,
    now: i64,
    data_dir: &Path,
    signals: Option<&dyn SignalSource>,
) -> Result<Vec<Observation>, sqlx::Error> {
    let nodes: Vec<NodeRow> = sqlx::query_as(
        "SELECT id, name, state, maintenance, store_used_bytes, store_free_bytes FROM nodes ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    // Start failures, console errors and SLO burn are the service levels'
    // own figures over the last hour, read once per tick.
    let from_slo = rules.rules.iter().any(|r| {
        r.enabled
            && matches!(
                r.metric,
                Metric::StartFailurePercent | Metric::ConsoleErrorPercent | Metric::SloBurnRate
            )
    });
    let slo_signals = match signals {
        Some(source) if from_slo => Some(source.signals(now.saturating_mul(1000)).await?),
        _ => None,
    };
    // Recorded once per tick whichever rules read them.
    let mut stores = Vec::new();
    for (id, name, _, _, used, free) in &nodes {
        if let (Some(u), Some(f)) = (used, free)
            && u + f > 0
        {
            #[allow(clippy::cast_precision_loss)]
            let pct = 100.0 * *u as f64 / (u + f) as f64;
            record(pool, "store", id, now, pct, KEEP_SECS).await?;
            stores.push((id.clone(), name.clone(), pct));
        }
    }
    let layers = match used_percent(data_dir) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "layer storage use unreadable");
            None
        }
    };
    if let Some(v) = layers {
        record(pool, "layer_storage", "site", now, v, KEEP_SECS).await?;
    }
    for rule in rules.rules.iter().filter(|r| r.enabled) {
        let obs = |subject: &str, name: &str, node: Option<Uuid>, value, history| Observation {
            rule: rule.id.clone(),
            metric: rule.metric,
            subject: subject.to_owned(),
            subject_name: name.to_owned(),
            node_id: node,
            value,
            history,
        };
        match rule.metric {
            Metric::NodeCpuPercent | Metric::NodeMemoryPercent => {
                let series = if rule.metric == Metric::NodeCpuPercent {
                    NodeSeries::CpuPercent
                } else {
                    NodeSeries::MemoryPercent
                };
                // The baseline's weeks come from the loop's own thinned
                // copy of the series (`node_cpu_percent`, …), the current
                // value from the sampler's rows.
                let kept = serde_json::to_value(rule.metric)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let keep = rule
                    .deviation
                    .as_ref()
                    .map(|d| i64::from(d.spec.weeks) * WEEK + DAY);
                for (id, name, ..) in &nodes {
                    let node = db::parse_uuid(id)?;
                    let recent = node_series(pool, node, series, now - FRESH_SECS, now + 1).await?;
                    let value = recent
                        .iter()
                        .rev()
                        .find(|p| p.at > now - FRESH_SECS)
                        .map(|p| p.value);
                    let mut history = Vec::new();
                    if let Some(keep) = keep {
                        if let Some(v) = value {
                            let slot = now - now.rem_euclid(BASELINE_STEP_SECS);
                            record(pool, &kept, id, slot, v, keep).await?;
                        }
                        // Past weeks only: this hour's own points must not
                        // make the baseline they are judged by.
                        history = recorded(pool, &kept, id, now - keep, now - DAY).await?;
                    }
                    out.push(obs(id, name, Some(node), value, history));
                }
            }
            Metric::NodeDown => {
                for (id, name, state, maintenance, ..) in &nodes {
                    let node = db::parse_uuid(id)?;
                    let down = state == "down" && !maintenance.0;
                    let v = if down { 1.0 } else { 0.0 };
                    out.push(obs(id, name, Some(node), Some(v), Vec::new()));
                }
            }
            Metric::NodeFailures7d => {
                for (id, name, ..) in &nodes {
                    let node = db::parse_uuid(id)?;
                    let n: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM events WHERE node_id = $1 AND kind = 'node_down' AND at > $2 AND at <= $3",
                    )
                    .bind(id)
                    .bind(text_time(now - 7 * DAY))
                    .bind(text_time(now))
                    .fetch_one(pool)
                    .await?;
                    #[allow(clippy::cast_precision_loss)]
                    let v = n as f64;
                    out.push(obs(id, name, Some(node), Some(v), Vec::new()));
                }
            }
            Metric::StoreUsedPercent => {
                for (id, name, pct) in &stores {
                    let history = recorded(pool, "store", id, now - 7 * DAY, now).await?;
                    out.push(obs(
                        id,
                        name,
                        Some(db::parse_uuid(id)?),
                        Some(*pct),
                        history,
                    ));
                }
            }
            Metric::LayerStorageUsedPercent => {
                if let Some(v) = layers {
                    let history =
                        recorded(pool, "layer_storage", "site", now - 7 * DAY, now).await?;
                    out.push(obs("site", "site", None, Some(v), history));
                }
            }
            Metric::StartFailurePercent => {
                let v = slo_signals.as_ref().and_then(|s| s.start_failure_percent);
                out.push(obs("site", "site", None, v, Vec::new()));
            }
            Metric::ConsoleErrorPercent => {
                let v = slo_signals.as_ref().and_then(|s| s.console_error_percent);
                out.push(obs("site", "site", None, v, Vec::new()));
            }
            Metric::BackupAgeHours => {
                let ages = crate::backup::ages(pool, now).await?;
                #[allow(clippy::cast_precision_loss)] // hours, well within f64
                let v = ages.overall_secs.map(|s| s as f64 / 3600.0);
                out.push(obs("site", "site", None, v, Vec::new()));
            }
            Metric::SloBurnRate => {
                // One alert per objective: its subject is the indicator.
                for &(i, burn) in slo_signals.iter().flat_map(|s| &s.burn_rates) {
                    out.push(obs(i, i, None, burn, Vec::new()));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::baseline::{BaselineSpec, baseline};
    use crate::alerts::{HOUR, WEEK};
    use crate::db;

    use crate::monitor::tests::pool_with_node;

    async fn insert(
        pool: &Pool,
        table: &str,
        node: Uuid,
        at: i64,
        cpu: Option<f64>,
        used: i64,
        total: i64,
    ) {
        sqlx::query(&format!("INSERT INTO {table} (node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running) VALUES ($1, $2, $3, $4, $5, 0)"))
            .bind(node.to_string())
            .bind(at)
            .bind(cpu)
            .bind(used)
            .bind(total)
            .execute(pool)
            .await
            .expect("insert");
    }

    #[tokio::test]
    async fn minutes_then_raw_each_moment_once() {
        let (pool, node, _dir) = pool_with_node().await;
        let t = 1_764_496_800;
        // Rolled-up minutes t and t+60; raw samples from t (already rolled
        // up, must not count twice) to t+170.
        insert(&pool, "node_samples_minute", node, t, Some(10.0), 100, 1000).await;
        insert(
            &pool,
            "node_samples_minute",
            node,
            t + 60,
            Some(20.0),
            200,
            1000,
        )
        .await;
        for (k, cpu) in [
            (0, Some(99.0)),
            (70, Some(99.0)),
            (120, Some(30.0)),
            (150, None),
            (170, Some(40.0)),
        ] {
            insert(&pool, "node_samples", node, t + k, cpu, 500, 1000).await;
        }
        // Another node's samples are not ours.
        let (other, _) = (Uuid::new_v4(), ());
        sqlx::query("INSERT INTO nodes (id, name, uri, console_address, created_at) VALUES ($1, 'n2', 'test:///other', '127.0.0.1', $2)")
            .bind(other.to_string())
            .bind(db::now())
            .execute(&pool)
            .await
            .expect("node");
        insert(&pool, "node_samples", other, t + 130, Some(77.0), 1, 1000).await;

        let cpu = node_series(&pool, node, NodeSeries::CpuPercent, t, t + 3600)
            .await
            .expect("cpu");
        let got: Vec<(i64, f64)> = cpu.iter().map(|p| (p.at - t, p.value)).collect();
        assert_eq!(got, vec![(0, 10.0), (60, 20.0), (120, 30.0), (170, 40.0)]);
        let mem = node_series(&pool, node, NodeSeries::MemoryPercent, t + 60, t + 160)
            .await
            .expect("mem");
        let got: Vec<(i64, f64)> = mem.iter().map(|p| (p.at - t, p.value)).collect();
        assert_eq!(got, vec![(60, 20.0), (120, 50.0), (150, 50.0)]);
    }

    #[tokio::test]
    async fn a_baseline_from_recorded_minutes() {
        let (pool, node, _dir) = pool_with_node().await;
        let now = 1_764_496_800 + 8 * WEEK;
        // One week back only (what the 8-day retention holds): too little
        // history for the default three weeks, enough for one.
        for m in 0..60 {
            insert(
                &pool,
                "node_samples_minute",
                node,
                now - WEEK + m * 60,
                Some(30.0 + (m % 3) as f64),
                0,
                1000,
            )
            .await;
        }
        let h = node_series(&pool, node, NodeSeries::CpuPercent, now - WEEK - HOUR, now)
            .await
            .expect("series");
        assert_eq!(h.len(), 60);
        assert_eq!(baseline(&h, now, &BaselineSpec::default()), None);
        let one = BaselineSpec {
            weeks: 1,
            min_weeks: 1,
            utc_offset_secs: 0,
        };
        let b = baseline(&h, now + 60, &one).expect("baseline");
        assert_eq!((b.median, b.weeks), (31.0, 1));
    }

    #[tokio::test]
    async fn node_state_failures_stores_and_start_failures_are_observed() {
        let (pool, node, dir) = pool_with_node().await;
        let now = 1_796_256_000;
        // Down (state defaults to down), twice in the week, once before it;
        // its store 60 % used; two failed starts in the last hour, one older.
        sqlx::query("UPDATE nodes SET store_used_bytes = 60, store_free_bytes = 40 WHERE id = $1")
            .bind(node.to_string())
            .execute(&pool)
            .await
            .expect("store");
        for (kind, ago) in [
            ("node_down", 3600),
            ("node_down", 3 * DAY),
            ("node_down", 8 * DAY),
        ] {
            sqlx::query(
                "INSERT INTO events (at, kind, node_id, node_name, message) VALUES ($1, $2, $3, 'n1', '')",
            )
            .bind(text_time(now - ago))
            .bind(kind)
            .bind(node.to_string())
            .execute(&pool)
            .await
            .expect("event");
        }
        // The service levels' records: in the last hour one start ok, one
        // failed, one stopped by its user's own doing (no attempt); two
        // hours ago a failure (out of the hour). Four console sessions, one
        // ended by an error.
        let ms = now * 1000;
        for (n, (ago_s, outcome, code)) in [
            (60, "ok", None),
            (120, "failed", Some("node_unreachable")),
            (180, "failed", Some("vm_stopping")),
            (2 * HOUR, "failed", Some("node_unreachable")),
        ]
        .into_iter()
        .enumerate()
        {
            sqlx::query(
                "INSERT INTO slo_vm_starts (id, vm_id, user_id, requested_ms, outcome, error_code, running_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(format!("s{n}"))
            .bind(Uuid::new_v4().to_string())
            .bind(Uuid::new_v4().to_string())
            .bind(ms - ago_s * 1000)
            .bind(outcome)
            .bind(code)
            .bind((outcome == "ok").then_some(ms - ago_s * 1000 + 5000))
            .execute(&pool)
            .await
            .expect("start");
        }
        for (n, ended_by) in ["user", "user", "system", "error"].into_iter().enumerate() {
            let at = ms - 600_000 + i64::try_from(n).expect("n") * 1000;
            sqlx::query(
                "INSERT INTO slo_console_sessions (id, vm_id, user_id, issued_ms, opened_ms, established_ms, ended_ms, ended_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(format!("c{n}"))
            .bind(Uuid::new_v4().to_string())
            .bind(Uuid::new_v4().to_string())
            .bind(at)
            .bind(at + 10)
            .bind(at + 20)
            .bind(at + 60_000)
            .bind(ended_by)
            .execute(&pool)
            .await
            .expect("session");
        }
        let slo = crate::slo::Slo::new(pool.clone());
        let obs = observe(&pool, &RuleSet::defaults(), now, dir.path(), Some(&slo))
            .await
            .expect("observe");
        let value = |rule: &str| {
            obs.iter()
                .find(|o| o.rule == rule)
                .unwrap_or_else(|| panic!("no {rule}: {obs:?}"))
                .value
        };
        assert_eq!(value("node_down"), Some(1.0));
        assert_eq!(value("node_failures"), Some(2.0));
        assert_eq!(value("store_capacity"), Some(60.0));
        // One failure of two attempts; one error of four sessions.
        assert_eq!(value("start_failures"), Some(50.0));
        assert_eq!(value("console_errors"), Some(25.0));
        // No samples: no current load.
        assert_eq!(value("node_cpu"), None);
        assert!(value("layer_storage_capacity").is_some_and(|v| (0.0..=100.0).contains(&v)));
        // One burn per objective, the indicator its subject: 25 % errors
        // of the 0.5 % allowed burn 50 times; no VM wanted-time figures yet
        // for some (no rate).
        let burn = |subject: &str| {
            obs.iter()
                .find(|o| o.rule == "slo_burn" && o.subject == subject)
                .unwrap_or_else(|| panic!("no burn of {subject}: {obs:?}"))
                .value
        };
        assert!(burn("console_success").is_some_and(|b| (b - 50.0).abs() < 1e-9));
        assert!(burn("start_success").is_some_and(|b| (b - 50.0).abs() < 1e-9));
        assert_eq!(
            obs.iter().filter(|o| o.rule == "slo_burn").count(),
            crate::slo::compute::Indicator::ALL.len()
        );
        // The store's use is kept for its forecast.
        let kept = recorded(&pool, "store", &node.to_string(), now - DAY, now)
            .await
            .expect("kept");
        assert_eq!(
            kept,
            vec![Point {
                at: now,
                value: 60.0
            }]
        );
        // In maintenance, a down node is not "down" for the alert.
        sqlx::query("UPDATE nodes SET maintenance = 1 WHERE id = $1")
            .bind(node.to_string())
            .execute(&pool)
            .await
            .expect("maintenance");
        let obs = observe(&pool, &RuleSet::defaults(), now + 60, dir.path(), None)
            .await
            .expect("observe");
        let down = obs.iter().find(|o| o.rule == "node_down").expect("down");
        assert_eq!(down.value, Some(0.0));
    }
}
