//! Node load history: host CPU and memory of every node over time, for the
//! admin charts, `/metrics` and load-aware placement.
//!
//! A sampler task reads each `up` node's libvirt host statistics every
//! `interval` (CPU % needs two cumulative readings, so a node's first sample
//! after a (re)connect has no CPU figure) and stores one row per node per
//! sample in `node_samples`. Health (up/down) is not decided here — that is
//! the node monitor's job in [`crate::nodes`]; the sampler only reads nodes
//! the monitor says are up, through the registry's shared connection, so a
//! down or frozen node never holds the sampler up beyond the libvirt call
//! deadline (all nodes are sampled concurrently). Each sample also records
//! the node's template store capacity (its libvirt pool, see [`crate::stores`]).
//!
//! History is bounded and downsampled: raw samples are kept for
//! [`RAW_RETENTION_SECS`]; once a minute they are rolled up into per-minute
//! averages (`node_samples_minute`, kept for [`MINUTE_RETENTION_SECS`],
//! enough for the 7-day chart). A query for the last N minutes reads the raw
//! table for short ranges and the minute table for long ones, averaged into
//! at most [`MAX_POINTS`] buckets, so a chart costs the same for 1 h and 7 d.
//! The tables live in the database, so history survives a server restart.
//!
//! Invariant: rollups are idempotent (recomputed minutes replace themselves),
//! so a restart mid-minute or a late sample never double-counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use crate::db::{self, Pool};
use crate::libvirt::CpuTimes;
use crate::nodes::Nodes;

/// Raw samples older than this are dropped (2 h: covers the 1 h chart at full
/// resolution with room for restarts).
pub const RAW_RETENTION_SECS: i64 = 2 * 3600;
/// Per-minute rollups older than this are dropped (8 days: the 7-day chart).
pub const MINUTE_RETENTION_SECS: i64 = 8 * 24 * 3600;
/// Longest range a query may ask for, in minutes (7 days).
pub const MAX_MINUTES: u32 = 7 * 24 * 60;
/// Most points one series returns.
pub const MAX_POINTS: i64 = 360;
/// Ranges up to this many minutes are answered from raw samples.
const RAW_QUERY_MAX_MINUTES: u32 = 120;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("minutes must be between 1 and {MAX_MINUTES}")]
    BadRange,
    #[error("no such node")]
    NodeNotFound,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// One point of a node's history (a bucket average for long ranges).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    pub at: String,
    /// `None` where no CPU figure was available (first reading after a connect).
    pub cpu_percent: Option<f64>,
    pub mem_used_mib: u64,
    pub mem_total_mib: u64,
    pub vms_running: u64,
}

/// A node's history over a range.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    /// Width of one point, seconds.
    pub interval_seconds: i64,
    pub samples: Vec<Sample>,
}

/// Every node's history over a range (the cluster charts).
#[derive(Debug, Clone, Serialize)]
pub struct NodeHistory {
    pub node_id: Uuid,
    pub name: String,
    pub interval_seconds: i64,
    pub samples: Vec<Sample>,
}

/// The sampler: the previous CPU reading per node, for the next percentage.
#[derive(Debug)]
pub struct Monitor {
    pool: Pool,
    nodes: Arc<Nodes>,
    interval: Duration,
    /// The template store pool whose capacity is recorded with each sample.
    store_pool: String,
    last_cpu: Mutex<HashMap<Uuid, CpuTimes>>,
}

impl Monitor {
    pub fn new(pool: Pool, nodes: Arc<Nodes>, interval: Duration, store_pool: String) -> Self {
        Self {
            pool,
            nodes,
            interval,
            store_pool,
            last_cpu: Mutex::new(HashMap::new()),
        }
    }

    /// Samples every up node every `interval`, and rolls up / prunes once a
    /// minute, forever.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_rollup = 0_i64;
            loop {
                tick.tick().await;
                if let Err(e) = self.sample_all().await {
                    tracing::warn!(error = %e, "sampling nodes failed");
                }
                let now = unix_now();
                if now / 60 != last_rollup / 60 {
                    last_rollup = now;
                    if let Err(e) = self.rollup_and_prune(now).await {
                        tracing::warn!(error = %e, "rolling up node samples failed");
                    }
                }
            }
        })
    }

    /// Takes one sample of every up node, concurrently.
    pub async fn sample_all(&self) -> Result<(), MonitorError> {
        let nodes = self.nodes.list().await.map_err(|e| match e {
            crate::nodes::NodeError::Db(e) => MonitorError::Db(e),
            other => MonitorError::Db(sqlx::Error::Protocol(other.to_string())),
        })?;
        let at = unix_now();
        let jobs = nodes
            .iter()
            .filter(|n| n.state != "down")
            .map(|n| self.sample_one(n.id, n.vms_running, at));
        for r in futures::future::join_all(jobs).await {
            r?;
        }
        Ok(())
    }

    async fn sample_one(
        &self,
        node_id: Uuid,
        vms_running: u64,
        at: i64,
    ) -> Result<(), MonitorError> {
        // Unreachable or slow nodes are skipped: the node monitor marks them
        // down; a gap in the history is the honest record.
        let Ok(conn) = self.nodes.conn(node_id).await else {
            self.forget(node_id);
            return Ok(());
        };
        let stats = match conn.host_stats().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(node = %node_id, error = %e, "no host stats");
                self.forget(node_id);
                return Ok(());
            }
        };
        let cpu_percent = {
            let mut last = self.last_cpu.lock().unwrap_or_else(|e| e.into_inner());
            let pct = last
                .get(&node_id)
                .and_then(|prev| stats.cpu.busy_percent(prev));
            last.insert(node_id, stats.cpu);
            pct
        };
        // The template store's capacity (absent until a VM first needed it there).
        if let Ok(Some(store)) = conn.pool_info(&self.store_pool).await {
            sqlx::query("UPDATE nodes SET store_used_bytes = ?, store_free_bytes = ? WHERE id = ?")
                .bind(to_i64(store.allocation))
                .bind(to_i64(store.available))
                .bind(node_id.to_string())
                .execute(&self.pool)
                .await?;
        }
        let res = sqlx::query(
            "INSERT OR REPLACE INTO node_samples (node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(node_id.to_string())
        .bind(at)
        .bind(cpu_percent)
        .bind(to_i64(stats.memory.used_kib() / 1024))
        .bind(to_i64(stats.memory.total_kib / 1024))
        .bind(to_i64(vms_running))
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(()),
            // The node was deleted while we sampled it.
            Err(e) if db::is_foreign_key_violation(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn forget(&self, node_id: Uuid) {
        self.last_cpu
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&node_id);
    }

    /// Recomputes the per-minute averages of the last few minutes (idempotent)
    /// and drops history past its retention.
    pub async fn rollup_and_prune(&self, now: i64) -> Result<(), MonitorError> {
        let this_minute = now - now.rem_euclid(60);
        // Recompute a few minutes back so a stalled tick or restart leaves no hole.
        let from = this_minute - 10 * 60;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT OR REPLACE INTO node_samples_minute (node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running)
             SELECT node_id, at - (at % 60), AVG(cpu_percent), CAST(AVG(mem_used_mib) AS INTEGER),
                    MAX(mem_total_mib), CAST(ROUND(AVG(vms_running)) AS INTEGER)
             FROM node_samples WHERE at >= ? AND at < ? GROUP BY node_id, at - (at % 60)",
        )
        .bind(from)
        .bind(this_minute)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM node_samples WHERE at < ?")
            .bind(now - RAW_RETENTION_SECS)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM node_samples_minute WHERE at < ?")
            .bind(now - MINUTE_RETENTION_SECS)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A node's history over the last `minutes`.
pub async fn history(pool: &Pool, node_id: Uuid, minutes: u32) -> Result<History, MonitorError> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM nodes WHERE id = ?")
        .bind(node_id.to_string())
        .fetch_optional(pool)
        .await?;
    if exists.is_none() {
        return Err(MonitorError::NodeNotFound);
    }
    let (interval_seconds, mut by_node) = query(pool, Some(node_id), minutes, unix_now()).await?;
    Ok(History {
        interval_seconds,
        samples: by_node.remove(&node_id).unwrap_or_default(),
    })
}

/// Every node's history over the last `minutes`, ordered by node name.
pub async fn cluster_history(pool: &Pool, minutes: u32) -> Result<Vec<NodeHistory>, MonitorError> {
    let (interval_seconds, mut by_node) = query(pool, None, minutes, unix_now()).await?;
    let nodes: Vec<(String, String)> = sqlx::query_as("SELECT id, name FROM nodes ORDER BY name")
        .fetch_all(pool)
        .await?;
    nodes
        .into_iter()
        .map(|(id, name)| {
            let node_id = db::parse_uuid(&id)?;
            Ok(NodeHistory {
                node_id,
                name,
                interval_seconds,
                samples: by_node.remove(&node_id).unwrap_or_default(),
            })
        })
        .collect()
}

/// The bucket width for a range: at most [`MAX_POINTS`] points, never finer
/// than the source's own resolution.
pub fn bucket_seconds(minutes: u32, source_resolution: i64) -> i64 {
    let span = i64::from(minutes) * 60;
    let width = (span + MAX_POINTS - 1) / MAX_POINTS;
    width.max(source_resolution).max(1)
}

async fn query(
    pool: &Pool,
    node: Option<Uuid>,
    minutes: u32,
    now: i64,
) -> Result<(i64, HashMap<Uuid, Vec<Sample>>), MonitorError> {
    if minutes == 0 || minutes > MAX_MINUTES {
        return Err(MonitorError::BadRange);
    }
    let raw = minutes <= RAW_QUERY_MAX_MINUTES;
    let bucket = bucket_seconds(minutes, if raw { 1 } else { 60 });
    let since = now - i64::from(minutes) * 60;
    // Long ranges read the per-minute rollups, plus the raw samples newer
    // than a node's last rollup (the current minute), so a fresh node or a
    // minute not rolled up yet still shows.
    let source = if raw {
        "SELECT node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running
         FROM node_samples WHERE at >= ?2 AND (?3 IS NULL OR node_id = ?3)"
    } else {
        "SELECT node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running
         FROM node_samples_minute WHERE at >= ?2 AND (?3 IS NULL OR node_id = ?3)
         UNION ALL
         SELECT r.node_id, r.at, r.cpu_percent, r.mem_used_mib, r.mem_total_mib, r.vms_running
         FROM node_samples r WHERE r.at >= ?2 AND (?3 IS NULL OR r.node_id = ?3)
           AND r.at >= COALESCE((SELECT MAX(m.at) + 60 FROM node_samples_minute m WHERE m.node_id = r.node_id), 0)"
    };
    // `source` is one of two constants above, never input.
    let sql = format!(
        "SELECT node_id, at - (at % ?1) AS t, AVG(cpu_percent) AS cpu, CAST(AVG(mem_used_mib) AS INTEGER) AS used,
                MAX(mem_total_mib) AS total, CAST(ROUND(AVG(vms_running)) AS INTEGER) AS vms
         FROM ({source}) GROUP BY node_id, t ORDER BY node_id, t"
    );
    let rows = sqlx::query(&sql)
        .bind(bucket)
        .bind(since)
        .bind(node.map(|n| n.to_string()))
        .fetch_all(pool)
        .await?;
    let mut out: HashMap<Uuid, Vec<Sample>> = HashMap::new();
    for row in &rows {
        let id = db::uuid(row, "node_id")?;
        let t: i64 = row.try_get("t")?;
        out.entry(id).or_default().push(Sample {
            at: rfc3339(t),
            cpu_percent: row
                .try_get::<Option<f64>, _>("cpu")?
                .map(|c| (c * 10.0).round() / 10.0),
            mem_used_mib: to_u64(row.try_get("used")?),
            mem_total_mib: to_u64(row.try_get("total")?),
            vms_running: to_u64(row.try_get("vms")?),
        });
    }
    Ok((bucket, out))
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(t: i64) -> String {
    db::format_time(
        time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
    )
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cap_the_point_count() {
        assert_eq!(bucket_seconds(60, 1), 10); // 1 h → 360 points of 10 s
        assert_eq!(bucket_seconds(1, 1), 1);
        assert_eq!(bucket_seconds(24 * 60, 60), 240); // 24 h → 4 min
        assert_eq!(bucket_seconds(MAX_MINUTES, 60), 1680); // 7 d → 28 min
        assert_eq!(bucket_seconds(150, 60), 60); // never finer than the source
        for m in [1, 7, 59, 60, 61, 120, 121, 1440, MAX_MINUTES] {
            let b = bucket_seconds(m, 1);
            assert!(i64::from(m) * 60 / b <= MAX_POINTS, "{m} min → {b}");
        }
    }

    async fn pool_with_node() -> (Pool, Uuid, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = db::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .expect("db");
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO nodes (id, name, uri, console_address, created_at) VALUES (?, 'n1', 'test:///default', '127.0.0.1', ?)")
            .bind(id.to_string())
            .bind(db::now())
            .execute(&pool)
            .await
            .expect("node");
        (pool, id, dir)
    }

    async fn insert(pool: &Pool, node: Uuid, at: i64, cpu: Option<f64>, used: i64) {
        sqlx::query("INSERT INTO node_samples (node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running) VALUES (?, ?, ?, ?, 1000, 2)")
            .bind(node.to_string())
            .bind(at)
            .bind(cpu)
            .bind(used)
            .execute(pool)
            .await
            .expect("insert");
    }

    #[tokio::test]
    async fn rollup_is_idempotent_and_prunes() {
        let (pool, node, _dir) = pool_with_node().await;
        let now = 1_800_000_000; // a minute boundary
        // Two samples in the previous minute, one in the current (incomplete) one,
        // one far past raw retention.
        insert(&pool, node, now - 50, Some(10.0), 100).await;
        insert(&pool, node, now - 20, Some(30.0), 300).await;
        insert(&pool, node, now + 5, Some(90.0), 900).await;
        insert(&pool, node, now - RAW_RETENTION_SECS - 60, None, 1).await;
        let nodes = Arc::new(Nodes::new(
            pool.clone(),
            Duration::from_secs(1),
            crate::libvirt::AccelSetting::Tcg,
        ));
        let m = Monitor::new(pool.clone(), nodes, Duration::from_secs(1), "p".into());
        for _ in 0..2 {
            m.rollup_and_prune(now + 10).await.expect("rollup");
        }
        let minutes: Vec<(i64, f64, i64)> = sqlx::query_as(
            "SELECT at, cpu_percent, mem_used_mib FROM node_samples_minute ORDER BY at",
        )
        .fetch_all(&pool)
        .await
        .expect("rows");
        assert_eq!(
            minutes,
            vec![(now - 60, 20.0, 200)],
            "current minute not rolled up yet"
        );
        let raw: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM node_samples")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(raw, 3, "the sample past retention is gone");
    }

    #[tokio::test]
    async fn query_buckets_and_filters() {
        let (pool, node, _dir) = pool_with_node().await;
        let now = 1_800_000_000;
        for i in 0..60 {
            insert(
                &pool,
                node,
                now - 60 + i,
                Some(f64::from(i32::try_from(i).unwrap_or(0))),
                100,
            )
            .await;
        }
        insert(&pool, node, now - 3600, Some(99.0), 100).await; // outside a 1-minute range
        let (bucket, by_node) = query(&pool, Some(node), 1, now).await.expect("query");
        assert_eq!(bucket, 1);
        let s = &by_node[&node];
        assert_eq!(s.len(), 60);
        assert_eq!(s[0].cpu_percent, Some(0.0));
        assert_eq!(s[0].mem_total_mib, 1000);
        assert_eq!(s[0].vms_running, 2);
        let (bucket, by_node) = query(&pool, Some(node), 120, now).await.expect("query");
        assert_eq!(bucket, 20);
        assert!(by_node[&node].len() <= 5, "{:?}", by_node[&node].len());
        assert!(matches!(
            query(&pool, None, 0, now).await,
            Err(MonitorError::BadRange)
        ));
        assert!(matches!(
            query(&pool, None, MAX_MINUTES + 1, now).await,
            Err(MonitorError::BadRange)
        ));
        let (_, other) = query(&pool, Some(Uuid::new_v4()), 60, now)
            .await
            .expect("query");
        assert!(other.is_empty());
    }
}
