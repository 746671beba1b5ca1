//! Rebuilding a whole installation from its backup repository
//! (`pvce restore --from <repository> --password-file <file>`), onto an
//! empty data dir on a new machine.
//!
//! From the newest control-plane snapshot: the database copy (made with
//! `VACUUM INTO`, so consistent — or, for a PostgreSQL installation, its
//! `pg_dump`, restored with `pg_restore` into the empty database
//! `--database-url` names), the template store and the settings kept in
//! the data dir; then every personal layer of that database from its
//! newest snapshot in the repository (`restic dump`). The data dir may be another
//! path than the old one: the layers' paths in the database and the
//! backing-file names in the template and layer headers are rewritten to
//! the new place (`qemu-img rebase -u`, which only rewrites the header).
//! Node-local layers come back as shared layers (files in the new data
//! dir: their volumes were on the old nodes). Node template-store replicas
//! are forgotten, so each node's store is
//! verified (or filled) again before its next start.
//!
//! Invariants: the target must be empty — data dir and, on PostgreSQL, the
//! database (an existing installation is never overwritten); the password is copied into the new data dir so the
//! nightly backups go on into the same repository.

use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::BackupError;
use super::restic::Restic;
use crate::config::Config;

/// What a restore did.
#[derive(Debug, Default)]
pub struct InstallReport {
    pub templates: usize,
    pub layers: usize,
    /// VMs whose layer had no backup point (they start from a fresh layer
    /// on their template, as after a reset).
    pub without_backup: Vec<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the data dir {0} is not empty; restore into an empty one")]
    NotEmpty(PathBuf),
    #[error(
        "restore into the data dir's own SQLite database or into PostgreSQL (--database-url postgres://…), not another SQLite file"
    )]
    NotSqlite,
    #[error("the PostgreSQL database already holds tables; restore into an empty database")]
    DatabaseNotEmpty,
    #[error("the backup is of a {backup} installation; restore it with {target}")]
    OtherBackend {
        backup: &'static str,
        target: &'static str,
    },
    #[error("the repository holds no control-plane backup")]
    NoControlBackup,
    #[error("the control-plane backup is incomplete: {0}")]
    Incomplete(String),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    Image(#[from] crate::images::ImageError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Open(#[from] anyhow::Error),
}

impl From<super::restic::ResticError> for InstallError {
    fn from(e: super::restic::ResticError) -> Self {
        Self::Backup(e.into())
    }
}

/// Refuses a PostgreSQL database that already holds tables.
async fn ensure_empty_postgres(url: &str) -> Result<(), InstallError> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    if tables > 0 {
        return Err(InstallError::DatabaseNotEmpty);
    }
    Ok(())
}

/// Rebuilds `config.data_dir` (and, on PostgreSQL, the empty database
/// `config.database_url` names) from the repository.
pub async fn restore(
    config: &Config,
    repository: &str,
    password_file: &Path,
) -> Result<InstallReport, InstallError> {
    let postgres = match config.database_url.as_deref() {
        None => None,
        Some(url) if crate::db::Backend::of_url(url) == Some(crate::db::Backend::Postgres) => {
            Some(url.to_owned())
        }
        Some(_) => return Err(InstallError::NotSqlite),
    };
    let root = config.data_dir.clone();
    if root.exists() && std::fs::read_dir(&root)?.next().is_some() {
        return Err(InstallError::NotEmpty(root));
    }
    if let Some(url) = &postgres {
        ensure_empty_postgres(url).await?;
    }
    std::fs::create_dir_all(root.join("backup"))?;
    let password = root.join("backup").join("restic-password");
    std::fs::copy(password_file, &password)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600))?;
    }
    let r = Restic::new(
        repository.to_owned(),
        password.clone(),
        root.join("backup").join("cache"),
    );
    let snaps = r.snapshots().await?;
    // `restic snapshots` lists oldest first.
    let control = snaps
        .iter()
        .rev()
        .find(|s| {
            s.tags
                .as_ref()
                .is_some_and(|t| t.iter().any(|t| t == "kind=control"))
        })
        .ok_or(InstallError::NoControlBackup)?;
    let control_dir = control
        .paths
        .iter()
        .find(|p| p.ends_with("/backup/control"))
        .ok_or_else(|| InstallError::Incomplete("no database copy".into()))?;
    let old_root = Path::new(control_dir)
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| InstallError::Incomplete("no data dir".into()))?
        .to_path_buf();
    let staging = root.join("backup").join("restore-staging");
    r.restore(&control.id, &staging).await?;
    let inside = |p: &Path| staging.join(p.strip_prefix("/").unwrap_or(p));
    let db_copy = inside(&old_root.join("backup/control/pvce.db"));
    let pg_dump = inside(&old_root.join("backup/control/pvce.pgdump"));
    match (&postgres, db_copy.exists(), pg_dump.exists()) {
        (None, true, _) => std::fs::rename(&db_copy, root.join("pvce.db"))?,
        (Some(url), _, true) => {
            let url = url::Url::parse(url)
                .map_err(|e| InstallError::Incomplete(format!("database URL: {e}")))?;
            let mut cmd = super::pg_tool("pg_restore", &url);
            // One transaction: a failed restore leaves the database empty.
            cmd.args(["--no-owner", "--single-transaction", "--exit-on-error"])
                .arg(&pg_dump);
            super::run_pg_tool(cmd).await?;
        }
        (None, false, true) => {
            return Err(InstallError::OtherBackend {
                backup: "PostgreSQL",
                target: "--database-url postgres://… (an empty database)",
            });
        }
        (Some(_), true, false) => {
            return Err(InstallError::OtherBackend {
                backup: "SQLite",
                target: "the data dir's SQLite database, then `pvce db migrate-from-sqlite`",
            });
        }
        _ => return Err(InstallError::Incomplete("no database copy".into())),
    }
    let key = inside(&old_root.join("backup/control/device-cookie.key"));
    if key.exists() {
        std::fs::rename(&key, root.join("device-cookie.key"))?;
    }
    let templates = inside(&old_root.join("templates"));
    if templates.exists() {
        std::fs::rename(&templates, root.join("templates"))?;
    }
    std::fs::remove_dir_all(&staging)?;

    // The database (migrated to this version) and the new paths.
    let (storage, pool) = crate::state::open(config).await?;
    let mut report = InstallReport::default();
    let tpls: Vec<(String, Option<String>)> = sqlx::query_as("SELECT id, parent_id FROM templates")
        .fetch_all(&pool)
        .await?;
    for (id, parent) in &tpls {
        let Ok(id) = Uuid::parse_str(id) else {
            continue;
        };
        let path = storage.template_path(id);
        if !path.exists() {
            continue;
        }
        report.templates += 1;
        if let Some(parent) = parent.as_deref().and_then(|p| Uuid::parse_str(p).ok()) {
            crate::images::qemu_img::rebase_unsafe(&path, &storage.template_path(parent)).await?;
        }
    }
    sqlx::query("DELETE FROM node_layers")
        .execute(&pool)
        .await?;
    let vms: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, owner_id, template_id, course_id FROM vms WHERE course_id IS NOT NULL",
    )
    .fetch_all(&pool)
    .await?;
    for (vm, owner, template, course) in vms {
        let (Ok(vm), Ok(owner), Ok(template), Some(Ok(course))) = (
            Uuid::parse_str(&vm),
            Uuid::parse_str(&owner),
            Uuid::parse_str(&template),
            course.as_deref().map(Uuid::parse_str),
        ) else {
            continue;
        };
        storage.ensure_overlay_dir(owner, course)?;
        let layer = storage.overlay_path(owner, course, vm);
        crate::vms::offline::set_layer_path(&pool, vm, &layer).await?;
        // The newest snapshot of the layer in the repository (it may be
        // newer than the database copy).
        let tag = format!("vm={vm}");
        let point = snaps
            .iter()
            .rev()
            .find(|s| s.tags.as_ref().is_some_and(|t| t.contains(&tag)))
            .and_then(|s| Some((s.id.clone(), s.paths.first()?.clone())));
        let backing = storage.template_path(template);
        match point {
            Some((snapshot, path)) => {
                r.dump(&snapshot, &path, &layer).await?;
                crate::images::qemu_img::rebase_unsafe(&layer, &backing).await?;
                report.layers += 1;
            }
            None => {
                let size: i64 =
                    sqlx::query_scalar("SELECT virtual_size_bytes FROM templates WHERE id = $1")
                        .bind(template.to_string())
                        .fetch_one(&pool)
                        .await?;
                crate::images::overlay::create_overlay(
                    &layer,
                    &backing,
                    u64::try_from(size).unwrap_or(0),
                )?;
                report.without_backup.push(vm);
            }
        }
    }
    crate::vms::offline::all_stopped(&pool).await?;
    pool.close().await;
    tracing::info!(from = %old_root.display(), templates = report.templates, layers = report.layers, "installation restored");
    Ok(report)
}
