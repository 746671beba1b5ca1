//! The web UI in a real browser: headless Debian Chromium driven by Playwright
//! (`playwright-core` from `web/node_modules`, installed by `build.rs`)
//! against the real server. The Node scripts in `tests/browser/` do the
//! clicking; these tests prepare users, images and courses through the API,
//! run a script, and check its exit status and screenshots (saved in
//! `target/test-artifacts/`).
//!
//! The browser runs in a network namespace of its own, as a student's
//! browser runs on another machine: the hypervisor host's network changes
//! (a VM's tap device coming up, the multi-node rig's veths) would otherwise
//! make Chromium abort every request in flight (`ERR_NETWORK_CHANGED`) —
//! once, the ~25 noVNC modules of a desktop page loading at that moment.
//! Its loopback reaches the test server through a Unix socket (a path on
//! the shared file system is reachable from any network namespace).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::lab::{course, import_tiny, vm_of};
use crate::common::{self, PASSWORD, TestEnv, lab};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

fn artifact_dir() -> PathBuf {
    let dir = common::repo_root().join("target").join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Browser tests that boot several guests one after another (a template's
/// build VM and its children; a collection) run alone (see `common::gate`):
/// their scripts wait on guests whose time under TCG doubles beside
/// another guest.
async fn one_at_a_time() -> std::sync::Arc<common::gate::Pass> {
    common::gate::alone().await
}

/// Every other browser test — with one guest or none: one Chromium at a
/// time, beside other tests (see `common::gate::heavy`). A browser test of
/// the rig takes the rig's slot with it.
async fn one_chromium() -> std::sync::Arc<common::gate::Pass> {
    common::gate::heavy(&[common::gate::Heavy::Chromium]).await
}

fn check_tools() {
    assert!(
        Path::new("/usr/bin/chromium").exists() || std::env::var_os("PVCE_CHROMIUM").is_some(),
        "Chromium is missing: install Debian's `chromium` (scripts/setup.sh does)"
    );
    let pw = common::repo_root().join("web/node_modules/playwright-core/package.json");
    assert!(
        pw.exists(),
        "playwright-core is missing from web/node_modules (build.rs runs `npm ci` in web/)"
    );
}

/// The host side of the browser's way to the server: a Unix socket whose
/// connections are relayed to `127.0.0.1:port`. Removed when dropped.
struct LoopbackBridge {
    path: PathBuf,
    relay: tokio::task::JoinHandle<()>,
}

impl LoopbackBridge {
    fn to(port: u16) -> LoopbackBridge {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("test-pvce-browser-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let relay = tokio::spawn(async move {
            while let Ok((mut unix, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = tcp.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut unix, &mut tcp).await;
                    }
                });
            }
        });
        LoopbackBridge { path, relay }
    }
}

impl Drop for LoopbackBridge {
    fn drop(&mut self) {
        self.relay.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The port of an `http://127.0.0.1:PORT…` URL.
fn loopback_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("http://127.0.0.1:")?;
    let end = rest.find('/').unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// [`run_script`] for a script that saves `shots` into `dir`: stale copies
/// are removed first, so each must be written anew and be a PNG.
async fn run_script_shots(script: &str, args: &[&str], dir: &Path, shots: &[&str]) {
    for f in shots {
        let _ = std::fs::remove_file(dir.join(f));
    }
    run_script(script, args).await;
    for f in shots {
        assert_png(&dir.join(f));
    }
}

/// Runs a wall script: the `people` (the teacher first, then the student
/// whose VM is watched, then anyone else the script signs in) with the
/// shared password, on `vm` of `course`; it leaves `shots`.
async fn run_wall_script(
    script: &str,
    env: &TestEnv,
    people: &[&str],
    (course, vm): (&Value, &str),
    shots: &[&str],
) {
    let base = env.server.url();
    let dir = artifact_dir();
    let mut args: Vec<&str> = vec![&base];
    args.extend_from_slice(people);
    args.extend([
        PASSWORD,
        course["id"].as_str().unwrap(),
        vm,
        dir.to_str().unwrap(),
    ]);
    run_script_shots(script, &args, &dir, shots).await;
}

/// Runs `node tests/browser/<script> args…` in a network namespace of its
/// own (see the module doc), echoing its output; panics with it if the
/// script fails or runs out of time. A first argument naming the test
/// server's loopback URL is bridged into the namespace at the same address.
async fn run_script(script: &str, args: &[&str]) {
    check_tools();
    let path = common::repo_root().join("tests/browser").join(script);
    let bridge = args
        .first()
        .and_then(|a| loopback_port(a))
        .map(|port| (port, LoopbackBridge::to(port)));
    let mut cmd = tokio::process::Command::new("unshare");
    // As root a plain network namespace; otherwise inside a user namespace.
    if !running_as_root() {
        cmd.args(["--user", "--map-root-user"]);
    }
    cmd.args([
        "--net",
        "--",
        "sh",
        "-c",
        "ip link set lo up && exec \"$@\"",
        "sh",
        "node",
    ])
    .arg(&path)
    .args(args);
    if let Some((port, b)) = &bridge {
        cmd.env("PVCE_BROWSER_BRIDGE", &b.path)
            .env("PVCE_BROWSER_PORT", port.to_string());
    }
    let child = cmd.kill_on_drop(true).output();
    let out = match tokio::time::timeout(SCRIPT_TIMEOUT, child).await {
        Ok(out) => out.unwrap_or_else(|e| {
            panic!("cannot run node under unshare (install Node.js and util-linux): {e}")
        }),
        Err(_) => panic!("{script} did not finish within {SCRIPT_TIMEOUT:?}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{script} stdout:\n{stdout}");
    eprintln!("{script} stderr:\n{stderr}");
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

fn assert_png(path: &Path) {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("screenshot {}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 1000,
        "{} is not a real PNG",
        path.display()
    );
}

#[tokio::test]
async fn login_page_language_switch_and_logout() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-web-lonely", Role::Student).await;
    let base = env.server.url();
    let dir = artifact_dir();
    // Both languages have every key the app uses.
    run_script("i18n-check.mjs", &[]).await;
    run_script_shots(
        "login.mjs",
        &[&base, "test-web-lonely", PASSWORD, dir.to_str().unwrap()],
        &dir,
        &["login-en.png", "login-zh.png", "student-empty-en.png"],
    )
    .await;
}

#[tokio::test]
async fn student_starts_a_vm_and_types_into_its_desktop() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-web-teacher", Role::Teacher).await;
    env.user("test-web-student", Role::Student).await;
    let teacher = env.client("test-web-teacher").await;
    let student = env.client("test-web-student").await;

    let tpl = import_tiny(&teacher, "test-web-tiny").await;
    course(
        &teacher,
        json!({"code": "test-web101", "name": "Operating Systems Lab", "lab_network": true, "vm_specs": [
                {"name": "linux", "template_id": tpl["id"], "vcpus": 1, "memory_mib": 256}]}),
        &["test-web-student"],
    )
    .await;
    let (_, vms) = student.get("/api/vms").await;
    let vms = vms.as_array().unwrap();
    assert_eq!(vms.len(), 1, "{vms:?}");
    let vm_id = vms[0]["id"].as_str().unwrap().to_owned();
    env.track_vm(&vm_id);

    let base = env.server.url();
    let dir = artifact_dir();
    let shot = dir.join("student-desktop.png");
    let _ = std::fs::remove_file(&shot);
    run_script(
        "student.mjs",
        &[&base, "test-web-student", PASSWORD, dir.to_str().unwrap()],
    )
    .await;
    assert_png(&shot);

    // The script ended by forcing the VM off (and saw the page say so).
    let (_, vm) = student.get(&format!("/api/vms/{vm_id}")).await;
    assert_eq!(vm["state"], "stopped", "{vm}");
    // The course has a lab network: it went with the VM.
    let nets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM lab_networks")
        .fetch_one(&env.server.state.pool)
        .await
        .unwrap();
    assert_eq!(nets, 0);
}

/// A student reads their VM's node, template and disk use, and while a
/// shutdown waits for a guest that ignores it, when the VM will be forced
/// off: in the API and in the course list and desktop page, in both
/// languages (issue 21).
#[tokio::test]
async fn student_sees_vm_details_and_when_a_stopping_vm_is_forced_off() {
    let _serial = one_chromium().await;
    // Long enough for the browser to look while the VM is stopping.
    let env = TestEnv::start_with(|c| c.shutdown_timeout_secs = 600).await;
    env.user("test-stop-teacher", Role::Teacher).await;
    env.user("test-stop-student", Role::Student).await;
    let teacher = env.client("test-stop-teacher").await;
    let student = env.client("test-stop-student").await;
    let tpl = import_tiny(&teacher, "test-stop-tiny").await;
    course(
        &teacher,
        json!({"code": "test-stop1", "name": "Stopping", "vm_specs": [
                {"name": "linux", "template_id": tpl["id"], "vcpus": 1, "memory_mib": 256}]}),
        &["test-stop-student"],
    )
    .await;
    let (_, vms) = student.get("/api/vms").await;
    let vm_id = vms[0]["id"].as_str().unwrap().to_owned();
    env.track_vm(&vm_id);
    assert_eq!(vms[0]["template_name"], "test-stop-tiny", "{vms}");
    assert!(
        vms[0]["node_name"].is_null(),
        "a stopped VM is on no node: {vms}"
    );
    assert!(vms[0]["stop_deadline"].is_null(), "{vms}");

    let (s, v) = student.post_empty(&format!("/api/vms/{vm_id}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let node: String = sqlx::query_scalar("SELECT name FROM nodes WHERE id = $1")
        .bind(v["node_id"].as_str().unwrap())
        .fetch_one(&env.server.state.pool)
        .await
        .unwrap();
    assert_eq!(v["node_name"], node.as_str(), "{v}");
    common::wait_serial(&env, &vm_id, "BOOT-OK", Duration::from_secs(180)).await;
    // The guest stops listening to the power button: the shutdown waits.
    common::serial_run(
        &env,
        &vm_id,
        "kill $(cat /run/acpid.pid); echo NOACPI-$((40+2))",
        "NOACPI-42",
    )
    .await;
    let asked = time::OffsetDateTime::now_utc();
    let (s, v) = student
        .post_empty(&format!("/api/vms/{vm_id}/shutdown"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "stopping", "{v}");
    let deadline = v["stop_deadline"]
        .as_str()
        .expect("a deadline while stopping")
        .to_owned();
    let at = time::OffsetDateTime::parse(&deadline, &time::format_description::well_known::Rfc3339)
        .unwrap();
    let ahead = (at - asked).whole_seconds();
    assert!(
        (598..=601).contains(&ahead),
        "forced off the shutdown timeout later: {ahead} s"
    );
    let (_, listed) = student.get("/api/vms").await;
    assert_eq!(listed[0]["stop_deadline"], deadline.as_str(), "{listed}");

    let dir = artifact_dir();
    run_script(
        "stopping.mjs",
        &[
            &env.server.url(),
            "test-stop-student",
            PASSWORD,
            dir.to_str().unwrap(),
            &node,
            "test-stop-tiny",
            &deadline,
        ],
    )
    .await;
    assert_png(&dir.join("student-stopping-zh-CN.png"));

    // Still stopping (the guest ignored the button); forcing it off ends the wait.
    let (_, v) = student.get(&format!("/api/vms/{vm_id}")).await;
    assert_eq!(v["state"], "stopping", "{v}");
    let (s, v) = student
        .post_empty(&format!("/api/vms/{vm_id}/poweroff"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "stopped", "{v}");
    assert!(v["stop_deadline"].is_null(), "{v}");
    assert!(v["node_name"].is_null(), "{v}");
}

#[tokio::test]
async fn teacher_imports_an_image_creates_a_course_and_enrols_students() {
    let _serial = one_chromium().await;
    let image = tokio::task::spawn_blocking(common::tiny_image)
        .await
        .unwrap();
    let env = TestEnv::start().await;
    env.user("test-ui-teacher", Role::Teacher).await;
    env.user("test-ui-s1", Role::Student).await;
    env.user("test-ui-s2", Role::Student).await;
    sqlx::query("UPDATE users SET display_name = 'Student One' WHERE username = 'test-ui-s1'")
        .execute(&env.server.state.pool)
        .await
        .unwrap();
    let base = env.server.url();
    let dir = artifact_dir();
    let _ = std::fs::remove_file(dir.join("teacher-class.png"));
    run_script(
        "teacher.mjs",
        &[
            &base,
            "test-ui-teacher",
            PASSWORD,
            image.to_str().unwrap(),
            "test-ui-s1,test-ui-s2",
            dir.to_str().unwrap(),
        ],
    )
    .await;
    assert_png(&dir.join("teacher-class.png"));

    // What the page did is real: the course exists and each student has a VM.
    let s1 = env.client("test-ui-s1").await;
    let (_, courses) = s1.get("/api/courses").await;
    assert_eq!(courses[0]["code"], "test-ui-db", "{courses}");
    assert_eq!(courses[0]["vm_specs"][0]["graphics"], "spice", "{courses}");
    let (_, vms) = s1.get("/api/vms").await;
    assert_eq!(vms.as_array().unwrap().len(), 1, "{vms}");
    assert_eq!(vms[0]["memory_mib"], 256);
    assert_eq!(courses[0]["lab_network"], true, "{courses}");
    assert_eq!(courses[0]["clipboard_to_guest"], false, "{courses}");
    assert_eq!(courses[0]["clipboard_from_guest"], true, "{courses}");
}

/// Derive → seal in the browser (issue 21): match with the form's own
/// placeholders, derive, the build VM's desktop, seal, a course on the new
/// template; a second draft abandoned from the tree in Chinese.
#[tokio::test]
async fn teacher_derives_and_seals_a_template_in_the_browser() {
    let _serial = one_at_a_time().await;
    let env = TestEnv::start().await;
    env.user("test-ui-teacher", Role::Teacher).await;
    let teacher = env.client("test-ui-teacher").await;
    let tpl = import_tiny(&teacher, "test-ui-tiny").await;
    let base = env.server.url();
    let dir = artifact_dir();
    for f in [
        "derive-match.png",
        "derive-desktop.png",
        "derive-sealed.png",
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let args = [
        base.clone(),
        "test-ui-teacher".to_owned(),
        PASSWORD.to_owned(),
        dir.to_str().unwrap().to_owned(),
    ];
    // The page creates the build VMs: whatever the script's fate, their
    // domains are destroyed at the end.
    let script = tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_script("derive.mjs", &args).await;
    })
    .await;
    let (_, vms) = teacher.get("/api/vms").await;
    for id in common::strings(&vms, "id") {
        env.track_vm(id);
    }
    if let Err(e) = script {
        std::panic::resume_unwind(e.into_panic());
    }
    for f in [
        "derive-match.png",
        "derive-desktop.png",
        "derive-sealed.png",
    ] {
        assert_png(&dir.join(f));
    }

    // What the page did is real: a ready child with the added software, no
    // build VM left, the abandoned draft gone, a course on the new template.
    let (_, list) = teacher.get("/api/templates").await;
    let names = common::strings(&list, "name");
    assert!(!names.contains(&"test-ui-tiny-vim"), "{names:?}");
    let child = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "test-ui-tiny-c")
        .unwrap_or_else(|| panic!("no sealed template in {list}"));
    assert_eq!(child["state"], "ready", "{child}");
    assert_eq!(child["parent_id"], tpl["id"], "{child}");
    assert_eq!(child["software"], json!(["busybox", "gcc", "make"]));
    assert_eq!(vms.as_array().unwrap().len(), 0, "build VMs left: {vms}");
    let (_, courses) = teacher.get("/api/courses").await;
    assert_eq!(courses[0]["code"], "test-ui-derived", "{courses}");
    assert_eq!(courses[0]["vm_specs"][0]["template_id"], child["id"]);
}

/// A student's snapshots, export and import in the browser (issue 21), on a
/// real personal layer.
#[tokio::test]
async fn student_snapshots_exports_and_imports_in_the_browser() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-ui-teacher", Role::Teacher).await;
    env.user("test-ui-student", Role::Student).await;
    let teacher = env.client("test-ui-teacher").await;
    let student = env.client("test-ui-student").await;
    let tpl = import_tiny(&teacher, "test-ui-tiny").await;
    let course = course(
        &teacher,
        json!({"code": "test-ui-snap", "name": "Snapshots", "vm_specs": [
                {"name": "linux", "template_id": tpl["id"], "vcpus": 1, "memory_mib": 128}]}),
        &["test-ui-student"],
    )
    .await;
    let vm_id = vm_of(&env, &student, &course, "linux").await;

    let base = env.server.url();
    let dir = artifact_dir();
    let shots = [
        "student-snapshots.png",
        "student-imported.png",
        "student-import-refused-zh.png",
    ];
    let quota = env.server.state.config.snapshot_quota.to_string();
    run_script_shots(
        "snapshots.mjs",
        &[
            &base,
            "test-ui-student",
            PASSWORD,
            dir.to_str().unwrap(),
            &quota,
        ],
        &dir,
        &shots,
    )
    .await;
    // The downloads were real (checked by the script); not kept.
    for f in [
        "test-export.tar",
        "test-export.qcow2",
        "test-not-an-archive.tar",
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    // What the page did is real: the deleted snapshot is gone, the VM stopped.
    let (_, snaps) = student.get(&format!("/api/vms/{vm_id}/snapshots")).await;
    let names = common::strings(&snaps, "name");
    assert!(!names.contains(&"test-extra"), "{names:?}");
    let (_, vm) = student.get(&format!("/api/vms/{vm_id}")).await;
    assert_eq!(vm["state"], "stopped", "{vm}");
}

#[tokio::test]
async fn admin_sees_nodes_and_manages_users() {
    let _serial = one_chromium().await;
    let image = tokio::task::spawn_blocking(common::tiny_image)
        .await
        .unwrap();
    let env = TestEnv::start_with(|c| {
        c.sample_interval_secs = 1;
        // The node form registers libvirt's test driver as a node.
        c.allow_test_nodes = true;
    })
    .await;
    env.user("test-ui-admin", Role::Admin).await;
    env.user("test-ui-teacher", Role::Teacher).await;
    env.user("test-ui-student", Role::Student).await;
    // A running VM, for its load figures and chart in the VM tables.
    let teacher = env.client("test-ui-teacher").await;
    let (status, tpl) = teacher
        .upload(
            "/api/templates/import?name=test-ui-tiny&format=qcow2&os=tiny-linux",
            &image,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tpl}");
    let course = course(
        &teacher,
        json!({"code": "test-ui-load", "name": "Load", "vm_specs": [
                {"name": "linux", "template_id": tpl["id"], "vcpus": 1, "memory_mib": 128}]}),
        &["test-ui-student"],
    )
    .await;
    let student = env.client("test-ui-student").await;
    let vm_id = vm_of(&env, &student, &course, "linux").await;
    let (status, vm) = student.post_empty(&format!("/api/vms/{vm_id}/start")).await;
    assert_eq!(status, StatusCode::OK, "{vm}");

    let base = env.server.url();
    let dir = artifact_dir();
    for f in [
        "admin-users.png",
        "admin-vm-load.png",
        "admin-node-added.png",
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    run_script(
        "admin.mjs",
        &[
            &base,
            "test-ui-admin",
            PASSWORD,
            dir.to_str().unwrap(),
            &vm_id,
        ],
    )
    .await;
    assert_png(&dir.join("admin-nodes.png"));
    assert_png(&dir.join("admin-users.png"));
    assert_png(&dir.join("admin-vm-load.png"));
    // The users the page created can sign in.
    let (_, users) = env.client("test-ui-admin").await.get("/api/users").await;
    let names = common::strings(&users, "username");
    for n in ["test-ui-made", "test-ui-csv1", "test-ui-csv2"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let find = |name: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        find("test-ui-made")["role"],
        "student",
        "role changed in the page"
    );
    assert_eq!(
        find("test-ui-csv1")["disabled"],
        true,
        "disabled in the page"
    );
    assert_png(&dir.join("admin-node.png"));
    assert_png(&dir.join("admin-node-added.png"));
    assert_png(&dir.join("admin-events.png"));
    // The node the page registered is gone again, server-side too.
    let (_, nodes) = env.client("test-ui-admin").await.get("/api/nodes").await;
    let names = common::strings(&nodes, "name");
    assert!(!names.contains(&"test-ui-node"), "{names:?}");
    assert!(names.contains(&"local"), "{names:?}");
}

/// The admin overview of a three-node cluster (the multi-node rig of
/// tests/cluster.rs): three cards, all up, and charts with a line per node;
/// screenshot saved as `admin-cluster.png`.
#[tokio::test]
async fn admin_sees_a_three_node_cluster_with_charts() {
    use common::gate::Heavy;
    let _serial = common::gate::heavy(&[Heavy::Chromium, Heavy::Rig]).await;
    let rig = common::multinode::Rig::up(3).await;
    let env = TestEnv::start_with(|c| {
        c.sample_interval_secs = 1;
        c.allow_tcp_nodes = true; // the rig's nodes
    })
    .await;
    env.user("test-ui-admin", Role::Admin).await;
    let admin = env.client("test-ui-admin").await;
    let ids = common::multinode::register(&admin, &rig).await;
    assert_eq!(ids.len(), 3);
    let base = env.server.url();
    let dir = artifact_dir();
    let _ = std::fs::remove_file(dir.join("admin-cluster.png"));
    run_script(
        "cluster.mjs",
        &[&base, "test-ui-admin", PASSWORD, dir.to_str().unwrap(), "3"],
    )
    .await;
    assert_png(&dir.join("admin-cluster.png"));

    // Node 3 dies: the admin fences it from its card (dialog, then the API).
    rig.kill(3);
    common::multinode::wait_node_state(&admin, &ids[2], "down", Duration::from_secs(30)).await;
    let (_, node) = admin.get(&format!("/api/nodes/{}", ids[2])).await;
    let name = node["name"].as_str().unwrap().to_owned();
    run_script(
        "fence.mjs",
        &[
            &base,
            "test-ui-admin",
            PASSWORD,
            dir.to_str().unwrap(),
            &name,
        ],
    )
    .await;
    assert_png(&dir.join("admin-fence.png"));
    drop(rig);
}

/// Enrols `students` into a new one-VM course (spec `linux`) of `teacher`
/// on `tpl`; the course id and each student's VM id (tracked for clean-up).
async fn course_with(
    env: &TestEnv,
    teacher: &common::Client,
    code: &str,
    tpl: &Value,
    students: &[&str],
) -> (String, Vec<String>) {
    let course = lab::course(
        teacher,
        json!({"code": code, "name": format!("Course {code}"), "vm_specs": [lab::spec("linux", tpl, 192)]}),
        students,
    )
    .await;
    let mut vms = Vec::new();
    for s in students {
        vms.push(lab::vm_of(env, &env.client(s).await, &course, "linux").await);
    }
    (course["id"].as_str().unwrap().to_owned(), vms)
}

/// The teacher's class work in the browser (issue 21): select students for a
/// bulk action, collect a directory from the class (one student wrote files
/// in the guest, the other never started), unenrol a student and delete the
/// course (in Chinese).
#[tokio::test]
async fn teacher_collects_unenrols_and_deletes_a_course_in_the_browser() {
    let _serial = one_at_a_time().await;
    let env = TestEnv::start().await;
    env.user("test-ui-teacher", Role::Teacher).await;
    env.user("test-ui-s1", Role::Student).await;
    env.user("test-ui-s2", Role::Student).await;
    let teacher = env.client("test-ui-teacher").await;
    let tpl = lab::import_tiny(&teacher, "test-ui-tiny").await;
    let (cid, vms) = course_with(
        &env,
        &teacher,
        "test-ui-col",
        &tpl,
        &["test-ui-s1", "test-ui-s2"],
    )
    .await;
    // Student 1 writes their lab work in the guest and shuts down.
    let s1 = env.client("test-ui-s1").await;
    let (status, v) = s1.post_empty(&format!("/api/vms/{}/start", vms[0])).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    common::wait_serial(&env, &vms[0], "BOOT-OK", Duration::from_secs(180)).await;
    common::serial_run(
        &env,
        &vms[0],
        "mkdir -p /root/lab1; echo work-of-s$((0+1)) > /root/lab1/answer.txt; sync; echo DONE-$((40+2))",
        "DONE-42",
    )
    .await;
    let (status, v) = s1
        .post_empty(&format!("/api/vms/{}/shutdown", vms[0]))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    common::wait_vm_gone(&s1, &vms[0]).await;

    let base = env.server.url();
    let dir = artifact_dir();
    let shots = ["teacher-collect.png", "teacher-unenrol-zh.png"];
    run_script_shots(
        "classwork.mjs",
        &[
            &base,
            "test-ui-teacher",
            PASSWORD,
            dir.to_str().unwrap(),
            &cid,
        ],
        &dir,
        &shots,
    )
    .await;
    let _ = std::fs::remove_file(dir.join("test-collected.tar"));
    // What the page did is real: the course and its VMs are gone.
    let (status, _) = teacher.get(&format!("/api/courses/{cid}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, left) = teacher.get("/api/vms").await;
    assert_eq!(left.as_array().unwrap().len(), 0, "{left}");
}

/// An admin finds a user by search (with pages), resets their password with
/// a forced change; the user signs in with it in Chinese and must choose
/// their own first (issue 21).
#[tokio::test]
async fn admin_resets_a_password_and_the_user_must_change_it() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-ui-admin", Role::Admin).await;
    env.user("test-ui-forgetful", Role::Student).await;
    // More users than a page holds.
    for i in 0..30 {
        env.user(&format!("test-ui-p{i:02}"), Role::Student).await;
    }
    let base = env.server.url();
    let dir = artifact_dir();
    let shots = ["admin-reset.png", "password-change-zh.png"];
    run_script_shots(
        "password.mjs",
        &[
            &base,
            "test-ui-admin",
            PASSWORD,
            dir.to_str().unwrap(),
            "test-ui-forgetful",
        ],
        &dir,
        &shots,
    )
    .await;
    // Only the password the user chose works now, and nothing is pending.
    let user = env
        .client_with_password("test-ui-forgetful", "my-newer-secret-8")
        .await;
    let (_, me) = user.get("/api/me").await;
    assert!(me["user"].get("must_change_password").is_none(), "{me}");
    let (status, _) = user.get("/api/vms").await;
    assert_eq!(status, StatusCode::OK);
}

/// Every page in both languages at 1366 and 390 px: axe-core finds no
/// serious or critical violation, nothing scrolls sideways on a phone, and
/// the screenshots land in `target/screens/` (`scripts/screens.sh`).
#[tokio::test]
async fn every_page_passes_axe_in_both_languages_on_desktop_and_phone() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-ui-admin", Role::Admin).await;
    env.user("test-ui-teacher", Role::Teacher).await;
    env.user("test-ui-student", Role::Student).await;
    env.user("test-ui-reset", Role::Student).await;
    sqlx::query("UPDATE users SET must_change_password = 1 WHERE username = 'test-ui-reset'")
        .execute(&env.server.state.pool)
        .await
        .unwrap();
    let teacher = env.client("test-ui-teacher").await;
    let tpl = lab::import_tiny(&teacher, "test-ui-tiny").await;
    let (cid, vms) = course_with(&env, &teacher, "test-ui-pages", &tpl, &["test-ui-student"]).await;
    let (_, nodes) = env.client("test-ui-admin").await.get("/api/nodes").await;
    let node = nodes[0]["id"].as_str().unwrap().to_owned();
    let base = env.server.url();
    let out = common::repo_root().join("target").join("screens");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let ids = json!({
        "admin": "test-ui-admin", "teacher": "test-ui-teacher", "student": "test-ui-student",
        "reset": "test-ui-reset", "courseId": cid, "vmId": vms[0], "nodeId": node,
    })
    .to_string();
    run_script("pages.mjs", &[&base, PASSWORD, out.to_str().unwrap(), &ids]).await;
    for lang in ["en", "zh"] {
        for width in ["1366", "390"] {
            for page in ["login", "student-desktop", "teacher-class", "admin-users"] {
                assert_png(&out.join(format!("{page}-{lang}-{width}.png")));
            }
        }
    }
}

/// The service desk (issue 13) in the browser: a student reports from the
/// desktop page of a running VM (its screenshot attached), staff take it
/// from the queue in Chinese and resolve it, the student confirms and rates it.
#[tokio::test]
async fn a_student_reports_from_the_desktop_and_staff_resolve_it() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-ui-teacher", Role::Teacher).await;
    env.user("test-ui-student", Role::Student).await;
    env.user("test-ui-staff", Role::Staff).await;
    let teacher = env.client("test-ui-teacher").await;
    let student = env.client("test-ui-student").await;
    let tpl = lab::import_tiny(&teacher, "test-ui-tiny").await;
    let course = lab::course(
        &teacher,
        json!({"code": "test-ui-desk", "name": "Desk", "vm_specs": [lab::spec("linux", &tpl, 128)]}),
        &["test-ui-student"],
    )
    .await;
    let vm_id = lab::vm_of(&env, &student, &course, "linux").await;
    let (status, vm) = student.post_empty(&format!("/api/vms/{vm_id}/start")).await;
    assert_eq!(status, StatusCode::OK, "{vm}");
    common::wait_serial(&env, &vm_id, "BOOT-OK", Duration::from_secs(120)).await;

    let base = env.server.url();
    let dir = artifact_dir();
    let shots = [
        "desk-report.png",
        "desk-queue-zh.png",
        "desk-staff-zh.png",
        "desk-closed.png",
        "desk-callback-zh.png",
        "desk-kb-suggestion.png",
        "desk-problem-zh.png",
        "desk-stats-zh.png",
    ];
    run_script_shots(
        "desk.mjs",
        &[
            &base,
            "test-ui-student",
            "test-ui-staff",
            PASSWORD,
            &vm_id,
            dir.to_str().unwrap(),
        ],
        &dir,
        &shots,
    )
    .await;
    // What the pages did is real.
    let (_, tickets) = student.get("/api/tickets").await;
    let t = &tickets[0];
    assert_eq!(t["state"], "closed", "{t}");
    assert_eq!(t["rating"], 4);
    assert_eq!(t["has_screenshot"], true);
    assert_eq!(t["vm_id"], vm_id.as_str());
    assert_eq!(t["assignee_name"], "test-ui-staff");
    // One ticket only: the second problem was answered by the article.
    assert_eq!(tickets.as_array().unwrap().len(), 1, "{tickets}");
    let (_, articles) = student.get("/api/kb").await;
    assert_eq!(articles[0]["title"], "桌面卡住不动", "{articles}");
    assert_eq!(articles[0]["helped"], 1);
    assert_eq!(articles[0]["ticket_id"], t["id"]);
}

/// The desk's SLA in the browser (issue 13): coloured countdowns in the
/// queue at each level and paused while waiting, escalations in the
/// timeline, the SLA settings page (staff read, admins write, bad values
/// refused) and the stats charts, in Chinese and English.
#[tokio::test]
async fn the_queue_shows_sla_levels_and_admins_edit_sla_settings() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    let admin_u = env.user("test-sla-admin", Role::Admin).await;
    let staff_u = env.user("test-sla-staff", Role::Staff).await;
    env.user("test-sla-student", Role::Student).await;
    let admin = env.client("test-sla-admin").await;
    let staff = env.client("test-sla-staff").await;
    let student = env.client("test-sla-student").await;
    let _ = admin_u;
    // Response 1 h, resolution 10 h, 7×24: the levels do not depend on the hour.
    let target =
        json!({"response_minutes": 60, "resolution_minutes": 600, "around_the_clock": true});
    let (s, p) = admin
        .send(
            reqwest::Method::PUT,
            "/api/desk/sla",
            Some(json!({"p1": target, "p2": target, "p3": target, "p4": target})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");

    // Tickets reported 0, 35, 50 and 70 minutes ago (their report time
    // set back in the database: the clocks read it), one waiting.
    let now = time::OffsetDateTime::now_utc();
    let mut ids = serde_json::Map::new();
    for (key, age) in [
        ("ok", 0),
        ("half", 35),
        ("three", 50),
        ("late", 70),
        ("paused", 5),
    ] {
        let (s, t) = student
            .post(
                "/api/tickets",
                json!({"kind": "incident", "title": format!("sla {key}")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        assert_eq!(t["priority"], "P3", "{t}");
        let id = t["id"].as_str().unwrap().to_owned();
        let at = pvce::db::format_time(now - time::Duration::minutes(age));
        sqlx::query("UPDATE tickets SET created_at = $1 WHERE id = $2")
            .bind(&at)
            .bind(&id)
            .execute(&env.server.state.pool)
            .await
            .unwrap();
        ids.insert(key.into(), json!(id));
    }
    let paused = ids["paused"].as_str().unwrap();
    let (s, t) = staff
        .post(
            &format!("/api/tickets/{paused}/assign"),
            json!({"assignee_id": staff_u["id"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let (s, t) = staff
        .post(
            &format!("/api/tickets/{paused}/state"),
            json!({"state": "waiting"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    // The escalation pass at the test's instant: the late ticket crossed
    // 50, 75 and 100 % of its response target.
    let desk = env.server.state.desk.clone();
    assert_eq!(desk.escalate(now).await.unwrap(), 1 + 2 + 3);

    let base = env.server.url();
    let dir = artifact_dir();
    let shots = [
        "desk-sla-queue.png",
        "desk-sla-timeline-zh.png",
        "desk-sla-settings.png",
        "desk-sla-stats.png",
    ];
    let ids = Value::Object(ids).to_string();
    run_script_shots(
        "desk-sla.mjs",
        &[
            &base,
            "test-sla-admin",
            "test-sla-staff",
            PASSWORD,
            &ids,
            dir.to_str().unwrap(),
        ],
        &dir,
        &shots,
    )
    .await;
    // What the admin saved is what the server holds.
    let (_, p) = staff.get("/api/desk/sla").await;
    assert_eq!(p["p2"]["response_minutes"], 45, "{p}");
    assert_eq!(p["p2"]["resolution_minutes"], 180, "{p}");
    assert_eq!(p["p4"]["around_the_clock"], false, "{p}");
    assert_eq!(p["p1"]["response_minutes"], 60, "{p}");
    let (_, c) = staff.get("/api/desk/calendar").await;
    assert_eq!(
        c["week"]["mon"],
        json!(["09:00-12:00", "13:00-18:00"]),
        "{c}"
    );
    assert_eq!(c["holidays"], json!(["2026-10-01", "2026-10-02"]), "{c}");
}

/// The notification bell (issue 13): a student's complaint gets an admin's
/// written reply, their incident a comment and a resolution; the
/// notifications loop of the real server writes their in-app rows; in the
/// browser the bell counts them, the list opens one (marked read, its ticket
/// shown), shows them in Chinese, marks all read, the complaint shows the
/// lab's reply, and the settings page refuses a webhook outside the allowed
/// prefixes and saves; a teacher links their software request to a template.
#[tokio::test]
async fn a_student_reads_notifications_from_the_bell_in_both_languages() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-ui-nstudent", Role::Student).await;
    let staff_id = env.user("test-ui-nstaff", Role::Staff).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.user("test-ui-nadmin", Role::Admin).await;
    env.user("test-ui-nteacher", Role::Teacher).await;
    let teacher = env.client("test-ui-nteacher").await;
    // A teacher's request for software, to link to a template in the page.
    let (status, r) = teacher
        .post(
            "/api/tickets",
            json!({"kind": "request", "title": "Install MATLAB for my course"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let rid = r["id"].as_str().unwrap().to_owned();
    let student = env.client("test-ui-nstudent").await;
    let staff = env.client("test-ui-nstaff").await;
    let admin = env.client("test-ui-nadmin").await;
    // A complaint an admin answered in writing (the oldest notification).
    let (status, c) = student
        .post(
            "/api/tickets",
            json!({"kind": "complaint", "title": "The lab was locked"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let cid = c["id"].as_str().unwrap().to_owned();
    let (status, v) = admin
        .post(
            &format!("/api/tickets/{cid}/reply"),
            json!({"text": "Sorry: the doors now open at 8:00."}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, t) = student
        .post(
            "/api/tickets",
            json!({"kind": "incident", "title": "The VM is slow"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    for (path, body, want) in [
        ("assign", json!({"assignee_id": staff_id}), StatusCode::OK),
        (
            "comments",
            json!({"text": "Looking into it"}),
            StatusCode::CREATED,
        ),
        (
            "resolve",
            json!({"resolution": "Moved it to a quieter node"}),
            StatusCode::OK,
        ),
    ] {
        let (status, v) = staff.post(&format!("/api/tickets/{id}/{path}"), body).await;
        assert_eq!(status, want, "{path}: {v}");
    }
    // The server's own loop turns the timeline into notifications.
    common::wait_for(
        "the notifications loop",
        Duration::from_secs(30),
        || async {
            let (_, page) = student.get("/api/me/notifications").await;
            (page["unread"] == 3).then_some(())
        },
    )
    .await;

    let dir = artifact_dir();
    let shots = [
        "notices-list-en.png",
        "notices-list-zh.png",
        "notices-reply-zh.png",
        "notices-settings-zh.png",
        "notices-template-zh.png",
    ];
    run_script_shots(
        "notices.mjs",
        &[
            &env.server.url(),
            "test-ui-nstudent",
            PASSWORD,
            &id,
            &cid,
            "test-ui-nteacher",
            &rid,
            dir.to_str().unwrap(),
        ],
        &dir,
        &shots,
    )
    .await;
    // What the pages did is real.
    let (_, page) = student.get("/api/me/notifications").await;
    assert_eq!(page["unread"], 0, "{page}");
    let (_, set) = student.get("/api/me/notification-settings").await;
    assert_eq!(set["email"], "student@lab.example", "{set}");
    assert_eq!(set["lang"], "en");
    assert_eq!(set["webhook_url"], Value::Null);
    assert_eq!(set["events"]["commented"]["email"], false);
    assert_eq!(set["events"]["resolved"]["email"], true);
    // The teacher linked their request to the (sealed) root template: the
    // server wrote its work-log line at once.
    let (_, v) = teacher.get(&format!("/api/tickets/{rid}")).await;
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "template_linked", "worklog"], "{v}");
}

/// Service levels (issue 14) in the browser: the admin's SLO page (a
/// refused start shows as 0 % start success, overspent, burning at 100×;
/// a target set through the form) and a student's status page with the
/// status dot, in both languages.
#[tokio::test]
async fn admin_reads_the_slo_page_and_a_student_the_status_page() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    let lab = lab::course_with_student_vm(&env, "test-ui-slo").await;
    env.user("test-ui-admin", Role::Admin).await;
    let admin = env.client("test-ui-admin").await;
    let (_, nodes) = admin.get("/api/nodes").await;
    let node = nodes[0]["id"].as_str().unwrap().to_owned();
    // A start refused while the only node is in maintenance.
    let maint = format!("/api/nodes/{node}/maintenance");
    let (s, v) = admin.post(&maint, json!({"enabled": true})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = lab
        .alice
        .post_empty(&format!("/api/vms/{}/start", lab.vm))
        .await;
    assert!(!s.is_success(), "{v}");
    let (s, v) = admin.post(&maint, json!({"enabled": false})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // An open system incident (as the desk opens them), its title with
    // markup, answered within its response SLA (the ticket-response
    // objective: 1 of 1).
    let title = "<b>Node lab-2 down</b>";
    sqlx::query(
        "INSERT INTO tickets (id, number, kind, title, description, state, priority, impact,
         urgency, channel, reporter_id, created_by, created_at, updated_at, responded_at)
         SELECT 'test-incident', 9001, 'incident', $1, 'test', 'in_progress', 'P2', 'class', 'blocked',
         'system', id, id, $2, $3, $4 FROM users WHERE username = 'test-ui-admin'",
    )
    .bind(title)
    .bind(pvce::db::now())
    .bind(pvce::db::now())
    .bind(pvce::db::now())
    .execute(&env.server.state.pool)
    .await
    .unwrap();

    // The node's template store, as the alert loop records its use: up one
    // point a day to 50 % now — full in 50 days by the trend.
    let now_s = time::OffsetDateTime::now_utc().unix_timestamp();
    for k in 0..5i64 {
        sqlx::query(
            "INSERT INTO alert_samples (series, subject, at, value) VALUES ('store', $1, $2, $3) ON CONFLICT (series, subject, at) DO UPDATE SET value = excluded.value",
        )
        .bind(&node)
        .bind(now_s - (4 - k) * 86_400)
        .bind(46.0 + k as f64)
        .execute(&env.server.state.pool)
        .await
        .unwrap();
    }

    // A class pre-started 70 minutes ago for a session an hour ago, its
    // two VMs usable 40 and 95 s later (as the class-time loop records).
    let (_, courses) = admin.get("/api/courses").await;
    let course = uuid::Uuid::parse_str(courses[0]["id"].as_str().unwrap()).unwrap();
    let pre_ms = (now_s - 70 * 60) * 1000;
    let vms = [
        uuid::Uuid::parse_str(&lab.vm).unwrap(),
        uuid::Uuid::new_v4(),
    ];
    let pool = &env.server.state.pool;
    pvce::slo::record::class_prestart(
        pool,
        course,
        (pre_ms + 600_000, pre_ms + 600_000 + 45 * 60_000),
        pre_ms,
        &vms,
    )
    .await;
    pvce::slo::record::class_vm_started(pool, vms[0], pre_ms + 40_000, true).await;
    pvce::slo::record::class_vm_started(pool, vms[1], pre_ms + 95_000, true).await;

    let base = env.server.url();
    let dir = artifact_dir();
    let shots = ["slo-en.png", "slo-zh.png", "status-zh.png", "status-en.png"];
    run_script_shots(
        "slo.mjs",
        &[
            &base,
            "test-ui-admin",
            "test-alice",
            PASSWORD,
            dir.to_str().unwrap(),
            title,
        ],
        &dir,
        &shots,
    )
    .await;
    let (_, r) = admin.get("/api/slo").await;
    let p95 = r["objectives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["indicator"] == "start_p95")
        .unwrap();
    assert_eq!(p95["target"], 90.0, "the form's target is stored");
}

/// Alerts and the daily inspection (issue 14) in the browser, both
/// languages: staff acknowledge a critical alert and read the rules, an
/// admin edits them (a bad rule refused) and runs an inspection.
#[tokio::test]
async fn staff_acknowledge_an_alert_and_an_admin_edits_rules_and_runs_an_inspection() {
    let _serial = one_chromium().await;
    let env = crate::alerts::env().await;
    env.user("test-ui-al-staff", Role::Staff).await;
    env.user("test-ui-al-admin", Role::Admin).await;
    let admin = env.client("test-ui-al-admin").await;
    let id = crate::alerts::fire_memory_alert(&env, &admin).await;
    let base = env.server.url();
    let dir = artifact_dir();
    let shots = [
        "alerts-en.png",
        "alert-rules-zh.png",
        "inspections-en.png",
        "inspections-zh.png",
    ];
    run_script_shots(
        "alerts.mjs",
        &[
            &base,
            "test-ui-al-staff",
            "test-ui-al-admin",
            PASSWORD,
            dir.to_str().unwrap(),
        ],
        &dir,
        &shots,
    )
    .await;
    // What the pages did is real.
    let (_, list) = admin.get("/api/alerts?rule=node_memory").await;
    let a = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap();
    assert_eq!(a["state"], "acknowledged", "{a}");
    assert_eq!(a["acknowledged_by"], "test-ui-al-staff");
    let (_, rules) = admin.get("/api/alerts/rules").await;
    let mem = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "node_memory")
        .unwrap();
    assert_eq!(mem["threshold"]["critical"], 96.0, "{mem}");
    assert_eq!(
        mem["threshold"]["warning"], 90.0,
        "the refused change was not stored"
    );
    let (_, insp) = admin.get("/api/inspections").await;
    assert_eq!(insp.as_array().unwrap().len(), 1, "{insp}");
    assert_eq!(insp[0]["requested_by"], "test-ui-al-admin");
}

#[tokio::test]
async fn admin_publishes_a_service_report_and_a_teacher_reads_it() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    let mut ids = Vec::new();
    for (name, role) in [
        ("test-ui-radmin", Role::Admin),
        ("test-ui-rteacher", Role::Teacher),
        ("test-ui-rstudent", Role::Student),
        ("test-ui-rstaff", Role::Staff),
    ] {
        let u = env.user(name, role).await;
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    crate::reports::fixture(&env, &ids[2], &ids[3], &ids[3]).await;
    let base = env.server.url();
    let dir = artifact_dir();
    let shots = [
        "reports-draft-zh.png",
        "reports-published-zh.png",
        "reports-teacher-en.png",
    ];
    run_script_shots(
        "reports.mjs",
        &[
            &base,
            "test-ui-radmin",
            "test-ui-rteacher",
            PASSWORD,
            dir.to_str().unwrap(),
        ],
        &dir,
        &shots,
    )
    .await;
    // What the page did is real.
    let admin = env.client("test-ui-radmin").await;
    let (_, list) = admin.get("/api/reports").await;
    let r = &list[0];
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(r["state"], "published", "{r}");
    assert_eq!(r["from"], "2026-03-02T00:00:00Z");
    assert!(r["texts"]["plan"].as_str().unwrap().contains("P3"), "{r}");
}

/// Knowledge-base editing in the browser (issue 13): staff edit an article
/// in Chinese (a new revision, the history lists both), an admin retires it
/// in English after a confirmation; it leaves search and stays readable by
/// staff. A system incident's title is worded in each reader's language.
#[tokio::test]
async fn staff_edit_an_article_and_an_admin_retires_it() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-kbui-admin", Role::Admin).await;
    env.user("test-kbui-staff", Role::Staff).await;
    env.user("test-kbui-student", Role::Student).await;
    let staff = env.client("test-kbui-staff").await;
    let student = env.client("test-kbui-student").await;
    let (s, a) = staff
        .post(
            "/api/kb",
            json!({"title": "虚拟机黑屏", "symptom": "打开控制台只看到黑屏 black screen", "fix": "重启虚拟机。", "lang": "zh-CN"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let id = a["id"].as_str().unwrap().to_owned();
    // A system incident (as Desk::node_changed writes it): its stored
    // title is English; the pages word it from context.system.
    let (s, t) = student
        .post("/api/tickets", json!({"kind": "incident", "title": "x"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let system_id = t["id"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE tickets SET channel = 'system', title = $1, context = $2 WHERE id = $3")
        .bind("Node test-node-7 is down (3 users affected)")
        .bind(
            json!({"system": {"kind": "node_down", "node": "test-node-7", "users": 3}}).to_string(),
        )
        .bind(&system_id)
        .execute(&env.server.state.pool)
        .await
        .unwrap();

    let base = env.server.url();
    let dir = artifact_dir();
    let shots = ["desk-kb-history-zh.png", "desk-kb-retire-en.png"];
    run_script_shots(
        "desk-kb.mjs",
        &[
            &base,
            "test-kbui-admin",
            "test-kbui-staff",
            PASSWORD,
            &id,
            dir.to_str().unwrap(),
            &system_id,
        ],
        &dir,
        &shots,
    )
    .await;
    // What the pages did is real.
    let (_, a) = staff.get(&format!("/api/kb/{id}")).await;
    assert_eq!(a["revision"], 2, "{a}");
    assert_eq!(a["fix"], "先关机，再开机；仍黑屏就报修。", "{a}");
    assert_eq!(a["editor_name"], "test-kbui-staff", "{a}");
    assert!(a["archived_at"].is_string(), "{a}");
    let (_, revs) = staff.get(&format!("/api/kb/{id}/revisions")).await;
    assert_eq!(revs[1]["fix"], "重启虚拟机。", "{revs}");
    let (s, _) = student.get(&format!("/api/kb/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// A course with the clipboard off (an exam, issue 18): the student's
/// desktop page says so in both languages and offers no way to paste —
/// neither the "paste as typing" panel nor Ctrl+V — read from the real
/// course; the VM need not run for that.
#[tokio::test]
async fn a_course_without_clipboard_hides_pasting_on_the_desktop() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-web-clip-teacher", Role::Teacher).await;
    env.user("test-web-clip-student", Role::Student).await;
    let teacher = env.client("test-web-clip-teacher").await;
    let student = env.client("test-web-clip-student").await;
    let tpl = import_tiny(&teacher, "test-web-clip-tiny").await;
    let exam = course(
        &teacher,
        json!({"code": "test-web-exam", "name": "Exam", "clipboard_to_guest": false,
               "clipboard_from_guest": false, "vm_specs": [lab::spec("linux", &tpl, 256)]}),
        &["test-web-clip-student"],
    )
    .await;
    let vm_id = vm_of(&env, &student, &exam, "linux").await;
    let base = env.server.url();
    let dir = artifact_dir();
    run_script(
        "clipboard.mjs",
        &[
            &base,
            "test-web-clip-student",
            PASSWORD,
            &vm_id,
            dir.to_str().unwrap(),
        ],
    )
    .await;
}

/// The navigation (grouped side bar, a menu on phones) for every role in both
/// languages at 1920, 1280 and 360 px: the entries each role may use, the
/// keyboard, and a top bar that never sticks out of the viewport.
#[tokio::test]
async fn every_role_navigates_by_keyboard_and_the_top_bar_fits_from_phone_to_wide_screen() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    let users = json!({
        "student": "test-nav-student",
        "teacher": "test-nav-teacher",
        "staff": "test-nav-staff",
        "admin": "test-nav-admin",
    });
    env.user("test-nav-student", Role::Student).await;
    env.user("test-nav-teacher", Role::Teacher).await;
    env.user("test-nav-staff", Role::Staff).await;
    env.user("test-nav-admin", Role::Admin).await;
    let base = env.server.url();
    let dir = artifact_dir();
    let shots = [
        "nav-admin-en-1280.png",
        "nav-admin-zh-1280.png",
        "nav-admin-en-360-open.png",
        "nav-admin-zh-360-open.png",
    ];
    run_script_shots(
        "nav.mjs",
        &[&base, PASSWORD, dir.to_str().unwrap(), &users.to_string()],
        &dir,
        &shots,
    )
    .await;
}

/// The rescue serial console and any keyboard layout in the browser (issue
/// 18), on one running tiny guest: the student opens "Serial console" on the
/// desktop page, types a command in the xterm.js terminal, and its output
/// (computed by the guest's shell) appears; both languages; back to the
/// screen. Then French and German strings with AltGr are typed on the
/// desktop, and the guest's /dev/input shows the keys at their physical
/// positions (QEMU extended key events, no server keymap).
#[tokio::test]
async fn serial_console_and_keyboard_layouts_in_the_browser() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-web-serial-teacher", Role::Teacher).await;
    env.user("test-web-serial-student", Role::Student).await;
    let teacher = env.client("test-web-serial-teacher").await;
    let student = env.client("test-web-serial-student").await;
    let tpl = import_tiny(&teacher, "test-web-serial-tiny").await;
    let c = course(
        &teacher,
        json!({"code": "test-web-serial", "name": "Serial", "vm_specs": [lab::spec("linux", &tpl, 256)]}),
        &["test-web-serial-student"],
    )
    .await;
    let vm_id = vm_of(&env, &student, &c, "linux").await;
    let (s, v) = student.post_empty(&format!("/api/vms/{vm_id}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    common::wait_serial(&env, &vm_id, "BOOT-OK", Duration::from_secs(180)).await;
    let dir = artifact_dir();
    run_script_shots(
        "serial.mjs",
        &[
            &env.server.url(),
            "test-web-serial-student",
            PASSWORD,
            &vm_id,
            dir.to_str().unwrap(),
        ],
        &dir,
        &["desktop-serial-en.png", "desktop-serial-zh.png"],
    )
    .await;
    run_script(
        "keyboard.mjs",
        &[
            &env.server.url(),
            "test-web-serial-student",
            PASSWORD,
            &vm_id,
            dir.to_str().unwrap(),
        ],
    )
    .await;
    // The page closed its serial session ("Back to the screen").
    let (s, v) = student
        .post_empty(&format!("/api/vms/{vm_id}/poweroff"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// A teacher turns a clipboard direction of an existing course off on the
/// class page (issue 18); the API then has it off, the other one on.
#[tokio::test]
async fn a_teacher_edits_the_clipboard_switches_of_an_existing_course() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-web-clipedit-teacher", Role::Teacher).await;
    let teacher = env.client("test-web-clipedit-teacher").await;
    let tpl = import_tiny(&teacher, "test-web-clipedit-tiny").await;
    let c = course(
        &teacher,
        json!({"code": "test-web-clipedit", "name": "Exam later", "vm_specs": [lab::spec("linux", &tpl, 256)]}),
        &[],
    )
    .await;
    let id = c["id"].as_str().unwrap();
    let dir = artifact_dir();
    run_script(
        "clipedit.mjs",
        &[
            &env.server.url(),
            "test-web-clipedit-teacher",
            PASSWORD,
            id,
            dir.to_str().unwrap(),
        ],
    )
    .await;
    let (s, c) = teacher.get(&format!("/api/courses/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["clipboard_to_guest"], false, "{c}");
    assert_eq!(c["clipboard_from_guest"], true, "{c}");
    assert_eq!(c["clipboard_agent"], false, "{c}");
}

/// Backups in the browser (tests/browser/backups.mjs): the admin runs one
/// from the Backups page against a real restic repository while the
/// student's VM runs, the student sees the point marked as taken while
/// running, stops the VM and restores the point from the VM's panel.
#[tokio::test]
async fn admin_runs_a_backup_and_the_student_restores_it_in_the_browser() {
    let _serial = one_chromium().await;
    let (_repo_dir, repo) = crate::backups::repository();
    let repo = repo.to_string_lossy().into_owned();
    let env = TestEnv::start_with(|c| c.backup_repo = Some(repo)).await;
    env.user("test-ui-admin", Role::Admin).await;
    env.user("test-ui-teacher", Role::Teacher).await;
    env.user("test-ui-student", Role::Student).await;
    let teacher = env.client("test-ui-teacher").await;
    let student = env.client("test-ui-student").await;
    let tpl = import_tiny(&teacher, "test-ui-tiny").await;
    let course = course(
        &teacher,
        json!({"code": "test-ui-bk", "name": "Backups", "vm_specs": [
                {"name": "linux", "template_id": tpl["id"], "vcpus": 1, "memory_mib": 128}]}),
        &["test-ui-student"],
    )
    .await;
    let vm_id = vm_of(&env, &student, &course, "linux").await;
    // Running while the admin's backup runs: copied live.
    let (s, v) = student.post_empty(&format!("/api/vms/{vm_id}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let dir = artifact_dir();
    let shots = [
        "backups-en.png",
        "backups-zh.png",
        "student-backup-files.png",
        "student-restored.png",
    ];
    run_script_shots(
        "backups.mjs",
        &[
            &env.server.url(),
            "test-ui-admin",
            "test-ui-student",
            PASSWORD,
            dir.to_str().unwrap(),
        ],
        &dir,
        &shots,
    )
    .await;
    // What the pages did is real: a run by the admin, a restore by the student.
    let by: String = sqlx::query_scalar("SELECT requested_by FROM backup_runs")
        .fetch_one(&env.server.state.pool)
        .await
        .unwrap();
    assert_eq!(by, "test-ui-admin");
    let by: String = sqlx::query_scalar("SELECT by_user FROM backup_restores WHERE vm_id = $1")
        .bind(&vm_id)
        .fetch_one(&env.server.state.pool)
        .await
        .unwrap();
    assert_eq!(by, "test-ui-student");
}

/// Campus sign-in (tests/it/sso.rs has the protocol's refusals): the login
/// page's provider button in both languages, the real OpenID Connect
/// provider's page in the same browser, back signed in with the role the
/// rules gave, and signing out through the provider.
#[tokio::test]
async fn campus_sign_in_through_the_login_page() {
    let _serial = one_chromium().await;
    let op = crate::sso::Provider::start().await;
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = op.auth_file(auth_dir.path());
    let env = TestEnv::start_with(|c| c.auth_config = Some(auth_file)).await;
    op.set_user(
        "u-web-alice",
        json!({"preferred_username": "test-web-alice", "eduPersonAffiliation": ["faculty"]}),
    )
    .await;
    let port = loopback_port(&op.url).unwrap();
    // The provider, like the server, reached from the browser's namespace.
    let bridge = LoopbackBridge::to(port);
    let dir = artifact_dir();
    let shots = ["sso-login-en.png", "sso-login-zh.png", "sso-signed-in.png"];
    run_script_shots(
        "sso.mjs",
        &[
            &env.server.url(),
            &port.to_string(),
            bridge.path.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
        &dir,
        &shots,
    )
    .await;
}

/// Campus sign-in through CAS (tests/it/cas.rs has the protocol's
/// refusals and single sign-out): the CAS button in both languages, the real
/// CAS server's login page filled in Chromium (a wrong password refused
/// there), back signed in as the student the attributes make, and signing
/// out through the CAS logout.
#[tokio::test]
async fn cas_sign_in_through_the_login_page() {
    let _serial = one_chromium().await;
    let cas = crate::cas::CasServer::start().await;
    cas.set_users(json!({
        "test-web-li": {"password": "pw-web-li", "attributes": {"uid": "test-web-li", "personCategory": "02"}}
    }));
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = cas.auth_file(auth_dir.path());
    let env = TestEnv::start_with(|c| c.auth_config = Some(auth_file)).await;
    let port = loopback_port(&cas.url).unwrap();
    let bridge = LoopbackBridge::to(port);
    let dir = artifact_dir();
    let shots = ["cas-login-en.png", "cas-login-zh.png", "cas-signed-in.png"];
    run_script_shots(
        "cas.mjs",
        &[
            &env.server.url(),
            &port.to_string(),
            bridge.path.to_str().unwrap(),
            "test-web-li",
            "pw-web-li",
            dir.to_str().unwrap(),
        ],
        &dir,
        &shots,
    )
    .await;
}

/// Campus sign-in with an LDAP directory (tests/it/ldap.rs has the
/// protocol's refusals): the directory's button turns the login form into
/// its form in both languages; a wrong password is refused in place; the
/// right one signs a faculty member in as a teacher.
#[tokio::test]
async fn directory_sign_in_through_the_login_page() {
    let _serial = one_chromium().await;
    let slapd = crate::ldap::Slapd::start().await;
    slapd.ready().await;
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = slapd.auth_file(auth_dir.path());
    let env = TestEnv::start_with(|c| c.auth_config = Some(auth_file)).await;
    let dir = artifact_dir();
    let shots = [
        "ldap-login-en.png",
        "ldap-login-zh.png",
        "ldap-signed-in.png",
    ];
    run_script_shots(
        "ldap.mjs",
        &[
            &env.server.url(),
            "test-prof",
            crate::ldap::password_of("test-prof"),
            dir.to_str().unwrap(),
        ],
        &dir,
        &shots,
    )
    .await;
}

/// A course's directory group and the admin's directory sync: the teacher
/// links the course on the class page; the admin previews and runs a sync
/// that disables the person the directory marked gone.
#[tokio::test]
async fn teacher_links_a_course_and_admin_syncs_the_directory() {
    let _serial = one_chromium().await;
    let slapd = crate::ldap::Slapd::start().await;
    slapd.ready().await;
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = slapd.auth_file(auth_dir.path());
    let env = TestEnv::start_with(|c| c.auth_config = Some(auth_file)).await;
    env.user("test-ui-dir-teacher", Role::Teacher).await;
    env.user("test-ui-dir-admin", Role::Admin).await;
    let teacher = env.client("test-ui-dir-teacher").await;
    let tpl = import_tiny(&teacher, "test-ui-dir-tiny").await;
    let course = course(
        &teacher,
        json!({"code": "CS101", "name": "Linked", "vm_specs": [crate::common::lab::spec("linux", &tpl, 128)]}),
        &[],
    )
    .await;
    let (s, _, _) = crate::ldap::ldap_login(
        &env,
        "ldap",
        "test-prof",
        crate::ldap::password_of("test-prof"),
    )
    .await;
    assert_eq!(s, reqwest::StatusCode::OK);
    slapd.set("test-prof", "employeeType", &["gone"]).await;
    let dir = artifact_dir();
    let shots = [
        "course-link-en.png",
        "dirsync-preview-en.png",
        "dirsync-done-zh.png",
    ];
    run_script_shots(
        "dirsync.mjs",
        &[
            &env.server.url(),
            "test-ui-dir-teacher",
            "test-ui-dir-admin",
            PASSWORD,
            course["id"].as_str().unwrap(),
            "test-prof",
            dir.to_str().unwrap(),
        ],
        &dir,
        &shots,
    )
    .await;
    let prof = pvce::users::find_with_hash(&env.server.state.pool, "test-prof")
        .await
        .unwrap()
        .unwrap();
    assert!(
        prof.0.disabled,
        "the sync the page ran disabled the account"
    );
}

/// The audit log page (issue 16): filters, pages, the CSV, both languages,
/// and a hostile name typed at the sign-in form shown as text.
#[tokio::test]
async fn admin_reads_filters_and_downloads_the_audit_log() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-ui-auditor", Role::Admin).await;
    let hostile = "<img src=x onerror=window.__pwned=1>";
    let res = reqwest::Client::new()
        .post(env.url("/api/auth/login"))
        .json(&json!({"username": hostile, "password": "wrong-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::UNAUTHORIZED);
    // Enough entries for two pages (recorded as a service would).
    for i in 0..55 {
        pvce::audit::record(
            &env.server.state.pool,
            pvce::audit::Entry::new(
                pvce::audit::Actor::named(&format!("test-ui-filler-{i}")),
                pvce::audit::Action::SignOut,
                pvce::audit::Target::settings("filler"),
            ),
        )
        .await;
    }
    let dir = artifact_dir();
    let shots = ["audit-en.png", "audit-zh.png"];
    run_script_shots(
        "audit.mjs",
        &[
            &env.server.url(),
            "test-ui-auditor",
            PASSWORD,
            hostile,
            dir.to_str().unwrap(),
        ],
        &dir,
        &shots,
    )
    .await;
}

/// A course's timetable in the browser (issue 15): the teacher adds, edits,
/// imports (.ics) and deletes sessions; the student sees the next ones on
/// the course card in English and Chinese. No VM runs.
#[tokio::test]
async fn teacher_keeps_a_timetable_and_the_student_sees_it_in_the_browser() {
    let _serial = one_chromium().await;
    // No class-time loop: it would pre-start the VM of the ongoing session
    // below (a guest booting beside Chromium); the page only reads.
    let env = TestEnv::start_with(|c| c.class_interval_secs = 0).await;
    env.user("test-ui-tt-teacher", Role::Teacher).await;
    env.user("test-ui-tt-student", Role::Student).await;
    let teacher = env.client("test-ui-tt-teacher").await;
    let tpl = lab::import_tiny(&teacher, "test-ui-tt-tiny").await;
    let course = lab::course(
        &teacher,
        json!({"code": "test-ui-tt", "name": "Timetabled", "vm_specs": [lab::spec("linux", &tpl, 192)]}),
        &["test-ui-tt-student"],
    )
    .await;
    let cid = course["id"].as_str().unwrap();
    // A second course of the student's, in a session that ends in ten
    // minutes (real time: the desktop page asks the server with its clock).
    let ongoing = lab::course(
        &teacher,
        json!({"code": "test-ui-tt-now", "name": "Now", "vm_specs": [lab::spec("linux", &tpl, 192)]}),
        &["test-ui-tt-student"],
    )
    .await;
    let now = time::OffsetDateTime::now_utc();
    let (status, v) = teacher
        .post(
            &format!("/api/courses/{}/sessions", ongoing["id"].as_str().unwrap()),
            json!({"starts_at": pvce::db::format_time(now - time::Duration::minutes(30)),
                   "ends_at": pvce::db::format_time(now + time::Duration::minutes(10))}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    // Its teacher allows 15 more minutes: the warning offers them.
    let (status, v) = teacher
        .send(
            reqwest::Method::PUT,
            &format!("/api/courses/{}/extension", ongoing["id"].as_str().unwrap()),
            Some(json!({"allowed": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let student = env.client("test-ui-tt-student").await;
    let vm_now = lab::vm_of(&env, &student, &ongoing, "linux").await;
    let base = env.server.url();
    let dir = artifact_dir();
    let shots = [
        "timetable-teacher.png",
        "timetable-student.png",
        "timetable-warning-zh.png",
    ];
    run_script_shots(
        "timetable.mjs",
        &[
            &base,
            "test-ui-tt-teacher",
            "test-ui-tt-student",
            PASSWORD,
            dir.to_str().unwrap(),
            cid,
            &vm_now,
        ],
        &dir,
        &shots,
    )
    .await;
    let _ = std::fs::remove_file(dir.join("test-timetable.ics"));
    // What the page did is real: one weekly session, edited, is left.
    let (status, list) = teacher.get(&format!("/api/courses/{cid}/sessions")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["title"], "OS lab A");
    assert_eq!(list[0]["starts_at"], "2030-09-02T02:00:00Z");
    assert_eq!(list[0]["weekly_until"], "2030-10-14");
    assert_eq!(list[0]["exceptions"], json!(["2030-09-30"]));
}

/// Hours and quotas in the browser (issue 15): the teacher reads a
/// student's usage, sets the course's budget and grants an extra hour; the
/// student sees hours used and left in English and Chinese; the admin sets
/// the limits per user. No VM runs: the power history is written as the VM
/// manager would have, at chosen times in the past.
#[tokio::test]
async fn teacher_sets_quotas_and_the_student_sees_hours_left_in_the_browser() {
    let _serial = one_chromium().await;
    let env = TestEnv::start_with(|c| c.class_interval_secs = 0).await;
    env.user("test-ui-q-teacher", Role::Teacher).await;
    env.user("test-ui-q-student", Role::Student).await;
    env.user("test-ui-q-admin", Role::Admin).await;
    let teacher = env.client("test-ui-q-teacher").await;
    let tpl = lab::import_tiny(&teacher, "test-ui-q-tiny").await;
    let course = lab::course(
        &teacher,
        json!({"code": "test-ui-q", "name": "Quotas", "vm_specs": [lab::spec("linux", &tpl, 192)]}),
        &["test-ui-q-student"],
    )
    .await;
    let cid = course["id"].as_str().unwrap();
    let student = env.client("test-ui-q-student").await;
    let vm = lab::vm_of(&env, &student, &course, "linux").await;
    let (status, v) = teacher
        .post(
            &format!("/api/courses/{cid}/sessions"),
            json!({"date": "2026-11-02", "start": "08:00", "end": "09:00"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    // 08:30–10:00 lab time: 30 min in the session, 60 outside.
    for (at, on) in [("2026-11-02T00:30:00Z", 1), ("2026-11-02T02:00:00Z", 0)] {
        sqlx::query("INSERT INTO vm_power_log (vm_id, at, running) VALUES ($1, $2, $3)")
            .bind(&vm)
            .bind(at)
            .bind(on)
            .execute(&env.server.state.pool)
            .await
            .unwrap();
    }
    let base = env.server.url();
    let dir = artifact_dir();
    let shots = ["quota-teacher.png", "quota-student-zh.png"];
    run_script_shots(
        "quota.mjs",
        &[
            &base,
            "test-ui-q-teacher",
            "test-ui-q-student",
            "test-ui-q-admin",
            PASSWORD,
            dir.to_str().unwrap(),
            cid,
        ],
        &dir,
        &shots,
    )
    .await;
    // What the pages did is real.
    let (status, q) = teacher.get(&format!("/api/courses/{cid}/quota")).await;
    assert_eq!(status, StatusCode::OK, "{q}");
    assert_eq!(q["hours_outside"], 2, "{q}");
    assert_eq!(q["students"][0]["extra_hours"], 1, "{q}");
    assert_eq!(q["students"][0]["left_minutes"], 120, "{q}");
    let (_, limits) = teacher.get("/api/quota/limits").await;
    assert_eq!(limits["max_running_vms"], 2, "{limits}");
    let (_, idle) = teacher.get(&format!("/api/courses/{cid}/idle")).await;
    assert_eq!(idle["never_connected_minutes"], 10, "{idle}");
    let (_, ext) = teacher.get(&format!("/api/courses/{cid}/extension")).await;
    assert_eq!(ext["allowed"], true, "{ext}");
}

/// The end of a term and a student's own data in the browser (issue 20):
/// the teacher sets the end and archives on the class page, the student's
/// desktop page tells them until when to download their work (Chinese), an
/// admin holds the other student and reads the erase records; then the
/// student downloads everything pvce holds about them from their own page,
/// sees the erase record of an earlier course, and the bell's notice of
/// that course's end (English, then Chinese). No VM runs.
#[tokio::test]
async fn the_end_of_a_term_and_my_data_in_the_browser() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-ui-term-teacher", Role::Teacher).await;
    env.user("test-ui-term-admin", Role::Admin).await;
    env.user("test-ui-term-me", Role::Student).await;
    let other = env.user("test-ui-term-other", Role::Student).await;
    let teacher = env.client("test-ui-term-teacher").await;
    let tpl = lab::import_tiny(&teacher, "test-ui-term-tiny").await;
    let students = ["test-ui-term-me", "test-ui-term-other"];
    let ending = lab::course(
        &teacher,
        json!({"code": "test-ui-term", "name": "Ending", "vm_specs": [lab::spec("linux", &tpl, 128)]}),
        &students,
    )
    .await;
    // An earlier course, already over and erased (on the test's clock).
    let earlier = lab::course(
        &teacher,
        json!({"code": "test-ui-term-old", "name": "Over", "vm_specs": [lab::spec("linux", &tpl, 128)]}),
        &["test-ui-term-me"],
    )
    .await;
    let now = time::OffsetDateTime::now_utc();
    let (status, v) = teacher
        .send(
            reqwest::Method::PATCH,
            &format!("/api/courses/{}", earlier["id"].as_str().unwrap()),
            Some(json!({"ends_at": pvce::db::format_time(now + time::Duration::days(1)), "retention_days": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // The day before its end, the term loop told its student (the bell).
    env.server.state.term.tick(now).await.unwrap();
    env.server.state.notices.run_once(now).await.unwrap();
    let r = env
        .server
        .state
        .term
        .tick(now + time::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(r.erased, 1, "{r:?}");
    for name in students {
        let (status, v) = env
            .client(name)
            .await
            .post(
                "/api/tickets",
                json!({"kind": "request", "title": format!("ticket of {name}"), "description": "x"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    let student = env.client("test-ui-term-me").await;
    let vm = lab::vm_of(&env, &student, &ending, "linux").await;
    let cid = ending["id"].as_str().unwrap();
    let dir = artifact_dir();
    let shots = [
        "term-teacher.png",
        "term-banner-zh.png",
        "term-archived-zh.png",
        "term-holds.png",
        "mydata-en.png",
        "mydata-zh.png",
        "term-bell-zh.png",
    ];
    let ids = json!({
        "teacher": "test-ui-term-teacher", "student": "test-ui-term-me", "admin": "test-ui-term-admin",
        "otherId": other["id"], "courseId": cid, "code": "test-ui-term", "vmId": vm,
        "erasedCode": "test-ui-term-old",
    });
    for f in shots {
        let _ = std::fs::remove_file(dir.join(f));
    }
    run_script(
        "term.mjs",
        &[
            &env.server.url(),
            PASSWORD,
            dir.to_str().unwrap(),
            &ids.to_string(),
        ],
    )
    .await;
    run_script(
        "mydata.mjs",
        &[
            &env.server.url(),
            "test-ui-term-me",
            PASSWORD,
            "test-ui-term-other",
            "1",
            dir.to_str().unwrap(),
            "test-ui-term-old",
        ],
    )
    .await;
    for f in shots {
        assert_png(&dir.join(f));
    }
    // What the pages did is real.
    let (_, c) = teacher.get(&format!("/api/courses/{cid}")).await;
    assert_eq!(c["state"], "archived", "{c}");
    assert_eq!(c["retention_days"], 7, "{c}");
    assert!(c["ends_at"].is_string(), "{c}");
    let (_, holds) = env
        .client("test-ui-term-admin")
        .await
        .get("/api/term-holds")
        .await;
    assert_eq!(holds[0]["user_id"], other["id"], "{holds}");
}

/// The teacher's video wall in the browser (issue 15): a student asks for
/// help on the desktop of their running VM, the teacher's wall shows it
/// first with a live thumbnail, filters on raised hands, watches the screen
/// view-only (the student's page says so) and lowers the hand; en and zh-CN.
#[tokio::test]
async fn teacher_watches_the_wall_and_answers_a_raised_hand_in_the_browser() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-ui-wall-teacher", Role::Teacher).await;
    env.user("test-ui-wall-alice", Role::Student).await;
    env.user("test-ui-wall-bob", Role::Student).await;
    env.user("test-ui-wall-staff", Role::Staff).await;
    let teacher = env.client("test-ui-wall-teacher").await;
    let student = env.client("test-ui-wall-alice").await;
    let tpl = lab::import_tiny(&teacher, "test-ui-wall-tiny").await;
    let course = lab::course(
        &teacher,
        json!({"code": "test-ui-wall", "name": "Wall", "vm_specs": [lab::spec("linux", &tpl, 192)]}),
        &["test-ui-wall-alice", "test-ui-wall-bob"],
    )
    .await;
    let vm = lab::vm_of(&env, &student, &course, "linux").await;
    let (s, v) = student.post_empty(&format!("/api/vms/{vm}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    common::wait_serial(&env, &vm, "BOOT-OK", Duration::from_secs(120)).await;
    run_wall_script(
        "wall.mjs",
        &env,
        &[
            "test-ui-wall-teacher",
            "test-ui-wall-alice",
            "test-ui-wall-staff",
        ],
        (&course, &vm),
        &[
            "wall-en.png",
            "wall-student-watched.png",
            "wall-zh.png",
            "walls-staff-en.png",
        ],
    )
    .await;
    // What the page did is real: the hand is down, and the view was logged.
    let (_, a) = student.get(&format!("/api/vms/{vm}/assist")).await;
    assert!(a["hand_raised_at"].is_null(), "{a}");
    let (s, v) = student.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// Watching a SPICE VM in the browser (issue 15): the wall's Watch opens
/// the live picture (the proxy cannot filter SPICE input), refreshed about
/// once a second, with its note; the student's page says the teacher is
/// watching until the dialog has closed; en and zh-CN.
#[tokio::test]
async fn teacher_watches_a_spice_vm_as_a_live_picture_in_the_browser() {
    let _serial = one_chromium().await;
    let env = TestEnv::start().await;
    env.user("test-ui-spw-teacher", Role::Teacher).await;
    env.user("test-ui-spw-alice", Role::Student).await;
    let teacher = env.client("test-ui-spw-teacher").await;
    let student = env.client("test-ui-spw-alice").await;
    let (course, vm) = lab::spice_course_with_running_vm(
        &env,
        (&teacher, "test-ui-spw-tiny"),
        ("test-ui-spw", 192),
        &student,
        &["test-ui-spw-alice"],
    )
    .await;
    run_wall_script(
        "wall-spice.mjs",
        &env,
        &["test-ui-spw-teacher", "test-ui-spw-alice"],
        (&course, &vm),
        &[
            "wall-spice-en.png",
            "wall-spice-student.png",
            "wall-spice-zh.png",
        ],
    )
    .await;
    // What the page did is real: two watches (en, then zh-CN after the
    // first had ended) on record, once each.
    env.user("test-ui-spw-admin", Role::Admin).await;
    let (_, events) = env
        .client("test-ui-spw-admin")
        .await
        .get("/api/events?limit=100")
        .await;
    let watches = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["vm_id"] == vm.as_str()
                && e["kind"] == "console_watched"
                && e["actor"] == "test-ui-spw-teacher"
        })
        .count();
    assert_eq!(watches, 2, "{events}");
    let (s, v) = student.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}
