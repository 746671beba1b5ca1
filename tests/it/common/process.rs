//! The real `pvce` binary as a child process, for tests that kill it
//! (`kill -9` at a chosen moment) or give it a broken log: what an in-process
//! server cannot show.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `pvce serve` child; killed (SIGKILL) when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub url: String,
    /// A server beside other tests' (see [`super::gate`]).
    _pass: std::sync::Arc<super::gate::Pass>,
}

/// Flags every test server gets: test-named domains, its own template pool,
/// and the data dir's database when the tests run on PostgreSQL.
pub fn base_args(data_dir: &Path, pool: &str) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--domain-prefix".into(),
        "test-pvce-".into(),
        "--template-pool".into(),
        pool.into(),
        "--sample-interval-secs".into(),
        "1".into(),
    ];
    args.extend(database_args(data_dir));
    args
}

/// `--database-url` of `data_dir`'s database; none on SQLite (the default
/// file in the data dir).
fn database_args(data_dir: &Path) -> Vec<String> {
    super::database::url_for(data_dir)
        .map(|url| vec!["--database-url".into(), url])
        .unwrap_or_default()
}

/// A free loopback port (bound and released: the child binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// The bin directory of a test server's venv (`scripts/test-venv.sh NAME`
/// installs it once per requirements file).
pub fn test_venv(name: &str) -> PathBuf {
    let out = std::process::Command::new("bash")
        .arg(super::repo_root().join("scripts/test-venv.sh"))
        .arg(name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "test-venv.sh {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pvce"))
}

impl ServerProcess {
    /// Starts `pvce serve` with `args` and waits (bounded) until `/healthz` answers.
    /// `stdio` gives the child's stdout/stderr (e.g. `/dev/full`).
    pub async fn start(args: &[String], out: Stdio, err: Stdio, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let pass = super::gate::shared().await;
        let child = cmd.spawn().unwrap();
        let mut me = ServerProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _pass: pass,
        };
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", me.url)).send().await
                && r.status().is_success()
            {
                return me;
            }
            if let Some(status) = me.child.try_wait().unwrap() {
                panic!("pvce serve exited before answering: {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "pvce did not answer within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, as a power cut or the OOM killer would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `pvce user add` (the CLI, as an operator would).
pub fn add_user(data_dir: &Path, username: &str, role: &str, password: &str) {
    add_user_on(data_dir, &database_args(data_dir), username, role, password);
}

/// [`add_user`] with the database arguments given (e.g. `--database-url
/// sqlite://…` for a data dir that stays on SQLite in a PostgreSQL run).
pub fn add_user_on(
    data_dir: &Path,
    database_args: &[String],
    username: &str,
    role: &str,
    password: &str,
) {
    use std::io::Write;
    let mut child = Command::new(binary())
        .args([
            "user",
            "add",
            "--username",
            username,
            "--role",
            role,
            "--password-stdin",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(database_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "pvce user add {username}");
}

/// The database of a child server's data dir: its SQLite file, or its
/// PostgreSQL database (see [`super::database`]). The queries on it use
/// `$n` placeholders, which both read.
pub async fn open_db(data_dir: &Path) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = super::database::url_for(data_dir)
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("pvce.db").display()));
    sqlx::AnyPool::connect(&url).await.unwrap()
}

/// Inserts `n` students `<prefix>000`… straight into the database with one
/// shared hash (hundreds of argon2 hashes would dominate a test's time;
/// sign-in is tested elsewhere); returns their names.
pub async fn insert_students(data_dir: &Path, prefix: &str, n: usize) -> Vec<String> {
    let db = open_db(data_dir).await;
    let hash = pvce::auth::hash_password(super::PASSWORD).unwrap();
    let mut names = Vec::new();
    let mut tx = db.begin().await.unwrap();
    for i in 0..n {
        let name = format!("{prefix}{i:03}");
        sqlx::query("INSERT INTO users (id, username, display_name, role, password_hash, created_at) VALUES ($1, $2, $3, 'student', $4, '2026-01-01T00:00:00Z')")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&name)
            .bind(&name)
            .bind(&hash)
            .execute(&mut *tx)
            .await
            .unwrap();
        names.push(name);
    }
    tx.commit().await.unwrap();
    db.close().await;
    names
}

/// Every file below `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The enrolment invariant: every enrolled student of the course has their
/// VM, every VM row has its layer, every file under `overlays/` is a VM's
/// layer (or a recorded backup snapshot's), nothing staged.
pub async fn assert_enrolment_consistent(data_dir: &Path, course_id: &str) {
    let db = open_db(data_dir).await;
    let without_vm: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM enrolments e WHERE e.course_id = $1 AND NOT EXISTS
         (SELECT 1 FROM vms v WHERE v.course_id = e.course_id AND v.owner_id = e.user_id)",
    )
    .bind(course_id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(without_vm, 0, "students enrolled without their VM");
    let paths: Vec<String> = sqlx::query_scalar("SELECT overlay_path FROM vms")
        .fetch_all(&db)
        .await
        .unwrap();
    let backups: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT v.overlay_path, v.id, s.id FROM snapshots s JOIN vms v ON v.id = s.vm_id WHERE s.kind = 'backup'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    db.close().await;
    for p in &paths {
        assert!(Path::new(p).is_file(), "VM row without its layer: {p}");
    }
    let mut known: std::collections::HashSet<PathBuf> = paths.iter().map(PathBuf::from).collect();
    known.extend(
        backups
            .iter()
            .map(|(l, v, s)| Path::new(l).with_file_name(format!("{v}.backup-{s}.qcow2"))),
    );
    for f in files_under(&data_dir.join("overlays")) {
        assert!(
            known.contains(&f),
            "layer file without a VM row: {}",
            f.display()
        );
    }
}

/// Removes a template pool the child may have defined on the local libvirtd.
pub fn remove_pool(pool: &str) {
    let _ = Command::new("virsh")
        .args(["-c", "qemu:///system", "pool-destroy", pool])
        .output();
    let _ = Command::new("virsh")
        .args(["-c", "qemu:///system", "pool-undefine", pool])
        .output();
}

/// Runs `pvce fsck --json --grace-secs 0` with a server's `args` (its data
/// dir and database) and requires no finding; `after` names the moment.
pub fn assert_fsck_clean(args: &[String], after: &str) {
    let out = Command::new(binary())
        .arg("fsck")
        .args(args)
        .args(["--json", "--grace-secs", "0"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{after}: fsck said {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        report["findings"],
        serde_json::json!([]),
        "{after}: fsck found (exit {:?}):\n{report:#}",
        out.status.code()
    );
    assert!(out.status.success(), "{after}: {report}");
}
