//! Prometheus metrics: gauges read from the database at scrape time, so they
//! are always consistent with what the API reports.

use std::fmt::Write;

use crate::app::AppState;

pub async fn render(state: &AppState) -> Result<String, sqlx::Error> {
    let mut out = String::new();
    let by_state: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM vms GROUP BY state")
            .fetch_all(&state.pool)
            .await?;
    let _ = writeln!(
        out,
        "# HELP pvce_vms Personal VMs by state.\n# TYPE pvce_vms gauge"
    );
    for s in ["stopped", "starting", "running", "stopping", "error"] {
        let n = by_state.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "pvce_vms{{state=\"{s}\"}} {n}");
    }
    let nodes: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT name, state, maintenance, mem_total_mib, mem_used_mib FROM nodes ORDER BY name",
    )
    .fetch_all(&state.pool)
    .await?;
    let _ = writeln!(
        out,
        "# HELP pvce_node_up 1 if the node answers libvirt calls.\n# TYPE pvce_node_up gauge"
    );
    for (name, st, _, _, _) in &nodes {
        let _ = writeln!(
            out,
            "pvce_node_up{{node=\"{}\"}} {}",
            escape(name),
            i32::from(st == "up")
        );
    }
    let _ = writeln!(
        out,
        "# HELP pvce_node_memory_used_mib Host memory in use.\n# TYPE pvce_node_memory_used_mib gauge"
    );
    for (name, _, _, _, used) in &nodes {
        let _ = writeln!(
            out,
            "pvce_node_memory_used_mib{{node=\"{}\"}} {used}",
            escape(name)
        );
    }
    let _ = writeln!(
        out,
        "# HELP pvce_node_memory_total_mib Host memory.\n# TYPE pvce_node_memory_total_mib gauge"
    );
    for (name, _, _, total, _) in &nodes {
        let _ = writeln!(
            out,
            "pvce_node_memory_total_mib{{node=\"{}\"}} {total}",
            escape(name)
        );
    }
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&state.pool)
        .await?;
    let _ = writeln!(
        out,
        "# HELP pvce_users Registered users.\n# TYPE pvce_users gauge\npvce_users {users}"
    );
    Ok(out)
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
