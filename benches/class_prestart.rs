//! Class pre-start benchmark (issue 15), on the real local libvirtd with the
//! tiny guest; the class-time loop is ticked every 0.5 s on the wall clock
//! by the bench (the server's own pass is off), so times are the admission
//! queue's, not the loop's 15 s interval.
//!
//! 1. **Boot storm**: a session of N students × 1 VM begins within the
//!    pre-start lead; time from the first admission to the last console
//!    usable (the VM running: its start returned, the console can be
//!    opened) and to the last guest booted (`BOOT-OK` on its serial
//!    console), with the admission limits (`--class-starts-per-node` 4,
//!    `--class-starts-cluster` 30, a start counting for
//!    `--class-boot-secs` 20 after it returned: the defaults) and without
//!    (limits of 10,000, no boot time). The VMs are powered off between.
//! 2. **Burst under a limit**: a session of M VMs pre-started with a
//!    concurrency limit of L (per node and cluster, boot time 20 s): the
//!    most starts in flight at any moment (the loop's count, and the VMs
//!    in state `starting` sampled every 50 ms) and whether all M run at the
//!    end.
//!
//! Nodes: the local libvirtd, or with PVCE_BENCH_RIG=N the N-node rig of
//! `scripts/multinode.sh` (the local node removed, so the class is spread
//! over the rig and the per-node limit applies per rig node). The rig's
//! nodes share this machine's cores, so it spreads the limits, not the
//! work: the numbers say what the admission queue does with a class, not
//! how fast three real hosts would boot it.
//!
//! Run: `cargo bench --bench class_prestart` (PVCE_BENCH_STUDENTS, default
//! 60; PVCE_BENCH_BURST, default 100; PVCE_BENCH_BURST_LIMIT, default 30;
//! PVCE_BENCH_PARTS, default `storm,burst`; PVCE_BENCH_RIG, default 0).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pvce::classtime::admission::Limits;
use pvce::classtime::class::{ClassSettings, ClassTime};
use serde_json::json;
use time::OffsetDateTime;

const PREFIX: &str = "test-pvce-classbench-";
/// How often the bench ticks the class-time loop.
const TICK: Duration = Duration::from_millis(500);
const GIVE_UP: Duration = Duration::from_secs(1800);

struct Bench {
    server: pvce::app::Server,
    http: reqwest::Client,
    token: String,
}

/// What one pre-start measured.
#[derive(Debug)]
struct Run {
    /// First admission → each VM seen running.
    running: Vec<Duration>,
    /// First admission → each VM's `BOOT-OK` (when asked for).
    booted: Vec<Duration>,
    /// The loop's most starts in flight at once.
    peak_in_flight: u32,
    /// The most VMs in state `starting` seen at once.
    peak_starting: usize,
    /// Admissions beyond one per VM: starts tried again after a failure.
    retries: usize,
    /// VMs whose pre-start the loop gave up on (every attempt failed).
    failed: usize,
    /// Guests that ran but whose kernel panicked while booting.
    panicked: usize,
}

enum Boot {
    Pending,
    Ok,
    Panicked,
}

impl Run {
    /// What the run's numbers leave out, for the printed line.
    fn failures(&self) -> String {
        format!(
            "{} start(s) retried, {} VM(s) never started, {} guest(s) panicked while booting",
            self.retries, self.failed, self.panicked
        )
    }
}

impl Bench {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    async fn states(&self, course: &str) -> HashMap<String, String> {
        sqlx::query_as::<_, (String, String)>("SELECT id, state FROM vms WHERE course_id = $1")
            .bind(course)
            .fetch_all(&self.server.state.pool)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    /// What the guest's serial console says of its boot so far. A guest
    /// starved of CPU while booting can panic ("IO-APIC + timer doesn't
    /// work!": its timer check ran out of time) and never boot: seen in a
    /// storm without limits, and counted, not waited for.
    fn boot(&self, vm: &str) -> Boot {
        let log = std::fs::read_to_string(
            self.server
                .state
                .storage
                .console_log_path(vm.parse().unwrap()),
        )
        .unwrap_or_default();
        if log.contains("BOOT-OK") {
            Boot::Ok
        } else if log.contains("Kernel panic") {
            Boot::Panicked
        } else {
            Boot::Pending
        }
    }

    /// A session of the course under way in 5 minutes (within the lead):
    /// its id.
    async fn session(&self, course: &str) -> String {
        let at =
            |m: i64| pvce::db::format_time(OffsetDateTime::now_utc() + time::Duration::minutes(m));
        let s = support::post_ok(
            &self.http,
            &self.token,
            self.url(&format!("/api/courses/{course}/sessions")),
            json!({"title": "bench", "starts_at": at(5), "ends_at": at(95)}),
        )
        .await;
        s["id"].as_str().unwrap().to_owned()
    }

    /// Pre-starts the course's class with `settings`: ticks until every VM
    /// runs (and booted, with `boot`).
    async fn prestart(
        &self,
        course: &str,
        vms: &[String],
        settings: ClassSettings,
        boot: bool,
    ) -> Run {
        let st = &self.server.state;
        let class = Arc::new(
            ClassTime::load(
                st.sessions.clone(),
                st.vms.clone(),
                st.nodes.clone(),
                settings,
            )
            .await
            .unwrap(),
        );
        let session = self.session(course).await;
        let mut first: Option<Instant> = None;
        let mut running: HashMap<String, Duration> = HashMap::new();
        let mut booted: HashMap<String, Duration> = HashMap::new();
        let mut panicked: HashSet<String> = HashSet::new();
        let mut peak_starting = 0;
        let mut admissions = 0;
        let mut next_tick = Instant::now();
        let give_up = Instant::now() + GIVE_UP;
        loop {
            if Instant::now() >= next_tick {
                let r = class.tick(OffsetDateTime::now_utc()).await.unwrap();
                if first.is_none() && !r.admitted.is_empty() {
                    first = Some(Instant::now());
                }
                admissions += r.admitted.len();
                next_tick += TICK;
            }
            let states = self.states(course).await;
            peak_starting = peak_starting.max(states.values().filter(|s| *s == "starting").count());
            if let Some(t0) = first {
                for (vm, state) in &states {
                    if state == "running" && !running.contains_key(vm) {
                        running.insert(vm.clone(), t0.elapsed());
                    }
                    if boot
                        && running.contains_key(vm)
                        && !booted.contains_key(vm)
                        && !panicked.contains(vm)
                    {
                        match self.boot(vm) {
                            Boot::Ok => {
                                booted.insert(vm.clone(), t0.elapsed());
                            }
                            Boot::Panicked => {
                                panicked.insert(vm.clone());
                            }
                            Boot::Pending => {}
                        }
                    }
                }
            }
            let settled = |vm: &String| booted.contains_key(vm) || panicked.contains(vm);
            let done = running.len() == vms.len() && (!boot || vms.iter().all(settled));
            // Every VM admitted and returned, none waiting for a retry, yet
            // some not running: those the loop gave up on (a storm without
            // limits can fail starts; that is a result, not a hang).
            let given_up = first.is_some()
                && class.queued() == 0
                && class.starts_in_flight() == 0
                && !states.values().any(|s| s == "starting")
                && (!boot || running.keys().all(settled));
            if done || given_up {
                break;
            }
            assert!(
                Instant::now() < give_up,
                "{} of {} running, {} booted",
                running.len(),
                vms.len(),
                booted.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = self
            .http
            .delete(self.url(&format!("/api/courses/{course}/sessions/{session}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let mut running: Vec<Duration> = running.into_values().collect();
        let mut booted: Vec<Duration> = booted.into_values().collect();
        running.sort();
        booted.sort();
        let failed = vms.len() - running.len();
        Run {
            running,
            booted,
            peak_in_flight: class.peaks().1,
            peak_starting,
            retries: admissions.saturating_sub(vms.len() - failed),
            failed,
            panicked: panicked.len(),
        }
    }

    /// Powers every VM off and waits until all are stopped.
    async fn power_off(&self, course: &str, vms: &[String]) {
        let tasks: Vec<_> = vms
            .iter()
            .map(|vm| {
                let (http, token, url) = (
                    self.http.clone(),
                    self.token.clone(),
                    self.url(&format!("/api/vms/{vm}/poweroff")),
                );
                tokio::spawn(async move { http.post(url).bearer_auth(token).send().await })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        let give_up = Instant::now() + Duration::from_secs(300);
        while self.states(course).await.values().any(|s| s != "stopped") {
            assert!(Instant::now() < give_up, "VMs still not stopped");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// "last X s (p50 Y s)" of sorted times, or "none" (every VM failed).
fn last_and_p50(times: &[Duration]) -> String {
    match times.last() {
        Some(last) => format!(
            "{:.1} s (p50 {:.1} s)",
            last.as_secs_f64(),
            support::pct(times, 50.0).as_secs_f64()
        ),
        None => "none".to_owned(),
    }
}

fn settings(per_node: u32, cluster: u32, boot_secs: i64) -> ClassSettings {
    ClassSettings {
        limits: Limits { per_node, cluster },
        lead: time::Duration::minutes(10),
        boot: time::Duration::seconds(boot_secs),
    }
}

#[tokio::main]
async fn main() {
    let _cleanup = support::LibvirtLeftovers::new(PREFIX);
    let _ = tracing_subscriber::fmt()
        .with_env_filter("pvce=warn")
        .try_init();
    let students: usize = support::env_or("PVCE_BENCH_STUDENTS", 60);
    let burst: usize = support::env_or("PVCE_BENCH_BURST", 100);
    let burst_limit: u32 = support::env_or("PVCE_BENCH_BURST_LIMIT", 30);
    let parts: String = support::env_or("PVCE_BENCH_PARTS", "storm,burst".to_owned());
    let rig_nodes: usize = support::env_or("PVCE_BENCH_RIG", 0);
    // Before the server: its nodes must answer when they are registered.
    let rig = (rig_nodes > 0).then(|| support::Rig::up(rig_nodes));
    let (_dir, server) = support::lab_server(PREFIX, |c| {
        c.class_interval_secs = 0;
        // The rig's libvirtds listen on plain TCP (test rig, loopback bridge).
        c.allow_tcp_nodes = rig_nodes > 0;
        c.shutdown_timeout_secs = 30;
    })
    .await;
    let http = reqwest::Client::new();
    let token = support::login(&http, &server.url(), "bench-teacher").await;
    if let Some(rig) = &rig {
        support::bench_user(&server.state.pool, "bench-admin", pvce::auth::Role::Admin).await;
        let admin = support::login(&http, &server.url(), "bench-admin").await;
        rig.register(&http, &server.url(), &admin).await;
    }
    let nodes = match rig_nodes {
        0 => "the local node".to_owned(),
        n => format!("{n} rig nodes"),
    };
    let bench = Bench {
        server,
        http,
        token,
    };
    println!("load average at the start: {}", support::loadavg());

    if parts.contains("storm") {
        let (course, vms) =
            support::tiny_class(&bench.server, &bench.token, "STORM", students, 128).await;
        for (name, s) in [
            (
                "with the admission limits (4 per node, 30 in the cluster, boot 20 s)",
                settings(4, 30, 20),
            ),
            ("without limits", settings(10_000, 10_000, 0)),
        ] {
            let run = bench.prestart(&course, &vms, s, true).await;
            println!(
                "class_prestart storm, {students} VMs on {nodes}, {name}: first admission → last console usable {}, → last BOOT-OK {}; peak starts in flight {}, peak in state starting {}; {}; load {}",
                last_and_p50(&run.running),
                last_and_p50(&run.booted),
                run.peak_in_flight,
                run.peak_starting,
                run.failures(),
                support::loadavg(),
            );
            bench.power_off(&course, &vms).await;
        }
    }
    if parts.contains("burst") {
        // 64 MiB each: a hundred guests fit in this machine's memory beside
        // its other work; the burst measures starts, not boots.
        let (course, vms) =
            support::tiny_class(&bench.server, &bench.token, "BURST", burst, 64).await;
        let run = bench
            .prestart(&course, &vms, settings(burst_limit, burst_limit, 20), false)
            .await;
        let all_running = bench
            .states(&course)
            .await
            .values()
            .filter(|s| *s == "running")
            .count();
        println!(
            "class_prestart burst, {burst} start requests at once on {nodes} under a limit of {burst_limit}: peak starts in flight {} (loop), {} in state starting (sampled); {all_running} of {burst} running at the end, first admission → running {}; {}; load {}",
            run.peak_in_flight,
            run.peak_starting,
            last_and_p50(&run.running),
            run.failures(),
            support::loadavg(),
        );
        assert!(run.peak_in_flight <= burst_limit && run.peak_starting <= burst_limit as usize);
        assert_eq!(all_running, burst);
        bench.power_off(&course, &vms).await;
    }
}
