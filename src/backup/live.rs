//! The kept base of a running VM's backups: what lets the second and later
//! copies of a running VM read only the clusters the guest wrote since the
//! previous copy (a libvirt checkpoint, i.e. a QEMU dirty bitmap), instead
//! of its whole disk.
//!
//! Per VM, in `<data dir>/backup/live/<vm id>/` (pvce's alone, mode 0700):
//! - `base.qcow2`: the VM's layer as it was at checkpoint `current` — a
//!   qcow2 over the VM's template, like a layer. The next copy's changed
//!   clusters are committed into it, and it is what restic backs up as the
//!   VM's layer;
//! - `state.json` ([`LiveState`]): `current`, and `made` — every checkpoint
//!   pvce asked a domain to create and has not yet seen gone.
//!
//! Invariants:
//! - `current` is set only while `base.qcow2` is exactly the guest's disk
//!   at that checkpoint: cleared (and saved) before the base changes, set
//!   after the change is on disk.
//! - A checkpoint's name is saved in `made` before the job that creates it
//!   begins, so a server killed mid-job leaves no bitmap pvce cannot name;
//!   names leave `made` only when libvirt said the checkpoint is gone.
//! - Only changes since a checkpoint the *running* domain itself has are
//!   copied ([`crate::vms::VmManager::has_checkpoint`]): a transient
//!   domain's checkpoints end with it, so a VM that stopped — and may have
//!   been restored, reverted or imported meanwhile — always gets a whole
//!   copy first.
//! - The state is a cache, never a record: lost or unreadable, the next
//!   copy is a whole one and leftover bitmaps are stripped offline
//!   ([`crate::images::qemu_img::remove_bitmaps`]) before any revert.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::libvirt::backup::Checkpoint;

/// Prefix of pvce's checkpoint (and bitmap) names.
const PREFIX: &str = "pvce-backup-";

/// A fresh checkpoint, created at `now` (Unix seconds, the run's clock).
pub fn new_checkpoint(now: i64) -> Checkpoint {
    Checkpoint {
        name: format!("{PREFIX}{}", Uuid::new_v4().simple()),
        created_at: now,
    }
}

/// One checkpoint as `state.json` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub name: String,
    pub created_at: i64,
}

impl From<&Checkpoint> for Saved {
    fn from(c: &Checkpoint) -> Self {
        Self {
            name: c.name.clone(),
            created_at: c.created_at,
        }
    }
}

impl From<&Saved> for Checkpoint {
    fn from(s: &Saved) -> Self {
        Self {
            name: s.name.clone(),
            created_at: s.created_at,
        }
    }
}

/// A VM's `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    /// The checkpoint `base.qcow2` is of.
    pub current: Option<Saved>,
    /// Checkpoints made and not known gone (`current` among them).
    #[serde(default)]
    pub made: Vec<Saved>,
}

impl LiveState {
    /// The checkpoints to drop before the next copy: all made but `keep`.
    pub fn leftovers(&self, keep: Option<&Saved>) -> Vec<Saved> {
        self.made
            .iter()
            .filter(|s| Some(*s) != keep)
            .cloned()
            .collect()
    }

    /// A checkpoint libvirt said is gone (dropped, or never in the image).
    pub fn forget(&mut self, name: &str) {
        self.made.retain(|s| s.name != name);
        if self.current.as_ref().is_some_and(|c| c.name == name) {
            self.current = None;
        }
    }

    /// A job that creates `c` is about to begin.
    pub fn begin(&mut self, c: &Checkpoint) {
        self.made.push(c.into());
    }
}

/// The kept bases of all VMs (see the module doc).
#[derive(Debug, Clone)]
pub struct LiveBases {
    dir: PathBuf,
}

impl LiveBases {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn vm_dir(&self, vm: Uuid) -> PathBuf {
        self.dir.join(vm.to_string())
    }

    /// Where `vm`'s base is (it may not exist).
    pub fn base(&self, vm: Uuid) -> PathBuf {
        self.vm_dir(vm).join("base.qcow2")
    }

    /// A scratch name beside the base (same file system, for its rename).
    pub fn staging(&self, vm: Uuid) -> std::io::Result<PathBuf> {
        self.ensure_dir(vm)?;
        Ok(crate::storage::temp_beside(&self.base(vm)))
    }

    fn ensure_dir(&self, vm: Uuid) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.dir)?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        std::fs::create_dir_all(self.vm_dir(vm))
    }

    /// `vm`'s state; none, or an unreadable one, is the empty state (a
    /// cache: the next copy is then a whole one).
    pub fn load(&self, vm: Uuid) -> LiveState {
        std::fs::read(self.vm_dir(vm).join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes `vm`'s state durably (a complete file renamed into place).
    pub fn save(&self, vm: Uuid, state: &LiveState) -> std::io::Result<()> {
        self.ensure_dir(vm)?;
        let path = self.vm_dir(vm).join("state.json");
        let tmp = crate::storage::temp_beside(&path);
        if let Err(e) = std::fs::write(
            &tmp,
            serde_json::to_vec(state).map_err(std::io::Error::other)?,
        ) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        crate::storage::install_file_blocking(&tmp, &path)
    }

    /// Makes the file `staged` (complete, beside the base) `vm`'s base.
    pub async fn install(&self, vm: Uuid, staged: &Path) -> std::io::Result<()> {
        crate::storage::install_file(staged, &self.base(vm)).await
    }

    /// Flushes `vm`'s base to disk after it changed in place.
    pub fn sync_base(&self, vm: Uuid) -> std::io::Result<()> {
        std::fs::File::open(self.base(vm))?.sync_all()
    }

    /// Removes `vm`'s base and its `current` (the VM stopped: its next
    /// copy is a whole one); the names of checkpoints it made stay, to be
    /// dropped when it runs again.
    pub fn forget_base(&self, vm: Uuid) -> std::io::Result<()> {
        let dir = self.vm_dir(vm);
        if !dir.exists() {
            return Ok(());
        }
        let mut state = self.load(vm);
        if state.current.take().is_some() {
            self.save(vm, &state)?;
        }
        crate::storage::remove_file_if_exists(&self.base(vm))?;
        if state.made.is_empty() {
            std::fs::remove_dir_all(&dir)?;
        }
        Ok(())
    }

    /// Removes the directories of VMs not in `keep` (deleted VMs).
    pub fn sweep(&self, keep: &HashSet<Uuid>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let gone = name
                .to_str()
                .and_then(|n| Uuid::parse_str(n).ok())
                .is_none_or(|id| !keep.contains(&id));
            if gone && let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!(path = %e.path().display(), error = %err, "could not remove a deleted VM's backup base");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ck(n: &str) -> Saved {
        Saved {
            name: n.into(),
            created_at: 1,
        }
    }

    #[test]
    fn checkpoint_names_are_pvce_s_and_unique() {
        let (a, b) = (new_checkpoint(5), new_checkpoint(5));
        assert!(a.name.starts_with(PREFIX) && a.name.len() == PREFIX.len() + 32);
        assert_ne!(a.name, b.name);
        assert_eq!(a.created_at, 5);
    }

    #[test]
    fn leftovers_are_everything_made_but_what_is_kept() {
        let mut s = LiveState::default();
        s.begin(&(&ck("a")).into());
        s.begin(&(&ck("b")).into());
        s.current = Some(ck("a"));
        assert_eq!(s.leftovers(s.current.as_ref()), vec![ck("b")]);
        assert_eq!(s.leftovers(None), vec![ck("a"), ck("b")]);
        // Forgetting the current one clears it: its base is no longer of it.
        s.forget("a");
        assert_eq!(s.current, None);
        assert_eq!(s.made, vec![ck("b")]);
    }

    #[test]
    fn state_survives_a_round_trip_and_junk_is_the_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let bases = LiveBases::new(dir.path().join("live"));
        let vm = Uuid::new_v4();
        assert_eq!(bases.load(vm), LiveState::default());
        let s = LiveState {
            current: Some(ck("a")),
            made: vec![ck("a"), ck("b")],
        };
        bases.save(vm, &s).unwrap();
        assert_eq!(bases.load(vm), s);
        std::fs::write(
            dir.path()
                .join("live")
                .join(vm.to_string())
                .join("state.json"),
            b"{",
        )
        .unwrap();
        assert_eq!(bases.load(vm), LiveState::default());
    }

    #[test]
    fn forgetting_a_base_keeps_the_names_to_drop_and_sweep_removes_deleted_vms() {
        let dir = tempfile::tempdir().unwrap();
        let bases = LiveBases::new(dir.path().join("live"));
        let (kept, deleted) = (Uuid::new_v4(), Uuid::new_v4());
        for vm in [kept, deleted] {
            bases
                .save(
                    vm,
                    &LiveState {
                        current: Some(ck("a")),
                        made: vec![ck("a")],
                    },
                )
                .unwrap();
            std::fs::write(bases.base(vm), b"qcow2").unwrap();
        }
        bases.forget_base(kept).unwrap();
        assert!(!bases.base(kept).exists());
        assert_eq!(
            bases.load(kept),
            LiveState {
                current: None,
                made: vec![ck("a")]
            }
        );
        bases.sweep(&HashSet::from([kept]));
        assert!(bases.vm_dir(kept).exists());
        assert!(!bases.vm_dir(deleted).exists());
        // Nothing left to drop: the directory goes with the base.
        let mut s = bases.load(kept);
        s.forget("a");
        bases.save(kept, &s).unwrap();
        bases.forget_base(kept).unwrap();
        assert!(!bases.vm_dir(kept).exists());
    }
}
