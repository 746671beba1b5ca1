//! Several real nodes on one machine (`scripts/multinode.sh`): stock libvirtd
//! instances in their own namespaces, reached over TCP like remote hosts, with
//! real tiny-guest VMs on them. Covers registration, health (a killed node and
//! a frozen one), spread placement and maintenance, failure handling with
//! fencing, live migration with the console re-issued, reconciliation
//! after a server restart, and node-local student layers (pinned to their
//! node, moved between nodes with their data). The rig is machine-wide and locked, so these tests
//! run one after another whatever `--test-threads` says.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common::lab::{course, import_tiny, spec, vm_of};
use crate::common::multinode::{self, Rig, wait_node_state};
use crate::common::{self, Client, TestEnv, assert_error, serial_run_on, wait_for, wait_serial};
use futures::{SinkExt, StreamExt};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

const BOOT_TIMEOUT: Duration = Duration::from_secs(150);
/// The issue's bound for noticing a dead node.
const DOWN_WITHIN: Duration = Duration::from_secs(10);
/// Memory of the test VMs. The rig's nodes share one kernel, so each reports
/// the whole machine's memory, sampled at slightly different moments; the
/// memory a placed VM is promised must stand well above that noise (a few
/// QEMUs starting) for spread and pack to decide by it. Guests touch little
/// of it, so the machine is not short.
const VM_MIB: u32 = 768;

/// A server whose nodes are the rig's, with a course on the tiny guest and
/// one personal VM per student.
struct Cluster {
    env: TestEnv,
    admin: Client,
    students: Vec<Client>,
    /// Node ids; index 0 is rig node 1.
    nodes: Vec<String>,
    /// VM ids; index i belongs to students[i].
    vms: Vec<String>,
}

fn config(c: &mut pvce::config::Config) {
    // Live migration on shared storage needs cache=none (see README).
    c.disk_cache = pvce::libvirt::DiskCache::None;
    // The rig's libvirtds listen on plain TCP (a test rig: see README).
    c.allow_tcp_nodes = true;
}

async fn cluster(rig: &Rig, students: usize) -> Cluster {
    cluster_with(rig, students, config).await
}

async fn cluster_with(
    rig: &Rig,
    students: usize,
    tweak: impl FnOnce(&mut pvce::config::Config),
) -> Cluster {
    // Whatever the tweak: the rig's nodes are qemu+tcp:// ones.
    let env = TestEnv::start_with(|c| {
        c.allow_tcp_nodes = true;
        tweak(c);
    })
    .await;
    env.user("test-admin", Role::Admin).await;
    env.user("test-teacher", Role::Teacher).await;
    let admin = env.client("test-admin").await;
    let teacher = env.client("test-teacher").await;
    let nodes = multinode::register(&admin, rig).await;
    let tpl = import_tiny(&teacher, "test-tiny").await;
    let names: Vec<String> = (0..students).map(|i| format!("test-s{i}")).collect();
    for n in &names {
        env.user(n, Role::Student).await;
    }
    let usernames: Vec<&str> = names.iter().map(String::as_str).collect();
    let course = course(
        &teacher,
        json!({"code": "test-cluster", "name": "Cluster", "vm_specs": [spec("linux", &tpl, VM_MIB)]}),
        &usernames,
    )
    .await;
    let mut clients = Vec::new();
    let mut vms = Vec::new();
    for n in &names {
        let c = env.client(n).await;
        vms.push(vm_of(&env, &c, &course, "linux").await);
        clients.push(c);
    }
    Cluster {
        env,
        admin,
        students: clients,
        nodes,
        vms,
    }
}

fn domain(vm: &str) -> String {
    format!("test-pvce-{vm}")
}

impl Cluster {
    /// Rig index (1-based) of a node id.
    fn index(&self, node_id: &Value) -> usize {
        self.nodes
            .iter()
            .position(|n| node_id == n.as_str())
            .unwrap_or_else(|| panic!("unknown node {node_id}"))
            + 1
    }

    async fn start(&self, i: usize) -> Value {
        let (status, vm) = self.students[i]
            .post_empty(&format!("/api/vms/{}/start", self.vms[i]))
            .await;
        assert_eq!(status, StatusCode::OK, "{vm}");
        assert_eq!(vm["state"], "running", "{vm}");
        vm
    }

    /// Powers VM `i` off (as its student); returns the VM.
    async fn poweroff(&self, i: usize) -> Value {
        let (status, vm) = self.students[i]
            .post_empty(&format!("/api/vms/{}/poweroff", self.vms[i]))
            .await;
        assert_eq!(status, StatusCode::OK, "{vm}");
        vm
    }

    async fn vm(&self, i: usize) -> Value {
        self.admin.get(&format!("/api/vms/{}", self.vms[i])).await.1
    }

    async fn wait_vm_state(&self, i: usize, state: &str, timeout: Duration) -> Value {
        wait_for(&format!("VM {i} to be {state}"), timeout, || async {
            let v = self.vm(i).await;
            (v["state"] == state).then_some(v)
        })
        .await
    }
}

/// Waits for a node to be marked down after `since`; returns how long it took.
async fn time_to_down(admin: &Client, node: &str, since: Instant) -> Duration {
    wait_node_state(admin, node, "down", Duration::from_secs(30)).await;
    since.elapsed()
}

#[tokio::test]
async fn three_nodes_register_and_come_up() {
    let rig = Rig::up(3).await;
    let env = TestEnv::start_with(|c| c.allow_tcp_nodes = true).await;
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    let ids = multinode::register(&admin, &rig).await;

    let (_, nodes) = admin.get("/api/nodes").await;
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for (i, id) in ids.iter().enumerate() {
        let n = nodes.iter().find(|n| n["id"] == id.as_str()).unwrap();
        assert_eq!(n["state"], "up", "{n}");
        assert_eq!(n["uri"], rig.uri(i + 1));
        assert!(n["cpus"].as_u64().unwrap() > 0, "{n}");
        assert!(n["mem_total_mib"].as_u64().unwrap() > 0, "{n}");
        // Read from each node's own libvirtd when it came up.
        let caps = &n["capabilities"];
        assert!(
            caps["graphics"].as_array().unwrap().contains(&json!("vnc")),
            "{n}"
        );
        assert!(
            caps["accelerators"]
                .as_array()
                .unwrap()
                .contains(&json!("tcg")),
            "{n}"
        );
    }
    // Each node is its own libvirtd: distinct hostnames.
    let hostnames: HashSet<String> = (1..=3)
        .map(|i| {
            String::from_utf8_lossy(&rig.virsh(i, &["hostname"]).stdout)
                .trim()
                .to_owned()
        })
        .collect();
    assert_eq!(hostnames.len(), 3, "{hostnames:?}");
    // The host's own libvirtd is not one of them and still answers.
    let host = std::process::Command::new("virsh")
        .args(["-q", "-c", "qemu:///system", "version"])
        .output()
        .unwrap();
    assert!(host.status.success());
}

#[tokio::test]
async fn dead_and_frozen_nodes_are_down_within_10s_and_hold_up_nobody() {
    // Time bounds a neighbour's guest could break: alone (see common::gate).
    let _alone = crate::common::gate::alone().await;
    let rig = Rig::up(3).await;
    let c = cluster(&rig, 1).await;

    // Killed: libvirtd and its QEMUs gone at once.
    let t0 = Instant::now();
    rig.kill(3);
    let took = time_to_down(&c.admin, &c.nodes[2], t0).await;
    eprintln!("killed node marked down after {took:?}");
    assert!(
        took <= DOWN_WITHIN,
        "killed node took {took:?} to be marked down"
    );
    rig.start(3);
    wait_node_state(&c.admin, &c.nodes[2], "up", Duration::from_secs(30)).await;

    // Frozen: TCP still accepted, libvirt never answers.
    rig.freeze(2);
    let t0 = Instant::now();
    let mut slowest = Duration::ZERO;
    loop {
        // The rest of the API answers promptly all along.
        for path in ["/api/nodes", "/api/vms", &format!("/api/vms/{}", c.vms[0])] {
            let t = Instant::now();
            let (status, body) = c.admin.get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            slowest = slowest.max(t.elapsed());
        }
        let (_, n) = c.admin.get(&format!("/api/nodes/{}", c.nodes[1])).await;
        if n["state"] == "down" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "frozen node never marked down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = t0.elapsed();
    eprintln!("frozen node marked down after {took:?}; slowest API call meanwhile {slowest:?}");
    assert!(
        took <= DOWN_WITHIN,
        "frozen node took {took:?} to be marked down"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "an API call took {slowest:?}"
    );
    // Other nodes stay up and take VMs while node 2 is still frozen.
    for i in [0, 2] {
        let (_, n) = c.admin.get(&format!("/api/nodes/{}", c.nodes[i])).await;
        assert_eq!(n["state"], "up", "{n}");
    }
    let t = Instant::now();
    let vm = c.start(0).await;
    eprintln!("start during the freeze took {:?}", t.elapsed());
    assert_ne!(c.index(&vm["node_id"]), 2, "{vm}");
    assert_eq!(
        rig.domstate(c.index(&vm["node_id"]), &domain(&c.vms[0])),
        "running"
    );

    rig.thaw(2);
    wait_node_state(&c.admin, &c.nodes[1], "up", Duration::from_secs(30)).await;

    // The event log tells the story of each node, newest first: added, up,
    // down (with libvirt's reason), up again.
    for (i, why) in [(2, "unable to connect"), (1, "")] {
        let (status, events) = c
            .admin
            .get(&format!("/api/events?node_id={}", c.nodes[i]))
            .await;
        assert_eq!(status, StatusCode::OK, "{events}");
        let kinds = common::strings(&events, "kind");
        assert_eq!(
            kinds,
            ["node_up", "node_down", "node_up", "node_added"],
            "node {}: {events}",
            i + 1
        );
        let down = &events[1];
        assert!(down["actor"].is_null(), "{down}");
        assert_eq!(down["node_name"], format!("test-node{}", i + 1));
        assert!(down["message"].as_str().unwrap().contains(why), "{down}");
        assert_eq!(events[3]["actor"], "test-admin", "{events}");
        // Counted as one failure this week, in the node view and /metrics.
        let (_, n) = c.admin.get(&format!("/api/nodes/{}", c.nodes[i])).await;
        assert_eq!(n["failures_7d"], 1, "{n}");
    }
    let (_, n) = c.admin.get(&format!("/api/nodes/{}", c.nodes[0])).await;
    assert_eq!(n["failures_7d"], 0, "{n}");
    let text = common::metrics_text(&c.env).await;
    assert!(
        text.contains("pvce_node_failures_7d{node=\"test-node3\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn spread_uses_every_node_and_maintenance_gets_none() {
    let rig = Rig::up(3).await;
    let c = cluster(&rig, 3).await;

    let mut used = HashSet::new();
    for i in 0..3 {
        let vm = c.start(i).await;
        let n = c.index(&vm["node_id"]);
        assert_eq!(rig.domstate(n, &domain(&c.vms[i])), "running");
        used.insert(n);
    }
    assert_eq!(used.len(), 3, "spread must use all three nodes: {used:?}");
    for i in 0..3 {
        assert_eq!(c.poweroff(i).await["state"], "stopped");
    }

    let (status, n) = c
        .admin
        .post(
            &format!("/api/nodes/{}/maintenance", c.nodes[0]),
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{n}");
    assert_eq!(n["state"], "maintenance");
    for i in 0..3 {
        let vm = c.start(i).await;
        assert_ne!(
            c.index(&vm["node_id"]),
            1,
            "placed on a node in maintenance: {vm}"
        );
        assert_eq!(rig.domstate(1, &domain(&c.vms[i])), "");
    }
}

#[tokio::test]
async fn pack_fills_one_node_before_the_next() {
    let rig = Rig::up(3).await;
    let c = cluster_with(&rig, 3, |cfg| {
        config(cfg);
        cfg.placement_policy = pvce::placement::Policy::Pack;
    })
    .await;

    // The rig's nodes have the same memory, so after the first start the
    // memory promised to its VM makes that node the fullest one that fits:
    // pack keeps choosing it.
    let mut used = Vec::new();
    for i in 0..3 {
        let vm = c.start(i).await;
        let n = c.index(&vm["node_id"]);
        assert_eq!(rig.domstate(n, &domain(&c.vms[i])), "running");
        used.push(n);
    }
    assert!(
        used.iter().all(|n| *n == used[0]),
        "pack must put all three VMs on one node: {used:?}"
    );

    // With the full node in maintenance, pack moves on to one other node.
    for i in 0..3 {
        c.poweroff(i).await;
    }
    let (status, n) = c
        .admin
        .post(
            &format!("/api/nodes/{}/maintenance", c.nodes[used[0] - 1]),
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{n}");
    let mut again = Vec::new();
    for i in 0..2 {
        again.push(c.index(&c.start(i).await["node_id"]));
    }
    assert_ne!(again[0], used[0], "placed on a node in maintenance");
    assert_eq!(
        again[0], again[1],
        "pack must fill the next node: {again:?}"
    );
}

#[tokio::test]
async fn a_dead_nodes_vm_is_fenced_then_restarts_elsewhere_with_its_data() {
    let rig = Rig::up(3).await;
    let c = cluster(&rig, 1).await;
    let vm = c.start(0).await;
    let first = c.index(&vm["node_id"]);
    wait_serial(&c.env, &c.vms[0], "BOOT-OK", BOOT_TIMEOUT).await;
    serial_run_on(
        &c.env,
        &rig.uri(first),
        &c.vms[0],
        "echo pvce-failover-data > /root/f; sync; echo WROTE-$((40+2))",
        "WROTE-42",
    )
    .await;

    // A node that answers cannot be fenced: it is asked instead.
    let live = c.nodes[first % 3].clone();
    assert_error(
        &c.admin
            .post(
                &format!("/api/nodes/{live}/fence"),
                json!({"confirm_powered_off": true}),
            )
            .await,
        StatusCode::CONFLICT,
        "node_up",
    );

    let t0 = Instant::now();
    rig.kill(first);
    let took = time_to_down(&c.admin, &c.nodes[first - 1], t0).await;
    eprintln!("node with a running VM marked down after {took:?}");
    assert!(took <= DOWN_WITHIN, "took {took:?}");
    // Not silently running: the VM's state says its node is down.
    let v = c
        .wait_vm_state(0, "node_down", Duration::from_secs(10))
        .await;
    assert_eq!(v["node_id"], c.nodes[first - 1].as_str(), "{v}");
    let (_, mine) = c.students[0].get("/api/vms").await;
    assert_eq!(mine[0]["state"], "node_down");
    // No restart before the fence: the layer may still be open there.
    assert_error(
        &c.students[0]
            .post_empty(&format!("/api/vms/{}/start", c.vms[0]))
            .await,
        StatusCode::CONFLICT,
        "node_down",
    );
    // Students cannot fence; the admin must confirm explicitly.
    let fence = format!("/api/nodes/{}/fence", c.nodes[first - 1]);
    assert_error(
        &c.students[0]
            .post(&fence, json!({"confirm_powered_off": true}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &c.admin
            .post(&fence, json!({"confirm_powered_off": false}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "confirmation_required",
    );
    let (status, fenced) = c
        .admin
        .post(&fence, json!({"confirm_powered_off": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{fenced}");
    assert_eq!(fenced["vms_released"], 1, "{fenced}");
    assert_eq!(c.vm(0).await["state"], "stopped");

    // Restarted on another node, the student's file is there.
    let vm = c.start(0).await;
    let second = c.index(&vm["node_id"]);
    assert_ne!(second, first);
    // The expected line only exists if the file's content made it across
    // (a missing file prints `DATA--END` and the wait fails).
    serial_run_on(
        &c.env,
        &rig.uri(second),
        &c.vms[0],
        "echo DATA-$(cat /root/f)-END",
        "DATA-pvce-failover-data-END",
    )
    .await;

    // The dead node returns empty: it stays out of the VM's way.
    rig.start(first);
    wait_node_state(&c.admin, &c.nodes[first - 1], "up", Duration::from_secs(30)).await;
    assert_eq!(c.vm(0).await["state"], "running");
    assert_eq!(rig.domstate(second, &domain(&c.vms[0])), "running");
}

/// Opens `/ws/console?token=…` as noVNC does and reads the RFB handshake up to
/// ServerInit; returns the framebuffer size.
async fn rfb_handshake(env: &TestEnv, token: &str) -> Result<(u16, u16), tungstenite::Error> {
    let mut req = format!(
        "{}/ws/console?token={token}",
        env.server.url().replacen("http://", "ws://", 1)
    )
    .into_client_request()
    .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("binary"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let mut buf: Vec<u8> = Vec::new();
    let mut need = async |ws: &mut tokio_tungstenite::WebSocketStream<_>, n: usize| {
        while buf.len() < n {
            match tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .expect("RFB bytes")
                .expect("WebSocket open")
                .unwrap()
            {
                Message::Binary(b) => buf.extend_from_slice(&b),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        buf.drain(..n).collect::<Vec<u8>>()
    };
    let version = need(&mut ws, 12).await;
    assert!(version.starts_with(b"RFB 003."), "{version:?}");
    ws.send(Message::Binary(b"RFB 003.008\n".to_vec().into()))
        .await
        .unwrap();
    let n = need(&mut ws, 1).await[0];
    let types = need(&mut ws, usize::from(n)).await;
    assert!(types.contains(&1), "{types:?}");
    ws.send(Message::Binary(vec![1].into())).await.unwrap();
    assert_eq!(need(&mut ws, 4).await, [0, 0, 0, 0], "SecurityResult");
    ws.send(Message::Binary(vec![1].into())).await.unwrap();
    let init = need(&mut ws, 4).await;
    Ok((
        u16::from_be_bytes([init[0], init[1]]),
        u16::from_be_bytes([init[2], init[3]]),
    ))
}

async fn console_token(client: &Client, vm: &str) -> String {
    let (status, t) = client.post_empty(&format!("/api/vms/{vm}/console")).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    t["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn live_migration_moves_a_running_vm_and_its_console() {
    let rig = Rig::up(3).await;
    let (_repo_dir, repo) = crate::backups::repository();
    let repo = repo.to_string_lossy().into_owned();
    let c = cluster_with(&rig, 1, |cfg| {
        config(cfg);
        cfg.backup_repo = Some(repo);
    })
    .await;
    let vm = c.start(0).await;
    let from = c.index(&vm["node_id"]);
    let to = from % 3 + 1;
    let other = to % 3 + 1;
    wait_serial(&c.env, &c.vms[0], "BOOT-OK", BOOT_TIMEOUT).await;
    let migrate = format!("/api/vms/{}/migrate", c.vms[0]);

    // Refusals: role, same node, unknown node, maintenance, down.
    assert_error(
        &c.students[0]
            .post(&migrate, json!({"node_id": c.nodes[to - 1]}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &c.admin
            .post(&migrate, json!({"node_id": c.nodes[from - 1]}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "same_node",
    );
    assert_error(
        &c.admin
            .post(
                &migrate,
                json!({"node_id": "00000000-0000-0000-0000-000000000000"}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_node",
    );
    assert_error(
        &c.admin.post(&migrate, json!({"node": 1})).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let maint = format!("/api/nodes/{}/maintenance", c.nodes[other - 1]);
    c.admin.post(&maint, json!({"enabled": true})).await;
    assert_error(
        &c.admin
            .post(&migrate, json!({"node_id": c.nodes[other - 1]}))
            .await,
        StatusCode::CONFLICT,
        "node_maintenance",
    );
    c.admin.post(&maint, json!({"enabled": false})).await;
    rig.kill(other);
    wait_node_state(
        &c.admin,
        &c.nodes[other - 1],
        "down",
        Duration::from_secs(30),
    )
    .await;
    assert_error(
        &c.admin
            .post(&migrate, json!({"node_id": c.nodes[other - 1]}))
            .await,
        StatusCode::CONFLICT,
        "node_down",
    );
    rig.start(other);
    wait_node_state(&c.admin, &c.nodes[other - 1], "up", Duration::from_secs(30)).await;

    // A console session before the move.
    let before = console_token(&c.students[0], &c.vms[0]).await;
    let stale = console_token(&c.students[0], &c.vms[0]).await;
    let (w, h) = rfb_handshake(&c.env, &before).await.unwrap();
    assert!(w > 0 && h > 0);

    // Backed up while running: the domain has a backup checkpoint, which
    // pvce drops before the move (it would not move with a transient
    // domain); the copy after the move is a whole one again, and succeeds.
    let backups = c.env.server.state.backups.clone();
    let day0 = time::OffsetDateTime::now_utc().unix_timestamp() + 30 * 86_400;
    let sources = || async {
        let (_, points) = c.students[0]
            .get(&format!("/api/vms/{}/backups", c.vms[0]))
            .await;
        common::strings(&points, "source")
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let run = backups
        .run(day0, pvce::backup::Trigger::Scheduled, None)
        .await
        .unwrap();
    assert!(run.ok && run.skipped == 0, "{run:?}");
    let checkpoints = |i: usize| {
        String::from_utf8_lossy(
            &rig.virsh(i, &["checkpoint-list", "--name", &domain(&c.vms[0])])
                .stdout,
        )
        .trim()
        .to_owned()
    };
    assert!(
        checkpoints(from).starts_with("pvce-backup-"),
        "{}",
        checkpoints(from)
    );

    let t = Instant::now();
    let (status, moved) = c
        .admin
        .post(&migrate, json!({"node_id": c.nodes[to - 1]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    eprintln!("live migration took {:?}", t.elapsed());
    assert_eq!(checkpoints(to), "", "no checkpoint moved");
    // Nor its bitmap: dropped before the move, so QEMU on the destination
    // does not load it from the shared layer and track writes for nothing.
    let nodes = rig.virsh(
        to,
        &[
            "qemu-monitor-command",
            &domain(&c.vms[0]),
            r#"{"execute":"query-named-block-nodes","arguments":{"flat":true}}"#,
        ],
    );
    let nodes = String::from_utf8_lossy(&nodes.stdout).into_owned();
    assert!(nodes.contains("\"return\""), "{nodes}");
    assert!(
        !nodes.contains("pvce-backup-"),
        "a bitmap moved with the layer: {nodes}"
    );
    let run = backups
        .run(day0 + 86_400, pvce::backup::Trigger::Scheduled, None)
        .await
        .unwrap();
    assert!(run.ok && run.skipped == 0 && run.failed == 0, "{run:?}");
    assert_eq!(sources().await, ["running_whole", "running_whole"]);
    assert_eq!(moved["state"], "running");
    assert_eq!(moved["node_id"], c.nodes[to - 1].as_str());
    assert_eq!(rig.domstate(to, &domain(&c.vms[0])), "running");
    assert_eq!(rig.domstate(from, &domain(&c.vms[0])), "");
    // The console now listens on the new node's address.
    let xml = String::from_utf8_lossy(&rig.virsh(to, &["dumpxml", &domain(&c.vms[0])]).stdout)
        .into_owned();
    assert!(xml.contains(&format!("listen='{}'", rig.addr(to))), "{xml}");

    // A token issued for the old node is void; a fresh one works.
    match rfb_handshake(&c.env, &stale).await {
        Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), StatusCode::FORBIDDEN),
        other => panic!("a token for the old node must be refused: {other:?}"),
    }
    let fresh = console_token(&c.students[0], &c.vms[0]).await;
    let (w2, h2) = rfb_handshake(&c.env, &fresh).await.unwrap();
    assert_eq!((w2, h2), (w, h));
    // The guest kept running through the move.
    serial_run_on(
        &c.env,
        &rig.uri(to),
        &c.vms[0],
        "echo ALIVE-$((6*7))",
        "ALIVE-42",
    )
    .await;

    // Maintenance with drain moves it off again.
    let (status, n) = c
        .admin
        .post(
            &format!("/api/nodes/{}/maintenance", c.nodes[to - 1]),
            json!({"enabled": true, "drain": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{n}");
    let v = wait_for(
        "the drain to move the VM",
        Duration::from_secs(90),
        || async {
            let v = c.vm(0).await;
            (v["node_id"] != c.nodes[to - 1].as_str()).then_some(v)
        },
    )
    .await;
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(
        rig.domstate(c.index(&v["node_id"]), &domain(&c.vms[0])),
        "running"
    );
    assert_eq!(rig.domstate(to, &domain(&c.vms[0])), "");

    // The event log has both moves, each at the node the VM left.
    let admin = &c.admin;
    let events_of = |i: usize| {
        let path = format!("/api/events?node_id={}", c.nodes[i - 1]);
        async move { admin.get(&path).await.1 }
    };
    let at_to = events_of(to).await;
    let kinds = &common::strings(&at_to, "kind")[..3];
    assert_eq!(
        kinds,
        ["vm_migrated", "drain_started", "maintenance_on"],
        "{at_to}"
    );
    let drained = &at_to[0];
    assert_eq!(drained["vm_id"], c.vms[0].as_str(), "{drained}");
    assert_eq!(drained["actor"], "test-admin", "{drained}");
    let landed = format!("live-migrated to test-node{}", c.index(&v["node_id"]));
    assert_eq!(drained["message"], landed.as_str(), "{drained}");
    let at_from = events_of(from).await;
    let first_move = format!("live-migrated to test-node{to}");
    assert!(
        at_from
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "vm_migrated"
                && e["message"] == first_move.as_str()
                && e["vm_id"] == c.vms[0].as_str()),
        "{at_from}"
    );
}

#[tokio::test]
async fn a_restarted_server_reconciles_with_every_node() {
    let rig = Rig::up(3).await;
    let mut c = cluster(&rig, 2).await;
    let a = c.index(&c.start(0).await["node_id"]);
    let b = c.index(&c.start(1).await["node_id"]);
    // Something pvce did not create, on every node.
    let foreign = "test-pvce-foreign";
    let xml_path = c.env.dir.path().join("foreign.xml");
    std::fs::write(
        &xml_path,
        format!(
            "<domain type='qemu'><name>{foreign}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64'>hvm</type></os><devices><graphics type='vnc' listen='{}'/></devices></domain>",
            rig.addr(a)
        ),
    )
    .unwrap();
    let out = rig.virsh(a, &["create", xml_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The server goes away mid-run; meanwhile VM 1's domain dies behind its back.
    c.env.server.abort();
    let out = rig.virsh(b, &["destroy", &domain(&c.vms[1])]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut config = pvce::config::Config::for_data_dir(c.env.data_dir());
    config.domain_prefix = Some("test-pvce-".into());
    config.shutdown_timeout_secs = 30;
    self::config(&mut config);
    c.env.server = pvce::app::start(config, "127.0.0.1:0").await.unwrap();
    let base = c.env.server.url();
    c.admin.base = base.clone();
    for s in &mut c.students {
        s.base = base.clone();
    }
    // Adopted where it runs, the vanished one stopped, the foreign one untouched.
    let v0 = c.vm(0).await;
    assert_eq!(v0["state"], "running", "{v0}");
    assert_eq!(c.index(&v0["node_id"]), a);
    let v1 = c.vm(1).await;
    assert_eq!(v1["state"], "stopped", "{v1}");
    assert_eq!(v1["node_id"], Value::Null);
    assert_eq!(rig.domstate(a, foreign), "running");
    // Nothing orphaned: every pvce domain on the rig is a running VM here.
    for n in 1..=3 {
        let out = rig.virsh(n, &["list", "--name"]);
        for d in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
            if d.is_empty() || d == foreign {
                continue;
            }
            assert_eq!(d, domain(&c.vms[0]), "orphan on node {n}");
            assert_eq!(n, a);
        }
    }
    // And the restarted server drives the VMs as before.
    c.start(1).await;
    c.poweroff(0).await;
    assert_eq!(rig.domstate(a, foreign), "running");
    let _ = rig.virsh(a, &["destroy", foreign]);
}

/// Where each rig node has a directory only it sees (scripts/multinode.sh).
const RIG_LOCAL_DIR: &str = "/var/lib/pvce-rig-local";
const LAYER_POOL: &str = "test-pvce-layers";

/// The node-local layer volumes of `vm` in node i's layer pool.
fn layer_volumes(rig: &Rig, i: usize, vm: &str) -> Vec<String> {
    let out = rig.virsh(i, &["vol-list", LAYER_POOL]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with(vm))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn node_local_layers_stay_on_their_node_and_move_with_their_data() {
    let rig = Rig::up(2).await;
    let (_repo_dir, repo) = crate::backups::repository();
    let repo = repo.to_string_lossy().into_owned();
    let c = cluster_with(&rig, 1, |cfg| {
        cfg.layer_storage = pvce::vms::layers::LayerStorage::NodeLocal;
        cfg.layer_pool = Some(LAYER_POOL.into());
        cfg.layer_pool_dir = Some(RIG_LOCAL_DIR.into());
        cfg.backup_repo = Some(repo);
    })
    .await;
    let vm_id = c.vms[0].clone();
    let v = c.vm(0).await;
    assert_eq!(v["layer_storage"], "node-local", "{v}");
    assert!(
        v["layer_node_id"].is_null(),
        "no layer before the first start: {v}"
    );

    // The first start creates the layer on the node it runs on, and only there.
    let vm = c.start(0).await;
    let first = c.index(&vm["node_id"]);
    let other = 3 - first;
    assert_eq!(vm["layer_node_id"], vm["node_id"], "{vm}");
    assert_eq!(layer_volumes(&rig, first, &vm_id).len(), 1);
    assert!(layer_volumes(&rig, other, &vm_id).is_empty());
    // The server never sees the file: it lives on the node's own disk.
    let host_files: Vec<_> = std::fs::read_dir(RIG_LOCAL_DIR)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !host_files
            .iter()
            .any(|f| f.to_string_lossy().starts_with(&vm_id)),
        "{host_files:?}"
    );
    // Leftovers of an interrupted operation (a layer volume no row names,
    // of this VM or of one long gone) are swept; anything else stays — a
    // disk copy a killed backup run left too: the next backup run sweeps it.
    let stray_copy = "pvce-disk-copy-7e57c0de7e57c0de7e57c0de7e57c0de.qcow2";
    let strays = [
        format!("{vm_id}.0badc0de.qcow2"),
        "7e57a000-0000-4000-8000-00000000dead.0badc0de.qcow2".to_owned(),
    ];
    for name in strays
        .iter()
        .map(String::as_str)
        .chain(["test-foreign.qcow2", stray_copy])
    {
        let out = rig.virsh(
            first,
            &["vol-create-as", LAYER_POOL, name, "1M", "--format", "qcow2"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pool_names = || {
        let out = rig.virsh(first, &["vol-list", LAYER_POOL]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_for(
        "stray layer volumes to be swept",
        Duration::from_secs(20),
        || async {
            let names = pool_names();
            (!strays.iter().any(|s| names.contains(s.as_str()))).then_some(())
        },
    )
    .await;
    assert!(pool_names().contains("test-foreign.qcow2"));
    assert!(pool_names().contains(stray_copy));
    assert_eq!(layer_volumes(&rig, first, &vm_id).len(), 1);
    let out = rig.virsh(
        first,
        &["vol-delete", "--pool", LAYER_POOL, "test-foreign.qcow2"],
    );
    assert!(out.status.success());

    wait_serial(&c.env, &vm_id, "BOOT-OK", BOOT_TIMEOUT).await;
    serial_run_on(
        &c.env,
        &rig.uri(first),
        &vm_id,
        "echo pvce-local-data > /root/f; sync; echo WROTE-$((40+2))",
        "WROTE-42",
    )
    .await;

    // Pinned: no live migration for a node-local layer.
    let migrate = format!("/api/vms/{vm_id}/migrate");
    assert_error(
        &c.admin
            .post(&migrate, json!({"node_id": c.nodes[other - 1]}))
            .await,
        StatusCode::CONFLICT,
        "layer_node_local",
    );
    // A node running a VM cannot be removed.
    let remove_first = format!("/api/nodes/{}", c.nodes[first - 1]);
    assert_error(
        &c.admin.delete(&remove_first).await,
        StatusCode::CONFLICT,
        "node_busy",
    );
    // Backed up while it runs: the node copies the disk at one instant into
    // a scratch volume of its own pool, which pvce reads back through
    // libvirt and deletes (a killed run's stray copy goes too).
    let backups = c.env.server.state.backups.clone();
    let t = time::OffsetDateTime::now_utc().unix_timestamp() + 30 * 86_400;
    let run = backups
        .run(t, pvce::backup::Trigger::Scheduled, None)
        .await
        .unwrap();
    assert!(run.ok && run.backed_up >= 2 && run.skipped == 0, "{run:?}");
    assert!(
        !pool_names().contains("pvce-disk-copy-"),
        "no disk copy stays on the node: {}",
        pool_names()
    );
    assert_eq!(layer_volumes(&rig, first, &vm_id).len(), 1);
    let backup_file = |point: String| {
        let student = &c.students[0];
        let vm_id = vm_id.clone();
        async move {
            let (status, _, bytes) = common::get_bytes(
                student,
                &format!("/api/vms/{vm_id}/backups/{point}/files?path=/root/f"),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            bytes
        }
    };
    let points = |n: usize| {
        let student = &c.students[0];
        let vm_id = vm_id.clone();
        async move {
            let (_, points) = student.get(&format!("/api/vms/{vm_id}/backups")).await;
            assert_eq!(points.as_array().map(Vec::len), Some(n), "{points}");
            points[0]["id"].as_str().unwrap().to_owned()
        }
    };
    let point = points(1).await;
    assert_eq!(backup_file(point.clone()).await, b"pvce-local-data\n");
    let source = |n: usize| {
        let student = &c.students[0];
        let vm_id = vm_id.clone();
        async move {
            let (_, points) = student.get(&format!("/api/vms/{vm_id}/backups")).await;
            assert_eq!(points.as_array().map(Vec::len), Some(n), "{points}");
            (
                points[0]["source"].as_str().unwrap_or_default().to_owned(),
                points[0]["disk_read_bytes"].as_u64(),
            )
        }
    };
    let (how, whole) = source(1).await;
    assert_eq!(how, "running_whole");
    // A change after the copy is not in it, and is in the next point: still
    // running, that one reads only the changes on the node (a checkpoint of
    // this run of the domain), downloaded and folded into the server's base.
    serial_run_on(
        &c.env,
        &rig.uri(first),
        &vm_id,
        "echo pvce-local-later > /root/f; sync; echo WROTE-$((40+3))",
        "WROTE-43",
    )
    .await;
    let run = backups
        .run(t + 86_400, pvce::backup::Trigger::Scheduled, None)
        .await
        .unwrap();
    assert!(run.ok && run.backed_up >= 2 && run.skipped == 0, "{run:?}");
    let (how, changes) = source(2).await;
    assert_eq!(how, "running_changes");
    assert!(
        changes.unwrap() * 16 <= whole.unwrap(),
        "only the changes are read: {changes:?} of {whole:?} bytes"
    );
    assert!(
        !pool_names().contains("pvce-disk-copy-"),
        "no disk copy stays on the node: {}",
        pool_names()
    );
    assert_eq!(backup_file(points(2).await).await, b"pvce-local-later\n");
    c.poweroff(0).await;
    // Stopped: read from its node once more (it ran since), then not again
    // until it starts; one file of a point readable without restoring.
    let run = backups
        .run(t + 2 * 86_400, pvce::backup::Trigger::Scheduled, None)
        .await
        .unwrap();
    assert!(run.ok && run.backed_up >= 2 && run.skipped == 0, "{run:?}");
    assert_eq!(source(3).await.0, "layer_file");
    let run = backups
        .run(t + 3 * 86_400, pvce::backup::Trigger::Scheduled, None)
        .await
        .unwrap();
    assert!(run.ok && run.unchanged >= 1, "not started since: {run:?}");
    assert_eq!(backup_file(points(3).await).await, b"pvce-local-later\n");
    assert!(
        !crate::backups::layer_path(&c.env, &vm_id).await.exists(),
        "no working copy stays on the server"
    );

    // Nor one that keeps a stopped VM's disk: it would be lost with the node.
    assert_error(
        &c.admin.delete(&remove_first).await,
        StatusCode::CONFLICT,
        "node_holds_layers",
    );
    assert_eq!(
        c.admin.get(&remove_first).await.0,
        StatusCode::OK,
        "the node is still registered"
    );

    // Moving is for admins, and for stopped VMs.
    let mv = format!("/api/vms/{vm_id}/move");
    assert_error(
        &c.students[0]
            .post(&mv, json!({"node_id": c.nodes[other - 1]}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &c.admin
            .post(
                &mv,
                json!({"node_id": "7e57a000-0000-4000-8000-000000000000"}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_node",
    );
    // The home node in maintenance: the VM cannot start anywhere.
    let maint_path = format!("/api/nodes/{}/maintenance", c.nodes[first - 1]);
    let maint = |on: bool| c.admin.post(&maint_path, json!({"enabled": on}));
    assert_eq!(maint(true).await.0, StatusCode::OK);
    assert_error(
        &c.students[0]
            .post_empty(&format!("/api/vms/{vm_id}/start"))
            .await,
        StatusCode::CONFLICT,
        "layer_node_maintenance",
    );
    assert_eq!(maint(false).await.0, StatusCode::OK);

    let (status, moved) = c
        .admin
        .post(&mv, json!({"node_id": c.nodes[other - 1]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(
        moved["layer_node_id"],
        c.nodes[other - 1].as_str(),
        "{moved}"
    );
    assert!(layer_volumes(&rig, first, &vm_id).is_empty());
    assert_eq!(layer_volumes(&rig, other, &vm_id).len(), 1);

    // A snapshot of a node-local layer is taken on a working copy and sent
    // back as a new volume; the old one goes.
    let before = layer_volumes(&rig, other, &vm_id);
    let (status, snap) = c.students[0]
        .post(
            &format!("/api/vms/{vm_id}/snapshots"),
            json!({"name": "test-moved"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{snap}");
    let after = layer_volumes(&rig, other, &vm_id);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before);
    // Disk usage reads the guest's file system from a working copy.
    let (status, disk) = c.students[0].get(&format!("/api/vms/{vm_id}/disk")).await;
    assert_eq!(status, StatusCode::OK, "{disk}");
    assert!(disk["fs_size_bytes"].as_u64().unwrap_or(0) > 0, "{disk}");
    assert!(disk["overlay_bytes"].as_u64().unwrap_or(0) > 0, "{disk}");

    // Started again, it runs on its new home with the student's file.
    let vm = c.start(0).await;
    assert_eq!(c.index(&vm["node_id"]), other);
    serial_run_on(
        &c.env,
        &rig.uri(other),
        &vm_id,
        "echo DATA-$(cat /root/f)-END",
        "DATA-pvce-local-later-END",
    )
    .await;
    c.poweroff(0).await;

    // A reset discards the layer on its node; the next start places afresh.
    let (status, reset) = c.students[0]
        .post_empty(&format!("/api/vms/{vm_id}/reset"))
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert!(reset["layer_node_id"].is_null(), "{reset}");
    assert!(layer_volumes(&rig, other, &vm_id).is_empty());

    let vm = c.start(0).await;
    let home = c.index(&vm["layer_node_id"]);
    assert_eq!(layer_volumes(&rig, home, &vm_id).len(), 1);
    c.poweroff(0).await;

    // The point copied while the VM ran restores the student's file as it
    // was then onto the fresh layer, on its node.
    let (status, restored) = c.students[0]
        .post(
            &format!("/api/vms/{vm_id}/restore"),
            json!({ "backup_id": point }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    let vm = c.start(0).await;
    assert_eq!(c.index(&vm["node_id"]), home, "{vm}");
    wait_serial(&c.env, &vm_id, "BOOT-OK", BOOT_TIMEOUT).await;
    serial_run_on(
        &c.env,
        &rig.uri(home),
        &vm_id,
        "echo BACK-$(cat /root/f)-END",
        "BACK-pvce-local-data-END",
    )
    .await;
    c.poweroff(0).await;

    // Its home node dies: the disk is out of reach, so the VM does not start
    // anywhere else and the course cannot be deleted (its layer would stay
    // behind); both work again once the node is back.
    rig.kill(home);
    wait_node_state(
        &c.admin,
        &c.nodes[home - 1],
        "down",
        Duration::from_secs(30),
    )
    .await;
    assert_error(
        &c.students[0]
            .post_empty(&format!("/api/vms/{vm_id}/start"))
            .await,
        StatusCode::CONFLICT,
        "layer_node_down",
    );
    let course = vm["course_id"].as_str().unwrap();
    assert_error(
        &c.admin.delete(&format!("/api/courses/{course}")).await,
        StatusCode::CONFLICT,
        "layer_node_down",
    );
    rig.start(home);
    wait_node_state(&c.admin, &c.nodes[home - 1], "up", Duration::from_secs(30)).await;
    assert_eq!(
        layer_volumes(&rig, home, &vm_id).len(),
        1,
        "the node's disk kept the layer"
    );

    // Deleting the course removes a node-local layer through its node.
    let (status, body) = c.admin.delete(&format!("/api/courses/{course}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(layer_volumes(&rig, home, &vm_id).is_empty());

    // With no VM and no disk left on it, the node can be removed.
    let remove = format!("/api/nodes/{}", c.nodes[home - 1]);
    let (status, body) = c.admin.delete(&remove).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_error(
        &c.admin.get(&remove).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

/// Live migration killed at its riskiest point (issue 17, chaos): the
/// domain already runs on the target while the database still names the
/// source. The real binary dies there by SIGKILL (`PVCE_CRASH_AT`); once
/// restarted it finds the VM where it runs — one domain, on the target —,
/// `pvce fsck` finds nothing, and the VM migrates back.
#[tokio::test]
async fn a_server_killed_mid_migration_finds_the_vm_where_it_runs() {
    use crate::common::process::{ServerProcess, assert_fsck_clean, base_args};
    use std::os::unix::process::ExitStatusExt;
    let rig = Rig::up(3).await;
    let c = cluster(&rig, 1).await;
    let v = c.start(0).await;
    let a = c.index(&v["node_id"]);
    let b = if a == 1 { 2 } else { 1 };
    let vm = c.vms[0].clone();
    wait_serial(&c.env, &vm, "BOOT-OK", Duration::from_secs(120)).await;

    // The binary takes over the installation (same data dir and settings).
    c.env.server.abort();
    let pool = c.env.server.state.config.template_pool.clone().unwrap();
    let mut args = base_args(&c.env.data_dir(), &pool);
    args.extend(["--allow-tcp-nodes", "--disk-cache", "none"].map(String::from));
    let log = |n: usize| {
        let f = std::fs::File::create(c.env.dir.path().join(format!("server-{n}.log"))).unwrap();
        (
            std::process::Stdio::from(f.try_clone().unwrap()),
            std::process::Stdio::from(f),
        )
    };
    let (out, err) = log(1);
    let mut server = ServerProcess::start(
        &args,
        out,
        err,
        &[(pvce::crashpoint::ENV, "migrate.domain_moved")],
    )
    .await;
    let admin = c.admin.clone_for(&server.url);
    let target = c.nodes[b - 1].clone();
    let _ = admin
        .try_post(
            &format!("/api/vms/{vm}/migrate"),
            json!({ "node_id": target }),
        )
        .await;
    let child = &mut server.child;
    let status = wait_for(
        "the server to die mid-migration",
        Duration::from_secs(120),
        || {
            let s = child.try_wait().unwrap();
            async move { s }
        },
    )
    .await;
    assert_eq!(status.signal(), Some(9), "ended with {status}, not SIGKILL");
    // Where the domain is now: the target only.
    assert_eq!(rig.domstate(b, &domain(&vm)), "running");
    assert_ne!(rig.domstate(a, &domain(&vm)), "running");

    let (out, err) = log(2);
    let server = ServerProcess::start(&args, out, err, &[]).await;
    let admin = c.admin.clone_for(&server.url);
    let v = wait_for(
        "the VM found on the target",
        Duration::from_secs(60),
        || async {
            let (_, v) = admin.get(&format!("/api/vms/{vm}")).await;
            (v["state"] == "running" && v["node_id"] == target.as_str()).then_some(v)
        },
    )
    .await;
    assert_eq!(c.index(&v["node_id"]), b, "{v}");
    assert_fsck_clean(&args, "a migration killed after the domain moved");
    // Still one domain, and the VM moves back on request.
    let (s, v) = admin
        .post(
            &format!("/api/vms/{vm}/migrate"),
            json!({ "node_id": c.nodes[a - 1] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(rig.domstate(a, &domain(&vm)), "running");
    assert_ne!(rig.domstate(b, &domain(&vm)), "running");
    let (s, _) = admin.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK);
}
