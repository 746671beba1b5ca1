//! Backups of the installation into a restic repository: students'
//! personal layers and the control plane (database, template store,
//! settings), nightly, with retention and the repository's own check.
//!
//! **Why restic (and not borg).** Both are in Debian, deduplicate and
//! encrypt. restic was chosen because its repository may be a plain
//! directory, SFTP, S3-compatible storage or a REST server with no tool
//! installed on the far side (borg needs borg on an SSH host); it backs up
//! a file by path with `--time`, so a layer's snapshot carries the run's
//! own instant; it speaks JSON (`backup --json`, `snapshots --json`), which
//! this module parses instead of scraping text; `restic dump` reads one file
//! of a snapshot back without a mount; and `forget --prune` with
//! `--keep-daily/--keep-weekly/--keep-monthly` plus `check` give retention
//! and verification by the tool itself. All restic calls are in [`restic`].
//!
//! What a run does ([`Backups::run`], one at a time):
//! 1. opens (or creates) the repository — `--backup-repo`, any restic
//!    repository string; the password is a random key in
//!    `<data dir>/backup/restic-password` (mode 0600), made once, never logged
//!    or passed on a command line;
//! 2. every personal layer whose file changed (size, mtime) since its last
//!    good backup: only the layer, never its template chain. A stopped VM's
//!    layer is read under the VM's lifecycle lock, so it cannot start
//!    mid-read. A **running** VM is backed up while it runs
//!    ([`Backups::live_layer`]):
//!    - under its lock (no pvce stop or migration meanwhile), libvirt's
//!      backup API copies its disk as it was at one instant into
//!      `<data dir>/backup/scratch/` (push mode, [`crate::libvirt::backup`];
//!      crash-consistent, the guest never pauses; a guest that powers
//!      itself off is held paused until the copy is done). The job also
//!      creates a checkpoint (a QEMU dirty bitmap) at that instant;
//!    - **only what changed**: when this run of the domain has the previous
//!      copy's checkpoint and pvce kept that copy's layer (the *base*,
//!      [`live`]), QEMU reads and writes only the clusters written since,
//!      which are committed into the base — the second and later copies
//!      of a running VM cost what the student wrote, not the disk's size.
//!      Otherwise (the first copy of a run: a transient domain's
//!      checkpoints end with it) the whole disk is copied and made a layer
//!      again: an empty overlay on the copy, rebased in `qemu-img`'s safe
//!      mode onto the VM's template, holds exactly the clusters where the
//!      guest's disk differs from the template chain (`qemu-img convert -B`
//!      would not do: it copies every allocated cluster of a standalone
//!      image, template data included); that layer becomes the base;
//!    - the base is backed up *as* the layer (`restic backup --stdin
//!      --stdin-filename <layer path>`): the snapshot has the layer's path
//!      and tags, so retention, restore, single files and `pvce restore
//!      --from` treat every kind of point alike; each point records how
//!      the disk was read ([`PointSource`]) and how many bytes QEMU read.
//!      The live layer file is only ever read by QEMU; scratch files go
//!      with their work directory, and a killed run's are removed by the
//!      next;
//!    - old checkpoints are dropped as soon as a newer copy exists, and
//!      those an earlier run of the domain left in the layer (QEMU stores a
//!      checkpoint's bitmap in the image when the domain stops) at its next
//!      run's first copy; a revert strips any left in a stopped layer, which
//!      qemu-img requires ([`crate::images::qemu_img::remove_bitmaps`]). A
//!      stopped VM's base is deleted (its next copy is a whole one anyway);
//!    - a copy that fails or outlives [`LIVE_COPY_DEADLINE`] is aborted and
//!      counts as the item's failure like any other.
//!
//!    A domain whose hypervisor has no backup API (Xen) is skipped and said
//!    so (`skipped`), as are VMs starting or stopping.
//!    A **node-local** layer (its file on a node's own disk,
//!    [`crate::vms::layers`]) is backed up while its VM is stopped: read
//!    from the node into the server's working copy (the layer checkout
//!    every offline layer operation uses, verified by SHA-256) and backed
//!    up at its `overlay_path`, so restore, single files and retention treat
//!    it like a shared one; whether it changed is known without reading it
//!    ([`node_local_signature`]). While it runs it is copied like a shared
//!    one (whole or only the changes, with the base on the server), except
//!    that the node writes the copy into a scratch volume of its own layer
//!    pool, which is downloaded through libvirt and deleted
//!    ([`crate::vms::layers::Layers::copy_running_disk`]; a killed run's
//!    scratch volumes go at the next run's start); such a layer counts as
//!    changed at every run while it runs, and once more after it stops;
//! 3. the control plane: `VACUUM INTO` a consistent copy of the SQLite
//!    database (after the layers, so it records their points), with the
//!    template store (content-addressed by SHA-256, so unchanged templates
//!    cost nothing after the first run) and the settings kept in the data
//!    dir (the device-cookie key), as one snapshot;
//! 4. `forget --prune` with the retention, then the points whose snapshot
//!    restic dropped are forgotten here too;
//! 5. weekly ([`schedule::check_due`]), `restic check`.
//!
//! A failed item is tried again within the run ([`ITEM_TRIES`]); a run with
//! failures is tried again later ([`schedule::due`]). Failures count per
//! subject in `backup_items`; the age of the last good backup, per layer
//! and overall ([`ages`]), feeds `/metrics`, the alert rule `backup_age`
//! and the daily inspection's backup item.
//!
//! A whole installation is rebuilt from the repository onto an empty data
//! dir by `pvce restore --from` ([`install`]).
//!
//! Invariants: a backup point is recorded only after restic reported its
//! snapshot; a run that died (server killed) stays unfinished and counts as
//! failed; restic's stale locks of a dead run are removed by the next run
//! (`restic unlock` removes only stale ones).

pub mod install;
pub mod live;
pub mod restic;
pub mod schedule;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use crate::db::{self, Pool};
use crate::storage::Storage;
use crate::users::User;
use crate::vms::layers::LayerStorage;
use crate::vms::{VmError, VmManager, VmState};
use restic::{Keep, Restic, ResticError};
use schedule::LastRun;

/// Tries of one item within a run.
pub const ITEM_TRIES: u32 = 3;
/// Longest a running VM's disk copy may take before it is aborted (the
/// VM's lock is held meanwhile).
const LIVE_COPY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2 * 3600);
/// The subject of the control plane's item.
pub const CONTROL: &str = "control";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no backup repository is configured (--backup-repo)")]
    NotConfigured,
    #[error("a backup is running; try again when it has finished")]
    Busy,
    #[error("no such backup point of this VM")]
    PointNotFound,
    #[error("{0}")]
    BadPath(String),
    #[error(transparent)]
    Guest(#[from] crate::collect::GuestReadError),
    #[error(transparent)]
    Image(#[from] crate::images::ImageError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Restic(#[from] ResticError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// `pg_dump` or `pg_restore` of a PostgreSQL installation's database failed (its
    /// message; never the URL, which may hold a password).
    #[error("{0}")]
    PgDump(String),
}

/// How backups are set up (from the settings).
#[derive(Debug, Clone)]
pub struct Settings {
    /// A restic repository: a path, `sftp:…`, `s3:…`, `rest:…`.
    pub repository: String,
    pub keep: Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Scheduled,
    Manual,
}

/// One run, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: Uuid,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub trigger: String,
    pub requested_by: Option<String>,
    pub ok: bool,
    pub backed_up: u32,
    pub unchanged: u32,
    pub skipped: u32,
    pub failed: u32,
    pub bytes_added: u64,
    pub checked: bool,
    pub check_ok: Option<bool>,
    pub error: Option<String>,
}

/// A backup point of a VM's layer (`GET /api/vms/{id}/backups`).
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub id: Uuid,
    pub at: String,
    /// Bytes this point added to the repository.
    pub bytes: u64,
    /// Size of the layer it holds.
    pub layer_bytes: u64,
    /// `full` for a layer's first point, `incremental` after (restic
    /// stores only the chunks that changed).
    pub kind: &'static str,
    /// How the disk was read (`null` for points older than this field).
    pub source: Option<PointSource>,
    /// Bytes of the disk QEMU read for a running VM's copy (`null` when the
    /// layer file was read).
    pub disk_read_bytes: Option<u64>,
}

/// A backup point to record: restic's snapshot of `path` (`kind` `layer`
/// of `vm`, or `control`), made by run `run` at `at`.
struct NewPoint<'a> {
    vm: Option<Uuid>,
    kind: &'static str,
    summary: &'a restic::Summary,
    path: &'a Path,
    at: i64,
    run: Uuid,
    /// A layer's: how the disk was read, and what QEMU read for it.
    source: Option<PointSource>,
    disk_read_bytes: Option<u64>,
}

/// How a layer's point read the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PointSource {
    /// The VM was stopped: its layer file.
    LayerFile,
    /// The VM ran: a copy of its whole disk (the first copy of a run).
    RunningWhole,
    /// The VM ran: only the clusters written since the previous copy (a
    /// checkpoint of the same run, see [`live`]).
    RunningChanges,
}

impl PointSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LayerFile => "layer_file",
            Self::RunningWhole => "running_whole",
            Self::RunningChanges => "running_changes",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::LayerFile, Self::RunningWhole, Self::RunningChanges]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A backup point's guest path: a directory listing, or one file.
#[derive(Debug)]
pub enum GuestFiles {
    Dir {
        path: String,
        entries: Vec<crate::collect::GuestEntry>,
    },
    File {
        file: tokio::fs::File,
        size: u64,
        /// The file's name (the last component of the validated path).
        name: String,
    },
}

/// A private work directory, removed with what is in it when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(path: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir(&path)?;
        Ok(Self(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub vm: crate::vms::Vm,
    /// The layer that was replaced, kept as the VM's backup snapshot.
    pub kept: crate::vms::snapshots::Snapshot,
}

/// One subject's state on the status page.
#[derive(Debug, Clone, Serialize)]
pub struct ItemStatus {
    /// A VM id, or `control`.
    pub subject: String,
    pub vm_name: Option<String>,
    pub owner: Option<String>,
    pub course: Option<String>,
    pub last_good_at: Option<String>,
    /// Seconds since the last good backup.
    pub age_secs: Option<i64>,
    pub failures: u32,
    pub last_error: Option<String>,
}

/// `GET /api/backups`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub configured: bool,
    /// The repository, with any password or key in it masked.
    pub repository: Option<String>,
    /// Time of day of the nightly run (UTC), or `off`.
    pub schedule: String,
    pub keep: Option<KeepView>,
    pub running: bool,
    pub last_run: Option<Run>,
    /// The last run in which every item succeeded.
    pub last_good_at: Option<String>,
    pub age_secs: Option<i64>,
    pub last_check_at: Option<String>,
    pub last_check_ok: Option<bool>,
    pub items: Vec<ItemStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeepView {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

/// Ages of the last good backups at an instant (see [`ages`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ages {
    /// Whether any run was ever attempted.
    pub attempted: bool,
    /// Seconds since the last fully good run; with none yet, since the
    /// first attempt (so a backup that never worked still ages).
    pub overall_secs: Option<i64>,
    /// Per subject (VM id or `control`): seconds since its last good backup.
    pub items: Vec<(String, Option<i64>)>,
    /// Failed items of the last finished run.
    pub last_failed: u32,
}

/// The ages of the last good backups at `now`, read from the recorded runs
/// and items (used by `/metrics`, the alerts and the inspection).
pub async fn ages(pool: &Pool, now: i64) -> Result<Ages, sqlx::Error> {
    let first: Option<i64> = sqlx::query_scalar("SELECT MIN(started_at) FROM backup_runs")
        .fetch_one(pool)
        .await?;
    let Some(first) = first else {
        return Ok(Ages::default());
    };
    let good: Option<i64> =
        sqlx::query_scalar("SELECT MAX(started_at) FROM backup_runs WHERE ok = 1")
            .fetch_one(pool)
            .await?;
    let last_failed: Option<i64> = sqlx::query_scalar(
        "SELECT failed FROM backup_runs WHERE finished_at IS NOT NULL ORDER BY started_at DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let rows: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT subject, last_good_at FROM backup_items ORDER BY subject")
            .fetch_all(pool)
            .await?;
    Ok(Ages {
        attempted: true,
        overall_secs: Some((now - good.unwrap_or(first)).max(0)),
        items: rows
            .into_iter()
            .map(|(s, at)| (s, at.map(|a| (now - a).max(0))))
            .collect(),
        last_failed: u32::try_from(last_failed.unwrap_or(0)).unwrap_or(u32::MAX),
    })
}

/// The backup service.
#[derive(Debug)]
pub struct Backups {
    pool: Pool,
    storage: Storage,
    vms: Arc<VmManager>,
    settings: Option<Settings>,
    schedule: crate::daily::TimeOfDay,
    /// One run at a time.
    running: Arc<tokio::sync::Mutex<()>>,
}

impl Backups {
    pub fn new(
        pool: Pool,
        storage: Storage,
        vms: Arc<VmManager>,
        settings: Option<Settings>,
        schedule: crate::daily::TimeOfDay,
    ) -> Self {
        Self {
            pool,
            storage,
            vms,
            settings,
            schedule,
            running: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub fn configured(&self) -> bool {
        self.settings.is_some()
    }

    fn dir(&self) -> PathBuf {
        self.storage.root().join("backup")
    }

    /// The repository handle, making the password file on first use.
    fn restic(&self) -> Result<Restic, BackupError> {
        let s = self.settings.as_ref().ok_or(BackupError::NotConfigured)?;
        let dir = self.dir();
        std::fs::create_dir_all(&dir)?;
        let password = dir.join("restic-password");
        ensure_password(&password)?;
        Ok(Restic::new(
            s.repository.clone(),
            password,
            dir.join("cache"),
        ))
    }

    async fn last_run(&self) -> Result<Option<LastRun>, sqlx::Error> {
        let rows: Vec<(i64, db::Flag)> = sqlx::query_as(
            "SELECT started_at, ok FROM backup_runs ORDER BY started_at DESC, rowid DESC LIMIT $1",
        )
        .bind(i64::from(schedule::MAX_RETRIES) + 2)
        .fetch_all(&self.pool)
        .await?;
        let Some(&(started_at, db::Flag(ok))) = rows.first() else {
            return Ok(None);
        };
        let failures = rows.iter().take_while(|(_, ok)| !ok.0).count();
        Ok(Some(LastRun {
            started_at,
            ok,
            failures_in_a_row: u32::try_from(failures).unwrap_or(u32::MAX),
        }))
    }

    /// The scheduled loop's pass: runs if due at `now` (`since`: when the
    /// loop started).
    pub async fn run_if_due(&self, now: i64, since: i64) -> Result<Option<Run>, BackupError> {
        let Some(minute) = self.schedule.minute_of_day() else {
            return Ok(None);
        };
        if self.settings.is_none() {
            return Ok(None);
        }
        let last = self.last_run().await?;
        if !schedule::due(now, last, since, minute) {
            return Ok(None);
        }
        Ok(Some(self.run(now, Trigger::Scheduled, None).await?))
    }

    /// Starts a run now in the background (`POST /api/backups`); refused
    /// while one runs.
    pub async fn start_now(self: &Arc<Self>, by: &str) -> Result<(), BackupError> {
        if self.settings.is_none() {
            return Err(BackupError::NotConfigured);
        }
        let guard = self
            .running
            .clone()
            .try_lock_owned()
            .map_err(|_| BackupError::Busy)?;
        let me = self.clone();
        let by = by.to_owned();
        tokio::spawn(async move {
            let _one = guard;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            if let Err(e) = me.run_locked(now, Trigger::Manual, Some(&by)).await {
                tracing::warn!(error = %e, "backup run failed");
            }
        });
        Ok(())
    }

    /// One whole run at `now` (see the module doc). Restic failures are
    /// recorded in the run, not returned; errors are the database's.
    pub async fn run(
        &self,
        now: i64,
        trigger: Trigger,
        by: Option<&str>,
    ) -> Result<Run, BackupError> {
        let _one = self.running.lock().await;
        self.run_locked(now, trigger, by).await
    }

    /// [`Self::run`] while holding the one-run lock.
    async fn run_locked(
        &self,
        now: i64,
        trigger: Trigger,
        by: Option<&str>,
    ) -> Result<Run, BackupError> {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO backup_runs (id, started_at, trigger, requested_by) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(now)
        .bind(match trigger {
            Trigger::Scheduled => "scheduled",
            Trigger::Manual => "manual",
        })
        .bind(by)
        .execute(&self.pool)
        .await?;
        let clock = std::time::Instant::now();
        let mut tally = Tally::default();
        let mut error = None;
        match self.prepare().await {
            Ok(r) => {
                // Layers first: the database copy then holds their points.
                self.layers(&r, id, now, &mut tally).await?;
                self.control_plane(&r, id, now, &mut tally).await?;
                if let Err(e) = self.retention(&r).await {
                    tracing::warn!(error = %e, "backup retention failed");
                    error = Some(format!("retention: {e}"));
                    tally.failed += 1;
                }
                let last_check: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(started_at) FROM backup_runs WHERE checked = 1")
                        .fetch_one(&self.pool)
                        .await?;
                if schedule::check_due(now, last_check) {
                    tally.checked = true;
                    match r.check().await {
                        Ok(()) => tally.check_ok = Some(true),
                        Err(e) => {
                            tracing::warn!(error = %e, "restic check failed");
                            tally.check_ok = Some(false);
                            tally.failed += 1;
                            error = Some(format!("check: {e}"));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "backup repository unusable");
                tally.failed += 1;
                error = Some(e.to_string());
            }
        }
        let finished = now + i64::try_from(clock.elapsed().as_secs()).unwrap_or(0);
        let ok = tally.failed == 0;
        sqlx::query(
            "UPDATE backup_runs SET finished_at = $1, ok = $2, backed_up = $3, unchanged = $4,
             skipped = $5, failed = $6, bytes_added = $7, checked = $8, check_ok = $9, error = $10
             WHERE id = $11",
        )
        .bind(finished)
        .bind(db::Flag(ok))
        .bind(i64::from(tally.backed_up))
        .bind(i64::from(tally.unchanged))
        .bind(i64::from(tally.skipped))
        .bind(i64::from(tally.failed))
        .bind(i64::try_from(tally.bytes_added).unwrap_or(i64::MAX))
        .bind(db::Flag(tally.checked))
        .bind(tally.check_ok.map(db::Flag))
        .bind(&error)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        tracing::info!(
            run = %id, ok, backed_up = tally.backed_up, unchanged = tally.unchanged,
            skipped = tally.skipped, failed = tally.failed, "backup run finished"
        );
        Ok(get_run(&self.pool, id).await?.unwrap_or_else(|| Run {
            id,
            started_at: text_time(now),
            finished_at: None,
            trigger: String::new(),
            requested_by: None,
            ok,
            backed_up: tally.backed_up,
            unchanged: tally.unchanged,
            skipped: tally.skipped,
            failed: tally.failed,
            bytes_added: tally.bytes_added,
            checked: tally.checked,
            check_ok: tally.check_ok,
            error,
        }))
    }

    /// The repository, created if needed, with stale locks of a dead run gone.
    async fn prepare(&self) -> Result<Restic, BackupError> {
        let r = self.restic()?;
        r.init_if_needed().await?;
        r.unlock().await?;
        // Disk copies a killed run left behind (one run at a time, so none
        // is in use now), here and on the nodes.
        self.vms.sweep_disk_copies().await;
        let scratch = self.dir().join("scratch");
        if scratch.exists() {
            for e in std::fs::read_dir(&scratch)? {
                let e = e?;
                tracing::warn!(path = %e.path().display(), "removing a dead run's scratch copy");
                std::fs::remove_dir_all(e.path())?;
            }
        }
        Ok(r)
    }

    async fn control_plane(
        &self,
        r: &Restic,
        run: Uuid,
        now: i64,
        tally: &mut Tally,
    ) -> Result<(), BackupError> {
        let dir = self.dir().join("control");
        let mut last_error = None;
        for _ in 0..ITEM_TRIES {
            match self.control_once(r, &dir, now).await {
                Ok(s) => {
                    self.record_point(NewPoint {
                        vm: None,
                        kind: "control",
                        summary: &s,
                        path: &dir,
                        at: now,
                        run,
                        source: None,
                        disk_read_bytes: None,
                    })
                    .await?;
                    self.item_ok(CONTROL, None, now).await?;
                    tally.backed_up += 1;
                    tally.bytes_added += s.data_added;
                    return Ok(());
                }
                Err(BackupError::Db(e)) if !is_busy(&e) => return Err(BackupError::Db(e)),
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        let e = last_error.unwrap_or_default();
        tracing::warn!(error = %e, "control-plane backup failed");
        self.item_attempt(CONTROL, now, &e, true).await?;
        tally.failed += 1;
        Ok(())
    }

    async fn control_once(
        &self,
        r: &Restic,
        dir: &Path,
        now: i64,
    ) -> Result<restic::Summary, BackupError> {
        std::fs::create_dir_all(dir)?;
        match db::backend(&self.pool) {
            db::Backend::Sqlite => {
                let db = dir.join("pvce.db");
                crate::storage::remove_file_if_exists(&db)?;
                // A consistent copy while the server writes (SQLite's own).
                sqlx::query("VACUUM INTO ?")
                    .bind(db.to_string_lossy().into_owned())
                    .execute(&self.pool)
                    .await?;
            }
            db::Backend::Postgres => self.pg_dump(&dir.join("pvce.pgdump")).await?,
        }
        let key = self.storage.root().join("device-cookie.key");
        if key.exists() {
            std::fs::copy(&key, dir.join("device-cookie.key"))?;
        }
        let templates = self.storage.templates_dir();
        let mut paths: Vec<&Path> = vec![dir];
        if templates.exists() {
            paths.push(&templates);
        }
        let tags = vec!["kind=control".to_owned()];
        Ok(r.backup(&paths, &tags, now).await?)
    }

    /// A consistent dump of a PostgreSQL installation's database (pg_dump
    /// reads one snapshot while the servers write), in pg_dump's custom
    /// format for `pg_restore` ([`install::restore`]).
    async fn pg_dump(&self, to: &Path) -> Result<(), BackupError> {
        let temp = crate::storage::temp_beside(to);
        let url = self.pool.connect_options().database_url.clone();
        let mut cmd = pg_tool("pg_dump", &url);
        cmd.args(["--format=custom", "--no-owner", "--file"])
            .arg(&temp);
        if let Err(e) = run_pg_tool(cmd).await {
            crate::storage::remove_file_if_exists(&temp)?;
            return Err(e);
        }
        std::fs::rename(&temp, to)?;
        Ok(())
    }

    async fn layers(
        &self,
        r: &Restic,
        run: Uuid,
        now: i64,
        tally: &mut Tally,
    ) -> Result<(), BackupError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM vms WHERE course_id IS NOT NULL ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        let ids: Vec<Uuid> = ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect();
        // Kept bases of VMs deleted since.
        self.live_bases().sweep(
            &ids.iter()
                .copied()
                .collect::<std::collections::HashSet<_>>(),
        );
        for id in ids {
            match self.layer(r, id, run, now).await {
                Ok(Outcome::BackedUp(bytes)) => {
                    tally.backed_up += 1;
                    tally.bytes_added += bytes;
                }
                Ok(Outcome::Unchanged) => tally.unchanged += 1,
                Ok(Outcome::Skipped) => tally.skipped += 1,
                Err(BackupError::Vm(VmError::NotFound)) => {} // deleted meanwhile
                Err(BackupError::Db(e)) if !is_busy(&e) => return Err(BackupError::Db(e)),
                Err(e) => {
                    tracing::warn!(vm = %id, error = %e, "layer backup failed");
                    self.item_attempt(&id.to_string(), now, &e.to_string(), true)
                        .await?;
                    tally.failed += 1;
                }
            }
        }
        Ok(())
    }

    /// One VM's layer: backed up if it changed — read directly while the
    /// VM is stopped, through a consistent copy while it runs.
    async fn layer(
        &self,
        r: &Restic,
        vm_id: Uuid,
        run: Uuid,
        now: i64,
    ) -> Result<Outcome, BackupError> {
        let lock = self.vms.lock_for(vm_id);
        let held = lock.lock().await;
        let vm = crate::vms::snapshots::reload(&self.vms, vm_id).await?;
        let read = how_to_read(vm.state);
        if matches!(read, Read::File) {
            // Stopped: its run's checkpoints are gone, so is the base's use.
            if let Err(e) = self.live_bases().forget_base(vm_id) {
                tracing::warn!(vm = %vm_id, error = %e, "could not remove a stopped VM's backup base");
            }
        }
        let sig = match vm.layer_storage {
            LayerStorage::Shared => signature(&vm.overlay_path),
            LayerStorage::NodeLocal => node_local_signature(&vm, now),
        };
        let Some(sig) = sig else {
            // No layer file yet (never provisioned): nothing to keep.
            return Ok(Outcome::Unchanged);
        };
        let known: Option<(Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT signature, last_good_at FROM backup_items WHERE subject = $1")
                .bind(vm_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        if let Some((Some(s), Some(_))) = &known
            && *s == sig
        {
            return Ok(Outcome::Unchanged);
        }
        let tags = vec!["kind=layer".to_owned(), format!("vm={vm_id}")];
        match read {
            Read::File => {}
            Read::LiveCopy => {
                return self.live_layer(r, &vm, &sig, held, &tags, run, now).await;
            }
            Read::Later => {
                return self
                    .skip(
                        vm_id,
                        now,
                        "starting, stopping or on a node that is down: backed up by the next run",
                    )
                    .await;
            }
        }
        // A node-local layer is read from its node into the server's working
        // copy at `overlay_path` (verified by its SHA-256), which goes when
        // `_checkout` does; a shared one is read in place.
        let _checkout = match vm.layer_storage {
            LayerStorage::Shared => None,
            LayerStorage::NodeLocal => Some(self.vms.checkout_layer(&vm).await?),
        };
        crate::vms::snapshots::settle(&vm.overlay_path).await?;
        let mut last = None;
        for _ in 0..ITEM_TRIES {
            match r.backup(&[vm.overlay_path.as_path()], &tags, now).await {
                Ok(s) => {
                    self.record_point(NewPoint {
                        vm: Some(vm_id),
                        kind: "layer",
                        summary: &s,
                        path: &vm.overlay_path,
                        at: now,
                        run,
                        source: Some(PointSource::LayerFile),
                        disk_read_bytes: None,
                    })
                    .await?;
                    self.item_ok(&vm_id.to_string(), Some(&sig), now).await?;
                    return Ok(Outcome::BackedUp(s.data_added));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or(BackupError::NotConfigured, BackupError::Restic))
    }

    /// A running VM's layer (see the module doc): a point-in-time copy of
    /// its disk by libvirt's backup API under the VM's lock (`held`, so it
    /// neither stops through pvce nor migrates meanwhile) — only what
    /// changed since the previous copy when this run of the domain has that
    /// copy's checkpoint and the kept base of it ([`live`]), the whole disk
    /// otherwise. With the lock released, the copy is folded into the kept
    /// base (or, whole, made a layer over the same template and kept as
    /// the base), and the base is backed up *as* the VM's layer file. The
    /// live layer is never written; scratch files go with the work directory.
    #[allow(clippy::too_many_arguments)] // one item's context
    async fn live_layer(
        &self,
        r: &Restic,
        vm: &crate::vms::Vm,
        sig: &str,
        held: crate::vms::lock::VmGuard,
        tags: &[String],
        run: Uuid,
        now: i64,
    ) -> Result<Outcome, BackupError> {
        use crate::images::qemu_img;
        let subject = vm.id.to_string();
        let bases = self.live_bases();
        let mut state = bases.load(vm.id);
        // Copy only the changes when this run of the domain still has the
        // checkpoint the kept base is of.
        let current = match state.current.clone() {
            Some(c)
                if bases.base(vm.id).exists() && self.vms.has_checkpoint(vm, &c.name).await? =>
            {
                Some(c)
            }
            _ => None,
        };
        // Every other checkpoint pvce made for this VM goes first: an older
        // copy's, a dead job's, or an earlier run's whose bitmap QEMU kept
        // in the layer (so bitmaps never pile up in a layer).
        for old in state.leftovers(current.as_ref()) {
            self.drop_checkpoint(vm, &mut state, &old).await;
        }
        state.current.clone_from(&current);
        if current.is_none() {
            crate::storage::remove_file_if_exists(&bases.base(vm.id))?;
        }
        let next = live::new_checkpoint(now);
        state.begin(&next);
        bases.save(vm.id, &state)?;
        let plan = crate::libvirt::backup::CopyPlan {
            since: current.as_ref().map(|c| c.name.clone()),
            checkpoint: next.clone(),
        };

        let work = WorkDir::new(self.scratch_dir()?.join(format!(
            "{}.{}",
            vm.id,
            Uuid::new_v4().simple()
        )))?;
        let copy = work.0.join("disk.qcow2");
        let later = match self
            .vms
            .copy_running_disk(vm, &copy, LIVE_COPY_DEADLINE, &plan)
            .await
        {
            Ok(Some(c)) => {
                tracing::info!(vm = %vm.id, bytes = c.bytes, secs = c.elapsed.as_secs_f64(), changes_only = plan.since.is_some(), "copied a running VM's disk");
                Ok(c)
            }
            // It stopped in between: the next run reads the file itself.
            Ok(None) => Err("stopped during the run: backed up by the next run"),
            Err(VmError::Libvirt(e)) if e.is_unsupported() => Err(
                "running on a hypervisor without a backup API: backed up by the first run after it stops",
            ),
            Err(e) => return Err(e.into()),
        };
        let copied = match later {
            Ok(c) => c,
            Err(why) => {
                // No job began, so no checkpoint was made.
                state.forget(&next.name);
                bases.save(vm.id, &state)?;
                return self.skip(vm.id, now, why).await;
            }
        };
        // The copy's checkpoint took over: the one it started from has no
        // use left (whatever happens to the base below).
        if let Some(c) = &current {
            self.drop_checkpoint(vm, &mut state, c).await;
        }
        drop(held);
        // The base changes from here on: not of any checkpoint until done.
        state.current = None;
        bases.save(vm.id, &state)?;
        let source = if current.is_some() {
            // The changed clusters, over the base: committed into it.
            qemu_img::rebase_unsafe(&copy, &bases.base(vm.id)).await?;
            qemu_img::commit(&copy).await?;
            bases.sync_base(vm.id)?;
            PointSource::RunningChanges
        } else {
            // Only the layer: an empty overlay on the whole copy, moved onto
            // the VM's template in safe mode, holds exactly the clusters where
            // the guest's disk differs from the template chain.
            let layer = bases.staging(vm.id)?;
            let mut staged = crate::storage::FileGuard::new(layer.clone());
            let size = qemu_img::info(&copy, crate::images::ImageFormat::Qcow2)
                .await?
                .virtual_size;
            {
                let (layer, copy) = (layer.clone(), copy.clone());
                tokio::task::spawn_blocking(move || {
                    crate::images::overlay::create_overlay(&layer, &copy, size)
                })
                .await
                .map_err(std::io::Error::other)??;
            }
            qemu_img::rebase_safe(&layer, &self.storage.template_path(vm.template_id)).await?;
            bases.install(vm.id, &layer).await?;
            staged.disarm();
            PointSource::RunningWhole
        };
        crate::storage::remove_file_if_exists(&copy)?;
        state.current = Some((&next).into());
        bases.save(vm.id, &state)?;
        let base = bases.base(vm.id);
        let mut last = None;
        for _ in 0..ITEM_TRIES {
            match r.backup_as(&base, &vm.overlay_path, tags, now).await {
                Ok(s) => {
                    self.record_point(NewPoint {
                        vm: Some(vm.id),
                        kind: "layer",
                        summary: &s,
                        path: &vm.overlay_path,
                        at: now,
                        run,
                        source: Some(source),
                        disk_read_bytes: Some(copied.bytes),
                    })
                    .await?;
                    self.item_ok(&subject, Some(sig), now).await?;
                    return Ok(Outcome::BackedUp(s.data_added));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or(BackupError::NotConfigured, BackupError::Restic))
    }

    /// Drops checkpoint `c` from the running `vm` and forgets its name once
    /// libvirt says it is gone (or a hypervisor without checkpoints, Xen,
    /// has none); a failure is logged and the name kept for the next copy.
    async fn drop_checkpoint(
        &self,
        vm: &crate::vms::Vm,
        state: &mut live::LiveState,
        c: &live::Saved,
    ) {
        match self.vms.drop_checkpoint(vm, &c.into()).await {
            Ok(_) => state.forget(&c.name),
            Err(VmError::Libvirt(e)) if e.is_unsupported() => state.forget(&c.name),
            Err(e) => {
                tracing::warn!(vm = %vm.id, checkpoint = %c.name, error = %e, "could not drop a backup checkpoint");
            }
        }
    }

    /// The kept bases of running VMs' copies (`backup/live` in the data dir).
    fn live_bases(&self) -> live::LiveBases {
        live::LiveBases::new(self.dir().join("live"))
    }

    /// Where running VMs' disk copies are made (`backup/scratch` in the data
    /// dir, which every node sees at the same path, as it sees the shared
    /// layers): traversable for QEMU, listable by pvce only.
    fn scratch_dir(&self) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir().join("scratch");
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
        Ok(dir)
    }

    /// Records a point restic reported.
    async fn record_point(&self, p: NewPoint<'_>) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO backup_points (id, vm_id, kind, snapshot, path, at, bytes_added, bytes_total, run_id, source, disk_read_bytes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(p.vm.map(|v| v.to_string()))
        .bind(p.kind)
        .bind(&p.summary.snapshot_id)
        .bind(p.path.to_string_lossy().into_owned())
        .bind(p.at)
        .bind(i64::try_from(p.summary.data_added).unwrap_or(i64::MAX))
        .bind(i64::try_from(p.summary.total_bytes_processed).unwrap_or(i64::MAX))
        .bind(p.run.to_string())
        .bind(p.source.map(PointSource::as_str))
        .bind(p.disk_read_bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn item_ok(
        &self,
        subject: &str,
        signature: Option<&str>,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO backup_items (subject, signature, last_good_at, last_attempt_at, failures, last_error)
             VALUES ($1, $2, $3, $3, 0, NULL)
             ON CONFLICT (subject) DO UPDATE SET signature = $2, last_good_at = $3,
               last_attempt_at = $3, failures = 0, last_error = NULL",
        )
        .bind(subject)
        .bind(signature)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A layer left for a later run, and why (a note on its item, not a
    /// failure).
    async fn skip(&self, vm_id: Uuid, now: i64, why: &str) -> Result<Outcome, BackupError> {
        self.item_attempt(&vm_id.to_string(), now, why, false)
            .await?;
        Ok(Outcome::Skipped)
    }

    /// An attempt that left no new good copy, with what it says: a failure
    /// (`failed`, counted against the item) or a note (why a layer was skipped).
    async fn item_attempt(
        &self,
        subject: &str,
        now: i64,
        message: &str,
        failed: bool,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO backup_items (subject, last_attempt_at, failures, last_error)
             VALUES ($1, $2, $4, $3)
             ON CONFLICT (subject) DO UPDATE SET last_attempt_at = $2,
               failures = backup_items.failures + $4, last_error = $3",
        )
        .bind(subject)
        .bind(now)
        .bind(message)
        .bind(i64::from(failed))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Applies the retention, then forgets the points restic dropped.
    async fn retention(&self, r: &Restic) -> Result<(), BackupError> {
        let keep = self.settings.as_ref().map(|s| s.keep).unwrap_or_default();
        r.forget_prune(keep).await?;
        let kept: std::collections::HashSet<String> = r
            .snapshots()
            .await?
            .into_iter()
            .flat_map(|s| [s.id, s.short_id])
            .collect();
        let ours: Vec<(String, String)> = sqlx::query_as("SELECT id, snapshot FROM backup_points")
            .fetch_all(&self.pool)
            .await?;
        for (id, snap) in ours {
            if !kept.contains(&snap) && !kept.iter().any(|k| k.starts_with(&snap)) {
                sqlx::query("DELETE FROM backup_points WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Removes every backup of a VM's layer from the repository (the layer
    /// is being erased at the end of a term, [`crate::term`]); returns how
    /// many points went. Waits for a running backup run. Without a
    /// repository only a VM with no points can be pruned (nothing to do);
    /// otherwise `NotConfigured`, and the erasure waits.
    pub async fn forget_vm(&self, vm_id: Uuid) -> Result<u64, BackupError> {
        let _one = self.running.lock().await;
        let snapshots: Vec<String> = sqlx::query_scalar(
            "SELECT snapshot FROM backup_points WHERE vm_id = $1 AND kind = 'layer'",
        )
        .bind(vm_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        if !snapshots.is_empty() {
            self.restic()?.forget_ids(&snapshots).await?;
        }
        sqlx::query("DELETE FROM backup_points WHERE vm_id = $1 AND kind = 'layer'")
            .bind(vm_id.to_string())
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM backup_items WHERE subject = $1")
            .bind(vm_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(snapshots.len() as u64)
    }

    /// The backup points of a VM's layer the user may see, newest first.
    pub async fn points(&self, user: &User, vm_id: Uuid) -> Result<Vec<Point>, BackupError> {
        let vm = self.vms.get_for(user, vm_id).await?;
        type Row = (String, i64, i64, i64, Option<String>, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, at, bytes_added, bytes_total, source, disk_read_bytes FROM backup_points
             WHERE vm_id = $1 AND kind = 'layer' ORDER BY at, rowid",
        )
        .bind(vm.id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<Point> = rows
            .into_iter()
            .enumerate()
            .filter_map(|(i, (id, at, added, total, source, read))| {
                Some(Point {
                    id: Uuid::parse_str(&id).ok()?,
                    at: text_time(at),
                    bytes: u64::try_from(added).unwrap_or(0),
                    layer_bytes: u64::try_from(total).unwrap_or(0),
                    kind: if i == 0 { "full" } else { "incremental" },
                    source: source.as_deref().and_then(PointSource::parse),
                    disk_read_bytes: read.and_then(|b| u64::try_from(b).ok()),
                })
            })
            .collect();
        out.reverse();
        Ok(out)
    }

    /// Restores a stopped VM's layer from one of its backup points
    /// (`POST /api/vms/{id}/restore`). The layer it replaces is kept as the
    /// VM's backup snapshot (revert it to undo; delete it to confirm), as an
    /// import does; the restore is recorded with who and when. For whoever
    /// may see the VM (a course's teacher, staff on a ticket, an admin for a
    /// student).
    pub async fn restore(
        &self,
        user: &User,
        vm_id: Uuid,
        point_id: Uuid,
    ) -> Result<Restored, BackupError> {
        use crate::vms::snapshots::{self, Snapshot, SnapshotKind};
        let vm = self.vms.get_for(user, vm_id).await?;
        // An archived course's layers are read-only (the end of a term).
        crate::vms::require_open_course(self.vms.pool(), &vm, "its disk can no longer be restored")
            .await?;
        let point: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT snapshot, path, at FROM backup_points WHERE id = $1 AND vm_id = $2 AND kind = 'layer'",
        )
        .bind(point_id.to_string())
        .bind(vm.id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let (snapshot, path, point_at) = point.ok_or(BackupError::PointNotFound)?;
        // An early answer before reading the repository; checked again
        // under the lock before anything changes.
        let vm = self.vms.refresh(vm_id).await?;
        snapshots::ensure_stopped(&vm, "restoring a backup")?;
        let r = self.restic()?;
        let staged = crate::storage::temp_beside(&vm.overlay_path);
        let mut staged_guard = crate::storage::FileGuard::new(staged.clone());
        r.dump(&snapshot, &path, &staged).await?;
        // A point of a stopped layer can hold the bitmaps of the checkpoints
        // its VM ran with: stale in the restored layer (see `live`).
        crate::images::qemu_img::remove_bitmaps(&staged).await?;
        let lock = self.vms.lock_for(vm_id);
        let _held = lock.lock().await;
        let vm = snapshots::reload(&self.vms, vm_id).await?;
        snapshots::ensure_stopped(&vm, "restoring a backup")?;
        let mut work = self.vms.checkout_layer(&vm).await?;
        snapshots::settle(&vm.overlay_path).await?;
        let kept = Snapshot {
            id: Uuid::new_v4(),
            vm_id: vm.id,
            name: format!("before restore {}", crate::db::now()),
            kind: SnapshotKind::Backup,
            size_bytes: Some(tokio::fs::metadata(&vm.overlay_path).await?.len()),
            created_at: crate::db::now(),
        };
        let kept_file = snapshots::backup_path(&vm, kept.id);
        // A hard link: the layer's name exists at every moment.
        tokio::fs::hard_link(&vm.overlay_path, &kept_file).await?;
        if let Err(e) = crate::storage::install_file(&staged, &vm.overlay_path).await {
            let _ = crate::storage::remove_file_if_exists(&kept_file);
            return Err(e.into());
        }
        staged_guard.disarm();
        if let Err(e) = work.commit().await {
            let _ = crate::storage::remove_file_if_exists(&kept_file);
            return Err(BackupError::Vm(e.into()));
        }
        let old = match snapshots::record_import_backup(&self.pool, &kept).await {
            Ok(old) => old,
            Err(e) => {
                let _ = crate::storage::remove_file_if_exists(&kept_file);
                return Err(e.into());
            }
        };
        for id in old {
            if let Err(e) = crate::storage::remove_file_if_exists(&snapshots::backup_path(&vm, id))
            {
                tracing::warn!(vm = %vm.id, error = %e, "could not remove an older backup layer");
            }
        }
        sqlx::query(
            "INSERT INTO backup_restores (id, vm_id, point_id, point_at, by_user, at, kept_snapshot_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(vm.id.to_string())
        .bind(point_id.to_string())
        .bind(point_at)
        .bind(&user.username)
        .bind(crate::db::now())
        .bind(kept.id.to_string())
        .execute(&self.pool)
        .await?;
        tracing::info!(vm = %vm.id, point = %point_id, by = %user.username, "restored a layer from a backup");
        Ok(Restored {
            vm: crate::vms::load(&self.pool, vm.id).await?,
            kept,
        })
    }

    /// One file or directory of a backup point's guest disk
    /// (`GET /api/vms/{id}/backups/{bid}/files?path=`), without restoring
    /// anything: the point's layer is read out of the repository into a
    /// private work directory, made a raw disk through its template chain,
    /// and read with the collection feature's read-only debugfs
    /// ([`crate::collect::read_guest_path`]). The VM may be running.
    pub async fn files(
        &self,
        user: &User,
        vm_id: Uuid,
        point_id: Uuid,
        path: &str,
    ) -> Result<GuestFiles, BackupError> {
        let path = if path.trim_end_matches('/').is_empty() && path.starts_with('/') {
            "/".to_owned()
        } else {
            crate::collect::validate_path(path).map_err(|_| {
                BackupError::BadPath(
                    "path must be / or an absolute guest path like /root/lab1/notes.txt \
                     (letters, digits, '.', '_', '+', '-' and '/')"
                        .into(),
                )
            })?
        };
        let vm = self.vms.get_for(user, vm_id).await?;
        let point: Option<(String, String)> = sqlx::query_as(
            "SELECT snapshot, path FROM backup_points WHERE id = $1 AND vm_id = $2 AND kind = 'layer'",
        )
        .bind(point_id.to_string())
        .bind(vm.id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let (snapshot, layer_path) = point.ok_or(BackupError::PointNotFound)?;
        let r = self.restic()?;
        let job = WorkDir::new(self.storage.upload_path().with_extension("backup-files"))?;
        let layer = job.0.join("layer.qcow2");
        r.dump(&snapshot, &layer_path, &layer).await?;
        let raw = job.0.join("disk.raw");
        crate::images::qemu_img::convert_to_raw(&layer, &raw).await?;
        crate::storage::remove_file_if_exists(&layer)?;
        let out = job.0.join("file");
        match crate::collect::read_guest_path(&raw, &path, &out).await? {
            crate::collect::GuestPath::Dir(entries) => Ok(GuestFiles::Dir { path, entries }),
            crate::collect::GuestPath::File { size } => {
                // The open handle keeps the bytes; the work dir goes now.
                let file = tokio::fs::File::open(&out).await?;
                let size = file.metadata().await.map_or(size, |m| m.len());
                let name = path.rsplit('/').next().unwrap_or("file").to_owned();
                Ok(GuestFiles::File { file, size, name })
            }
        }
    }

    /// The status page (`GET /api/backups`) at `now`.
    pub async fn status(&self, now: i64) -> Result<Status, BackupError> {
        let last: Option<String> = sqlx::query_scalar(
            "SELECT id FROM backup_runs ORDER BY started_at DESC, rowid DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let last_run = match last.and_then(|s| Uuid::parse_str(&s).ok()) {
            Some(id) => get_run(&self.pool, id).await?,
            None => None,
        };
        let good: Option<i64> =
            sqlx::query_scalar("SELECT MAX(started_at) FROM backup_runs WHERE ok = 1")
                .fetch_one(&self.pool)
                .await?;
        let check: Option<(i64, Option<db::Flag>)> = sqlx::query_as(
            "SELECT started_at, check_ok FROM backup_runs WHERE checked = 1 ORDER BY started_at DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        #[allow(clippy::type_complexity)] // one row's columns
        let rows: Vec<(
            String,
            Option<i64>,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        )> = sqlx::query_as(
            "SELECT i.subject, i.last_good_at, i.failures, i.last_error, v.name, u.username, c.code
               FROM backup_items i
               LEFT JOIN vms v ON v.id = i.subject
               LEFT JOIN users u ON u.id = v.owner_id
               LEFT JOIN courses c ON c.id = v.course_id
              ORDER BY i.subject = 'control' DESC, c.code, u.username, v.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .into_iter()
            .map(
                |(subject, good, failures, err, vm, owner, course)| ItemStatus {
                    subject,
                    vm_name: vm,
                    owner,
                    course,
                    last_good_at: good.map(text_time),
                    age_secs: good.map(|g| (now - g).max(0)),
                    failures: u32::try_from(failures).unwrap_or(0),
                    last_error: err,
                },
            )
            .collect();
        Ok(Status {
            configured: self.settings.is_some(),
            repository: self.settings.as_ref().map(|s| mask(&s.repository)),
            schedule: self.schedule.to_string(),
            keep: self.settings.as_ref().map(|s| KeepView {
                daily: s.keep.daily,
                weekly: s.keep.weekly,
                monthly: s.keep.monthly,
            }),
            running: self.running.try_lock().is_err(),
            last_run,
            last_good_at: good.map(text_time),
            age_secs: good.map(|g| (now - g).max(0)),
            last_check_at: check.map(|c| text_time(c.0)),
            last_check_ok: check.and_then(|c| c.1).map(bool::from),
            items,
        })
    }
}

#[derive(Debug, Default)]
struct Tally {
    backed_up: u32,
    unchanged: u32,
    skipped: u32,
    failed: u32,
    bytes_added: u64,
    checked: bool,
    check_ok: Option<bool>,
}

enum Outcome {
    BackedUp(u64),
    Unchanged,
    Skipped,
}

/// How a changed layer is read, by its VM's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// No QEMU has it open: the file itself.
    File,
    /// A running QEMU writes it: a point-in-time copy through libvirt.
    LiveCopy,
    /// Between the two (or on a node that is down, where it may still
    /// run): the next run.
    Later,
}

fn how_to_read(state: VmState) -> Read {
    match state {
        VmState::Stopped | VmState::Error => Read::File,
        VmState::Running => Read::LiveCopy,
        VmState::Starting | VmState::Stopping | VmState::NodeDown => Read::Later,
    }
}

/// Whether a database error is the database being busy or full, i.e. an
/// item's failure rather than the run's.
fn is_busy(e: &sqlx::Error) -> bool {
    let s = e.to_string();
    s.contains("locked") || s.contains("busy") || s.contains("full")
}

/// A layer file's size and modification time, or `None` if it is missing.
fn signature(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    Some(format!("{}:{}.{}", m.len(), m.mtime(), m.mtime_nsec()))
}

/// A node-local layer's signature without reading it: its volume and the
/// VM's last start. Only a running QEMU writes the volume in place (every
/// other change installs a new volume), and every run begins with a start,
/// so a layer whose VM has not started since its last good backup, in the
/// same volume, is unchanged. While its VM runs (or may run: any state but
/// stopped or failed) the layer counts as changed at every run (`now` in the
/// signature), and once more after it stops. `None` before the layer exists.
fn node_local_signature(vm: &crate::vms::Vm, now: i64) -> Option<String> {
    let volume = vm.layer_volume.as_deref()?;
    let base = format!(
        "node-local:{}:{volume}:{}",
        vm.layer_node_id.map(|n| n.to_string()).unwrap_or_default(),
        vm.last_started_at.as_deref().unwrap_or("never")
    );
    Some(match how_to_read(vm.state) {
        Read::File => base,
        Read::LiveCopy | Read::Later => format!("{base}:live@{now}"),
    })
}

/// Makes the repository password once: 32 random bytes, hex, mode 0600.
fn ensure_password(path: &Path) -> std::io::Result<()> {
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(crate::storage::sha256_hex(bytes).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A repository string with any `user:password@` credentials masked.
fn mask(repo: &str) -> String {
    match (repo.find("://"), repo.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &repo[..scheme], &repo[at + 1..])
        }
        _ => repo.to_owned(),
    }
}

/// Unix seconds as RFC 3339 UTC.
fn text_time(at: i64) -> String {
    crate::db::format_time(
        time::OffsetDateTime::from_unix_timestamp(at).unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
    )
}

async fn get_run(pool: &Pool, id: Uuid) -> Result<Option<Run>, sqlx::Error> {
    #[allow(clippy::type_complexity)] // one row's columns
    let row: Option<(
        i64,
        Option<i64>,
        String,
        Option<String>,
        db::Flag,
        i64,
        i64,
        i64,
        i64,
        i64,
        db::Flag,
        Option<db::Flag>,
        Option<String>,
    )> = sqlx::query_as(
        "SELECT started_at, finished_at, trigger, requested_by, ok, backed_up, unchanged, skipped,
                failed, bytes_added, checked, check_ok, error FROM backup_runs WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(pool)
    .await?;
    let n = |v: i64| u32::try_from(v).unwrap_or(0);
    Ok(row.map(
        |(s, f, trigger, by, ok, b, u, sk, fa, bytes, checked, check_ok, error)| Run {
            id,
            started_at: text_time(s),
            finished_at: f.map(text_time),
            trigger,
            requested_by: by,
            ok: ok.0,
            backed_up: n(b),
            unchanged: n(u),
            skipped: n(sk),
            failed: n(fa),
            bytes_added: u64::try_from(bytes).unwrap_or(0),
            checked: checked.0,
            check_ok: check_ok.map(bool::from),
            error,
        },
    ))
}

/// A PostgreSQL client tool (`pg_dump`, `pg_restore`) for the database at
/// `url`. A password in the URL goes through the environment
/// (`PGPASSWORD`), not the command line, which every user of the machine
/// can read.
pub(crate) fn pg_tool(program: &str, url: &url::Url) -> tokio::process::Command {
    let mut url = url.clone();
    let password = url.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    // Only fails for URLs that cannot carry a password at all.
    let _ = url.set_password(None);
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("--dbname")
        .arg(url.as_str())
        .stdin(std::process::Stdio::null());
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    cmd
}

/// Runs a [`pg_tool`] command; its error output (bounded) on failure.
pub(crate) async fn run_pg_tool(mut cmd: tokio::process::Command) -> Result<(), BackupError> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let out = cmd.output().await?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr);
    Err(BackupError::PgDump(format!(
        "{program} failed: {}",
        msg.trim().chars().take(500).collect::<String>()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_is_read_directly_only_when_no_qemu_can_write_it() {
        assert_eq!(how_to_read(VmState::Stopped), Read::File);
        assert_eq!(how_to_read(VmState::Error), Read::File);
        assert_eq!(how_to_read(VmState::Running), Read::LiveCopy);
        for s in [VmState::Starting, VmState::Stopping, VmState::NodeDown] {
            assert_eq!(how_to_read(s), Read::Later, "{s:?}");
        }
    }

    #[test]
    fn masks_credentials_in_the_repository() {
        assert_eq!(
            mask("rest:https://u:secret@host:8000/r"),
            "rest:https://***@host:8000/r"
        );
        assert_eq!(mask("/srv/backup"), "/srv/backup");
        assert_eq!(mask("sftp:user@host:/srv/r"), "sftp:user@host:/srv/r");
    }
}
