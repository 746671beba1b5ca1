//! Snapshots of a personal VM.
//!
//! Design:
//! - **Internal qcow2 snapshots of the personal layer**, made with
//!   `qemu-img snapshot -c/-a/-d -f qcow2` while the VM is **stopped**. A
//!   snapshot, a revert and a delete write only the personal layer: qemu-img
//!   opens the backing chain (the course template) read-only, and the template
//!   files are never named on a command line here (the tests compare the
//!   template's bytes before and after). Internal rather than external
//!   snapshots because the layer stays one file: export, import, reset and
//!   migration keep working on `overlay_path` without chains of student files,
//!   and a revert is an L1-table switch instead of a file shuffle.
//! - **Running VM → 409 `vm_running`.** Live snapshots (libvirt
//!   `virDomainSnapshotCreateXML` with a memory state, or an external
//!   disk-only snapshot + blockcommit) are a possible later extension; they
//!   would need the libvirt module and a way to revert a running guest.
//! - **Names are labels, tags are ids.** The user's name (a label of [`crate::names`],
//!   unique per VM) lives only in the `snapshots` table; the qcow2
//!   tag is the row's UUID, so no user string reaches qemu-img.
//! - **Quota** per VM: `--snapshot-quota` / `PVCE_SNAPSHOT_QUOTA`
//!   ([`crate::config::Config::snapshot_quota`], default [`DEFAULT_QUOTA`] = 5,
//!   at least 1); the backup kept by an import counts too.
//! - **Backups.** An import (see [`crate::portable`]) replaces the whole layer; the
//!   former layer is kept as one `backup` snapshot: a file
//!   `<vm-id>.backup-<snapshot-id>.qcow2` beside the layer (paths from ids
//!   only). Reverting to it copies it back into place (without the internal
//!   snapshots it contained); internal snapshots taken in the replaced layer are
//!   dropped, because their data was in that layer. At most one backup per VM.
//! - **Dirty bitmaps.** A layer can hold the bitmaps of backup checkpoints
//!   (QEMU stores them when the VM stops, see [`crate::backup::live`]);
//!   qemu-img refuses to apply a snapshot to such an image, so a revert
//!   strips them first (they only made the next backup of a running VM
//!   cheaper; it is a whole copy then).
//! - **Reset keeps nothing**: [`forget_all`] removes every row and backup file
//!   of a VM; the VM module calls it when it replaces the layer.
//!
//! - [`Snapshots`] is the service the HTTP handlers call: it checks that the
//!   user may reach the VM's layer and applies the configured quota.
//!
//! Invariants:
//! - Every change to a layer happens under the VM's lifecycle lock
//!   ([`VmManager::lock_for`]) after re-reading the VM's state from its node, so
//!   a snapshot can never race a start.
//! - A qcow2 snapshot is created before its row is inserted (a crash leaves an
//!   invisible snapshot, never a row pointing at nothing). Rows whose tag is no
//!   longer in the layer (it was replaced without [`forget_all`]) are dropped
//!   when a snapshot is created, so they never eat the quota; reverting to one
//!   answers 409 `snapshot_missing` and drops it.
//! - A layer is only ever replaced by renaming a complete, fsynced file over it.
//! - A node-local layer ([`crate::vms::layers`]) is worked on as a checked-out
//!   copy at `overlay_path` and committed back before a row records the
//!   change; backups of node-local layers stay on the server.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use crate::db::{self, Pool};
use crate::images::ImageError;
use crate::images::qemu_img::{self, SnapshotOp};
use crate::storage;
use std::sync::Arc;

use super::{Vm, VmError, VmManager, VmState};
use crate::users::User;
use crate::vms;

/// Snapshots allowed per VM unless configured otherwise.
pub const DEFAULT_QUOTA: usize = 5;

/// Snapshots as a user reaches them: the VM's access rule
/// ([`VmManager::get_for_layer`]) first, then the operation under the
/// configured quota.
#[derive(Debug)]
pub struct Snapshots {
    vms: Arc<VmManager>,
    quota: usize,
}

impl Snapshots {
    pub fn new(vms: Arc<VmManager>, quota: usize) -> Self {
        Self { vms, quota }
    }

    /// The per-VM quota (an import's backup counts against it too).
    pub fn quota(&self) -> usize {
        self.quota
    }

    pub async fn list(&self, user: &User, vm_id: Uuid) -> Result<Vec<Snapshot>, SnapshotError> {
        let vm = self.vms.get_for_layer(user, vm_id).await?;
        list(self.vms.pool(), vm.id).await
    }

    pub async fn get(&self, user: &User, vm_id: Uuid, id: Uuid) -> Result<Snapshot, SnapshotError> {
        let vm = self.vms.get_for_layer(user, vm_id).await?;
        get(self.vms.pool(), vm.id, id).await
    }

    pub async fn create(
        &self,
        user: &User,
        vm_id: Uuid,
        name: &str,
    ) -> Result<Snapshot, SnapshotError> {
        let vm = self.vms.get_for_layer_write(user, vm_id).await?;
        create(&self.vms, vm.id, name, self.quota).await
    }

    pub async fn revert(&self, user: &User, vm_id: Uuid, id: Uuid) -> Result<Vm, SnapshotError> {
        let vm = self.vms.get_for_layer_write(user, vm_id).await?;
        revert(&self.vms, vm.id, id).await
    }

    pub async fn delete(&self, user: &User, vm_id: Uuid, id: Uuid) -> Result<(), SnapshotError> {
        let vm = self.vms.get_for_layer_write(user, vm_id).await?;
        delete(&self.vms, vm.id, id).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// An internal qcow2 snapshot of the current layer.
    Internal,
    /// A former layer kept as a file (made by an import).
    Backup,
}

impl SnapshotKind {
    fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Internal => "internal",
            SnapshotKind::Backup => "backup",
        }
    }
}

/// A snapshot as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub id: Uuid,
    pub vm_id: Uuid,
    pub name: String,
    pub kind: SnapshotKind,
    /// Bytes on disk for a backup; `null` for internal snapshots (their
    /// clusters are shared with the layer).
    pub size_bytes: Option<u64>,
    pub created_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("{0}")]
    Invalid(String),
    #[error("no such snapshot")]
    NotFound,
    #[error("this VM already has {0} snapshots, the most allowed; delete one first")]
    Quota(usize),
    #[error("a snapshot named {0:?} already exists for this VM")]
    NameTaken(String),
    #[error(
        "the snapshot is no longer in the VM's layer (the layer was replaced); it has been removed"
    )]
    Missing,
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Checks a snapshot name ([`crate::names::SNAPSHOT_NAME`]).
pub fn validate_name(name: &str) -> Result<(), SnapshotError> {
    crate::names::SNAPSHOT_NAME
        .check(name)
        .map_err(|e| SnapshotError::Invalid(e.to_string()))
}

fn from_row(row: &crate::db::Row) -> Result<Snapshot, sqlx::Error> {
    let uuid = |s: String| Uuid::parse_str(&s).map_err(|e| sqlx::Error::Decode(Box::new(e)));
    Ok(Snapshot {
        id: uuid(row.try_get("id")?)?,
        vm_id: uuid(row.try_get("vm_id")?)?,
        name: row.try_get("name")?,
        kind: if row.try_get::<String, _>("kind")? == "backup" {
            SnapshotKind::Backup
        } else {
            SnapshotKind::Internal
        },
        size_bytes: row
            .try_get::<Option<i64>, _>("size_bytes")?
            .and_then(|n| u64::try_from(n).ok()),
        created_at: row.try_get("created_at")?,
    })
}

const COLUMNS: &str = "id, vm_id, name, kind, size_bytes, created_at";

/// The snapshots of a VM, oldest first.
pub async fn list(pool: &Pool, vm_id: Uuid) -> Result<Vec<Snapshot>, SnapshotError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM snapshots WHERE vm_id = $1 ORDER BY created_at, rowid"
    ))
    .bind(vm_id.to_string())
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// One snapshot of a VM.
pub async fn get(pool: &Pool, vm_id: Uuid, id: Uuid) -> Result<Snapshot, SnapshotError> {
    let sql = format!("SELECT {COLUMNS} FROM snapshots WHERE vm_id = $1 AND id = $2");
    let binds = [vm_id.to_string(), id.to_string()];
    db::fetch_row(pool, &sql, &[&binds[0], &binds[1]], from_row)
        .await?
        .ok_or(SnapshotError::NotFound)
}

async fn delete_row(pool: &Pool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM snapshots WHERE id = $1")
        .bind(id.to_string())
        .execute(pool)
        .await?;
    Ok(())
}

/// Where the backup snapshot `id` of `vm` keeps its file (beside the layer).
pub fn backup_path(vm: &Vm, id: Uuid) -> PathBuf {
    backup_path_beside(&vm.overlay_path, vm.id, id)
}

fn backup_path_beside(
    layer: &Path,
    vm_id: impl std::fmt::Display,
    id: impl std::fmt::Display,
) -> PathBuf {
    layer.with_file_name(format!("{vm_id}.backup-{id}.qcow2"))
}

/// The files of every recorded backup snapshot: they live beside their VM's
/// layer under `overlays/`, so whatever judges the files there (the
/// start-up sweep, `pvce fsck`) must know them as recorded.
pub(crate) async fn backup_files(pool: &Pool) -> Result<Vec<PathBuf>, sqlx::Error> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT v.overlay_path, v.id, s.id FROM snapshots s JOIN vms v ON v.id = s.vm_id WHERE s.kind = 'backup'",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|(layer, vm, id)| backup_path_beside(Path::new(layer), vm, id))
        .collect())
}

/// 409 `vm_running` unless the VM is stopped (or failed to start).
pub(crate) fn ensure_stopped(vm: &Vm, what: &str) -> Result<(), VmError> {
    match vm.state {
        VmState::Stopped | VmState::Error => Ok(()),
        VmState::Starting | VmState::Running | VmState::Stopping | VmState::NodeDown => {
            Err(VmError::Running(format!(
                "stop the VM first: {what} works on a stopped VM only"
            )))
        }
    }
}

/// How long [`settle`] waits for QEMU to let go of a stopped VM's layer.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Waits until nothing holds a stopped VM's layer open for writing. libvirt
/// reports a guest shut off a moment before its QEMU process has released
/// the image locks, so a tool started right then fails with "Failed to get
/// … lock". Probes with `qemu-img info` (which opens no backing file) and
/// answers 409 `layer_busy` if the layer stays locked. Call under the VM lock.
pub(crate) async fn settle(layer: &Path) -> Result<(), VmError> {
    let start = std::time::Instant::now();
    loop {
        match qemu_img::snapshot_tags(layer).await {
            Err(ImageError::QemuImg { detail, .. }) if detail.contains("lock") => {
                if start.elapsed() >= SETTLE_TIMEOUT {
                    return Err(VmError::LayerBusy(
                        "the VM's disk is still in use; try again in a moment".into(),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            // Other failures show up in the operation that follows.
            _ => return Ok(()),
        }
    }
}

/// Re-reads a VM (row + node) while the caller holds its lifecycle lock.
pub(crate) async fn reload(vms: &VmManager, vm_id: Uuid) -> Result<Vm, VmError> {
    let vm = vms::load(vms.pool(), vm_id).await?;
    vms.sync_with_node(vm).await
}

/// Takes a snapshot of a stopped VM's layer.
pub async fn create(
    vms: &VmManager,
    vm_id: Uuid,
    name: &str,
    quota: usize,
) -> Result<Snapshot, SnapshotError> {
    validate_name(name)?;
    let lock = vms.lock_for(vm_id);
    let _guard = lock.lock().await;
    let vm = reload(vms, vm_id).await?;
    ensure_stopped(&vm, "taking a snapshot")?;
    let mut work = vms.checkout_layer(&vm).await?;
    settle(&vm.overlay_path).await?;
    let pool = vms.pool();
    prune_missing(pool, &vm).await?;
    let existing = list(pool, vm.id).await?;
    if existing.len() >= quota {
        return Err(SnapshotError::Quota(quota));
    }
    if existing.iter().any(|s| s.name == name) {
        return Err(SnapshotError::NameTaken(name.to_owned()));
    }
    let snap = Snapshot {
        id: Uuid::new_v4(),
        vm_id: vm.id,
        name: name.to_owned(),
        kind: SnapshotKind::Internal,
        size_bytes: None,
        created_at: db::now(),
    };
    let tag = snap.id.to_string();
    qemu_img::snapshot(&vm.overlay_path, SnapshotOp::Create, &tag).await?;
    work.commit().await.map_err(VmError::from)?;
    if let Err(e) = insert(pool, &snap).await {
        // No row, no snapshot.
        let undo = async {
            qemu_img::snapshot(&vm.overlay_path, SnapshotOp::Delete, &tag).await?;
            work.commit().await.map_err(VmError::from)?;
            Ok::<(), SnapshotError>(())
        };
        if let Err(undo) = undo.await {
            tracing::warn!(vm = %vm.id, error = %undo, "could not remove an unrecorded snapshot");
        }
        return Err(match db::unique_violation(&e) {
            Some(_) => SnapshotError::NameTaken(name.to_owned()),
            None => e.into(),
        });
    }
    Ok(snap)
}

/// Drops the rows of internal snapshots that are no longer in the layer (it
/// was replaced by something that did not call [`forget_all`]), so they do not
/// count against the quota. The VM must be stopped and its lock held.
async fn prune_missing(pool: &Pool, vm: &Vm) -> Result<(), SnapshotError> {
    let rows = list(pool, vm.id).await?;
    if !rows.iter().any(|s| s.kind == SnapshotKind::Internal) {
        return Ok(());
    }
    let tags = qemu_img::snapshot_tags(&vm.overlay_path).await?;
    for s in rows {
        if s.kind == SnapshotKind::Internal && !tags.contains(&s.id.to_string()) {
            tracing::info!(vm = %vm.id, snapshot = %s.id, "dropping a snapshot whose layer was replaced");
            delete_row(pool, s.id).await?;
        }
    }
    Ok(())
}

async fn insert<'e, E>(exec: E, s: &Snapshot) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO snapshots (id, vm_id, name, kind, size_bytes, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(s.id.to_string())
    .bind(s.vm_id.to_string())
    .bind(&s.name)
    .bind(s.kind.as_str())
    .bind(s.size_bytes.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
    .bind(&s.created_at)
    .execute(exec)
    .await?;
    Ok(())
}

/// Returns a stopped VM's layer to a snapshot. The snapshot is kept.
pub async fn revert(vms: &VmManager, vm_id: Uuid, snapshot_id: Uuid) -> Result<Vm, SnapshotError> {
    let lock = vms.lock_for(vm_id);
    let _guard = lock.lock().await;
    let vm = reload(vms, vm_id).await?;
    ensure_stopped(&vm, "reverting to a snapshot")?;
    let mut work = vms.checkout_layer(&vm).await?;
    settle(&vm.overlay_path).await?;
    let pool = vms.pool();
    let snap = get(pool, vm.id, snapshot_id).await?;
    match snap.kind {
        SnapshotKind::Internal => {
            let tag = snap.id.to_string();
            if !qemu_img::snapshot_tags(&vm.overlay_path)
                .await?
                .contains(&tag)
            {
                delete_row(pool, snap.id).await?;
                return Err(SnapshotError::Missing);
            }
            // qemu-img refuses to apply a snapshot to an image with dirty
            // bitmaps; a stopped layer's are leftovers of backup checkpoints.
            qemu_img::remove_bitmaps(&vm.overlay_path).await?;
            qemu_img::snapshot(&vm.overlay_path, SnapshotOp::Apply, &tag).await?;
            crate::crashpoint::hit("snapshot_revert.internal_applied");
            work.commit().await.map_err(VmError::from)?;
        }
        SnapshotKind::Backup => {
            let backup = backup_path(&vm, snap.id);
            if !tokio::fs::try_exists(&backup).await? {
                delete_row(pool, snap.id).await?;
                return Err(SnapshotError::Missing);
            }
            let tmp = storage::temp_beside(&vm.overlay_path);
            let prepared = async {
                let (from, to) = (backup.clone(), tmp.clone());
                tokio::task::spawn_blocking(move || std::fs::copy(from, to))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))??;
                // The copy starts without snapshots: those rows were dropped
                // when the layer was replaced.
                for tag in qemu_img::snapshot_tags(&tmp).await? {
                    qemu_img::snapshot(&tmp, SnapshotOp::Delete, &tag).await?;
                }
                // Nor the bitmaps of backup checkpoints its VM ran with.
                qemu_img::remove_bitmaps(&tmp).await?;
                Ok::<(), SnapshotError>(())
            }
            .await;
            if let Err(e) = prepared {
                let _ = storage::remove_file_if_exists(&tmp);
                return Err(e);
            }
            crate::crashpoint::hit("snapshot_revert.copy_written");
            storage::install_file(&tmp, &vm.overlay_path).await?;
            crate::crashpoint::hit("snapshot_revert.layer_installed");
            work.commit().await.map_err(VmError::from)?;
            sqlx::query("DELETE FROM snapshots WHERE vm_id = $1 AND kind = 'internal'")
                .bind(vm.id.to_string())
                .execute(pool)
                .await?;
        }
    }
    Ok(vms::load(pool, vm.id).await?)
}

/// Deletes a snapshot. Internal snapshots need a stopped VM (the layer is
/// rewritten); a backup is only a file and can go at any time.
pub async fn delete(vms: &VmManager, vm_id: Uuid, snapshot_id: Uuid) -> Result<(), SnapshotError> {
    let lock = vms.lock_for(vm_id);
    let _guard = lock.lock().await;
    let vm = reload(vms, vm_id).await?;
    let pool = vms.pool();
    let snap = get(pool, vm.id, snapshot_id).await?;
    match snap.kind {
        SnapshotKind::Internal => {
            ensure_stopped(&vm, "deleting a snapshot")?;
            let mut work = vms.checkout_layer(&vm).await?;
            settle(&vm.overlay_path).await?;
            let tag = snap.id.to_string();
            if qemu_img::snapshot_tags(&vm.overlay_path)
                .await?
                .contains(&tag)
            {
                qemu_img::snapshot(&vm.overlay_path, SnapshotOp::Delete, &tag).await?;
                work.commit().await.map_err(VmError::from)?;
            }
            delete_row(pool, snap.id).await?;
        }
        SnapshotKind::Backup => {
            delete_row(pool, snap.id).await?;
            storage::remove_file_if_exists(&backup_path(&vm, snap.id))?;
        }
    }
    Ok(())
}

/// Forgets every snapshot of a VM: rows and backup files. Call it whenever the
/// layer is discarded (reset, deletion of the VM). Internal snapshots vanish
/// with the layer they are in.
pub async fn forget_all(pool: &Pool, vm: &Vm) -> Result<(), sqlx::Error> {
    let backups: Vec<String> =
        sqlx::query_scalar("SELECT id FROM snapshots WHERE vm_id = $1 AND kind = 'backup'")
            .bind(vm.id.to_string())
            .fetch_all(pool)
            .await?;
    sqlx::query("DELETE FROM snapshots WHERE vm_id = $1")
        .bind(vm.id.to_string())
        .execute(pool)
        .await?;
    for id in backups.iter().filter_map(|s| Uuid::parse_str(s).ok()) {
        if let Err(e) = storage::remove_file_if_exists(&backup_path(vm, id)) {
            tracing::warn!(vm = %vm.id, error = %e, "could not remove a backup layer");
        }
    }
    Ok(())
}

/// Records the former layer of `vm` — already hard-linked to
/// [`backup_path`]`(vm, backup.id)` — as the VM's one backup snapshot, after
/// an import replaced the layer: internal snapshot rows (their data was in the
/// former layer) and an older backup go. Returns the ids of backups whose
/// files the caller should now remove. Call under the VM's lifecycle lock.
pub(crate) async fn record_import_backup(
    pool: &Pool,
    backup: &Snapshot,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut tx = db::begin(pool).await?;
    let old: Vec<String> =
        sqlx::query_scalar("SELECT id FROM snapshots WHERE vm_id = $1 AND kind = 'backup'")
            .bind(backup.vm_id.to_string())
            .fetch_all(&mut *tx)
            .await?;
    sqlx::query("DELETE FROM snapshots WHERE vm_id = $1")
        .bind(backup.vm_id.to_string())
        .execute(&mut *tx)
        .await?;
    insert(&mut *tx, backup).await?;
    tx.commit().await?;
    Ok(old.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("before lab 2").is_ok());
        assert!(validate_name("实验一之前").is_ok());
        assert!(validate_name(&"x".repeat(64)).is_ok());
        assert!(validate_name(&"实".repeat(64)).is_ok());
        for bad in ["", " a", "a ", "a\nb", "tab\there", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn settle_waits_for_the_image_lock() {
        let d = tempfile::tempdir().expect("tempdir");
        let img = d.path().join("l.qcow2");
        let ok = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&img)
            .arg("1M")
            .status()
            .expect("qemu-img")
            .success();
        assert!(ok);
        // A writer holding the layer (as QEMU does while a VM shuts down),
        // until told to quit on its stdin: however slow the machine, the
        // lock is there until the test lets it go.
        let mut holder = tokio::process::Command::new("qemu-io")
            .args(["-f", "qcow2"])
            .arg(&img)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("qemu-io");
        // qemu-io answers its first command only once it has opened (and
        // locked) the layer. Not found out by polling with qemu-img: a
        // qemu-img holding its shared lock just as qemu-io opens the layer
        // makes qemu-io fail ("Failed to get \"write\" lock") and exit.
        let mut stdin = holder.stdin.take().expect("stdin");
        {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
            stdin.write_all(b"length\n").await.expect("length");
            let mut answer = String::new();
            let mut out = tokio::io::BufReader::new(holder.stdout.take().expect("stdout"));
            tokio::time::timeout(
                std::time::Duration::from_secs(60),
                out.read_line(&mut answer),
            )
            .await
            .expect("qemu-io answers within 60 s")
            .expect("qemu-io's answer");
            assert!(!answer.is_empty(), "qemu-io could not open the layer");
        }
        assert!(
            qemu_img::snapshot_tags(&img).await.is_err(),
            "the layer is locked while qemu-io has it open"
        );
        let settling = tokio::spawn({
            let img = img.clone();
            async move { settle(&img).await }
        });
        // Still locked: settle must still be waiting.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !settling.is_finished(),
            "settle returned while the layer was locked"
        );
        {
            use tokio::io::AsyncWriteExt;
            stdin.write_all(b"quit\n").await.expect("quit");
        }
        settling.await.expect("task").expect("settles");
        assert!(qemu_img::snapshot_tags(&img).await.is_ok());
        let _ = holder.wait().await;
    }
}
