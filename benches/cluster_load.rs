//! Several servers behind a load balancer (issue 17's "Benchmarks"): the
//! load generator of `scripts/bench-cluster.sh`, which starts PostgreSQL,
//! three `pvce serve` processes sharing one database and haproxy in front of
//! them, then runs this with their addresses. Run alone (`cargo bench`
//! without the script's environment) it says so and does nothing.
//!
//! Setup, through the balancer's API: `PVCE_CLUSTER_STUDENTS` students
//! (default clients / 10), a course on the built-in `tiny-linux` template
//! enrolling them (one VM each), every student signed in once (a session
//! any server accepts: sessions live in the database).
//!
//! Load: `PVCE_CLUSTER_CLIENTS` (1,000) concurrent clients, each its own
//! HTTP connection pool, for `PVCE_CLUSTER_SECS` (30) s. The first
//! `PVCE_CLUSTER_VM_CLIENTS` (5) each drive their student's VM — start,
//! pause `PVCE_CLUSTER_VM_PAUSE_MS` (5,000), power off, pause — on the
//! machine's libvirtd (real tiny guests, which cost CPU, hence so few); the
//! others read in a closed loop without think time: `GET /api/vms` (50 %),
//! `GET /api/courses` (30 %), `GET /api/vms/{id}` (20 %). Answers: 2xx
//! counts as done; 409 on a power action as refused (the VM was still
//! starting or stopping); anything else, and every transport error, as an
//! error. Two phases: all three servers up; then the same with the server
//! holding the most leases killed (SIGKILL) at half time — errors seen after
//! the kill, when haproxy marked it DOWN (its stats socket, polled every
//! 50 ms), the last error, and when the survivors' `/healthz` show each of
//! the dead server's leases held by one of them.
//!
//! Loopback only; bounded in clients and time.
#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;

use support::{BENCH_PASSWORD, env_or, login, pct, post_ok};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Op {
    ListVms,
    ListCourses,
    ShowVm,
    Start,
    Poweroff,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::ListVms => "GET /api/vms",
            Op::ListCourses => "GET /api/courses",
            Op::ShowVm => "GET /api/vms/{id}",
            Op::Start => "POST start",
            Op::Poweroff => "POST poweroff",
        }
    }
}

/// One answered (or failed) request.
struct Sample {
    op: Op,
    /// Since the phase began.
    at: Duration,
    latency: Duration,
    outcome: Outcome,
    /// An error's kind: the status and the API's error code, or the
    /// transport error.
    error: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    Refused,
    Error,
}

struct Student {
    token: String,
    vm: String,
}

struct Cluster {
    balancer: String,
    servers: Vec<String>,
    pids: Vec<u32>,
    socket: Option<String>,
}

/// Reads the environment the script sets; `None` when run without it.
fn cluster() -> Option<Cluster> {
    let balancer = std::env::var("PVCE_CLUSTER_BALANCER").ok()?;
    let list = |k: &str| -> Vec<String> {
        std::env::var(k)
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    Some(Cluster {
        balancer,
        servers: list("PVCE_CLUSTER_SERVERS"),
        pids: list("PVCE_CLUSTER_PIDS")
            .iter()
            .map(|p| p.parse().unwrap())
            .collect(),
        socket: std::env::var("PVCE_CLUSTER_HAPROXY_SOCKET").ok(),
    })
}

async fn get_json(http: &reqwest::Client, token: &str, url: String) -> Value {
    let r = http.get(&url).bearer_auth(token).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap()
}

/// Students, a course, sign-ins: each student's session and VM.
async fn setup(base: &str, n: usize) -> Vec<Student> {
    let http = reqwest::Client::new();
    let admin = login(&http, base, "bench-admin").await;
    let teacher = login(&http, base, "bench-teacher").await;
    let names: Vec<String> = (0..n).map(|i| format!("cl-s{i:04}")).collect();
    futures::stream::iter(names.iter().map(|u| {
        let (http, admin) = (http.clone(), admin.clone());
        async move {
            let r = http
                .post(format!("{base}/api/users"))
                .bearer_auth(&admin)
                .json(&json!({"username": u, "password": BENCH_PASSWORD, "role": "student"}))
                .send()
                .await
                .unwrap();
            assert!(
                r.status().is_success() || r.status() == 409,
                "{u}: {}",
                r.status()
            );
        }
    }))
    .buffer_unordered(4)
    .collect::<Vec<()>>()
    .await;
    let templates = get_json(&http, &teacher, format!("{base}/api/templates")).await;
    let tiny = templates
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "tiny-linux")
        .expect("the built-in library (tiny-linux)")["id"]
        .clone();
    let course = post_ok(
        &http,
        &teacher,
        format!("{base}/api/courses"),
        json!({"code": "CLUSTER", "name": "Cluster bench", "vm_specs": [
            {"name": "vm", "template_id": tiny, "vcpus": 1, "memory_mib": 128}]}),
    )
    .await;
    let cid = course["id"].as_str().unwrap();
    post_ok(
        &http,
        &teacher,
        format!("{base}/api/courses/{cid}/students"),
        json!({"usernames": names}),
    )
    .await;
    futures::stream::iter(names.iter().map(|u| {
        let http = http.clone();
        async move {
            let token = login(&http, base, u).await;
            let vms = get_json(&http, &token, format!("{base}/api/vms")).await;
            let vm = vms[0]["id"].as_str().unwrap().to_owned();
            Student { token, vm }
        }
    }))
    .buffered(4)
    .collect()
    .await
}

/// What a client does.
#[derive(Clone, Copy)]
enum Role {
    /// Reads in a closed loop.
    Reader,
    /// Starts and powers off its VM, pausing this long after each.
    VmDriver(Duration),
}

/// One client's loop until `until`.
async fn client(
    base: String,
    student: Arc<Student>,
    role: Role,
    seed: u64,
    t0: Instant,
    until: Instant,
) -> Vec<Sample> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut out = Vec::new();
    let mut running = false;
    while Instant::now() < until {
        let op = match role {
            Role::VmDriver(_) if running => Op::Poweroff,
            Role::VmDriver(_) => Op::Start,
            Role::Reader => match rng.gen_range(0..10) {
                0..5 => Op::ListVms,
                5..8 => Op::ListCourses,
                _ => Op::ShowVm,
            },
        };
        let req = match op {
            Op::ListVms => http.get(format!("{base}/api/vms")),
            Op::ListCourses => http.get(format!("{base}/api/courses")),
            Op::ShowVm => http.get(format!("{base}/api/vms/{}", student.vm)),
            Op::Start => http.post(format!("{base}/api/vms/{}/start", student.vm)),
            Op::Poweroff => http.post(format!("{base}/api/vms/{}/poweroff", student.vm)),
        };
        let t = Instant::now();
        let res = req.bearer_auth(&student.token).send().await;
        let (outcome, error) = match res {
            Ok(r) => {
                let status = r.status();
                match (status.as_u16(), r.bytes().await) {
                    (200..=299, Ok(_)) => (Outcome::Done, None),
                    (409, Ok(_)) if matches!(op, Op::Start | Op::Poweroff) => {
                        (Outcome::Refused, None)
                    }
                    (_, Ok(body)) => {
                        let code = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| v["error"].as_str().map(str::to_owned))
                            .unwrap_or_default();
                        (Outcome::Error, Some(format!("{} {code}", status.as_u16())))
                    }
                    (_, Err(e)) => (Outcome::Error, Some(format!("body: {e}"))),
                }
            }
            Err(e) => (
                Outcome::Error,
                Some(if e.is_timeout() {
                    "timeout".into()
                } else if e.is_connect() {
                    "connect".into()
                } else {
                    "transport".into()
                }),
            ),
        };
        out.push(Sample {
            op,
            at: t - t0,
            latency: t.elapsed(),
            outcome,
            error,
        });
        if let Role::VmDriver(pause) = role {
            if outcome == Outcome::Done {
                running = op == Op::Start;
            }
            tokio::time::sleep(pause.min(until.saturating_duration_since(Instant::now()))).await;
        }
    }
    out
}

/// `/healthz` of `server`: its id and the leases it holds.
async fn leases_of(http: &reqwest::Client, server: &str) -> Option<(String, Vec<String>)> {
    let v: Value = http
        .get(format!("{server}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let held = v["leases"]
        .as_object()?
        .iter()
        .filter(|(_, l)| l["held"] == true)
        .map(|(k, _)| k.clone())
        .collect();
    Some((v["server_id"].as_str()?.to_owned(), held))
}

/// haproxy's `show stat` for backend `pvce`: (server, status, retries,
/// redispatches) per server.
async fn haproxy_stats(socket: &str) -> Vec<(String, String, u64, u64)> {
    let Ok(mut s) = tokio::net::UnixStream::connect(socket).await else {
        return vec![];
    };
    if s.write_all(b"show stat\n").await.is_err() {
        return vec![];
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text).await;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(px), Some(sv), Some(st), Some(wr), Some(wd)) = (
        col("pxname"),
        col("svname"),
        col("status"),
        col("wretr"),
        col("wredis"),
    ) else {
        return vec![];
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > wd && f[px] == "pvce" && f[sv].starts_with('s'))
        .map(|f| {
            (
                f[sv].to_owned(),
                f[st].to_owned(),
                f[wr].parse().unwrap_or(0),
                f[wd].parse().unwrap_or(0),
            )
        })
        .collect()
}

/// What happened around the kill.
#[derive(Default)]
struct KillReport {
    victim: usize,
    leases: Vec<String>,
    /// Since the kill: haproxy showed the server DOWN.
    marked_down: Option<Duration>,
    /// Since the kill: every lease of the victim held by a survivor, and by whom.
    taken_over: Option<Duration>,
    new_holders: BTreeMap<String, String>,
}

async fn watch_kill(
    c: Arc<Cluster>,
    victim: usize,
    leases: Vec<String>,
    kill_at: Instant,
) -> KillReport {
    let http = reqwest::Client::new();
    tokio::time::sleep_until(kill_at.into()).await;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &c.pids[victim].to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "could not kill server {victim}");
    let t_kill = Instant::now();
    let mut r = KillReport {
        victim,
        leases: leases.clone(),
        ..KillReport::default()
    };
    let name = format!("s{}", victim + 1);
    let give_up = t_kill + Duration::from_secs(30);
    while Instant::now() < give_up && (r.marked_down.is_none() || r.taken_over.is_none()) {
        if r.marked_down.is_none()
            && let Some(sock) = &c.socket
            && haproxy_stats(sock)
                .await
                .iter()
                .any(|(s, st, ..)| *s == name && st.starts_with("DOWN"))
        {
            r.marked_down = Some(t_kill.elapsed());
        }
        if r.taken_over.is_none() {
            let mut holders = BTreeMap::new();
            for (i, s) in c.servers.iter().enumerate() {
                if i == victim {
                    continue;
                }
                if let Some((id, held)) = leases_of(&http, s).await {
                    for l in held {
                        holders.insert(l, id.clone());
                    }
                }
            }
            if leases.iter().all(|l| holders.contains_key(l)) {
                r.taken_over = Some(t_kill.elapsed());
                r.new_holders = holders;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r
}

struct Phase {
    label: String,
    samples: Vec<Sample>,
    secs: f64,
    kill: Option<(Duration, KillReport)>,
}

async fn phase(
    c: &Arc<Cluster>,
    students: &[Arc<Student>],
    clients: usize,
    drivers: (usize, Duration),
    secs: u64,
    kill: bool,
) -> Phase {
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(secs);
    let kill_at = t0 + Duration::from_secs(secs) / 2;
    let watcher = if kill {
        // The victim: the server running most of the cluster-wide work.
        let http = reqwest::Client::new();
        let mut best = (0, Vec::new());
        for (i, s) in c.servers.iter().enumerate() {
            if let Some((_, held)) = leases_of(&http, s).await
                && held.len() >= best.1.len()
            {
                best = (i, held);
            }
        }
        Some(tokio::spawn(watch_kill(c.clone(), best.0, best.1, kill_at)))
    } else {
        None
    };
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let student = students[i % students.len()].clone();
            let role = if i < drivers.0 {
                Role::VmDriver(drivers.1)
            } else {
                Role::Reader
            };
            tokio::spawn(client(
                c.balancer.clone(),
                student,
                role,
                i as u64,
                t0,
                until,
            ))
        })
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.unwrap());
    }
    let secs = t0.elapsed().as_secs_f64();
    let kill = match watcher {
        Some(w) => Some((kill_at - t0, w.await.unwrap())),
        None => None,
    };
    Phase {
        label: if kill.is_some() {
            "one server killed at half time".into()
        } else {
            "3 servers".into()
        },
        samples,
        secs,
        kill,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(p: &Phase, pids: &[u32], stats: &[(String, String, u64, u64)]) {
    let total = p.samples.len();
    let count = |o: Outcome| p.samples.iter().filter(|s| s.outcome == o).count();
    let mut lat: Vec<Duration> = p.samples.iter().map(|s| s.latency).collect();
    lat.sort();
    println!(
        "\n{}: {total} requests in {:.1} s = {:.0} req/s; done {}, refused (409 on a power action) {}, errors {}; latency p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms",
        p.label,
        p.secs,
        total as f64 / p.secs,
        count(Outcome::Done),
        count(Outcome::Refused),
        count(Outcome::Error),
        ms(pct(&lat, 50.0)),
        ms(pct(&lat, 99.0)),
        ms(lat.last().copied().unwrap_or_default()),
    );
    println!(
        "  {:<20} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "request", "count", "refused", "errors", "p50 ms", "p99 ms"
    );
    for op in [
        Op::ListVms,
        Op::ListCourses,
        Op::ShowVm,
        Op::Start,
        Op::Poweroff,
    ] {
        let of: Vec<&Sample> = p.samples.iter().filter(|s| s.op == op).collect();
        let mut l: Vec<Duration> = of.iter().map(|s| s.latency).collect();
        l.sort();
        println!(
            "  {:<20} {:>8} {:>8} {:>8} {:>9.1} {:>9.1}",
            op.name(),
            of.len(),
            of.iter().filter(|s| s.outcome == Outcome::Refused).count(),
            of.iter().filter(|s| s.outcome == Outcome::Error).count(),
            ms(pct(&l, 50.0)),
            ms(pct(&l, 99.0))
        );
    }
    let mut kinds: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for s in &p.samples {
        if let Some(e) = &s.error {
            *kinds.entry((s.op.name(), e.as_str())).or_default() += 1;
        }
    }
    if !kinds.is_empty() {
        println!(
            "  errors by kind: {}",
            kinds
                .iter()
                .map(|((op, e), n)| format!("{op} {e}: {n}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if let Some((at, k)) = &p.kill {
        let after: Vec<&Sample> = p
            .samples
            .iter()
            .filter(|s| s.outcome == Outcome::Error && s.at + s.latency >= *at)
            .collect();
        let last = after.iter().map(|s| s.at + s.latency).max();
        println!(
            "  killed server {} (pid {}) with SIGKILL at {:.1} s; it held {} lease(s): {}",
            k.victim + 1,
            pids[k.victim],
            at.as_secs_f64(),
            k.leases.len(),
            k.leases.join(", ")
        );
        println!(
            "  errors answered after the kill: {}; last one {} after the kill",
            after.len(),
            last.map_or("—".into(), |l| format!("{:.0} ms", ms(l - *at)))
        );
        println!(
            "  haproxy marked it DOWN {} after the kill; its leases held by survivors {} after the kill ({})",
            k.marked_down
                .map_or("(not seen)".into(), |d| format!("{:.0} ms", ms(d))),
            k.taken_over.map_or("(not within 30 s)".into(), |d| format!(
                "{:.1} s",
                d.as_secs_f64()
            )),
            k.new_holders
                .iter()
                .map(|(l, h)| format!("{l} → {}", &h[..h.len().min(12)]))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !stats.is_empty() {
        println!(
            "  haproxy: {}",
            stats
                .iter()
                .map(|(s, st, r, d)| format!("{s} {st} retries {r} redispatches {d}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
}

fn main() {
    let Some(c) = cluster() else {
        println!(
            "cluster_load is the load generator of scripts/bench-cluster.sh (PostgreSQL, 3 servers, haproxy): run that script"
        );
        return;
    };
    let c = Arc::new(c);
    let clients: usize = env_or("PVCE_CLUSTER_CLIENTS", 1000);
    let secs: u64 = env_or("PVCE_CLUSTER_SECS", 30);
    let n_students: usize = env_or("PVCE_CLUSTER_STUDENTS", clients.div_ceil(10));
    let drivers = (
        env_or("PVCE_CLUSTER_VM_CLIENTS", 5_usize).min(n_students),
        Duration::from_millis(env_or("PVCE_CLUSTER_VM_PAUSE_MS", 5000)),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = Instant::now();
        let students: Vec<Arc<Student>> = setup(&c.balancer, n_students)
            .await
            .into_iter()
            .map(Arc::new)
            .collect();
        println!(
            "setup: {} students with a VM each, signed in, in {:.1} s",
            students.len(),
            t.elapsed().as_secs_f64()
        );
        let steady = phase(&c, &students, clients, drivers, secs, false).await;
        let s1 = match &c.socket {
            Some(s) => haproxy_stats(s).await,
            None => vec![],
        };
        println!(
            "\n{clients} clients ({} students; {} clients drive a VM, pausing {} ms after each action), {secs} s per phase, load average {}",
            students.len(),
            drivers.0,
            drivers.1.as_millis(),
            support::loadavg()
        );
        report(&steady, &c.pids, &s1);
        let killed = phase(&c, &students, clients, drivers, secs, true).await;
        let s2 = match &c.socket {
            Some(s) => haproxy_stats(s).await,
            None => vec![],
        };
        report(&killed, &c.pids, &s2);
    });
}
