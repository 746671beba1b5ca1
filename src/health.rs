//! The server's own health: what `/healthz` reports and `/metrics` exports.
//!
//! Background loops (node monitor, load sampler, reconciler, …) report each
//! pass here, and storage checks report whether pvce can still write. The
//! answer is `ok` when every check passes and `degraded` with the reasons
//! otherwise; the server keeps answering either way (a degraded server still
//! serves what it can).
//!
//! Invariant: recording never blocks for long and never fails — a health
//! registry that could take the server down would defeat its purpose.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// One background loop's last known state.
#[derive(Debug, Clone, Serialize)]
pub struct LoopStatus {
    /// RFC 3339 time of the last pass that completed.
    pub last_success: Option<String>,
    /// The last failure (cleared by a success), for the operator.
    pub last_error: Option<String>,
    /// Times the loop was restarted after it ended unexpectedly.
    pub restarts: u64,
    /// Unix seconds of the last success, for `/metrics`.
    #[serde(skip)]
    pub last_success_unix: Option<i64>,
}

/// Shared health registry.
#[derive(Debug, Default)]
pub struct Health {
    loops: Mutex<BTreeMap<&'static str, LoopStatus>>,
    /// Named problems found by checks (e.g. `storage` → "data dir full").
    problems: Mutex<BTreeMap<&'static str, String>>,
}

/// What `/healthz` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: &'static str,
    pub reasons: Vec<String>,
    pub loops: BTreeMap<&'static str, LoopStatus>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a loop so it is listed before its first pass.
    pub fn register_loop(&self, name: &'static str) {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        loops.entry(name).or_insert(LoopStatus {
            last_success: None,
            last_error: None,
            restarts: 0,
            last_success_unix: None,
        });
    }

    pub fn loop_ok(&self, name: &'static str) {
        let now = time::OffsetDateTime::now_utc();
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        let s = loops.entry(name).or_insert(LoopStatus {
            last_success: None,
            last_error: None,
            restarts: 0,
            last_success_unix: None,
        });
        s.last_success = Some(crate::db::format_time(now));
        s.last_success_unix = Some(now.unix_timestamp());
        s.last_error = None;
    }

    pub fn loop_failed(&self, name: &'static str, error: &dyn std::fmt::Display) {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        let s = loops.entry(name).or_insert(LoopStatus {
            last_success: None,
            last_error: None,
            restarts: 0,
            last_success_unix: None,
        });
        s.last_error = Some(error.to_string());
    }

    pub fn loop_restarted(&self, name: &'static str) {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = loops.get_mut(name) {
            s.restarts += 1;
        }
    }

    /// Sets (Some) or clears (None) a named problem.
    pub fn set_problem(&self, check: &'static str, problem: Option<String>) {
        let mut p = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(text) => {
                p.insert(check, text);
            }
            None => {
                p.remove(check);
            }
        }
    }

    pub fn report(&self) -> Report {
        let loops = self.loops.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut reasons: Vec<String> = self
            .problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        for (name, s) in &loops {
            if let Some(e) = &s.last_error {
                reasons.push(format!("loop {name}: {e}"));
            }
        }
        Report {
            status: if reasons.is_empty() { "ok" } else { "degraded" },
            reasons,
            loops,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_until_a_problem_or_a_failing_loop() {
        let h = Health::new();
        h.register_loop("sampler");
        assert_eq!(h.report().status, "ok");
        h.loop_failed("sampler", &"disk full");
        let r = h.report();
        assert_eq!(r.status, "degraded");
        assert!(r.reasons[0].contains("disk full"));
        h.loop_ok("sampler");
        assert_eq!(h.report().status, "ok");
        assert!(h.report().loops["sampler"].last_success.is_some());
        h.set_problem("storage", Some("data dir is full".into()));
        assert_eq!(h.report().status, "degraded");
        h.set_problem("storage", None);
        assert_eq!(h.report().status, "ok");
    }
}
