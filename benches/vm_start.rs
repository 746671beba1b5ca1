//! VM start benchmark (the paper's boot storm): the control plane's own time
//! (start request → domain running, per VM and total) and request → `BOOT-OK`
//! on the serial console, for 1 VM and for N started at once, on the real
//! local libvirtd with the tiny guest.
//!
//! Run: `cargo bench --bench vm_start` (N from PVCE_BENCH_VMS, default 20).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use pvce::auth::Role;
use pvce::config::Config;
use serde_json::{Value, json};

struct Api {
    base: String,
    http: reqwest::Client,
    token: String,
}

impl Api {
    async fn login(base: &str, user: &str, password: &str) -> Api {
        let http = reqwest::Client::new();
        let v: Value = http
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Api {
            base: base.into(),
            http,
            token: v["token"].as_str().unwrap().into(),
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
    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Destroys every benchmark domain when dropped, also when the run panics.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let out = std::process::Command::new("virsh")
            .args(["-q", "-c", "qemu:///system", "list", "--name"])
            .output();
        if let Ok(out) = out {
            for name in String::from_utf8_lossy(&out.stdout).lines() {
                if name.starts_with("test-pvce-bench-") {
                    let _ = std::process::Command::new("virsh")
                        .args(["-q", "-c", "qemu:///system", "destroy", name])
                        .output();
                }
            }
        }
    }
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let _cleanup = Cleanup;
    let _ = tracing_subscriber::fmt()
        .with_env_filter("pvce=warn")
        .try_init();
    let n: usize = std::env::var("PVCE_BENCH_VMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-bench-")
        .tempdir()
        .unwrap();
    let mut config = Config::for_data_dir(dir.path().join("data"));
    // Names derived from this run's own installation id (its template store
    // is `test-pvce-bench-<id>-templates`): beside a running server it never
    // touches that server's pool (issue 17; it once repointed it).
    config.libvirt_prefix = "test-pvce-bench".into();
    let server = pvce::app::start(config, "127.0.0.1:0").await.unwrap();
    let st = &server.state;
    let limits = pvce::templates::ImportLimits {
        max_upload_bytes: u64::MAX,
        max_virtual_size: u64::MAX,
    };
    pvce::library::build(&st.pool, &st.storage, limits, &root.join("templates-tree"))
        .await
        .unwrap();
    let new = |u: &str, r| pvce::users::NewUser {
        username: u.into(),
        password: "bench-password".into(),
        role: r,
        display_name: None,
    };
    pvce::users::create(&st.pool, new("bench-teacher", Role::Teacher))
        .await
        .unwrap();
    let mut names = vec![];
    for i in 0..n.max(1) {
        let u = format!("bench-s{i:02}");
        pvce::users::create(&st.pool, new(&u, Role::Student))
            .await
            .unwrap();
        names.push(u);
    }
    let base = server.url();
    let teacher = Api::login(&base, "bench-teacher", "bench-password").await;
    let tiny = pvce::templates::find_by_name(&st.pool, "tiny-linux")
        .await
        .unwrap()
        .unwrap();
    let course = teacher
        .post("/api/courses", json!({"code":"BENCH","name":"bench","vm_specs":[{"name":"vm","template_id":tiny.id,"vcpus":1,"memory_mib":128}]}))
        .await;
    teacher
        .post(
            &format!("/api/courses/{}/students", course["id"].as_str().unwrap()),
            json!({"usernames": names}),
        )
        .await;
    let vms = teacher.get("/api/vms").await;
    let ids: Vec<String> = vms
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();

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
