//! Deployments that share nodes, and `pvce fsck` (issue 17), on the real
//! local libvirtd:
//! - two servers (two data dirs, two installation ids) on one libvirtd each
//!   run a lab VM: every pool, domain and network is named with its own id,
//!   neither server's reconcile or stop touches the other's objects, and a
//!   server given the other's pool name explicitly refuses it (409) instead
//!   of repointing it — the benchmark-beside-server bug;
//! - the upgrade path: a store pool and a running domain made by a pvce
//!   without installation ids are adopted;
//! - `pvce fsck` on every broken state built for real, `--repair`, clean
//!   again, and the student's layer still there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::common::lab::{course, import_tiny, spec, vm_of};
use crate::common::tool::run_tool;
use crate::common::{self, TestEnv};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn virsh(args: &[&str]) -> (bool, String) {
    let out = Command::new("virsh")
        .args(["-q", "-c", "qemu:///system"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Where pool `name` points, `None` if there is no such pool.
fn pool_path(name: &str) -> Option<PathBuf> {
    let (ok, xml) = virsh(&["pool-dumpxml", name]);
    if !ok {
        return None;
    }
    let start = xml.find("<path>")? + "<path>".len();
    let end = xml[start..].find("</path>")? + start;
    Some(xml[start..end].into())
}

fn network_active(name: &str) -> bool {
    let (ok, out) = virsh(&["net-info", name]);
    ok && out
        .lines()
        .any(|l| l.starts_with("Active:") && l.ends_with("yes"))
}

/// Runs virsh commands when dropped (cleanup whatever happens).
struct Undo(Vec<Vec<String>>);

impl Drop for Undo {
    fn drop(&mut self) {
        for cmd in &self.0 {
            let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let _ = virsh(&args);
        }
    }
}

fn undo(cmds: &[&[&str]]) -> Undo {
    Undo(
        cmds.iter()
            .map(|c| c.iter().map(|s| (*s).to_owned()).collect())
            .collect(),
    )
}

/// A server whose libvirt names are all derived from its installation id
/// (base `base`), as a default production install's are from `pvce`.
async fn derived_env(base: &str) -> TestEnv {
    let base = base.to_owned();
    TestEnv::start_with(move |c| {
        c.libvirt_prefix = base;
        c.domain_prefix = None;
        c.template_pool = None;
    })
    .await
}

/// A lab-network course with one student's VM started on `env`; returns
/// (student client, VM id, lab network name).
async fn lab_vm(env: &TestEnv, tag: &str) -> (common::Client, String, String) {
    let teacher_name = format!("test-teacher-{tag}");
    let student_name = format!("test-student-{tag}");
    env.user(&teacher_name, Role::Teacher).await;
    let student = env.user(&student_name, Role::Student).await;
    let teacher = env.client(&teacher_name).await;
    let client = env.client(&student_name).await;
    let tpl = import_tiny(&teacher, &format!("test-tiny-{tag}")).await;
    let c = course(
        &teacher,
        json!({"code": format!("test-{tag}"), "name": tag, "lab_network": true,
               "vm_specs": [spec("linux", &tpl, 256)]}),
        &[&student_name],
    )
    .await;
    let vm = vm_of(env, &client, &c, "linux").await;
    let (s, v) = client.post_empty(&format!("/api/vms/{vm}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "running", "{v}");
    let net = pvce::labnets::network_name(
        &env.server.state.names.domain_prefix,
        c["id"].as_str().unwrap().parse().unwrap(),
        student["id"].as_str().unwrap().parse().unwrap(),
    );
    (client, vm, net)
}

#[tokio::test]
async fn two_installations_on_one_node_leave_each_other_alone() {
    // Two guests at once beside other tests' would crowd two cores.
    let _alone = common::gate::alone().await;
    let a = derived_env("test-pvce").await;
    let b = derived_env("test-pvce").await;
    let (ia, ib) = (&a.server.state.installation, &b.server.state.installation);
    assert_ne!(ia.id, ib.id, "each data dir has its own installation id");
    let (na, nb) = (&a.server.state.names, &b.server.state.names);
    assert_eq!(
        na.template_pool,
        format!("test-pvce-{}-templates", ia.short())
    );
    assert_eq!(na.domain_prefix, format!("test-pvce-{}-", ia.short()));
    assert_ne!(na.template_pool, nb.template_pool);
    // The id is kept in the database: the same on every start.
    assert_eq!(
        pvce::installation::Installation::load_or_create(&a.server.state.pool)
            .await
            .unwrap(),
        *ia
    );

    let (alice, vm_a, net_a) = lab_vm(&a, "a").await;
    let dom_a = format!("{}{vm_a}", na.domain_prefix);
    let _undo_a = undo(&[&["destroy", &dom_a], &["net-destroy", &net_a]]);
    let (bob, vm_b, net_b) = lab_vm(&b, "b").await;
    let dom_b = format!("{}{vm_b}", nb.domain_prefix);
    let _undo_b = undo(&[&["destroy", &dom_b], &["net-destroy", &net_b]]);

    // Each server's objects carry its own name and mark.
    assert_eq!(
        pool_path(&na.template_pool),
        Some(a.data_dir().join("templates"))
    );
    assert_eq!(
        pool_path(&nb.template_pool),
        Some(b.data_dir().join("templates"))
    );
    assert_eq!(common::virsh_domstate(&dom_a), "running");
    assert_eq!(common::virsh_domstate(&dom_b), "running");
    let (_, xml) = virsh(&["dumpxml", &dom_b]);
    let meta = pvce::libvirt::parse_metadata(&xml).unwrap();
    assert_eq!(meta.installation.as_deref(), Some(ib.mark().as_str()));
    let (_, xml) = virsh(&["net-dumpxml", &net_a]);
    assert_eq!(
        pvce::libvirt::parse_network_mark(&xml).as_deref(),
        Some(ia.mark().as_str())
    );
    assert!(net_a.starts_with(&na.domain_prefix) && network_active(&net_b));

    // Reconcile passes of both see only their own.
    for _ in 0..2 {
        a.server.state.vms.reconcile_once().await.unwrap();
        b.server.state.vms.reconcile_once().await.unwrap();
    }
    assert_eq!(common::virsh_domstate(&dom_a), "running");
    assert_eq!(common::virsh_domstate(&dom_b), "running");
    assert!(network_active(&net_a) && network_active(&net_b));

    // B stops its VM: its network goes, A's domain and network stay.
    let (s, v) = bob.post_empty(&format!("/api/vms/{vm_b}/poweroff")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(common::virsh_domstate(&dom_b), "");
    assert!(!network_active(&net_b));
    assert!(network_active(&net_a));
    assert_eq!(common::virsh_domstate(&dom_a), "running");
    // A cannot destroy B's domain by name (the metadata check), nor B A's.
    let conn = a
        .server
        .state
        .nodes
        .conn(a.server.state.nodes.list().await.unwrap()[0].id)
        .await
        .unwrap();
    match conn.destroy(&dom_a, &ib.mark()).await {
        Err(pvce::libvirt::LibvirtError::NotOurs(_)) => {}
        other => panic!("B's mark destroyed A's domain: {other:?}"),
    }
    match conn.remove_network(&net_a, &ib.mark()).await {
        Err(pvce::libvirt::LibvirtError::NotOurs(_)) => {}
        other => panic!("B's mark removed A's network: {other:?}"),
    }
    assert_eq!(common::virsh_domstate(&dom_a), "running");

    // The old bug: a third server told to use A's pool name (as every
    // server once did by default) refuses it instead of repointing it.
    let c_env = TestEnv::start_with({
        let pool = na.template_pool.clone();
        move |c| c.template_pool = Some(pool)
    })
    .await;
    c_env.user("test-teacher-c", Role::Teacher).await;
    c_env.user("test-student-c", Role::Student).await;
    let teacher = c_env.client("test-teacher-c").await;
    let carol = c_env.client("test-student-c").await;
    let tpl = import_tiny(&teacher, "test-tiny-c").await;
    let cc = course(
        &teacher,
        json!({"code": "test-c", "name": "c", "vm_specs": [spec("linux", &tpl, 256)]}),
        &["test-student-c"],
    )
    .await;
    let vm_c = vm_of(&c_env, &carol, &cc, "linux").await;
    let got = carol.post_empty(&format!("/api/vms/{vm_c}/start")).await;
    common::assert_error(&got, StatusCode::CONFLICT, "foreign_libvirt_object");
    assert_eq!(
        pool_path(&na.template_pool),
        Some(a.data_dir().join("templates"))
    );
    assert_eq!(common::virsh_domstate(&dom_a), "running");
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm_a}/poweroff")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!network_active(&net_a));
}

#[tokio::test]
async fn an_older_installations_pool_and_running_domain_are_adopted() {
    // A base of its own: its "older" names are this test's alone.
    let base = format!(
        "test-pvce-up{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let mut env = derived_env(&base).await;
    env.user("test-teacher", Role::Teacher).await;
    env.user("test-alice", Role::Student).await;
    let teacher = env.client("test-teacher").await;
    let alice = env.client("test-alice").await;
    let tpl = import_tiny(&teacher, "test-tiny").await;
    let c = course(
        &teacher,
        json!({"code": "test-up", "name": "up", "vm_specs": [spec("linux", &tpl, 256)]}),
        &["test-alice"],
    )
    .await;
    let vm = vm_of(&env, &alice, &c, "linux").await;
    let new_pool = env.server.state.names.template_pool.clone();
    let templates = env.data_dir().join("templates");

    // What the older pvce left: its store pool (`<base>-templates`) at this
    // installation's directory, and a running domain `<base>-<vm>` whose
    // metadata has no installation.
    let old_pool = format!("{base}-templates");
    let old_dom = format!("{base}-{vm}");
    let _undo = undo(&[
        &["destroy", &old_dom],
        &["pool-destroy", &old_pool],
        &["pool-undefine", &old_pool],
    ]);
    let (ok, _) = virsh(&[
        "pool-define-as",
        &old_pool,
        "dir",
        "--target",
        templates.to_str().unwrap(),
    ]);
    assert!(ok, "define the older pool");
    assert!(virsh(&["pool-start", &old_pool]).0);
    let node = env.server.state.nodes.list().await.unwrap()[0].clone();
    let conn = env.server.state.nodes.conn(node.id).await.unwrap();
    let row: (String, String) =
        sqlx::query_as("SELECT owner_id, overlay_path FROM vms WHERE id = $1")
            .bind(&vm)
            .fetch_one(&env.server.state.pool)
            .await
            .unwrap();
    let spec = pvce::libvirt::DomainSpec {
        name: old_dom.clone(),
        uuid: vm.parse().unwrap(),
        title: "an older pvce's domain".into(),
        vcpus: 1,
        memory_mib: 128,
        hypervisor: pvce::libvirt::Hypervisor::Tcg,
        disk_path: row.1.into(),
        disk_cache: pvce::libvirt::DiskCache::Writeback,
        graphics: pvce::libvirt::GraphicsKind::Vnc,
        graphics_listen: "127.0.0.1".into(),
        graphics_password: Some("abcdefgh".into()),
        serial_log: None,
        smbios_serial: "test-upgrade".into(),
        metadata: pvce::libvirt::PvceMetadata {
            id: vm.clone(),
            owner: row.0,
            course: c["id"].as_str().map(str::to_owned),
            template: None,
            installation: None,
        },
        network: None,
        network_mtu: None,
        clipboard_agent: false,
    };
    conn.create_domain(&spec).await.unwrap();

    // The upgrade: the server restarts on the same data dir.
    env.server.abort();
    let mut config = (*env.server.state.config).clone();
    config.alert_interval_secs = 0;
    env.server = pvce::app::start(config, "127.0.0.1:0").await.unwrap();
    let alice = alice.clone_for(&env.server.url());

    // The pool is adopted under the new name at the same path, its files kept.
    assert_eq!(pool_path(&old_pool), None, "the older name is gone");
    assert_eq!(pool_path(&new_pool), Some(templates.clone()));
    assert!(
        env.server
            .state
            .storage
            .template_path(tpl["id"].as_str().unwrap().parse().unwrap())
            .exists()
    );
    // The running domain is adopted under its old name…
    let (s, v) = alice.get(&format!("/api/vms/{vm}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(
        env.server.state.vms.domain_name(vm.parse().unwrap()),
        old_dom
    );
    // …and stopped through it.
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "stopped", "{v}");
    assert_eq!(common::virsh_domstate(&old_dom), "");
}

/// Defines (persistently, not running) a domain marked with `mark` for a VM
/// id no record has.
fn define_marked_domain(dir: &Path, name: &str, mark: &str) {
    let id = uuid::Uuid::new_v4();
    let spec = pvce::libvirt::DomainSpec {
        name: name.into(),
        uuid: id,
        title: "fsck test".into(),
        vcpus: 1,
        memory_mib: 64,
        hypervisor: pvce::libvirt::Hypervisor::Tcg,
        disk_path: dir.join("none.qcow2"),
        disk_cache: pvce::libvirt::DiskCache::Writeback,
        graphics: pvce::libvirt::GraphicsKind::Vnc,
        graphics_listen: "127.0.0.1".into(),
        graphics_password: None,
        serial_log: None,
        smbios_serial: "test-fsck".into(),
        metadata: pvce::libvirt::PvceMetadata {
            id: id.to_string(),
            owner: uuid::Uuid::new_v4().to_string(),
            course: None,
            template: None,
            installation: Some(mark.into()),
        },
        network: None,
        network_mtu: None,
        clipboard_agent: false,
    };
    let file = dir.join(format!("{name}.xml"));
    std::fs::write(&file, pvce::libvirt::domain_xml(&spec).unwrap()).unwrap();
    let (ok, out) = virsh(&["define", file.to_str().unwrap()]);
    assert!(ok, "define {name}: {out}");
}

async fn layer_of(pool: &pvce::db::Pool, vm: &str) -> PathBuf {
    let p: String = sqlx::query_scalar("SELECT overlay_path FROM vms WHERE id = $1")
        .bind(vm)
        .fetch_one(pool)
        .await
        .unwrap();
    p.into()
}

async fn template_state(pool: &pvce::db::Pool, id: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT state FROM templates WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(pool)
        .await
        .unwrap()
}

fn has(report: &pvce::fsck::Report, kind: &str, subject_part: &str) -> bool {
    report
        .findings
        .iter()
        .any(|f| f.kind.as_str() == kind && f.subject.contains(subject_part))
}

#[tokio::test]
async fn fsck_reports_every_broken_state_and_repairs_what_is_safe() {
    let env = TestEnv::start().await;
    let state = &env.server.state;
    env.user("test-teacher", Role::Teacher).await;
    for s in ["test-s1", "test-s2", "test-s3"] {
        env.user(s, Role::Student).await;
    }
    let teacher = env.client("test-teacher").await;
    let tpl = import_tiny(&teacher, "test-tiny").await;
    let c = course(
        &teacher,
        json!({"code": "test-fsck", "name": "fsck", "vm_specs": [spec("linux", &tpl, 256)]}),
        &["test-s1", "test-s2", "test-s3"],
    )
    .await;
    let mut vms = Vec::new();
    for s in ["test-s1", "test-s2", "test-s3"] {
        let client = env.client(s).await;
        vms.push(vm_of(&env, &client, &c, "linux").await);
    }
    let (l1, l2, l3) = (
        layer_of(&state.pool, &vms[0]).await,
        layer_of(&state.pool, &vms[1]).await,
        layer_of(&state.pool, &vms[2]).await,
    );
    // A student's work in VM 3's layer (bytes appended: the file's own).
    std::fs::OpenOptions::new()
        .append(true)
        .open(&l3)
        .map(|mut f| std::io::Write::write_all(&mut f, b"student work"))
        .unwrap()
        .unwrap();
    let l3_sum = common::sha256_file(&l3);

    // Clean to start with.
    let far = SystemTime::now() + Duration::from_secs(3600);
    let r = state.fsck.run(far, false).await.unwrap();
    assert!(r.is_clean(), "{}", r.to_text());

    // Every broken state, made for real:
    let scratch = tempfile::Builder::new()
        .prefix("test-pvce-fsck-")
        .tempdir()
        .unwrap();
    let mark = state.installation.mark();
    let orphan_dom = format!(
        "test-pvce-orphan-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let foreign_dom = format!(
        "test-pvce-foreign-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let _undo = undo(&[&["undefine", &orphan_dom], &["undefine", &foreign_dom]]);
    // an orphan domain of this installation (defined, not running), and one
    // of another installation that fsck must not judge;
    define_marked_domain(scratch.path(), &orphan_dom, &mark);
    define_marked_domain(scratch.path(), &foreign_dom, "another-installation");
    // VM 1's layer staged but never published (a crash mid-enrolment);
    let staged = PathBuf::from(format!("{}{}", l1.display(), pvce::vms::STAGING_SUFFIX));
    std::fs::rename(&l1, &staged).unwrap();
    // VM 2's layer gone;
    std::fs::remove_file(&l2).unwrap();
    // a layer no VM names (a copy of VM 3's: a student's data);
    let orphan_layer = l3.with_file_name(format!("{}.qcow2", uuid::Uuid::new_v4()));
    std::fs::copy(&l3, &orphan_layer).unwrap();
    // half-written files beside a layer and a template, and an upload left;
    let tmp_layer = l3.with_file_name(format!(".x.qcow2.{}.tmp", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp_layer, b"half").unwrap();
    let tmp_tpl = state
        .storage
        .templates_dir()
        .join(format!(".t.qcow2.{}.tmp", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp_tpl, b"half").unwrap();
    let upload = state.storage.upload_path();
    std::fs::write(&upload, b"partial upload").unwrap();
    // a template whose layer is gone, and one whose backing file is.
    let gone = uuid::Uuid::new_v4();
    let broken = uuid::Uuid::new_v4();
    for (id, name) in [(gone, "test-gone"), (broken, "test-broken")] {
        sqlx::query(
            "INSERT INTO templates (id, name, os, software, state, created_at) VALUES ($1, $2, 'x', '[]', 'ready', $3)",
        )
        .bind(id.to_string())
        .bind(name)
        .bind(pvce::db::now())
        .execute(&state.pool)
        .await
        .unwrap();
    }
    let missing_base = scratch.path().join("missing-base.qcow2");
    run_tool(
        Command::new("qemu-img")
            .args(["create", "-f", "qcow2", "-F", "qcow2", "-u", "-b"])
            .arg(&missing_base)
            .arg(state.storage.template_path(broken))
            .arg("64M"),
    );

    // Files younger than the grace period are not judged yet…
    let r = state.fsck.run(SystemTime::now(), false).await.unwrap();
    assert!(!has(&r, "temp_file", ""), "{}", r.to_text());
    // …later they are: the whole report.
    let r = state.fsck.run(far, false).await.unwrap();
    let text = r.to_text();
    assert!(has(&r, "orphan_domain", &orphan_dom), "{text}");
    assert!(!has(&r, "orphan_domain", &foreign_dom), "{text}");
    assert!(
        has(&r, "unpublished_layer", &staged.display().to_string()),
        "{text}"
    );
    assert!(has(&r, "vm_without_layer", &vms[1]), "{text}");
    assert!(
        !has(&r, "vm_without_layer", &vms[0]),
        "staged is not missing: {text}"
    );
    assert!(
        has(&r, "orphan_layer", &orphan_layer.display().to_string()),
        "{text}"
    );
    assert!(
        has(&r, "temp_file", &tmp_layer.display().to_string()),
        "{text}"
    );
    assert!(
        has(&r, "temp_file", &tmp_tpl.display().to_string()),
        "{text}"
    );
    assert!(
        has(&r, "stale_upload", &upload.display().to_string()),
        "{text}"
    );
    assert!(
        has(&r, "template_without_layer", &gone.to_string()),
        "{text}"
    );
    assert!(
        has(&r, "missing_backing_file", &broken.to_string()),
        "{text}"
    );
    assert_eq!(r.findings.len(), 9, "{text}");
    assert_eq!(r.unrepaired(), 9);
    // The report changed nothing.
    assert!(staged.exists() && orphan_layer.exists() && tmp_layer.exists());
    assert_eq!(virsh(&["domstate", &orphan_dom]).1.trim(), "shut off");

    // The CLI says the same (text and JSON; exit 2: findings left). The
    // files are young for its real clock: the records and domains show.
    let cli = |json: bool| {
        let mut cmd = Command::new(common::process::binary());
        cmd.arg("fsck").args(common::process::base_args(
            &env.data_dir(),
            &state.names.template_pool,
        ));
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = cli(true);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["installation_id"], mark.as_str());
    let found: Vec<&str> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(
        found.contains(&"orphan_domain") && found.contains(&"vm_without_layer"),
        "{j}"
    );
    let out = cli(false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("vm_without_layer") && text.contains(&orphan_dom),
        "{text}"
    );

    // Repair.
    let r = state.fsck.run(far, true).await.unwrap();
    assert_eq!(r.unrepaired(), 0, "{}", r.to_text());
    let quarantine = r.quarantine.clone().expect("a quarantine dir");
    assert_eq!(
        virsh(&["domstate", &foreign_dom]).1.trim(),
        "shut off",
        "another installation's domain stays"
    );
    assert!(
        !virsh(&["domstate", &orphan_dom]).0,
        "the orphan domain is undefined"
    );
    assert!(
        l1.exists() && !staged.exists(),
        "the staged layer is published"
    );
    assert!(!tmp_layer.exists() && !tmp_tpl.exists() && !upload.exists());
    // The orphan layer is quarantined, never deleted: the same bytes.
    assert!(!orphan_layer.exists());
    let moved = common::walk_find(
        &quarantine,
        orphan_layer.file_name().unwrap().to_str().unwrap(),
    )
    .expect("the orphan layer in quarantine");
    assert_eq!(common::sha256_file(&moved), l3_sum);
    // Records marked.
    let (s, v) = env
        .client("test-s2")
        .await
        .get(&format!("/api/vms/{}", vms[1]))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["state"], "error", "{v}");
    assert_eq!(template_state(&state.pool, gone).await, "failed");
    assert_eq!(template_state(&state.pool, broken).await, "failed");

    // Clean again, and the student's layer is where it was, untouched.
    let r = state.fsck.run(far, false).await.unwrap();
    assert!(r.is_clean(), "{}", r.to_text());
    assert_eq!(common::sha256_file(&l3), l3_sum);
    let out = cli(false);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
