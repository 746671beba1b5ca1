//! Snapshots of a personal VM, end to end on the real local libvirtd with the
//! tiny guest: snapshot → write a file in the guest (serial shell) → shut down
//! → revert → boot → the file is gone; running VM → 409; quota → 409; other
//! students → 404; the template layer is never written.

use std::time::Duration;

use crate::common::lab::course_with_student_vm;
use crate::common::{self, TestEnv, assert_error, serial_run, sha256_file, wait_serial};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

async fn wait_stopped(client: &common::Client, vm_id: &str) {
    common::wait_vm_gone(client, vm_id).await;
}

#[tokio::test]
async fn snapshot_write_revert_removes_the_file_and_never_touches_the_template() {
    let env = TestEnv::start().await;
    let lab = course_with_student_vm(&env, "test-snap").await;
    let (tpl_id, vm) = (lab.template_id(), lab.vm);
    let alice = env.client("test-alice").await;
    let bob = env.client("test-bob").await;
    let teacher = env.client("test-teacher").await;
    let template_layer = env
        .data_dir()
        .join("templates")
        .join(format!("{tpl_id}.qcow2"));
    let template_sum = sha256_file(&template_layer);
    let snaps = format!("/api/vms/{vm}/snapshots");

    // A snapshot of the fresh layer.
    let (s, clean) = alice.post(&snaps, json!({"name": "clean"})).await;
    assert_eq!(s, StatusCode::CREATED, "{clean}");
    assert_eq!(clean["name"], "clean");
    assert_eq!(clean["kind"], "internal");
    assert_eq!(clean["vm_id"], vm.as_str());
    let clean_id = clean["id"].as_str().unwrap().to_owned();
    // The user's name is only a label: the qcow2 tag is the snapshot's id.
    let out = std::process::Command::new("qemu-img")
        .args(["snapshot", "-f", "qcow2", "-l"])
        .arg(common::walk_find(&env.data_dir().join("overlays"), &format!("{vm}.qcow2")).unwrap())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(&clean_id), "{listing}");
    assert!(!listing.contains("clean "), "{listing}");

    // Outsiders see nothing; the course teacher sees the list.
    for path in [snaps.clone(), format!("{snaps}/{clean_id}")] {
        let (s, _) = bob.get(&path).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    assert_error(
        &bob.post(&snaps, json!({"name": "x"})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &bob.post_empty(&format!("{snaps}/{clean_id}/revert")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &bob.delete(&format!("{snaps}/{clean_id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (s, list) = teacher.get(&snaps).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Boot, then snapshots are refused while it runs.
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_serial(&env, &vm, "BOOT-OK", BOOT_TIMEOUT).await;
    assert_error(
        &alice.post(&snaps, json!({"name": "live"})).await,
        StatusCode::CONFLICT,
        "vm_running",
    );
    assert_error(
        &alice
            .post_empty(&format!("{snaps}/{clean_id}/revert"))
            .await,
        StatusCode::CONFLICT,
        "vm_running",
    );
    assert_error(
        &alice.delete(&format!("{snaps}/{clean_id}")).await,
        StatusCode::CONFLICT,
        "vm_running",
    );

    // Write a file inside the guest through its serial shell, then shut down.
    serial_run(
        &env,
        &vm,
        "echo pvce-snapshot-data > /root/f; sync; cat /root/f; echo WROTE-$((40+2))",
        "WROTE-42",
    )
    .await;
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm}/shutdown")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_stopped(&alice, &vm).await;

    // A second snapshot with the file, then back to "clean".
    let (s, with_file) = alice.post(&snaps, json!({"name": "with file"})).await;
    assert_eq!(s, StatusCode::CREATED, "{with_file}");
    let (s, v) = alice
        .post_empty(&format!("{snaps}/{clean_id}/revert"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "stopped");

    // Boot: the file is gone.
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_serial(&env, &vm, "BOOT-OK", BOOT_TIMEOUT).await;
    serial_run(
        &env,
        &vm,
        "ls /root; test -e /root/f && echo FILE-PRESENT-$((1+1)) || echo FILE-ABSENT-$((1+1)); echo CHECKED-$((1+1))",
        "CHECKED-2",
    )
    .await;
    let log = tokio::fs::read_to_string(env.console_log(&vm))
        .await
        .unwrap();
    assert!(log.contains("FILE-ABSENT-2"), "{log}");
    assert!(!log.contains("FILE-PRESENT-2"), "{log}");
    let (s, _) = alice.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK);

    // Both snapshots are kept after a revert; going forward works too.
    let (_, list) = alice.get(&snaps).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["clean", "with file"]);
    let wf = with_file["id"].as_str().unwrap();
    let (s, v) = alice.post_empty(&format!("{snaps}/{wf}/revert")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_serial(&env, &vm, "BOOT-OK", BOOT_TIMEOUT).await;
    serial_run(&env, &vm, "cat /root/f; echo READ-$((6*7))", "READ-42").await;
    let log = tokio::fs::read_to_string(env.console_log(&vm))
        .await
        .unwrap();
    assert!(log.contains("\npvce-snapshot-data"), "{log}");
    let (s, _) = alice.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK);

    // The template layer was never written.
    assert_eq!(sha256_file(&template_layer), template_sum);
}

/// The quota comes from the configuration: with a quota of 2 the third
/// snapshot is refused with the same 409, and deleting one frees a slot.
#[tokio::test]
async fn configured_quota_refuses_the_next_snapshot() {
    let env = TestEnv::start_with(|c| c.snapshot_quota = 2).await;
    let vm = course_with_student_vm(&env, "test-snap").await.vm;
    let alice = env.client("test-alice").await;
    let snaps = format!("/api/vms/{vm}/snapshots");
    let mut ids = Vec::new();
    for i in 0..2 {
        let (s, snap) = alice.post(&snaps, json!({"name": format!("s{i}")})).await;
        assert_eq!(s, StatusCode::CREATED, "{snap}");
        ids.push(snap["id"].as_str().unwrap().to_owned());
    }
    let got = alice.post(&snaps, json!({"name": "s2"})).await;
    assert_error(&got, StatusCode::CONFLICT, "snapshot_quota");
    assert!(
        got.1["message"].as_str().unwrap().contains('2'),
        "{}",
        got.1
    );
    let (_, list) = alice.get(&snaps).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let (s, _) = alice.delete(&format!("{snaps}/{}", ids[0])).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, snap) = alice.post(&snaps, json!({"name": "s2"})).await;
    assert_eq!(s, StatusCode::CREATED, "{snap}");
}

#[tokio::test]
async fn quota_names_and_delete() {
    let env = TestEnv::start().await;
    let vm = course_with_student_vm(&env, "test-snap").await.vm;
    let alice = env.client("test-alice").await;
    let snaps = format!("/api/vms/{vm}/snapshots");

    // Names: 1-64 printable characters, unique per VM.
    for bad in [
        json!({"name": ""}),
        json!({"name": "a\nb"}),
        json!({"name": "x".repeat(65)}),
        json!({"nom": "x"}),
    ] {
        let got = alice.post(&snaps, bad.clone()).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{bad}: {}", got.1);
    }
    let mut ids = Vec::new();
    for i in 0..pvce::vms::snapshots::DEFAULT_QUOTA {
        let (s, snap) = alice
            .post(&snaps, json!({"name": format!("实验 {i}")}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{snap}");
        ids.push(snap["id"].as_str().unwrap().to_owned());
        if i == 0 {
            assert_error(
                &alice.post(&snaps, json!({"name": "实验 0"})).await,
                StatusCode::CONFLICT,
                "snapshot_name_taken",
            );
        }
    }
    assert_error(
        &alice.post(&snaps, json!({"name": "one too many"})).await,
        StatusCode::CONFLICT,
        "snapshot_quota",
    );

    // Deleting frees a slot; unknown ids are 404.
    let (s, _) = alice.delete(&format!("{snaps}/{}", ids[1])).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_error(
        &alice.delete(&format!("{snaps}/{}", ids[1])).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &alice
            .post_empty(&format!("{snaps}/not-a-uuid/revert"))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (s, snap) = alice.post(&snaps, json!({"name": "one too many"})).await;
    assert_eq!(s, StatusCode::CREATED, "{snap}");
    let (_, list) = alice.get(&snaps).await;
    let list: Vec<Value> = list.as_array().unwrap().clone();
    assert_eq!(list.len(), pvce::vms::snapshots::DEFAULT_QUOTA);
    assert!(list.iter().all(|s| s["id"] != ids[1].as_str()));

    // Reset discards the layer and with it every snapshot: the quota is free
    // again and the old snapshots are gone.
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm}/reset")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, snap) = alice.post(&snaps, json!({"name": "after reset"})).await;
    assert_eq!(s, StatusCode::CREATED, "{snap}");
    let (_, list) = alice.get(&snaps).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "after reset");
    assert_error(
        &alice
            .post_empty(&format!("{snaps}/{}/revert", ids[0]))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}
