//! A full disk, for real: the data dir (database included) on a 32 MiB tmpfs
//! filled to the last byte. Requests that must write answer 507
//! `insufficient_storage` naming the storage that is full, `/healthz` says
//! `degraded` with the reason, nothing half-written stays behind, and once
//! space is freed everything works again. Needs root (mount); the tmpfs is
//! unmounted however the test ends.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{self, Client, TestEnv, wait_for};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A tmpfs mounted at a directory; lazily unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount tmpfs (the tests run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the aborted server's last file handles must not keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        // The test env's temporary directory could not remove a mount point.
        let _ = std::fs::remove_dir(&self.0);
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Writes `path` until the file system has no byte left.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![0xa5u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
    assert_eq!(pvce::space::free_bytes(path.parent().unwrap()).unwrap(), 0);
}

/// Asserts a 507 whose message names `store`.
fn assert_full(got: &(StatusCode, Value), store: &str, what: &str) {
    assert_eq!(got.0, StatusCode::INSUFFICIENT_STORAGE, "{what}: {}", got.1);
    assert_eq!(got.1["error"], "insufficient_storage", "{what}: {}", got.1);
    let message = got.1["message"].as_str().unwrap();
    assert!(message.contains(store), "{what}: {message}");
    assert!(!message.contains('/'), "{what} leaks a path: {message}");
}

async fn health(env: &TestEnv) -> Value {
    reqwest::get(env.url("/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn login(env: &TestEnv, username: &str) -> (StatusCode, Value) {
    Client::anonymous(&env.server.url())
        .post(
            "/api/auth/login",
            json!({"username": username, "password": common::PASSWORD}),
        )
        .await
}

fn qemu_img_create(path: &Path) {
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg("64M")
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[tokio::test]
async fn a_full_disk_answers_507_naming_the_storage_and_recovers() {
    let mut mount = None;
    let env = TestEnv::start_with(|config| {
        mount = Some(Tmpfs::mount(&config.data_dir, "32m"));
        config.min_free_mib = 1;
    })
    .await;
    let data = env.data_dir();
    env.user("test-admin", Role::Admin).await;
    env.user("test-teacher", Role::Teacher).await;
    env.user("test-student", Role::Student).await;
    let admin = env.client("test-admin").await;
    let teacher = env.client("test-teacher").await;
    let student = env.client("test-student").await;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("blank.qcow2");
    qemu_img_create(&image);
    let import = |name: &str| format!("/api/templates/import?name={name}&format=qcow2&os=linux");
    let (s, tpl) = teacher.upload(&import("test-blank"), &image).await;
    assert_eq!(s, StatusCode::CREATED, "{tpl}");
    let course = |code: &str| {
        json!({"code": code, "name": "Full", "vm_specs": [
            {"name": "vm", "template_id": tpl["id"], "vcpus": 1, "memory_mib": 128}]})
    };
    let (s, c) = teacher.post("/api/courses", course("test-full")).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let (s, e) = teacher
        .post(
            &format!("/api/courses/{}/students", c["id"].as_str().unwrap()),
            json!({"usernames": ["test-student"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let (_, vms) = student.get("/api/vms").await;
    let vm = vms[0]["id"].as_str().unwrap().to_owned();
    env.track_vm(&vm);
    assert_eq!(health(&env).await["status"], "ok");

    let filler = data.join("filler");
    fill(&filler);
    let templates_before = std::fs::read_dir(data.join("templates")).unwrap().count();

    // Sign-in, course create, CSV import: the database cannot grow.
    assert_full(&login(&env, "test-student").await, "database", "sign-in");
    let got = teacher.post("/api/courses", course("test-full-2")).await;
    assert_full(&got, "database", "course create");
    let got = admin
        .post_body(
            "/api/users/import",
            "text/csv",
            "username,display_name,role,password\ntest-csv,C,student,password-one\n",
        )
        .await;
    assert_full(&got, "database", "CSV import");

    // Template import, snapshot, VM start: the data dir cannot take the bytes.
    let big = work.path().join("big.raw");
    std::fs::write(&big, vec![1u8; 4 << 20]).unwrap();
    let got = teacher
        .upload(
            "/api/templates/import?name=test-big&format=raw&os=linux",
            &big,
        )
        .await;
    assert_full(&got, "data dir", "template import");
    let got = student
        .post(&format!("/api/vms/{vm}/snapshots"), json!({"name": "full"}))
        .await;
    assert_full(&got, "data dir", "snapshot");
    let got = student.post_empty(&format!("/api/vms/{vm}/start")).await;
    assert_full(&got, "", "VM start");

    // The operator sees why.
    let h = health(&env).await;
    assert_eq!(h["status"], "degraded", "{h}");
    let reasons = h["reasons"].to_string();
    assert!(
        reasons.contains("storage: the data dir has 0 MiB free"),
        "{h}"
    );

    // Nothing half-written: no upload, no layer, no row.
    assert_eq!(std::fs::read_dir(data.join("uploads")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(data.join("templates")).unwrap().count(),
        templates_before
    );
    let (_, templates) = teacher.get("/api/templates").await;
    assert!(!common::strings(&templates, "name").contains(&"test-big"));
    let (_, snaps) = student.get(&format!("/api/vms/{vm}/snapshots")).await;
    assert_eq!(snaps, json!([]));
    let (_, v) = student.get(&format!("/api/vms/{vm}")).await;
    assert_eq!(v["state"], "stopped", "{v}");

    // Room again: healthy, and what failed works; the layer the snapshot
    // could not be written to is intact (leaked clusters at most).
    std::fs::remove_file(&filler).unwrap();
    let layer = common::walk_find(&data.join("overlays"), &format!("{vm}.qcow2")).unwrap();
    let check = Command::new("qemu-img")
        .args(["check", "-q", "-f", "qcow2"])
        .arg(&layer)
        .output()
        .unwrap();
    assert!(
        matches!(check.status.code(), Some(0 | 3)),
        "{:?}: {}",
        check.status,
        String::from_utf8_lossy(&check.stdout)
    );
    wait_for(
        "/healthz to be ok again",
        Duration::from_secs(30),
        || async { (health(&env).await["status"] == "ok").then_some(()) },
    )
    .await;
    assert_eq!(login(&env, "test-student").await.0, StatusCode::OK);
    let (s, c2) = teacher.post("/api/courses", course("test-full-2")).await;
    assert_eq!(s, StatusCode::CREATED, "{c2}");

    // Room for the upload but not for its conversion: qemu-img runs out of
    // space — the server's problem, not a damaged image.
    fill(&filler);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap();
    f.set_len(f.metadata().unwrap().len() - (6 << 20)).unwrap();
    drop(f);
    let mut noise = vec![0u8; 4 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in noise.iter_mut() {
        // xorshift: incompressible, so the layer needs all 4 MiB.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(&big, &noise).unwrap();
    let templates_before = std::fs::read_dir(data.join("templates")).unwrap().count();
    let got = teacher
        .upload(
            "/api/templates/import?name=test-noise&format=raw&os=linux",
            &big,
        )
        .await;
    assert_full(&got, "data dir", "conversion");
    assert_eq!(std::fs::read_dir(data.join("uploads")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(data.join("templates")).unwrap().count(),
        templates_before
    );
    std::fs::remove_file(&filler).unwrap();
    drop(env);
    drop(mount);
}
