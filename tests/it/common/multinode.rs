//! The multi-node rig from tests: N stock libvirtd "nodes" on this machine,
//! each in its own namespaces (see `scripts/multinode.sh` for how and why).
//!
//! One rig exists per machine at a time: [`Rig::up`] takes an exclusive lock
//! (shared by every test process) for the rig's lifetime, and dropping the
//! [`Rig`] tears everything down — nodes, their QEMUs, network, cgroups —
//! even when the test failed.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Client, gate, wait_for};

const LOCK: &str = "/run/pvce-test-rig.lock";

pub struct Rig {
    pub n: usize,
    _lock: std::fs::File,
    /// One rig test at a time, beside other tests (the rig's heavy slot,
    /// see [`gate`]).
    _pass: std::sync::Arc<gate::Pass>,
}

fn script() -> PathBuf {
    super::repo_root().join("scripts/multinode.sh")
}

fn run(args: &[&str]) -> Output {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "multinode.sh {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Rig {
    /// Starts nodes 1..=n (cleaning up leftovers of aborted runs first) and
    /// returns once every node's libvirtd answers a real call. The test
    /// holds the rig's heavy slot from here on (see `gate`; one that must run
    /// alone takes `gate::alone()` first); call it before starting the
    /// test's server.
    pub async fn up(n: usize) -> Rig {
        let pass = gate::heavy(&[gate::Heavy::Rig]).await;
        let lock = tokio::task::spawn_blocking(move || {
            let lock = std::fs::File::create(LOCK).unwrap();
            lock.lock().unwrap();
            run(&["up", &n.to_string()]);
            lock
        })
        .await
        .unwrap();
        Rig {
            n,
            _lock: lock,
            _pass: pass,
        }
    }

    pub fn addr(&self, i: usize) -> String {
        format!("10.77.{i}.2")
    }

    pub fn uri(&self, i: usize) -> String {
        format!("qemu+tcp://{}/system", self.addr(i))
    }

    /// SIGKILLs node i's libvirtd, virtlogd and QEMUs (a crashed host).
    pub fn kill(&self, i: usize) {
        run(&["kill", &i.to_string()]);
    }

    /// Starts node i again after [`Rig::kill`] and waits until it answers.
    pub fn start(&self, i: usize) {
        run(&["start", &i.to_string()]);
    }

    /// Freezes every process of node i (TCP still accepted, libvirt silent).
    pub fn freeze(&self, i: usize) {
        run(&["freeze", &i.to_string()]);
    }

    pub fn thaw(&self, i: usize) {
        run(&["thaw", &i.to_string()]);
    }

    /// Runs virsh against node i.
    pub fn virsh(&self, i: usize, args: &[&str]) -> Output {
        Command::new("virsh")
            .args(["-q", "-c", &self.uri(i)])
            .args(args)
            .output()
            .unwrap()
    }

    /// The state of a domain on node i as virsh reports it ("" if absent).
    pub fn domstate(&self, i: usize, domain: &str) -> String {
        String::from_utf8_lossy(&self.virsh(i, &["domstate", domain]).stdout)
            .trim()
            .to_owned()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let out = Command::new("bash").arg(script()).arg("down").output();
        if let Ok(o) = out
            && !o.status.success()
        {
            eprintln!(
                "multinode.sh down failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

/// Registers the rig's nodes with the server through `POST /api/nodes`
/// (named `test-node<i>`), removes the `local` node so nothing is placed on
/// the host's libvirtd, and waits until every rig node shows `up`.
/// Returns the node ids, index 0 = node 1.
pub async fn register(admin: &Client, rig: &Rig) -> Vec<String> {
    let (_, nodes) = admin.get("/api/nodes").await;
    for n in nodes.as_array().unwrap() {
        if n["name"] == "local" {
            let (status, body) = admin
                .delete(&format!("/api/nodes/{}", n["id"].as_str().unwrap()))
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        }
    }
    let mut ids = Vec::new();
    for i in 1..=rig.n {
        let (status, node) = admin
            .post(
                "/api/nodes",
                json!({"name": format!("test-node{i}"), "uri": rig.uri(i), "console_address": rig.addr(i)}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{node}");
        ids.push(node["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        wait_node_state(admin, id, "up", Duration::from_secs(30)).await;
    }
    ids
}

/// Waits until `GET /api/nodes/{id}` shows `state`; returns the node.
pub async fn wait_node_state(admin: &Client, id: &str, state: &str, timeout: Duration) -> Value {
    wait_for(&format!("node {id} to be {state}"), timeout, || async {
        let (_, n) = admin.get(&format!("/api/nodes/{id}")).await;
        (n["state"] == state).then_some(n)
    })
    .await
}
