//! Nightly-backup benchmark (issue 20): 500 personal layers of which 50
//! change by 20 MiB each. Measures, through the service's own code
//! ([`pvce::backup::Backups::run`], [`pvce::backup::Backups::restore`],
//! [`pvce::backup::install::restore`]) and a local restic repository:
//! 1. the first nightly run (every layer new): time, bytes restic read,
//!    bytes added to the repository (restic's summaries and `du -b` of the
//!    repository before/after), items;
//! 2. the second run after 50 layers got 20 MiB of fresh random data each:
//!    the same figures, and how many layers were skipped as unchanged (the
//!    point: its cost follows the change, not the installation's size);
//! 3. a third run with nothing changed (the control plane only);
//! 4. restoring one layer as its teacher would (`Backups::restore`, the
//!    newest point) and the whole installation onto an empty data dir
//!    (`pvce restore --from`'s function), checking that the restored
//!    database has every VM and that restored layers hold the same guest
//!    data as the originals (`qemu-img compare`, which reads through each
//!    image's own template chain) and pass `qemu-img check`.
//!
//! The layers are real qcow2 overlays made by enrolment (`courses::enrol`,
//! one VM spec, one student per layer) on a blank 1 GiB qcow2 template; each
//! gets PVCE_BENCH_OWN_MIB of random data (not a pattern: restic would
//! deduplicate it across layers) written with `qemu-io write -s` at guest
//! offset 0. A changed layer gets PVCE_BENCH_CHANGE_MIB of fresh random data
//! at guest offset half its own data, so the change rewrites clusters the
//! layer had and allocates new ones. The runs are dated one day apart (as
//! nightly runs are), so retention keeps every snapshot; the first run also
//! does the weekly `restic check`, as the first run of an installation does.
//!
//! Run: `cargo bench --profile dev --bench backup_nightly` (the time goes
//! to restic and qemu-img, not to pvce's own code, so the debug build of
//! pvce will do). Settings: PVCE_BENCH_LAYERS (default 500), PVCE_BENCH_CHANGED (50),
//! PVCE_BENCH_CHANGE_MIB (20), PVCE_BENCH_OWN_MIB (8), PVCE_BENCH_VERIFY
//! (restored layers compared with their originals, default 30, spread over
//! changed and unchanged ones), PVCE_BENCH_KEEP=1 keeps the temporary
//! directory. With the defaults it took 33 minutes on the 2-core
//! development machine at load average 8–12 (each of the 500 first backups
//! and of the 500 restores is one restic process, ≈1.7 s each there); with
//! PVCE_BENCH_LAYERS=200 it stays within about 15 minutes. It needs about
//! 15 GiB of free space under the temporary directory (removed at the end).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pvce::backup::{Run, Trigger};
use pvce::config::Config;
use support::{env_or, loadavg};
use uuid::Uuid;

mod support;

const MIB: u64 = 1024 * 1024;

/// Apparent bytes of the files under `dir` (what the repository stores;
/// 0 before it exists).
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            tree_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

fn file_bytes(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

fn mib(b: u64) -> f64 {
    b as f64 / MIB as f64
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `len_mib` MiB of fresh random data into the guest disk of the
/// qcow2 `layer` at guest offset `at_mib` MiB (`scratch`: a work file).
fn write_random(layer: &Path, at_mib: u64, len_mib: u64, scratch: &Path) {
    use std::io::Read;
    let mut buf = vec![0u8; usize::try_from(len_mib * MIB).unwrap()];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    std::fs::write(scratch, &buf).unwrap();
    run_ok(
        Command::new("qemu-io")
            .args(["-f", "qcow2", "-c"])
            .arg(format!(
                "write -s {} {at_mib}M {len_mib}M",
                scratch.display()
            ))
            .arg(layer),
    );
}

/// Runs `f` over `items` on two threads (the machine's cores).
fn on_two_threads<T: Sync>(items: &[T], f: impl Fn(&T, &Path) + Sync, work: &Path) {
    let half = items.len().div_ceil(2);
    std::thread::scope(|s| {
        for (n, chunk) in items.chunks(half.max(1)).enumerate() {
            let f = &f;
            let scratch = work.join(format!("random-{n}.bin"));
            s.spawn(move || {
                for it in chunk {
                    f(it, &scratch);
                }
                let _ = std::fs::remove_file(&scratch);
            });
        }
    });
}

/// One nightly run's figures.
struct Measured {
    secs: f64,
    run: Run,
    /// Bytes restic read for the layers, and for the control plane.
    read_layers: u64,
    read_control: u64,
    /// Growth of the repository directory.
    repo_growth: u64,
}

async fn nightly(state: &pvce::state::AppState, repo: &Path, now: i64, label: &str) -> Measured {
    let before = tree_bytes(repo);
    let t = Instant::now();
    let run = state
        .backups
        .run(now, Trigger::Manual, Some("bench"))
        .await
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(run.ok, "{label}: run failed: {:?}", run.error);
    let read = |kind: &'static str| {
        let pool = state.pool.clone();
        let id = run.id.to_string();
        async move {
            let v: Option<i64> = sqlx::query_scalar(
                "SELECT SUM(bytes_total) FROM backup_points WHERE run_id = $1 AND kind = $2",
            )
            .bind(id)
            .bind(kind)
            .fetch_one(&pool)
            .await
            .unwrap();
            u64::try_from(v.unwrap_or(0)).unwrap()
        }
    };
    let m = Measured {
        secs,
        read_layers: read("layer").await,
        read_control: read("control").await,
        repo_growth: tree_bytes(repo).saturating_sub(before),
        run,
    };
    println!(
        "backup_nightly: {label}: {:.1} s; backed up {} (control plane included), unchanged {}, skipped {}, failed {}; \
         read {:.1} MiB of layers + {:.1} MiB control plane; restic data_added {:.1} MiB; repository +{:.1} MiB; load {}",
        m.secs,
        m.run.backed_up,
        m.run.unchanged,
        m.run.skipped,
        m.run.failed,
        mib(m.read_layers),
        mib(m.read_control),
        mib(m.run.bytes_added),
        mib(m.repo_growth),
        loadavg()
    );
    m
}

fn qemu_img_compare(a: &Path, b: &Path) {
    run_ok(
        Command::new("qemu-img")
            .args(["compare", "-q"])
            .arg(a)
            .arg(b),
    );
}

fn qemu_img_check(p: &Path) {
    run_ok(
        Command::new("qemu-img")
            .args(["check", "-q", "-f", "qcow2"])
            .arg(p),
    );
}

#[tokio::main]
async fn main() {
    let layers: usize = env_or("PVCE_BENCH_LAYERS", 500);
    let changed: usize = env_or("PVCE_BENCH_CHANGED", 50).min(layers);
    let change_mib: u64 = env_or("PVCE_BENCH_CHANGE_MIB", 20);
    let own_mib: u64 = env_or("PVCE_BENCH_OWN_MIB", 8);
    let verify: usize = env_or("PVCE_BENCH_VERIFY", 30);
    println!(
        "backup_nightly: layers={layers} changed={changed} change={change_mib} MiB own data={own_mib} MiB; \
         {}; load {}",
        run_ok(Command::new("restic").arg("version")).trim(),
        loadavg()
    );
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-bench-")
        .tempdir()
        .unwrap();
    let work = dir.path().to_path_buf();
    let repo = work.join("repo");
    let mut config = Config::for_data_dir(work.join("data"));
    config.backup_repo = Some(repo.to_string_lossy().into_owned());
    let state = pvce::state::AppState::new(config).await.unwrap();
    let pool = state.pool.clone();

    // A blank 1 GiB template (its content is not what is measured).
    let template = support::blank_template(&pool, &state.storage, &work, "1G").await;
    let (teacher, names) = support::teacher_and_students(&pool, layers).await;
    let specs = [("vm".to_owned(), template.id)];
    let course = support::course(&pool, &teacher, "BENCH-BK", &specs, 512).await;
    support::enrol(&pool, &state.storage, &course, &names).await;
    let vms: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, overlay_path FROM vms WHERE course_id = $1 ORDER BY overlay_path",
    )
    .bind(course.id.to_string())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(vms.len(), layers);
    let vms: Vec<(Uuid, PathBuf)> = vms
        .into_iter()
        .map(|(id, p)| (Uuid::parse_str(&id).unwrap(), PathBuf::from(p)))
        .collect();

    // Every layer gets data of its own.
    let t = Instant::now();
    on_two_threads(
        &vms,
        |(_, layer), scratch| write_random(layer, 0, own_mib, scratch),
        &work,
    );
    for (_, layer) in &vms {
        qemu_img_check(layer);
    }
    let layer_total: u64 = vms.iter().map(|(_, p)| file_bytes(p)).sum();
    println!(
        "backup_nightly: set-up: {layers} layers, {:.1} MiB of layer files, written and checked in {:.1} s",
        mib(layer_total),
        t.elapsed().as_secs_f64()
    );

    // Nightly runs, a day apart (ending now).
    let day = 86_400;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let first = nightly(&state, &repo, now - 2 * day, "run 1 (all new)").await;
    assert_eq!(first.run.backed_up as usize, layers + 1);

    // `changed` layers spread over the installation change.
    let step = layers.checked_div(changed).unwrap_or(usize::MAX);
    let changes: Vec<(Uuid, PathBuf)> = vms
        .iter()
        .step_by(step.max(1))
        .take(changed)
        .cloned()
        .collect();
    on_two_threads(
        &changes,
        |(_, layer), scratch| write_random(layer, own_mib / 2, change_mib, scratch),
        &work,
    );
    let changed_sizes: u64 = changes.iter().map(|(_, p)| file_bytes(p)).sum();
    let second = nightly(&state, &repo, now - day, "run 2 (changed layers)").await;
    assert_eq!(second.run.backed_up as usize, changes.len() + 1);
    assert_eq!(second.run.unchanged as usize, layers - changes.len());
    let third = nightly(&state, &repo, now, "run 3 (nothing changed)").await;
    assert_eq!(third.run.backed_up, 1);
    assert_eq!(third.run.unchanged as usize, layers);

    // One layer, as its teacher restores it (the newest point).
    let (vm0, layer0) = changes.first().cloned().unwrap_or_else(|| vms[0].clone());
    let before = work.join("before-restore.qcow2");
    std::fs::hard_link(&layer0, &before).unwrap();
    let points = state.backups.points(&teacher, vm0).await.unwrap();
    let t = Instant::now();
    state
        .backups
        .restore(&teacher, vm0, points[0].id)
        .await
        .unwrap();
    let one_secs = t.elapsed().as_secs_f64();
    qemu_img_check(&layer0);
    qemu_img_compare(&before, &layer0);
    std::fs::remove_file(&before).unwrap();
    println!(
        "backup_nightly: restore of one layer ({:.1} MiB, {} points): {one_secs:.2} s; same guest data as before",
        mib(file_bytes(&layer0)),
        points.len()
    );

    // The whole installation onto an empty data dir.
    let target = work.join("restored");
    let config2 = Config::for_data_dir(&target);
    let password = work.join("data/backup/restic-password");
    let t = Instant::now();
    let report = pvce::backup::install::restore(&config2, &repo.to_string_lossy(), &password)
        .await
        .unwrap();
    let all_secs = t.elapsed().as_secs_f64();
    assert_eq!(report.layers, layers);
    assert!(report.without_backup.is_empty());
    let (_, pool2) = pvce::state::open(&config2).await.unwrap();
    let restored: Vec<(String, String)> =
        sqlx::query_as("SELECT id, overlay_path FROM vms WHERE course_id IS NOT NULL")
            .fetch_all(&pool2)
            .await
            .unwrap();
    pool2.close().await;
    assert_eq!(restored.len(), layers);
    let restored: std::collections::HashMap<Uuid, PathBuf> = restored
        .into_iter()
        .map(|(id, p)| (Uuid::parse_str(&id).unwrap(), PathBuf::from(p)))
        .collect();
    let restored_total: u64 = restored.values().map(|p| file_bytes(p)).sum();
    // Half the checked layers among the changed ones, half among the rest.
    let mut sample: Vec<&(Uuid, PathBuf)> = changes.iter().take(verify / 2).collect();
    let rest = vms.len() / (verify - sample.len()).max(1);
    sample.extend(vms.iter().step_by(rest.max(1)).take(verify - sample.len()));
    let t = Instant::now();
    for (id, original) in &sample {
        let copy = &restored[id];
        assert!(copy.starts_with(&target), "{}", copy.display());
        qemu_img_check(copy);
        qemu_img_compare(original, copy);
    }
    println!(
        "backup_nightly: restore of the whole installation: {all_secs:.1} s ({} templates, {} layers, {:.1} MiB of layers); \
         {} VMs in the restored database; {} restored layers equal their originals (checked in {:.1} s); load {}",
        report.templates,
        report.layers,
        mib(restored_total),
        restored.len(),
        sample.len(),
        t.elapsed().as_secs_f64(),
        loadavg()
    );

    println!();
    println!(
        "| step | time | layers backed up / unchanged | read | added (restic) | repository growth |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, m) in [
        ("run 1, all new", &first),
        ("run 2, changed layers", &second),
        ("run 3, nothing changed", &third),
    ] {
        println!(
            "| {label} | {:.1} s | {} / {} | {:.1} MiB (+{:.1} MiB control) | {:.1} MiB | {:.1} MiB |",
            m.secs,
            m.run.backed_up - 1,
            m.run.unchanged,
            mib(m.read_layers),
            mib(m.read_control),
            mib(m.run.bytes_added),
            mib(m.repo_growth)
        );
    }
    println!(
        "| changed layers' files before run 2 | | {} | {:.1} MiB | expected ≈ {} MiB | |",
        changes.len(),
        mib(changed_sizes),
        changes.len() as u64 * change_mib
    );
    println!("| restore one layer | {one_secs:.2} s | | | | |");
    println!("| restore the installation | {all_secs:.1} s | {layers} | | | |");

    if std::env::var_os("PVCE_BENCH_KEEP").is_some() {
        println!("backup_nightly: kept {}", dir.keep().display());
    }
}
