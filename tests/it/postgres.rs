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

/// Why `db::Real` exists: through sqlx's `Any` driver, a statement first run
/// with a NULL `Option<f64>` is prepared with a `float4` parameter on
/// PostgreSQL, and the same statement with a number then fails on that
/// connection (the sampler's node row, whose first sample has no CPU
/// figure yet). Bound as `db::Real`, NULL then a number both work. Should
/// sqlx fix its NULL kinds, the first half fails and the workaround can go.
#[tokio::test]
async fn a_null_then_a_number_binds_as_double_precision() {
    let cluster = Cluster::start();
    let pool = pvce::db::connect(&cluster.url()).await.unwrap();
    let node = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO nodes (id, name, uri, console_address, created_at)
         VALUES ($1, 'test-n', 'test:///default', '127.0.0.1', '2026-01-01T00:00:00Z')",
    )
    .bind(&node)
    .execute(&pool)
    .await
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let insert = |table: &'static str| {
        format!(
            "INSERT INTO {table} (node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running)
             VALUES ($1, $2, $3, 1, 2, 0)"
        )
    };
    // Plain Option<f64>: the driver's bug, on one connection.
    let raw = insert("node_samples");
    sqlx::query(&raw)
        .bind(&node)
        .bind(1_i64)
        .bind(None::<f64>)
        .execute(&mut *conn)
        .await
        .unwrap();
    let second = sqlx::query(&raw)
        .bind(&node)
        .bind(2_i64)
        .bind(Some(12.5_f64))
        .execute(&mut *conn)
        .await;
    assert!(
        second.is_err_and(|e| e.to_string().contains("binary data format")),
        "sqlx binds a NULL double as float4 no more: db::Real may go"
    );
    // db::Real: NULL, then numbers, on one connection.
    let fixed = insert("node_samples_minute");
    for (at, cpu) in [
        (60_i64, None),
        (120, Some(12.5)),
        (180, None),
        (240, Some(0.25)),
    ] {
        sqlx::query(&fixed)
            .bind(&node)
            .bind(at)
            .bind(pvce::db::Real(cpu))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let back: Vec<Option<f64>> =
        sqlx::query_scalar("SELECT cpu_percent FROM node_samples_minute ORDER BY at")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(back, [None, Some(12.5), None, Some(0.25)]);
}
