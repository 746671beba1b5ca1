//! Node load history against the real local libvirtd: the sampler reads host
//! CPU and memory through libvirt, the API serves bounded history, `/metrics`
//! exports the latest figures.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{TestEnv, assert_error, wait_for};
use pvce::auth::Role;
use reqwest::StatusCode;

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

    let text = reqwest::get(env.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("pvce_node_cpu_percent{node=\"local\"} "),
        "{text}"
    );
    assert!(
        text.contains("pvce_node_maintenance{node=\"local\"} 0"),
        "{text}"
    );
}
