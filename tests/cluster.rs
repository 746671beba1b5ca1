//! Several real nodes on one machine (`scripts/multinode.sh`): stock libvirtd
//! instances in their own namespaces, reached over TCP like remote hosts.
//! Tests here run one at a time (the rig is machine-wide and locked).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::multinode::{self, Rig};
use common::{TestEnv, wait_for};
use pvce::auth::Role;

#[tokio::test]
async fn three_nodes_register_and_come_up() {
    let rig = tokio::task::spawn_blocking(|| Rig::up(3)).await.unwrap();
    let env = TestEnv::start().await;
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
    }
    // Each node is its own libvirtd: distinct host UUIDs and hostnames.
    let hostnames: std::collections::HashSet<String> = (1..=3)
        .map(|i| {
            String::from_utf8_lossy(&rig.virsh(i, &["hostname"]).stdout)
                .trim()
                .to_owned()
        })
        .collect();
    assert_eq!(hostnames.len(), 3, "{hostnames:?}");
    // The host's own libvirtd is not one of them and still answers.
    wait_for("host libvirtd", Duration::from_secs(5), || async {
        std::process::Command::new("virsh")
            .args(["-q", "-c", "qemu:///system", "version"])
            .output()
            .unwrap()
            .status
            .success()
            .then_some(())
    })
    .await;
}
