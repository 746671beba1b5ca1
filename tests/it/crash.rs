//! Crash safety: the real binary killed with SIGKILL at chosen moments, or
//! left without anywhere to write its log, then restarted — nothing lost,
//! nothing half-done left behind (issue 22, items 8, 9 and 12).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::lab::{course, import_tiny, spec};
use crate::common::process::{
    ServerProcess, add_user, assert_enrolment_consistent, base_args, files_under, insert_students,
    remove_pool,
};
use crate::common::{self, Client, PASSWORD, TestEnv, wait_for};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

const STUDENTS: usize = 300;

#[tokio::test]
async fn an_enrolment_killed_midway_leaves_every_student_with_a_vm_or_none() {
    let image = tokio::task::spawn_blocking(common::tiny_image)
        .await
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-crash-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    let pool = format!("{}-tpl", dir.path().file_name().unwrap().to_string_lossy());
    add_user(&data, "test-teacher", "teacher", PASSWORD);
    let students = insert_students(&data, "test-crash-s", STUDENTS).await;
    let args = base_args(&data, &pool);

    let mut server = ServerProcess::start(&args, Stdio::null(), Stdio::null(), &[]).await;
    let teacher = Client::login(&server.url, "test-teacher", PASSWORD).await;
    let (s, tpl) = teacher
        .upload("/api/templates/import?name=test-crash-tiny&format=qcow2&os=tiny-linux&software=busybox", &image)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{tpl}");
    let (s, course) = teacher
        .post(
            "/api/courses",
            json!({"code": "test-crash", "name": "Crash", "vm_specs": [
            {"name": "linux", "template_id": tpl["id"], "vcpus": 1, "memory_mib": 128}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{course}");
    let course_id = course["id"].as_str().unwrap().to_owned();

    // Kill at several moments into the enrolment of the whole class; after
    // each restart the course must be consistent, and enrolling again fills
    // exactly the gaps.
    for delay_ms in [15u64, 40, 80, 120, 200] {
        let t = teacher.clone_for(&server.url);
        let body = json!({"usernames": students});
        let path = format!("/api/courses/{course_id}/students");
        let req = tokio::spawn(async move { t.try_post(&path, body).await });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        server.kill();
        let _ = req.await;
        server = ServerProcess::start(&args, Stdio::null(), Stdio::null(), &[]).await;
        assert_enrolment_consistent(&data, &course_id).await;
    }
    let teacher = Client::login(&server.url, "test-teacher", PASSWORD).await;
    let (s, report) = teacher
        .post(
            &format!("/api/courses/{course_id}/students"),
            json!({"usernames": students}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_enrolment_consistent(&data, &course_id).await;
    let (_, vms) = teacher
        .get(&format!("/api/vms?course_id={course_id}"))
        .await;
    assert_eq!(vms.as_array().unwrap().len(), STUDENTS);
    drop(server);
    remove_pool(&pool);
}

#[tokio::test]
async fn start_up_removes_fresh_orphan_layers_and_quarantines_written_ones() {
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-crash-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    let pool = format!("{}-tpl", dir.path().file_name().unwrap().to_string_lossy());
    let owner_dir = data
        .join("overlays")
        .join(uuid::Uuid::new_v4().to_string())
        .join(uuid::Uuid::new_v4().to_string());
    std::fs::create_dir_all(&owner_dir).unwrap();
    let fresh = owner_dir.join(format!("{}.qcow2", uuid::Uuid::new_v4()));
    pvce::images::overlay::create_overlay(&fresh, Path::new("/nonexistent/base.qcow2"), 1 << 30)
        .unwrap();
    let staged = owner_dir.join(format!("{}.qcow2.staging", uuid::Uuid::new_v4()));
    pvce::images::overlay::create_overlay(&staged, Path::new("/nonexistent/base.qcow2"), 1 << 30)
        .unwrap();
    // Something that is not a fresh overlay: it may be somebody's work.
    let written = owner_dir.join(format!("{}.qcow2", uuid::Uuid::new_v4()));
    std::fs::write(&written, vec![7u8; 200_000]).unwrap();

    let server =
        ServerProcess::start(&base_args(&data, &pool), Stdio::null(), Stdio::null(), &[]).await;
    assert!(!fresh.exists(), "a fresh orphan overlay is removed");
    assert!(!staged.exists(), "an uncommitted staged overlay is removed");
    assert!(!written.exists(), "a written orphan is moved away");
    let quarantined: Vec<PathBuf> = files_under(&data.join("quarantine"));
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(std::fs::read(&quarantined[0]).unwrap(), vec![7u8; 200_000]);
    drop(server);
    remove_pool(&pool);
}

/// A start or stop that died with the server left `starting`/`stopping`
/// rows; the reconciler settles them from what libvirt says (the rows are
/// set as a killed server leaves them: its lock is gone with it). A
/// graceful shutdown whose deadline has long passed is forced off, as the
/// UI promised.
#[tokio::test]
async fn vms_left_in_transitional_states_are_settled() {
    let env = TestEnv::start().await;
    env.user("test-teacher", Role::Teacher).await;
    env.user("test-alice", Role::Student).await;
    let teacher = env.client("test-teacher").await;
    let tpl = import_tiny(&teacher, "test-tiny").await;
    let specs: Vec<_> = ["a", "b", "c", "d"].map(|n| spec(n, &tpl, 128)).into();
    course(
        &teacher,
        json!({"code": "test-settle", "name": "Settle", "vm_specs": specs}),
        &["test-alice"],
    )
    .await;
    let alice = env.client("test-alice").await;
    let (_, vms) = alice.get("/api/vms").await;
    let ids: Vec<String> = vms
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    let by_name = |n: &str| {
        vms.as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == n)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (a, b, c, d) = (by_name("a"), by_name("b"), by_name("c"), by_name("d"));
    for id in [&a, &c, &d] {
        env.track_vm(id);
        let (s, vm) = alice.post_empty(&format!("/api/vms/{id}/start")).await;
        assert_eq!(s, StatusCode::OK, "{vm}");
    }
    let db = &env.server.state.pool;
    let local: String = sqlx::query_scalar("SELECT id FROM nodes WHERE name = 'local'")
        .fetch_one(db)
        .await
        .unwrap();
    // a: its start created the domain but the server died before recording it;
    // b: the server died before the domain was created;
    // c: a shutdown was asked and the server died; the guest still runs.
    // d: a shutdown was asked and the server died; its deadline passed two
    // minutes ago, with the guest still running.
    let overdue =
        pvce::db::format_time(time::OffsetDateTime::now_utc() - time::Duration::minutes(2));
    for (id, state, deadline) in [
        (&a, "starting", None),
        (&b, "starting", None),
        (&c, "stopping", None),
        (&d, "stopping", Some(overdue)),
    ] {
        sqlx::query("UPDATE vms SET state = $1, node_id = $2, stop_deadline = $3 WHERE id = $4")
            .bind(state)
            .bind(&local)
            .bind(deadline)
            .bind(id)
            .execute(db)
            .await
            .unwrap();
    }
    let states = wait_for(
        "transitional states settled",
        Duration::from_secs(30),
        || async {
            let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
                "SELECT id, state, last_error FROM vms WHERE id IN ($1, $2, $3, $4)",
            )
            .bind(&a)
            .bind(&b)
            .bind(&c)
            .bind(&d)
            .fetch_all(db)
            .await
            .unwrap();
            rows.iter()
                .all(|(_, s, _)| s != "starting" && s != "stopping")
                .then_some(rows)
        },
    )
    .await;
    let get = |id: &str| states.iter().find(|r| r.0 == id).unwrap().clone();
    assert_eq!(get(&a).1, "running");
    assert_eq!(get(&c).1, "running");
    assert_eq!(get(&d).1, "stopped");
    assert_eq!(common::virsh_domstate(&format!("test-pvce-{d}")), "");
    let (_, state_b, err_b) = get(&b);
    assert_eq!(state_b, "stopped");
    assert!(err_b.unwrap_or_default().contains("interrupted"));
    for id in &ids {
        let _ = alice.post_empty(&format!("/api/vms/{id}/poweroff")).await;
    }
}

/// With nowhere to write its log (stdout and stderr on /dev/full: every
/// write fails with ENOSPC) the server still answers every request and its
/// background loops keep running.
#[tokio::test]
async fn a_full_log_disk_drops_log_lines_not_requests() {
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-crash-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    let pool = format!("{}-tpl", dir.path().file_name().unwrap().to_string_lossy());
    let full = || {
        Stdio::from(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
    };
    let server = ServerProcess::start(
        &base_args(&data, &pool),
        full(),
        full(),
        &[("RUST_LOG", "pvce=debug,tower_http=debug")],
    )
    .await;
    let anon = Client::anonymous(&server.url);
    let requests = (0..20).map(|i| {
        let anon = &anon;
        async move {
            if i % 2 == 0 {
                anon.try_get("/api/me").await
            } else {
                anon.try_get("/healthz").await
            }
        }
    });
    for r in futures::future::join_all(requests).await {
        let (status, _) = r.expect("every request is answered");
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::OK,
            "{status}"
        );
    }
    // The sampler keeps going (it logs every pass at debug level).
    let (_, h1) = anon.get("/healthz").await;
    let first = h1["loops"]["sampler"]["last_success"].clone();
    wait_for(
        "the sampler's next pass",
        Duration::from_secs(20),
        || async {
            let (_, h) = anon.get("/healthz").await;
            let now = h["loops"]["sampler"]["last_success"].clone();
            (now.is_string() && now != first).then_some(())
        },
    )
    .await;
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pvce_log_lines_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped > 0, "the lost log lines are counted");
    drop(server);
    remove_pool(&pool);
}
