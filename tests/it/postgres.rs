//! PostgreSQL restarted under load (issue 17, "Faults"): while the database
//! server is down, requests fail fast with 503 `database_unavailable`; when
//! it is back, the same server answers again without a restart, and no
//! background loop died meanwhile. The test runs a PostgreSQL cluster of its
//! own (scripts/postgres.sh with PVCE_PG_DIR), since stopping the shared test
//! cluster would break every other test; it needs only Debian's
//! `postgresql`, which scripts/setup.sh installs, so it runs in every CI run.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use pvce::auth::Role;
use reqwest::StatusCode;

use crate::common::{self, TestEnv};

/// A throwaway PostgreSQL cluster on a fixed port, stopped and removed on drop.
struct Cluster {
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    fn start() -> Cluster {
        // Short: the script moves directories with long paths elsewhere.
        let dir = PathBuf::from(format!(
            "/tmp/test-pvce-pg-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Cluster { dir, port };
        c.script("start");
        c
    }

    fn script(&self, what: &str) {
        let out = Command::new("bash")
            .arg(common::repo_root().join("scripts/postgres.sh"))
            .arg(what)
            .env("PVCE_PG_DIR", &self.dir)
            .env("PVCE_PG_PORT", self.port.to_string())
            .current_dir(common::repo_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "postgres.sh {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(common::repo_root().join("scripts/postgres.sh"))
            .arg("stop")
            .env("PVCE_PG_DIR", &self.dir)
            .current_dir(common::repo_root())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_restarted_postgresql_means_503_meanwhile_and_service_after() {
    let cluster = Cluster::start();
    let url = cluster.url();
    let env = TestEnv::start_with(|c| c.database_url = Some(url)).await;
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    let (s, _) = admin.get("/api/users").await;
    assert_eq!(s, StatusCode::OK);

    cluster.script("stop");
    // Fails fast, and says why: no 500, no 30 s wait for a connection.
    let asked = Instant::now();
    let (s, body) = admin.get("/api/users").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "database_unavailable", "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "503 after {:?}",
        asked.elapsed()
    );
    // A write too (a new user), and the health endpoint still answers.
    let (s, body) = admin
        .post(
            "/api/users",
            serde_json::json!({"username": "test-late", "password": "test-password-1", "role": "student"}),
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let anon = common::Client::anonymous(&env.server.url());
    let (s, _) = anon.get("/healthz").await;
    assert_eq!(s, StatusCode::OK);

    cluster.script("start");
    let back = Instant::now();
    loop {
        let (s, body) = admin.get("/api/users").await;
        if s == StatusCode::OK {
            break;
        }
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "still {s} 30 s after PostgreSQL came back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, body) = admin
        .post(
            "/api/users",
            serde_json::json!({"username": "test-late", "password": "test-password-1", "role": "student"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    // Every background loop is still the one started with the server: a
    // failed pass is recorded, never a loop that ended.
    let (_, health) = anon.get("/healthz").await;
    for (name, status) in health["loops"].as_object().unwrap() {
        assert_eq!(status["restarts"], 0, "{name}: {status}");
    }
}
