//! `qemu-img` wrappers: `info`, `convert` (to qcow2) and `check`.
//!
//! Invariants:
//! - Always an explicit `-f`: qemu-img never probes a format here.
//! - Only after [`super::inspect::inspect`] accepted the file: `info` and
//!   `convert` open backing files / extents as a side effect, so they must not
//!   be the first to look at an upload.
//! - Every run is under `prlimit` (address space, CPU seconds — the limits
//!   OpenStack puts on `qemu-img info`, 1 GiB / 30 s) so a crafted image cannot
//!   exhaust the server, plus a wall-clock timeout; the child is killed when the
//!   timeout fires or the future is dropped (`kill_on_drop`).
//! - Paths are made absolute before they reach qemu-img: a relative name with a
//!   colon (`nbd:…`, `json:{…}`) would otherwise be parsed as a protocol.
//! - `convert` writes to a temporary name beside the destination, fsyncs it,
//!   then renames it into place; on failure the temporary is removed, so the
//!   destination is either absent or complete.

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use super::{ImageError, ImageFormat};

/// Resource limits for one qemu-img run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcLimits {
    /// `RLIMIT_AS` in bytes.
    pub address_space: u64,
    /// `RLIMIT_CPU` in seconds.
    pub cpu_seconds: u64,
    /// Wall-clock budget; the process is killed after it.
    pub wall: Duration,
}

/// OpenStack's `QEMU_IMG_LIMITS` for `qemu-img info`.
pub const INFO_LIMITS: ProcLimits = ProcLimits {
    address_space: 1 << 30,
    cpu_seconds: 30,
    wall: Duration::from_secs(60),
};

/// `check` walks every refcount and L2 table: allow more time.
pub const CHECK_LIMITS: ProcLimits = ProcLimits {
    address_space: 1 << 30,
    cpu_seconds: 300,
    wall: Duration::from_secs(600),
};

/// `convert` reads the whole image; a 100 GiB upload may take a while, but a
/// conversion that burns an hour of CPU is an attack or a mistake. 2 GiB of
/// address space covers qemu-img's coroutine buffers (it maps ~0.5 GiB here).
pub const CONVERT_LIMITS: ProcLimits = ProcLimits {
    address_space: 2 << 30,
    cpu_seconds: 3600,
    wall: Duration::from_secs(3 * 3600),
};

const QEMU_IMG: &str = "qemu-img";
const PRLIMIT: &str = "prlimit";
/// Keep at most this much of stderr in an error.
const MAX_DETAIL: usize = 2000;

/// What `qemu-img info` says about an image (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuImgInfo {
    pub format: String,
    pub virtual_size: u64,
    pub actual_size: Option<u64>,
    pub backing_filename: Option<String>,
    pub backing_format: Option<String>,
    /// qcow2 `format-specific.data.data-file`.
    pub data_file: Option<String>,
    pub encrypted: bool,
    /// qcow2 `format-specific.data.corrupt`.
    pub corrupt: bool,
    /// VMDK `format-specific.data.extents[].filename`.
    pub vmdk_extents: Vec<String>,
}

impl QemuImgInfo {
    /// The second opinion after our own inspection: the image at `path` must not
    /// reference any other file. Messages are safe to show to the uploader.
    pub fn ensure_self_contained(&self, path: &Path) -> Result<(), ImageError> {
        if let Some(b) = &self.backing_filename {
            return Err(ImageError::Unsafe(format!(
                "the image has a backing file {:?}; only self-contained images are accepted",
                b.chars().take(200).collect::<String>()
            )));
        }
        if self.data_file.is_some() {
            return Err(ImageError::Unsafe(
                "the image keeps its data in an external data file".into(),
            ));
        }
        if self.encrypted {
            return Err(ImageError::Unsafe("the image is encrypted".into()));
        }
        if self.corrupt {
            return Err(ImageError::Unsafe("the image is marked corrupt".into()));
        }
        // qemu-img names extents by the path it was given for the image itself.
        let own = absolute(path)?;
        let own = own.to_string_lossy();
        if self.vmdk_extents.iter().any(|e| *e != own) || self.vmdk_extents.len() > 1 {
            return Err(ImageError::Unsafe(
                "the VMDK consists of more than one file; only single-file VMDKs are accepted"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawInfo {
    format: String,
    virtual_size: u64,
    actual_size: Option<u64>,
    backing_filename: Option<String>,
    backing_filename_format: Option<String>,
    #[serde(default)]
    encrypted: bool,
    format_specific: Option<RawFormatSpecific>,
}

#[derive(Deserialize)]
struct RawFormatSpecific {
    #[serde(default)]
    data: RawSpecificData,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RawSpecificData {
    data_file: Option<String>,
    #[serde(default)]
    corrupt: bool,
    #[serde(default)]
    extents: Vec<RawExtent>,
    #[serde(default)]
    bitmaps: Vec<RawBitmap>,
}

#[derive(Deserialize)]
struct RawBitmap {
    name: String,
}

#[derive(Deserialize)]
struct RawExtent {
    filename: String,
}

/// Result of `qemu-img check`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckReport {
    #[serde(default)]
    pub check_errors: u64,
    #[serde(default)]
    pub corruptions: u64,
    #[serde(default)]
    pub leaks: u64,
    pub image_end_offset: Option<u64>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.check_errors == 0 && self.corruptions == 0 && self.leaks == 0
    }
}

/// `qemu-img info --output=json -f <format> <path>` under [`INFO_LIMITS`].
pub async fn info(path: &Path, format: ImageFormat) -> Result<QemuImgInfo, ImageError> {
    parse_info(&info_json(path, format.as_qemu_str()).await?)
}

/// The JSON `qemu-img info` prints for `path` read as `format`.
async fn info_json(path: &Path, format: &str) -> Result<Vec<u8>, ImageError> {
    let path = absolute(path)?;
    let out = run(
        "info",
        QEMU_IMG,
        INFO_LIMITS,
        &[
            "info".as_ref(),
            "--output=json".as_ref(),
            "-f".as_ref(),
            format.as_ref(),
            path.as_os_str(),
        ],
        &[0],
    )
    .await?;
    Ok(out.stdout)
}

fn parse_info(json: &[u8]) -> Result<QemuImgInfo, ImageError> {
    let raw: RawInfo = serde_json::from_slice(json).map_err(|e| ImageError::QemuImg {
        op: "info",
        detail: format!("unparsable JSON: {e}"),
    })?;
    let data = raw.format_specific.map(|f| f.data).unwrap_or_default();
    Ok(QemuImgInfo {
        format: raw.format,
        virtual_size: raw.virtual_size,
        actual_size: raw.actual_size,
        backing_filename: raw.backing_filename,
        backing_format: raw.backing_filename_format,
        data_file: data.data_file,
        encrypted: raw.encrypted,
        corrupt: data.corrupt,
        vmdk_extents: data.extents.into_iter().map(|e| e.filename).collect(),
    })
}

/// `qemu-img check -f qcow2 --output=json <path>` under [`CHECK_LIMITS`].
///
/// Returns the report also when it finds leaks or corruptions (exit codes 2
/// and 3); an error means the check itself could not run.
pub async fn check(path: &Path) -> Result<CheckReport, ImageError> {
    let path = absolute(path)?;
    let out = run(
        "check",
        QEMU_IMG,
        CHECK_LIMITS,
        &[
            "check".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "--output=json".as_ref(),
            path.as_os_str(),
        ],
        &[0, 2, 3],
    )
    .await?;
    serde_json::from_slice(&out.stdout).map_err(|e| ImageError::QemuImg {
        op: "check",
        detail: format!("unparsable JSON: {e}"),
    })
}

/// Converts `src` (in `src_format`) into a standalone qcow2 at `dst`.
///
/// Output: qcow2 v3 (compat 1.1), 64 KiB clusters, no compression — template
/// layers are read on every guest boot, and decompressing under TCG costs more
/// than the disk it saves. An existing `dst` is replaced atomically; callers
/// pick fresh paths for new layers.
pub async fn convert_to_qcow2(
    src: &Path,
    src_format: ImageFormat,
    dst: &Path,
) -> Result<(), ImageError> {
    let src = absolute(src)?;
    run_into(dst, "convert", CONVERT_LIMITS, |tmp| {
        vec![
            "convert".into(),
            "-q".into(),
            "-f".into(),
            src_format.as_qemu_str().into(),
            "-O".into(),
            "qcow2".into(),
            "-o".into(),
            LAYER_OPTIONS.into(),
            src.clone().into_os_string(),
            tmp.as_os_str().to_owned(),
        ]
    })
    .await
}

/// Creates an empty, self-contained qcow2 image (the blank root of the
/// template tree), atomically like every other layer.
pub async fn create_blank(dst: &Path, virtual_size: u64) -> Result<(), ImageError> {
    run_into(dst, "create", INFO_LIMITS, |tmp| {
        vec![
            "create".into(),
            "-q".into(),
            "-f".into(),
            "qcow2".into(),
            "-o".into(),
            LAYER_OPTIONS.into(),
            tmp.as_os_str().to_owned(),
            virtual_size.to_string().into(),
        ]
    })
    .await
}

/// qcow2 creation options of every layer pvce writes.
const LAYER_OPTIONS: &str = "compat=1.1,cluster_size=65536,lazy_refcounts=off";

/// Runs `qemu-img` with output to a temporary file beside `dst` (`args`
/// gets its path), then makes it durable and renames it into place: `dst`
/// appears whole or not at all.
async fn run_into(
    dst: &Path,
    op: &'static str,
    limits: ProcLimits,
    args: impl FnOnce(&Path) -> Vec<std::ffi::OsString>,
) -> Result<(), ImageError> {
    let dst = absolute(dst)?;
    let (dir, tmp) = temp_beside(&dst)?;
    let argv = args(&tmp);
    let argv: Vec<&OsStr> = argv.iter().map(|a| a.as_os_str()).collect();
    let result = async {
        run(op, QEMU_IMG, limits, &argv, &[0]).await?;
        // qemu-img's default cache mode for the output is "unsafe" (no flush):
        // durability is ours to provide before the name becomes visible.
        let (tmp, dst, dir) = (tmp.clone(), dst.clone(), dir.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &dst)?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(|e| ImageError::Io(std::io::Error::other(e)))??;
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

/// `dir` of `dst` and a unique temporary path in it.
pub(super) fn temp_beside(dst: &Path) -> Result<(PathBuf, PathBuf), ImageError> {
    let (Some(dir), Some(name)) = (dst.parent(), dst.file_name()) else {
        return Err(ImageError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "destination has no file name",
        )));
    };
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    Ok((dir.to_path_buf(), tmp))
}

fn absolute(p: &Path) -> Result<PathBuf, ImageError> {
    Ok(std::path::absolute(p)?)
}

/// Runs `program args…` under `prlimit` with a wall-clock timeout and returns
/// its output if the exit code is one of `ok_codes`.
async fn run(
    op: &'static str,
    program: &str,
    limits: ProcLimits,
    args: &[&OsStr],
    ok_codes: &[i32],
) -> Result<Output, ImageError> {
    let mut cmd = Command::new(PRLIMIT);
    cmd.arg(format!("--as={}", limits.address_space))
        .arg(format!("--cpu={}", limits.cpu_seconds))
        .arg(program)
        .args(args)
        // Stable, parseable messages.
        .env("LC_ALL", "C")
        // glibc reserves 64 MiB of address space per malloc arena, and makes
        // up to 8 per core as qemu-img's I/O worker threads multiply (they do
        // on a loaded host, where I/O is slow): under the address-space limit
        // that failed thread creation ("qemu_thread_create: Resource
        // temporarily unavailable", seen in CI). Two arenas are plenty for a
        // single image operation and keep the limit meaningful.
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| ImageError::QemuImg {
        op,
        detail: format!("cannot start {PRLIMIT} {program}: {e}"),
    })?;
    // On timeout the future (and with it the child) is dropped: kill_on_drop
    // sends SIGKILL. prlimit execs the program, so that is qemu-img itself.
    let out = match tokio::time::timeout(limits.wall, child.wait_with_output()).await {
        Ok(out) => out?,
        Err(_) => {
            return Err(ImageError::Timeout {
                op,
                secs: limits.wall.as_secs(),
            });
        }
    };
    match out.status.code() {
        Some(code) if ok_codes.contains(&code) => Ok(out),
        code => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr = stderr.trim();
            let tail: String = stderr
                .chars()
                .skip(stderr.chars().count().saturating_sub(MAX_DETAIL))
                .collect();
            let how = match (code, out.status.signal()) {
                (Some(c), _) => format!("exit code {c}"),
                // SIGXCPU/SIGKILL/SIGSEGV here usually mean a resource limit hit.
                (None, Some(s)) => format!("killed by signal {s} (resource limit?)"),
                (None, None) => "unknown status".to_owned(),
            };
            Err(ImageError::QemuImg {
                op,
                detail: format!("{how}: {tail}"),
            })
        }
    }
}

// ---------------------------------------------------------------------------
// Personal layers: internal snapshots, backing rewrite, layer copies, guest reads.
// Used by `crate::vms::snapshots` and `crate::portable` on layers pvce placed itself
// (a personal layer in place has always been created or rewritten by pvce, so
// its backing file is our template).

/// What `qemu-img snapshot` does to a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOp {
    /// `-c`: record the current state under a tag.
    Create,
    /// `-a`: return the layer to a tagged state (writes only this layer; the
    /// backing chain is opened read-only).
    Apply,
    /// `-d`: forget a tagged state and free its clusters.
    Delete,
}

/// A tag we put on the command line: pvce only uses its own ids (UUIDs), but
/// check anyway so nothing option-like or odd ever reaches qemu-img.
fn check_tag(tag: &str) -> Result<(), ImageError> {
    let ok = !tag.is_empty()
        && tag.len() <= 64
        && !tag.starts_with('-')
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ImageError::BadOverlay(format!(
            "invalid snapshot tag {tag:?}"
        )))
    }
}

/// `qemu-img snapshot -f qcow2 -c|-a|-d TAG <path>` (internal qcow2 snapshots).
///
/// The image must not be in use: qemu-img takes QEMU's image locks and fails
/// if a running VM holds the layer.
pub async fn snapshot(path: &Path, op: SnapshotOp, tag: &str) -> Result<(), ImageError> {
    check_tag(tag)?;
    let path = absolute(path)?;
    let flag = match op {
        SnapshotOp::Create => "-c",
        SnapshotOp::Apply => "-a",
        SnapshotOp::Delete => "-d",
    };
    run(
        "snapshot",
        QEMU_IMG,
        CHECK_LIMITS,
        &[
            "snapshot".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            flag.as_ref(),
            tag.as_ref(),
            path.as_os_str(),
        ],
        &[0],
    )
    .await?;
    Ok(())
}

/// Names (tags) of the internal snapshots of a qcow2 image, from
/// `qemu-img info --output=json -f qcow2` (which opens no backing file).
pub async fn snapshot_tags(path: &Path) -> Result<Vec<String>, ImageError> {
    #[derive(Deserialize)]
    struct Snap {
        name: String,
    }
    #[derive(Deserialize)]
    struct Info {
        #[serde(default)]
        snapshots: Vec<Snap>,
    }
    let out = info_json(path, "qcow2").await?;
    let info: Info = serde_json::from_slice(&out).map_err(|e| ImageError::QemuImg {
        op: "info",
        detail: format!("unparsable JSON: {e}"),
    })?;
    Ok(info.snapshots.into_iter().map(|s| s.name).collect())
}

/// Points a qcow2 layer at `backing` (format qcow2) by rewriting only its
/// header: `qemu-img rebase -u -f qcow2 -b <backing> -F qcow2 <path>`.
///
/// Unsafe mode opens neither the old nor the new backing file (verified with
/// strace on QEMU 10), so a hostile backing name in an upload is replaced
/// without ever being opened. Correct only when the layer was made on a chain
/// with the same content as `backing`.
pub async fn rebase_unsafe(path: &Path, backing: &Path) -> Result<(), ImageError> {
    rebase(path, backing, true).await
}

/// `qemu-img rebase [-u] -f qcow2 -b <backing> -F qcow2 <path>`: unsafe
/// (`-u`) rewrites only the header; safe mode reads both chains, so it
/// gets the conversion's limits.
async fn rebase(path: &Path, backing: &Path, header_only: bool) -> Result<(), ImageError> {
    let path = absolute(path)?;
    let backing = absolute(backing)?;
    let mut args: Vec<&OsStr> = vec!["rebase".as_ref(), "-q".as_ref()];
    if header_only {
        args.push("-u".as_ref());
    }
    args.extend::<[&OsStr; 7]>([
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-b".as_ref(),
        backing.as_os_str(),
        "-F".as_ref(),
        "qcow2".as_ref(),
        path.as_os_str(),
    ]);
    let limits = if header_only {
        INFO_LIMITS
    } else {
        CONVERT_LIMITS
    };
    run("rebase", QEMU_IMG, limits, &args, &[0]).await?;
    Ok(())
}

/// Moves a qcow2 layer onto `backing` keeping what the guest sees: `qemu-img
/// rebase -f qcow2 -b <backing> -F qcow2 <path>` (safe mode: the clusters
/// where the old and the new chain differ are written into the layer). Opens
/// the layer's current backing chain, so only for layers pvce made itself.
pub async fn rebase_safe(path: &Path, backing: &Path) -> Result<(), ImageError> {
    rebase(path, backing, false).await
}

/// Writes the clusters a qcow2 overlay holds into its backing file:
/// `qemu-img commit -q -f qcow2 -d <path>` (`-d`: the overlay is left as
/// it is, it is thrown away next). The backing file changes in place, so
/// only for files pvce keeps itself (a backup's kept base, never a layer a
/// VM uses); a commit that dies midway leaves it half-written, which its
/// owner must treat as lost.
pub async fn commit(path: &Path) -> Result<(), ImageError> {
    let path = absolute(path)?;
    run(
        "commit",
        QEMU_IMG,
        CONVERT_LIMITS,
        &[
            "commit".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-d".as_ref(),
            path.as_os_str(),
        ],
        &[0],
    )
    .await?;
    Ok(())
}

/// Names of the persistent dirty bitmaps in a qcow2 image, from
/// `qemu-img info --output=json -f qcow2` (which opens no backing file).
pub async fn bitmaps(path: &Path) -> Result<Vec<String>, ImageError> {
    let raw: RawInfo = serde_json::from_slice(&info_json(path, "qcow2").await?).map_err(|e| {
        ImageError::QemuImg {
            op: "info",
            detail: format!("unparsable JSON: {e}"),
        }
    })?;
    Ok(raw
        .format_specific
        .map(|f| f.data.bitmaps.into_iter().map(|b| b.name).collect())
        .unwrap_or_default())
}

/// Removes every persistent dirty bitmap from a qcow2 layer that no VM has
/// open (`qemu-img bitmap --remove`). Bitmaps in a stopped layer are
/// leftovers of backup checkpoints (QEMU stores a checkpoint's bitmap in the
/// image when the domain stops, see `crate::libvirt::backup`), and qemu-img
/// refuses to revert an internal snapshot of an image that has any ("Device
/// has active dirty bitmaps"). Returns how many it removed.
pub async fn remove_bitmaps(path: &Path) -> Result<usize, ImageError> {
    let names = bitmaps(path).await?;
    let path = absolute(path)?;
    for name in &names {
        // Names come from the image; keep anything option-like off the
        // command line (`--` ends the options).
        run(
            "bitmap",
            QEMU_IMG,
            CHECK_LIMITS,
            &[
                "bitmap".as_ref(),
                "-f".as_ref(),
                "qcow2".as_ref(),
                "--remove".as_ref(),
                "--".as_ref(),
                path.as_os_str(),
                name.as_ref(),
            ],
            &[0],
        )
        .await?;
    }
    Ok(names.len())
}

/// Writes a compact copy of the overlay `src` to `dst` as a new overlay on
/// `backing`: `qemu-img convert -f qcow2 -O qcow2 -B <backing> -F qcow2`.
/// Only clusters the overlay itself holds are copied; internal snapshots are
/// not. Atomic like [`convert_to_qcow2`].
pub async fn convert_to_overlay(src: &Path, backing: &Path, dst: &Path) -> Result<(), ImageError> {
    let src = absolute(src)?;
    let backing = absolute(backing)?;
    run_into(dst, "convert", CONVERT_LIMITS, |tmp| {
        vec![
            "convert".into(),
            "-q".into(),
            "-f".into(),
            "qcow2".into(),
            "-O".into(),
            "qcow2".into(),
            "-o".into(),
            LAYER_OPTIONS.into(),
            "-B".into(),
            backing.clone().into_os_string(),
            "-F".into(),
            "qcow2".into(),
            src.clone().into_os_string(),
            tmp.as_os_str().to_owned(),
        ]
    })
    .await
}

/// Writes what the guest sees of a qcow2 disk (through its backing chain) to
/// a sparse raw file `dst` (`qemu-img convert -f qcow2 -O raw`), for offline
/// tools that need a raw view (e.g. `debugfs` on a partition offset). `dst`
/// must not exist; it is complete when this returns Ok, absent otherwise.
pub async fn convert_to_raw(src: &Path, dst: &Path) -> Result<(), ImageError> {
    let src = absolute(src)?;
    let dst = absolute(dst)?;
    let result = run(
        "convert",
        QEMU_IMG,
        CONVERT_LIMITS,
        &[
            "convert".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-O".as_ref(),
            "raw".as_ref(),
            src.as_os_str(),
            dst.as_os_str(),
        ],
        &[0],
    )
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&dst).await;
    }
    result.map(|_| ())
}

/// Largest guest range [`read_guest`] reads in one call.
pub const MAX_GUEST_READ: usize = 16 << 20;

/// Reads `len` bytes of what the guest sees at `offset` of a qcow2 disk
/// (through its backing chain), read-only: `qemu-img convert` of a `raw`
/// node with `offset`/`size` on top of the qcow2 node into a private temporary
/// file. Never on a layer a running QEMU has open.
pub async fn read_guest(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, ImageError> {
    if len == 0 || len > MAX_GUEST_READ {
        return Err(ImageError::BadOverlay(format!("guest read of {len} bytes")));
    }
    let path = absolute(path)?;
    // The raw driver wants sector-aligned windows.
    let start = offset / 512 * 512;
    let end = (offset + len as u64).div_ceil(512) * 512;
    // In --image-opts a comma is written as two.
    let file = path.to_string_lossy().replace(',', ",,");
    let opts = format!(
        "driver=raw,offset={start},size={},file.driver=qcow2,file.file.driver=file,file.file.filename={file}",
        end - start
    );
    let tmp = std::env::temp_dir().join(format!("pvce-read-{}.raw", uuid::Uuid::new_v4().simple()));
    let result = async {
        run(
            "read",
            QEMU_IMG,
            INFO_LIMITS,
            &[
                "convert".as_ref(),
                "-q".as_ref(),
                "--image-opts".as_ref(),
                opts.as_ref(),
                "-O".as_ref(),
                "raw".as_ref(),
                tmp.as_os_str(),
            ],
            &[0],
        )
        .await?;
        let bytes = tokio::fs::read(&tmp).await?;
        let from = (offset - start) as usize;
        bytes
            .get(from..from + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| ImageError::QemuImg {
                op: "read",
                detail: "short read (past the end of the disk?)".into(),
            })
    }
    .await;
    let _ = tokio::fs::remove_file(&tmp).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{create_image, run_ok};
    use std::process::Command as StdCommand;

    fn qemu(tool: &str, args: &[&OsStr]) -> Output {
        run_ok(StdCommand::new(tool).args(args))
    }

    fn dir_names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .expect("read_dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn info_reads_size_and_references() {
        let d = tempfile::tempdir().expect("tempdir");
        let base = d.path().join("base.qcow2");
        create_image(&base, "qcow2", &[], "64M");
        let i = info(&base, ImageFormat::Qcow2).await.expect("info");
        assert_eq!(i.format, "qcow2");
        assert_eq!(i.virtual_size, 64 << 20);
        assert!(i.actual_size.is_some());
        i.ensure_self_contained(&base).expect("self-contained");

        let ov = d.path().join("ov.qcow2");
        let b = base.to_str().expect("utf-8");
        create_image(&ov, "qcow2", &["-b", b, "-F", "qcow2"], "64M");
        let i = info(&ov, ImageFormat::Qcow2).await.expect("info");
        assert_eq!(i.backing_filename.as_deref(), Some(b));
        assert_eq!(i.backing_format.as_deref(), Some("qcow2"));
        assert!(matches!(
            i.ensure_self_contained(&ov),
            Err(ImageError::Unsafe(_))
        ));

        let df = d.path().join("df.qcow2");
        let data = format!("data_file={}", d.path().join("df.raw").display());
        create_image(&df, "qcow2", &["-o", &data], "1M");
        let i = info(&df, ImageFormat::Qcow2).await.expect("info");
        assert!(i.data_file.is_some());
        assert!(matches!(
            i.ensure_self_contained(&df),
            Err(ImageError::Unsafe(_))
        ));

        let vm = d.path().join("s.vmdk");
        create_image(&vm, "vmdk", &[], "1M");
        let i = info(&vm, ImageFormat::Vmdk).await.expect("info");
        assert_eq!(i.vmdk_extents.len(), 1);
        i.ensure_self_contained(&vm).expect("single file vmdk");
    }

    #[tokio::test]
    async fn info_with_wrong_format_fails_cleanly() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x.raw");
        std::fs::write(&p, vec![0u8; 4096]).expect("write");
        assert!(matches!(
            info(&p, ImageFormat::Qcow2).await,
            Err(ImageError::QemuImg { op: "info", .. })
        ));
    }

    #[tokio::test]
    async fn convert_raw_to_qcow2_is_faithful_and_atomic() {
        let d = tempfile::tempdir().expect("tempdir");
        let src = d.path().join("disk.img");
        let mut bytes = vec![0u8; 3 << 20];
        for (i, b) in bytes.iter_mut().enumerate().step_by(4093) {
            *b = (i % 251) as u8 + 1;
        }
        std::fs::write(&src, &bytes).expect("write");
        let dst = d.path().join("t.qcow2");
        convert_to_qcow2(&src, ImageFormat::Raw, &dst)
            .await
            .expect("convert");
        qemu(
            "qemu-img",
            &[
                "compare".as_ref(),
                "-f".as_ref(),
                "raw".as_ref(),
                "-F".as_ref(),
                "qcow2".as_ref(),
                src.as_os_str(),
                dst.as_os_str(),
            ],
        );
        let i = info(&dst, ImageFormat::Qcow2).await.expect("info");
        assert_eq!(i.virtual_size, 3 << 20);
        i.ensure_self_contained(&dst).expect("self-contained");
        assert!(check(&dst).await.expect("check").is_clean());
        assert_eq!(dir_names(d.path()), ["disk.img", "t.qcow2"]);
    }

    #[tokio::test]
    async fn convert_vmdk_to_qcow2() {
        let d = tempfile::tempdir().expect("tempdir");
        let src = d.path().join("in.vmdk");
        create_image(&src, "vmdk", &["-o", "subformat=streamOptimized"], "8M");
        let dst = d.path().join("out.qcow2");
        convert_to_qcow2(&src, ImageFormat::Vmdk, &dst)
            .await
            .expect("convert");
        assert_eq!(
            info(&dst, ImageFormat::Qcow2)
                .await
                .expect("info")
                .virtual_size,
            8 << 20
        );
    }

    #[tokio::test]
    async fn failed_convert_leaves_nothing_behind() {
        let d = tempfile::tempdir().expect("tempdir");
        let src = d.path().join("garbage");
        std::fs::write(&src, b"not a qcow2 at all").expect("write");
        let dst = d.path().join("out.qcow2");
        let err = convert_to_qcow2(&src, ImageFormat::Qcow2, &dst).await;
        assert!(
            matches!(err, Err(ImageError::QemuImg { op: "convert", .. })),
            "{err:?}"
        );
        assert_eq!(dir_names(d.path()), ["garbage"]);
    }

    #[tokio::test]
    async fn check_reports_corruption() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("c.qcow2");
        create_image(&p, "qcow2", &[], "1G");
        assert!(check(&p).await.expect("check").is_clean());
        // Refcount of the refcount table's cluster 1 → 0: a corruption.
        let mut bytes = std::fs::read(&p).expect("read");
        bytes[(2 << 16) + 2..(2 << 16) + 4].copy_from_slice(&[0, 0]);
        std::fs::write(&p, &bytes).expect("write");
        let r = check(&p).await.expect("check");
        assert_eq!(r.corruptions, 1);
        assert!(!r.is_clean());
    }

    #[tokio::test]
    async fn layer_operations_touch_only_the_layer() {
        let d = tempfile::tempdir().expect("tempdir");
        let base = d.path().join("base.qcow2");
        create_image(&base, "qcow2", &[], "8M");
        qemu(
            "qemu-io",
            &[
                "-f".as_ref(),
                "qcow2".as_ref(),
                "-c".as_ref(),
                "write -P 0x11 0 4M".as_ref(),
                base.as_os_str(),
            ],
        );
        let base_bytes = std::fs::read(&base).expect("read");
        let ov = d.path().join("ov.qcow2");
        let b = base.to_str().expect("utf-8");
        create_image(&ov, "qcow2", &["-b", b, "-F", "qcow2"], "8M");
        let write = |pat: &str| {
            let cmd = format!("write -P {pat} 1M 64k");
            qemu(
                "qemu-io",
                &[
                    "-f".as_ref(),
                    "qcow2".as_ref(),
                    "-c".as_ref(),
                    cmd.as_ref(),
                    ov.as_os_str(),
                ],
            );
        };
        write("0x22");
        let tag = uuid::Uuid::new_v4().to_string();
        snapshot(&ov, SnapshotOp::Create, &tag)
            .await
            .expect("create");
        assert_eq!(snapshot_tags(&ov).await.expect("tags"), vec![tag.clone()]);
        write("0x33");
        assert_eq!(read_guest(&ov, 1 << 20, 4).await.expect("read"), [0x33; 4]);
        snapshot(&ov, SnapshotOp::Apply, &tag).await.expect("apply");
        assert_eq!(read_guest(&ov, 1 << 20, 4).await.expect("read"), [0x22; 4]);
        assert_eq!(read_guest(&ov, 0, 2).await.expect("read"), [0x11; 2]);
        // Unaligned windows, across the overlay/backing boundary.
        let window = read_guest(&ov, (1 << 20) - 3, 6).await.expect("read");
        assert_eq!(window, [0x11, 0x11, 0x11, 0x22, 0x22, 0x22]);
        assert!(read_guest(&ov, 8 << 20, 1).await.is_err(), "past the end");
        let raw = d.path().join("view.raw");
        convert_to_raw(&ov, &raw).await.expect("raw view");
        let bytes = std::fs::read(&raw).expect("read");
        assert_eq!(bytes.len(), 8 << 20);
        assert_eq!((bytes[0], bytes[1 << 20]), (0x11, 0x22));
        snapshot(&ov, SnapshotOp::Delete, &tag)
            .await
            .expect("delete");
        assert!(snapshot_tags(&ov).await.expect("tags").is_empty());
        assert!(matches!(
            snapshot(&ov, SnapshotOp::Create, "-x").await,
            Err(ImageError::BadOverlay(_))
        ));

        // A compact copy on the same backing holds only the overlay's clusters.
        let copy = d.path().join("copy.qcow2");
        convert_to_overlay(&ov, &base, &copy)
            .await
            .expect("convert");
        let i = info(&copy, ImageFormat::Qcow2).await.expect("info");
        assert_eq!(i.backing_filename.as_deref(), Some(b));
        assert!(std::fs::metadata(&copy).expect("meta").len() < 1 << 20);
        assert_eq!(
            read_guest(&copy, 1 << 20, 4).await.expect("read"),
            [0x22; 4]
        );

        // Unsafe rebase replaces a hostile backing name without opening it.
        let evil = d.path().join("evil.qcow2");
        create_image(
            &evil,
            "qcow2",
            &["-u", "-b", "/etc/passwd", "-F", "raw"],
            "8M",
        );
        rebase_unsafe(&evil, &base).await.expect("rebase");
        let i = info(&evil, ImageFormat::Qcow2).await.expect("info");
        assert_eq!(i.backing_filename.as_deref(), Some(b));
        assert_eq!(i.backing_format.as_deref(), Some("qcow2"));
        assert_eq!(std::fs::read(&base).expect("read"), base_bytes);
    }

    #[tokio::test]
    async fn wall_clock_timeout_kills() {
        let limits = ProcLimits {
            wall: Duration::from_millis(200),
            ..INFO_LIMITS
        };
        let started = std::time::Instant::now();
        let r = run("sleep", "sleep", limits, &["5".as_ref()], &[0]).await;
        assert!(
            matches!(r, Err(ImageError::Timeout { op: "sleep", .. })),
            "{r:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn address_space_limit_applies() {
        let tiny = ProcLimits {
            address_space: 16 << 20,
            ..INFO_LIMITS
        };
        // qemu-img cannot even start its threads in 16 MiB of address space …
        let r = run("version", QEMU_IMG, tiny, &["--version".as_ref()], &[0]).await;
        assert!(matches!(r, Err(ImageError::QemuImg { .. })), "{r:?}");
        // … and runs fine under the real limits.
        run(
            "version",
            QEMU_IMG,
            INFO_LIMITS,
            &["--version".as_ref()],
            &[0],
        )
        .await
        .expect("qemu-img --version");
    }
}
