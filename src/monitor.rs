//! Load history: host CPU and memory of every node, and CPU and memory of
//! every running VM, over time — for the admin charts, `/metrics` and
//! load-aware placement.
//!
//! A sampler task reads each `up` node's libvirt host statistics every
//! `interval` (CPU % needs two cumulative readings, so a node's first sample
//! after a (re)connect has no CPU figure) and stores one row per node per
//! sample in `node_samples`. In the same pass it reads the node's running
//! domains named with pvce's domain prefix and stores one row per VM in
//! `vm_samples` — only for VMs the database knows (domains of another pvce
//! sharing the prefix, or left over, are ignored). A VM's CPU % is relative
//! to its own vCPUs (100 % = all of them busy), from two readings of the same
//! domain on the same node, so a VM's first sample after a start or a
//! migration has none.
//!
//! Health (up/down) is not decided here — that is the node monitor's job in
//! [`crate::nodes`]; the sampler only reads nodes the monitor says are up,
//! through the registry's shared connection, so a down or frozen node never
//! holds the sampler up beyond the libvirt call deadline (all nodes are
//! sampled concurrently). Each sample also records the node's template store
//! capacity (its libvirt pool, see [`crate::stores`]).
//!
//! History is bounded and downsampled, nodes and VMs alike: raw samples are
//! kept for [`RAW_RETENTION_SECS`]; once a minute they are rolled up into
//! per-minute averages (`node_samples_minute`, `vm_samples_minute`, kept for
//! [`MINUTE_RETENTION_SECS`], enough for the 7-day chart). A query for the
//! last N minutes reads the raw table for short ranges and the minute table
//! for long ones, averaged into at most [`MAX_POINTS`] buckets, so a chart
//! costs the same for 1 h and 7 d.
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
use crate::libvirt::{CpuTimes, DomainStats};
use crate::nodes::{NodeError, Nodes};

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
    Node(#[from] NodeError),
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

/// One point of a VM's history (a bucket average for long ranges).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VmSample {
    pub at: String,
    /// Share of the VM's vCPUs busy, percent; `None` where no CPU figure was
    /// available (first reading after a start or a move).
    pub cpu_percent: Option<f64>,
    /// Memory the guest has (its balloon size).
    pub mem_mib: u64,
    /// Host memory the VM's process occupies, where the node reports it.
    pub rss_mib: Option<u64>,
}

/// A VM's history over a range.
#[derive(Debug, Clone, Serialize)]
pub struct VmHistory {
    /// Width of one point, seconds.
    pub interval_seconds: i64,
    pub samples: Vec<VmSample>,
}

/// A running VM's latest figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VmLoad {
    pub vm_id: Uuid,
    pub node_id: Uuid,
    pub cpu_percent: Option<f64>,
    pub mem_mib: u64,
    pub rss_mib: Option<u64>,
}

/// The sampler: the previous CPU reading per node and per VM, for the next
/// percentage.
#[derive(Debug)]
pub struct Monitor {
    pool: Pool,
    nodes: Arc<Nodes>,
    interval: Duration,
    /// The template store pool whose capacity is recorded with each sample.
    store_pool: String,
    /// Names of pvce's domains start with this (`--domain-prefix`).
    domain_prefix: String,
    last_cpu: Mutex<HashMap<Uuid, CpuTimes>>,
    /// Per VM: the node it was last read on and that reading.
    last_vm: Mutex<HashMap<Uuid, (Uuid, DomainStats)>>,
}

impl Monitor {
    pub fn new(
        pool: Pool,
        nodes: Arc<Nodes>,
        interval: Duration,
        store_pool: String,
        domain_prefix: String,
    ) -> Self {
        Self {
            pool,
            nodes,
            interval,
            store_pool,
            domain_prefix,
            last_cpu: Mutex::new(HashMap::new()),
            last_vm: Mutex::new(HashMap::new()),
        }
    }

    /// Samples every up node every `interval`, and rolls up / prunes once a
    /// minute, as a supervised loop (`sampler` in `/healthz`), while this
    /// server holds the `sampler` lease (one server of a cluster samples).
    pub fn spawn(
        self: Arc<Self>,
        health: &Arc<crate::health::Health>,
        leases: &Arc<crate::lease::Leases>,
    ) -> tokio::task::JoinHandle<()> {
        let last_rollup = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let every = self.interval;
        crate::lease::spawn_leased(health, leases, "sampler", every, move || {
            let this = self.clone();
            let last_rollup = last_rollup.clone();
            async move { this.pass(&last_rollup).await }
        })
    }

    /// One pass of the sampler: a sample of every node, and the once-a-minute
    /// rollup when the minute changed.
    async fn pass(&self, last_rollup: &std::sync::atomic::AtomicI64) -> Result<(), MonitorError> {
        use std::sync::atomic::Ordering;
        let sampled = self.sample_all().await;
        let now = unix_now();
        if now / 60 != last_rollup.load(Ordering::Relaxed) / 60 {
            last_rollup.store(now, Ordering::Relaxed);
            self.rollup_and_prune(now).await?;
        }
        sampled
    }

    /// Takes one sample of every up node, concurrently.
    pub async fn sample_all(&self) -> Result<(), MonitorError> {
        let nodes = self.nodes.list().await?;
        let at = unix_now();
        let jobs = nodes
            .iter()
            .filter(|n| n.state.is_up())
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
            sqlx::query(
                "UPDATE nodes SET store_used_bytes = $1, store_free_bytes = $2 WHERE id = $3",
            )
            .bind(to_i64(store.allocation))
            .bind(to_i64(store.available))
            .bind(node_id.to_string())
            .execute(&self.pool)
            .await?;
        }
        // The VMs' figures; without them the node's own row still counts.
        let domains = match conn.domain_stats(&self.domain_prefix).await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(node = %node_id, error = %e, "no domain stats");
                Vec::new()
            }
        };
        let vm_rows = self.vm_percentages(node_id, &domains);
        let res = sqlx::query(
            "INSERT INTO node_samples (node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (node_id, at) DO UPDATE SET cpu_percent = excluded.cpu_percent, mem_used_mib = excluded.mem_used_mib, mem_total_mib = excluded.mem_total_mib, vms_running = excluded.vms_running",
        )
        .bind(node_id.to_string())
        .bind(at)
        .bind(db::Real(cpu_percent))
        .bind(to_i64(stats.memory.used_kib() / 1024))
        .bind(to_i64(stats.memory.total_kib / 1024))
        .bind(to_i64(vms_running))
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => {}
            // The node was deleted while we sampled it.
            Err(e) if db::is_foreign_key_violation(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        store_vm_samples(&self.pool, node_id, at, &vm_rows).await
    }

    /// Pairs each domain read on `node_id` with its CPU % against the previous
    /// reading of the same domain, and keeps these readings for next time
    /// (dropping the node's VMs that no longer run there).
    fn vm_percentages(
        &self,
        node_id: Uuid,
        domains: &[DomainStats],
    ) -> Vec<(DomainStats, Option<f64>)> {
        let mut last = self.last_vm.lock().unwrap_or_else(|e| e.into_inner());
        let rows = domains
            .iter()
            .map(|d| {
                let pct = last
                    .get(&d.uuid)
                    .filter(|(node, _)| *node == node_id)
                    .and_then(|(_, prev)| d.cpu_percent(prev));
                (*d, pct)
            })
            .collect();
        last.retain(|vm, (node, _)| *node != node_id || domains.iter().any(|d| d.uuid == *vm));
        for d in domains {
            last.insert(d.uuid, (node_id, *d));
        }
        rows
    }

    fn forget(&self, node_id: Uuid) {
        self.last_cpu
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&node_id);
        self.last_vm
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (node, _)| *node != node_id);
    }

    /// Recomputes the per-minute averages of the last few minutes (idempotent)
    /// and drops history past its retention.
    pub async fn rollup_and_prune(&self, now: i64) -> Result<(), MonitorError> {
        let this_minute = now - now.rem_euclid(60);
        // Recompute a few minutes back so a stalled tick or restart leaves no hole.
        let from = this_minute - 10 * 60;
        let mut tx = db::begin(&self.pool).await?;
        sqlx::query(
            "INSERT INTO node_samples_minute (node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running)
             SELECT node_id, at - (at % 60), AVG(cpu_percent), CAST(AVG(mem_used_mib) AS INTEGER),
                    MAX(mem_total_mib), CAST(ROUND(AVG(vms_running)) AS INTEGER)
             FROM node_samples WHERE at >= $1 AND at < $2 GROUP BY node_id, at - (at % 60)
             ON CONFLICT (node_id, at) DO UPDATE SET cpu_percent = excluded.cpu_percent, mem_used_mib = excluded.mem_used_mib, mem_total_mib = excluded.mem_total_mib, vms_running = excluded.vms_running",
        )
        .bind(from)
        .bind(this_minute)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO vm_samples_minute (vm_id, at, node_id, cpu_percent, mem_mib, rss_mib)
             SELECT vm_id, at - (at % 60), MAX(node_id), AVG(cpu_percent), CAST(AVG(mem_mib) AS INTEGER),
                    CAST(AVG(rss_mib) AS INTEGER)
             FROM vm_samples WHERE at >= $1 AND at < $2 GROUP BY vm_id, at - (at % 60)
             ON CONFLICT (vm_id, at) DO UPDATE SET node_id = excluded.node_id, cpu_percent = excluded.cpu_percent, mem_mib = excluded.mem_mib, rss_mib = excluded.rss_mib",
        )
        .bind(from)
        .bind(this_minute)
        .execute(&mut *tx)
        .await?;
        for table in ["node_samples", "vm_samples"] {
            // `table` is one of two constants, never input.
            sqlx::query(&format!("DELETE FROM {table} WHERE at < $1"))
                .bind(now - RAW_RETENTION_SECS)
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!("DELETE FROM {table}_minute WHERE at < $1"))
                .bind(now - MINUTE_RETENTION_SECS)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// A node's history over the last `minutes`.
pub async fn history(pool: &Pool, node_id: Uuid, minutes: u32) -> Result<History, MonitorError> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM nodes WHERE id = $1")
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

/// Which table a range reads, its bucket width and its start.
struct Window {
    raw: bool,
    bucket: i64,
    since: i64,
}

fn window(minutes: u32, now: i64) -> Result<Window, MonitorError> {
    if minutes == 0 || minutes > MAX_MINUTES {
        return Err(MonitorError::BadRange);
    }
    let raw = minutes <= RAW_QUERY_MAX_MINUTES;
    Ok(Window {
        raw,
        bucket: bucket_seconds(minutes, if raw { 1 } else { 60 }),
        since: now - i64::from(minutes) * 60,
    })
}

async fn query(
    pool: &Pool,
    node: Option<Uuid>,
    minutes: u32,
    now: i64,
) -> Result<(i64, HashMap<Uuid, Vec<Sample>>), MonitorError> {
    let Window { raw, bucket, since } = window(minutes, now)?;
    // Long ranges read the per-minute rollups, plus the raw samples newer
    // than a node's last rollup (the current minute), so a fresh node or a
    // minute not rolled up yet still shows.
    let source = if raw {
        "SELECT node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running
         FROM node_samples WHERE at >= $2 AND ($3 IS NULL OR node_id = $3)"
    } else {
        "SELECT node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running
         FROM node_samples_minute WHERE at >= $2 AND ($3 IS NULL OR node_id = $3)
         UNION ALL
         SELECT r.node_id, r.at, r.cpu_percent, r.mem_used_mib, r.mem_total_mib, r.vms_running
         FROM node_samples r WHERE r.at >= $2 AND ($3 IS NULL OR r.node_id = $3)
           AND r.at >= COALESCE((SELECT MAX(m.at) + 60 FROM node_samples_minute m WHERE m.node_id = r.node_id), 0)"
    };
    // `source` is one of two constants above, never input.
    let sql = format!(
        "SELECT node_id, at - (at % $1) AS t, AVG(cpu_percent) AS cpu, CAST(AVG(mem_used_mib) AS INTEGER) AS used,
                MAX(mem_total_mib) AS total, CAST(ROUND(AVG(vms_running)) AS INTEGER) AS vms
         FROM ({source}) AS samples GROUP BY node_id, t ORDER BY node_id, t"
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
            cpu_percent: row.try_get::<Option<f64>, _>("cpu")?.map(round1),
            mem_used_mib: to_u64(row.try_get("used")?),
            mem_total_mib: to_u64(row.try_get("total")?),
            vms_running: to_u64(row.try_get("vms")?),
        });
    }
    Ok((bucket, out))
}

/// Stores one sample per VM read on a node, for the VMs the database knows
/// (a domain of another pvce, or one whose VM was deleted, inserts nothing).
async fn store_vm_samples(
    pool: &Pool,
    node_id: Uuid,
    at: i64,
    rows: &[(DomainStats, Option<f64>)],
) -> Result<(), MonitorError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut tx = db::begin(pool).await?;
    for (d, cpu_percent) in rows {
        sqlx::query(
            "INSERT INTO vm_samples (vm_id, at, node_id, cpu_percent, mem_mib, rss_mib)
             SELECT id, $1, $2, $3, $4, $5 FROM vms WHERE id = $6
             ON CONFLICT (vm_id, at) DO UPDATE SET node_id = excluded.node_id, cpu_percent = excluded.cpu_percent, mem_mib = excluded.mem_mib, rss_mib = excluded.rss_mib",
        )
        .bind(at)
        .bind(node_id.to_string())
        .bind(db::Real(*cpu_percent))
        .bind(to_i64(d.memory_kib / 1024))
        .bind(d.rss_kib.map(|r| to_i64(r / 1024)))
        .bind(d.uuid.to_string())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A VM's history over the last `minutes` (who may see it is the caller's
/// business; an unknown VM simply has none).
pub async fn vm_history(pool: &Pool, vm_id: Uuid, minutes: u32) -> Result<VmHistory, MonitorError> {
    vm_query(pool, vm_id, minutes, unix_now()).await
}

async fn vm_query(
    pool: &Pool,
    vm_id: Uuid,
    minutes: u32,
    now: i64,
) -> Result<VmHistory, MonitorError> {
    let Window { raw, bucket, since } = window(minutes, now)?;
    // As for nodes: long ranges read the rollups plus the raw samples newer
    // than the VM's last rollup.
    let source = if raw {
        "SELECT at, cpu_percent, mem_mib, rss_mib FROM vm_samples WHERE vm_id = $3 AND at >= $2"
    } else {
        "SELECT at, cpu_percent, mem_mib, rss_mib FROM vm_samples_minute WHERE vm_id = $3 AND at >= $2
         UNION ALL
         SELECT at, cpu_percent, mem_mib, rss_mib FROM vm_samples WHERE vm_id = $3 AND at >= $2
           AND at >= COALESCE((SELECT MAX(at) + 60 FROM vm_samples_minute WHERE vm_id = $3), 0)"
    };
    // `source` is one of two constants above, never input.
    let sql = format!(
        "SELECT at - (at % $1) AS t, AVG(cpu_percent) AS cpu, CAST(AVG(mem_mib) AS INTEGER) AS mem,
                CAST(AVG(rss_mib) AS INTEGER) AS rss
         FROM ({source}) AS samples GROUP BY t ORDER BY t"
    );
    let rows = sqlx::query(&sql)
        .bind(bucket)
        .bind(since)
        .bind(vm_id.to_string())
        .fetch_all(pool)
        .await?;
    let samples = rows
        .iter()
        .map(|row| {
            Ok(VmSample {
                at: rfc3339(row.try_get("t")?),
                cpu_percent: row.try_get::<Option<f64>, _>("cpu")?.map(round1),
                mem_mib: to_u64(row.try_get("mem")?),
                rss_mib: row.try_get::<Option<i64>, _>("rss")?.map(to_u64),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(VmHistory {
        interval_seconds: bucket,
        samples,
    })
}

/// The latest figures of every running VM, from samples at most a few
/// sampling intervals old (a VM that stopped, or whose node went quiet, has
/// none rather than stale ones).
pub async fn latest_vm_loads(
    pool: &Pool,
    sample_interval_secs: u64,
) -> Result<Vec<VmLoad>, MonitorError> {
    let max_age = to_i64(sample_interval_secs.saturating_mul(3)).saturating_add(5);
    // Each running VM's latest sample, if recent.
    let rows = sqlx::query(
        "SELECT s.vm_id, s.node_id, s.cpu_percent, s.mem_mib, s.rss_mib, s.at
         FROM vm_samples s JOIN vms v ON v.id = s.vm_id AND v.state = 'running'
         WHERE s.at >= $1 AND s.at = (SELECT MAX(l.at) FROM vm_samples l WHERE l.vm_id = s.vm_id)
         ORDER BY s.vm_id",
    )
    .bind(unix_now() - max_age)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(VmLoad {
                vm_id: db::uuid(row, "vm_id")?,
                node_id: db::uuid(row, "node_id")?,
                cpu_percent: row.try_get::<Option<f64>, _>("cpu_percent")?.map(round1),
                mem_mib: to_u64(row.try_get("mem_mib")?),
                rss_mib: row.try_get::<Option<i64>, _>("rss_mib")?.map(to_u64),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// One decimal is all a chart or a table shows.
fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
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

/// A VM's raw CPU samples since `since` (Unix seconds), as `(at, percent)`
/// oldest first, for the idle auto-stop ([`crate::idle`]).
pub async fn vm_cpu_since(
    pool: &Pool,
    vm_id: Uuid,
    since: i64,
) -> Result<Vec<(i64, f64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT at, cpu_percent FROM vm_samples
         WHERE vm_id = $1 AND at >= $2 AND cpu_percent IS NOT NULL ORDER BY at",
    )
    .bind(vm_id.to_string())
    .bind(since)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
pub(crate) mod tests {
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

    /// A fresh database with one node (the samples' owner); the temp dir
    /// keeps the file alive. Shared with the alert engine's sample tests.
    pub(crate) async fn pool_with_node() -> (Pool, Uuid, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = db::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .expect("db");
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO nodes (id, name, uri, console_address, created_at) VALUES ($1, 'n1', 'test:///default', '127.0.0.1', $2)")
            .bind(id.to_string())
            .bind(db::now())
            .execute(&pool)
            .await
            .expect("node");
        (pool, id, dir)
    }

    async fn insert(pool: &Pool, node: Uuid, at: i64, cpu: Option<f64>, used: i64) {
        sqlx::query("INSERT INTO node_samples (node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running) VALUES ($1, $2, $3, $4, 1000, 2)")
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
        let m = Monitor::new(
            pool.clone(),
            nodes,
            Duration::from_secs(1),
            "p".into(),
            "pvce-".into(),
        );
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

    /// A VM row (a build VM: the fewest other rows) in `state`.
    async fn insert_vm(pool: &Pool, state: &str) -> Uuid {
        let (user, tpl, vm) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        sqlx::query("INSERT INTO users (id, username, display_name, role, password_hash, created_at) VALUES ($1, $2, 'T', 'teacher', 'x', $3)")
            .bind(user.to_string())
            .bind(format!("u-{user}"))
            .bind(db::now())
            .execute(pool)
            .await
            .expect("user");
        sqlx::query("INSERT INTO templates (id, name, os, state, created_at) VALUES ($1, $2, 'linux', 'draft', $3)")
            .bind(tpl.to_string())
            .bind(format!("t-{tpl}"))
            .bind(db::now())
            .execute(pool)
            .await
            .expect("template");
        sqlx::query("INSERT INTO vms (id, name, build_template_id, owner_id, template_id, state, vcpus, memory_mib, overlay_path, created_at) VALUES ($1, 'b', $2, $3, $4, $5, 1, 256, '/x', $6)")
            .bind(vm.to_string())
            .bind(tpl.to_string())
            .bind(user.to_string())
            .bind(tpl.to_string())
            .bind(state)
            .bind(db::now())
            .execute(pool)
            .await
            .expect("vm");
        vm
    }

    fn domain(uuid: Uuid, cpu_time_ns: u64, read_at: std::time::Instant) -> DomainStats {
        DomainStats {
            uuid,
            cpu_time_ns,
            vcpus: 2,
            memory_kib: 256 * 1024,
            rss_kib: Some(100 * 1024),
            read_at,
        }
    }

    fn monitor(pool: &Pool) -> Monitor {
        let nodes = Arc::new(Nodes::new(
            pool.clone(),
            Duration::from_secs(1),
            crate::libvirt::AccelSetting::Tcg,
        ));
        Monitor::new(
            pool.clone(),
            nodes,
            Duration::from_secs(1),
            "p".into(),
            "pvce-".into(),
        )
    }

    #[tokio::test]
    async fn vm_cpu_needs_two_readings_of_the_same_domain_on_the_same_node() {
        let (pool, node, _dir) = pool_with_node().await;
        let m = monitor(&pool);
        let (vm, other_node) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = std::time::Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let first = m.vm_percentages(node, &[domain(vm, 0, t0)]);
        assert_eq!(first[0].1, None, "first reading");
        let second = m.vm_percentages(node, &[domain(vm, 500_000_000, t1)]);
        assert_eq!(second[0].1, Some(25.0), "0.5 s of 2 vCPUs over 1 s");
        // Migrated: the destination's counter is another process's.
        let moved = m.vm_percentages(
            other_node,
            &[domain(vm, 600_000_000, t1 + Duration::from_secs(1))],
        );
        assert_eq!(moved[0].1, None);
        // A node whose VM stopped forgets it; a node that went away too.
        m.vm_percentages(other_node, &[]);
        assert!(m.last_vm.lock().expect("lock").is_empty());
        m.vm_percentages(node, &[domain(vm, 0, t0)]);
        m.forget(node);
        assert!(m.last_vm.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn vm_samples_are_kept_for_known_vms_rolled_up_and_queried() {
        let (pool, node, _dir) = pool_with_node().await;
        let vm = insert_vm(&pool, "running").await;
        let now = 1_800_000_000; // a minute boundary
        let t = std::time::Instant::now();
        for (at, cpu) in [
            (now - 50, Some(10.0)),
            (now - 20, Some(30.0)),
            (now + 5, None),
        ] {
            // A foreign domain with the prefix stores nothing.
            let rows = [(domain(vm, 0, t), cpu), (domain(Uuid::new_v4(), 0, t), cpu)];
            store_vm_samples(&pool, node, at, &rows)
                .await
                .expect("store");
        }
        store_vm_samples(
            &pool,
            node,
            now - RAW_RETENTION_SECS - 60,
            &[(domain(vm, 0, t), None)],
        )
        .await
        .expect("store");
        let raw: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vm_samples")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(raw, 4, "only the known VM's samples");

        let m = monitor(&pool);
        for _ in 0..2 {
            m.rollup_and_prune(now + 10).await.expect("rollup");
        }
        let minutes: Vec<(i64, f64, i64, i64)> = sqlx::query_as(
            "SELECT at, cpu_percent, mem_mib, rss_mib FROM vm_samples_minute ORDER BY at",
        )
        .fetch_all(&pool)
        .await
        .expect("rows");
        assert_eq!(minutes, vec![(now - 60, 20.0, 256, 100)], "idempotent");
        let raw: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vm_samples")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(raw, 3, "the sample past retention is gone");

        // 1 minute from raw samples; a long range from the rollup plus the
        // current minute's raw sample.
        let h = vm_query(&pool, vm, 1, now + 10).await.expect("query");
        assert_eq!(h.interval_seconds, 1);
        let cpu: Vec<_> = h.samples.iter().map(|s| s.cpu_percent).collect();
        assert_eq!(cpu, vec![Some(10.0), Some(30.0), None]);
        assert_eq!(h.samples[2].mem_mib, 256);
        assert_eq!(h.samples[2].rss_mib, Some(100));
        let h = vm_query(&pool, vm, 24 * 60, now + 10).await.expect("query");
        assert_eq!(h.interval_seconds, 240);
        assert_eq!(h.samples.len(), 2, "{:?}", h.samples);
        assert_eq!(h.samples[0].cpu_percent, Some(20.0));
        assert!(h.samples.len() <= usize::try_from(MAX_POINTS).unwrap_or(0));
        for bad in [0, MAX_MINUTES + 1] {
            assert!(matches!(
                vm_query(&pool, vm, bad, now).await,
                Err(MonitorError::BadRange)
            ));
        }
        assert!(
            vm_query(&pool, Uuid::new_v4(), 60, now)
                .await
                .expect("query")
                .samples
                .is_empty()
        );
        // Deleting the VM deletes its history.
        sqlx::query("DELETE FROM vms WHERE id = $1")
            .bind(vm.to_string())
            .execute(&pool)
            .await
            .expect("delete");
        let left: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM vm_samples) + (SELECT COUNT(*) FROM vm_samples_minute)",
        )
        .fetch_one(&pool)
        .await
        .expect("count");
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn latest_vm_loads_are_fresh_and_of_running_vms() {
        let (pool, node, _dir) = pool_with_node().await;
        let running = insert_vm(&pool, "running").await;
        let stopped = insert_vm(&pool, "stopped").await;
        let quiet = insert_vm(&pool, "running").await;
        let now = unix_now();
        let t = std::time::Instant::now();
        for (vm, at, cpu) in [
            (running, now - 2, Some(10.0)),
            (running, now - 1, Some(12.34)),
            (stopped, now - 1, Some(50.0)),
            (quiet, now - 600, Some(50.0)),
        ] {
            store_vm_samples(&pool, node, at, &[(domain(vm, 0, t), cpu)])
                .await
                .expect("store");
        }
        let loads = latest_vm_loads(&pool, 5).await.expect("loads");
        assert_eq!(
            loads,
            vec![VmLoad {
                vm_id: running,
                node_id: node,
                cpu_percent: Some(12.3),
                mem_mib: 256,
                rss_mib: Some(100),
            }]
        );
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
