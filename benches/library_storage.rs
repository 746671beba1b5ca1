//! Storage benchmark of the template tree: the built-in library from
//! `templates-tree/` (blank → tiny-linux → tiny-linux-c / tiny-linux-db, a
//! depth-3 tree) plus a class of students' personal layers, as bytes on disk
//! vs what flat copies would take (every template and every student VM as a
//! standalone image).
//!
//! "On disk" is allocated blocks (`st_blocks`), so sparse files count what
//! they use. A flat copy's size is `qemu-img measure`'s `required` for
//! converting the image *with its backing chain* into one standalone qcow2,
//! i.e. what a copy-per-VM system would store.
//!
//! Run: `cargo bench --bench library_storage` (students from
//! PVCE_BENCH_STUDENTS, default 50, each with both course templates = 100
//! personal layers; each layer gets PVCE_BENCH_STUDENT_MIB MiB of student data
//! written into it, default 4, so they are not empty).
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pvce::config::Config;

mod support;
#[path = "../tests/it/common/tool.rs"]
mod tool;
use tool::run_tool;

const MIB: f64 = 1024.0 * 1024.0;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// Bytes a standalone qcow2 copy of `path` (through its chain) would need.
fn flat_bytes(path: &Path) -> u64 {
    let out = run_tool(
        Command::new("qemu-img")
            .args(["measure", "--output=json", "-f", "qcow2", "-O", "qcow2"])
            .arg(path),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["required"].as_u64().unwrap()
}

#[tokio::main]
async fn main() {
    let students = env_num("PVCE_BENCH_STUDENTS", 50) as usize;
    let student_mib = env_num("PVCE_BENCH_STUDENT_MIB", 4);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // On the real disk (not tmpfs), beside the build output.
    let scratch = repo.join("target");
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-bench-")
        .tempdir_in(&scratch)
        .unwrap();
    let config = Config::for_data_dir(dir.path().join("data"));
    let (storage, pool) = pvce::state::open(&config).await.unwrap();

    let t0 = Instant::now();
    pvce::library::build(
        &pool,
        &storage,
        support::NO_LIMITS,
        &repo.join("templates-tree"),
    )
    .await
    .unwrap();
    let built = t0.elapsed();
    let templates = pvce::templates::list(&pool).await.unwrap();
    let by_name = |n: &str| templates.iter().find(|t| t.name == n).unwrap().clone();
    let courses = [by_name("tiny-linux-c"), by_name("tiny-linux-db")];

    let (teacher, names) = support::teacher_and_students(&pool, students).await;
    let specs: Vec<(String, uuid::Uuid)> = courses.iter().map(|t| (t.name.clone(), t.id)).collect();
    let course = support::course(&pool, &teacher, "BENCH-STORAGE", &specs, 256).await;
    let report = support::enrol(&pool, &storage, &course, &names).await;
    let layers: Vec<PathBuf> = sqlx::query_scalar::<_, String>("SELECT overlay_path FROM vms")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(layers.len() as u64, report.vms_created);

    // Each student's own work: distinct data in their layer (opened without
    // the chain, so only the layer itself is written).
    if student_mib > 0 {
        for (i, l) in layers.iter().enumerate() {
            let spec = serde_json::json!({"driver": "qcow2", "file": {"driver": "file", "filename": l}, "backing": null});
            let st = Command::new("qemu-io")
                .arg("-c")
                .arg(format!("write -P {} 256M {}M", (i % 250) + 1, student_mib))
                .arg(format!("json:{spec}"))
                .output()
                .unwrap();
            assert!(
                st.status.success(),
                "{}",
                String::from_utf8_lossy(&st.stderr)
            );
        }
    }

    let mut tpl_disk = 0;
    let mut tpl_flat = 0;
    println!(
        "library_storage: template tree (built in {:.1} s)",
        built.as_secs_f64()
    );
    println!(
        "  {:<16} {:>5} {:>12} {:>12}",
        "template", "depth", "own MiB", "flat MiB"
    );
    for t in &templates {
        let p = storage.template_path(t.id);
        let (own, flat) = (allocated(&p), flat_bytes(&p));
        tpl_disk += own;
        tpl_flat += flat;
        println!(
            "  {:<16} {:>5} {:>12.2} {:>12.2}",
            t.name,
            t.depth,
            own as f64 / MIB,
            flat as f64 / MIB
        );
    }
    let stu_disk: u64 = layers.iter().map(|l| allocated(l)).sum();
    let stu_flat: u64 = layers.iter().map(|l| flat_bytes(l)).sum();
    let usage = pvce::templates::usage(&pool).await.unwrap();
    println!(
        "library_storage: {} templates, {} student layers ({} students x 2 courses, {} MiB written each)",
        templates.len(),
        layers.len(),
        students,
        student_mib
    );
    let row = |what: &str, disk: u64, flat: u64| {
        println!(
            "  {:<22} on disk {:>9.1} MiB   flat copies {:>9.1} MiB   ratio {:>5.1}x",
            what,
            disk as f64 / MIB,
            flat as f64 / MIB,
            flat as f64 / disk.max(1) as f64
        );
    };
    row("templates", tpl_disk, tpl_flat);
    row("student layers", stu_disk, stu_flat);
    row("total", tpl_disk + stu_disk, tpl_flat + stu_flat);
    println!(
        "library_storage: pvce's own usage report: stored {:.1} MiB, flat {:.1} MiB (file sizes)",
        usage.stored_bytes as f64 / MIB,
        usage.flat_copies_bytes as f64 / MIB
    );
}
