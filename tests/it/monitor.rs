//! Load history against the real local libvirtd: the sampler reads host CPU
//! and memory, and a running VM's CPU and memory, through libvirt; the API
//! serves bounded history, `/metrics` exports the latest figures.

use std::time::Duration;

use crate::common::lab::{course, import_tiny};
use crate::common::{self, TestEnv, assert_error, wait_for};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn node_load_is_sampled_into_history() {
    let env = TestEnv::start_with(|c| c.sample_interval_secs = 1).await;
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    let (_, nodes) = admin.get("/api/nodes").await;
    let local = nodes[0]["id"].as_str().unwrap().to_owned();

    // CPU % needs two readings; wait until one sample carries it.
    let samples = wait_for(
        "a sample with a CPU figure",
        Duration::from_secs(30),
        || {
            let admin = &admin;
            let local = &local;
            async move {
                let (status, body) = admin
                    .get(&format!("/api/nodes/{local}/metrics?minutes=5"))
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let samples = body["samples"].as_array().unwrap().clone();
                samples
                    .iter()
                    .any(|s| s["cpu_percent"].is_number())
                    .then_some(samples)
            }
        },
    )
    .await;
    for s in &samples {
        let total = s["mem_total_mib"].as_u64().unwrap();
        let used = s["mem_used_mib"].as_u64().unwrap();
        assert!(total > 0 && used <= total, "{s}");
        if let Some(cpu) = s["cpu_percent"].as_f64() {
            assert!((0.0..=100.0).contains(&cpu), "{s}");
        }
        assert!(s["at"].as_str().unwrap().ends_with('Z'), "{s}");
    }

    // The node view and the cluster history carry the same figures.
    let (_, node) = admin.get(&format!("/api/nodes/{local}")).await;
    assert!(node["cpu_percent"].is_number(), "{node}");
    let (status, cluster) = admin.get("/api/nodes/metrics?minutes=10080").await;
    assert_eq!(status, StatusCode::OK, "{cluster}");
    let entry = &cluster["nodes"][0];
    assert_eq!(entry["node_id"], local);
    assert_eq!(entry["interval_seconds"], 1680, "7 days in ≤360 points");

    // Ranges are checked at the boundary.
    for bad in [
        "minutes=0",
        "minutes=10081",
        "minutes=abc",
        "minutes=-1",
        "range=5",
    ] {
        let got = admin
            .get(&format!("/api/nodes/{local}/metrics?{bad}"))
            .await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    }
    let got = admin
        .get("/api/nodes/00000000-0000-0000-0000-000000000000/metrics")
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found");

    let text = common::metrics_text(&env).await;
    assert!(
        text.contains("pvce_node_cpu_percent{node=\"local\"} "),
        "{text}"
    );
    assert!(
        text.contains("pvce_node_maintenance{node=\"local\"} 0"),
        "{text}"
    );
}

/// The configured memory of the test VM.
const VM_MIB: u64 = 192;

#[tokio::test]
async fn a_running_vm_is_sampled_into_its_own_history() {
    let env = TestEnv::start_with(|c| c.sample_interval_secs = 1).await;
    env.user("test-admin", Role::Admin).await;
    env.user("test-teacher", Role::Teacher).await;
    env.user("test-teacher2", Role::Teacher).await;
    env.user("test-alice", Role::Student).await;
    env.user("test-bob", Role::Student).await;
    let admin = env.client("test-admin").await;
    let teacher = env.client("test-teacher").await;
    let teacher2 = env.client("test-teacher2").await;
    let alice = env.client("test-alice").await;
    let bob = env.client("test-bob").await;

    let tpl = import_tiny(&teacher, "test-tiny").await;
    course(
        &teacher,
        json!({"code":"test-mon","name":"Monitoring","vm_specs":[
                {"name":"linux","template_id":tpl["id"],"vcpus":1,"memory_mib":VM_MIB}]}),
        &["test-alice", "test-bob"],
    )
    .await;
    let (_, vms) = alice.get("/api/vms").await;
    let vm_id = vms[0]["id"].as_str().unwrap().to_owned();
    env.track_vm(&vm_id);
    // Stopped: no figures.
    assert!(vms[0]["mem_mib"].is_null(), "{vms}");
    assert!(vms[0]["cpu_percent"].is_null(), "{vms}");
    let (status, vm) = alice.post_empty(&format!("/api/vms/{vm_id}/start")).await;
    assert_eq!(status, StatusCode::OK, "{vm}");

    // CPU % needs two readings of the domain; wait for a sample with one.
    let history = format!("/api/vms/{vm_id}/history?minutes=5");
    let samples = wait_for(
        "a VM sample with a CPU figure",
        Duration::from_secs(60),
        || {
            let alice = &alice;
            let history = &history;
            async move {
                let (status, body) = alice.get(history).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                assert_eq!(body["interval_seconds"], 1, "{body}");
                let samples = body["samples"].as_array().unwrap().clone();
                samples
                    .iter()
                    .any(|s| s["cpu_percent"].is_number())
                    .then_some(samples)
            }
        },
    )
    .await;
    for s in &samples {
        // The guest has its configured memory (balloon at full size).
        let mem = s["mem_mib"].as_u64().unwrap();
        assert!(mem.abs_diff(VM_MIB) <= 8, "{s}");
        // Its QEMU holds some of it, and not wildly more.
        let rss = s["rss_mib"].as_u64().unwrap();
        assert!(rss > 0 && rss < VM_MIB + 1024, "{s}");
        if let Some(cpu) = s["cpu_percent"].as_f64() {
            assert!((0.0..=100.0).contains(&cpu), "{s}");
        }
        assert!(s["at"].as_str().unwrap().ends_with('Z'), "{s}");
    }

    // Who may see the VM may see its history; others get 404.
    for (who, client) in [("teacher", &teacher), ("admin", &admin)] {
        let (status, body) = client.get(&history).await;
        assert_eq!(status, StatusCode::OK, "{who}: {body}");
        assert!(!body["samples"].as_array().unwrap().is_empty(), "{who}");
    }
    for outsider in [&bob, &teacher2] {
        assert_error(
            &outsider.get(&history).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    assert_error(
        &admin
            .get("/api/vms/00000000-0000-0000-0000-000000000000/history")
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    for bad in ["minutes=0", "minutes=10081", "minutes=abc", "range=5"] {
        let got = alice.get(&format!("/api/vms/{vm_id}/history?{bad}")).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    }
    // A long range is answered from the rollups (plus the current minute).
    let (status, week) = admin
        .get(&format!("/api/vms/{vm_id}/history?minutes=10080"))
        .await;
    assert_eq!(status, StatusCode::OK, "{week}");
    assert_eq!(week["interval_seconds"], 1680);

    // The admin's VM list carries the latest figures.
    let (_, all) = admin.get("/api/vms").await;
    let row = all
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == vm_id.as_str())
        .unwrap()
        .clone();
    assert!(
        row["mem_mib"].as_u64().unwrap().abs_diff(VM_MIB) <= 8,
        "{row}"
    );
    assert!(row["cpu_percent"].is_number(), "{row}");

    // /metrics exports them per VM and node.
    let text = common::metrics_text(&env).await;
    let labels = format!("{{vm=\"{vm_id}\",node=\"local\"}}");
    assert!(
        text.contains(&format!("pvce_vm_cpu_percent{labels} ")),
        "{text}"
    );
    let bytes: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("pvce_vm_memory_bytes{labels} ")))
        .unwrap_or_else(|| panic!("{text}"))
        .parse()
        .unwrap();
    assert!((bytes >> 20).abs_diff(VM_MIB) <= 8, "{bytes}");

    // A stopped VM has no current figures, but keeps its history.
    let (status, vm) = alice
        .post_empty(&format!("/api/vms/{vm_id}/poweroff"))
        .await;
    assert_eq!(status, StatusCode::OK, "{vm}");
    common::wait_vm_gone(&alice, &vm_id).await;
    let (_, vm) = alice.get(&format!("/api/vms/{vm_id}")).await;
    assert!(
        vm["mem_mib"].is_null() && vm["cpu_percent"].is_null(),
        "{vm}"
    );
    let (_, body) = alice.get(&history).await;
    assert!(!body["samples"].as_array().unwrap().is_empty(), "{body}");
}
