//! Portable personal environment, end to end on the real local libvirtd with
//! the tiny guest: write a file in the guest → export → reset → import → the
//! file is back; a tampered export (backing file /etc/passwd) is neutralised
//! (the layer ends up on our template and boots), other tampering is refused;
//! a standalone export boots with plain qemu-system-x86_64; layer usage.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::lab::course_with_student_vm;
use crate::common::tool::run_tool;
use crate::common::{
    self, TestEnv, assert_error, download, serial_run, sha256_file, wait_for, wait_serial,
    walk_find,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

async fn boot(env: &TestEnv, client: &common::Client, vm: &str) {
    let (s, v) = client.post_empty(&format!("/api/vms/{vm}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_serial(env, vm, "BOOT-OK", BOOT_TIMEOUT).await;
}

async fn shutdown(client: &common::Client, vm: &str) {
    let (s, v) = client.post_empty(&format!("/api/vms/{vm}/shutdown")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    common::wait_vm_gone(client, vm).await;
}

fn qemu_img_info(path: &Path) -> Value {
    serde_json::from_str(&run_tool(
        Command::new("qemu-img")
            .args(["info", "--output=json", "-U", "-f", "qcow2"])
            .arg(path),
    ))
    .unwrap()
}

/// Packs `manifest` (as JSON) and `layer` into a tar, manifest first, with GNU tar.
fn pack(dir: &Path, name: &str, manifest: &Value, layer: &Path) -> std::path::PathBuf {
    let work = dir.join(format!("pack-{name}"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::copy(layer, work.join("layer.qcow2")).unwrap();
    let tar = dir.join(format!("{name}.tar"));
    run_tool(
        Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&work)
            .args(["manifest.json", "layer.qcow2"]),
    );
    tar
}

/// The manifest updated to describe `layer` (what a careful attacker does).
fn manifest_for(manifest: &Value, layer: &Path) -> Value {
    let mut m = manifest.clone();
    m["layer"]["sha256"] = json!(sha256_file(layer));
    m["layer"]["size_bytes"] = json!(std::fs::metadata(layer).unwrap().len());
    m
}

#[tokio::test]
async fn export_reset_import_restores_the_file_and_tampering_never_reaches_qemu() {
    let env = TestEnv::start().await;
    let lab = course_with_student_vm(&env, "test-port1").await;
    let (tpl_id, vm) = (lab.template_id(), lab.vm);
    let alice = env.client("test-alice").await;
    let bob = env.client("test-bob").await;
    let template_layer = env
        .data_dir()
        .join("templates")
        .join(format!("{tpl_id}.qcow2"));
    let template_abs = std::path::absolute(&template_layer).unwrap();
    let layer_path = walk_find(&env.data_dir().join("overlays"), &format!("{vm}.qcow2")).unwrap();
    let work = env.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    // Fresh layer, stopped: the guest file system is read offline.
    let (s, fresh) = alice.get(&format!("/api/vms/{vm}/disk")).await;
    assert_eq!(s, StatusCode::OK, "{fresh}");
    assert_eq!(fresh["virtual_size_bytes"], 1u64 << 30);
    let fs_size = fresh["fs_size_bytes"].as_u64().unwrap();
    let free_before = fresh["fs_free_bytes"].as_u64().unwrap();
    assert!(fs_size > 900 << 20 && fs_size < 1 << 30, "{fresh}");
    assert!(free_before > 500 << 20 && free_before < fs_size, "{fresh}");
    assert_eq!(fresh["warning"], false);

    // Running: no export, no import, no file-system read.
    boot(&env, &alice, &vm).await;
    assert_error(
        &alice.get(&format!("/api/vms/{vm}/export")).await,
        StatusCode::CONFLICT,
        "vm_running",
    );
    let some_tar = pack(&work, "early", &json!({}), &template_layer);
    assert_error(
        &alice
            .upload(&format!("/api/vms/{vm}/import"), &some_tar)
            .await,
        StatusCode::CONFLICT,
        "vm_running",
    );
    let (s, running) = alice.get(&format!("/api/vms/{vm}/disk")).await;
    assert_eq!(s, StatusCode::OK, "{running}");
    assert_eq!(running["state"], "running");
    assert!(running["fs_size_bytes"].is_null() && running["fs_free_bytes"].is_null());
    assert!(running["note"].is_string());
    assert!(running["overlay_bytes"].as_u64().unwrap() > 0);

    // Work inside the guest: a file and 20 MiB of data.
    serial_run(
        &env,
        &vm,
        "mkdir -p /root/lab1; echo portable-$((3*5)) > /root/lab1/keep; \
         dd if=/dev/urandom of=/root/lab1/blob bs=1M count=20 2>/dev/null; sync; echo SAVED-$((40+2))",
        "SAVED-42",
    )
    .await;
    shutdown(&alice, &vm).await;

    // Layer usage sees the 20 MiB, though the guest powered off without
    // unmounting (the newest counts are read from its journal).
    let (_, used) = alice.get(&format!("/api/vms/{vm}/disk")).await;
    assert_eq!(used["fs_clean"], true, "{used}");
    let free_after = used["fs_free_bytes"].as_u64().unwrap();
    assert!(
        free_before - free_after >= 20 << 20,
        "free {free_before} → {free_after}: {used}"
    );
    assert!(
        used["overlay_bytes"].as_u64().unwrap() >= 20 << 20,
        "{used}"
    );

    // The download page's information.
    let (s, info) = alice.get(&format!("/api/vms/{vm}/export/manifest")).await;
    assert_eq!(s, StatusCode::OK, "{info}");
    assert_eq!(info["template"]["id"], tpl_id.as_str());
    assert_eq!(info["chain"][0]["id"], tpl_id.as_str());
    assert_eq!(info["chain"][0]["sha256"], sha256_file(&template_layer));
    assert!(
        info["standalone_command"]
            .as_str()
            .unwrap()
            .starts_with("qemu-system-x86_64 ")
    );

    // Outsiders get 404 everywhere.
    for path in ["export", "export/manifest", "disk"] {
        let (s, _) = bob.get(&format!("/api/vms/{vm}/{path}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    assert_error(
        &bob.upload(&format!("/api/vms/{vm}/import"), &some_tar)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Export: a tar of manifest.json + layer.qcow2, streamed with its length.
    let export_tar = work.join("export.tar");
    let (s, headers) = download(&alice, &format!("/api/vms/{vm}/export"), &export_tar).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-tar");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"pvce-linux-")
    );
    assert_eq!(
        headers["content-length"].to_str().unwrap(),
        std::fs::metadata(&export_tar).unwrap().len().to_string()
    );
    let listing = run_tool(Command::new("tar").arg("-tf").arg(&export_tar));
    assert_eq!(listing, "manifest.json\nlayer.qcow2\n");
    let unpacked = work.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run_tool(
        Command::new("tar")
            .arg("-xf")
            .arg(&export_tar)
            .arg("-C")
            .arg(&unpacked),
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    let exported_layer = unpacked.join("layer.qcow2");
    assert_eq!(manifest["format"], "pvce-layer");
    assert_eq!(manifest["template"]["id"], tpl_id.as_str());
    assert_eq!(manifest["chain_sha256"], info["chain_sha256"]);
    assert_eq!(manifest["layer"]["sha256"], sha256_file(&exported_layer));
    let exported = qemu_img_info(&exported_layer);
    assert_eq!(
        exported["backing-filename"],
        template_abs.to_str().unwrap(),
        "{exported}"
    );
    assert!(exported.get("snapshots").is_none(), "{exported}");
    // Compact: the student's data, not the template.
    let size = std::fs::metadata(&exported_layer).unwrap().len();
    assert!((20 << 20..64 << 20).contains(&size), "{size}");

    // Reset, then import: the file is back.
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm}/reset")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, imported) = alice
        .upload(&format!("/api/vms/{vm}/import"), &export_tar)
        .await;
    assert_eq!(s, StatusCode::OK, "{imported}");
    assert_eq!(imported["vm"]["id"], vm.as_str());
    assert_eq!(imported["backup"]["kind"], "backup");
    let (_, snaps) = alice.get(&format!("/api/vms/{vm}/snapshots")).await;
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    assert_eq!(
        qemu_img_info(&layer_path)["backing-filename"],
        template_abs.to_str().unwrap()
    );
    boot(&env, &alice, &vm).await;
    serial_run(
        &env,
        &vm,
        "cat /root/lab1/keep; echo READ-$((6*7))",
        "READ-42",
    )
    .await;
    let log = tokio::fs::read_to_string(env.console_log(&vm))
        .await
        .unwrap();
    assert!(log.contains("\nportable-15"), "{log}");
    let (s, _) = alice.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK);

    // Tampering that is refused before the layer is used.
    let evil = work.join("evil.qcow2");
    std::fs::copy(&exported_layer, &evil).unwrap();
    run_tool(
        Command::new("qemu-img")
            .args([
                "rebase",
                "-u",
                "-f",
                "qcow2",
                "-b",
                "/etc/passwd",
                "-F",
                "raw",
            ])
            .arg(&evil),
    );
    // … the layer changed but the manifest still has the old checksum,
    let t = pack(&work, "stale-sum", &manifest, &evil);
    assert_error(
        &alice.upload(&format!("/api/vms/{vm}/import"), &t).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "corrupt_export",
    );
    // … a manifest for another template chain,
    let mut other = manifest_for(&manifest, &evil);
    other["chain_sha256"] = json!("0".repeat(64));
    let t = pack(&work, "other-template", &other, &evil);
    assert_error(
        &alice.upload(&format!("/api/vms/{vm}/import"), &t).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "template_mismatch",
    );
    // … an external data file,
    let df = work.join("df.qcow2");
    run_tool(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-o"])
            .arg(format!("data_file={}", work.join("df.raw").display()))
            .arg(&df)
            .arg("1G"),
    );
    let t = pack(&work, "data-file", &manifest_for(&manifest, &df), &df);
    assert_error(
        &alice.upload(&format!("/api/vms/{vm}/import"), &t).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsafe_image",
    );
    // … a self-contained image instead of a layer,
    let flat = work.join("flat.qcow2");
    run_tool(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&flat)
            .arg("1G"),
    );
    let t = pack(&work, "flat", &manifest_for(&manifest, &flat), &flat);
    assert_error(
        &alice.upload(&format!("/api/vms/{vm}/import"), &t).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_layer",
    );
    // … not an archive at all, or in the wrong order.
    assert_error(
        &alice
            .upload(&format!("/api/vms/{vm}/import"), &exported_layer)
            .await,
        StatusCode::BAD_REQUEST,
        "bad_archive",
    );
    let reversed = work.join("reversed.tar");
    run_tool(
        Command::new("tar")
            .arg("-cf")
            .arg(&reversed)
            .arg("-C")
            .arg(&unpacked)
            .args(["layer.qcow2", "manifest.json"]),
    );
    assert_error(
        &alice
            .upload(&format!("/api/vms/{vm}/import"), &reversed)
            .await,
        StatusCode::BAD_REQUEST,
        "bad_archive",
    );
    // Nothing was changed by the refused uploads, and nothing is left behind.
    assert_eq!(
        qemu_img_info(&layer_path)["backing-filename"],
        template_abs.to_str().unwrap()
    );
    let uploads: Vec<_> = std::fs::read_dir(env.data_dir().join("uploads"))
        .unwrap()
        .collect();
    assert!(uploads.is_empty(), "{uploads:?}");

    // The /etc/passwd backing with a matching manifest: accepted, but the
    // backing reference is rewritten to our template (never opened), and the
    // VM boots with the student's data.
    let before = work.join("before.qcow2");
    std::fs::copy(&layer_path, &before).unwrap();
    let t = pack(&work, "passwd", &manifest_for(&manifest, &evil), &evil);
    let (s, imported) = alice.upload(&format!("/api/vms/{vm}/import"), &t).await;
    assert_eq!(s, StatusCode::OK, "{imported}");
    let now = qemu_img_info(&layer_path);
    assert_eq!(
        now["backing-filename"],
        template_abs.to_str().unwrap(),
        "{now}"
    );
    assert_eq!(now["backing-filename-format"], "qcow2", "{now}");
    boot(&env, &alice, &vm).await;
    serial_run(
        &env,
        &vm,
        "cat /root/lab1/keep; echo AGAIN-$((6*7))",
        "AGAIN-42",
    )
    .await;
    let log = tokio::fs::read_to_string(env.console_log(&vm))
        .await
        .unwrap();
    assert!(log.contains("\nportable-15"), "{log}");
    let (s, _) = alice.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK);

    // One backup at a time; reverting to it restores the layer as it was
    // before this import.
    let (_, snaps) = alice.get(&format!("/api/vms/{vm}/snapshots")).await;
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let backup = snaps[0]["id"].as_str().unwrap();
    assert_ne!(backup, imported["vm"]["id"].as_str().unwrap());
    let (s, v) = alice
        .post_empty(&format!("/api/vms/{vm}/snapshots/{backup}/revert"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    run_tool(
        Command::new("qemu-img")
            .args(["compare", "-f", "qcow2", "-F", "qcow2"])
            .arg(&layer_path)
            .arg(&before),
    );

    // The template layer was never written.
    let (_, info_after) = alice.get(&format!("/api/vms/{vm}/export/manifest")).await;
    assert_eq!(
        info_after["chain"][0]["sha256"],
        sha256_file(&template_layer)
    );
    assert_eq!(info_after["chain_sha256"], info["chain_sha256"]);
}

#[tokio::test]
async fn standalone_export_boots_with_plain_qemu() {
    let env = TestEnv::start().await;
    let vm = course_with_student_vm(&env, "test-port2").await.vm;
    let alice = env.client("test-alice").await;
    boot(&env, &alice, &vm).await;
    serial_run(
        &env,
        &vm,
        "echo standalone-$((2+3)) > /root/keep; sync; echo SAVED-$((40+2))",
        "SAVED-42",
    )
    .await;
    shutdown(&alice, &vm).await;

    let work = env.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let image = work.join("standalone.qcow2");
    let (s, headers) = download(
        &alice,
        &format!("/api/vms/{vm}/export?standalone=true"),
        &image,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/octet-stream");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"pvce-linux-")
            && disposition.ends_with("-standalone.qcow2\""),
        "{disposition}"
    );
    let info = qemu_img_info(&image);
    assert!(info.get("backing-filename").is_none(), "{info}");
    assert_eq!(info["virtual-size"], 1u64 << 30);

    // The exact command from the download, with the file, TCG only (this
    // machine's nested KVM cannot run a bootloader) and the serial console on a
    // socket + log file instead of a window.
    let command = headers["x-pvce-run-command"].to_str().unwrap().to_owned();
    let file_name = disposition
        .trim_start_matches("attachment; filename=\"")
        .trim_end_matches('"');
    assert!(
        command.contains(&format!("-drive file={file_name},format=qcow2,if=virtio")),
        "{command}"
    );
    let command = command
        .replace("-accel kvm -accel tcg", "-accel tcg")
        .replace(file_name, image.to_str().unwrap());
    let sock = work.join("serial.sock");
    let log = work.join("serial.log");
    let mut args: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
    let program = args.remove(0);
    assert_eq!(program, "qemu-system-x86_64");
    args.extend(
        [
            "-display",
            "none",
            "-no-reboot",
            "-chardev",
            &format!(
                "socket,id=s0,path={},server=on,wait=off,logfile={}",
                sock.display(),
                log.display()
            ),
            "-serial",
            "chardev:s0",
        ]
        .map(str::to_owned),
    );
    let _qemu = tokio::process::Command::new(program)
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let read_log = || async { tokio::fs::read_to_string(&log).await.unwrap_or_default() };
    wait_for("BOOT-OK from plain QEMU", BOOT_TIMEOUT, || async {
        read_log().await.contains("BOOT-OK").then_some(())
    })
    .await;
    // The student's file is in the standalone image.
    let mut serial = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let started = std::time::Instant::now();
    while !read_log().await.contains("READ-42") {
        use tokio::io::AsyncWriteExt;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no answer from plain QEMU's serial shell: {}",
            read_log().await
        );
        serial
            .write_all(b"cat /root/keep; echo READ-$((6*7))\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let text = read_log().await;
    assert!(text.contains("\nstandalone-5"), "{text}");
}

/// Appends members to an export with GNU tar: `-P` keeps absolute and `..`
/// names as written; `from` is the directory the names are relative to.
fn append(tar: &Path, from: &Path, names: &[&str]) {
    run_tool(
        Command::new("tar")
            .arg("-rPf")
            .arg(tar)
            .current_dir(from)
            .args(names),
    );
}

#[tokio::test]
async fn archives_with_members_besides_the_export_are_refused_naming_them() {
    let env = TestEnv::start().await;
    let vm = course_with_student_vm(&env, "test-port3").await.vm;
    let alice = env.client("test-alice").await;
    let layer_path = walk_find(&env.data_dir().join("overlays"), &format!("{vm}.qcow2")).unwrap();
    let before = sha256_file(&layer_path);
    let work = env.dir.path().join("work");
    let inner = work.join("inner");
    std::fs::create_dir_all(&inner).unwrap();
    let export_tar = work.join("export.tar");
    let (s, _) = download(&alice, &format!("/api/vms/{vm}/export"), &export_tar).await;
    assert_eq!(s, StatusCode::OK);
    std::fs::write(work.join("evil"), b"#!/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("/etc/shadow", inner.join("link")).unwrap();
    run_tool(Command::new("mkfifo").arg(inner.join("fifo")));
    let absolute = work.join("evil");
    let cases: [(&str, &Path, &str); 5] = [
        ("dotdot", &inner, "../evil"),
        ("absolute", &inner, absolute.to_str().unwrap()),
        ("symlink", &inner, "link"),
        ("fifo", &inner, "fifo"),
        ("extra", &work, "evil"),
    ];
    for (case, from, member) in cases {
        let t = work.join(format!("{case}.tar"));
        std::fs::copy(&export_tar, &t).unwrap();
        append(&t, from, &[member]);
        let got = alice.upload(&format!("/api/vms/{vm}/import"), &t).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "unsafe_archive");
        let message = got.1["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{member:?}")),
            "{case}: {message}"
        );
    }
    // A connection dropped in the middle of the layer leaves no partial file.
    let bytes = std::fs::read(&export_tar).unwrap();
    assert!(bytes.len() > 8 << 10, "{}", bytes.len());
    let mut sock = tokio::net::TcpStream::connect(env.server.addr)
        .await
        .unwrap();
    let head = format!(
        "POST /api/vms/{vm}/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        alice.token,
        bytes.len()
    );
    {
        use tokio::io::AsyncWriteExt;
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&bytes[..bytes.len() / 2]).await.unwrap();
    }
    let uploads_dir = env.data_dir().join("uploads");
    let entries = || std::fs::read_dir(&uploads_dir).unwrap().count();
    wait_for(
        "the partial layer in uploads/",
        Duration::from_secs(30),
        || async { (entries() > 0).then_some(()) },
    )
    .await;
    drop(sock);
    wait_for("uploads/ to empty", Duration::from_secs(30), || async {
        (entries() == 0).then_some(())
    })
    .await;

    // Nothing changed and nothing is left behind; the plain export still imports.
    assert_eq!(sha256_file(&layer_path), before);
    let (_, snaps) = alice.get(&format!("/api/vms/{vm}/snapshots")).await;
    assert_eq!(snaps.as_array().unwrap().len(), 0, "{snaps}");
    let uploads: Vec<_> = std::fs::read_dir(env.data_dir().join("uploads"))
        .unwrap()
        .collect();
    assert!(uploads.is_empty(), "{uploads:?}");
    let (s, v) = alice
        .upload(&format!("/api/vms/{vm}/import"), &export_tar)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}
