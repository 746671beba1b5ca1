//! Lab networks end to end on the real local libvirtd with the tiny guest: a
//! course with `lab_network` and two VM specs; alice's two VMs and one of
//! bob's run; static addresses through the serial console; alice's VMs ping
//! each other, bob's VM (same subnet) reaches neither; the host has no
//! address on the networks; the networks are isolated (no forward, no ip) and
//! disappear when the last VM of their student stops. On the three-node rig
//! (`scripts/multinode.sh`, with pvce's network hook): one student's VMs on
//! two nodes share their LAN over VXLAN, another student's, also split, never
//! see them, a VM live-migrates with its network, and the segments go with
//! the VMs.

use std::process::Command;
use std::time::Duration;

use crate::common::lab::import_tiny;
use crate::common::lab::{self as lab, spec};
use crate::common::multinode::{self, Rig};
use crate::common::{self, Client, TestEnv, serial_run, serial_run_on, wait_for, wait_serial};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

fn virsh(args: &[&str]) -> (bool, String) {
    let out = Command::new("virsh")
        .args(["-q", "-c", "qemu:///system"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn network_exists(name: &str) -> bool {
    virsh(&["net-info", name]).0
}

/// Runs `ping` in the guest and tells whether any reply came back: one
/// echo, which a reply ends at once; none within 3 s is no reply (the
/// guest's kernel holds the echo while it resolves the address, and a
/// reply over these networks takes milliseconds).
async fn guest_ping(env: &TestEnv, vm: &str, ip: &str, tag: u32) -> bool {
    guest_ping_on(env, "qemu:///system", vm, ip, tag).await
}

/// [`guest_ping`] for a guest on the node at `uri`.
async fn guest_ping_on(env: &TestEnv, uri: &str, vm: &str, ip: &str, tag: u32) -> bool {
    let log = env.console_log(vm);
    let from = tokio::fs::metadata(&log)
        .await
        .map_or(0, |m| m.len() as usize);
    serial_run_on(
        env,
        uri,
        vm,
        &format!(
            "ping -c 1 -W 3 {ip} >/dev/null 2>&1 && echo PONG-$(({tag}+1)) || echo NOPONG-$(({tag}+1)); echo PINGED-$(({tag}+1))"
        ),
        &format!("PINGED-{}", tag + 1),
    )
    .await;
    let text = tokio::fs::read(&log).await.unwrap();
    let text = String::from_utf8_lossy(&text[from.min(text.len())..]).into_owned();
    let pong = text.contains(&format!("\nPONG-{}", tag + 1));
    let nopong = text.contains(&format!("\nNOPONG-{}", tag + 1));
    assert!(pong != nopong, "unclear ping result: {text}");
    pong
}

async fn vm_of(client: &Client, course: &str, name: &str) -> String {
    let (s, vms) = client.get(&format!("/api/vms?course_id={course}")).await;
    assert_eq!(s, StatusCode::OK, "{vms}");
    vms.as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no VM {name}: {vms}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn students_lab_networks_are_private_and_go_away() {
    // Three guests boot at once and pings have deadlines: alone (see common::gate).
    let _alone = common::gate::alone().await;
    let env = TestEnv::start().await;
    env.user("test-teacher", Role::Teacher).await;
    let alice_user = env.user("test-alice", Role::Student).await;
    let bob_user = env.user("test-bob", Role::Student).await;
    let teacher = env.client("test-teacher").await;
    let tpl = import_tiny(&teacher, "test-tiny").await;
    let tpl_id = tpl["id"].as_str().unwrap();

    // Without the flag a course has no lab network; bad values are 400.
    let spec = json!({"name":"linux","template_id":tpl_id,"vcpus":1,"memory_mib":256});
    let (s, plain) = teacher
        .post(
            "/api/courses",
            json!({"code":"test-plain","name":"Plain","vm_specs":[spec]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{plain}");
    assert_eq!(plain["lab_network"], false);
    common::assert_error(
        &teacher
            .post(
                "/api/courses",
                json!({"code":"test-bad","name":"Bad","lab_network":"yes","vm_specs":[spec]}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    let (s, course) = teacher
        .post(
            "/api/courses",
            json!({"code":"test-net","name":"Networking","lab_network":true,"vm_specs":[
                {"name":"a","template_id":tpl_id,"vcpus":1,"memory_mib":256},
                {"name":"b","template_id":tpl_id,"vcpus":1,"memory_mib":256}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{course}");
    assert_eq!(course["lab_network"], true);
    let cid = course["id"].as_str().unwrap().to_owned();
    let (s, e) = teacher
        .post(
            &format!("/api/courses/{cid}/students"),
            json!({"usernames":["test-alice","test-bob"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");

    let compact = |v: &Value| v["id"].as_str().unwrap().replace('-', "");
    let cid_c = cid.replace('-', "");
    let alice_net = format!("test-pvce-lab-{cid_c}-{}", compact(&alice_user));
    let bob_net = format!("test-pvce-lab-{cid_c}-{}", compact(&bob_user));
    // (TestEnv's Drop removes them should the test fail half-way.)

    let alice = env.client("test-alice").await;
    let bob = env.client("test-bob").await;
    let (s, cs) = alice.get("/api/courses").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        cs.as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == cid.as_str() && c["lab_network"] == true),
        "{cs}"
    );
    let a1 = vm_of(&alice, &cid, "a").await;
    let a2 = vm_of(&alice, &cid, "b").await;
    let b1 = vm_of(&bob, &cid, "a").await;
    for vm in [&a1, &a2, &b1] {
        env.track_vm(vm);
    }
    assert!(!network_exists(&alice_net));

    // Start all three at once: alice's two starts race for her network.
    let starts = futures::future::join3(
        alice.post_empty(&format!("/api/vms/{a1}/start")),
        alice.post_empty(&format!("/api/vms/{a2}/start")),
        bob.post_empty(&format!("/api/vms/{b1}/start")),
    )
    .await;
    for (s, v) in [starts.0, starts.1, starts.2] {
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["state"], "running", "{v}");
    }

    // Each student has one isolated network: no forward, no ip, no dnsmasq.
    for net in [&alice_net, &bob_net] {
        let (ok, xml) = virsh(&["net-dumpxml", net]);
        assert!(ok, "{net} missing");
        assert!(xml.contains("<bridge name='pvl"), "{xml}");
        for absent in ["<forward", "<ip", "<dns", "<domain"] {
            assert!(!xml.contains(absent), "{absent} in {xml}");
        }
    }
    let bridge = |net: &str| {
        let (ok, out) = virsh(&["net-info", net]);
        assert!(ok);
        out.lines()
            .find_map(|l| l.strip_prefix("Bridge:"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (alice_br, bob_br) = (bridge(&alice_net), bridge(&bob_net));
    assert_ne!(alice_br, bob_br);
    assert!(alice_br.len() <= 15, "{alice_br}");
    // The VMs' NICs sit on their owner's network.
    for (vm, net) in [(&a1, &alice_net), (&a2, &alice_net), (&b1, &bob_net)] {
        let (ok, ifs) = virsh(&["domiflist", &format!("test-pvce-{vm}")]);
        assert!(ok);
        assert!(
            ifs.contains(net.as_str()) && ifs.contains("virtio"),
            "{ifs}"
        );
    }

    for vm in [&a1, &a2, &b1] {
        wait_serial(&env, vm, "BOOT-OK", BOOT_TIMEOUT).await;
    }
    // The host has no address on either network (nothing to reach, no DHCP).
    for br in [&alice_br, &bob_br] {
        let out = Command::new("ip")
            .args(["-o", "addr", "show", "dev", br])
            .output()
            .unwrap();
        assert!(out.status.success(), "no bridge {br}");
        let addrs = String::from_utf8_lossy(&out.stdout);
        assert!(addrs.trim().is_empty(), "host address on {br}: {addrs}");
    }

    // Same subnet for everybody: only the network separates them.
    for (vm, ip, tag) in [
        (&a1, "10.77.0.1", 100),
        (&a2, "10.77.0.2", 200),
        (&b1, "10.77.0.3", 300),
    ] {
        serial_run(
            &env,
            vm,
            &format!("ifconfig eth0 {ip} netmask 255.255.255.0 up && echo IP-SET-$(({tag}+1))"),
            &format!("IP-SET-{}", tag + 1),
        )
        .await;
    }
    assert!(
        guest_ping(&env, &a1, "10.77.0.2", 400).await,
        "a1 cannot reach a2"
    );
    assert!(
        guest_ping(&env, &a2, "10.77.0.1", 410).await,
        "a2 cannot reach a1"
    );
    assert!(
        !guest_ping(&env, &b1, "10.77.0.1", 420).await,
        "bob reached a1"
    );
    assert!(
        !guest_ping(&env, &b1, "10.77.0.2", 430).await,
        "bob reached a2"
    );
    assert!(
        !guest_ping(&env, &a1, "10.77.0.3", 440).await,
        "alice reached bob"
    );

    // Lifecycle: alice's network stays while one of her VMs runs, and goes
    // with the last one; bob's goes with his.
    let (s, v) = alice.post_empty(&format!("/api/vms/{a1}/poweroff")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(network_exists(&alice_net), "removed while a2 still runs");
    let (s, v) = alice.post_empty(&format!("/api/vms/{a2}/poweroff")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        !network_exists(&alice_net),
        "alice's network outlived her VMs"
    );
    // A guest-initiated shutdown: the reconcile loop notices and cleans up.
    serial_run(&env, &b1, "sync; echo GOING-$((3+4)); poweroff", "GOING-7").await;
    common::wait_vm_gone(&bob, &b1).await;
    // The network goes first, then its row (the row records a network that
    // may still exist), so wait for both.
    wait_for(
        "bob's network and its row to go",
        Duration::from_secs(30),
        || async {
            let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM lab_networks")
                .fetch_one(&env.server.state.pool)
                .await
                .unwrap();
            (!network_exists(&bob_net) && rows == 0).then_some(())
        },
    )
    .await;

    // Unenrol and delete work as usual and leave nothing behind.
    let bob_id = bob_user["id"].as_str().unwrap();
    let (s, _) = teacher
        .delete(&format!("/api/courses/{cid}/students/{bob_id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = teacher.delete(&format!("/api/courses/{cid}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(!network_exists(&alice_net) && !network_exists(&bob_net));
}

/// A lab network recorded on a node that was since removed from the
/// cluster can never be asked about again: the sweep forgets its row instead
/// of retrying (and failing) forever.
#[tokio::test]
async fn a_removed_nodes_lab_network_rows_are_forgotten() {
    let env = TestEnv::start().await;
    let pool = &env.server.state.pool;
    let gone = "7e57a000-0000-4000-8000-00000000dead";
    sqlx::query(
        "INSERT INTO lab_networks (course_id, owner_id, node_id, name, created_at)
         VALUES ('7e57a000-0000-4000-8000-000000000001', '7e57a000-0000-4000-8000-0000000000aa',
                 $1, 'test-pvce-lab-gone', '2026-01-01T00:00:00Z')",
    )
    .bind(gone)
    .execute(pool)
    .await
    .unwrap();
    wait_for(
        "the removed node's row to be forgotten",
        Duration::from_secs(30),
        || async {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM lab_networks")
                .fetch_one(pool)
                .await
                .unwrap();
            (n == 0).then_some(())
        },
    )
    .await;
}

/// VXLAN devices (names) in rig node i's network namespace.
fn vxlan_devices(i: usize) -> Vec<String> {
    let out = Command::new("ip")
        .args([
            "-n",
            &format!("pvce-test-node{i}"),
            "-o",
            "link",
            "show",
            "type",
            "vxlan",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

/// The active networks on rig node i.
fn rig_networks(rig: &Rig, i: usize) -> Vec<String> {
    let out = rig.virsh(i, &["net-list", "--name"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn maintenance(admin: &Client, node: &str, on: bool) {
    let (s, n) = admin
        .post(
            &format!("/api/nodes/{node}/maintenance"),
            json!({ "enabled": on }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{n}");
}

/// The VNI recorded for a student's network on each node it runs on.
async fn vnis_of(env: &TestEnv, owner: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT vni FROM lab_networks WHERE owner_id = $1 ORDER BY node_id")
        .bind(owner)
        .fetch_all(&env.server.state.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_students_lab_network_spans_nodes_and_stays_private() {
    // Four guests boot at once and pings have deadlines: alone (see common::gate).
    let _alone = crate::common::gate::alone().await;
    let rig = Rig::up(3).await;
    let env = TestEnv::start_with(|c| {
        c.allow_tcp_nodes = true;
        // Live migration on shared storage needs cache=none (README).
        c.disk_cache = pvce::libvirt::DiskCache::None;
    })
    .await;
    env.user("test-admin", Role::Admin).await;
    env.user("test-teacher", Role::Teacher).await;
    let alice_user = env.user("test-alice", Role::Student).await;
    let bob_user = env.user("test-bob", Role::Student).await;
    let admin = env.client("test-admin").await;
    let teacher = env.client("test-teacher").await;
    let nodes = multinode::register(&admin, &rig).await;

    // The rig's nodes have the hook: declare their VTEP addresses. A bad
    // address is refused; a node without one would keep the old pin.
    let (s, n) = admin.get(&format!("/api/nodes/{}", nodes[0])).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(n["vtep_address"], Value::Null, "{n}");
    // (A missing field is refused too: only an explicit null withdraws.)
    let bad_bodies = ["239.1.2.3", "10.77.1", "::1", "127.0.0.1"]
        .map(|a| json!({ "vtep_address": a }))
        .into_iter()
        .chain([json!({})]);
    for body in bad_bodies {
        common::assert_error(
            &admin
                .post(&format!("/api/nodes/{}/overlay", nodes[0]), body)
                .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    }
    let (s, n) = admin
        .post(
            &format!("/api/nodes/{}/overlay", nodes[0]),
            json!({ "vtep_address": null }),
        )
        .await;
    assert_eq!(
        (s, &n["vtep_address"]),
        (StatusCode::OK, &Value::Null),
        "{n}"
    );
    for (i, id) in nodes.iter().enumerate() {
        let (s, n) = admin
            .post(
                &format!("/api/nodes/{id}/overlay"),
                json!({ "vtep_address": rig.addr(i + 1) }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{n}");
        assert_eq!(n["vtep_address"], rig.addr(i + 1).as_str());
    }

    let tpl = import_tiny(&teacher, "test-tiny").await;
    let course = lab::course(
        &teacher,
        json!({"code": "test-vxlan", "name": "Overlay", "lab_network": true,
               "vm_specs": [spec("a", &tpl, 256), spec("b", &tpl, 256)]}),
        &["test-alice", "test-bob"],
    )
    .await;
    let alice = env.client("test-alice").await;
    let bob = env.client("test-bob").await;
    let a1 = lab::vm_of(&env, &alice, &course, "a").await;
    let a2 = lab::vm_of(&env, &alice, &course, "b").await;
    let b1 = lab::vm_of(&env, &bob, &course, "a").await;
    let b2 = lab::vm_of(&env, &bob, &course, "b").await;

    // Each student's first VM on node 1, second on node 2: the only way
    // the pin (one node per student network) could be broken.
    let start_on = |client: &Client, vm: &str, node: &str| {
        let (client, vm, node) = (client.clone(), vm.to_owned(), node.to_owned());
        async move {
            let (s, v) = client.post_empty(&format!("/api/vms/{vm}/start")).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            assert_eq!(v["state"], "running", "{v}");
            assert_eq!(v["node_id"], node.as_str(), "{v}");
        }
    };
    maintenance(&admin, &nodes[1], true).await;
    maintenance(&admin, &nodes[2], true).await;
    start_on(&alice, &a1, &nodes[0]).await;
    start_on(&bob, &b1, &nodes[0]).await;
    maintenance(&admin, &nodes[1], false).await;
    maintenance(&admin, &nodes[0], true).await;
    start_on(&alice, &a2, &nodes[1]).await;
    start_on(&bob, &b2, &nodes[1]).await;
    maintenance(&admin, &nodes[0], false).await;

    // One VNI per student, the same on both nodes; a VXLAN device per
    // network on each node, and the networks' MTU leaves room for it.
    let (alice_id, bob_id) = (
        alice_user["id"].as_str().unwrap(),
        bob_user["id"].as_str().unwrap(),
    );
    let (va, vb) = (vnis_of(&env, alice_id).await, vnis_of(&env, bob_id).await);
    assert!(va.len() == 2 && va[0] == va[1], "{va:?}");
    assert!(vb.len() == 2 && vb[0] == vb[1], "{vb:?}");
    assert_ne!(va[0], vb[0]);
    for i in [1, 2] {
        let mut devs = vxlan_devices(i);
        devs.sort();
        let mut want = vec![format!("vxlan{}", va[0]), format!("vxlan{}", vb[0])];
        want.sort();
        assert_eq!(devs, want, "node {i}");
        for net in rig_networks(&rig, i) {
            let out = rig.virsh(i, &["net-dumpxml", &net]);
            let xml = String::from_utf8_lossy(&out.stdout);
            assert!(xml.contains("<mtu size='1450'/>"), "{xml}");
            for absent in ["<forward", "<ip"] {
                assert!(!xml.contains(absent), "{absent} in {xml}");
            }
        }
    }
    assert!(vxlan_devices(3).is_empty());

    let uri = |vm: &str| {
        if vm == a1 || vm == b1 {
            rig.uri(1)
        } else {
            rig.uri(2)
        }
    };
    let guests = [
        (&a1, "192.168.77.1", 100),
        (&a2, "192.168.77.2", 200),
        (&b1, "192.168.77.3", 300),
        (&b2, "192.168.77.4", 400),
    ];
    for (vm, _, _) in guests {
        wait_serial(&env, vm, "BOOT-OK", BOOT_TIMEOUT).await;
    }
    for (vm, ip, tag) in guests {
        serial_run_on(
            &env,
            &uri(vm),
            vm,
            &format!("ifconfig eth0 {ip} netmask 255.255.255.0 up && echo IP-SET-$(({tag}+1))"),
            &format!("IP-SET-{}", tag + 1),
        )
        .await;
    }
    // The guests are told the network's MTU (virtio host_mtu), so their
    // full-size frames fit through the segment.
    for (vm, _, tag) in guests {
        let tag = tag + 50;
        serial_run_on(
            &env,
            &uri(vm),
            vm,
            &format!("echo MTU=$(cat /sys/class/net/eth0/mtu) MTU-DONE-$(({tag}+1))"),
            &format!("MTU-DONE-{}", tag + 1),
        )
        .await;
        let log = tokio::fs::read_to_string(env.console_log(vm))
            .await
            .unwrap();
        assert!(
            log.contains(&format!("MTU=1450 MTU-DONE-{}", tag + 1)),
            "{vm}: {}",
            &log[log.len().saturating_sub(400)..]
        );
    }
    // Across nodes, each student reaches their own other VM ...
    for (vm, ip, tag, what) in [
        (
            &a1,
            "192.168.77.2",
            500,
            "a1 cannot reach a2 on the other node",
        ),
        (
            &a2,
            "192.168.77.1",
            510,
            "a2 cannot reach a1 on the other node",
        ),
        (
            &b1,
            "192.168.77.4",
            520,
            "b1 cannot reach b2 on the other node",
        ),
    ] {
        assert!(guest_ping_on(&env, &uri(vm), vm, ip, tag).await, "{what}");
    }
    // ... and never the other student's, on either node, either way.
    for (vm, ip, tag) in [
        (&b1, "192.168.77.1", 530),
        (&b1, "192.168.77.2", 540),
        (&b2, "192.168.77.1", 550),
        (&a1, "192.168.77.4", 560),
        (&a2, "192.168.77.3", 570),
    ] {
        assert!(
            !guest_ping_on(&env, &uri(vm), vm, ip, tag).await,
            "{vm} reached {ip}"
        );
    }

    // With the overlay a lab VM live-migrates too: a2 moves to node 3; its
    // network is made there first and leaves node 2 (bob's stays), and a1
    // still reaches it.
    let (vxa, vxb) = (format!("vxlan{}", va[0]), format!("vxlan{}", vb[0]));
    maintenance(&admin, &nodes[2], false).await;
    let (s, v) = admin
        .post(
            &format!("/api/vms/{a2}/migrate"),
            json!({ "node_id": nodes[2] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["node_id"], nodes[2].as_str(), "{v}");
    assert_eq!(vxlan_devices(2), vec![vxb.clone()]);
    assert_eq!(vxlan_devices(3), vec![vxa.clone()]);
    assert!(
        guest_ping_on(&env, &rig.uri(1), &a1, "192.168.77.2", 580).await,
        "a1 cannot reach a2 after its migration"
    );

    // Per node, a network and its segment go with the student's last VM
    // there; the VNI goes with the last network.
    let (s, v) = alice.post_empty(&format!("/api/vms/{a1}/poweroff")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(vxlan_devices(1), vec![vxb.clone()]);
    assert_eq!(vxlan_devices(2), vec![vxb]);
    assert_eq!(vxlan_devices(3), vec![vxa]);
    for (client, vm) in [(&alice, &a2), (&bob, &b1), (&bob, &b2)] {
        let (s, v) = client.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    for i in 1..=3 {
        assert!(
            vxlan_devices(i).is_empty(),
            "node {i}: {:?}",
            vxlan_devices(i)
        );
        assert!(
            rig_networks(&rig, i).is_empty(),
            "node {i}: {:?}",
            rig_networks(&rig, i)
        );
    }
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM lab_vnis")
        .fetch_one(&env.server.state.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);

    // A node whose hook cannot make the segment (here: a VTEP address the
    // node does not have) fails the start with the hook's words, and
    // leaves no network, row or VNI behind: never a split LAN.
    let (s, n) = admin
        .post(
            &format!("/api/nodes/{}/overlay", nodes[2]),
            json!({ "vtep_address": "10.77.99.3" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{n}");
    maintenance(&admin, &nodes[0], true).await;
    maintenance(&admin, &nodes[1], true).await;
    maintenance(&admin, &nodes[2], false).await;
    let (s, v) = alice.post_empty(&format!("/api/vms/{a1}/start")).await;
    assert!(s.is_server_error() || s.is_client_error(), "{s} {v}");
    let (_, v) = admin.get(&format!("/api/vms/{a1}")).await;
    assert_eq!(v["state"], "stopped", "{v}");
    assert!(
        v["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no interface has the VTEP address 10.77.99.3")),
        "{v}"
    );
    assert!(rig_networks(&rig, 3).is_empty() && vxlan_devices(3).is_empty());
    let rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM lab_networks) + (SELECT COUNT(*) FROM lab_vnis)",
    )
    .fetch_one(&env.server.state.pool)
    .await
    .unwrap();
    assert_eq!(rows, 0);
}
