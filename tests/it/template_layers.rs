//! Importing an uploaded copy-on-write layer as a child template
//! (`POST /api/templates/import?…&parent_id=P`), on the real qemu-img and
//! libvirtd: the layer lands as a thin child of P (chain rewritten to P's
//! layer, the upload's own backing name never used), reads P's data plus its
//! own, boots; the software rule holds; tampered layers are refused with 422
//! and leave nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::tool::run_tool;
use crate::common::{self, TestEnv, assert_error, wait_serial};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;

/// A qcow2 layer whose header names `backing` (never opened: `-u`) and whose
/// last MiB holds the byte 0xab when `pattern` is set.
fn layer(dir: &Path, name: &str, backing: &str, size: u64, pattern: bool) -> PathBuf {
    let p = dir.join(name);
    run_tool(
        Command::new("qemu-img")
            .args([
                "create", "-q", "-f", "qcow2", "-u", "-F", "qcow2", "-b", backing,
            ])
            .arg(&p)
            .arg(size.to_string()),
    );
    if pattern {
        // Opened without its backing file, so the fake name is never followed.
        let spec =
            json!({"driver": "qcow2", "file": {"driver": "file", "filename": p}, "backing": null});
        run_tool(
            Command::new("qemu-io")
                .arg("-c")
                .arg(format!("write -P 0xab {} {MIB}", size - MIB))
                .arg(format!("json:{spec}")),
        );
    }
    p
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn import_url(name: &str, software: &str, parent: Option<&str>) -> String {
    let mut u =
        format!("/api/templates/import?name={name}&format=qcow2&os=tiny-linux&software={software}");
    if let Some(p) = parent {
        u.push_str(&format!("&parent_id={p}"));
    }
    u
}

#[tokio::test]
async fn an_uploaded_layer_becomes_a_thin_child_and_tampered_ones_are_refused() {
    let env = TestEnv::start().await;
    let image = tokio::task::spawn_blocking(common::tiny_image)
        .await
        .unwrap();
    env.user("test-teacher", Role::Teacher).await;
    env.user("test-alice", Role::Student).await;
    let teacher = env.client("test-teacher").await;
    let (s, parent) = teacher
        .upload(&import_url("test-tiny", "busybox", None), &image)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{parent}");
    let pid = parent["id"].as_str().unwrap().to_owned();
    let vsize = parent["virtual_size_bytes"].as_u64().unwrap();
    let tdir = env.data_dir().join("templates");
    let parent_layer = tdir.join(format!("{pid}.qcow2"));
    let parent_sum = common::sha256_file(&parent_layer);
    let work = env.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    // The teacher's layer, made on their own machine against their own copy
    // of the base: the recorded backing name means nothing here.
    let child_src = layer(
        &work,
        "child.qcow2",
        "/home/teacher/images/tiny-linux.qcow2",
        vsize,
        true,
    );
    let (s, child) = teacher
        .upload(
            &import_url("test-tiny-lab", "busybox,lab-files", Some(&pid)),
            &child_src,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{child}");
    assert_eq!(child["parent_id"], pid.as_str());
    assert_eq!(child["depth"], parent["depth"].as_u64().unwrap() + 1);
    assert_eq!(child["virtual_size_bytes"], vsize);
    let cid = child["id"].as_str().unwrap().to_owned();
    let child_layer = tdir.join(format!("{cid}.qcow2"));
    // Thin: only the layer's own MiB (plus metadata), not a copy of the base.
    let own = std::fs::metadata(&child_layer).unwrap().len();
    assert!(own < 4 * MIB, "child layer is {own} bytes");
    assert!(child["size_bytes"].as_u64().unwrap() < 4 * MIB, "{child}");

    // The chain: child → P's layer by pvce's path, format recorded; clean.
    let info: Value = serde_json::from_str(&run_tool(
        Command::new("qemu-img")
            .args(["info", "--output=json", "-f", "qcow2"])
            .arg(&child_layer),
    ))
    .unwrap();
    assert_eq!(
        info["full-backing-filename"].as_str().unwrap(),
        std::path::absolute(&parent_layer)
            .unwrap()
            .to_str()
            .unwrap(),
        "{info}"
    );
    assert_eq!(info["backing-filename-format"], "qcow2", "{info}");
    run_tool(
        Command::new("qemu-img")
            .args(["check", "-q", "-f", "qcow2"])
            .arg(&child_layer),
    );
    // Through the chain the guest sees P's bytes everywhere except its own MiB.
    let cmp = Command::new("qemu-img")
        .args(["compare", "-f", "qcow2", "-F", "qcow2"])
        .arg(&parent_layer)
        .arg(&child_layer)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&cmp.stdout);
    assert_eq!(cmp.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("offset {}", vsize - MIB)),
        "first difference must be the child's own data: {said}"
    );
    run_tool(
        Command::new("qemu-io")
            .args(["-r", "-f", "qcow2", "-c"])
            .arg(format!("read -P 0xab {} {MIB}", vsize - MIB))
            .arg(&child_layer),
    );

    // It boots: a course on the child, a student's VM from it.
    let (s, course) = teacher
        .post(
            "/api/courses",
            json!({"code":"test-layers","name":"Layers","vm_specs":[
                {"name":"linux","template_id":cid,"vcpus":1,"memory_mib":256}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{course}");
    let (s, e) = teacher
        .post(
            &format!("/api/courses/{}/students", course["id"].as_str().unwrap()),
            json!({"usernames":["test-alice"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let alice = env.client("test-alice").await;
    let (_, vms) = alice.get("/api/vms").await;
    let vm = vms[0]["id"].as_str().unwrap().to_owned();
    env.track_vm(&vm);
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_serial(&env, &vm, "BOOT-OK", Duration::from_secs(180)).await;
    let (s, _) = alice.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK);

    // A backing name pointing at a host file is only text: replaced, never
    // read (the child shows P's bytes, not /etc/passwd's).
    let passwd = layer(&work, "passwd.qcow2", "/etc/passwd", vsize, false);
    let (s, t) = teacher
        .upload(
            &import_url("test-tiny-passwd", "busybox,other", Some(&pid)),
            &passwd,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let l = tdir.join(format!("{}.qcow2", t["id"].as_str().unwrap()));
    run_tool(
        Command::new("qemu-img")
            .args(["compare", "-q", "-f", "qcow2", "-F", "qcow2"])
            .arg(&parent_layer)
            .arg(&l),
    );

    // Refusals. Each leaves no file and no row behind.
    let before_files = files_in(&tdir);
    let (_, before) = teacher.get("/api/templates").await;
    let root = before
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["parent_id"].is_null())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases: Vec<(&str, PathBuf, String, StatusCode, &str)> = vec![
        // Tampered: a host file as backing *and* another disk size.
        (
            "wrong size",
            layer(&work, "t1.qcow2", "/etc/passwd", vsize + 1024 * MIB, true),
            import_url("test-t1", "busybox,x", Some(&pid)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_layer",
        ),
        // The software rule: a child must add something.
        (
            "same software",
            child_src.clone(),
            import_url("test-t2", "busybox", Some(&pid)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unacceptable",
        ),
        // A backing reference is only allowed under a real parent.
        (
            "no parent",
            child_src.clone(),
            import_url("test-t3", "busybox,x", None),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsafe_image",
        ),
        (
            "blank root as parent",
            child_src.clone(),
            import_url("test-t4", "busybox,x", Some(&root)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsafe_image",
        ),
    ];
    for (what, file, url, status, code) in cases {
        let got = teacher.upload(&url, &file).await;
        assert_eq!(got.0, status, "{what}: {}", got.1);
        assert_error(&got, status, code);
    }
    // An external data file is still refused.
    let df = work.join("df.qcow2");
    run_tool(
        Command::new("qemu-img")
            .args([
                "create", "-q", "-f", "qcow2", "-u", "-F", "qcow2", "-b", "/x.qcow2", "-o",
            ])
            .arg(format!("data_file={}", work.join("df.raw").display()))
            .arg(&df)
            .arg(vsize.to_string()),
    );
    assert_error(
        &teacher
            .upload(&import_url("test-t5", "busybox,x", Some(&pid)), &df)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsafe_image",
    );
    assert_eq!(files_in(&tdir), before_files);
    assert_eq!(
        files_in(&env.data_dir().join("uploads")),
        Vec::<String>::new()
    );
    let (_, after) = teacher.get("/api/templates").await;
    assert_eq!(after, before);

    // The parent's layer never changed.
    assert_eq!(common::sha256_file(&parent_layer), parent_sum);
}
