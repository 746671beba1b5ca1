//! Video wall benchmark (issue 15): W teachers' walls open on one course of
//! N running VMs, each wall fetching every tile's thumbnail once a second
//! (as `web/app/wall.js` does: the next request of a tile only after the
//! last answered), for D seconds, on the real local libvirtd with the tiny
//! guest. Reports thumbnails served per second, their latency, the
//! screenshots actually taken (the cache: one per VM per 0.9 s whatever W
//! is) and the server's CPU per second.
//!
//! Run: `cargo bench --bench wall_thumbs` (PVCE_BENCH_VMS, default 8;
//! PVCE_BENCH_WALLS, default 3; PVCE_BENCH_SECS, default 20;
//! PVCE_BENCH_SHOTS_PER_NODE, the server's `--wall-shots-per-node`, default 8). 40 VMs at
//! 40 thumbnails/s need a node that runs 40 guests.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

#[tokio::main]
async fn main() {
    let _cleanup = support::LibvirtLeftovers::new("test-pvce-wallbench-");
    let _ = tracing_subscriber::fmt()
        .with_env_filter("pvce=warn")
        .try_init();
    let n: usize = support::env_or("PVCE_BENCH_VMS", 8);
    let walls: usize = support::env_or("PVCE_BENCH_WALLS", 3);
    let secs: u64 = support::env_or("PVCE_BENCH_SECS", 20);
    let shots_per_node: u32 = support::env_or("PVCE_BENCH_SHOTS_PER_NODE", 8);
    let (_dir, server) = support::lab_server("test-pvce-wallbench-", |c| {
        c.wall_shots_per_node = shots_per_node;
    })
    .await;
    let st = &server.state;
    let base = server.url();
    let http = reqwest::Client::new();
    let token = support::login(&http, &base, "bench-teacher").await;
    let post = |path: String, body: serde_json::Value| {
        let (http, token) = (http.clone(), token.clone());
        async move { support::post_ok(&http, &token, path, body).await }
    };
    let (_, ids) = support::tiny_class(&server, &token, "WALLBENCH", n, 128).await;
    // Started as the class pre-start admits them: at most 4 guests booting
    // at once. Forty TCG guests booting together on this machine's two
    // cores starve (kernels panic in their timer check, libvirt stops
    // answering in time: see the class_prestart benchmark).
    let booted = |id: &String| {
        std::fs::read_to_string(st.storage.console_log_path(id.parse().unwrap()))
            .unwrap_or_default()
            .contains("BOOT-OK")
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut booting: Vec<&String> = Vec::new();
    for id in ids.iter().map(Some).chain(std::iter::once(None)) {
        let most = if id.is_some() { 3 } else { 0 };
        loop {
            booting.retain(|b| !booted(b));
            if booting.len() <= most {
                break;
            }
            assert!(Instant::now() < deadline, "{booting:?} never booted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if let Some(id) = id {
            post(format!("{base}/api/vms/{id}/start"), json!({})).await;
            booting.push(id);
        }
    }

    // W walls × N tiles, each tile's loop: fetch, then wait for the next second.
    let pid = std::process::id().to_string();
    let cpu0 = support::cpu_secs(&pid);
    let shots0 = st.wall.screenshots_taken();
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let lat = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..walls {
        for id in &ids {
            let (http, token, base, id, lat) = (
                http.clone(),
                token.clone(),
                base.clone(),
                id.clone(),
                lat.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut next = Instant::now();
                while Instant::now() < end {
                    let t0 = Instant::now();
                    let r = http
                        .get(format!("{base}/api/vms/{id}/thumbnail"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), reqwest::StatusCode::OK);
                    let bytes = r.bytes().await.unwrap();
                    assert!(bytes.starts_with(b"\x89PNG"));
                    lat.lock().unwrap().push(t0.elapsed());
                    next += Duration::from_secs(1);
                    tokio::time::sleep_until(next.max(Instant::now()).into()).await;
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = support::cpu_secs(&pid) - cpu0;
    let shots = st.wall.screenshots_taken() - shots0;
    let mut lat = lat.lock().unwrap().clone();
    lat.sort();
    println!(
        "wall_thumbs: {n} VMs × {walls} walls for {elapsed:.1} s, {shots_per_node} screenshots at once per node: {:.1} thumbnails/s served, {:.1} screenshots/s taken; latency p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; server CPU {:.0}% of a core",
        lat.len() as f64 / elapsed,
        shots as f64 / elapsed,
        support::pct(&lat, 50.0).as_secs_f64() * 1e3,
        support::pct(&lat, 95.0).as_secs_f64() * 1e3,
        support::pct(&lat, 100.0).as_secs_f64() * 1e3,
        cpu / elapsed * 100.0,
    );
    for id in &ids {
        post(format!("{base}/api/vms/{id}/poweroff"), json!({})).await;
    }
    drop(server);
}
