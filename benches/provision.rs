//! Class provisioning benchmark: enrol N students in a course with 3 VM specs
//! (N×3 personal overlays + rows) through the real domain code, SQLite and
//! file system. Prints total wall time and time per overlay.
//!
//! Run: `cargo bench --bench provision` (N from PVCE_BENCH_STUDENTS, default 500).
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use pvce::config::Config;

mod support;

#[tokio::main]
async fn main() {
    let students: usize = support::env_or("PVCE_BENCH_STUDENTS", 500);
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-bench-")
        .tempdir()
        .unwrap();
    let config = Config::for_data_dir(dir.path().join("data"));
    let (storage, pool) = pvce::state::open(&config).await.unwrap();
    let limits = pvce::templates::ImportLimits {
        max_upload_bytes: u64::MAX,
        max_virtual_size: u64::MAX,
    };

    // A 1 GiB template layer (content doesn't matter for provisioning).
    let src = dir.path().join("base.qcow2");
    let st = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&src)
        .arg("1G")
        .status()
        .unwrap();
    assert!(st.success());
    let t = pvce::templates::import_local_file(
        &pool,
        &storage,
        limits,
        pvce::templates::ImportParams {
            name: "bench-base".into(),
            format: pvce::images::ImageFormat::Qcow2,
            os: "linux".into(),
            software: vec![],
            parent_id: None,
        },
        None,
        &src,
    )
    .await
    .unwrap();

    let teacher = support::bench_teacher(&pool).await;
    let names = support::sql_students(&pool, students).await;

    let spec = |n: &str| pvce::courses::NewVmSpec {
        name: n.into(),
        template_id: t.id,
        vcpus: 1,
        memory_mib: 512,
        graphics: None,
    };
    let course = pvce::courses::create(
        &pool,
        &teacher,
        pvce::courses::NewCourse {
            code: "BENCH-1".into(),
            name: "Bench".into(),
            vm_specs: vec![spec("desktop"), spec("server"), spec("router")],
            lab_network: false,
            clipboard_to_guest: true,
            clipboard_from_guest: true,
            clipboard_agent: false,
            teacher_id: None,
        },
    )
    .await
    .unwrap();

    let start = Instant::now();
    let report = pvce::courses::enrol(
        &pool,
        &storage,
        pvce::vms::layers::LayerStorage::Shared,
        &course,
        &names,
        pvce::courses::EnrolSource::Teacher,
    )
    .await
    .unwrap();
    let elapsed = start.elapsed();
    let overlays = report.vms_created;
    assert_eq!(overlays as usize, students * 3);
    let bytes: u64 = walk_size(&dir.path().join("data/overlays"));
    println!("provision: students={students} specs=3 overlays={overlays}");
    println!(
        "provision: total {:.3} s, {:.3} ms per overlay, {:.0} overlays/s",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / overlays as f64,
        overlays as f64 / elapsed.as_secs_f64()
    );
    println!(
        "provision: overlays occupy {:.1} MiB on disk ({:.0} KiB each)",
        bytes as f64 / 1048576.0,
        bytes as f64 / 1024.0 / overlays as f64
    );
}

fn walk_size(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            walk_size(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}
