//! Several pvce servers on one PostgreSQL database behind a real load
//! balancer (Debian's haproxy), with the real local libvirtd and the tiny
//! guest: a login session works whichever server a request reaches; a
//! console token issued by one server opens the console on another (and
//! only once); a session relayed by one server is closed when the VM is
//! stopped through another; two servers asked to start the same VM at once
//! start it once; servers that die — one stopped abruptly, then under load
//! one killed with SIGKILL — are routed around by the balancer and their
//! leases are taken over within 10 s.
//!
//! PostgreSQL only (several servers need it): ignored in the SQLite run,
//! run by scripts/test.sh's PostgreSQL phase (`--include-ignored`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::common::lab::course_with_student_vm;
use crate::common::process::{ServerProcess, base_args, free_port};
use crate::common::{Client, PASSWORD, TestEnv, database, wait_for, wait_serial};
use crate::console::{Rfb, token};

const LEASE_TERM: Duration = Duration::from_secs(2);
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// haproxy in front of `servers`, in the foreground; killed on drop.
struct Balancer {
    child: Child,
    url: String,
}

impl Balancer {
    async fn start(dir: &Path, servers: &[String]) -> Self {
        let port = free_port();
        let backends: String = servers
            .iter()
            .enumerate()
            .map(|(i, url)| {
                format!(
                    "  server s{i} {} check\n",
                    url.trim_start_matches("http://")
                )
            })
            .collect();
        // Round robin; a server failing two health checks 500 ms apart
        // leaves the rotation; idempotent requests that hit a dead server
        // (refused, or no answer) are retried on another one.
        let config = format!(
            "global\n  maxconn 4000\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  \
             timeout server 60s\n  timeout tunnel 1h\n  retries 3\n  option redispatch 1\n  \
             retry-on conn-failure empty-response response-timeout\n\
             frontend fe\n  bind 127.0.0.1:{port}\n  default_backend pvce\n\
             backend pvce\n  balance roundrobin\n  option httpchk GET /healthz\n  \
             http-check expect status 200\n  default-server inter 500ms fall 2 rise 2\n{backends}"
        );
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("haproxy.log")).unwrap(),
            ))
            .spawn()
            .expect("haproxy (Debian package haproxy; scripts/setup.sh installs it)");
        let me = Balancer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        // Ready once every server is in the rotation.
        wait_for(
            "haproxy to route to every server",
            Duration::from_secs(20),
            || async {
                (server_ids(&me.url, servers.len() * 2).await.len() == servers.len()).then_some(())
            },
        )
        .await;
        me
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn healthz(url: &str) -> Option<Value> {
    let r = reqwest::get(format!("{url}/healthz")).await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// The server ids that answer `n` consecutive `/healthz` through `url`.
async fn server_ids(url: &str, n: usize) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for _ in 0..n {
        if let Some(h) = healthz(url).await {
            ids.insert(h["server_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    ids
}

/// Opens `/ws/console` at `base` with `token` as a browser on `base` would.
async fn open_console(base: &str, token: &str) -> Result<Rfb, tungstenite::Error> {
    let ws_base = base.replacen("http://", "ws://", 1);
    let mut req = format!("{ws_base}/ws/console?token={token}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("binary"));
    req.headers_mut()
        .insert("origin", HeaderValue::from_str(base).unwrap());
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("WebSocket connect timed out")?;
    Ok(Rfb {
        ws,
        buf: Vec::new(),
    })
}

/// The close code the server ends a console session with.
async fn close_code(rfb: &mut Rfb, within: Duration) -> u16 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, rfb.ws.next())
            .await
            .expect("the session was not closed in time");
        match msg {
            Some(Ok(Message::Close(Some(f)))) => return f.code.into(),
            Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("closed without a close frame: {e}"),
        }
    }
}

async fn vm_state(client: &Client, vm: &str) -> String {
    let (s, v) = client.get(&format!("/api/vms/{vm}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["state"].as_str().unwrap().to_owned()
}

#[tokio::test]
#[ignore = "needs PostgreSQL: PVCE_TEST_DATABASE_URL and --include-ignored"]
async fn three_servers_behind_haproxy_share_sessions_consoles_locks_and_leases() {
    assert!(
        std::env::var(database::ENV).is_ok_and(|u| !u.trim().is_empty()),
        "this test needs PostgreSQL: set {} (bash scripts/postgres.sh; \
         PVCE_TEST_DATABASE_URL=$(cat target/pg/url))",
        database::ENV
    );
    let env = TestEnv::start_with(|c| c.lease_term_secs = LEASE_TERM.as_secs()).await;
    let lab = course_with_student_vm(&env, "test-lb").await;
    let vm = lab.vm.clone();
    env.track_vm(&vm);

    // Two more servers: the real binary on the same data dir and database
    // (shared storage), so one can be killed for real.
    let pool = env.server.state.config.template_pool.clone().unwrap();
    let mut args = base_args(&env.data_dir(), &pool);
    args.extend(
        [
            "--lease-term-secs",
            "2",
            "--alert-interval-secs",
            "0",
            "--inspection-at",
            "off",
            "--shutdown-timeout-secs",
            "30",
        ]
        .map(String::from),
    );
    let b = ServerProcess::start(&args, Stdio::null(), Stdio::null(), &[]).await;
    let c = ServerProcess::start(&args, Stdio::null(), Stdio::null(), &[]).await;
    let a_url = env.server.url();
    let servers = [a_url.clone(), b.url.clone(), c.url.clone()];
    let lb = Balancer::start(env.dir.path(), &servers).await;

    // One login session, round robin over the three servers: every request
    // of it is answered, whichever server it reaches.
    let alice = Client::login(&lb.url, "test-alice", PASSWORD).await;
    for _ in 0..9 {
        let (s, v) = alice.get("/api/vms").await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    assert_eq!(server_ids(&lb.url, 6).await.len(), 3, "round robin over 3");

    // Two servers asked to start the same VM at the same moment: it starts
    // once (one start attempt recorded, none failed) and runs.
    let on_a = alice.clone_for(&a_url);
    let on_b = alice.clone_for(&b.url);
    let path = format!("/api/vms/{vm}/start");
    let (ra, rb) = tokio::join!(on_a.post_empty(&path), on_b.post_empty(&path));
    assert_eq!(ra.0, StatusCode::OK, "{}", ra.1);
    assert_eq!(rb.0, StatusCode::OK, "{}", rb.1);
    let starts: Vec<(String,)> =
        sqlx::query_as("SELECT outcome FROM slo_vm_starts WHERE vm_id = $1")
            .bind(&vm)
            .fetch_all(&env.server.state.pool)
            .await
            .unwrap();
    assert_eq!(starts, [("ok".to_string(),)], "one start, not two");
    wait_serial(&env, &vm, "BOOT-OK", BOOT_TIMEOUT).await;
    assert_eq!(vm_state(&alice, &vm).await, "running");

    // A token issued by server A opens the console on server B — once.
    let t = token(&on_a, &vm).await;
    let mut session = open_console(&b.url, &t).await.expect("token of A on B");
    let (w, h, _, _) = session.handshake().await;
    assert!(w > 0 && h > 0);
    match open_console(&c.url, &t).await {
        Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), StatusCode::FORBIDDEN),
        Ok(_) => panic!("a used token opened a second session on another server"),
        Err(e) => panic!("expected 403, got {e}"),
    }
    // And through the balancer, wherever issue and WebSocket land.
    let t2 = token(&alice, &vm).await;
    let mut via_lb = open_console(&lb.url, &t2)
        .await
        .expect("console through haproxy");
    via_lb.handshake().await;

    // The VM powered off through server C: B's session (and the balancer's,
    // wherever it landed) closes with 4001 "VM stopped" soon after.
    let on_c = alice.clone_for(&c.url);
    let (s, v) = on_c.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        close_code(&mut session, Duration::from_secs(10)).await,
        4001
    );
    assert_eq!(close_code(&mut via_lb, Duration::from_secs(10)).await, 4001);

    // Server A stops abruptly (its tasks aborted, nothing handed back):
    // B and C take its leases over within 10 s and the balancer drops it.
    env.server.abort();
    let aborted = Instant::now();
    let took = takeover(&[&b.url, &c.url], None).await;
    eprintln!(
        "A's leases taken over {:?} after it stopped",
        took - aborted
    );

    // Load through the balancer; the child holding more leases is killed
    // (SIGKILL) in the middle, the other takes every lease and all requests.
    let held_by = |h: &Value| {
        h["leases"]
            .as_object()
            .map_or(0, |l| l.values().filter(|v| v["held"] == true).count())
    };
    let (hb, hc) = (
        healthz(&b.url).await.unwrap(),
        healthz(&c.url).await.unwrap(),
    );
    let (mut victim, survivor, victim_id) = if held_by(&hb) >= held_by(&hc) {
        (b, c, hb["server_id"].as_str().unwrap().to_owned())
    } else {
        (c, b, hc["server_id"].as_str().unwrap().to_owned())
    };
    assert!(held_by(&hb) + held_by(&hc) > 0);
    let log = Arc::new(std::sync::Mutex::new(Vec::<(Instant, bool)>::new()));
    let stop_at = Instant::now() + Duration::from_secs(9);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (client, log) = (alice.clone(), log.clone());
            tokio::spawn(async move {
                while Instant::now() < stop_at {
                    let ok = client
                        .try_get("/api/vms")
                        .await
                        .is_ok_and(|(s, _)| s == StatusCode::OK);
                    log.lock().unwrap().push((Instant::now(), ok));
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = Instant::now();
    victim.kill();
    let took = takeover(&[&survivor.url], Some(&victim_id)).await;
    eprintln!("leases taken over {:?} after the kill", took - killed);
    for w in workers {
        w.await.unwrap();
    }
    let log = std::mem::take(&mut *log.lock().unwrap());
    let failed: Vec<Duration> = log
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(at, _)| at.saturating_duration_since(killed))
        .collect();
    let after = log.iter().filter(|(at, _)| *at > killed).count();
    eprintln!(
        "{} requests through haproxy, {after} after the kill, failed: {failed:?}",
        log.len()
    );
    assert!(after > 50, "too little load after the kill: {after}");
    // At most the requests in flight at the kill may fail; from a second
    // after it (two failed health checks) every request is answered.
    assert!(failed.len() <= 8, "{failed:?}");
    assert!(
        failed.iter().all(|d| *d < Duration::from_secs(2)),
        "{failed:?}"
    );
    assert_eq!(
        server_ids(&lb.url, 6).await.len(),
        1,
        "only the survivor is left"
    );
}

/// Waits (10 s at most, issue 17's bound) until `servers` between them hold
/// every cluster-wide lease and none is left to `gone`; returns when.
async fn takeover(servers: &[&str], gone: Option<&str>) -> Instant {
    wait_for(
        "the surviving servers to hold every lease",
        Duration::from_secs(10),
        || async {
            let mut health = Vec::new();
            for s in servers {
                health.push(healthz(s).await?);
            }
            let leases = health[0]["leases"].as_object()?.clone();
            let ok = !leases.is_empty()
                && leases.iter().all(|(name, l)| {
                    health.iter().any(|h| h["leases"][name]["held"] == true)
                        && gone.is_none_or(|g| l["holder"].as_str() != Some(g))
                });
            ok.then(Instant::now)
        },
    )
    .await
}
