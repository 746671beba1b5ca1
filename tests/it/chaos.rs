//! The chaos suite (issue 17, "Faults, with nothing lost"): the real binary
//! killed by SIGKILL at the crash points of src/crashpoint.rs — every step
//! of enrolling 200 students, a template import, derive and seal, a VM
//! start, a layer export and import, a snapshot revert — then restarted.
//! After each kill: the restarted server's start-up sweep and reconcile
//! leave an installation `pvce fsck` (the binary, same settings, every file
//! judged) finds clean, and the operation retried succeeds or is found
//! already done, with what the student sees whole.
//!
//! CI runs the riskiest point of each operation ([`CI_POINTS`]);
//! `PVCE_CHAOS_FULL=1` (scripts/chaos.sh) runs every point, with the same
//! code. Live migration's point is exercised on the three-node rig
//! (tests/it/cluster.rs).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::process::{
    ServerProcess, add_user, assert_enrolment_consistent, base_args, insert_students, remove_pool,
};
use crate::common::tool::run_tool as run;
use crate::common::{self, Client, PASSWORD, walk_find};
use pvce::crashpoint::POINTS;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Set (to anything) to run every crash point instead of [`CI_POINTS`].
const FULL_ENV: &str = "PVCE_CHAOS_FULL";

/// The point of each operation CI kills at: where two durable effects
/// disagree the longest or the repair is least obvious.
const CI_POINTS: &[&str] = &[
    // Rows committed, 200 layers still under staging names.
    "enrol.rows_committed",
    // A converted layer in templates/ that no row names yet.
    "template_import.layer_written",
    // A draft row with no build VM.
    "derive.draft_inserted",
    // The build VM gone, the layer read-only, the template still a draft.
    "seal.layer_sealed",
    // A running domain the database still calls `starting`.
    "vm_start.domain_created",
    // A full private copy in uploads/.
    "layer_export.copy_written",
    // The new layer in place, the backup linked but not recorded.
    "layer_import.layer_installed",
    // The backup copied over the layer, the commit not done.
    "snapshot_revert.layer_installed",
];

/// Points whose operation needs more than this suite's one node, each
/// killed in CI by its own test: live migration on the three-node rig
/// (`cluster::a_server_killed_mid_migration_finds_the_vm_where_it_runs`).
const ELSEWHERE: &[&str] = &["migrate.domain_moved"];

const STUDENTS: usize = 200;

/// The points of `op` this run kills at.
fn points(op: &str) -> Vec<&'static str> {
    let full = std::env::var_os(FULL_ENV).is_some();
    POINTS
        .iter()
        .copied()
        .filter(|p| p.split_once('.').is_some_and(|(o, _)| o == op))
        .filter(|p| full || CI_POINTS.contains(p))
        .collect()
}

#[test]
fn every_operation_has_one_ci_point_and_it_exists() {
    for p in CI_POINTS.iter().chain(ELSEWHERE) {
        assert!(POINTS.contains(p), "{p} is not a crash point");
    }
    let ops: std::collections::BTreeSet<&str> = POINTS
        .iter()
        .filter(|p| !ELSEWHERE.contains(p))
        .map(|p| p.split_once('.').unwrap().0)
        .collect();
    for op in ops {
        let n = CI_POINTS
            .iter()
            .filter(|p| p.starts_with(&format!("{op}.")))
            .count();
        assert_eq!(n, 1, "operation {op}: {n} CI points");
    }
}

/// One installation (data dir, template pool) served by the real binary,
/// restarted around each kill.
struct Rig {
    dir: tempfile::TempDir,
    data: PathBuf,
    pool: String,
    args: Vec<String>,
    server: ServerProcess,
    starts: usize,
    teacher: Client,
    alice: Client,
}

impl Rig {
    /// The template called `name`, as the teacher's list shows it; `context`
    /// (the crash point) names the case when there is none.
    async fn template_named(&self, name: &str, context: &str) -> Value {
        let (_, all) = self.teacher.get("/api/templates").await;
        all.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{context}: no template {name}: {all}"))
            .clone()
    }

    async fn new() -> Rig {
        let dir = tempfile::Builder::new()
            .prefix("test-pvce-chaos-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let pool = format!("{}-tpl", dir.path().file_name().unwrap().to_string_lossy());
        add_user(&data, "test-chaos-teacher", "teacher", PASSWORD);
        add_user(&data, "test-chaos-alice", "student", PASSWORD);
        let mut args = base_args(&data, &pool);
        // A build VM that ignores ACPI (not booted yet) is forced off soon.
        args.extend(["--shutdown-timeout-secs".into(), "5".into()]);
        let server = Self::spawn(dir.path(), 0, &args, None).await;
        let teacher = Client::login(&server.url, "test-chaos-teacher", PASSWORD).await;
        let alice = Client::login(&server.url, "test-chaos-alice", PASSWORD).await;
        Rig {
            dir,
            data,
            pool,
            args,
            server,
            starts: 1,
            teacher,
            alice,
        }
    }

    /// Starts the binary, its output in `server-<n>.log` beside the data dir.
    async fn spawn(dir: &Path, n: usize, args: &[String], crash_at: Option<&str>) -> ServerProcess {
        let log = std::fs::File::create(dir.join(format!("server-{n}.log"))).unwrap();
        let env: Vec<(&str, &str)> = crash_at
            .map(|p| (pvce::crashpoint::ENV, p))
            .into_iter()
            .collect();
        ServerProcess::start(
            args,
            Stdio::from(log.try_clone().unwrap()),
            Stdio::from(log),
            &env,
        )
        .await
    }

    /// Replaces the (idle) server by a new one, `crash_at` set or not.
    async fn restart(&mut self, crash_at: Option<&str>) {
        self.server.kill();
        self.server = Self::spawn(self.dir.path(), self.starts, &self.args, crash_at).await;
        self.starts += 1;
        self.teacher = self.teacher.clone_for(&self.server.url);
        self.alice = self.alice.clone_for(&self.server.url);
    }

    /// Runs `op` against a server that dies at `point`, sees it die by
    /// SIGKILL, restarts it and asserts `pvce fsck` finds it clean.
    async fn crash_at<F, Fut, T>(&mut self, point: &str, op: F)
    where
        F: FnOnce(Client, Client) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        self.restart(Some(point)).await;
        let _ = op(self.teacher.clone(), self.alice.clone()).await;
        let log = self
            .dir
            .path()
            .join(format!("server-{}.log", self.starts - 1));
        let child = &mut self.server.child;
        let status = common::wait_for(
            &format!("the server to die at {point}"),
            Duration::from_secs(120),
            || {
                let s = child.try_wait().unwrap();
                async move { s }
            },
        )
        .await;
        assert_eq!(
            status.signal(),
            Some(9),
            "{point}: the server ended with {status}, not SIGKILL (log: {})",
            log.display()
        );
        self.restart(None).await;
        self.assert_fsck_clean(point);
    }

    /// `pvce fsck --json --grace-secs 0` with the server's settings: clean.
    fn assert_fsck_clean(&self, after: &str) {
        crate::common::process::assert_fsck_clean(&self.args, after);
    }

    /// Imports the tiny guest as `name` (through the API).
    async fn template(&self, name: &str) -> Value {
        crate::common::lab::import_tiny(&self.teacher, name).await
    }

    /// A course on `template` with alice enrolled; her VM's id.
    async fn alice_vm(&self, template: &Value, code: &str) -> String {
        let c = crate::common::lab::course(
            &self.teacher,
            json!({"code": code, "name": code, "vm_specs": [crate::common::lab::spec("linux", template, 128)]}),
            &["test-chaos-alice"],
        )
        .await;
        let (_, vms) = self
            .alice
            .get(&format!("/api/vms?course_id={}", c["id"].as_str().unwrap()))
            .await;
        vms[0]["id"].as_str().unwrap().to_owned()
    }

    /// The layer file of a VM.
    fn layer(&self, vm: &str) -> PathBuf {
        walk_find(&self.data.join("overlays"), &format!("{vm}.qcow2")).unwrap()
    }
}

impl Drop for Rig {
    /// Domains of this installation (their disks are under its data dir)
    /// are destroyed however the test ended, then the pool goes.
    fn drop(&mut self) {
        self.server.kill();
        let list = Command::new("virsh")
            .args(["-q", "-c", "qemu:///system", "list", "--name"])
            .output()
            .unwrap();
        let data = self.data.display().to_string();
        for d in String::from_utf8_lossy(&list.stdout).lines().map(str::trim) {
            if !d.starts_with("test-pvce-") {
                continue;
            }
            let xml = Command::new("virsh")
                .args(["-q", "-c", "qemu:///system", "dumpxml", d])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&xml.stdout).contains(&data) {
                let _ = Command::new("virsh")
                    .args(["-q", "-c", "qemu:///system", "destroy", d])
                    .output();
            }
        }
        remove_pool(&self.pool);
    }
}

/// A POST of a file that may meet a dying server (no panic on a reset).
async fn try_upload(
    client: &Client,
    path: &str,
    file: &Path,
) -> Result<StatusCode, reqwest::Error> {
    let body = tokio::fs::read(file).await.unwrap();
    client
        .request(reqwest::Method::POST, path)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .map(|r| r.status())
}

#[tokio::test]
async fn enrolment_killed_at_each_step_is_consistent_and_retryable() {
    let mut rig = Rig::new().await;
    let students = insert_students(&rig.data, "test-chaos-s", STUDENTS).await;
    let tpl = rig.template("test-chaos-tiny").await;
    for (i, point) in points("enrol").into_iter().enumerate() {
        let (s, c) = rig
            .teacher
            .post(
                "/api/courses",
                json!({"code": format!("test-chaos-e{i}"), "name": "Chaos",
                       "vm_specs": [crate::common::lab::spec("linux", &tpl, 128)]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        let cid = c["id"].as_str().unwrap().to_owned();
        let path = format!("/api/courses/{cid}/students");
        let body = json!({ "usernames": students });
        rig.crash_at(point, |t, _| async move { t.try_post(&path, body).await })
            .await;
        assert_enrolment_consistent(&rig.data, &cid).await;
        // Retried: the gaps are filled, nobody gets two VMs.
        let (s, r) = rig
            .teacher
            .post(
                &format!("/api/courses/{cid}/students"),
                json!({ "usernames": students }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{point}: {r}");
        assert_enrolment_consistent(&rig.data, &cid).await;
        let (_, vms) = rig.teacher.get(&format!("/api/vms?course_id={cid}")).await;
        assert_eq!(vms.as_array().unwrap().len(), STUDENTS, "{point}");
    }
    rig.assert_fsck_clean("the last retry");
}

#[tokio::test]
async fn template_import_killed_at_each_step_is_consistent_and_retryable() {
    let mut rig = Rig::new().await;
    let image = tokio::task::spawn_blocking(common::tiny_image)
        .await
        .unwrap();
    for (i, point) in points("template_import").into_iter().enumerate() {
        let name = format!("test-chaos-t{i}");
        let path = format!(
            "/api/templates/import?name={name}&format=qcow2&os=tiny-linux&software=busybox"
        );
        let (p, img) = (path.clone(), image.clone());
        rig.crash_at(point, |t, _| async move { try_upload(&t, &p, &img).await })
            .await;
        // Retried: imported now, or it had been (its row committed).
        let (s, r) = rig.teacher.upload(&path, &image).await;
        assert!(
            s == StatusCode::CREATED || (s == StatusCode::CONFLICT && r["error"] == "name_taken"),
            "{point}: {s} {r}"
        );
        let t = rig.template_named(&name, point).await;
        assert_eq!(t["state"], "ready", "{point}: {t}");
    }
    rig.assert_fsck_clean("the last retry");
}

#[tokio::test]
async fn layer_export_import_and_revert_killed_at_each_step_leave_whole_layers() {
    let mut rig = Rig::new().await;
    let tpl = rig.template("test-chaos-tiny").await;
    let vm = rig.alice_vm(&tpl, "test-chaos-p").await;
    let work = rig.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    // Export: a download after the restart is a whole archive.
    let archive = work.join("export.tar");
    let export = format!("/api/vms/{vm}/export");
    let mut exported = false;
    for point in points("layer_export") {
        let p = export.clone();
        rig.crash_at(point, |_, a| async move { a.try_get(&p).await })
            .await;
        exported = true;
        download_whole_export(&rig.alice, &export, &archive, &work).await;
    }
    if !exported {
        download_whole_export(&rig.alice, &export, &archive, &work).await;
    }

    // Import: retried, the archive's layer is the VM's and the former layer
    // is its one backup snapshot, whose file is there.
    let import = format!("/api/vms/{vm}/import");
    for (i, point) in points("layer_import").into_iter().enumerate() {
        write_pattern(&rig.layer(&vm), 0x10 + i as u8);
        let (p, a) = (import.clone(), archive.clone());
        rig.crash_at(
            point,
            |_, alice| async move { try_upload(&alice, &p, &a).await },
        )
        .await;
        // Every backup snapshot listed (the last retry's, or this one's if
        // recorded) kept its file through the restart's sweep.
        let (_, snaps) = rig.alice.get(&format!("/api/vms/{vm}/snapshots")).await;
        for b in snaps.as_array().unwrap() {
            let file = format!("{vm}.backup-{}.qcow2", b["id"].as_str().unwrap());
            assert!(
                walk_find(&rig.data.join("overlays"), &file).is_some(),
                "{point}: backup snapshot {file} lost at restart"
            );
        }
        let (s, r) = rig.alice.upload(&import, &archive).await;
        assert_eq!(s, StatusCode::OK, "{point}: {r}");
        let (_, snaps) = rig.alice.get(&format!("/api/vms/{vm}/snapshots")).await;
        let snaps = snaps.as_array().unwrap();
        assert_eq!(snaps.len(), 1, "{point}: {snaps:?}");
        assert_eq!(snaps[0]["kind"], "backup", "{point}");
        rig.assert_fsck_clean(point);
    }

    // Revert: retried, the layer holds exactly what the snapshot held.
    for (i, point) in points("snapshot_revert").into_iter().enumerate() {
        let layer = rig.layer(&vm);
        write_pattern(&layer, 0x40 + i as u8);
        let before = work.join(format!("before-{i}.qcow2"));
        std::fs::copy(&layer, &before).unwrap();
        let snap = if point.ends_with("internal_applied") {
            let (s, snap) = rig
                .alice
                .post(
                    &format!("/api/vms/{vm}/snapshots"),
                    json!({"name": format!("s{i}")}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{snap}");
            snap["id"].as_str().unwrap().to_owned()
        } else {
            // The backup an import makes holds the layer as it was.
            let (s, r) = rig.alice.upload(&import, &archive).await;
            assert_eq!(s, StatusCode::OK, "{r}");
            r["backup"]["id"].as_str().unwrap().to_owned()
        };
        // Changed after the snapshot: the revert must undo this.
        write_pattern(&rig.layer(&vm), 0xEE);
        let revert = format!("/api/vms/{vm}/snapshots/{snap}/revert");
        let p = revert.clone();
        rig.crash_at(point, |_, a| async move { a.try_post(&p, json!({})).await })
            .await;
        let (s, r) = rig.alice.post_empty(&revert).await;
        assert_eq!(s, StatusCode::OK, "{point}: {r}");
        run(Command::new("qemu-img")
            .args(["compare", "-f", "qcow2", "-F", "qcow2"])
            .arg(rig.layer(&vm))
            .arg(&before));
        rig.assert_fsck_clean(point);
    }
}

/// Writes 64 KiB of `byte` at 1 MiB into a stopped VM's layer (past the
/// boot sector: the guest still boots), so layers differ visibly.
fn write_pattern(layer: &Path, byte: u8) {
    run(Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", &format!("write -P {byte} 1M 64k")])
        .arg(layer));
}

/// Downloads the export to `archive` and checks it is whole: the two
/// members, the layer's SHA-256 the manifest's.
async fn download_whole_export(alice: &Client, path: &str, archive: &Path, work: &Path) {
    let (s, _) = common::download(alice, path, archive).await;
    assert_eq!(s, StatusCode::OK);
    let listing = run(Command::new("tar").arg("-tf").arg(archive));
    assert_eq!(listing, "manifest.json\nlayer.qcow2\n", "{listing}");
    let unpacked = work.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(&unpacked));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["layer"]["sha256"],
        common::sha256_file(&unpacked.join("layer.qcow2"))
    );
}

#[tokio::test]
async fn vm_start_killed_at_each_step_settles_and_boots_on_retry() {
    let mut rig = Rig::new().await;
    let tpl = rig.template("test-chaos-tiny").await;
    let vm = rig.alice_vm(&tpl, "test-chaos-v").await;
    for point in points("vm_start") {
        let p = format!("/api/vms/{vm}/start");
        rig.crash_at(point, |_, a| async move { a.try_post(&p, json!({})).await })
            .await;
        // The reconciler settles the VM from what libvirt says: running
        // (the domain was created) or stopped (it was not).
        let alice = rig.alice.clone();
        let v = common::wait_for(
            "the interrupted start settled",
            Duration::from_secs(60),
            || {
                let alice = alice.clone();
                let path = format!("/api/vms/{vm}");
                async move {
                    let (_, v) = alice.get(&path).await;
                    (v["state"] == "running" || v["state"] == "stopped").then_some(v)
                }
            },
        )
        .await;
        let created = point != "vm_start.state_starting";
        assert_eq!(v["state"] == "running", created, "{point}: {v}");
        let (s, v) = rig.alice.post_empty(&format!("/api/vms/{vm}/start")).await;
        assert_eq!(s, StatusCode::OK, "{point}: {v}");
        assert_eq!(v["state"], "running", "{point}: {v}");
        assert_eq!(
            common::virsh_domstate(&format!("test-pvce-{vm}")),
            "running",
            "{point}"
        );
        rig.assert_fsck_clean(point);
        let (s, v) = rig
            .alice
            .post_empty(&format!("/api/vms/{vm}/poweroff"))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        common::wait_vm_gone(&rig.alice, &vm).await;
    }
}

#[tokio::test]
async fn derive_and_seal_killed_at_each_step_end_in_a_ready_template() {
    let mut rig = Rig::new().await;
    let tpl = rig.template("test-chaos-tiny").await;
    let tid = tpl["id"].as_str().unwrap().to_owned();
    let derive_points = points("derive");
    let seal_points = points("seal");
    let n = derive_points.len().max(seal_points.len());
    for i in 0..n {
        let name = format!("test-chaos-d{i}");
        let body = json!({"name": name, "software": ["gdb"], "memory_mib": 128});
        let derive = format!("/api/templates/{tid}/derive");
        if let Some(point) = derive_points.get(i) {
            let (p, b) = (derive.clone(), body.clone());
            rig.crash_at(point, |t, _| async move { t.try_post(&p, b).await })
                .await;
        }
        // Derived now, or the draft was there already (its row committed).
        let (s, r) = rig.teacher.post(&derive, body).await;
        assert!(
            s == StatusCode::CREATED || (s == StatusCode::CONFLICT && r["error"] == "name_taken"),
            "{:?}: {s} {r}",
            derive_points.get(i)
        );
        let draft = rig
            .template_named(&name, &format!("{:?}", derive_points.get(i)))
            .await;
        assert_eq!(draft["state"], "draft", "{draft}");
        let seal = format!("/api/templates/{}/seal", draft["id"].as_str().unwrap());
        if let Some(point) = seal_points.get(i) {
            let p = seal.clone();
            rig.crash_at(point, |t, _| async move { t.try_post(&p, json!({})).await })
                .await;
        }
        // Sealed now, or the seal had already been recorded when the server
        // died (then the retry is refused as for any sealed template).
        let (s, t) = rig.teacher.post_empty(&seal).await;
        let t = if s == StatusCode::CONFLICT && t["error"] == "not_draft" {
            rig.teacher
                .get(&format!("/api/templates/{}", draft["id"].as_str().unwrap()))
                .await
                .1
        } else {
            assert_eq!(s, StatusCode::OK, "{:?}: {t}", seal_points.get(i));
            t
        };
        assert_eq!(t["state"], "ready", "{:?}: {t}", seal_points.get(i));
        rig.assert_fsck_clean(&name);
    }
}
