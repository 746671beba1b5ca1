//! Sign-in load benchmark: while N clients sign in over and over, how fast
//! does the server still answer everything else? Prints `GET /api/vms`
//! p50/p99 and `/healthz` p99 (sequential probes), idle and under load, with
//! password checks on the request's own thread (`inline`, as before the
//! blocking pool) and on the bounded blocking pool (`pool`), side by side.
//!
//! The server runs in this process on a runtime of its own with one worker
//! thread per core (what `pvce serve` gets), the clients on another, so a
//! blocked server worker delays the server's answers, not the clients' clocks.
//! Each client has its own account and its own address (`X-Forwarded-For`
//! from a trusted proxy, as 200 lab machines would), so the per-source
//! budget is not what limits them. Loopback only.
//!
//! Run: `cargo bench --bench login_load`. Settings: PVCE_BENCH_CLIENTS
//! (default 200), PVCE_BENCH_SECS per mode (default 10), PVCE_BENCH_MODES
//! (default `inline,pool`).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pvce::auth::Role;
use pvce::config::Config;
use serde_json::json;

mod support;

use support::BENCH_PASSWORD as PASSWORD;
use support::{bench_user, env_or, percentile};

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    busy: AtomicU64,
    limited: AtomicU64,
    other: AtomicU64,
}

struct Row {
    label: String,
    logins_per_s: Option<f64>,
    counts: Option<[u64; 3]>,
    vms: Vec<f64>,
    health: Vec<f64>,
}

/// Sequential GETs of `path` until `until`; milliseconds per answer.
async fn probe(
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    until: Instant,
) -> Vec<f64> {
    let mut out = Vec::new();
    while Instant::now() < until {
        let mut r = http.get(&url);
        if let Some(t) = &token {
            r = r.bearer_auth(t);
        }
        let t0 = Instant::now();
        let res = r.send().await.unwrap();
        assert!(res.status().is_success(), "{url}: {}", res.status());
        let _ = res.bytes().await.unwrap();
        out.push(t0.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    out
}

async fn measure(base: &str, token: &str, clients: usize, secs: u64, label: String) -> Row {
    let http = reqwest::Client::new();
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let ramp = if clients > 0 {
        Duration::from_secs(1)
    } else {
        Duration::ZERO
    };
    let until = start + ramp + Duration::from_secs(secs);
    let mut loaders = Vec::new();
    for i in 0..clients {
        let http = http.clone();
        let url = format!("{base}/api/auth/login");
        let counts = counts.clone();
        let addr = format!("10.{}.{}.{}", i / 250 % 250, i % 250 + 1, 1 + i / 62_500);
        loaders.push(tokio::spawn(async move {
            while Instant::now() < until {
                let res = http
                    .post(&url)
                    .header("x-forwarded-for", &addr)
                    .json(&json!({"username": format!("bench-c{i:03}"), "password": PASSWORD}))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                let retry = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let _ = res.bytes().await;
                let counter = match status {
                    200 => &counts.ok,
                    503 => &counts.busy,
                    429 => &counts.limited,
                    _ => &counts.other,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                // Well-behaved clients honour Retry-After.
                if let Some(s) = retry {
                    tokio::time::sleep(Duration::from_secs(s)).await;
                }
            }
        }));
    }
    tokio::time::sleep(ramp).await;
    let vms = tokio::spawn(probe(
        http.clone(),
        format!("{base}/api/vms"),
        Some(token.to_owned()),
        until,
    ));
    let health = tokio::spawn(probe(http.clone(), format!("{base}/healthz"), None, until));
    let (vms, health) = (vms.await.unwrap(), health.await.unwrap());
    for l in loaders {
        l.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    assert_eq!(c(&counts.other), 0, "unexpected sign-in answers");
    Row {
        label,
        logins_per_s: (clients > 0).then(|| c(&counts.ok) as f64 / elapsed),
        counts: (clients > 0).then(|| [c(&counts.ok), c(&counts.busy), c(&counts.limited)]),
        vms,
        health,
    }
}

fn run_mode(inline: bool, clients: usize, secs: u64, with_idle: bool) -> Vec<Row> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .thread_name("pvce-server")
        .build()
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-bench-")
        .tempdir()
        .unwrap();
    let mut config = Config::for_data_dir(dir.path().join("data"));
    config.domain_prefix = Some("test-pvce-bench-".into());
    config.template_pool = Some(format!(
        "{}-tpl",
        dir.path().file_name().unwrap().to_string_lossy()
    ));
    config.trust_forwarded_for = true;
    config.login_hash_inline = inline;
    let pool_name = config.template_pool.clone().unwrap_or_default();
    let server = server_rt.block_on(async {
        let server = pvce::app::start(config, "127.0.0.1:0").await.unwrap();
        let pool = server.state.pool.clone();
        let new = move |u: String| {
            let pool = pool.clone();
            async move {
                bench_user(&pool, &u, Role::Student).await;
            }
        };
        new("bench-watch".into()).await;
        futures::stream::iter((0..clients).map(|i| new(format!("bench-c{i:03}"))))
            .buffer_unordered(cores)
            .collect::<Vec<()>>()
            .await;
        server
    });
    let base = server.url();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    let rows = client_rt.block_on(async {
        let token = support::login(&reqwest::Client::new(), &base, "bench-watch").await;
        let mode = if inline { "inline" } else { "pool" };
        let mut rows = Vec::new();
        if with_idle {
            rows.push(measure(&base, &token, 0, 3, "idle".into()).await);
        }
        rows.push(
            measure(
                &base,
                &token,
                clients,
                secs,
                format!("{mode}, {clients} signing in"),
            )
            .await,
        );
        rows
    });
    drop(server);
    drop(client_rt);
    server_rt.shutdown_timeout(Duration::from_secs(5));
    for cmd in ["pool-destroy", "pool-undefine"] {
        let _ = std::process::Command::new("virsh")
            .args(["-q", "-c", "qemu:///system", cmd, &pool_name])
            .output();
    }
    rows
}

fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("pvce=warn")
        .try_init();
    let clients: usize = env_or("PVCE_BENCH_CLIENTS", 200);
    let secs: u64 = env_or("PVCE_BENCH_SECS", 10);
    let modes: String = env_or("PVCE_BENCH_MODES", "inline,pool".to_owned());
    let mut rows = Vec::new();
    for (i, mode) in modes.split(',').map(str::trim).enumerate() {
        let inline = match mode {
            "inline" => true,
            "pool" => false,
            other => panic!("unknown mode {other:?}: use inline and/or pool"),
        };
        rows.extend(run_mode(inline, clients, secs, i == 0));
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "\nsign-in load: {clients} clients for {secs} s per mode, {cores} server worker threads, load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_default()
    );
    println!(
        "{:<26} {:>9} {:>7} {:>6} {:>6} {:>13} {:>13} {:>14} {:>8}",
        "mode",
        "logins/s",
        "200",
        "503",
        "429",
        "vms p50 ms",
        "vms p99 ms",
        "healthz p99 ms",
        "probes"
    );
    for mut r in rows {
        let (ok, busy, limited) = r
            .counts
            .map_or(("-".into(), "-".into(), "-".into()), |[a, b, c]| {
                (a.to_string(), b.to_string(), c.to_string())
            });
        let probes = format!("{}/{}", r.vms.len(), r.health.len());
        println!(
            "{:<26} {:>9} {:>7} {:>6} {:>6} {:>13.1} {:>13.1} {:>14.1} {:>8}",
            r.label,
            r.logins_per_s.map_or("-".into(), |l| format!("{l:.1}")),
            ok,
            busy,
            limited,
            percentile(&mut r.vms, 0.5),
            percentile(&mut r.vms, 0.99),
            percentile(&mut r.health, 0.99),
            probes,
        );
    }
}
