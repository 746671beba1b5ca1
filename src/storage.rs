//! Where pvce keeps files under its data directory.
//!
//! Layout (DESIGN.md "Storage paths"):
//! - `templates/<template-id>.qcow2` — immutable template layers (the tree's backing chain)
//! - `overlays/<owner-id>/<course-id>/<vm-id>.qcow2` — personal copy-on-write layers
//! - `uploads/` — image uploads being received and inspected, export copies
//!   and collection jobs: scratch only. Whatever a request puts there is
//!   removed when the request ends, however it ends (a guard whose `Drop`
//!   removes it, so a client that disconnects mid-upload leaves nothing);
//!   what a killed server left there is removed by [`Storage::clean_uploads`]
//!   when the server starts.
//! - `consoles/<vm-id>.log` — serial console logs written by virtlogd
//!
//! Invariant: every path is built from ids pvce generated (UUIDs), never from a
//! user-supplied name, so no request can steer a path outside the data dir.
//! Directories are world-traversable (0755) because QEMU runs as `libvirt-qemu`
//! and must reach the images; the files themselves are chowned by libvirt when
//! a domain opens them.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Paths under the data directory.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    /// Creates the directory layout (idempotent) with permissions QEMU can traverse.
    pub fn open(root: &Path) -> io::Result<Self> {
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()?.join(root)
        };
        fs::create_dir_all(&root)?;
        make_traversable(&root)?;
        for sub in ["templates", "overlays", "uploads", "consoles"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir)?;
            make_traversable(&dir)?;
        }
        // Uploads are untrusted until inspected: nobody but pvce reads them.
        fs::set_permissions(root.join("uploads"), fs::Permissions::from_mode(0o700))?;
        // The console logs are written by virtlogd (root) and read by pvce.
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The template library's directory (also every node's template store path).
    pub fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }

    pub fn template_path(&self, template_id: Uuid) -> PathBuf {
        self.root
            .join("templates")
            .join(format!("{template_id}.qcow2"))
    }

    pub fn overlay_dir(&self, owner_id: Uuid, course_id: Uuid) -> PathBuf {
        self.root
            .join("overlays")
            .join(owner_id.to_string())
            .join(course_id.to_string())
    }

    pub fn overlay_path(&self, owner_id: Uuid, course_id: Uuid, vm_id: Uuid) -> PathBuf {
        self.overlay_dir(owner_id, course_id)
            .join(format!("{vm_id}.qcow2"))
    }

    /// Creates the overlay directory of one student in one course.
    pub fn ensure_overlay_dir(&self, owner_id: Uuid, course_id: Uuid) -> io::Result<PathBuf> {
        let owner_dir = self.root.join("overlays").join(owner_id.to_string());
        let dir = self.overlay_dir(owner_id, course_id);
        fs::create_dir_all(&dir)?;
        make_traversable(&owner_dir)?;
        make_traversable(&dir)?;
        Ok(dir)
    }

    /// A fresh private path for an upload in progress.
    pub fn upload_path(&self) -> PathBuf {
        self.root
            .join("uploads")
            .join(format!("{}.upload", Uuid::new_v4()))
    }

    /// Removes everything under `uploads/` — what a server killed mid-request
    /// left behind (nothing there outlives the request that made it).
    /// Called once when the server starts, before it takes requests; a
    /// `pvce templates build` running on the same data dir at that moment
    /// would lose its scratch files. Returns the entries and bytes removed.
    pub fn clean_uploads(&self) -> io::Result<(u64, u64)> {
        let (mut entries, mut bytes) = (0, 0);
        for entry in fs::read_dir(self.root.join("uploads"))? {
            let entry = entry?;
            let path = entry.path();
            // A directory entry's metadata does not follow links: a link
            // is removed, never what it points to.
            let meta = entry.metadata()?;
            bytes += if meta.is_dir() {
                dir_bytes(&path)
            } else {
                meta.len()
            };
            if meta.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                remove_file_if_exists(&path)?;
            }
            entries += 1;
        }
        Ok((entries, bytes))
    }

    pub fn console_log_path(&self, vm_id: Uuid) -> PathBuf {
        self.root.join("consoles").join(format!("{vm_id}.log"))
    }
}

/// Adds `o+x`/`g+x` (and read) to a directory we own, so `libvirt-qemu` can reach files below.
fn make_traversable(dir: &Path) -> io::Result<()> {
    let meta = fs::metadata(dir)?;
    let mode = meta.permissions().mode();
    if mode & 0o055 != 0o055 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o755))?;
    }
    Ok(())
}

/// Bytes of the files below a directory (for the log; errors count as 0).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Removes a file, treating "already gone" as success.
pub fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

// ------------------------------------------------ file primitives

/// A fresh temporary name in the layer's directory (same file system, so the
/// final rename is atomic).
pub fn temp_beside(layer: &Path) -> PathBuf {
    let name = layer
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    layer.with_file_name(format!(".{name}.{}.tmp", Uuid::new_v4().simple()))
}

/// Whether a file name is one [`temp_beside`] makes: a half-written file
/// whose real one, beside it, is intact (installs are atomic renames).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Moves `path` (under `root`) to the same place under `quarantine` — what
/// the start-up sweeps and `pvce fsck --repair` do with a file no record
/// names: kept for a person to look at, never deleted. Returns where it went.
pub fn quarantine_file(root: &Path, path: &Path, quarantine: &Path) -> io::Result<PathBuf> {
    let to = quarantine.join(path.strip_prefix(root).unwrap_or(path));
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::rename(path, &to)?;
    Ok(to)
}

/// Makes a complete file the target (e.g. a VM's layer) atomically: mode 0644 (libvirt chowns it when
/// QEMU opens it), fsync, rename over the layer, fsync the directory. On
/// failure the temporary file is removed and the old layer is untouched.
pub async fn install_file(tmp: &Path, layer: &Path) -> Result<(), std::io::Error> {
    let (tmp, layer) = (tmp.to_path_buf(), layer.to_path_buf());
    tokio::task::spawn_blocking(move || install_file_blocking(&tmp, &layer))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// [`install_file`] on the calling thread (for small files).
pub fn install_file_blocking(tmp: &Path, target: &Path) -> io::Result<()> {
    let r = (|| {
        use std::os::unix::fs::PermissionsExt;
        let f = fs::File::open(tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.sync_all()?;
        fs::rename(tmp, target)?;
        if let Some(dir) = target.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = remove_file_if_exists(tmp);
    }
    r
}

/// Lowercase hex of a digest.
pub fn sha256_hex(digest: impl AsRef<[u8]>) -> String {
    hex::encode(digest.as_ref())
}

/// SHA-256 of a file, lowercase hex (read off the async threads).
pub async fn sha256_file(path: &Path) -> io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(sha256_hex(h.finalize()))
    })
    .await
    .map_err(|e| io::Error::other(e.to_string()))?
}

/// True for a SHA-256 in lowercase hex.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Removes a file when dropped unless disarmed: no half-written upload,
/// layer or export survives an error or a cancelled request.
#[derive(Debug)]
pub struct FileGuard(Option<PathBuf>);

impl FileGuard {
    pub fn new(path: PathBuf) -> Self {
        Self(Some(path))
    }

    /// Keeps the file (it was published or handed on).
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = remove_file_if_exists(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_created_traversable_and_paths_use_ids_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("data");
        let storage = Storage::open(&root).expect("open");
        let mode = fs::metadata(&root).expect("meta").permissions().mode();
        assert_eq!(mode & 0o755, 0o755);
        let uploads = fs::metadata(root.join("uploads")).expect("meta");
        assert_eq!(uploads.permissions().mode() & 0o777, 0o700);
        let (o, c, v) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let p = storage.overlay_path(o, c, v);
        assert!(p.starts_with(&root));
        assert!(p.ends_with(format!("{o}/{c}/{v}.qcow2")));
    }

    #[test]
    fn clean_uploads_removes_every_leftover_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(dir.path()).expect("open");
        let up = storage.upload_path();
        fs::write(&up, vec![1u8; 3000]).expect("write");
        let job = storage.upload_path().with_extension("collect");
        fs::create_dir(&job).expect("mkdir");
        fs::write(job.join("disk.raw"), vec![2u8; 1000]).expect("write");
        // A link to a file elsewhere goes; its target stays.
        let outside = dir.path().join("keep");
        fs::write(&outside, b"keep").expect("write");
        std::os::unix::fs::symlink(&outside, dir.path().join("uploads/link")).expect("link");
        let template = storage.template_path(Uuid::new_v4());
        fs::write(&template, b"layer").expect("write");
        let (entries, bytes) = storage.clean_uploads().expect("clean");
        assert_eq!(entries, 3);
        assert!((4000..4200).contains(&bytes), "{bytes}");
        assert_eq!(
            fs::read_dir(dir.path().join("uploads"))
                .expect("ls")
                .count(),
            0
        );
        assert!(outside.exists() && template.exists());
        assert_eq!(storage.clean_uploads().expect("clean"), (0, 0));
    }

    #[test]
    fn temp_names_stay_beside_the_layer() {
        let layer = Path::new("/data/overlays/o/c/v.qcow2");
        let t = temp_beside(layer);
        assert_eq!(t.parent(), layer.parent());
        assert!(t.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.starts_with(".v.qcow2.") && n.ends_with(".tmp")
        }));
        assert_ne!(temp_beside(layer), t);
    }

    #[test]
    fn sha256_hex_is_lowercase_and_64_long() {
        assert!(is_sha256_hex(&"a".repeat(64)));
        assert!(!is_sha256_hex(&"A".repeat(64)));
        assert!(!is_sha256_hex("abc"));
    }
}
