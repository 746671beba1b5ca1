//! Reading the recorded node samples into the series the alert engine takes.
//!
//! The sampler ([`crate::monitor`]) keeps raw samples for two hours and
//! per-minute averages for eight days; a series here is the minute averages
//! up to the newest rolled-up minute of the node, then the raw samples after
//! it — each moment counted once. So today's samples give the current value,
//! and the week-old ones the first week of a baseline; baselines over more
//! weeks need the minute rollups kept longer (or an hourly rollup), which is
//! the loop's business, not this module's.

use uuid::Uuid;

use super::Point;
use crate::db::Pool;

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
                "CASE WHEN mem_total_mib > 0 THEN 100.0 * mem_used_mib / mem_total_mib END"
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
            WHERE node_id = ?1 AND at >= ?2 AND at < ?3
           UNION ALL
           SELECT at, {e} AS v FROM node_samples
            WHERE node_id = ?1 AND at >= ?2 AND at < ?3
              AND at >= COALESCE((SELECT MAX(at) + 60 FROM node_samples_minute WHERE node_id = ?1), 0)
         ) WHERE v IS NOT NULL ORDER BY at"
    );
    let rows: Vec<(i64, f64)> = sqlx::query_as(&sql)
        .bind(node.to_string())
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(at, value)| Point { at, value })
        .collect())
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
        sqlx::query(&format!("INSERT INTO {table} (node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running) VALUES (?, ?, ?, ?, ?, 0)"))
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
        sqlx::query("INSERT INTO nodes (id, name, uri, console_address, created_at) VALUES (?, 'n2', 'test:///other', '127.0.0.1', ?)")
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
}
