//! Issue 4 end to end on the real libvirtd: the built-in tree, match, derive
//! online (install through the build VM's console), seal, a course on the new
//! child; the student sees the teacher's work, keeps its own writes across a
//! reboot but not across a reset, and the parent layer never changes.

use std::time::Duration;

use crate::common::{self, TestEnv, assert_error, serial_run, sha256_file, wait_for, wait_serial};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const BOOT: Duration = Duration::from_secs(120);

fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()
}

async fn boots(env: &TestEnv, vm_id: &str) -> usize {
    tokio::fs::read_to_string(env.console_log(vm_id))
        .await
        .map(|l| l.matches("BOOT-OK").count())
        .unwrap_or(0)
}

#[tokio::test]
async fn derive_seal_and_use_a_child_template() {
    // An install in the build VM, then several boots: alone (see common::gate).
    let _alone = common::gate::alone().await;
    let env = TestEnv::start().await;
    env.user("test-teacher", Role::Teacher).await;
    env.user("test-other-teacher", Role::Teacher).await;
    env.user("test-alice", Role::Student).await;
    env.user("test-admin", Role::Admin).await;
    let teacher = env.client("test-teacher").await;
    let other = env.client("test-other-teacher").await;
    let alice = env.client("test-alice").await;

    // The built-in library, built as `pvce templates build templates-tree` does.
    let st = &env.server.state;
    let limits = pvce::templates::ImportLimits {
        max_upload_bytes: u64::MAX,
        max_virtual_size: u64::MAX,
    };
    pvce::library::build(
        &st.pool,
        &st.storage,
        limits,
        &common::repo_root().join("templates-tree"),
    )
    .await
    .unwrap();
    // Idempotent: a second build builds nothing.
    let again = pvce::library::build(
        &st.pool,
        &st.storage,
        limits,
        &common::repo_root().join("templates-tree"),
    )
    .await
    .unwrap();
    assert!(again.iter().all(|l| l.contains("exists")), "{again:?}");

    let (_, list) = teacher.get("/api/templates").await;
    let linux = find(&list, "tiny-linux").clone();
    let c = find(&list, "tiny-linux-c").clone();
    assert_eq!(c["parent_id"], linux["id"]);
    assert_eq!(c["depth"], 2);
    // A child costs only what it adds.
    assert!(c["size_bytes"].as_u64().unwrap() < 4 * 1024 * 1024, "{c}");
    let c_layer = env
        .data_dir()
        .join("templates")
        .join(format!("{}.qcow2", c["id"].as_str().unwrap()));
    let c_sum = sha256_file(&c_layer);

    // Match: exact, then a base with what is missing (names normalised).
    let (s, m) = teacher
        .post(
            "/api/templates/match",
            json!({"os":"tiny-linux","software":["BusyBox","gcc","make"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["exact"]["name"], "tiny-linux-c");
    let (_, m) = teacher
        .post(
            "/api/templates/match",
            json!({"os":"tiny-linux","software":["busybox","gcc","make","gdb-13"]}),
        )
        .await;
    assert!(m["exact"].is_null());
    assert_eq!(m["base"]["name"], "tiny-linux-c");
    assert_eq!(m["missing"], json!(["gdb-13"]));
    assert_error(
        &alice
            .post("/api/templates/match", json!({"os":"x","software":[]}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    // Derive online from the base: a draft and a running build VM.
    let cid = c["id"].as_str().unwrap();
    let (s, d) = teacher
        .post(
            &format!("/api/templates/{cid}/derive"),
            json!({"name":"test-c-gdb","software":["gdb-13"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    assert_eq!(d["template"]["state"], "draft");
    assert_eq!(
        d["template"]["software"],
        json!(["busybox", "gcc", "gdb-13", "make"])
    );
    assert_eq!(d["vm"]["state"], "running");
    let draft_id = d["template"]["id"].as_str().unwrap().to_owned();
    let build_vm = d["vm"]["id"].as_str().unwrap().to_owned();
    env.track_vm(&build_vm);
    // Nobody derives from or enrols into a draft; another teacher can't touch it.
    assert_error(
        &teacher
            .post(
                &format!("/api/templates/{draft_id}/derive"),
                json!({"name":"test-x","software":["y"]}),
            )
            .await,
        StatusCode::CONFLICT,
        "template_not_ready",
    );
    let (s, _) = teacher
        .post("/api/courses", json!({"code":"test-draft","name":"x","vm_specs":[{"name":"a","template_id":draft_id,"vcpus":1,"memory_mib":128}]}))
        .await;
    // Well-formed but naming a template that can't serve yet.
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(
        &other.get(&format!("/api/vms/{build_vm}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &other
            .post_empty(&format!("/api/templates/{draft_id}/seal"))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // The teacher reaches the build VM's console like any VM's.
    let (s, tok) = teacher
        .post_empty(&format!("/api/vms/{build_vm}/console"))
        .await;
    assert_eq!(s, StatusCode::OK, "{tok}");

    // "Install" the software through the console, then seal.
    wait_serial(&env, &build_vm, "BOOT-OK", BOOT).await;
    serial_run(
        &env,
        &build_vm,
        "echo GDB-$((40+2)) > /root/gdb.txt && sync && echo WROTE-$((1+1))",
        "WROTE-2",
    )
    .await;
    let (s, sealed) = teacher
        .post_empty(&format!("/api/templates/{draft_id}/seal"))
        .await;
    assert_eq!(s, StatusCode::OK, "{sealed}");
    assert_eq!(sealed["state"], "ready");
    assert_error(
        &teacher.get(&format!("/api/vms/{build_vm}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let draft_layer = env
        .data_dir()
        .join("templates")
        .join(format!("{draft_id}.qcow2"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&draft_layer).unwrap().permissions(),
    );
    assert_eq!(mode & 0o222, 0, "a sealed layer is read-only");

    // A course on the new child; the student sees the teacher's work.
    let (s, course) = teacher
        .post("/api/courses", json!({"code":"test-debugging","name":"Debugging","vm_specs":[{"name":"lab","template_id":draft_id,"vcpus":1,"memory_mib":256}]}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{course}");
    let course_id = course["id"].as_str().unwrap();
    let (_, r) = teacher
        .post(
            &format!("/api/courses/{course_id}/students"),
            json!({"usernames":["test-alice"]}),
        )
        .await;
    assert_eq!(r["vms_created"], 1);
    let (_, vms) = alice.get("/api/vms").await;
    let vm = vms[0]["id"].as_str().unwrap().to_owned();
    env.track_vm(&vm);
    let (s, _) = alice.post_empty(&format!("/api/vms/{vm}/start")).await;
    assert_eq!(s, StatusCode::OK);
    wait_serial(&env, &vm, "BOOT-OK", BOOT).await;
    serial_run(
        &env,
        &vm,
        "cat /root/gdb.txt /usr/share/pvce/software/gcc && echo READ-$((2+2))",
        "GDB-42",
    )
    .await;

    // Own writes survive a reboot...
    serial_run(
        &env,
        &vm,
        "echo MINE-$((3+4)) > /root/mine.txt && sync && echo SAVED-$((5+5))",
        "SAVED-10",
    )
    .await;
    let (s, _) = alice.post_empty(&format!("/api/vms/{vm}/reboot")).await;
    assert_eq!(s, StatusCode::OK);
    wait_for("the second boot", BOOT, || async {
        (boots(&env, &vm).await >= 2).then_some(())
    })
    .await;
    serial_run(
        &env,
        &vm,
        "cat /root/mine.txt; echo CHECKED-$((6+6))",
        "CHECKED-12",
    )
    .await;
    let log = tokio::fs::read_to_string(env.console_log(&vm))
        .await
        .unwrap();
    // Nothing printed MINE-7 before the reboot (the typed line says MINE-$((3+4))).
    assert!(
        log.contains("MINE-7"),
        "the file written before the reboot is still there"
    );

    // ...but not a reset (the teacher's file stays: it is in the template).
    let (s, _) = alice.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = alice.post_empty(&format!("/api/vms/{vm}/reset")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = alice.post_empty(&format!("/api/vms/{vm}/start")).await;
    assert_eq!(s, StatusCode::OK);
    wait_serial(&env, &vm, "BOOT-OK", BOOT).await;
    serial_run(
        &env,
        &vm,
        "cat /root/mine.txt /root/gdb.txt; echo AFTER-$((7+7))",
        "AFTER-14",
    )
    .await;
    let log = tokio::fs::read_to_string(env.console_log(&vm))
        .await
        .unwrap();
    assert!(
        !log.contains("MINE-7"),
        "reset discarded the student's file"
    );
    assert!(log.contains("GDB-42"));
    let (s, _) = alice.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK);

    // The parent template layer is byte-for-byte unchanged by all of this.
    assert_eq!(sha256_file(&c_layer), c_sum);

    // Flatten (admin only): a standalone layer, same software, no backing file.
    let flat_body = json!({"name":"test-c-gdb-flat"});
    assert_error(
        &teacher
            .post(
                &format!("/api/templates/{draft_id}/flatten"),
                flat_body.clone(),
            )
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let admin = env.client("test-admin").await;
    let (s, flat) = admin
        .post(&format!("/api/templates/{draft_id}/flatten"), flat_body)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{flat}");
    assert_eq!(flat["software"], sealed["software"]);
    let flat_layer = env
        .data_dir()
        .join("templates")
        .join(format!("{}.qcow2", flat["id"].as_str().unwrap()));
    let info = std::process::Command::new("qemu-img")
        .args(["info", "-U", "--output=json", "-f", "qcow2"])
        .arg(&flat_layer)
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(info.get("backing-filename").is_none(), "{info}");
    // The tree stores much less than flat copies of every template would.
    let (_, usage) = teacher.get("/api/templates/usage").await;
    assert!(
        usage["stored_bytes"].as_u64().unwrap() < usage["flat_copies_bytes"].as_u64().unwrap(),
        "{usage}"
    );

    // Abandoning a draft removes it and its build VM.
    let (s, d) = teacher
        .post(
            &format!("/api/templates/{cid}/derive"),
            json!({"name":"test-abandon","software":["valgrind"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let vm2 = d["vm"]["id"].as_str().unwrap().to_owned();
    env.track_vm(&vm2);
    let id2 = d["template"]["id"].as_str().unwrap();
    let (s, _) = teacher.delete(&format!("/api/templates/{id2}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(
        !env.data_dir()
            .join("templates")
            .join(format!("{id2}.qcow2"))
            .exists()
    );
    assert_eq!(common::virsh_domstate(&format!("test-pvce-{vm2}")), "");
}
