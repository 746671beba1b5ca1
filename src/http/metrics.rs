//! Prometheus metrics (`GET /metrics`): gauges read from the database at
//! scrape time, so they are always consistent with what the API reports.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;

use super::error::ApiError;
use crate::config::Secret;
use crate::monitor::{self, MonitorError, VmLoad};
use crate::nodes::Node;
use crate::state::AppState;
use crate::vms::VmState;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("/metrics needs Authorization: Bearer <the metrics token>")]
    Unauthorized,
    /// Reading the figures failed (SQL, a node); the detail is for the log,
    /// not the scraper.
    #[error("metrics are unavailable; try again later")]
    Unavailable(#[source] MonitorError),
}

/// Prometheus text exposition of the control plane's state.
pub async fn handler(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    authorise(state.config.metrics_token.as_ref(), authorization)?;
    let text = render(&state).await.map_err(MetricsError::Unavailable)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

/// With a metrics token configured, the request must present it as a bearer
/// token. Compared in constant time: both sides are hashed to 32 bytes first
/// (so neither the length nor a matching prefix shows in the timing), then
/// every byte is compared.
pub fn authorise(token: Option<&Secret>, authorization: Option<&str>) -> Result<(), MetricsError> {
    use sha2::{Digest, Sha256};
    let Some(token) = token else {
        return Ok(());
    };
    let given = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(MetricsError::Unauthorized)?;
    let (a, b) = (
        Sha256::digest(token.expose().as_bytes()),
        Sha256::digest(given.as_bytes()),
    );
    let diff = a.iter().zip(b.iter()).fold(0u8, |d, (x, y)| d | (x ^ y));
    if diff == 0 {
        Ok(())
    } else {
        Err(MetricsError::Unauthorized)
    }
}

pub async fn render(state: &AppState) -> Result<String, MonitorError> {
    let mut out = String::new();
    let by_state: Vec<(String, i64)> =
        sqlx::query_as(
            "SELECT CASE WHEN node_down = 1 AND state IN ('starting', 'running', 'stopping') THEN 'node_down' ELSE state END AS s,
             COUNT(*) FROM vms GROUP BY s",
        )
            .fetch_all(&state.pool)
            .await?;
    header(&mut out, "pvce_vms", "Personal VMs by state.", "gauge");
    for s in VmState::ALL.map(VmState::as_str) {
        let n = by_state.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "pvce_vms{{state=\"{s}\"}} {n}");
    }
    let nodes = state.nodes.list().await?;
    #[allow(clippy::cast_precision_loss)] // gauges
    let gauges: [NodeGauge; 7] = [
        (
            "pvce_node_up",
            "1 if the node answers libvirt calls.",
            |n| f64::from(u8::from(n.state.is_up())),
        ),
        (
            "pvce_node_maintenance",
            "1 if the node takes no new VMs.",
            |n| f64::from(u8::from(n.maintenance)),
        ),
        (
            "pvce_node_cpu_percent",
            "Host CPU busy, percent (latest sample).",
            |n| n.cpu_percent,
        ),
        (
            "pvce_node_memory_used_mib",
            "Host memory in use (excluding page cache).",
            |n| n.mem_used_mib as f64,
        ),
        ("pvce_node_memory_total_mib", "Host memory.", |n| {
            n.mem_total_mib as f64
        }),
        (
            "pvce_node_vms_running",
            "pvce VMs running on the node.",
            |n| n.vms_running as f64,
        ),
        (
            "pvce_node_failures_7d",
            "Times the node went down in the last 7 days.",
            |n| n.failures_7d as f64,
        ),
    ];
    for (metric, help, value) in gauges {
        per_node(&mut out, metric, help, &nodes, value);
    }
    let vms = monitor::latest_vm_loads(&state.pool, state.config.sample_interval_secs).await?;
    #[allow(clippy::cast_precision_loss)] // gauges
    let vm_gauges: [VmGauge; 2] = [
        (
            "pvce_vm_cpu_percent",
            "VM CPU busy, percent of its vCPUs (latest sample).",
            |v| v.cpu_percent,
        ),
        (
            "pvce_vm_memory_bytes",
            "Memory the VM's guest has (balloon size, latest sample).",
            |v| Some(v.mem_mib.saturating_mul(1024 * 1024) as f64),
        ),
    ];
    for (metric, help, value) in vm_gauges {
        per_vm(&mut out, metric, help, &vms, &nodes, value);
    }
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&state.pool)
        .await?;
    single(&mut out, "pvce_users", "Registered users.", "gauge", users);
    let m = state.console.metrics();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    single(
        &mut out,
        "pvce_console_sessions_active",
        "Open console sessions.",
        "gauge",
        state.console.active_sessions(),
    );
    single(
        &mut out,
        "pvce_console_sessions_total",
        "Console sessions opened.",
        "counter",
        load(&m.sessions_total),
    );
    let _ = writeln!(
        out,
        "# HELP pvce_console_bytes_total Bytes relayed by the console proxy.\n# TYPE pvce_console_bytes_total counter\npvce_console_bytes_total{{direction=\"to_client\"}} {}\npvce_console_bytes_total{{direction=\"to_node\"}} {}",
        load(&m.bytes_to_client),
        load(&m.bytes_to_node)
    );
    single(
        &mut out,
        "pvce_console_session_seconds_total",
        "Summed duration of ended console sessions.",
        "counter",
        load(&m.session_seconds_total),
    );
    single(
        &mut out,
        "pvce_console_refused_total",
        "Console connections refused (bad, used or expired token).",
        "counter",
        load(&m.refused_total),
    );
    backups(&mut out, &state.pool).await?;
    let now_ms = crate::vms::starts::now_ms();
    service_levels(&mut out, &state.slo.exposition(now_ms).await?);
    server_health(&mut out, &state.health);
    Ok(out)
}

/// Ages of the last good backups (src/backup/): overall and per subject
/// (a VM's layer by its id, or `control`). Nothing while no backup ever ran.
async fn backups(out: &mut String, pool: &crate::db::Pool) -> Result<(), sqlx::Error> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ages = crate::backup::ages(pool, now).await?;
    let Some(overall) = ages.overall_secs else {
        return Ok(());
    };
    single(
        out,
        "pvce_backup_age_seconds",
        "Seconds since the last backup run in which every item succeeded.",
        "gauge",
        overall,
    );
    single(
        out,
        "pvce_backup_last_run_failed_items",
        "Items that failed in the last finished backup run.",
        "gauge",
        ages.last_failed,
    );
    header(
        out,
        "pvce_backup_item_age_seconds",
        "Seconds since an item's last good backup (a VM's layer, or the control plane).",
        "gauge",
    );
    for (subject, age) in &ages.items {
        if let Some(a) = age {
            let _ = writeln!(
                out,
                "pvce_backup_item_age_seconds{{subject=\"{}\"}} {a}",
                escape(subject)
            );
        }
    }
    Ok(())
}

/// VM start outcomes and durations, and the objectives' targets and burn
/// rates (`slo::exposition`: the SLO page's records and definitions).
fn service_levels(out: &mut String, e: &crate::slo::exposition::Exposition) {
    let _ = writeln!(
        out,
        "# HELP pvce_vm_starts_total VM start attempts by outcome (as the SLO counts them).\n# TYPE pvce_vm_starts_total counter\npvce_vm_starts_total{{outcome=\"ok\"}} {}\npvce_vm_starts_total{{outcome=\"failed\"}} {}",
        e.starts.ok, e.starts.failed
    );
    let h = &e.starts.duration;
    // Written out, so the deploy check (alerts/deploy_check.rs) sees the
    // histogram's TYPE line beside its series.
    let _ = writeln!(
        out,
        "# HELP pvce_vm_start_duration_seconds Time from a successful start's request to the VM running.\n# TYPE pvce_vm_start_duration_seconds histogram"
    );
    for (le, n) in &h.buckets {
        let _ = writeln!(
            out,
            "pvce_vm_start_duration_seconds_bucket{{le=\"{le}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "pvce_vm_start_duration_seconds_bucket{{le=\"+Inf\"}} {}\npvce_vm_start_duration_seconds_sum {}\npvce_vm_start_duration_seconds_count {}",
        h.count, h.sum_seconds, h.count
    );
    header(
        out,
        "pvce_slo_target",
        "An objective's target in force (a ratio, or seconds for start_p95).",
        "gauge",
    );
    for (i, t) in &e.targets {
        let _ = writeln!(out, "pvce_slo_target{{indicator=\"{}\"}} {t}", i.as_str());
    }
    header(
        out,
        "pvce_slo_burn_rate",
        "An objective's error-budget burn rate over the window (1 spends the budget in exactly one period; absent without events).",
        "gauge",
    );
    for b in &e.burn {
        let _ = writeln!(
            out,
            "pvce_slo_burn_rate{{indicator=\"{}\",window=\"{}\"}} {}",
            b.indicator.as_str(),
            b.window,
            b.rate
        );
    }
}

/// The `# HELP` and `# TYPE` lines of a metric.
fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric with one unlabelled value.
fn single(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    header(out, name, help, kind);
    let _ = writeln!(out, "{name} {value}");
}

/// (metric, help, value) of a per-node gauge.
type NodeGauge = (&'static str, &'static str, fn(&Node) -> f64);

/// One gauge with a sample per node.
fn per_node(out: &mut String, metric: &str, help: &str, nodes: &[Node], value: fn(&Node) -> f64) {
    header(out, metric, help, "gauge");
    for n in nodes {
        let _ = writeln!(out, "{metric}{{node=\"{}\"}} {}", escape(&n.name), value(n));
    }
}

/// (metric, help, value) of a per-VM gauge; `None` leaves the VM out.
type VmGauge = (&'static str, &'static str, fn(&VmLoad) -> Option<f64>);

/// The server's own health: background loops and lost log lines.
fn server_health(out: &mut String, health: &crate::health::Health) {
    let loops = health.loops();
    let leases = health.leases();
    header(
        out,
        "pvce_loop_last_success_timestamp_seconds",
        "Unix time of a background loop's last completed pass (cluster-wide loops: only on the server holding their lease).",
        "gauge",
    );
    for (name, l) in &loops {
        // A cluster-wide loop another server runs now is not stalled here:
        // its last pass here is left out, so PvceLoopStalled watches only
        // the server that runs it.
        if leases.get(name).is_some_and(|s| !s.held) {
            continue;
        }
        if let Some(t) = l.last_success_unix {
            let _ = writeln!(
                out,
                "pvce_loop_last_success_timestamp_seconds{{loop=\"{name}\"}} {t}"
            );
        }
    }
    header(
        out,
        "pvce_loop_restarts_total",
        "Times a background loop was restarted after a panic.",
        "counter",
    );
    for (name, l) in &loops {
        let _ = writeln!(
            out,
            "pvce_loop_restarts_total{{loop=\"{name}\"}} {}",
            l.restarts
        );
    }
    header(
        out,
        "pvce_lease_held",
        "1 while this server holds the lease of a cluster-wide background loop (and runs it), else 0.",
        "gauge",
    );
    for (name, s) in &leases {
        let _ = writeln!(
            out,
            "pvce_lease_held{{name=\"{name}\"}} {}",
            u8::from(s.held)
        );
    }
    single(
        out,
        "pvce_log_lines_dropped_total",
        "Log lines that could not be written (e.g. the log's disk is full).",
        "counter",
        crate::logging::dropped_lines(),
    );
}

/// One gauge with a sample per running VM, labelled with its id and node.
fn per_vm(
    out: &mut String,
    metric: &str,
    help: &str,
    vms: &[VmLoad],
    nodes: &[Node],
    value: fn(&VmLoad) -> Option<f64>,
) {
    header(out, metric, help, "gauge");
    for v in vms {
        let Some(x) = value(v) else { continue };
        let node = nodes
            .iter()
            .find(|n| n.id == v.node_id)
            .map_or_else(|| v.node_id.to_string(), |n| n.name.clone());
        let _ = writeln!(
            out,
            "{metric}{{vm=\"{}\",node=\"{}\"}} {x}",
            v.vm_id,
            escape(&node)
        );
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_required_only_when_configured() {
        assert!(authorise(None, None).is_ok());
        let t: Secret = "scrape-me".parse().expect("token");
        assert!(authorise(Some(&t), Some("Bearer scrape-me")).is_ok());
        for wrong in [
            None,
            Some("Bearer scrape-m"),
            Some("Bearer scrape-me2"),
            Some("Bearer "),
            Some("Basic scrape-me"),
            Some("scrape-me"),
        ] {
            assert!(
                matches!(authorise(Some(&t), wrong), Err(MetricsError::Unauthorized)),
                "{wrong:?}"
            );
        }
    }
}
