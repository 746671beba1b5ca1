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
    let students: usize = std::env::var("PVCE_BENCH_STUDENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-bench-")
        .tempdir()
        .unwrap();
    let config = Config::for_data_dir(dir.path().join("data"));
    let (storage, pool) = pvce::state::open(&config).await.unwrap();

    // A 1 GiB template layer (content doesn't matter for provisioning).
    let t = support::blank_template(&pool, &storage, dir.path(), "1G").await;
    let (teacher, names) = support::teacher_and_students(&pool, students).await;
    let specs: Vec<(String, uuid::Uuid)> = ["desktop", "server", "router"]
        .iter()
        .map(|n| ((*n).to_owned(), t.id))
        .collect();
    let course = support::course(&pool, &teacher, "BENCH-1", &specs, 512).await;

    let start = Instant::now();
    let report = support::enrol(&pool, &storage, &course, &names).await;
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
