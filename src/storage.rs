//! Where pvce keeps files under its data directory.
//!
//! Layout (DESIGN.md "Storage paths"):
//! - `templates/<template-id>.qcow2` — immutable template layers (the tree's backing chain)
//! - `overlays/<owner-id>/<course-id>/<vm-id>.qcow2` — personal copy-on-write layers
//! - `uploads/` — image uploads being received and inspected
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

/// Removes a file, treating "already gone" as success.
pub fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
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
}
