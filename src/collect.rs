//! Teacher collects work: one tar archive holding a directory (e.g.
//! `/root/lab1`) from the personal layer of every VM of a course.
//!
//! How (read-only, no mount, no nbd): for each VM of the course, under its
//! lifecycle lock and only if it is stopped, the layer is converted to a
//! private sparse raw file (`qemu-img convert -O raw`, through the template
//! chain); then the lock is released and `debugfs` (read-only, catastrophic
//! mode) reads the ext2/3/4 file system at the Linux partition's offset
//! (`image?offset=N`). Running VMs are skipped — a layer a running QEMU has
//! open is never read — and listed in `REPORT.txt` at the end of the archive,
//! with every other VM's outcome. Nothing from another course is ever read: the
//! VMs come from this course's rows only.
//!
//! Why not `debugfs rdump`: rdump writes each guest file to
//! `<dumproot>/<name>` with the *raw* directory-entry name and follows
//! whatever it created before. A student controls their file system byte for
//! byte, so a crafted entry named `../../etc/cron.d/x`, or a symlink followed by
//! a directory of the same name, makes rdump (as root) write anywhere on the
//! host. Instead, pvce walks the tree itself with `ls -p <inode>` (addressing
//! every directory by inode number, never by a name from the guest), dumps each
//! regular file with `dump <inode> <path pvce chose>`, and builds archive names
//! from sanitised components. Symlinks, devices and the like are skipped; a
//! directory cycle in a crafted file system is cut by remembering inodes.
//! debugfs still parses a hostile file system: it runs under `prlimit` (address
//! space, CPU, file size) with a wall-clock timeout, reading a private copy.
//! Running it as an unprivileged user would be the next hardening step.
//!
//! Limits: [`MAX_ARCHIVE_BYTES`] in total, [`MAX_FILES_PER_VM`] files and
//! [`MAX_DIRS_PER_VM`] directories per VM, depth [`MAX_DEPTH`]; a VM over a
//! limit is skipped and reported. Cost: the raw copy reads the VM's whole
//! allocated chain once (the template's data too), one VM at a time; a FUSE
//! export (`qemu-storage-daemon`) would avoid the copy for big templates.
//!
//! [`read_guest_path`] reads one file or directory the same way, for the
//! single-file download from a backup point ([`crate::backup`]).
//!
//! The archive streams (`<code>/<username>/<vm>/<dir name>/…`, then
//! `<code>/REPORT.txt`); the HTTP status is sent before the work, so per-VM
//! failures are reported in `REPORT.txt`, not as an HTTP error.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use futures::channel::mpsc;
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use crate::courses::{self, Course, CourseError};
use crate::db::Pool;
use crate::images::qemu_img;
use crate::portable::{ByteStream, tar};
use crate::storage::Storage;
use crate::users::User;
use crate::vms::snapshots;
use crate::vms::{self, VmManager, VmState};

/// Largest archive (sum of file sizes) collected in one request.
pub const MAX_ARCHIVE_BYTES: u64 = 4 << 30;
pub const MAX_FILES_PER_VM: usize = 10_000;
pub const MAX_DIRS_PER_VM: usize = 2_000;
pub const MAX_DEPTH: usize = 32;
/// debugfs limits: address space, CPU seconds, largest file it may write.
const DEBUGFS_AS: u64 = 1 << 30;
const DEBUGFS_CPU_SECS: u64 = 300;
const DEBUGFS_FSIZE: u64 = 4 << 30;
const DEBUGFS_WALL: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Course(#[from] CourseError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Checks the path to collect: absolute, at most 255 bytes of
/// `[A-Za-z0-9._+-]` components, no `.`/`..` components. Returns it without a
/// trailing slash.
pub fn validate_path(path: &str) -> Result<String, CollectError> {
    let bad = || {
        CollectError::Invalid(
            "path must be an absolute guest directory like /root/lab1 \
             (letters, digits, '.', '_', '+', '-' and '/')"
                .into(),
        )
    };
    let trimmed = path.trim_end_matches('/');
    if !path.starts_with('/') || trimmed.is_empty() || path.len() > 255 {
        return Err(bad());
    }
    for c in trimmed[1..].split('/') {
        let ok = !c.is_empty()
            && c != "."
            && c != ".."
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
        if !ok {
            return Err(bad());
        }
    }
    Ok(trimmed.to_owned())
}

/// A name from the guest or a user, made into one safe archive path component.
fn component(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_control() || c == '/' || c == '\\' {
                '_'
            } else {
                c
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => "_".into(),
        _ => s,
    }
}

/// One entry of `debugfs ls -p`: `/ino/mode/uid/gid/name/size/`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    ino: u64,
    mode: u32,
    name: String,
    size: u64,
}

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;

/// Parses `ls -p` output. Lines that do not parse — including names with a
/// `/` or a newline, which only a crafted file system has — are dropped.
fn parse_ls(out: &[u8]) -> Vec<Entry> {
    let text = String::from_utf8_lossy(out);
    text.lines()
        .filter_map(|line| {
            let line = line.strip_prefix('/')?.strip_suffix('/')?;
            let mut it = line.splitn(5, '/');
            let ino = it.next()?.parse().ok()?;
            let mode = u32::from_str_radix(it.next()?, 8).ok()?;
            let _uid = it.next()?;
            let _gid = it.next()?;
            let (name, size) = it.next()?.rsplit_once('/')?;
            if name.is_empty() || name.contains('/') {
                return None;
            }
            let size = if size.is_empty() {
                0
            } else {
                size.parse().ok()?
            };
            Some(Entry {
                ino,
                mode,
                name: name.to_owned(),
                size,
            })
        })
        .collect()
}

/// Why nothing could be collected from one VM (the text goes into the
/// archive's report for that VM).
#[derive(Debug, thiserror::Error)]
enum WalkError {
    #[error("cannot run debugfs: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("debugfs timed out")]
    TimedOut,
    #[error("{0}")]
    Wait(#[source] std::io::Error),
    #[error("debugfs failed: {0}")]
    Failed(String),
    #[error("{0} does not exist")]
    Missing(String),
    #[error("{0} is not a directory")]
    NotADirectory(String),
    #[error("{0} could not be read")]
    Unreadable(String),
    #[error("more than {MAX_FILES_PER_VM} files")]
    TooManyFiles,
    #[error("more than {MAX_DIRS_PER_VM} directories")]
    TooManyDirectories,
}

/// Runs `debugfs -c <args…> <image>` read-only under limits; returns stdout.
async fn debugfs(image: &str, args: &[&str]) -> Result<(Vec<u8>, String), WalkError> {
    let mut cmd = tokio::process::Command::new("prlimit");
    cmd.arg(format!("--as={DEBUGFS_AS}"))
        .arg(format!("--cpu={DEBUGFS_CPU_SECS}"))
        .arg(format!("--fsize={DEBUGFS_FSIZE}"))
        .arg("debugfs")
        .arg("-c")
        .args(args)
        .arg(image)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(WalkError::Spawn)?;
    let out = tokio::time::timeout(DEBUGFS_WALL, child.wait_with_output())
        .await
        .map_err(|_| WalkError::TimedOut)?
        .map_err(WalkError::Wait)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(WalkError::Failed(stderr.trim().to_owned()));
    }
    Ok((out.stdout, stderr))
}

/// A file found in the guest, to be dumped.
struct Found {
    ino: u64,
    rel: String,
}

/// Walks the directory at `path` in the file system `image`. Returns the
/// regular files (relative archive paths) and how many entries were skipped,
/// or why nothing can be collected.
async fn walk(image: &str, path: &str) -> Result<(Vec<Found>, u64, usize), WalkError> {
    let (out, err) = debugfs(image, &["-R", &format!("ls -p {path}")]).await?;
    let first = parse_ls(&out);
    let Some(root) = first.iter().find(|e| e.name == ".") else {
        return Err(if err.contains("not found") {
            WalkError::Missing(path.to_owned())
        } else if err.contains("not a directory") {
            WalkError::NotADirectory(path.to_owned())
        } else {
            WalkError::Unreadable(path.to_owned())
        });
    };
    let mut seen = HashSet::from([root.ino]);
    let mut files = Vec::new();
    let (mut bytes, mut skipped, mut dirs) = (0u64, 0usize, 1usize);
    let mut queue = vec![(first, String::new(), 0usize)];
    while let Some((entries, prefix, depth)) = queue.pop() {
        for e in entries {
            if e.name == "." || e.name == ".." {
                continue;
            }
            let rel = format!("{prefix}{}", component(&e.name));
            match e.mode & S_IFMT {
                S_IFREG => {
                    if files.len() >= MAX_FILES_PER_VM {
                        return Err(WalkError::TooManyFiles);
                    }
                    bytes = bytes.saturating_add(e.size);
                    files.push(Found { ino: e.ino, rel });
                }
                S_IFDIR if depth < MAX_DEPTH && seen.insert(e.ino) => {
                    dirs += 1;
                    if dirs > MAX_DIRS_PER_VM {
                        return Err(WalkError::TooManyDirectories);
                    }
                    let (out, _) = debugfs(image, &["-R", &format!("ls -p <{}>", e.ino)]).await?;
                    queue.push((parse_ls(&out), format!("{rel}/"), depth + 1));
                }
                _ => skipped += 1,
            }
        }
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok((files, bytes, skipped))
}

/// Removes a job directory when dropped (symlink-safe `remove_dir_all`).
struct JobDir(PathBuf);
impl Drop for JobDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the Linux file system of a raw disk starts: the first MBR Linux
/// partition, or 0 for a bare file system.
fn fs_offset(raw: &Path) -> io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(raw)?;
    let mut head = vec![0u8; 2048];
    let n = f.read_at(&mut head, 0)?;
    head.truncate(n);
    if let Some(o) = crate::images::partition::linux_partition_offset(&head) {
        return Ok(Some(o));
    }
    Ok((head.len() >= 2048 && crate::portable::ext4::has_magic(&head[1024..])).then_some(0))
}

type Tx = mpsc::Sender<io::Result<Bytes>>;

/// Sends bytes to the client; false if it went away.
async fn send(tx: &mut Tx, b: Vec<u8>) -> bool {
    tx.send(Ok(Bytes::from(b))).await.is_ok()
}

/// A collection being produced.
pub struct Collection {
    pub file_name: String,
    pub stream: ByteStream,
}

/// The VMs of a course, with their owners' usernames, in archive order.
async fn course_vms(
    pool: &crate::db::Pool,
    course: Uuid,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT v.id, u.username FROM vms v JOIN users u ON u.id = v.owner_id \
         WHERE v.course_id = $1 ORDER BY u.username, v.name",
    )
    .bind(course.to_string())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, u)| Some((Uuid::parse_str(&id).ok()?, u)))
        .collect())
}

/// Collection as a teacher reaches it: only from a course they manage.
#[derive(Debug)]
pub struct Collector {
    pool: Pool,
    storage: Storage,
    vms: Arc<VmManager>,
}

impl Collector {
    pub fn new(pool: Pool, storage: Storage, vms: Arc<VmManager>) -> Self {
        Self { pool, storage, vms }
    }

    /// Starts collecting `path` from every VM of the course `course_id`,
    /// which `user` must manage.
    pub async fn start(
        &self,
        user: &User,
        course_id: Uuid,
        path: &str,
    ) -> Result<Collection, CollectError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        let target =
            crate::audit::Target::new(crate::audit::TargetKind::Course, course.id, &course.code);
        let result = start(
            self.pool.clone(),
            self.vms.clone(),
            self.storage.clone(),
            course,
            path,
        )
        .await;
        // The collection as started (its files stream after this answer).
        let detail = serde_json::json!({ "path": path });
        let actor = crate::audit::Actor::user(user.id, &user.username);
        let entry = crate::audit::Entry::new(actor, crate::audit::Action::Collection, target);
        crate::audit::record(&self.pool, entry.result(&result, detail)).await;
        result
    }
}

/// Starts collecting `path` from every VM of `course` (the caller checked
/// that the user manages it). The work runs as the stream is read; dropping
/// the stream stops it and removes every temporary file.
async fn start(
    pool: Pool,
    vms: Arc<VmManager>,
    storage: Storage,
    course: Course,
    path: &str,
) -> Result<Collection, CollectError> {
    let path = validate_path(path)?;
    let targets = course_vms(&pool, course.id).await?;
    let leaf = path.rsplit('/').next().unwrap_or("collect").to_owned();
    let code = component(&course.code);
    let file_name = format!(
        "{}-{}.tar",
        code.chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            })
            .collect::<String>(),
        leaf
    );
    let (mut tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::spawn(async move {
        let mut report = format!(
            "pvce collection of {path} from course {} ({}) at {}\n\n",
            course.code,
            course.name,
            crate::db::now()
        );
        let mut budget = MAX_ARCHIVE_BYTES;
        let mtime = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        for (vm_id, username) in targets {
            let line = collect_vm(
                &pool,
                &vms,
                &storage,
                vm_id,
                &username,
                &code,
                &path,
                &leaf,
                mtime,
                &mut budget,
                &mut tx,
            )
            .await;
            match line {
                Some(l) => report.push_str(&l),
                None => return, // the client went away
            }
        }
        let mut tail = tar::file_headers(&format!("{code}/REPORT.txt"), report.len() as u64, mtime);
        tail.extend_from_slice(report.as_bytes());
        tail.resize(tail.len() + tar::padding(report.len() as u64), 0);
        tail.extend_from_slice(&tar::END);
        let _ = send(&mut tx, tail).await;
    });
    Ok(Collection {
        file_name,
        stream: Box::pin(rx),
    })
}

/// Collects one VM into the stream; returns its report line, or None if the
/// client went away.
#[allow(clippy::too_many_arguments)]
async fn collect_vm(
    pool: &Pool,
    vms: &VmManager,
    storage: &Storage,
    vm_id: Uuid,
    username: &str,
    code: &str,
    path: &str,
    leaf: &str,
    mtime: u64,
    budget: &mut u64,
    tx: &mut Tx,
) -> Option<String> {
    let Ok(vm) = vms::load(pool, vm_id).await else {
        return Some(format!("{username}: VM {vm_id} vanished\n"));
    };
    let label = format!("{}/{}", component(username), component(&vm.name));
    let job = JobDir(storage.upload_path().with_extension("collect"));
    if let Err(e) = std::fs::create_dir(&job.0) {
        tracing::warn!(error = %e, "collect: cannot create a job directory");
        return Some(format!("{label}: server error\n"));
    }
    let raw = job.0.join("disk.raw");
    {
        let lock = vms.lock_for(vm_id);
        let _held = lock.lock().await;
        let vm = match snapshots::reload(vms, vm_id).await {
            Ok(vm) => vm,
            Err(e) => return Some(format!("{label}: skipped ({e})\n")),
        };
        if !matches!(vm.state, VmState::Stopped | VmState::Error) {
            return Some(format!(
                "{label}: skipped, the VM is {} (stop it to collect)\n",
                vm.state.as_str()
            ));
        }
        let _work = match vms.checkout_layer(&vm).await {
            Ok(w) => w,
            Err(e) => return Some(format!("{label}: skipped ({e})\n")),
        };
        if snapshots::settle(&vm.overlay_path).await.is_err() {
            return Some(format!("{label}: skipped, the VM's disk is still in use\n"));
        }
        if let Err(e) = qemu_img::convert_to_raw(&vm.overlay_path, &raw).await {
            tracing::warn!(vm = %vm_id, error = %e, "collect: cannot read a layer");
            return Some(format!("{label}: skipped, the layer could not be read\n"));
        }
    }
    let offset = match fs_offset(&raw) {
        Ok(Some(o)) => o,
        Ok(None) => return Some(format!("{label}: skipped, no ext2/3/4 file system\n")),
        Err(_) => return Some(format!("{label}: server error\n")),
    };
    let image = format!("{}?offset={offset}", raw.display());
    let (files, bytes, skipped) = match walk(&image, path).await {
        Ok(w) => w,
        Err(m) => return Some(format!("{label}: nothing collected: {m}\n")),
    };
    if bytes > *budget {
        return Some(format!(
            "{label}: skipped, {bytes} bytes would exceed the archive limit\n"
        ));
    }
    let out_dir = job.0.join("f");
    if std::fs::create_dir(&out_dir).is_err() {
        return Some(format!("{label}: server error\n"));
    }
    let script: String = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            format!(
                "dump <{}> {}\n",
                f.ino,
                out_dir.join(i.to_string()).display()
            )
        })
        .collect();
    let script_path = job.0.join("dump.cmds");
    if std::fs::write(&script_path, script).is_err() {
        return Some(format!("{label}: server error\n"));
    }
    if let Err(m) = debugfs(&image, &["-f", &script_path.to_string_lossy()]).await {
        return Some(format!("{label}: nothing collected: {m}\n"));
    }
    let (mut count, mut total) = (0usize, 0u64);
    for (i, f) in files.iter().enumerate() {
        let Ok(mut file) = tokio::fs::File::open(out_dir.join(i.to_string())).await else {
            continue;
        };
        let Ok(len) = file.metadata().await.map(|m| m.len()) else {
            continue;
        };
        if len > *budget {
            return Some(format!("{label}: stopped at the archive limit\n"));
        }
        let name = format!("{code}/{label}/{}/{}", component(leaf), f.rel);
        if !send(tx, tar::file_headers(&name, len, mtime)).await {
            return None;
        }
        let mut left = len;
        let mut buf = vec![0u8; 256 << 10];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut buf[..want]).await.unwrap_or(0);
            // A short file (cannot happen: it is ours) is padded with zeros so
            // the archive stays well-formed.
            let chunk = if n == 0 {
                vec![0u8; want]
            } else {
                buf[..n].to_vec()
            };
            left -= chunk.len() as u64;
            if !send(tx, chunk).await {
                return None;
            }
        }
        if !send(tx, vec![0u8; tar::padding(len)]).await {
            return None;
        }
        *budget -= len;
        count += 1;
        total += len;
    }
    let extra = if skipped > 0 {
        format!(", {skipped} links/special files skipped")
    } else {
        String::new()
    };
    Some(format!("{label}: {count} files, {total} bytes{extra}\n"))
}

/// One entry of a guest directory (a backup point's file listing).
#[derive(Debug, Clone, serde::Serialize)]
pub struct GuestEntry {
    pub name: String,
    /// `file`, `dir` or `other` (links, devices: not downloadable).
    pub kind: &'static str,
    pub size: u64,
}

/// What a path of a guest disk is.
#[derive(Debug)]
pub enum GuestPath {
    Dir(Vec<GuestEntry>),
    /// A regular file, dumped to the `out` path given.
    File {
        size: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum GuestReadError {
    #[error("{0} does not exist in the guest")]
    NotFound(String),
    #[error("{0} is neither a file nor a directory")]
    NotReadable(String),
    #[error("no ext2/3/4 file system on this disk")]
    NoFileSystem,
    #[error("the guest file system could not be read: {0}")]
    Failed(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads `path` (`/`, or a path [`validate_path`] accepts) of the ext2/3/4
/// file system on the raw disk `raw`, with the same read-only debugfs as
/// collection: a directory's entries, or a regular file dumped to `out`.
/// Only `/` is looked up by name; every step below is by inode number, and
/// names from the guest are compared, never passed to debugfs.
pub async fn read_guest_path(
    raw: &Path,
    path: &str,
    out: &Path,
) -> Result<GuestPath, GuestReadError> {
    let offset = fs_offset(raw)?.ok_or(GuestReadError::NoFileSystem)?;
    let image = format!("{}?offset={offset}", raw.display());
    let failed = |e: WalkError| GuestReadError::Failed(e.to_string());
    let (root, _) = debugfs(&image, &["-R", "ls -p /"]).await.map_err(failed)?;
    let mut entries = parse_ls(&root);
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for (i, name) in parts.iter().enumerate() {
        let e = entries
            .iter()
            .find(|e| e.name == *name && e.name != "." && e.name != "..")
            .cloned()
            .ok_or_else(|| GuestReadError::NotFound(path.to_owned()))?;
        let last = i + 1 == parts.len();
        match e.mode & S_IFMT {
            S_IFDIR => {
                let (o, _) = debugfs(&image, &["-R", &format!("ls -p <{}>", e.ino)])
                    .await
                    .map_err(failed)?;
                entries = parse_ls(&o);
            }
            S_IFREG if last => {
                let cmd = format!("dump <{}> {}", e.ino, out.display());
                debugfs(&image, &["-R", &cmd]).await.map_err(failed)?;
                return Ok(GuestPath::File { size: e.size });
            }
            _ if last => return Err(GuestReadError::NotReadable(path.to_owned())),
            _ => return Err(GuestReadError::NotFound(path.to_owned())),
        }
    }
    let mut list: Vec<GuestEntry> = entries
        .into_iter()
        .filter(|e| e.name != "." && e.name != "..")
        .map(|e| GuestEntry {
            kind: match e.mode & S_IFMT {
                S_IFDIR => "dir",
                S_IFREG => "file",
                _ => "other",
            },
            size: e.size,
            name: e.name,
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(GuestPath::Dir(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            validate_path("/root/lab1/").ok().as_deref(),
            Some("/root/lab1")
        );
        assert_eq!(
            validate_path("/home/s+1/a_b-c.d").ok().as_deref(),
            Some("/home/s+1/a_b-c.d")
        );
        for bad in [
            "",
            "/",
            "root/lab1",
            "/root/../etc",
            "/root/./x",
            "/root//x",
            "/a b",
            "/a\"b",
            "/a;b",
            "/é",
        ] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        assert!(validate_path(&format!("/{}", "a".repeat(255))).is_err());
    }

    #[test]
    fn components_are_single_and_safe() {
        assert_eq!(component("../../etc"), ".._.._etc");
        assert_eq!(component(".."), "_");
        assert_eq!(component("a\nb"), "a_b");
        assert_eq!(component("王小明"), "王小明");
    }

    #[test]
    fn ls_output_is_parsed_and_crafted_names_dropped() {
        let out = b"/13/040755/0/0/.//\n/12/040755/0/0/..//\n/14/100644/0/0/a.txt/6/\n\
/15/120777/0/0/evil/11/\n/16/100644/1000/1000/sp ace/1/\n/17/040755/0/0/sub//\n\
/18/100644/0/0/../../etc/passwd/5/\n/19/100644/0/0/x/notanumber/\ngarbage\n\n";
        let e = parse_ls(out);
        let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, [".", "..", "a.txt", "evil", "sp ace", "sub"]);
        assert_eq!(
            e[2],
            Entry {
                ino: 14,
                mode: 0o100644,
                name: "a.txt".into(),
                size: 6
            }
        );
        assert_eq!(e[5].mode & S_IFMT, S_IFDIR);
    }

    #[tokio::test]
    async fn walks_a_real_file_system_by_inode() {
        let d = tempfile::tempdir().expect("tempdir");
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("root/lab1/sub/deeper")).expect("mkdir");
        std::fs::write(src.join("root/lab1/a.txt"), b"alpha").expect("write");
        std::fs::write(src.join("root/lab1/sub/deeper/b.txt"), b"beta").expect("write");
        std::fs::write(src.join("root/lab1/名字 with space"), b"x").expect("write");
        std::os::unix::fs::symlink("/etc/shadow", src.join("root/lab1/evil")).expect("symlink");
        let img = d.path().join("fs.raw");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(32 << 20))
            .expect("truncate");
        let ok = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&src)
            .arg(&img)
            .status()
            .expect("mkfs.ext4")
            .success();
        assert!(ok);
        let image = format!("{}?offset=0", img.display());
        let (files, bytes, skipped) = walk(&image, "/root/lab1").await.expect("walk");
        let rels: Vec<&str> = files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["a.txt", "sub/deeper/b.txt", "名字 with space"]);
        assert_eq!(bytes, 10);
        assert_eq!(skipped, 1);
        assert!(
            walk(&image, "/root/none")
                .await
                .is_err_and(|m| m.to_string().contains("does not exist"))
        );
        assert!(walk(&image, "/root/lab1/a.txt").await.is_err());
        assert_eq!(fs_offset(&img).expect("read"), Some(0));
    }
}
