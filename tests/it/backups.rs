//! Backups into a real restic repository (issue 20): personal layers and the
//! control plane, what changed only, the points a student sees, the age in
//! `/metrics`, the alert and the inspection, and a failing repository.
//! Time is the tests' own: the service takes `now` as an argument.

use std::path::{Path, PathBuf};
use std::process::Command;

use pvce::auth::Role;
use pvce::backup::Trigger;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{self, TestEnv, lab};

const DAY: i64 = 86_400;

/// Well after the wall clock, so the server's own schedule (which runs on
/// real time) never decides anything about these runs.
fn t0() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp() + 30 * DAY
}

fn restic(data_dir: &Path, repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .env("RESTIC_REPOSITORY", repo)
        .env(
            "RESTIC_PASSWORD_FILE",
            data_dir.join("backup").join("restic-password"),
        )
        .env("RESTIC_CACHE_DIR", data_dir.join("backup").join("cache"))
        .args(args)
        .output()
        .expect("restic runs")
}

pub(crate) async fn layer_path(env: &TestEnv, vm: &str) -> PathBuf {
    let p: String = sqlx::query_scalar("SELECT overlay_path FROM vms WHERE id = $1")
        .bind(vm)
        .fetch_one(&env.server.state.pool)
        .await
        .unwrap();
    PathBuf::from(p)
}

/// A fresh restic repository's path (not created yet: the first run does)
/// in a temporary directory that goes when the returned guard does.
pub(crate) fn repository() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-repo-")
        .tempdir()
        .unwrap();
    let repo = dir.path().join("repo");
    (dir, repo)
}

#[tokio::test]
async fn layers_and_the_control_plane_go_to_restic_and_only_what_changed() {
    let (_repo_dir, repo) = crate::backups::repository();
    let repo_s = repo.to_string_lossy().into_owned();
    let env = TestEnv::start_with(|c| c.backup_repo = Some(repo_s)).await;
    let lab = lab::course_with_student_vm(&env, "TEST-BK1").await;
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    let bob = env.client("test-bob").await;
    let backups = env.server.state.backups.clone();

    let (s, status) = admin.get("/api/backups").await;
    assert_eq!(s, StatusCode::OK, "{status}");
    assert_eq!(status["configured"], true);
    assert!(status["last_run"].is_null());
    // Nothing ran: the metrics say nothing rather than "fresh".
    assert!(
        !common::metrics_text(&env)
            .await
            .contains("pvce_backup_age_seconds")
    );

    let t = t0();
    let run = backups.run(t, Trigger::Manual, Some("test")).await.unwrap();
    // The control plane and both students' layers; the first run checks.
    assert!(run.ok, "{run:?}");
    assert_eq!((run.backed_up, run.unchanged, run.failed), (3, 0, 0));
    assert!(run.checked && run.check_ok == Some(true), "{run:?}");
    let pw = env.data_dir().join("backup").join("restic-password");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&pw).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "the password file is private");

    // Alice sees her layer's point; Bob does not see Alice's VM.
    let path = format!("/api/vms/{}/backups", lab.vm);
    let (s, points) = lab.alice.get(&path).await;
    assert_eq!(s, StatusCode::OK, "{points}");
    assert_eq!(points.as_array().unwrap().len(), 1, "{points}");
    assert_eq!(points[0]["kind"], "full");
    assert_eq!(bob.get(&path).await.0, StatusCode::NOT_FOUND);

    // The point holds the layer byte for byte (read back with restic's own dump).
    let layer = layer_path(&env, &lab.vm).await;
    let snaps = restic(
        &env.data_dir(),
        &repo,
        &["snapshots", "--json", "--tag", &format!("vm={}", lab.vm)],
    );
    assert!(snaps.status.success());
    let snaps: Value = serde_json::from_slice(&snaps.stdout).unwrap();
    let id = snaps[0]["id"].as_str().unwrap().to_owned();
    let dumped = restic(
        &env.data_dir(),
        &repo,
        &["dump", &id, &layer.to_string_lossy()],
    );
    assert!(dumped.status.success());
    assert_eq!(dumped.stdout, std::fs::read(&layer).unwrap());
    // The control plane: a consistent copy of the database, and the template store.
    let control = restic(
        &env.data_dir(),
        &repo,
        &["snapshots", "--json", "--tag", "kind=control"],
    );
    let control: Value = serde_json::from_slice(&control.stdout).unwrap();
    let paths: Vec<&str> = control[0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("backup/control")),
        "{paths:?}"
    );
    assert!(paths.iter().any(|p| p.ends_with("templates")), "{paths:?}");
    // The database's consistent copy: SQLite's VACUUM INTO, or pg_dump's
    // archive of a PostgreSQL installation.
    let db_file = match common::database::url_for(&env.data_dir()) {
        Some(_) => "backup/control/pvce.pgdump",
        None => "backup/control/pvce.db",
    };
    let listed = restic(
        &env.data_dir(),
        &repo,
        &["ls", "latest", "--tag", "kind=control"],
    );
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.lines().any(|l| l.ends_with(db_file)),
        "{db_file} not in the control backup: {listed}"
    );

    // Next night: nothing changed but the control plane.
    let run = backups
        .run(t + DAY, Trigger::Scheduled, None)
        .await
        .unwrap();
    assert_eq!(
        (run.backed_up, run.unchanged, run.failed),
        (1, 2, 0),
        "{run:?}"
    );
    assert!(!run.checked, "the check is weekly");

    // Alice's disk changes (as a guest write would): only her layer is
    // backed up again, as an incremental point.
    let first = common::sha256_file(&layer);
    let w = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x55 1M 256k"])
        .arg(&layer)
        .output()
        .unwrap();
    assert!(w.status.success(), "{w:?}");
    let changed = common::sha256_file(&layer);
    assert_ne!(first, changed);
    let run = backups
        .run(t + 2 * DAY, Trigger::Scheduled, None)
        .await
        .unwrap();
    assert_eq!((run.backed_up, run.unchanged), (2, 1), "{run:?}");
    let (_, points) = lab.alice.get(&path).await;
    assert_eq!(points.as_array().unwrap().len(), 2, "{points}");
    assert_eq!(points[0]["kind"], "incremental");
    let oldest = points[1]["id"].as_str().unwrap().to_owned();

    // Restore: not someone else's VM, not another VM's point.
    let restore = format!("/api/vms/{}/restore", lab.vm);
    let body = serde_json::json!({"backup_id": oldest});
    assert_eq!(
        bob.post(&restore, body.clone()).await.0,
        StatusCode::NOT_FOUND
    );
    let bob_vm = bob.get("/api/vms").await.1[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_point = bob.get(&format!("/api/vms/{bob_vm}/backups")).await.1[0]["id"].clone();
    common::assert_error(
        &lab.alice
            .post(&restore, serde_json::json!({"backup_id": bob_point}))
            .await,
        StatusCode::NOT_FOUND,
        "backup_not_found",
    );
    // The teacher restores Alice's first point for her: the layer is that
    // point's, the replaced one is kept as her backup snapshot, and the
    // restore is recorded with who did it.
    let teacher = env.client("test-teacher").await;
    let (s, restored) = teacher.post(&restore, body).await;
    assert_eq!(s, StatusCode::OK, "{restored}");
    assert_eq!(common::sha256_file(&layer), first);
    let (_, snaps) = lab
        .alice
        .get(&format!("/api/vms/{}/snapshots", lab.vm))
        .await;
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    assert_eq!(snaps[0]["kind"], "backup");
    assert_eq!(snaps[0]["id"], restored["kept"]["id"]);
    let by: String = sqlx::query_scalar("SELECT by_user FROM backup_restores WHERE vm_id = $1")
        .bind(&lab.vm)
        .fetch_one(&env.server.state.pool)
        .await
        .unwrap();
    assert_eq!(by, "test-teacher");
    // Reverting that snapshot undoes the restore.
    let (s, _) = lab
        .alice
        .post_empty(&format!(
            "/api/vms/{}/snapshots/{}/revert",
            lab.vm,
            snaps[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(common::sha256_file(&layer), changed);

    // Status, per item and overall, and the age in /metrics.
    let (_, status) = admin.get("/api/backups").await;
    assert_eq!(status["last_run"]["ok"], true, "{status}");
    assert_eq!(status["items"].as_array().unwrap().len(), 3, "{status}");
    assert_eq!(status["items"][0]["subject"], "control");
    assert!(common::metrics_text(&env).await.contains(&format!(
        "pvce_backup_item_age_seconds{{subject=\"{}\"}}",
        lab.vm
    )));

    // Four days without a good run: the backup_age alert is critical.
    env.server.state.alerts.tick(t + 6 * DAY).await.unwrap();
    let (_, alerts) = admin.get("/api/alerts").await;
    let backup_alert = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "backup_age")
        .unwrap_or_else(|| panic!("no backup_age alert: {alerts}"));
    assert_eq!(backup_alert["level"], "critical");
    // The repository is consistent by its own check.
    assert!(restic(&env.data_dir(), &repo, &["check"]).status.success());
}

#[tokio::test]
async fn an_unusable_repository_fails_the_run_which_is_retried_and_inspected() {
    // A repository under a regular file can never be created.
    let env = TestEnv::start_with(|c| {
        c.backup_repo = Some("/dev/null/test-pvce-repo".into());
        c.backup_at = pvce::daily::TimeOfDay(Some(120));
    })
    .await;
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    let backups = env.server.state.backups.clone();
    let t = t0();
    let slot = pvce::backup::schedule::last_slot(t, 120);
    // The schedule: nothing before the slot after the watch started.
    assert!(
        backups
            .run_if_due(slot - 60, slot - 3600)
            .await
            .unwrap()
            .is_none()
    );
    let run = backups
        .run_if_due(slot + 60, slot - 3600)
        .await
        .unwrap()
        .expect("due at the slot");
    assert!(!run.ok && run.failed == 1, "{run:?}");
    assert!(
        run.error.as_deref().unwrap_or("").contains("restic"),
        "{run:?}"
    );
    let retry = pvce::backup::schedule::RETRY_SECS;
    assert!(
        backups
            .run_if_due(slot + 120, slot - 3600)
            .await
            .unwrap()
            .is_none()
    );
    let again = backups
        .run_if_due(slot + 60 + retry, slot - 3600)
        .await
        .unwrap()
        .expect("retried");
    assert!(!again.ok);
    let (_, status) = admin.get("/api/backups").await;
    assert_eq!(status["last_run"]["ok"], false, "{status}");
    assert!(status["last_good_at"].is_null());
    // The daily inspection's backup item fails.
    let insp = env
        .server
        .state
        .inspections
        .run(
            slot + DAY,
            pvce::inspection::Trigger::Manual,
            Some("test"),
            false,
        )
        .await
        .unwrap();
    let item = insp
        .checks
        .iter()
        .find(|i| i.name == pvce::inspection::Check::Backup)
        .expect("backup item");
    assert_eq!(
        item.status,
        pvce::inspection::ItemStatus::Failed,
        "{item:?}"
    );
    // Run now, from the API: accepted, in the background.
    let (s, body) = admin.post_empty("/api/backups").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
}

/// A real tiny guest writes a marker through its console; the night's
/// backup takes its layer *while it runs* (libvirt's backup API: the same
/// QEMU keeps running, no scratch copy is left, the point holds only the
/// layer); the marker reads back from the point without a restore; the
/// student changes the marker; a restore is refused while the VM runs
/// (409 vm_running); stopped, the restore brings the first marker back.
#[tokio::test]
async fn a_marker_written_in_the_guest_comes_back_after_a_restore() {
    use crate::common::{serial_run, wait_serial};
    const BOOT: std::time::Duration = std::time::Duration::from_secs(120);
    let (_repo_dir, repo) = crate::backups::repository();
    let repo = repo.to_string_lossy().into_owned();
    let env = TestEnv::start_with(|c| c.backup_repo = Some(repo)).await;
    let lab = lab::course_with_student_vm(&env, "TEST-BK2").await;
    let (alice, vm) = (&lab.alice, lab.vm.clone());
    let backups = env.server.state.backups.clone();
    let t = t0();

    let start = |a: &common::Client| {
        let a = a.clone();
        let vm = vm.clone();
        async move {
            let (s, v) = a.post_empty(&format!("/api/vms/{vm}/start")).await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
    };
    start(alice).await;
    wait_serial(&env, &vm, "BOOT-OK", BOOT).await;
    serial_run(
        &env,
        &vm,
        "echo pvce-marker-one > /root/marker; sync; echo WROTE-$((40+2))",
        "WROTE-42",
    )
    .await;
    // Backed up while it runs: the same QEMU process before and after.
    let domain = env.server.state.vms.domain_name(vm.parse().unwrap());
    let qemu_id = || {
        let out = Command::new("virsh")
            .args(["-q", "-c", "qemu:///system", "domid", &domain])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let before = qemu_id();
    assert!(!before.is_empty(), "the domain runs");
    let run = backups.run(t, Trigger::Scheduled, None).await.unwrap();
    assert!(run.ok && run.backed_up >= 2 && run.skipped == 0, "{run:?}");
    assert_eq!(common::virsh_domstate(&domain), "running");
    assert_eq!(
        qemu_id(),
        before,
        "the domain kept running through the backup"
    );
    let scratch = env.data_dir().join("backup").join("scratch");
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "no scratch copy is left"
    );
    let (s, st) = alice.get(&format!("/api/vms/{vm}")).await;
    assert_eq!(
        (s, st["state"].as_str()),
        (StatusCode::OK, Some("running")),
        "{st}"
    );
    // Only the layer: the point is far smaller than the guest's whole disk.
    let (_, points) = alice.get(&format!("/api/vms/{vm}/backups")).await;
    let point = points[0]["id"].as_str().unwrap().to_owned();
    let layer_bytes = points[0]["layer_bytes"].as_u64().unwrap();
    let live_bytes = std::fs::metadata(layer_path(&env, &vm).await)
        .unwrap()
        .len();
    assert!(
        layer_bytes > 0 && layer_bytes <= live_bytes + (1 << 20),
        "{points} vs the live layer's {live_bytes} bytes"
    );
    // The console still answers.
    serial_run(&env, &vm, "echo ALIVE-$((40+4))", "ALIVE-44").await;
    // One file and one folder of the point, without restoring anything.
    let files = format!("/api/vms/{vm}/backups/{point}/files");
    let (s, dir) = alice.get(&format!("{files}?path=/root")).await;
    assert_eq!(s, StatusCode::OK, "{dir}");
    assert!(
        dir["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "marker" && e["kind"] == "file"),
        "{dir}"
    );
    let (s, _, bytes) = common::get_bytes(alice, &format!("{files}?path=/root/marker")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(bytes, b"pvce-marker-one\n");
    common::assert_error(
        &alice.get(&format!("{files}?path=/root/nothing-here")).await,
        StatusCode::NOT_FOUND,
        "guest_path_not_found",
    );
    common::assert_error(
        &alice.get(&format!("{files}?path=../etc")).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    // The first copy of this run of the VM read its whole disk.
    assert_eq!(points[0]["source"], "running_whole", "{points}");
    let whole_read = points[0]["disk_read_bytes"].as_u64().unwrap();
    assert!(whole_read >= 512 << 20, "{points}");

    // The student changes the marker; the next copy reads only what changed
    // since the first (the checkpoint it made), and holds the change.
    serial_run(
        &env,
        &vm,
        "echo pvce-marker-two > /root/marker; sync; echo CHANGED-$((40+3))",
        "CHANGED-43",
    )
    .await;
    let run = backups
        .run(t + DAY, Trigger::Scheduled, None)
        .await
        .unwrap();
    assert!(run.ok && run.backed_up >= 1 && run.skipped == 0, "{run:?}");
    assert_eq!(
        qemu_id(),
        before,
        "the domain kept running through both copies"
    );
    let (_, points) = alice.get(&format!("/api/vms/{vm}/backups")).await;
    assert_eq!(points.as_array().unwrap().len(), 2, "{points}");
    assert_eq!(points[0]["source"], "running_changes", "{points}");
    let changes_read = points[0]["disk_read_bytes"].as_u64().unwrap();
    assert!(
        changes_read > 0 && changes_read <= whole_read / 16,
        "only the changes are read: {changes_read} of the disk's {whole_read} bytes"
    );
    let second = points[0]["id"].as_str().unwrap().to_owned();
    let (s, _, bytes) = common::get_bytes(
        alice,
        &format!("/api/vms/{vm}/backups/{second}/files?path=/root/marker"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        bytes, b"pvce-marker-two\n",
        "the changes were folded into the base"
    );
    // The first point is unchanged by the second.
    let (_, _, bytes) = common::get_bytes(alice, &format!("{files}?path=/root/marker")).await;
    assert_eq!(bytes, b"pvce-marker-one\n");
    let restore = format!("/api/vms/{vm}/restore");
    common::assert_error(
        &alice
            .post(&restore, serde_json::json!({"backup_id": point}))
            .await,
        StatusCode::CONFLICT,
        "vm_running",
    );
    let (s, _) = alice.post_empty(&format!("/api/vms/{vm}/shutdown")).await;
    assert_eq!(s, StatusCode::OK);
    common::wait_vm_gone(alice, &vm).await;

    // Stopped: restored, and the first marker is back in the guest.
    let (s, r) = alice
        .post(&restore, serde_json::json!({"backup_id": point}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    start(alice).await;
    wait_serial(&env, &vm, "BOOT-OK", BOOT).await;
    serial_run(&env, &vm, "cat /root/marker; echo READ-$((6*7))", "READ-42").await;
    let log = tokio::fs::read_to_string(env.console_log(&vm))
        .await
        .unwrap();
    let after = &log[log.rfind("BOOT-OK").unwrap()..];
    assert!(after.contains("\npvce-marker-one"), "{after}");
    assert!(!after.contains("\npvce-marker-two"), "{after}");

    // A new run of the VM: its first copy is a whole one again (the
    // checkpoints ended with the last run). Stopped, the layer holds that
    // run's last checkpoint as a bitmap (QEMU stores it); the next run's
    // first copy removes it, so after that run exactly one — its own — is
    // left, and a snapshot revert still works on such a layer (qemu-img
    // refuses one on an image with bitmaps unless pvce strips them).
    let layer = layer_path(&env, &vm).await;
    let layer_bitmaps = || {
        let out = Command::new("qemu-img")
            .args(["info", "--output=json", "-f", "qcow2"])
            .arg(&layer)
            .output()
            .unwrap();
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        info["format-specific"]["data"]["bitmaps"]
            .as_array()
            .map(|b| {
                b.iter()
                    .map(|m| m["name"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let mut left = Vec::new();
    for (i, at) in [(3, t + 2 * DAY), (4, t + 3 * DAY)] {
        if i == 4 {
            start(alice).await;
            wait_serial(&env, &vm, "BOOT-OK", BOOT).await;
        }
        serial_run(
            &env,
            &vm,
            &format!("echo pvce-marker-{i} > /root/marker; sync; echo RUN-$((40+{i}))"),
            &format!("RUN-{}", 40 + i),
        )
        .await;
        let run = backups.run(at, Trigger::Scheduled, None).await.unwrap();
        assert!(run.ok && run.backed_up >= 1 && run.skipped == 0, "{run:?}");
        let (_, points) = alice.get(&format!("/api/vms/{vm}/backups")).await;
        assert_eq!(points[0]["source"], "running_whole", "{points}");
        let (s, _) = alice.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
        assert_eq!(s, StatusCode::OK);
        common::wait_vm_gone(alice, &vm).await;
        let now = layer_bitmaps();
        assert_eq!(now.len(), 1, "one checkpoint's bitmap, this run's: {now:?}");
        assert!(
            !left.contains(&now[0]),
            "the earlier run's bitmap was removed: {now:?}"
        );
        left = now;
    }
    let snaps = format!("/api/vms/{vm}/snapshots");
    let (s, snap) = alice
        .post(&snaps, serde_json::json!({"name": "three"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{snap}");
    let (s, v) = alice
        .post_empty(&format!("{snaps}/{}/revert", snap["id"].as_str().unwrap()))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        layer_bitmaps(),
        Vec::<String>::new(),
        "the revert stripped the leftover bitmap"
    );
}

/// `pvce restore --from`: a whole installation rebuilt from its repository
/// onto an empty data dir at another path (and, in the PostgreSQL run, into
/// an empty PostgreSQL database from the backup's `pg_dump`); the server starts on it, the
/// student signs in with her password, her layer is back byte for byte and
/// her VM boots from it.
#[tokio::test]
async fn an_installation_is_rebuilt_from_its_repository_and_a_vm_boots() {
    let (repo_dir, repo) = crate::backups::repository();
    let repo_s = repo.to_string_lossy().into_owned();
    let old = TestEnv::start_with(|c| c.backup_repo = Some(repo_s.clone())).await;
    let lab = lab::course_with_student_vm(&old, "TEST-BK3").await;
    let layer = layer_path(&old, &lab.vm).await;
    // The last 64 KiB of the 1 GiB guest disk: free space of its root file
    // system, so the guest still boots.
    let w = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x5a 1073676288 64k"])
        .arg(&layer)
        .output()
        .unwrap();
    assert!(w.status.success(), "{w:?}");
    let run = old
        .server
        .state
        .backups
        .run(t0(), Trigger::Manual, None)
        .await
        .unwrap();
    assert!(run.ok, "{run:?}");
    // The administrator kept the password elsewhere; the old machine is gone.
    let password = repo_dir.path().join("password");
    std::fs::copy(
        old.data_dir().join("backup").join("restic-password"),
        &password,
    )
    .unwrap();
    drop(old);

    let new_dir = repo_dir.path().join("new-data");
    // Refused into a non-empty data dir.
    std::fs::create_dir_all(&new_dir).unwrap();
    std::fs::write(new_dir.join("something"), b"x").unwrap();
    // The new data dir's database: SQLite in it, or (a PostgreSQL run) an
    // empty PostgreSQL database the backup's pg_dump is restored into.
    let mut config = pvce::config::Config::for_data_dir(&new_dir);
    config.database_url = common::database::url_for(&new_dir);
    assert!(matches!(
        pvce::backup::install::restore(&config, &repo_s, &password).await,
        Err(pvce::backup::install::InstallError::NotEmpty(_))
    ));
    std::fs::remove_file(new_dir.join("something")).unwrap();
    let report = pvce::backup::install::restore(&config, &repo_s, &password)
        .await
        .unwrap();
    assert_eq!(
        (report.layers, report.without_backup.len()),
        (2, 0),
        "{report:?}"
    );
    if config.database_url.is_some() {
        // Never into a database that holds an installation already.
        let elsewhere = repo_dir.path().join("other-data");
        let mut again = pvce::config::Config::for_data_dir(&elsewhere);
        again.database_url = config.database_url.clone();
        assert!(matches!(
            pvce::backup::install::restore(&again, &repo_s, &password).await,
            Err(pvce::backup::install::InstallError::DatabaseNotEmpty)
        ));
    }

    let restored = new_dir.clone();
    let env = TestEnv::start_with(move |c| {
        c.data_dir = restored;
        c.backup_repo = Some(repo_s);
    })
    .await;
    env.track_vm(&lab.vm);
    let alice = env.client("test-alice").await;
    let (_, vms) = alice.get("/api/vms").await;
    assert_eq!(vms[0]["id"], lab.vm.as_str(), "{vms}");
    let new_layer = layer_path(&env, &lab.vm).await;
    assert!(new_layer.starts_with(&new_dir), "{}", new_layer.display());
    // The guest data written before the backup is there, read through the
    // layer's chain (its backing name now points into the new data dir).
    let read = Command::new("qemu-io")
        .args(["-f", "qcow2", "-r", "-c", "read -P 0x5a 1073676288 64k"])
        .arg(&new_layer)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.status.success() && !out.contains("Pattern verification failed"),
        "{out}"
    );
    let (s, v) = alice
        .post_empty(&format!("/api/vms/{}/start", lab.vm))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let log = new_dir.join("consoles").join(format!("{}.log", lab.vm));
    let started = std::time::Instant::now();
    loop {
        let text = tokio::fs::read_to_string(&log).await.unwrap_or_default();
        if text.contains("BOOT-OK") {
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(120) {
            let (_, v) = alice.get(&format!("/api/vms/{}", lab.vm)).await;
            panic!("the restored VM did not boot: {v}\nconsole: {text}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let (s, _) = alice
        .post_empty(&format!("/api/vms/{}/poweroff", lab.vm))
        .await;
    assert_eq!(s, StatusCode::OK);
}

/// A run that died (the server killed mid-backup: its row left unfinished,
/// restic killed with its repository lock held) does not stop the next
/// run: the stale lock is removed, the run completes, retention keeps what
/// it should (one daily here) and the repository's own check passes.
#[tokio::test]
async fn a_run_killed_mid_backup_leaves_nothing_the_next_run_cannot_finish() {
    let (_repo_dir, repo) = crate::backups::repository();
    let repo_s = repo.to_string_lossy().into_owned();
    let env = TestEnv::start_with(|c| {
        c.backup_repo = Some(repo_s);
        c.backup_keep_daily = 1;
        c.backup_keep_weekly = 0;
        c.backup_keep_monthly = 0;
    })
    .await;
    let lab = lab::course_with_student_vm(&env, "TEST-BK4").await;
    let backups = env.server.state.backups.clone();
    let t = t0();
    assert!(backups.run(t, Trigger::Manual, None).await.unwrap().ok);

    // The server dies mid-run: its row stays unfinished, and a restic that
    // was reading (here: waiting on stdin) is killed with its lock held.
    sqlx::query(
        "INSERT INTO backup_runs (id, started_at, trigger) VALUES ('test-dead', $1, 'scheduled')",
    )
    .bind(t + DAY)
    .execute(&env.server.state.pool)
    .await
    .unwrap();
    let data = env.data_dir();
    let mut restic_child = std::process::Command::new("restic")
        .env("RESTIC_REPOSITORY", &repo)
        .env(
            "RESTIC_PASSWORD_FILE",
            data.join("backup").join("restic-password"),
        )
        .env("RESTIC_CACHE_DIR", data.join("backup").join("cache"))
        .args(["backup", "--stdin", "--stdin-filename", "test-dying"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let locks = repo.join("locks");
    // A lock counts once restic has renamed it into place: its local
    // backend writes `<id>-tmp-<n>` first, and a kill before the rename
    // leaves only that temporary file (not a lock, so `unlock` never
    // removes it — the cause of this test's one failure, under load).
    let held = |locks: &std::path::Path| {
        std::fs::read_dir(locks).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
                })
                .count()
        })
    };
    common::wait_for("restic's lock", std::time::Duration::from_secs(30), || {
        let n = held(&locks);
        async move { (n > 0).then_some(()) }
    })
    .await;
    restic_child.kill().unwrap(); // SIGKILL
    restic_child.wait().unwrap();
    assert!(held(&locks) > 0, "the lock is left behind");

    // Alice's layer changes; the next run completes despite all that.
    let layer = layer_path(&env, &lab.vm).await;
    let w = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x33 1M 64k"])
        .arg(&layer)
        .output()
        .unwrap();
    assert!(w.status.success(), "{w:?}");
    let run = backups
        .run(t + DAY + 3600, Trigger::Manual, None)
        .await
        .unwrap();
    assert!(run.ok && run.failed == 0, "{run:?}");
    assert_eq!(
        std::fs::read_dir(&locks).unwrap().count(),
        0,
        "no lock left"
    );
    // One daily kept: Alice's older point is gone from the repository and the list.
    let (_, points) = lab.alice.get(&format!("/api/vms/{}/backups", lab.vm)).await;
    assert_eq!(points.as_array().unwrap().len(), 1, "{points}");
    assert!(restic(&env.data_dir(), &repo, &["check"]).status.success());
}
