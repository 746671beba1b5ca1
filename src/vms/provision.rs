//! Provisioning: creating personal VMs (staged layers, rows in the
//! enrolment's transaction, publishing), settling what a crash left at
//! start-up, and deleting a course's VMs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::VmManager;
use super::model::{COLUMNS, Vm, VmError, VmSpec, VmState, from_row, load};
use crate::db::{self, Pool};
use crate::images::{self};
use crate::storage::{self, Storage};
use crate::templates;
use crate::vms::layers::{LayerLocation, LayerStorage, Layers};

/// Suffix of a personal layer written but not yet published: its VM row is
/// not committed yet (or the server died between the commit and the rename,
/// which [`sweep_layers_at_start`] completes).
pub const STAGING_SUFFIX: &str = ".staging";

/// Personal VMs about to be created: their layers are written under staging
/// names, their rows not yet inserted. [`Provision::insert`] writes the rows
/// in the caller's transaction; after the commit [`Provision::publish`]
/// moves the layers into place. Until then nothing a student could see
/// exists, and a crash leaves only staged files the start-up sweep removes.
#[derive(Debug)]
pub struct Provision {
    course_id: Uuid,
    layer_storage: LayerStorage,
    todo: Vec<NewVm>,
}

#[derive(Debug)]
struct NewVm {
    id: Uuid,
    name: String,
    spec_id: Uuid,
    template_id: Uuid,
    vcpus: u32,
    memory_mib: u32,
    owner: Uuid,
    path: PathBuf,
    staged: Option<PathBuf>,
}

fn staging_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(STAGING_SUFFIX);
    PathBuf::from(s)
}

impl Provision {
    /// Plans one VM per (owner, spec) that has none yet in the course and, for
    /// shared layers, writes their staged overlays (node-local layers are
    /// created at first start).
    pub async fn stage(
        pool: &Pool,
        storage: &Storage,
        layer_storage: LayerStorage,
        course_id: Uuid,
        specs: &[VmSpec],
        owners: &[Uuid],
    ) -> Result<Provision, VmError> {
        let mut plan = Provision {
            course_id,
            layer_storage,
            todo: Vec::new(),
        };
        if owners.is_empty() || specs.is_empty() {
            return Ok(plan);
        }
        let existing: Vec<(String, String)> =
            sqlx::query_as("SELECT spec_id, owner_id FROM vms WHERE course_id = $1")
                .bind(course_id.to_string())
                .fetch_all(pool)
                .await?;
        let existing: std::collections::HashSet<(String, String)> = existing.into_iter().collect();
        let mut backing = HashMap::new();
        for spec in specs {
            let t = templates::get(pool, spec.template_id).await?;
            backing.insert(spec.id, (storage.template_path(t.id), t.virtual_size_bytes));
        }
        for owner in owners {
            if layer_storage == LayerStorage::Shared {
                storage.ensure_overlay_dir(*owner, course_id)?;
            }
            for spec in specs {
                if existing.contains(&(spec.id.to_string(), owner.to_string())) {
                    continue;
                }
                let id = Uuid::new_v4();
                let path = storage.overlay_path(*owner, course_id, id);
                plan.todo.push(NewVm {
                    id,
                    name: spec.name.clone(),
                    spec_id: spec.id,
                    template_id: spec.template_id,
                    vcpus: spec.vcpus,
                    memory_mib: spec.memory_mib,
                    owner: *owner,
                    staged: (layer_storage == LayerStorage::Shared).then(|| staging_path(&path)),
                    path,
                });
            }
        }
        let jobs: Vec<images::OverlayJob> = plan
            .todo
            .iter()
            .filter_map(|n| {
                let (b, size) = &backing[&n.spec_id];
                Some(images::OverlayJob {
                    path: n.staged.clone()?,
                    backing: b.clone(),
                    virtual_size: *size,
                })
            })
            .collect();
        if jobs.is_empty() {
            return Ok(plan);
        }
        let created =
            tokio::task::spawn_blocking(move || images::overlay::create_overlays_parallel(&jobs))
                .await
                .map_err(|e| VmError::Io(std::io::Error::other(e.to_string())))?;
        if let Some(e) = created.into_iter().find_map(Result::err) {
            plan.discard();
            return Err(e.into());
        }
        Ok(plan)
    }

    /// VMs this provision creates.
    pub fn count(&self) -> u64 {
        self.todo.len() as u64
    }

    /// Inserts the VM rows in the caller's transaction.
    pub async fn insert(&self, tx: &mut crate::db::Conn) -> Result<(), VmError> {
        let now = db::now();
        for n in &self.todo {
            let inserted = sqlx::query(
                "INSERT INTO vms (id, name, course_id, spec_id, owner_id, template_id, state, vcpus, memory_mib, overlay_path, created_at, layer_storage)
                 VALUES ($1, $2, $3, $4, $5, $6, 'stopped', $7, $8, $9, $10, $11)",
            )
            .bind(n.id.to_string())
            .bind(&n.name)
            .bind(self.course_id.to_string())
            .bind(n.spec_id.to_string())
            .bind(n.owner.to_string())
            .bind(n.template_id.to_string())
            .bind(i64::from(n.vcpus))
            .bind(i64::from(n.memory_mib))
            .bind(n.path.to_string_lossy().into_owned())
            .bind(&now)
            .bind(self.layer_storage.as_str())
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(e) if db::unique_violation(&e).is_some() => {
                    return Err(VmError::EnrolmentInProgress(
                        "another enrolment of the same students is running; retry".into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Moves the staged layers into place once their rows are committed.
    /// A failure here leaves rows whose layer is still staged; the start-up
    /// sweep finishes the move, so it is logged rather than undone.
    pub async fn publish(self) -> Result<(), VmError> {
        let moves: Vec<(PathBuf, PathBuf)> = self
            .todo
            .into_iter()
            .filter_map(|n| Some((n.staged?, n.path)))
            .collect();
        tokio::task::spawn_blocking(move || publish_staged(&moves))
            .await
            .map_err(|e| VmError::Io(std::io::Error::other(e.to_string())))??;
        Ok(())
    }

    /// Removes the staged layers (the rows were not committed).
    pub fn discard(self) {
        for n in &self.todo {
            if let Some(p) = &n.staged {
                let _ = storage::remove_file_if_exists(p);
            }
        }
    }
}

/// Renames staged layers to their final names and syncs each directory once.
fn publish_staged(moves: &[(PathBuf, PathBuf)]) -> std::io::Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    for (staged, path) in moves {
        std::fs::rename(staged, path)?;
        crate::crashpoint::hit("enrol.first_layer_published");
        if let Some(d) = path.parent() {
            dirs.insert(d.to_path_buf());
        }
    }
    for d in dirs {
        std::fs::File::open(&d)?.sync_all()?;
    }
    Ok(())
}

/// What the start-up sweep of personal layers did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Staged layers of committed VMs moved into place.
    pub published: u64,
    /// Fresh (never written) layers no VM names, removed.
    pub removed: u64,
    /// Half-written temporary files, removed.
    pub temp_removed: u64,
    /// Layers no VM names that hold data, moved to `quarantine/`.
    pub quarantined: Vec<PathBuf>,
}

/// Brings `overlays/` in line with the `vms` and `snapshots` tables after a
/// crash, before the server serves: a staged layer whose VM row exists is
/// published; a half-written temporary file (`.<name>.<id>.tmp`: the real
/// file beside it is intact) is removed; any other file no VM row or backup
/// snapshot names is removed if it is a pristine overlay (no cluster
/// allocated: it cannot hold student data) and otherwise moved to
/// `quarantine/<time>/…` — never deleted. Runs while nothing else touches
/// the layers (start-up).
pub async fn sweep_layers_at_start(pool: &Pool, storage: &Storage) -> Result<SweepReport, VmError> {
    let known: Vec<String> = sqlx::query_scalar("SELECT overlay_path FROM vms")
        .fetch_all(pool)
        .await?;
    let mut known: std::collections::HashSet<PathBuf> =
        known.into_iter().map(PathBuf::from).collect();
    // A backup snapshot's file is somebody's former layer: recorded, kept.
    known.extend(super::snapshots::backup_files(pool).await?);
    let root = storage.root().join("overlays");
    let quarantine = storage
        .root()
        .join("quarantine")
        .join(db::now().replace(':', ""));
    tokio::task::spawn_blocking(move || sweep_dir(&root, &known, &quarantine))
        .await
        .map_err(|e| VmError::Io(std::io::Error::other(e.to_string())))?
        .map_err(VmError::Io)
}

fn sweep_dir(
    root: &Path,
    known: &std::collections::HashSet<PathBuf>,
    quarantine: &Path,
) -> std::io::Result<SweepReport> {
    let mut report = SweepReport::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            if !kind.is_file() || known.contains(&path) {
                continue;
            }
            if storage::is_temp_name(&entry.file_name().to_string_lossy()) {
                std::fs::remove_file(&path)?;
                report.temp_removed += 1;
                continue;
            }
            let name = path.to_string_lossy();
            if let Some(final_name) = name.strip_suffix(STAGING_SUFFIX) {
                let final_path = PathBuf::from(final_name);
                if known.contains(&final_path) && !final_path.exists() {
                    std::fs::rename(&path, &final_path)?;
                    report.published += 1;
                    continue;
                }
            }
            if images::overlay::is_pristine(&path).unwrap_or(false) {
                std::fs::remove_file(&path)?;
                report.removed += 1;
            } else {
                let to = storage::quarantine_file(root, &path, quarantine)?;
                report.quarantined.push(to);
            }
        }
    }
    Ok(report)
}

/// Deletes the VMs (and layers) of a course, or of one student in it.
/// Refuses while any of them is active.
pub async fn delete_for(
    pool: &Pool,
    storage: &Storage,
    layers: &Layers,
    course_id: Uuid,
    owner: Option<Uuid>,
) -> Result<(), VmError> {
    let mut sql = format!("SELECT {COLUMNS} FROM vms WHERE course_id = $1");
    if owner.is_some() {
        sql.push_str(" AND owner_id = $2");
    }
    let mut q = sqlx::query(&sql).bind(course_id.to_string());
    if let Some(o) = owner {
        q = q.bind(o.to_string());
    }
    let vms: Vec<Vm> = q
        .fetch_all(pool)
        .await?
        .iter()
        .map(from_row)
        .collect::<Result<_, _>>()?;
    if let Some(active) = vms.iter().find(|v| v.state.is_active()) {
        return Err(VmError::Running(format!(
            "VM {} is {}; stop it first",
            active.name,
            active.state.as_str()
        )));
    }
    // Node-local layers: all homes must answer, or nothing is deleted.
    let locations: Vec<LayerLocation> = vms.iter().map(Vm::layer).collect();
    layers.require_reachable(&locations).await?;
    for vm in &vms {
        // Removes backup layers kept beside the overlay (rows cascade anyway).
        super::snapshots::forget_all(pool, vm).await?;
    }
    let mut tx = db::begin(pool).await?;
    for vm in &vms {
        sqlx::query("DELETE FROM vms WHERE id = $1")
            .bind(vm.id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    for vm in &vms {
        layers.delete_volume(vm.id, &vm.layer()).await;
        storage::remove_file_if_exists(&vm.overlay_path)?;
        storage::remove_file_if_exists(&storage.console_log_path(vm.id))?;
    }
    Ok(())
}

/// The build VM of a draft template ([`crate::builds`]): owned by the
/// teacher, booting straight from the draft's layer (so what the teacher
/// installs lands in it), on the parent template for placement.
#[derive(Debug)]
pub struct NewBuildVm {
    pub draft_id: Uuid,
    pub parent_id: Uuid,
    pub owner_id: Uuid,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// The draft's layer file.
    pub layer: PathBuf,
}

impl VmManager {
    /// Inserts a draft's build VM (stopped) and returns its id.
    pub async fn insert_build_vm(&self, b: &NewBuildVm) -> Result<Uuid, VmError> {
        let vm_id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO vms (id, name, build_template_id, owner_id, template_id, state, vcpus, memory_mib, overlay_path, created_at)
             VALUES ($1, $2, $3, $4, $5, 'stopped', $6, $7, $8, $9)",
        )
        .bind(vm_id.to_string())
        .bind("build")
        .bind(b.draft_id.to_string())
        .bind(b.owner_id.to_string())
        .bind(b.parent_id.to_string())
        .bind(i64::from(b.vcpus))
        .bind(i64::from(b.memory_mib))
        .bind(b.layer.to_string_lossy().into_owned())
        .bind(db::now())
        .execute(&self.pool)
        .await?;
        Ok(vm_id)
    }

    /// The build VM of draft template `draft_id`, if it has one.
    pub async fn build_vm_of(&self, draft_id: Uuid) -> Result<Option<Uuid>, VmError> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM vms WHERE build_template_id = $1")
                .bind(draft_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(id.and_then(|s| Uuid::parse_str(&s).ok()))
    }

    /// Deletes a build VM (its row and console log) under its lock, whatever
    /// its state: for a VM that was just forced off or never started.
    pub async fn delete_build_vm(&self, vm_id: Uuid) -> Result<(), VmError> {
        let lock = self.lock_for(vm_id);
        let _guard = lock.lock().await;
        self.delete_build_vm_locked(vm_id).await
    }

    /// Deletes a build VM if it is stopped (checked under its lock, so no
    /// start slips in between); `false` if it is not.
    pub async fn delete_stopped_build_vm(&self, vm_id: Uuid) -> Result<bool, VmError> {
        let lock = self.lock_for(vm_id);
        let _guard = lock.lock().await;
        if load(&self.pool, vm_id).await?.state != VmState::Stopped {
            return Ok(false);
        }
        self.delete_build_vm_locked(vm_id).await?;
        Ok(true)
    }

    async fn delete_build_vm_locked(&self, vm_id: Uuid) -> Result<(), VmError> {
        sqlx::query("DELETE FROM vms WHERE id = $1 AND build_template_id IS NOT NULL")
            .bind(vm_id.to_string())
            .execute(&self.pool)
            .await?;
        // Only a log: a failure to remove it is not the caller's failure.
        let _ = storage::remove_file_if_exists(&self.storage.console_log_path(vm_id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_keeps_recorded_backups_and_removes_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("overlays");
        let vm_dir = root.join("owner").join("course");
        std::fs::create_dir_all(&vm_dir).expect("mkdir");
        let layer = vm_dir.join("vm.qcow2");
        let backup = vm_dir.join("vm.backup-b.qcow2");
        let temp = storage::temp_beside(&layer);
        for p in [&layer, &backup, &temp] {
            // Not an overlay: would be quarantined if unknown, never removed.
            std::fs::write(p, vec![7u8; 4096]).expect("write");
        }
        let known = std::collections::HashSet::from([layer.clone(), backup.clone()]);
        let quarantine = dir.path().join("quarantine");
        let r = sweep_dir(&root, &known, &quarantine).expect("sweep");
        assert!(layer.exists() && backup.exists(), "recorded files stay");
        assert!(!temp.exists(), "a half-written file goes");
        assert_eq!(
            r,
            SweepReport {
                temp_removed: 1,
                ..SweepReport::default()
            }
        );
        assert!(!quarantine.exists(), "nothing quarantined");
    }
}
