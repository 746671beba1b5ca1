//! Native creation of the students' qcow2 overlays.
//!
//! Enrolling a class creates thousands of overlays (500 students × 3 VMs), so
//! spawning `qemu-img create` for each (~10 ms of fork/exec/dlopen apiece) is
//! too slow; we write the few hundred bytes of a fresh qcow2 v3 file directly.
//!
//! Layout, identical to what `qemu-img create -f qcow2 -b B -F qcow2` writes:
//! cluster 0 header (+ backing-format extension + backing file name), cluster 1
//! refcount table (one entry), cluster 2 refcount block (16-bit refcounts of
//! clusters 0..3+L1), cluster 3.. an all-zero L1 table. 64 KiB clusters,
//! refcount order 4, lazy refcounts off, no compression type, so any QEMU ≥ 1.1
//! opens it and `qemu-img check` finds neither leaks nor corruptions.
//!
//! Invariants:
//! - The backing file is recorded by absolute path *with* its format (`qcow2`)
//!   in the 0xE2792ACA extension: QEMU never probes the template layer.
//! - The backing file need not exist here: overlays may live on shared storage
//!   while the template is replicated to each node at the same path.
//! - An overlay appears atomically: written and fsynced under a temporary name
//!   in the same directory, then hard-linked into place (`create_overlay`, fails
//!   if the name exists — never clobbers a student's disk by accident) or renamed
//!   over (`replace_overlay`, for an explicit reset). Mode 0644; libvirt chowns
//!   it when QEMU opens it.
//!
//! Crate evaluation: `qcow2` 0.1.2 (vasi, last release 2016) only *reads*
//! images, on byteorder 0.5. `qcow2-rs` 0.1.6 (ublk-org) reads and writes
//! images, but its only formatter (`Qcow2Header::format_qcow2`, "for test
//! purpose") cannot set a backing file or backing format, uses `unsafe`
//! memcpy, and pulls in tokio-uring, nix, clap and env_logger. Neither does
//! this job; the header is ~30 fields, so we write it ourselves and let real
//! `qemu-img check`/`qemu-io` verify it in the tests.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ImageError;
use super::qemu_img::temp_beside;

const CLUSTER_BITS: u32 = 16;
const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
/// v3 header with the compression-type byte, padded to 8 (what QEMU writes).
const HEADER_LENGTH: usize = 112;
const REFCOUNT_ORDER: u32 = 4; // 16-bit refcounts
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// QEMU refuses longer backing file names.
const MAX_BACKING_NAME: usize = 1023;
/// QEMU's `QCOW_MAX_L1_SIZE`; with 64 KiB clusters that is 2 PiB of disk.
const MAX_L1_BYTES: u64 = 32 << 20;
/// Refcount-table layout: metadata lives in clusters 0..3+L1.
const REFTABLE_OFFSET: u64 = CLUSTER_SIZE;
const REFBLOCK_OFFSET: u64 = 2 * CLUSTER_SIZE;
const L1_OFFSET: u64 = 3 * CLUSTER_SIZE;
const OVERLAY_MODE: u32 = 0o644;

/// One overlay to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayJob {
    /// Where the overlay goes.
    pub path: PathBuf,
    /// Absolute path of the qcow2 template layer, as the node will see it.
    pub backing: PathBuf,
    /// Guest-visible size in bytes (multiple of 512; normally the template's).
    pub virtual_size: u64,
}

/// The bytes of a fresh overlay: three small writes and a length.
struct Layout {
    header: Vec<u8>,
    reftable: [u8; 8],
    refblock: Vec<u8>,
    file_len: u64,
}

fn layout(backing: &Path, virtual_size: u64) -> Result<Layout, ImageError> {
    let name = backing.as_os_str().as_bytes();
    if !backing.is_absolute() {
        // A relative name is resolved against the overlay's directory by QEMU;
        // that is never what we mean.
        return Err(ImageError::BadOverlay(format!(
            "backing path {} is not absolute",
            backing.display()
        )));
    }
    if name.len() > MAX_BACKING_NAME || name.contains(&0) {
        return Err(ImageError::BadOverlay(
            "backing path is too long or contains NUL".into(),
        ));
    }
    if virtual_size == 0 || !virtual_size.is_multiple_of(512) {
        return Err(ImageError::BadOverlay(format!(
            "virtual size {virtual_size} is not a positive multiple of 512"
        )));
    }
    // Each L1 entry maps one L2 table = CLUSTER_SIZE/8 clusters = 512 MiB.
    let per_l1_entry = (CLUSTER_SIZE / 8) * CLUSTER_SIZE;
    let l1_entries = virtual_size.div_ceil(per_l1_entry);
    let l1_bytes = l1_entries * 8;
    if l1_bytes > MAX_L1_BYTES {
        return Err(ImageError::BadOverlay(format!(
            "virtual size {virtual_size} is beyond qcow2's limit"
        )));
    }
    let l1_clusters = l1_bytes.div_ceil(CLUSTER_SIZE);
    // ≤ 3 + 512 clusters: one refcount block (32768 entries) always suffices.
    let metadata_clusters = 3 + l1_clusters;

    let ext_len = 8 + 8; // "qcow2" padded to 8
    let backing_offset = HEADER_LENGTH + 8 + ext_len + 8;
    let mut h = vec![0u8; backing_offset + name.len()];
    let mut put = |off: usize, bytes: &[u8]| h[off..off + bytes.len()].copy_from_slice(bytes);
    put(0, b"QFI\xfb");
    put(4, &3u32.to_be_bytes());
    put(8, &(backing_offset as u64).to_be_bytes());
    put(16, &(name.len() as u32).to_be_bytes());
    put(20, &CLUSTER_BITS.to_be_bytes());
    put(24, &virtual_size.to_be_bytes());
    // 32: crypt_method 0
    put(36, &(l1_entries as u32).to_be_bytes());
    put(40, &L1_OFFSET.to_be_bytes());
    put(48, &REFTABLE_OFFSET.to_be_bytes());
    put(56, &1u32.to_be_bytes()); // refcount table clusters
    // 60: nb_snapshots 0, 64: snapshots_offset 0,
    // 72/80/88: incompatible/compatible/autoclear features 0 (lazy refcounts off)
    put(96, &REFCOUNT_ORDER.to_be_bytes());
    put(100, &(HEADER_LENGTH as u32).to_be_bytes());
    // 104: compression type 0 (zlib), 105..112 padding
    put(HEADER_LENGTH, &EXT_BACKING_FORMAT.to_be_bytes());
    put(HEADER_LENGTH + 4, &5u32.to_be_bytes());
    put(HEADER_LENGTH + 8, b"qcow2");
    // HEADER_LENGTH + 8 + ext_len: end-of-extensions record (zeros)
    put(backing_offset, name);

    let mut refblock = Vec::with_capacity(metadata_clusters as usize * 2);
    for _ in 0..metadata_clusters {
        refblock.extend_from_slice(&1u16.to_be_bytes());
    }
    Ok(Layout {
        header: h,
        reftable: REFBLOCK_OFFSET.to_be_bytes(),
        refblock,
        // Like qemu-img: the file ends right after the L1 entries; reads past
        // EOF are zeros and new clusters are allocated after the last used one.
        file_len: L1_OFFSET + l1_bytes,
    })
}

/// True if `path` is a qcow2 file that references no data cluster and no
/// snapshot — an overlay exactly as written for a new VM, so it holds no
/// student data and may be removed when no VM names it. Anything else
/// (another format, any allocated cluster, a snapshot, a damaged header)
/// answers false. Blocking.
pub fn is_pristine(path: &Path) -> io::Result<bool> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut h = [0u8; 72];
    if f.read_exact_at(&mut h, 0).is_err() {
        return Ok(false);
    }
    let be32 = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let be64 = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[o..o + 8]);
        u64::from_be_bytes(b)
    };
    if &h[0..4] != b"QFI\xfb" || be32(4) != 3 || be32(60) != 0 {
        return Ok(false);
    }
    let l1_bytes = u64::from(be32(36)) * 8;
    let l1_offset = be64(40);
    if l1_bytes > MAX_L1_BYTES || l1_offset == 0 {
        return Ok(false);
    }
    // Every allocated cluster lies after the metadata; a longer file has data.
    if len > l1_offset.saturating_add(l1_bytes) {
        return Ok(false);
    }
    let mut l1 = vec![0u8; usize::try_from(l1_bytes).unwrap_or(0)];
    f.read_exact_at(&mut l1, l1_offset)?;
    Ok(l1.iter().all(|b| *b == 0))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// Hard link: fails if the target exists.
    NoClobber,
    /// Rename over an existing target.
    Replace,
}

/// Creates a qcow2 overlay at `path` backed by the qcow2 file `backing`.
///
/// Fails with [`ImageError::OverlayExists`] if `path` exists. Missing parent
/// directories are created. Durable on return (file and directory fsynced).
/// Blocking: call from `spawn_blocking`.
pub fn create_overlay(path: &Path, backing: &Path, virtual_size: u64) -> Result<(), ImageError> {
    let layout = layout(backing, virtual_size)?;
    let dir = write_and_publish(path, &layout, Publish::NoClobber)?;
    sync_dir(&dir)?;
    Ok(())
}

/// Like [`create_overlay`] but atomically replaces an existing `path` — the
/// VM reset operation (the student's old layer is discarded).
pub fn replace_overlay(path: &Path, backing: &Path, virtual_size: u64) -> Result<(), ImageError> {
    let layout = layout(backing, virtual_size)?;
    let dir = write_and_publish(path, &layout, Publish::Replace)?;
    sync_dir(&dir)?;
    Ok(())
}

/// Creates many overlays on a small thread pool (no-clobber, like
/// [`create_overlay`]). Returns one result per job, in order, so the caller
/// can record partial success. Directory fsyncs are batched: each distinct
/// parent directory is synced once at the end.
pub fn create_overlays_parallel(jobs: &[OverlayJob]) -> Vec<Result<(), ImageError>> {
    let results = par_map(jobs, |job| {
        let layout = layout(&job.backing, job.virtual_size)?;
        write_and_publish(&job.path, &layout, Publish::NoClobber)
    });
    let dirs: Vec<PathBuf> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let synced = par_map(&dirs, |d| sync_dir(d).map_err(|e| (d.clone(), e)));
    let failed_dirs: Vec<(PathBuf, io::Error)> =
        synced.into_iter().filter_map(Result::err).collect();
    results
        .into_iter()
        .map(|r| {
            let dir = r?;
            match failed_dirs.iter().find(|(d, _)| *d == dir) {
                Some((_, e)) => Err(ImageError::Io(io::Error::new(e.kind(), e.to_string()))),
                None => Ok(()),
            }
        })
        .collect()
}

/// Runs `f` over `items` on up to 4 × CPUs threads (the work is mostly
/// waiting for fsync), preserving order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = (cpus * 4).clamp(1, 32).min(items.len());
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    // A poisoned lock only means another worker panicked; the
                    // scope re-raises that panic anyway.
                    if let Ok(mut out) = out.lock() {
                        out[i] = Some(r);
                    }
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| unreachable!("every index is processed")))
        .collect()
}

/// Writes the overlay under a temporary name, fsyncs it and publishes it.
/// Returns the directory, which the caller must fsync for the name to be durable.
fn write_and_publish(
    path: &Path,
    layout: &Layout,
    publish: Publish,
) -> Result<PathBuf, ImageError> {
    let (dir, tmp) = temp_beside(path)?;
    ensure_dir(&dir)?;
    let result = (|| -> Result<(), ImageError> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(OVERLAY_MODE)
            .open(&tmp)?;
        // The umask may have narrowed the mode; QEMU (another user) must read it.
        f.set_permissions(Permissions::from_mode(OVERLAY_MODE))?;
        f.write_all_at(&layout.header, 0)?;
        f.write_all_at(&layout.reftable, REFTABLE_OFFSET)?;
        f.write_all_at(&layout.refblock, REFBLOCK_OFFSET)?;
        f.set_len(layout.file_len)?;
        f.sync_data()?;
        match publish {
            Publish::Replace => fs::rename(&tmp, path)?,
            Publish::NoClobber => match fs::hard_link(&tmp, path) {
                Ok(()) => fs::remove_file(&tmp)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(ImageError::OverlayExists(path.to_path_buf()));
                }
                Err(e) => return Err(e.into()),
            },
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| dir)
}

/// Creates `dir` and missing ancestors, fsyncing each parent that gained an
/// entry so the new directories survive a crash too.
fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
            Ok(())
        }
        // Another worker created it concurrently.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::{ImageFormat, InspectLimits, inspect};
    use crate::testkit::run_ok;
    use std::process::{Command, Output};
    use std::time::Instant;

    fn run(tool: &str, args: &[&str]) -> Output {
        run_ok(Command::new(tool).args(args))
    }

    fn s(p: &Path) -> &str {
        p.to_str().expect("utf-8 temp path")
    }

    fn json(out: &Output) -> serde_json::Value {
        serde_json::from_slice(&out.stdout).expect("json")
    }

    fn assert_clean(p: &Path) {
        let out = run("qemu-img", &["check", "-f", "qcow2", "--output=json", s(p)]);
        let v = json(&out);
        for key in ["check-errors", "corruptions", "leaks"] {
            assert_eq!(
                v.get(key).and_then(|x| x.as_u64()).unwrap_or(0),
                0,
                "{key}: {v}"
            );
        }
    }

    fn base(dir: &Path, size: &str) -> PathBuf {
        let b = dir.join("base.qcow2");
        run("qemu-img", &["create", "-q", "-f", "qcow2", s(&b), size]);
        b
    }

    #[test]
    fn overlay_passes_qemu_img_check_and_info() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = base(d.path(), "1G");
        let ov = d.path().join("students/alice/os101/vm1.qcow2");
        create_overlay(&ov, &b, 1 << 30).expect("create");
        assert_clean(&ov);
        let v = json(&run(
            "qemu-img",
            &["info", "--output=json", "-f", "qcow2", s(&ov)],
        ));
        assert_eq!(v["format"], "qcow2");
        assert_eq!(v["virtual-size"], 1u64 << 30);
        assert_eq!(v["cluster-size"], 65536);
        assert_eq!(v["backing-filename"], s(&b));
        assert_eq!(v["backing-filename-format"], "qcow2");
        assert_eq!(v["format-specific"]["data"]["compat"], "1.1");
        assert_eq!(v["format-specific"]["data"]["refcount-bits"], 16);
        assert_eq!(v["format-specific"]["data"]["lazy-refcounts"], false);
        assert_eq!(v["dirty-flag"], false);

        let meta = fs::metadata(&ov).expect("metadata");
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        // Our own inspector reads the header we wrote — and refuses it as an
        // upload, naming the backing file.
        match inspect(&ov, ImageFormat::Qcow2, &InspectLimits::default()) {
            Err(ImageError::Unsafe(m)) => assert!(m.contains(s(&b)), "{m}"),
            other => panic!("{other:?}"),
        }
        // Only the overlay is left in its directory, no temporaries.
        let names: Vec<_> = fs::read_dir(ov.parent().expect("parent"))
            .expect("read_dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["vm1.qcow2"]);
    }

    #[test]
    fn overlay_reads_backing_and_takes_writes() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = base(d.path(), "16M");
        // Pattern 0xcd in the template's first MiB.
        run(
            "qemu-io",
            &["-f", "qcow2", "-c", "write -P 0xcd 0 1M", s(&b)],
        );
        let ov = d.path().join("ov.qcow2");
        create_overlay(&ov, &b, 16 << 20).expect("create");
        run(
            "qemu-io",
            &[
                "-f",
                "qcow2",
                "-c",
                "write -P 0xab 0 64k",
                "-c",
                "read -P 0xab 0 64k",
                // Unwritten: comes from the backing file …
                "-c",
                "read -P 0xcd 64k 960k",
                // … or zero beyond what the backing file has.
                "-c",
                "read -P 0 2M 64k",
                s(&ov),
            ],
        );
        // The template is untouched.
        run(
            "qemu-io",
            &["-f", "qcow2", "-r", "-c", "read -P 0xcd 0 1M", s(&b)],
        );
        assert_clean(&ov);
        assert_clean(&b);
    }

    #[test]
    fn many_sizes_are_clean() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = base(d.path(), "1M");
        // 64 TiB needs a 1 MiB L1 table: several L1 clusters.
        for (i, size) in [
            512u64,
            1 << 20,
            20 << 30,
            4 << 40,
            (5 << 40) + 512,
            64 << 40,
        ]
        .into_iter()
        .enumerate()
        {
            let ov = d.path().join(format!("ov{i}.qcow2"));
            create_overlay(&ov, &b, size).expect("create");
            assert_clean(&ov);
            let v = json(&run(
                "qemu-img",
                &["info", "--output=json", "-f", "qcow2", s(&ov)],
            ));
            assert_eq!(v["virtual-size"], size);
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let ov = d.path().join("ov.qcow2");
        let abs = Path::new("/srv/pvce/templates/t.qcow2");
        for (backing, size) in [
            (Path::new("relative.qcow2"), 1 << 20),
            (abs, 0),
            (abs, 1000),
            (abs, 1 << 62),
        ] {
            assert!(
                matches!(
                    create_overlay(&ov, backing, size),
                    Err(ImageError::BadOverlay(_))
                ),
                "{backing:?} {size}"
            );
        }
        let long = PathBuf::from(format!("/{}", "x".repeat(1100)));
        assert!(matches!(
            create_overlay(&ov, &long, 1 << 20),
            Err(ImageError::BadOverlay(_))
        ));
        assert!(!ov.exists());
    }

    #[test]
    fn create_never_clobbers_but_replace_does() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = base(d.path(), "4M");
        let ov = d.path().join("ov.qcow2");
        create_overlay(&ov, &b, 4 << 20).expect("create");
        run(
            "qemu-io",
            &["-f", "qcow2", "-c", "write -P 0x11 0 64k", s(&ov)],
        );
        let before = fs::metadata(&ov).expect("meta").len();
        assert!(matches!(
            create_overlay(&ov, &b, 4 << 20),
            Err(ImageError::OverlayExists(_))
        ));
        assert_eq!(
            fs::metadata(&ov).expect("meta").len(),
            before,
            "student data kept"
        );
        replace_overlay(&ov, &b, 4 << 20).expect("replace");
        run("qemu-io", &["-f", "qcow2", "-c", "read -P 0 0 64k", s(&ov)]);
        assert_clean(&ov);
        let n = fs::read_dir(d.path()).expect("read_dir").count();
        assert_eq!(n, 2, "no temporaries left");
    }

    #[test]
    fn parallel_creation_reports_per_job() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = base(d.path(), "8M");
        let mut jobs: Vec<OverlayJob> = (0..40)
            .map(|i| OverlayJob {
                path: d.path().join(format!("o/s{}/c/vm{}.qcow2", i / 3, i % 3)),
                backing: b.clone(),
                virtual_size: 8 << 20,
            })
            .collect();
        jobs.push(jobs[0].clone()); // duplicate: must fail, not clobber
        jobs.push(OverlayJob {
            backing: PathBuf::from("rel"),
            ..jobs[1].clone()
        });
        let results = create_overlays_parallel(&jobs);
        assert_eq!(results.len(), 42);
        assert!(results[..40].iter().all(Result::is_ok), "{results:?}");
        assert!(matches!(results[40], Err(ImageError::OverlayExists(_))));
        assert!(matches!(results[41], Err(ImageError::BadOverlay(_))));
        for job in jobs.iter().step_by(7).take(5) {
            assert_clean(&job.path);
        }
    }

    /// `cargo test --release images::overlay -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark"]
    fn bench_1500_overlays() {
        let d = tempfile::tempdir_in(
            std::env::var_os("PVCE_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()),
        )
        .expect("tempdir");
        let b = d.path().join("templates/t.qcow2");
        let jobs: Vec<OverlayJob> = (0..1500)
            .map(|i| OverlayJob {
                path: d.path().join(format!(
                    "overlays/student{:03}/os101/vm{}.qcow2",
                    i / 3,
                    i % 3
                )),
                backing: b.clone(),
                virtual_size: 20 << 30,
            })
            .collect();
        let t = Instant::now();
        let results = create_overlays_parallel(&jobs);
        let parallel = t.elapsed();
        assert!(results.iter().all(Result::is_ok));

        let d2 = tempfile::tempdir_in(d.path()).expect("tempdir");
        let t = Instant::now();
        for (i, job) in jobs.iter().take(300).enumerate() {
            create_overlay(
                &d2.path().join(format!("s{i}.qcow2")),
                &job.backing,
                job.virtual_size,
            )
            .expect("create");
        }
        let serial = t.elapsed();
        println!(
            "1500 overlays in parallel ({} CPUs): {:?} ({:?}/overlay); 300 one-by-one: {:?} ({:?}/overlay)",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            parallel,
            parallel / 1500,
            serial,
            serial / 300
        );
    }

    #[test]
    fn a_fresh_overlay_is_pristine_and_a_written_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backing = dir.path().join("base.qcow2");
        let o = dir.path().join("o.qcow2");
        create_overlay(&o, &backing, 1 << 30).expect("overlay");
        assert!(is_pristine(&o).expect("read"));
        // A guest write allocates a cluster: an L1 entry and data after the metadata.
        let f = OpenOptions::new().write(true).open(&o).expect("open");
        f.write_all_at(&((5 * CLUSTER_SIZE) | (1 << 63)).to_be_bytes(), L1_OFFSET)
            .expect("write l1");
        f.set_len(6 * CLUSTER_SIZE).expect("grow");
        assert!(!is_pristine(&o).expect("read"));
        // Not qcow2 at all.
        let raw = dir.path().join("raw.img");
        std::fs::write(&raw, vec![0u8; 4096]).expect("raw");
        assert!(!is_pristine(&raw).expect("read"));
    }
}
