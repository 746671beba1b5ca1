//! Shared helpers for black-box tests: a real server on port 0 with a fresh
//! data dir, real users, an HTTP client per user, and the tiny guest image.
//!
//! Everything a test creates is named `test-*` and removed when the
//! [`TestEnv`] is dropped, even when the test fails: domains are destroyed
//! with `virsh`, the data dir is deleted (and its PostgreSQL database
//! dropped when the tests run on one, see [`database`]).

pub mod database;
pub mod gate;
pub mod lab;
pub mod logs;
pub mod multinode;
pub mod process;
pub mod tool;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pvce::auth::Role;
use pvce::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};

pub const PASSWORD: &str = "test-password-1";

pub struct TestEnv {
    pub server: pvce::app::Server,
    pub dir: tempfile::TempDir,
    started_domains: Mutex<Vec<String>>,
    /// Users created by the test: their lab networks are removed at the end.
    user_ids: Mutex<Vec<String>>,
    /// This test's place beside the others (see [`gate`]); released last.
    _pass: std::sync::Arc<gate::Pass>,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl TestEnv {
    pub async fn start() -> TestEnv {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestEnv {
        let pass = gate::shared().await;
        logs::init();
        let dir = tempfile::Builder::new()
            .prefix("test-pvce-")
            .tempdir()
            .unwrap();
        let mut config = Config::for_data_dir(dir.path().join("data"));
        config.domain_prefix = Some("test-pvce-".into());
        // Each test server gets its own template-store pool (removed on drop):
        // pool names are global on the shared libvirtd, paths are per test.
        config.template_pool = Some(format!(
            "{}-tpl",
            dir.path().file_name().unwrap().to_string_lossy()
        ));
        config.shutdown_timeout_secs = 30;
        // The alert loop and the inspection schedule run on the wall clock:
        // off, so they never add alerts, events or desk tickets to another
        // area's test; tests/it/alerts.rs drives them with its own instants.
        config.alert_interval_secs = 0;
        config.inspection_at = pvce::daily::TimeOfDay(None);
        tweak(&mut config);
        // SQLite in the data dir, or the data dir's own PostgreSQL database
        // (after the tweak, which may have moved the data dir).
        if config.database_url.is_none() {
            config.database_url = database::url_for(&config.data_dir);
        }
        let data_dir = config.data_dir.clone();
        let server = match pvce::app::start(config, "127.0.0.1:0").await {
            Ok(server) => server,
            Err(e) => {
                // No TestEnv to drop it: its database goes now.
                database::drop_for(&data_dir);
                panic!("the test server did not start: {e:?}");
            }
        };
        TestEnv {
            server,
            dir,
            started_domains: Mutex::new(Vec::new()),
            user_ids: Mutex::new(Vec::new()),
            _pass: pass,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.url(), path)
    }

    /// Stops the server and starts a new one with the same configuration on
    /// the same data directory (a restart: VMs keep running on their node).
    /// Clients log in again: the new server listens on another port.
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await;
    }

    /// [`Self::restart`] with the configuration changed by `tweak` (e.g.
    /// another database URL after moving the data into it).
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut Config)) {
        let mut config = (*self.server.state.config).clone();
        tweak(&mut config);
        self.server.abort();
        self.server = pvce::app::start(config, "127.0.0.1:0").await.unwrap();
    }

    /// Starts another server with this one's configuration — the same data
    /// dir and database — beside it (several servers of one cluster; on
    /// SQLite only tests of a single writer make sense). Dropping the
    /// returned server stops it.
    pub async fn start_another(&self) -> pvce::app::Server {
        let config = (*self.server.state.config).clone();
        pvce::app::start(config, "127.0.0.1:0").await.unwrap()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Creates a user straight in the database (as `pvce user add` does).
    pub async fn user(&self, username: &str, role: Role) -> Value {
        let u = pvce::users::create(
            &self.server.state.pool,
            pvce::users::NewUser {
                username: username.into(),
                password: PASSWORD.into(),
                role,
                display_name: None,
            },
        )
        .await
        .unwrap();
        self.user_ids
            .lock()
            .unwrap()
            .push(u.id.simple().to_string());
        serde_json::to_value(u).unwrap()
    }

    /// Logs in and returns a client that sends the bearer token.
    pub async fn client(&self, username: &str) -> Client {
        self.client_with_password(username, PASSWORD).await
    }

    pub async fn client_with_password(&self, username: &str, password: &str) -> Client {
        let http = reqwest::Client::new();
        let res = http
            .post(self.url("/api/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "login {username}");
        let body: Value = res.json().await.unwrap();
        Client {
            base: self.server.url(),
            http,
            token: body["token"].as_str().unwrap().to_owned(),
        }
    }

    /// Remembers a VM so its domain is destroyed at the end whatever happens.
    pub fn track_vm(&self, vm_id: &str) {
        self.started_domains
            .lock()
            .unwrap()
            .push(format!("test-pvce-{vm_id}"));
    }

    pub fn console_log(&self, vm_id: &str) -> PathBuf {
        self.data_dir()
            .join("consoles")
            .join(format!("{vm_id}.log"))
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.server.abort();
        for d in self.started_domains.lock().unwrap().iter() {
            let _ = Command::new("virsh")
                .args(["-q", "-c", "qemu:///system", "destroy", d])
                .output();
        }
        // Lab networks of this test's students (`test-pvce-lab-<course>-<owner>`),
        // in case the test failed before pvce removed them.
        let owners = self.user_ids.lock().unwrap();
        if let Ok(out) = Command::new("virsh")
            .args(["-q", "-c", "qemu:///system", "net-list", "--all", "--name"])
            .output()
        {
            for net in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
                let ours = net.starts_with("test-pvce-lab-")
                    && owners.iter().any(|o| net.ends_with(&format!("-{o}")));
                if ours {
                    let _ = Command::new("virsh")
                        .args(["-q", "-c", "qemu:///system", "net-destroy", net])
                        .output();
                }
            }
        }
        let pool = &self.server.state.names.template_pool;
        for cmd in ["pool-destroy", "pool-undefine"] {
            let _ = Command::new("virsh")
                .args(["-q", "-c", "qemu:///system", cmd, pool])
                .output();
        }
        database::drop_for(&self.server.state.config.data_dir);
    }
}

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

impl Client {
    /// Logs in to any server (e.g. a child process) and sends the bearer token.
    pub async fn login(base: &str, username: &str, password: &str) -> Client {
        let http = reqwest::Client::new();
        let res = http
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "login {username}");
        let body: Value = res.json().await.unwrap();
        Client {
            base: base.into(),
            http,
            token: body["token"].as_str().unwrap().to_owned(),
        }
    }

    /// The same session against another address (a restarted server process).
    pub fn clone_for(&self, base: &str) -> Client {
        Client {
            base: base.into(),
            ..self.clone()
        }
    }

    /// Like `send`, but a dropped connection is an `Err` instead of a panic.
    pub async fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, String), reqwest::Error> {
        let mut r = self.request(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await?;
        let status = res.status();
        Ok((status, res.text().await?))
    }

    pub async fn try_get(&self, path: &str) -> Result<(StatusCode, String), reqwest::Error> {
        self.try_send(reqwest::Method::GET, path, None).await
    }

    pub async fn try_post(
        &self,
        path: &str,
        body: Value,
    ) -> Result<(StatusCode, String), reqwest::Error> {
        self.try_send(reqwest::Method::POST, path, Some(body)).await
    }

    pub fn anonymous(base: &str) -> Client {
        Client {
            base: base.into(),
            http: reqwest::Client::new(),
            token: String::new(),
        }
    }

    /// A request to `path` on this client's server, with its token if any.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{}", self.base, path));
        if self.token.is_empty() {
            r
        } else {
            r.bearer_auth(&self.token)
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.request(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{status}: body is not JSON: {text}"))
        };
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn post_empty(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, None).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// Streams a file as the body of a POST.
    /// POSTs a non-JSON body (e.g. the CSV import) and reads the JSON answer.
    pub async fn post_body(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let res = self
            .request(reqwest::Method::POST, path)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap())
    }

    pub async fn upload(&self, path: &str, file: &Path) -> (StatusCode, Value) {
        let f = tokio::fs::File::open(file).await.unwrap();
        let stream = tokio_util::io::ReaderStream::new(f);
        let res = self
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// Asserts an API error: status and `error` code, with a human message.
pub fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "body: {}", got.1);
    assert_eq!(got.1["error"], code, "body: {}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "body: {}",
        got.1
    );
}

/// The tiny guest image, built once per machine into a cache shared by tests
/// (guarded by a lock file so parallel test binaries build it once).
pub fn tiny_image() -> PathBuf {
    let cache = repo_root().join("target").join("pvce-test-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let image = cache.join("tiny-linux.qcow2");
    let script = repo_root().join("scripts/build-tiny-guest.sh");
    let lock = std::fs::File::create(cache.join("build.lock")).unwrap();
    lock.lock().unwrap();
    let stale = match (std::fs::metadata(&image), std::fs::metadata(&script)) {
        (Ok(i), Ok(s)) => i.modified().unwrap() < s.modified().unwrap(),
        _ => true,
    };
    if stale {
        let tmp = cache.join("tiny-linux.qcow2.tmp");
        let out = Command::new(&script).arg(&tmp).output().unwrap();
        assert!(
            out.status.success(),
            "build-tiny-guest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &image).unwrap();
    }
    lock.unlock().unwrap();
    image
}

/// Polls `f` until it returns Some or `timeout` passes (waiting for an
/// external event such as a guest booting — not hiding a race).
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The libvirt state of a domain as `virsh domstate` reports it ("" if absent).
pub fn virsh_domstate(domain: &str) -> String {
    let out = Command::new("virsh")
        .args(["-q", "-c", "qemu:///system", "domstate", domain])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

// ------------------------------------------------------------------
// Guest serial console (the tiny guest runs a root shell on ttyS0).

/// The pty libvirt gives a running test VM's serial console on the node at `uri`.
pub fn serial_pty_on(uri: &str, vm_id: &str) -> String {
    let domain = format!("test-pvce-{vm_id}");
    let out = Command::new("virsh")
        .args(["-q", "-c", uri, "ttyconsole", &domain])
        .output()
        .unwrap();
    let pty = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        pty.starts_with("/dev/pts/"),
        "no serial pty for {domain}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pty
}

/// Types `line` + newline into the serial console of a VM on the node at
/// `uri` (raw mode, so the guest sees exactly these bytes), keeping the pty
/// open for `hold` while draining what the guest prints: QEMU only reads the
/// pty while a client has it open (it polls for a connection about once a
/// second).
pub fn serial_type_on(uri: &str, vm_id: &str, line: &str, hold: Duration) {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    let pty = serial_pty_on(uri, vm_id);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(&pty)
        .unwrap();
    let ok = Command::new("stty")
        .args(["-F", &pty, "raw", "-echo"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "stty {pty}");
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < hold {
        match f.read(&mut buf) {
            Ok(n) if n > 0 => continue,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Runs a shell command line in the guest and waits until the serial log
/// shows `expect` after it. The line is typed again only while the shell has
/// not echoed it (it may not be reading yet right after boot); once echoed it
/// is never typed twice, so a long command is not started again under itself.
/// Put `expect` behind shell arithmetic, e.g. `echo DONE-$((40+2))` →
/// `DONE-42`, so the echo of the typed line does not match.
pub async fn serial_run(env: &TestEnv, vm_id: &str, line: &str, expect: &str) {
    serial_run_on(env, "qemu:///system", vm_id, line, expect).await;
}

/// [`serial_run`] for a VM running on the node at `uri`.
pub async fn serial_run_on(env: &TestEnv, uri: &str, vm_id: &str, line: &str, expect: &str) {
    let log_path = env.console_log(vm_id);
    let read_from = |from: usize| {
        let p = log_path.clone();
        async move {
            let log = tokio::fs::read(&p).await.unwrap_or_default();
            String::from_utf8_lossy(log.get(from..).unwrap_or(&log)).into_owned()
        }
    };
    let from = tokio::fs::metadata(&log_path)
        .await
        .map_or(0, |m| m.len() as usize);
    // What the shell echoes first: the line's beginning, before any redraw.
    let echo: String = line.chars().take(12).collect();
    let start = Instant::now();
    let mut accepted = false;
    while !accepted {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the guest shell never read {line:?}"
        );
        let (id, l, u) = (vm_id.to_owned(), line.to_owned(), uri.to_owned());
        let typing = tokio::task::spawn_blocking(move || {
            serial_type_on(&u, &id, &l, Duration::from_secs(3));
        });
        let typed = Instant::now();
        while typed.elapsed() < Duration::from_secs(4) {
            let log = read_from(from).await;
            if log.contains(expect) {
                typing.await.unwrap();
                return;
            }
            if log.contains(&echo) {
                accepted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        typing.await.unwrap();
    }
    wait_for(
        &format!("{expect:?} after typing {line:?}"),
        Duration::from_secs(120),
        || async { read_from(from).await.contains(expect).then_some(()) },
    )
    .await;
}

/// Waits for `needle` in the VM's serial log (a fresh log per boot).
pub async fn wait_serial(env: &TestEnv, vm_id: &str, needle: &str, timeout: Duration) {
    wait_for(
        &format!("{needle:?} on the serial console"),
        timeout,
        || async {
            tokio::fs::read_to_string(env.console_log(vm_id))
                .await
                .is_ok_and(|log| log.contains(needle))
                .then_some(())
        },
    )
    .await;
}

/// Sends a request and returns the status, headers and raw body bytes.
pub async fn get_bytes(
    client: &Client,
    path: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let res = client
        .http
        .get(format!("{}{}", client.base, path))
        .bearer_auth(&client.token)
        .send()
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.bytes().await.unwrap().to_vec())
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Streams a GET response body into `dest`; returns status and headers.
pub async fn download(
    client: &Client,
    path: &str,
    dest: &Path,
) -> (StatusCode, reqwest::header::HeaderMap) {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let res = client
        .http
        .get(format!("{}{}", client.base, path))
        .bearer_auth(&client.token)
        .send()
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let mut f = tokio::fs::File::create(dest).await.unwrap();
    let mut body = res.bytes_stream();
    while let Some(chunk) = body.next().await {
        f.write_all(&chunk.unwrap()).await.unwrap();
    }
    f.flush().await.unwrap();
    (status, headers)
}

/// The first file named `name` below `dir`.
pub fn walk_find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = walk_find(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// Waits until the API says a VM is stopped *and* libvirt has let its
/// domain go. (The API may say "stopped" while libvirt still reports the
/// domain as shutting down; a start or an image tool right then races QEMU's
/// exit.)
pub async fn wait_vm_gone(client: &Client, vm_id: &str) {
    let domain = format!("test-pvce-{vm_id}");
    wait_for("the VM to stop", Duration::from_secs(90), || async {
        let (_, v) = client.get(&format!("/api/vms/{vm_id}")).await;
        (v["state"] == "stopped" && virsh_domstate(&domain).is_empty()).then_some(())
    })
    .await;
}

/// The server's `/metrics` text (no login: Prometheus scrapes it as it is).
pub async fn metrics_text(env: &TestEnv) -> String {
    reqwest::get(env.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The string `field` of every object in a JSON array (in order; objects
/// without it are left out).
pub fn strings<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .map(|a| a.iter().filter_map(|o| o[field].as_str()).collect())
        .unwrap_or_default()
}

/// The power history of a VM as stored: `(at, on)` oldest first.
pub async fn power_rows(env: &TestEnv, vm: &str) -> Vec<(String, bool)> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT at, running FROM vm_power_log WHERE vm_id = $1 ORDER BY id",
    )
    .bind(vm)
    .fetch_all(&env.server.state.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(at, on)| (at, on != 0))
    .collect()
}
