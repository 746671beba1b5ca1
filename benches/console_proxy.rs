//! Console proxy benchmark, side by side in one run against the same
//! synthetic VNC-like server (see `support`): a direct TCP connection, pvce's
//! relay (`ConsoleHub::relay` behind `/ws/console`, in its own process) and
//! `websockify` (the proxy noVNC ships with). For each: throughput of a bulk
//! framebuffer stream (full-screen Raw updates requested back to back, one
//! connection, as one noVNC client) and the round trip a keystroke sees (key
//! event → 512-byte glyph update), p50/p99.
//!
//! Run: `scripts/bench-console.sh` (installs websockify into a venv and
//! builds in release mode), or `cargo bench --bench console_proxy` with
//! `PVCE_WEBSOCKIFY=/path/to/websockify` (skipped when absent).
//! Knobs: PVCE_BENCH_SECS (throughput seconds per round, 5), PVCE_BENCH_KEYS
//! (keystrokes per round, 5000), PVCE_BENCH_ROUNDS (3; the median round is
//! reported), PVCE_BENCH_FRAME (1920x1080), PVCE_BENCH_ONLY (one path's
//! name, e.g. `pvce`, to profile it alone: rounds only, no table).
//!
//! Loopback only.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{ProxyChild, RfbClient, env_or, env_size, pct, us};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Direct,
    Pvce,
    Websockify,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct TCP",
            Mode::Pvce => "pvce",
            Mode::Websockify => "websockify",
        }
    }
}

struct Targets {
    vnc: SocketAddr,
    pvce: ProxyChild,
    websockify: Option<SocketAddr>,
    websockify_pid: Option<u32>,
}

impl Targets {
    async fn connect(&self, mode: Mode) -> RfbClient {
        match mode {
            Mode::Direct => RfbClient::tcp(self.vnc).await.unwrap(),
            Mode::Pvce => self.pvce.session().await.unwrap(),
            Mode::Websockify => {
                let addr = self.websockify.unwrap();
                RfbClient::ws(&format!("ws://{addr}/"), None).await.unwrap()
            }
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Round {
    mb_s: f64,
    p50: Duration,
    p99: Duration,
    proxy_cpu_per_gb: f64,
    client_cpu_per_gb: f64,
}

/// CPU seconds used so far by the proxy of `mode` (none for direct TCP).
fn proxy_cpu(t: &Targets, mode: Mode) -> f64 {
    match mode {
        Mode::Direct => 0.0,
        Mode::Pvce => support::cpu_secs(&t.pvce.pid().to_string()),
        Mode::Websockify => t.websockify_pid.map_or(0.0, support::tree_cpu_secs),
    }
}

/// Returns (MB/s, proxy CPU-seconds per GB, client+server CPU-seconds per GB).
async fn throughput(t: &Targets, mode: Mode, secs: f64, (w, h): (u16, u16)) -> (f64, f64, f64) {
    let mut c = t.connect(mode).await;
    // Warm-up: one frame.
    c.frame(w, h).await.unwrap();
    let cpu0 = proxy_cpu(t, mode);
    let me0 = support::cpu_secs("self");
    let start = Instant::now();
    let mut bytes = 0usize;
    while start.elapsed().as_secs_f64() < secs {
        bytes += c.frame(w, h).await.unwrap();
    }
    let el = start.elapsed().as_secs_f64();
    let cpu = proxy_cpu(t, mode) - cpu0;
    let me = support::cpu_secs("self") - me0;
    let gb = bytes as f64 / 1e9;
    (bytes as f64 / 1e6 / el, cpu / gb, me / gb)
}

async fn latency(t: &Targets, mode: Mode, keys: usize) -> (Duration, Duration) {
    let mut c = t.connect(mode).await;
    for _ in 0..200 {
        c.key().await.unwrap();
    }
    let mut s = Vec::with_capacity(keys);
    for _ in 0..keys {
        s.push(c.key().await.unwrap());
    }
    s.sort();
    (pct(&s, 50.0), pct(&s, 99.0))
}

/// Starts websockify on a free loopback port; None if it isn't installed.
async fn spawn_websockify(target: SocketAddr) -> Option<(tokio::process::Child, SocketAddr)> {
    let exe = std::env::var("PVCE_WEBSOCKIFY").unwrap_or_else(|_| "websockify".into());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = tokio::process::Command::new(&exe)
        .arg(format!("127.0.0.1:{port}"))
        .arg(target.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(child) = child else {
        eprintln!(
            "websockify not found ({exe}); set PVCE_WEBSOCKIFY or run scripts/bench-console.sh"
        );
        return None;
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "websockify did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some((child, addr))
}

fn median(v: &[Round]) -> Round {
    let mid = v.len() / 2;
    let by = |f: fn(&Round) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x[mid]
    };
    Round {
        mb_s: by(|r| r.mb_s),
        p50: Duration::from_secs_f64(by(|r| r.p50.as_secs_f64())),
        p99: Duration::from_secs_f64(by(|r| r.p99.as_secs_f64())),
        proxy_cpu_per_gb: by(|r| r.proxy_cpu_per_gb),
        client_cpu_per_gb: by(|r| r.client_cpu_per_gb),
    }
}

fn main() {
    if std::env::var("PVCE_BENCH_ROLE").as_deref() == Ok("proxy") {
        support::run_proxy_child();
        return;
    }
    let secs: f64 = env_or("PVCE_BENCH_SECS", 5.0);
    let keys: usize = env_or("PVCE_BENCH_KEYS", 5000);
    let rounds: usize = env_or("PVCE_BENCH_ROUNDS", 3).max(1);
    let frame = env_size("PVCE_BENCH_FRAME", (1920, 1080));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let vnc = support::spawn_vnc_like().await;
        let pvce = ProxyChild::spawn(vnc).await;
        let ws = spawn_websockify(vnc).await;
        let t = Targets {
            vnc,
            pvce,
            websockify: ws.as_ref().map(|w| w.1),
            websockify_pid: ws.as_ref().and_then(|w| w.0.id()),
        };
        let mut modes = vec![Mode::Direct, Mode::Pvce];
        if t.websockify.is_some() {
            modes.push(Mode::Websockify);
        }
        // For profiling one peer (`perf record -p`): the others stay idle.
        // The comparison and the targets need all three.
        let only = std::env::var("PVCE_BENCH_ONLY").ok();
        let measured: Vec<Mode> = modes
            .iter()
            .copied()
            .filter(|m| only.as_deref().is_none_or(|o| o == m.name()))
            .collect();
        println!(
            "console proxy benchmark: {}x{} Raw frames ({:.1} MB each), {secs} s of frames + {keys} keystrokes per path and round, {rounds} rounds interleaved (medians shown); {} CPUs, load average {} at start{}",
            frame.0,
            frame.1,
            f64::from(frame.0) * f64::from(frame.1) * 4.0 / 1e6,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            support::loadavg(),
            if std::env::var_os("PVCE_BENCH_NAGLE").is_some() { "; pvce WITHOUT TCP_NODELAY on accepted sockets" } else { "" },
        );
        let mut results: Vec<Vec<Round>> = vec![Vec::new(); modes.len()];
        for r in 0..rounds {
            for (i, &m) in modes.iter().enumerate() {
                if !measured.contains(&m) {
                    continue;
                }
                let (mb_s, proxy_cpu, client_cpu) = throughput(&t, m, secs, frame).await;
                let (p50, p99) = latency(&t, m, keys).await;
                eprintln!(
                    "  round {}: {:<10} {:>7.1} MB/s  keystroke p50 {:>6.1} µs  p99 {:>7.1} µs  proxy {:.2} CPU-s/GB  client+server {:.2}  (load {})",
                    r + 1,
                    m.name(),
                    mb_s,
                    us(p50),
                    us(p99),
                    proxy_cpu,
                    client_cpu,
                    support::loadavg(),
                );
                results[i].push(Round {
                    mb_s,
                    p50,
                    p99,
                    proxy_cpu_per_gb: proxy_cpu,
                    client_cpu_per_gb: client_cpu,
                });
            }
        }
        if measured.len() < modes.len() {
            return;
        }
        let med: Vec<Round> = results.iter().map(|v| median(v)).collect();
        let direct = med[0];
        println!();
        println!(
            "| path       | MB/s | vs direct | keystroke p50 µs | p99 µs | added p50 µs | added p99 µs | proxy CPU-s/GB | client+server CPU-s/GB |"
        );
        println!(
            "|------------|-----:|----------:|-----------------:|-------:|-------------:|-------------:|---------------:|-----------------------:|"
        );
        for (m, r) in modes.iter().zip(&med) {
            println!(
                "| {:<10} | {:>4.0} | {:>8.0}% | {:>16.1} | {:>6.1} | {:>12.1} | {:>12.1} | {:>14} | {:>22.2} |",
                m.name(),
                r.mb_s,
                100.0 * r.mb_s / direct.mb_s,
                us(r.p50),
                us(r.p99),
                us(r.p50) - us(direct.p50),
                us(r.p99) - us(direct.p99),
                if *m == Mode::Direct { "—".to_owned() } else { format!("{:.2}", r.proxy_cpu_per_gb) },
                r.client_cpu_per_gb,
            );
        }
        let p = med[1];
        println!();
        println!(
            "target: pvce within 10% of direct TCP throughput: {} ({:.0}%)",
            if p.mb_s >= 0.9 * direct.mb_s { "MET" } else { "MISSED" },
            100.0 * p.mb_s / direct.mb_s
        );
        if modes.contains(&Mode::Websockify) {
            // Issue 18's targets for the leaner relay.
            let w = med[2];
            let ratio = p.mb_s / w.mb_s;
            println!(
                "target: pvce ≥ 1.5× websockify throughput: {} ({ratio:.2}×)",
                if ratio >= 1.5 { "MET" } else { "MISSED" },
            );
            let cpu = p.proxy_cpu_per_gb / w.proxy_cpu_per_gb;
            println!(
                "target: pvce CPU per GB ≤ ⅓ of websockify's: {} ({:.2} vs {:.2} CPU-s/GB, {cpu:.2}×)",
                if cpu <= 1.0 / 3.0 { "MET" } else { "MISSED" },
                p.proxy_cpu_per_gb,
                w.proxy_cpu_per_gb,
            );
        }
        let added_p99 = us(p.p99) - us(direct.p99);
        println!(
            "target: pvce added p99 keystroke latency < 1 ms: {} ({added_p99:.0} µs)",
            if added_p99 < 1000.0 { "MET" } else { "MISSED" }
        );
        drop(ws);
    });
}
