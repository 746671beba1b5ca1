//! Holds `deploy/` to the code: every metric the Prometheus rules and the
//! Grafana dashboard name is one pvce exports, and the Prometheus alerts use
//! the built-in rules' levels, thresholds and hold times.

use std::path::{Path, PathBuf};

use super::Level;
use super::rules::RuleSet;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every `pvce_…` metric name in `text` (recorded series are `pvce:…`).
fn metric_names(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = text[i..].find("pvce_") {
        let start = i + off;
        let word_start = start == 0
            || !(b[start - 1].is_ascii_alphanumeric()
                || b[start - 1] == b'_'
                || b[start - 1] == b':');
        let mut end = start;
        while end < b.len()
            && (b[end].is_ascii_lowercase() || b[end].is_ascii_digit() || b[end] == b'_')
        {
            end += 1;
        }
        if word_start {
            out.push(text[start..end].to_owned());
        }
        i = end;
    }
    out.sort();
    out.dedup();
    out
}

/// The text of every `.rs` file under `dir`, except this module's own.
fn sources(dir: &Path, out: &mut String) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            if !p.ends_with("alerts") {
                sources(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push_str(&std::fs::read_to_string(&p).expect("read source"));
        }
    }
}

/// An exported metric has a `# HELP name` line, written literally or from a
/// `"name"` constant of a per-node/per-VM gauge.
/// A histogram's `_bucket`, `_sum` and `_count` series are exported with
/// it (its HELP line names the histogram).
fn exported(src: &str, name: &str) -> bool {
    let literal =
        |n: &str| src.contains(&format!("HELP {n} ")) || src.contains(&format!("\"{n}\""));
    literal(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix).is_some_and(|base| {
                literal(base) && src.contains(&format!("TYPE {base} histogram"))
            })
        })
}

#[test]
fn every_metric_in_deploy_is_exported() {
    let mut src = String::new();
    sources(&root().join("src"), &mut src);
    let mut used = metric_names(&read("deploy/prometheus/pvce-alerts.yml"));
    used.extend(metric_names(&read("deploy/grafana/pvce-dashboard.json")));
    used.sort();
    used.dedup();
    for known in [
        "pvce_node_up",
        "pvce_node_cpu_percent",
        "pvce_console_refused_total",
    ] {
        assert!(
            used.iter().any(|u| u == known),
            "the scan missed {known}: {used:?}"
        );
    }
    let missing: Vec<&String> = used.iter().filter(|n| !exported(&src, n)).collect();
    assert!(missing.is_empty(), "not exported by /metrics: {missing:?}");
    // The check can fail.
    assert!(!exported(&src, "pvce_no_such_metric"));
    assert!(exported(&src, "pvce_vm_start_duration_seconds_bucket"));
    // Only a histogram has bucket series.
    assert!(!exported(&src, "pvce_vm_starts_total_bucket"));
}

#[test]
fn the_dashboard_is_json() {
    let d: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/pvce-dashboard.json")).expect("json");
    assert!(d["panels"].as_array().is_some_and(|p| !p.is_empty()));
}

/// One `- alert:` entry of the rules file (the file is written one field a
/// line, which is all this reader understands).
#[derive(Debug)]
struct Alert {
    name: String,
    expr: String,
    for_secs: i64,
    severity: String,
}

fn duration(s: &str) -> i64 {
    let (n, unit) = s.split_at(s.len() - 1);
    let n: i64 = n.parse().unwrap_or_else(|_| panic!("duration {s}"));
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => panic!("duration {s}"),
    }
}

fn alerts(yml: &str) -> Vec<Alert> {
    let mut out: Vec<Alert> = Vec::new();
    // Whether the lines being read belong to an alert (not a recording rule).
    let mut in_alert = false;
    for line in yml.lines() {
        let t = line.trim();
        if t.starts_with("- record:") || t.starts_with("- name:") {
            in_alert = false;
        }
        if let Some(name) = t.strip_prefix("- alert:") {
            in_alert = true;
            out.push(Alert {
                name: name.trim().to_owned(),
                expr: String::new(),
                for_secs: 0,
                severity: String::new(),
            });
        } else if let Some(a) = out.last_mut().filter(|_| in_alert) {
            if let Some(e) = t.strip_prefix("expr:") {
                a.expr = e.trim().to_owned();
            } else if let Some(f) = t.strip_prefix("for:") {
                a.for_secs = duration(f.trim());
            } else if let Some(s) = t.strip_prefix("severity:") {
                a.severity = s.trim().to_owned();
            }
        }
    }
    out
}

#[test]
fn prometheus_alerts_use_the_built_in_levels() {
    let yml = read("deploy/prometheus/pvce-alerts.yml");
    let all = alerts(&yml);
    assert!(
        all.len() > 10
            && all
                .iter()
                .all(|a| !a.expr.is_empty() && !a.severity.is_empty())
    );
    let set = RuleSet::defaults();
    // Built-in rule → the left-hand side of its Prometheus comparison.
    let pairs = [
        ("node_cpu", "pvce_node_cpu_percent >="),
        ("node_memory", "pvce:node_memory_used:percent >="),
        ("node_failures", "pvce_node_failures_7d >="),
        ("console_errors", "pvce:console_errors:percent1h >="),
        ("start_failures", "pvce:vm_start_failures:percent1h >="),
    ];
    for (id, lhs) in pairs {
        let rule = set.get(id).expect("rule");
        let t = rule.threshold.as_ref().expect("threshold");
        let mine: Vec<&Alert> = all.iter().filter(|a| a.expr.starts_with(lhs)).collect();
        let mut want = Vec::new();
        for l in Level::ALL {
            let bound = match l {
                Level::Info => t.info,
                Level::Warning => t.warning,
                Level::Critical => t.critical,
            };
            if let Some(b) = bound {
                want.push((
                    l.as_str().to_owned(),
                    format!("{lhs} {b}"),
                    rule.policy.hold_secs,
                ));
            }
        }
        let got: Vec<(String, String, i64)> = mine
            .iter()
            .map(|a| (a.severity.clone(), a.expr.clone(), a.for_secs))
            .collect();
        assert_eq!(got, want, "rule {id}");
    }
    // SLO burn, multi-window: the built-in levels, critical over 1h/5m,
    // warning and info over 6h/30m.
    let burn = set.get("slo_burn").expect("rule");
    let t = burn.threshold.as_ref().expect("threshold");
    let pair = |long: &str, short: &str, b: Option<f64>| {
        let b = b.expect("level");
        format!(
            "pvce_slo_burn_rate{{window=\"{long}\"}} >= {b} and ignoring (window) pvce_slo_burn_rate{{window=\"{short}\"}} >= {b}"
        )
    };
    let got: Vec<(String, String, i64)> = all
        .iter()
        .filter(|a| a.name == "PvceSloBurn")
        .map(|a| (a.severity.clone(), a.expr.clone(), a.for_secs))
        .collect();
    let want = vec![
        (
            "critical".to_owned(),
            pair("1h", "5m", t.critical),
            burn.policy.hold_secs,
        ),
        (
            "warning".to_owned(),
            pair("6h", "30m", t.warning),
            burn.policy.hold_secs,
        ),
        (
            "info".to_owned(),
            pair("6h", "30m", t.info),
            burn.policy.hold_secs,
        ),
    ];
    assert_eq!(got, want);
    // The windows named are those pvce exports.
    for (w, _) in crate::slo::exposition::BURN_WINDOWS {
        assert!(yml.contains(&format!("window=\"{w}\"")), "{w}");
    }
    // Node down: the built-in rule is critical at 1 (down) after its hold.
    let down = set.get("node_down").expect("rule");
    let a = all
        .iter()
        .find(|a| a.name == "PvceNodeDown")
        .expect("PvceNodeDown");
    assert_eq!(
        (a.expr.as_str(), a.severity.as_str(), a.for_secs),
        ("pvce_node_up == 0", "critical", down.policy.hold_secs)
    );
    assert_eq!(down.threshold.as_ref().and_then(|t| t.critical), Some(1.0));
    // CPU against the baseline: k × the spread floor, over the same weeks.
    let cpu = set.get("node_cpu").expect("rule");
    let d = cpu.deviation.as_ref().expect("deviation");
    let lhs =
        "avg_over_time(pvce_node_cpu_percent[10m]) - on (node) pvce:node_cpu_percent:baseline >=";
    let got: Vec<(String, String, i64)> = all
        .iter()
        .filter(|a| a.expr.starts_with(lhs))
        .map(|a| (a.severity.clone(), a.expr.clone(), a.for_secs))
        .collect();
    let want = vec![
        (
            "warning".to_owned(),
            format!("{lhs} {}", d.k_warning * d.min_spread),
            cpu.policy.hold_secs,
        ),
        (
            "critical".to_owned(),
            format!("{lhs} {}", d.k_critical * d.min_spread),
            cpu.policy.hold_secs,
        ),
    ];
    assert_eq!(got, want);
    assert!(yml.contains(&format!("offset {}w", d.spec.weeks)));
    assert!(!yml.contains(&format!("offset {}w", d.spec.weeks + 1)));
    assert!(yml.contains(&format!(
        "(pvce:node_cpu_percent:weekly_hours) >= {})",
        d.spec.min_weeks
    )));
}

#[test]
fn the_readers_read() {
    assert_eq!(
        metric_names("a pvce_x{y} - pvce:z:w + foo_pvce_q (pvce_a_1)"),
        vec!["pvce_a_1".to_owned(), "pvce_x".to_owned()]
    );
    let a = alerts(
        "  - alert: A\n    expr: x >= 1\n    for: 10m\n    labels:\n      severity: warning\n",
    );
    assert_eq!(
        (a[0].name.as_str(), a[0].for_secs, a[0].severity.as_str()),
        ("A", 600, "warning")
    );
}
