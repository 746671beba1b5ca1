//! VM start benchmark (the paper's boot storm): the control plane's own time
//! (start request → domain running, per VM and total) and request → `BOOT-OK`
//! on the serial console, for 1 VM and for N started at once, on the real
//! local libvirtd with the tiny guest.
//!
//! Run: `cargo bench --bench vm_start` (N from PVCE_BENCH_VMS, default 20).
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Api {
    base: String,
    http: reqwest::Client,
    token: String,
}

impl Api {
    async fn login(base: &str, user: &str) -> Api {
        let http = reqwest::Client::new();
        let token = support::login(&http, base, user).await;
        Api {
            base: base.into(),
            http,
            token,
        }
    }
    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let _cleanup = support::LibvirtLeftovers::new("test-pvce-bench-");
    let _ = tracing_subscriber::fmt()
        .with_env_filter("pvce=warn")
        .try_init();
    let n: usize = std::env::var("PVCE_BENCH_VMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // Names derived from the prefix (its template store is
    // `test-pvce-bench-<id>-templates`): beside a running server it never
    // touches that server's pool (issue 17; it once repointed it).
    let (_dir, server) = support::lab_server("test-pvce-bench-", |_| {}).await;
    let st = &server.state;
    let base = server.url();
    let teacher = Api::login(&base, "bench-teacher").await;
    let (_, ids) = support::tiny_class(&server, &teacher.token, "BENCH", n, 128).await;

    for batch in [1usize, n] {
        let chosen = &ids[..batch];
        let start = Instant::now();
        let mut tasks = Vec::new();
        for id in chosen {
            let (base, token, id) = (base.clone(), teacher.token.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let r = reqwest::Client::new()
                    .post(format!("{base}/api/vms/{id}/start"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                assert!(status.is_success(), "start {id}: {status} {body}");
                t0.elapsed().as_secs_f64()
            }));
        }
        let mut control = Vec::new();
        for t in tasks {
            control.push(t.await.unwrap());
        }
        let all_running = start.elapsed().as_secs_f64();
        // Request → BOOT-OK per VM (the guest's own boot time under TCG/KVM).
        let mut boot = vec![None; batch];
        let deadline = Instant::now() + Duration::from_secs(600);
        while boot.iter().any(Option::is_none) && Instant::now() < deadline {
            for (i, id) in chosen.iter().enumerate() {
                if boot[i].is_none() {
                    let log =
                        std::fs::read_to_string(st.storage.console_log_path(id.parse().unwrap()))
                            .unwrap_or_default();
                    if log.contains("BOOT-OK") {
                        boot[i] = Some(start.elapsed().as_secs_f64());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let boot: Vec<f64> = boot
            .into_iter()
            .map(|b| b.expect("every VM reaches BOOT-OK"))
            .collect();
        println!(
            "vm_start: {batch} VM(s) at once: control plane p50 {:.3} s, max {:.3} s, all running after {:.3} s; request→BOOT-OK p50 {:.1} s, max {:.1} s",
            pct(control.clone(), 0.5),
            pct(control, 1.0),
            all_running,
            pct(boot.clone(), 0.5),
            pct(boot, 1.0),
        );
        for id in chosen {
            teacher
                .post(&format!("/api/vms/{id}/poweroff"), json!({}))
                .await;
        }
    }
    drop(server);
}
