//! Console load test, bounded in time and count, loopback only: many
//! concurrent console sessions through pvce's real relay (`ConsoleHub::relay`
//! mounted like `/ws/console`, in its own process with the server's default
//! limits) against the synthetic VNC-like server of `support`.
//!
//! Each session behaves like a student at a busy desktop: RATE times a second
//! it presses a key (and waits for the glyph update it causes — the round trip
//! timed) and requests a FRAME-sized Raw framebuffer update. While the proxied
//! sessions run, a few direct TCP "probe" sessions with the same workload run
//! alongside, so the baseline sees the same CPU contention at the same time;
//! "added latency" is proxied minus direct at the same percentile.
//!
//! Reports throughput, keystroke p50/p99 (direct, proxied, added), errors
//! (must be 0: the process exits non-zero otherwise), sessions the hub saw,
//! and the proxy process's RSS (VmRSS sampled, peak, VmHWM) and CPU.
//!
//! Run: `cargo bench --bench console_load` (or `scripts/bench-console.sh
//! load`). Knobs (env): PVCE_LOAD_SESSIONS (200), PVCE_LOAD_SECS (30),
//! PVCE_LOAD_PROBES (20 direct sessions), PVCE_LOAD_RATE (10 key+frame ticks
//! per second per session; 0 = back to back), PVCE_LOAD_FRAME (128x128, i.e.
//! 64 KiB per update).
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{ProxyChild, RfbClient, env_or, env_size, pct, rss_kib, us};
use tokio::sync::Semaphore;

const OP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Outcome {
    rtts: Vec<Duration>,
    bytes: u64,
    frames: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Outcome {
    fn merge(&mut self, o: Outcome) {
        self.rtts.extend(o.rtts);
        self.bytes += o.bytes;
        self.frames += o.frames;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
    fn fail(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

struct Load {
    sessions: usize,
    rate: f64,
    frame: (u16, u16),
}

async fn session_loop(
    mut c: RfbClient,
    load: Arc<Load>,
    start: Instant,
    end: Instant,
    offset: Duration,
) -> Outcome {
    let mut out = Outcome::default();
    tokio::time::sleep_until((start + offset).into()).await;
    let mut tick = (load.rate > 0.0).then(|| {
        let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / load.rate));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    while Instant::now() < end {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
            if Instant::now() >= end {
                break;
            }
        }
        match tokio::time::timeout(OP_TIMEOUT, c.key()).await {
            Ok(Ok(rtt)) => out.rtts.push(rtt),
            Ok(Err(e)) => {
                out.fail(e);
                return out;
            }
            Err(_) => {
                out.fail("keystroke timed out");
                return out;
            }
        }
        match tokio::time::timeout(OP_TIMEOUT, c.frame(load.frame.0, load.frame.1)).await {
            Ok(Ok(n)) => {
                out.bytes += n as u64;
                out.frames += 1;
            }
            Ok(Err(e)) => {
                out.fail(e);
                return out;
            }
            Err(_) => {
                out.fail("framebuffer update timed out");
                return out;
            }
        }
    }
    out
}

/// Opens `n` sessions, through the proxy or directly, 32 at a time (not timed).
async fn open(
    n: usize,
    vnc: SocketAddr,
    proxy: Option<&Arc<ProxyChild>>,
) -> (Vec<RfbClient>, Outcome) {
    let gate = Arc::new(Semaphore::new(32));
    let mut connecting = Vec::new();
    for _ in 0..n {
        let gate = gate.clone();
        let proxy = proxy.cloned();
        connecting.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let c = match proxy {
                Some(p) => tokio::time::timeout(OP_TIMEOUT, p.session()).await,
                None => tokio::time::timeout(OP_TIMEOUT, RfbClient::tcp(vnc)).await,
            };
            match c {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("connect timed out".to_owned()),
            }
        }));
    }
    let mut out = Outcome::default();
    let mut clients = Vec::new();
    for h in connecting {
        match h.await.unwrap() {
            Ok(c) => clients.push(c),
            Err(e) => out.fail(format!("connect: {e}")),
        }
    }
    (clients, out)
}

/// Runs every group of sessions at once for `secs`, ticks spread evenly over
/// one period; returns each group's outcome (RTTs sorted) and the elapsed time.
async fn run(load: &Arc<Load>, secs: f64, groups: Vec<Vec<RfbClient>>) -> (Vec<Outcome>, f64) {
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs_f64(secs);
    let spread = if load.rate > 0.0 {
        1.0 / load.rate
    } else {
        0.0
    };
    let n = groups.iter().map(Vec::len).sum::<usize>().max(1);
    let mut k = 0usize;
    let mut tasks: Vec<Vec<_>> = Vec::new();
    for g in groups {
        tasks.push(
            g.into_iter()
                .map(|c| {
                    let offset = Duration::from_secs_f64(spread * k as f64 / n as f64);
                    k += 1;
                    tokio::spawn(session_loop(c, load.clone(), start, end, offset))
                })
                .collect(),
        );
    }
    let mut outs = Vec::new();
    for group in tasks {
        let mut total = Outcome::default();
        for t in group {
            match t.await {
                Ok(o) => total.merge(o),
                Err(e) => total.fail(format!("session task: {e}")),
            }
        }
        total.rtts.sort();
        outs.push(total);
    }
    (outs, start.elapsed().as_secs_f64())
}

fn report(name: &str, o: &Outcome, el: f64) {
    println!(
        "| {name:<8} | {:>8} | {:>9.1} | {:>8.0} | {:>7.1} | {:>8.1} | {:>8.1} | {:>8.1} | {:>6} |",
        o.rtts.len(),
        o.bytes as f64 / 1e6 / el,
        o.frames as f64 / el,
        o.rtts.len() as f64 / el,
        us(pct(&o.rtts, 50.0)),
        us(pct(&o.rtts, 99.0)),
        us(pct(&o.rtts, 100.0)),
        o.errors
    );
}

fn main() {
    if std::env::var("PVCE_BENCH_ROLE").as_deref() == Ok("proxy") {
        support::run_proxy_child();
        return;
    }
    let load = Arc::new(Load {
        sessions: env_or("PVCE_LOAD_SESSIONS", 200),
        rate: env_or("PVCE_LOAD_RATE", 10.0),
        frame: env_size("PVCE_LOAD_FRAME", (128, 128)),
    });
    let secs: f64 = env_or("PVCE_LOAD_SECS", 30.0);
    let probes: usize = env_or("PVCE_LOAD_PROBES", 20);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ok = rt.block_on(async move {
        let vnc = support::spawn_vnc_like().await;
        let proxy = Arc::new(ProxyChild::spawn(vnc).await);
        let pid = proxy.pid().to_string();
        println!(
            "console load test: {} sessions through pvce + {probes} direct probe sessions at once for {secs} s, each {} key+{}x{} frame ticks/s ({} KiB per frame); {} CPUs, load average {} at start",
            load.sessions,
            load.rate,
            load.frame.0,
            load.frame.1,
            usize::from(load.frame.0) * usize::from(load.frame.1) * 4 / 1024,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            support::loadavg(),
        );

        let (rss_idle, _) = rss_kib(&pid);
        let (proxied_clients, mut proxied) = open(load.sessions, vnc, Some(&proxy)).await;
        let (direct_clients, mut direct) = open(probes, vnc, None).await;
        eprintln!(
            "{} sessions through pvce and {} direct probes open, running {secs} s…",
            proxied_clients.len(),
            direct_clients.len()
        );
        let cpu0 = support::cpu_secs(&pid);
        let me0 = support::cpu_secs("self");
        // Sample the proxy's RSS and active sessions while the load runs.
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (pid, sampling, proxy) = (pid.clone(), sampling.clone(), proxy.clone());
            tokio::spawn(async move {
                let (mut peak_rss, mut peak_active) = (0u64, 0u64);
                while sampling.load(Ordering::Relaxed) {
                    peak_rss = peak_rss.max(rss_kib(&pid).0);
                    if let Ok((active, ..)) = proxy.stats().await {
                        peak_active = peak_active.max(active);
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                (peak_rss, peak_active)
            })
        };
        let (outs, el) = run(&load, secs, vec![proxied_clients, direct_clients]).await;
        let mut outs = outs.into_iter();
        proxied.merge(outs.next().unwrap_or_default());
        direct.merge(outs.next().unwrap_or_default());
        sampling.store(false, Ordering::Relaxed);
        let (peak_rss, peak_active) = sampler.await.unwrap();
        let proxy_cpu = support::cpu_secs(&pid) - cpu0;
        let me_cpu = support::cpu_secs("self") - me0;
        let (_, hwm) = rss_kib(&pid);
        // Every session must be unregistered once its client is gone.
        let mut leftover = u64::MAX;
        for _ in 0..50 {
            leftover = proxy.stats().await.map_or(u64::MAX, |s| s.0);
            if leftover == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stats = proxy.stats().await.unwrap_or_default();

        println!();
        println!(
            "| path     | keys     | MB/s      | frames/s | keys/s  | p50 µs   | p99 µs   | max µs   | errors |"
        );
        println!(
            "|----------|---------:|----------:|---------:|--------:|---------:|---------:|---------:|-------:|"
        );
        report("direct", &direct, el);
        report("pvce", &proxied, el);
        let added = |p: f64| us(pct(&proxied.rtts, p)) - us(pct(&direct.rtts, p));
        println!();
        println!(
            "added keystroke latency through pvce: p50 {:.0} µs, p99 {:.0} µs",
            added(50.0),
            added(99.0)
        );
        println!(
            "pvce proxy process: RSS {:.1} MiB idle, {:.1} MiB peak (sampled VmRSS), VmHWM {:.1} MiB; {:.0}% CPU over the phase; {} sessions active at peak, {} left after; {:.1} MB relayed to clients, {} refused",
            rss_idle as f64 / 1024.0,
            peak_rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            100.0 * proxy_cpu / el,
            peak_active,
            leftover,
            stats.1 as f64 / 1e6,
            stats.3,
        );
        println!(
            "bench process (clients + synthetic server): {:.0}% CPU, VmHWM {:.1} MiB; load average {} at the end",
            100.0 * me_cpu / el,
            rss_kib("self").1 as f64 / 1024.0,
            support::loadavg()
        );
        let errors = direct.errors + proxied.errors;
        if let Some(e) = direct.first_error.as_ref().or(proxied.first_error.as_ref()) {
            println!("first error: {e}");
        }
        let all_open = peak_active == load.sessions as u64;
        println!(
            "errors: {errors}{}",
            if errors == 0 && leftover == 0 && all_open {
                " — OK"
            } else {
                " — FAILED"
            }
        );
        errors == 0 && leftover == 0 && all_open
    });
    if !ok {
        std::process::exit(1);
    }
}
