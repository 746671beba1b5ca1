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
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use serde::Serialize;

/// One background loop's last known state.
#[derive(Debug, Clone, Default, Serialize)]
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

/// A cluster-wide loop's lease as this server last saw it (src/lease.rs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LeaseStatus {
    /// Whether this server holds it (and so runs the loop).
    pub held: bool,
    /// Who holds it, as last seen (`None`: not known yet, or the database
    /// did not answer).
    pub holder: Option<String>,
}

/// Shared health registry.
#[derive(Debug, Default)]
pub struct Health {
    loops: Mutex<BTreeMap<&'static str, LoopStatus>>,
    /// The leases of the cluster-wide loops.
    leases: Mutex<BTreeMap<&'static str, LeaseStatus>>,
    /// This server process's id, the holder name of its leases.
    server_id: Mutex<String>,
    /// Named problems found by checks (e.g. `storage` → "data dir full").
    problems: Mutex<BTreeMap<&'static str, String>>,
}

/// What `/healthz` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: &'static str,
    pub reasons: Vec<String>,
    pub loops: BTreeMap<&'static str, LoopStatus>,
    /// This server process's id (the holder name of its leases).
    pub server_id: String,
    /// The cluster-wide loops' leases: which this server holds, who holds
    /// the others. Loops not listed run on every server.
    pub leases: BTreeMap<&'static str, LeaseStatus>,
}

/// How a supervised pass ended (see [`record_pass`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassOutcome {
    Succeeded,
    Failed,
    Panicked,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a loop so it is listed before its first pass.
    pub fn register_loop(&self, name: &'static str) {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        loops.entry(name).or_default();
    }

    pub fn loop_ok(&self, name: &'static str) {
        let now = time::OffsetDateTime::now_utc();
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        let s = loops.entry(name).or_default();
        s.last_success = Some(crate::db::format_time(now));
        s.last_success_unix = Some(now.unix_timestamp());
        s.last_error = None;
    }

    pub fn loop_failed(&self, name: &'static str, error: &dyn std::fmt::Display) {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        let s = loops.entry(name).or_default();
        s.last_error = Some(error.to_string());
    }

    pub fn loop_restarted(&self, name: &'static str) {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = loops.get_mut(name) {
            s.restarts += 1;
        }
    }

    /// The loop is another server's to run now (its lease is held there):
    /// an earlier failure here no longer makes this server degraded.
    pub fn loop_idle(&self, name: &'static str) {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = loops.get_mut(name) {
            s.last_error = None;
        }
    }

    pub fn set_server_id(&self, id: &str) {
        *self.server_id.lock().unwrap_or_else(|e| e.into_inner()) = id.to_owned();
    }

    pub fn set_lease(&self, name: &'static str, status: LeaseStatus) {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        leases.insert(name, status);
    }

    /// Every cluster-wide loop's lease (for `/metrics`).
    pub fn leases(&self) -> BTreeMap<&'static str, LeaseStatus> {
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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

    /// Every loop's status (for `/metrics`).
    pub fn loops(&self) -> BTreeMap<&'static str, LoopStatus> {
        self.loops.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
            server_id: self
                .server_id
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            leases: self.leases(),
        }
    }
}

/// Records how a pass of loop `name` ended (`Err` of the outer result: it
/// panicked), for `/healthz` and the log.
pub fn record_pass<E: std::fmt::Display>(
    health: &Health,
    name: &'static str,
    ended: Result<Result<(), E>, Box<dyn std::any::Any + Send>>,
) -> PassOutcome {
    match ended {
        Ok(Ok(())) => {
            health.loop_ok(name);
            PassOutcome::Succeeded
        }
        Ok(Err(e)) => {
            tracing::warn!(loop_name = name, error = %e, "background pass failed");
            health.loop_failed(name, &e);
            PassOutcome::Failed
        }
        Err(_) => {
            tracing::error!(loop_name = name, "background pass panicked; restarting");
            health.loop_failed(name, &"the last pass panicked");
            health.loop_restarted(name);
            PassOutcome::Panicked
        }
    }
}

/// How long a loop waits before it runs again after its `n`-th panic in a
/// row (n ≥ 1): 1 s, 2 s, 4 s, … capped at a minute, so a loop that keeps
/// crashing neither spins nor stays away for long once the cause is gone.
pub fn restart_backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// After a supervised pass: a success resets the count of panics in a row,
/// a panic counts and waits [`restart_backoff`] before the loop goes on.
pub async fn after_pass(outcome: PassOutcome, panics: &mut u32) {
    match outcome {
        PassOutcome::Succeeded => *panics = 0,
        PassOutcome::Failed => {}
        PassOutcome::Panicked => {
            *panics += 1;
            tokio::time::sleep(restart_backoff(*panics)).await;
        }
    }
}

/// Runs `pass` every `every` for as long as the server runs, supervised:
/// a pass that fails is logged and recorded (the loop carries on at its next
/// tick); a pass that panics is recorded as a restart and the loop resumes
/// after [`restart_backoff`]. The loop's last success is visible in
/// `/healthz` and `/metrics`.
pub fn spawn_periodic<F, Fut, E>(
    health: &Arc<Health>,
    name: &'static str,
    every: Duration,
    mut pass: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display + Send,
{
    health.register_loop(name);
    let health = health.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut panics = 0u32;
        loop {
            tick.tick().await;
            let ended = AssertUnwindSafe(pass()).catch_unwind().await;
            after_pass(record_pass(&health, name, ended), &mut panics).await;
        }
    })
}

/// Runs a long-lived task (e.g. an event listener) supervised: whenever it
/// ends or panics it is started again after [`restart_backoff`].
pub fn spawn_supervised<F, Fut>(
    health: &Arc<Health>,
    name: &'static str,
    mut make: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    health.register_loop(name);
    let health = health.clone();
    tokio::spawn(async move {
        let mut restarts = 0u32;
        loop {
            health.loop_ok(name);
            let ended = AssertUnwindSafe(make()).catch_unwind().await;
            restarts += 1;
            match ended {
                Ok(()) => tracing::warn!(loop_name = name, "background task ended; restarting"),
                Err(_) => tracing::error!(loop_name = name, "background task panicked; restarting"),
            }
            health.loop_failed(name, &"ended unexpectedly; restarting");
            health.loop_restarted(name);
            tokio::time::sleep(restart_backoff(restarts)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(restart_backoff(1), Duration::from_secs(1));
        assert_eq!(restart_backoff(2), Duration::from_secs(2));
        assert_eq!(restart_backoff(4), Duration::from_secs(8));
        assert_eq!(restart_backoff(7), Duration::from_secs(60));
        assert_eq!(restart_backoff(1000), Duration::from_secs(60));
        assert_eq!(restart_backoff(0), Duration::from_secs(1));
    }

    /// The tokio clock is paused: intervals and backoff sleeps advance
    /// virtual time only, so the test is exact and takes no real time.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_pass_is_restarted_and_its_success_recorded() {
        let health = Arc::new(Health::new());
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let task = spawn_periodic(&health, "flaky", Duration::from_secs(5), move || {
            let c = c.clone();
            async move {
                match c.fetch_add(1, Ordering::SeqCst) {
                    0 => panic!("first pass dies"),
                    1 => Err("second pass fails"),
                    _ => Ok(()),
                }
            }
        });
        // Pass 1 at t=0 panics (then 1 s backoff), pass 2 at t=5 fails, pass 3 at t=10 succeeds.
        tokio::time::sleep(Duration::from_secs(11)).await;
        let s = health.loops()["flaky"].clone();
        assert!(calls.load(Ordering::SeqCst) >= 3);
        assert_eq!(s.restarts, 1);
        assert!(s.last_success.is_some());
        assert!(s.last_error.is_none());
        assert_eq!(health.report().status, "ok");
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ends_is_started_again() {
        let health = Arc::new(Health::new());
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let task = spawn_supervised(&health, "listener", move || {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("listener dies");
                }
                std::future::pending::<()>().await;
            }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(health.loops()["listener"].restarts, 1);
        task.abort();
    }

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
