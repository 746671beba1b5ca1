//! Service levels, black-box: real start attempts and real console
//! sessions on the local libvirtd with the tiny guest are recorded and move
//! the indicators as they should — a refused token or Origin is no session
//! at all, a session the user closes is a success, a broken handshake is an
//! error; a start refused for lack of a node counts against start success
//! and VM availability; a node outage in the event log lowers node
//! availability; targets are checked; every signed-in user reads the status.

use std::time::{Duration, Instant};

use crate::common::lab::course_with_student_vm;
use crate::common::{self, Client, TestEnv, assert_error, wait_for};
use futures::{SinkExt, StreamExt};
use pvce::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole minute (the report window's step) and then some.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(90);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(env: &TestEnv, token: &str, origin: &str) -> Result<Ws, tungstenite::Error> {
    let url = format!(
        "{}/ws/console?token={token}",
        env.server.url().replacen("http://", "ws://", 1)
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("binary"));
    req.headers_mut()
        .insert("origin", HeaderValue::from_str(origin).unwrap());
    tokio::time::timeout(IO_TIMEOUT, tokio_tungstenite::connect_async(req))
        .await
        .expect("WebSocket connect timed out")
        .map(|(ws, _)| ws)
}

/// Reads `n` bytes of the RFB stream (across messages).
async fn read_exact(ws: &mut Ws, buf: &mut Vec<u8>, n: usize) -> Vec<u8> {
    while buf.len() < n {
        let msg = tokio::time::timeout(IO_TIMEOUT, ws.next())
            .await
            .expect("timed out waiting for RFB bytes")
            .expect("WebSocket ended")
            .unwrap();
        match msg {
            Message::Binary(b) => buf.extend_from_slice(&b),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected message in the RFB stream: {other:?}"),
        }
    }
    buf.drain(..n).collect()
}

/// The close code the server ends the socket with.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(IO_TIMEOUT, ws.next())
            .await
            .expect("the session was not closed")
        {
            Some(Ok(Message::Close(Some(f)))) => return f.code.into(),
            Some(Ok(_)) => {}
            other => panic!("closed without a close frame: {other:?}"),
        }
    }
}

async fn token(client: &Client, vm_id: &str) -> String {
    let (s, v) = client
        .post_empty(&format!("/api/vms/{vm_id}/console"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

async fn slo(admin: &Client) -> Value {
    let (s, v) = admin.get("/api/slo").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

fn objective<'a>(report: &'a Value, indicator: &str) -> &'a Value {
    report["objectives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["indicator"] == indicator)
        .unwrap_or_else(|| panic!("no objective {indicator}: {report}"))
}

/// Polls the SLO report until `ready` holds (console facts are written by
/// a task of their own, a moment after the session's events).
async fn slo_when(admin: &Client, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, IO_TIMEOUT, || async {
        let r = slo(admin).await;
        ready(&r).then_some(r)
    })
    .await
}

fn service(status: &Value, name: &str) -> String {
    status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == name)
        .unwrap_or_else(|| panic!("no service {name}: {status}"))["level"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn starts_and_console_sessions_are_recorded_and_move_the_indicators() {
    let _alone = common::gate::alone().await;
    let env = TestEnv::start().await;
    let lab = course_with_student_vm(&env, "test-slo101").await;
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    let (alice, vm_id) = (lab.alice, lab.vm);

    let r = slo(&admin).await;
    assert_eq!(r["figures"]["starts"]["attempts"], 0, "{r}");
    assert_eq!(r["figures"]["consoles"]["issued"], 0, "{r}");
    assert!(objective(&r, "console_success")["actual"].is_null());

    // One start; the start of a running VM is no second attempt.
    let asked = Instant::now();
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm_id}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let answered = asked.elapsed().as_secs_f64();
    common::wait_serial(&env, &vm_id, "BOOT-OK", BOOT_TIMEOUT).await;
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm_id}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = slo(&admin).await;
    let starts = &r["figures"]["starts"];
    assert_eq!(
        (&starts["attempts"], &starts["ok"], &starts["failed"]),
        (&json!(1), &json!(1), &json!(0)),
        "{r}"
    );
    let running = starts["running_p50_seconds"].as_f64().unwrap();
    assert!(
        running > 0.0 && running <= answered,
        "time to running {running} s, the request took {answered} s"
    );
    assert_eq!(starts["running_p95_seconds"].as_f64(), Some(running));
    let o = objective(&r, "start_success");
    assert_eq!(
        (&o["actual"], &o["met"], &o["budget_left"]),
        (&json!(1.0), &json!(true), &json!(1.0))
    );
    // /metrics counts the same real start, and its time to running falls
    // in the histogram's bucket of the SLO page's figure.
    let m = common::metrics_text(&env).await;
    assert_eq!(
        sample(&m, r#"pvce_vm_starts_total{outcome="ok"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"pvce_vm_starts_total{outcome="failed"}"#),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "pvce_vm_start_duration_seconds_count"),
        Some(1.0),
        "{m}"
    );
    let sum = sample(&m, "pvce_vm_start_duration_seconds_sum").unwrap();
    assert!((sum - running).abs() < 1e-6, "{sum} vs {running}");
    assert_eq!(
        sample(
            &m,
            r#"pvce_slo_burn_rate{indicator="start_success",window="5m"}"#
        ),
        Some(0.0),
        "{m}"
    );

    // Refused before any session: a foreign Origin, an unknown token. Not
    // the service's failure: issued, but no attempt and no error.
    let t = token(&alice, &vm_id).await;
    assert!(connect(&env, &t, "http://evil.example").await.is_err());
    let own = env.server.url();
    assert!(
        connect(&env, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &own)
            .await
            .is_err()
    );
    let r = slo_when(&admin, "the refused token's record", |r| {
        r["figures"]["consoles"]["issued"] == 1
    })
    .await;
    let c = &r["figures"]["consoles"];
    assert_eq!(
        (&c["attempts"], &c["errors"]),
        (&json!(0), &json!(0)),
        "{r}"
    );

    // A real session through the proxy, closed by the user.
    let t = token(&alice, &vm_id).await;
    let mut ws = connect(&env, &t, &own).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_exact(&mut ws, &mut buf, 12).await, b"RFB 003.008\n");
    ws.send(Message::Binary(b"RFB 003.008\n".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(read_exact(&mut ws, &mut buf, 2).await, [1, 1]);
    ws.send(Message::Binary(vec![1].into())).await.unwrap();
    assert_eq!(read_exact(&mut ws, &mut buf, 4).await, [0, 0, 0, 0]);
    // ClientInit; the node's ServerInit is the console's first frame.
    ws.send(Message::Binary(vec![1].into())).await.unwrap();
    let init = read_exact(&mut ws, &mut buf, 24).await;
    assert!(u16::from_be_bytes([init[0], init[1]]) > 0, "width");
    // Minutes count from the establishment to the end, in whole
    // milliseconds: a session closed within the millisecond it was
    // established lasted nothing (and failed this test once, when it ran
    // alone and fast). Close it once its establishment is recorded and the
    // clock has moved past it.
    let pool = env.server.state.pool.clone();
    wait_for("the session's establishment recorded", IO_TIMEOUT, || {
        let pool = pool.clone();
        async move {
            let at: Option<i64> =
                sqlx::query_scalar("SELECT MAX(established_ms) FROM slo_console_sessions")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            at.filter(|at| *at < pvce::vms::starts::now_ms())
                .map(|_| ())
        }
    })
    .await;
    ws.close(None).await.unwrap();
    // The report's window ends at the last whole minute: a session
    // established after it shows its minutes once the next minute begins.
    let r = wait_for("the session's end and minutes", WINDOW_TIMEOUT, || async {
        let r = slo(&admin).await;
        let c = &r["figures"]["consoles"];
        (c["ended_by_user"] == 1 && c["session_minutes"].as_f64().is_some_and(|m| m > 0.0))
            .then_some(r)
    })
    .await;
    let c = &r["figures"]["consoles"];
    assert_eq!(
        (
            &c["issued"],
            &c["attempts"],
            &c["established"],
            &c["errors"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!(0)),
        "{r}"
    );
    assert_eq!(c["success_rate"], 1.0);
    assert!(c["session_minutes"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(c["peak_concurrent"], 1);
    let frame = r["figures"]["starts"]["first_frame_p50_seconds"]
        .as_f64()
        .expect("the boot's first frame is recorded");
    assert!(
        frame >= running,
        "first frame {frame} s before running {running} s"
    );
    assert_eq!(objective(&r, "console_success")["met"], true);

    // A browser that breaks the RFB handshake: closed with 1002, an error.
    let t = token(&alice, &vm_id).await;
    let mut ws = connect(&env, &t, &own).await.unwrap();
    let mut buf = Vec::new();
    read_exact(&mut ws, &mut buf, 12).await;
    ws.send(Message::Binary(b"HELLO WORLD\n".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, pvce::console::close::PROTOCOL);
    let r = slo_when(&admin, "the error session", |r| {
        r["figures"]["consoles"]["errors"] == 1
    })
    .await;
    let c = &r["figures"]["consoles"];
    assert_eq!(
        (&c["attempts"], &c["success_rate"]),
        (&json!(2), &json!(0.5)),
        "{r}"
    );
    let o = objective(&r, "console_success");
    assert_eq!(
        (&o["actual"], &o["met"]),
        (&json!(0.5), &json!(false)),
        "{o}"
    );
    // Half bad of the 0.5 % allowed: overspent 99 times, burning at 100×.
    assert!(
        (o["budget_left"].as_f64().unwrap() + 99.0).abs() < 1e-6,
        "{o}"
    );
    assert!(
        (o["burn_rate_1h"].as_f64().unwrap() - 100.0).abs() < 1e-6,
        "{o}"
    );
    // Since the error nothing connected: the VM is unusable in wanted time.
    let a = &r["figures"]["availability"]["overall"];
    assert!(a["unusable_minutes"].as_f64().unwrap() > 0.0, "{r}");
    assert!(a["ratio"].as_f64().unwrap() < 1.0, "{r}");
    let course_id = r["courses"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, code)| *code == "test-slo101")
        .map(|(id, _)| id.clone())
        .unwrap();
    assert!(
        r["figures"]["availability"]["per_course"][&course_id]["ratio"]
            .as_f64()
            .unwrap()
            < 1.0
    );

    // The student's status page: consoles red, starting VMs fine.
    let (s, st) = alice.get("/api/status").await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(service(&st, "consoles"), "red", "{st}");
    assert_eq!(service(&st, "vm_start"), "green", "{st}");
    assert_eq!(service(&st, "nodes"), "green", "{st}");
    assert_eq!(st["level"], "red");

    let (s, v) = alice
        .post_empty(&format!("/api/vms/{vm_id}/poweroff"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn failed_starts_node_outages_and_targets() {
    let env = TestEnv::start().await;
    let lab = course_with_student_vm(&env, "test-slo102").await;
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    let teacher = env.client("test-teacher").await;
    let (alice, vm_id) = (lab.alice, lab.vm);
    let (s, nodes) = admin.get("/api/nodes").await;
    assert_eq!(s, StatusCode::OK, "{nodes}");
    let node = nodes[0]["id"].as_str().unwrap().to_owned();

    // The only node in maintenance: the start is refused, no VM runs.
    let maint = format!("/api/nodes/{node}/maintenance");
    let (s, v) = admin.post(&maint, json!({"enabled": true})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm_id}/start")).await;
    assert!(s.is_client_error() || s.is_server_error(), "{s} {v}");
    let (s, v) = admin.post(&maint, json!({"enabled": false})).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // A node outage of exactly five minutes, ten minutes ago, in the event log.
    let now = time::OffsetDateTime::now_utc();
    for (ago, kind) in [(10, "node_down"), (5, "node_up")] {
        sqlx::query(
            "INSERT INTO events (at, kind, node_id, node_name, message) VALUES ($1, $2, $3, 'local', 'test')",
        )
        .bind(pvce::db::format_time(now - time::Duration::minutes(ago)))
        .bind(kind)
        .bind(&node)
        .execute(&env.server.state.pool)
        .await
        .unwrap();
    }

    let r = slo(&admin).await;
    let starts = &r["figures"]["starts"];
    assert_eq!(
        (&starts["attempts"], &starts["ok"], &starts["failed"]),
        (&json!(1), &json!(0), &json!(1)),
        "{r}"
    );
    let o = objective(&r, "start_success");
    assert_eq!(
        (&o["actual"], &o["met"]),
        (&json!(0.0), &json!(false)),
        "{o}"
    );
    // The whole wanted time since the failed request is unusable.
    let a = &r["figures"]["availability"]["overall"];
    assert!(a["wanted_minutes"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(a["ratio"], 0.0, "{r}");
    let n = &r["figures"]["nodes"][0];
    assert_eq!(n["down_minutes"], 5.0, "{r}");
    // Five minutes of the 28-day period.
    let expected = 1.0 - 5.0 / (28.0 * 24.0 * 60.0);
    assert!(
        (n["availability"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{r}"
    );
    let (s, st) = alice.get("/api/status").await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(service(&st, "vm_start"), "red", "{st}");
    assert_eq!(service(&st, "consoles"), "green", "{st}");
    assert!(st["incidents"].as_array().unwrap().is_empty(), "{st}");

    // Targets: checked whole before anything is stored.
    let put = |c: &Client, body: Value| {
        let c = c.clone();
        async move { c.send(Method::PUT, "/api/slo/targets", Some(body)).await }
    };
    for bad in [
        json!({"targets": {"console_success": 1.0}}),
        json!({"targets": {"start_p95": 0}}),
        json!({"targets": {"uptime": 0.9}}),
        json!({"targets": {"start_success": 0.9}, "period_days": 0}),
    ] {
        assert_error(
            &put(&admin, bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_target",
        );
    }
    assert_error(
        &put(&teacher, json!({"targets": {}})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (s, t) = put(
        &admin,
        json!({"targets": {"start_p95": 60, "start_success": 0.9}, "period_days": 7}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["period_days"], 7);
    let r = slo(&admin).await;
    assert_eq!(r["period_days"], 7);
    assert_eq!(objective(&r, "start_p95")["target"], 60.0);
    assert_eq!(objective(&r, "start_success")["target"], 0.9);
    assert_eq!(objective(&r, "console_success")["target"], 0.995);

    // Ranges.
    assert_error(
        &admin.get("/api/slo?from=yesterday").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &admin.get("/api/slo?to=").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &admin.get("/api/slo?from=2026-01-02&to=2026-01-01").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_range",
    );
    let (s, v) = admin.get("/api/slo?from=2020-01-01&to=2020-01-02").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["figures"]["starts"]["attempts"], 0);
    assert_error(
        &alice.get("/api/slo").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // The course's teacher: its figures, no node's.
    let (s, t) = teacher.get("/api/slo").await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["figures"]["starts"]["attempts"], 1, "{t}");
    assert!(t["figures"]["nodes"].as_array().unwrap().is_empty(), "{t}");
    assert_eq!(t["courses"].as_object().unwrap().len(), 1, "{t}");
    // Another teacher: nothing of that course.
    env.user("test-teacher2", Role::Teacher).await;
    let (s, t) = env.client("test-teacher2").await.get("/api/slo").await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["figures"]["starts"]["attempts"], 0, "{t}");
    assert!(t["courses"].as_object().unwrap().is_empty(), "{t}");
}

/// A rig node stops answering under an open console (frozen: its QEMU's
/// stream hangs): the session ends as unreachable (an error) once the
/// node is marked down, the node's down time counts against node and VM
/// availability, and the status page shows the nodes degraded and the
/// system incident the desk opened, by title.
#[tokio::test]
async fn a_dead_node_ends_its_consoles_as_errors_and_shows_on_the_status_page() {
    use crate::common::lab::{course, import_tiny, spec, vm_of};
    use crate::common::multinode::{Rig, register, wait_node_state};
    let rig = Rig::up(2).await;
    let env = TestEnv::start_with(|c| c.allow_tcp_nodes = true).await;
    env.user("test-admin", Role::Admin).await;
    env.user("test-teacher", Role::Teacher).await;
    env.user("test-alice", Role::Student).await;
    let admin = env.client("test-admin").await;
    let teacher = env.client("test-teacher").await;
    let alice = env.client("test-alice").await;
    let nodes = register(&admin, &rig).await;
    let tpl = import_tiny(&teacher, "test-tiny").await;
    let c = course(
        &teacher,
        json!({"code": "test-slo103", "name": "SLO", "vm_specs": [spec("linux", &tpl, 128)]}),
        &["test-alice"],
    )
    .await;
    let vm_id = vm_of(&env, &alice, &c, "linux").await;
    let (s, vm) = alice.post_empty(&format!("/api/vms/{vm_id}/start")).await;
    assert_eq!(s, StatusCode::OK, "{vm}");
    let i = nodes
        .iter()
        .position(|n| vm["node_id"] == n.as_str())
        .unwrap();
    common::wait_serial(&env, &vm_id, "BOOT-OK", BOOT_TIMEOUT).await;

    // A session through the proxy, up to the node's ServerInit.
    let own = env.server.url();
    let t = token(&alice, &vm_id).await;
    let mut ws = connect(&env, &t, &own).await.unwrap();
    let mut buf = Vec::new();
    read_exact(&mut ws, &mut buf, 12).await;
    ws.send(Message::Binary(b"RFB 003.008\n\x01\x01".to_vec().into()))
        .await
        .unwrap();
    read_exact(&mut ws, &mut buf, 2 + 4 + 24).await;

    rig.freeze(i + 1);
    assert_eq!(
        close_code(&mut ws).await,
        pvce::console::close::NODE_UNREACHABLE
    );
    wait_node_state(&admin, &nodes[i], "down", Duration::from_secs(30)).await;
    let dead_node = nodes[i].clone();
    let r = slo_when(&admin, "the unreachable session and the outage", |r| {
        r["figures"]["consoles"]["errors"] == 1
            && r["figures"]["nodes"].as_array().unwrap().iter().any(|n| {
                n["node_id"] == dead_node.as_str() && n["down_minutes"].as_f64() > Some(0.0)
            })
    })
    .await;
    assert_eq!(r["figures"]["consoles"]["established"], 1, "{r}");
    let dead = r["figures"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == nodes[i].as_str())
        .unwrap();
    assert!(dead["down_minutes"].as_f64().unwrap() > 0.0, "{r}");
    assert!(dead["availability"].as_f64().unwrap() < 1.0, "{r}");
    let per_node = &r["figures"]["availability"]["per_node"][&nodes[i]];
    assert!(per_node["unusable_minutes"].as_f64().unwrap() > 0.0, "{r}");
    assert!(per_node["ratio"].as_f64().unwrap() < 1.0, "{r}");

    let st = wait_for("the desk's system incident", IO_TIMEOUT, || async {
        let (s, st) = alice.get("/api/status").await;
        assert_eq!(s, StatusCode::OK, "{st}");
        (!st["incidents"].as_array().unwrap().is_empty()).then_some(st)
    })
    .await;
    assert_eq!(service(&st, "nodes"), "amber", "{st}");
    assert_eq!(service(&st, "consoles"), "red", "{st}");
    assert_ne!(service(&st, "desk"), "green", "{st}");
    let title = st["incidents"][0]["title"].as_str().unwrap();
    assert!(title.contains("test-node"), "{st}");
    assert!(
        st["incidents"][0].get("description").is_none(),
        "titles only"
    );
    rig.thaw(i + 1);
}

/// The value of one sample of the `/metrics` text (`series` with its
/// labels exactly as exported); `None` when absent.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|v| v.trim().parse::<f64>().expect("a number"))
    })
}

/// `/metrics` exports the start attempts the SLO counts (by outcome, with
/// a histogram of the time to running) and each objective's burn rate
/// over 5m/30m/1h/6h, from known start records; the burn windows move
/// with the time the test gives the service.
#[tokio::test]
async fn metrics_export_start_outcomes_and_slo_burn() {
    let env = TestEnv::start().await;
    let pool = &env.server.state.pool;
    let now =
        i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap();
    let min = 60_000;
    // (minutes ago, outcome, error code, seconds to running)
    let rows: [(i64, &str, Option<&str>, Option<i64>); 7] = [
        (20, "ok", None, Some(4)),
        (20, "ok", None, Some(8)),
        (20, "ok", None, Some(200)),
        (20, "failed", Some("node_unavailable"), None),
        // Starting a VM while it shuts down: the user's doing, no attempt.
        (20, "failed", Some("vm_stopping"), None),
        (180, "ok", None, Some(12)),
        (2, "failed", Some("node_unavailable"), None),
    ];
    for (ago, outcome, code, secs) in rows {
        let at = now - ago * min;
        sqlx::query(
            "INSERT INTO slo_vm_starts (id, vm_id, user_id, requested_ms, outcome, error_code, running_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(at)
        .bind(outcome)
        .bind(code)
        .bind(secs.map(|s| at + s * 1000))
        .execute(pool)
        .await
        .unwrap();
    }
    let m = common::metrics_text(&env).await;
    let get = |s: &str| sample(&m, s);
    assert_eq!(
        get(r#"pvce_vm_starts_total{outcome="ok"}"#),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        get(r#"pvce_vm_starts_total{outcome="failed"}"#),
        Some(2.0),
        "{m}"
    );
    assert!(m.contains("# TYPE pvce_vm_start_duration_seconds histogram"));
    for (le, n) in [
        ("5", 1.0),
        ("10", 2.0),
        ("15", 3.0),
        ("120", 3.0),
        ("300", 4.0),
        ("+Inf", 4.0),
    ] {
        let series = format!(r#"pvce_vm_start_duration_seconds_bucket{{le="{le}"}}"#);
        assert_eq!(get(&series), Some(n), "{series}: {m}");
    }
    assert_eq!(get("pvce_vm_start_duration_seconds_count"), Some(4.0));
    assert_eq!(get("pvce_vm_start_duration_seconds_sum"), Some(224.0));
    assert_eq!(
        get(r#"pvce_slo_target{indicator="start_success"}"#),
        Some(0.99)
    );
    let burn = |text: &str, i: &str, w: &str| {
        sample(
            text,
            &format!(r#"pvce_slo_burn_rate{{indicator="{i}",window="{w}"}}"#),
        )
    };
    let near = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-6);
    // start_success allows 1 % bad. 5m: the one failure of one attempt;
    // 30m and 1h: 2 of 5; 6h: 2 of 6.
    assert!(near(burn(&m, "start_success", "5m"), 100.0), "{m}");
    assert!(near(burn(&m, "start_success", "30m"), 40.0), "{m}");
    assert!(near(burn(&m, "start_success", "1h"), 40.0), "{m}");
    assert!(near(burn(&m, "start_success", "6h"), 100.0 / 3.0), "{m}");
    // start_p95 allows 5 % over 120 s: 1 of the 3 successes in 30m; no
    // success in the last 5 minutes, so no sample at all.
    assert!(near(burn(&m, "start_p95", "30m"), 20.0 / 3.0), "{m}");
    assert_eq!(burn(&m, "start_p95", "5m"), None, "{m}");
    // No console sessions: no console burn.
    assert_eq!(burn(&m, "console_success", "6h"), None, "{m}");

    // The same figures from the service at a time the test chooses: seven
    // hours on, every window is past the records (the counters stay).
    let later = env
        .server
        .state
        .slo
        .exposition(now + 7 * 60 * min)
        .await
        .unwrap();
    assert_eq!((later.starts.ok, later.starts.failed), (4, 2));
    assert!(
        !later
            .burn
            .iter()
            .any(|b| b.indicator.as_str() == "start_success"),
        "{later:?}"
    );
    // A target set by an admin moves the burn: 2 of 5 bad of 10 % allowed.
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    let (s, t) = admin
        .send(
            Method::PUT,
            "/api/slo/targets",
            Some(json!({"targets": {"start_success": 0.9}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let m = common::metrics_text(&env).await;
    assert!(near(burn(&m, "start_success", "1h"), 4.0), "{m}");
    assert_eq!(
        sample(&m, r#"pvce_slo_target{indicator="start_success"}"#),
        Some(0.9)
    );
}

/// Class provisioning from the real class-time loop: a session's pre-start
/// queues the course's stopped VMs; with the only node in maintenance none
/// gets its turn before the session ends, so the SLO page (the course's
/// teacher's too) lists the session as incomplete with both VMs pending and
/// no time, and another teacher sees nothing of it. (The loop's successful
/// pre-starts and their time are checked in classtime.rs.)
#[tokio::test]
async fn a_class_whose_vms_never_start_is_incompletely_provisioned() {
    use time::{Duration as TimeDuration, OffsetDateTime};
    let env = TestEnv::start().await;
    let _lab = course_with_student_vm(&env, "test-slo-prov").await;
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    let teacher = env.client("test-teacher").await;
    let (_, courses) = teacher.get("/api/courses").await;
    let cid = courses[0]["id"].as_str().unwrap().to_owned();
    let (_, nodes) = admin.get("/api/nodes").await;
    let node = nodes[0]["id"].as_str().unwrap().to_owned();
    let (s, v) = admin
        .post(
            &format!("/api/nodes/{node}/maintenance"),
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Test clock: the session a day from now.
    let start = (OffsetDateTime::now_utc() + TimeDuration::days(1))
        .replace_nanosecond(0)
        .unwrap();
    let end = start + TimeDuration::minutes(45);
    let fmt = pvce::db::format_time;
    let (s, v) = teacher
        .post(
            &format!("/api/courses/{cid}/sessions"),
            json!({"title": "Lab", "starts_at": fmt(start), "ends_at": fmt(end)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let class = env.server.state.class.clone();
    let r = class.tick(start - TimeDuration::minutes(5)).await.unwrap();
    assert_eq!((r.queued, r.admitted.len()), (2, 0), "{r:?}");
    // A second tick of the same occurrence records nothing new.
    let r = class.tick(start - TimeDuration::minutes(4)).await.unwrap();
    assert_eq!(r.queued, 0, "{r:?}");
    class.tick(end).await.unwrap();

    let range = format!(
        "/api/slo?from={}&to={}",
        fmt(start - TimeDuration::hours(1)),
        fmt(end)
    );
    for client in [&admin, &teacher] {
        let (s, r) = client.get(&range).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        let p = &r["provisioning"];
        assert_eq!(
            (&p["sessions"], &p["complete"], &p["ready_by_start"]),
            (&json!(1), &json!(0), &json!(0)),
            "{r}"
        );
        assert!(p["p95_seconds"].is_null(), "{p}");
        let one = &p["per_session"][0];
        assert_eq!(one["course_id"], cid.as_str(), "{p}");
        assert_eq!(one["session_start"], fmt(start), "{p}");
        assert_eq!(
            (&one["vms"], &one["ready"], &one["failed"], &one["pending"]),
            (&json!(2), &json!(0), &json!(0), &json!(2)),
            "{p}"
        );
        assert!(one["seconds"].is_null(), "{p}");
    }
    // Outside the range (the session began after it): nothing.
    let (_, r) = admin
        .get(&format!(
            "/api/slo?from={}&to={}",
            fmt(start - TimeDuration::hours(2)),
            fmt(start)
        ))
        .await;
    assert_eq!(r["provisioning"]["sessions"], 0, "{r}");
    env.user("test-teacher2", Role::Teacher).await;
    let (_, r) = env.client("test-teacher2").await.get(&range).await;
    assert_eq!(r["provisioning"]["sessions"], 0, "{r}");
}
