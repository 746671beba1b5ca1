//! Templates: the course image library, a tree stored as a qcow2 backing chain.
//!
//! Invariants:
//! - The root of the tree is a blank image (`parent_id = NULL`); bare OS images
//!   sit at depth 1, each child's software set strictly contains its parent's.
//! - A `ready` template's layer is immutable (mode 0444) and lives at
//!   `templates/<id>.qcow2`; nothing writes to it after it becomes ready.
//! - An upload is inspected by our own header parser ([`crate::images::inspect`])
//!   before any qemu-img touches it, and converted with explicit formats; an
//!   upload that fails any step leaves nothing behind (no file, no row).
//! - Depth-1 layers are standalone: backing them onto the blank root would add
//!   a lookup per read and nothing else, since the root holds no data.
//! - An import with `parent_id` of a qcow2 *layer* (it names a backing file)
//!   becomes a thin child of that parent: the backing name in the upload is
//!   untrusted text that is never opened; pvce rebases the layer onto the
//!   parent's layer (same virtual size required) exactly like a personal-layer
//!   import ([`images::adopt_layer`]). Anywhere else a backing file is refused.

pub mod chain;
pub mod matching;

use std::path::Path;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::db::{self, Pool};
use crate::images::inspect::inspect_layer;
use crate::images::{self, ImageError, ImageFormat, InspectLimits, qemu_img};
use crate::names;
use crate::storage::{self, FileGuard, Storage};

/// Virtual size of the blank root image.
pub const ROOT_VIRTUAL_SIZE: u64 = 1024 * 1024 * 1024;
pub const ROOT_NAME: &str = "blank";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateState {
    Draft,
    Ready,
    Failed,
}

impl TemplateState {
    fn as_str(self) -> &'static str {
        match self {
            TemplateState::Draft => "draft",
            TemplateState::Ready => "ready",
            TemplateState::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "ready" => TemplateState::Ready,
            "draft" => TemplateState::Draft,
            _ => TemplateState::Failed,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Template {
    pub id: Uuid,
    pub name: String,
    pub parent_id: Option<Uuid>,
    pub os: String,
    pub software: Vec<String>,
    pub state: TemplateState,
    pub size_bytes: u64,
    pub virtual_size_bytes: u64,
    pub depth: u32,
    pub created_by: Option<Uuid>,
    pub created_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{0}")]
    Invalid(String),
    /// Well-formed, but not acceptable given other templates (an unknown
    /// parent, a child that doesn't extend its parent): 422.
    #[error("{0}")]
    Unacceptable(String),
    #[error("no such template")]
    NotFound,
    #[error("a template named {0:?} already exists")]
    NameTaken(String),
    #[error("template is in use: {0}")]
    InUse(String),
    #[error("template is not ready")]
    NotReady,
    #[error("upload is larger than the limit of {0} bytes")]
    UploadTooLarge(u64),
    #[error("upload interrupted: {0}")]
    UploadInterrupted(String),
    #[error("qemu-img could not read the image; it may be damaged")]
    Unreadable,
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

const COLUMNS: &str = "id, name, parent_id, os, software, state, size_bytes, virtual_size_bytes, depth, created_by, created_at";

fn from_row(row: &crate::db::Row) -> Result<Template, sqlx::Error> {
    let software: String = row.try_get("software")?;
    Ok(Template {
        id: db::uuid(row, "id")?,
        name: row.try_get("name")?,
        parent_id: db::opt_uuid(row, "parent_id")?,
        os: row.try_get("os")?,
        software: serde_json::from_str(&software).unwrap_or_default(),
        state: TemplateState::parse(&row.try_get::<String, _>("state")?),
        size_bytes: u64::try_from(row.try_get::<i64, _>("size_bytes")?).unwrap_or(0),
        virtual_size_bytes: u64::try_from(row.try_get::<i64, _>("virtual_size_bytes")?)
            .unwrap_or(0),
        depth: u32::try_from(row.try_get::<i64, _>("depth")?).unwrap_or(0),
        created_by: db::opt_uuid(row, "created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The template library as teachers and admins reach it: the service the
/// HTTP handlers call, with the upload limits of the settings. Drafts being
/// built (derive, seal, abandon) are [`crate::builds`]'s.
#[derive(Debug)]
pub struct Templates {
    pool: Pool,
    storage: Storage,
    limits: ImportLimits,
}

impl Templates {
    pub fn new(pool: Pool, storage: Storage, limits: ImportLimits) -> Self {
        Self {
            pool,
            storage,
            limits,
        }
    }

    pub async fn list(&self) -> Result<Vec<Template>, TemplateError> {
        list(&self.pool).await
    }

    pub async fn get(&self, id: Uuid) -> Result<Template, TemplateError> {
        get(&self.pool, id).await
    }

    /// Disk use of the library (per template, shared by how many VMs).
    pub async fn usage(&self) -> Result<LibraryUsage, TemplateError> {
        usage(&self.pool).await
    }

    /// The templates that fit a course's needs ([`matching::find`]).
    pub async fn matching(
        &self,
        os: &str,
        software: &[String],
    ) -> Result<matching::MatchResult, TemplateError> {
        if os.len() > 64 || software.len() > 200 || software.iter().any(|s| s.len() > 64) {
            return Err(TemplateError::Invalid(
                "os and software items are at most 64 characters, at most 200 items".into(),
            ));
        }
        Ok(matching::find(&list(&self.pool).await?, os, software))
    }

    /// Imports an uploaded image as a template; a declared length over the
    /// limit is refused before anything is read.
    pub async fn import<S, E>(
        &self,
        creator: Uuid,
        declared_len: Option<u64>,
        params: ImportParams,
        body: S,
    ) -> Result<Template, TemplateError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let max = self.limits.max_upload_bytes;
        if declared_len.is_some_and(|n| n > max) {
            return Err(TemplateError::UploadTooLarge(max));
        }
        import(
            &self.pool,
            &self.storage,
            self.limits,
            params,
            creator,
            body,
        )
        .await
    }

    /// A standalone copy of a template (admins; see [`flatten`]).
    pub async fn flatten(
        &self,
        id: Uuid,
        name: &str,
        creator: Uuid,
    ) -> Result<Template, TemplateError> {
        flatten(&self.pool, &self.storage, id, name, creator).await
    }
}

pub async fn list(pool: &Pool) -> Result<Vec<Template>, TemplateError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM templates ORDER BY depth, name"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

pub async fn get(pool: &Pool, id: Uuid) -> Result<Template, TemplateError> {
    let sql = format!("SELECT {COLUMNS} FROM templates WHERE id = $1");
    db::fetch_row(pool, &sql, &[&id.to_string()], from_row)
        .await?
        .ok_or(TemplateError::NotFound)
}

pub async fn find_by_name(pool: &Pool, name: &str) -> Result<Option<Template>, TemplateError> {
    let sql = format!("SELECT {COLUMNS} FROM templates WHERE name = $1");
    Ok(db::fetch_row(pool, &sql, &[name], from_row).await?)
}

/// Validates a template name ([`names::TEMPLATE_NAME`]).
pub fn validate_name(name: &str) -> Result<(), TemplateError> {
    names::TEMPLATE_NAME
        .check(name)
        .map_err(|e| TemplateError::Invalid(e.to_string()))
}

/// Normalises a software list: lowercase, trimmed, sorted, deduplicated; each
/// item 1–64 characters of `[a-z0-9+._-]`.
pub fn normalise_software(items: &[String]) -> Result<Vec<String>, TemplateError> {
    if items.len() > 200 {
        return Err(TemplateError::Invalid("at most 200 software items".into()));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let s = item.trim().to_lowercase();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b));
        if !ok {
            return Err(TemplateError::Invalid(format!(
                "software item {item:?} must be 1-64 characters of a-z, 0-9, '+', '.', '_' or '-'"
            )));
        }
        out.push(s);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn validate_os(os: &str) -> Result<String, TemplateError> {
    let os = os.trim().to_lowercase();
    if os.is_empty()
        || os.len() > 64
        || !os
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b))
    {
        return Err(TemplateError::Invalid(
            "os must be 1-64 characters of a-z, 0-9, '+', '.', '_' or '-'".into(),
        ));
    }
    Ok(os)
}

/// What the start-up sweep of `templates/` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TemplateSweep {
    /// Half-written temporary files, removed.
    pub temp_removed: u64,
    /// Files no template names, moved to `quarantine/<time>/templates/`.
    pub quarantined: Vec<std::path::PathBuf>,
}

/// Brings `templates/` in line with the `templates` table after a crash,
/// before the server serves. A layer is written before its row is inserted
/// (import, derive, flatten), so a server killed in between leaves a file no
/// template names: moved to quarantine (what `pvce fsck --repair` does too;
/// nothing is deleted that a person might want), and half-written temporary
/// files are removed. Runs while nothing else writes there (start-up).
pub async fn sweep_at_start(
    pool: &Pool,
    storage: &Storage,
) -> Result<TemplateSweep, TemplateError> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM templates")
        .fetch_all(pool)
        .await?;
    let known: std::collections::HashSet<std::path::PathBuf> = ids
        .iter()
        .filter_map(|t| Uuid::parse_str(t).ok())
        .map(|t| storage.template_path(t))
        .collect();
    let dir = storage.templates_dir();
    let quarantine = storage
        .root()
        .join("quarantine")
        .join(db::now().replace(':', ""))
        .join("templates");
    tokio::task::spawn_blocking(move || sweep_templates_dir(&dir, &known, &quarantine))
        .await
        .map_err(|e| TemplateError::Io(std::io::Error::other(e.to_string())))?
        .map_err(TemplateError::Io)
}

fn sweep_templates_dir(
    dir: &Path,
    known: &std::collections::HashSet<std::path::PathBuf>,
    quarantine: &Path,
) -> std::io::Result<TemplateSweep> {
    let mut report = TemplateSweep::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if !entry.file_type()?.is_file() || known.contains(&path) {
            continue;
        }
        if storage::is_temp_name(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(&path)?;
            report.temp_removed += 1;
        } else {
            let to = storage::quarantine_file(dir, &path, quarantine)?;
            report.quarantined.push(to);
        }
    }
    Ok(report)
}

/// Makes sure the blank root template exists; returns it.
pub async fn ensure_root(pool: &Pool, storage: &Storage) -> Result<Template, TemplateError> {
    if let Some(t) = find_by_name(pool, ROOT_NAME).await?
        && t.parent_id.is_none()
    {
        return Ok(t);
    }
    let id = Uuid::new_v4();
    let path = storage.template_path(id);
    images::qemu_img::create_blank(&path, ROOT_VIRTUAL_SIZE).await?;
    seal_file(&path)?;
    let size = std::fs::metadata(&path)?.len();
    let t = Template {
        id,
        name: ROOT_NAME.into(),
        parent_id: None,
        os: String::new(),
        software: vec![],
        state: TemplateState::Ready,
        size_bytes: size,
        virtual_size_bytes: ROOT_VIRTUAL_SIZE,
        depth: 0,
        created_by: None,
        created_at: db::now(),
    };
    if let Err(e) = insert(pool, &t).await {
        let _ = storage::remove_file_if_exists(&path);
        // Another process created it concurrently: use theirs.
        if let TemplateError::NameTaken(_) = e {
            return find_by_name(pool, ROOT_NAME)
                .await?
                .ok_or(TemplateError::NotFound);
        }
        return Err(e);
    }
    Ok(t)
}

pub(crate) async fn insert(pool: &Pool, t: &Template) -> Result<(), TemplateError> {
    let res = sqlx::query(
        "INSERT INTO templates (id, name, parent_id, os, software, state, size_bytes, virtual_size_bytes, depth, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(t.id.to_string())
    .bind(&t.name)
    .bind(t.parent_id.map(|p| p.to_string()))
    .bind(&t.os)
    .bind(serde_json::to_string(&t.software).unwrap_or_else(|_| "[]".into()))
    .bind(t.state.as_str())
    .bind(i64::try_from(t.size_bytes).unwrap_or(i64::MAX))
    .bind(i64::try_from(t.virtual_size_bytes).unwrap_or(i64::MAX))
    .bind(i64::from(t.depth))
    .bind(t.created_by.map(|p| p.to_string()))
    .bind(&t.created_at)
    .execute(pool)
    .await;
    match res {
        Ok(_) => Ok(()),
        Err(e) if db::unique_violation(&e).is_some() => {
            Err(TemplateError::NameTaken(t.name.clone()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Template layers are immutable once ready: read-only for everyone.
pub(crate) fn seal_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
}

/// What the importer is told about an image.
#[derive(Debug, Clone)]
pub struct ImportParams {
    pub name: String,
    pub format: ImageFormat,
    pub os: String,
    pub software: Vec<String>,
    pub parent_id: Option<Uuid>,
}

/// How much of an over-limit upload is read and discarded before answering 413.
const UPLOAD_DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// Limits applied to imports.
#[derive(Debug, Clone, Copy)]
pub struct ImportLimits {
    pub max_upload_bytes: u64,
    pub max_virtual_size: u64,
}

/// Validates parameters and resolves the parent; cheap, so it runs before the upload is read.
async fn resolve_import(
    pool: &Pool,
    storage: &Storage,
    params: &ImportParams,
) -> Result<(Template, Vec<String>, String), TemplateError> {
    validate_name(&params.name)?;
    let os = validate_os(&params.os)?;
    let software = normalise_software(&params.software)?;
    if find_by_name(pool, &params.name).await?.is_some() {
        return Err(TemplateError::NameTaken(params.name.clone()));
    }
    let parent = match params.parent_id {
        Some(pid) => {
            let p = get(pool, pid).await.map_err(|e| match e {
                TemplateError::NotFound => {
                    TemplateError::Unacceptable("parent_id: no such template".into())
                }
                other => other,
            })?;
            if p.state != TemplateState::Ready {
                return Err(TemplateError::NotReady);
            }
            if p.parent_id.is_some() {
                if p.os != os {
                    return Err(TemplateError::Unacceptable(format!(
                        "os must match the parent's ({:?})",
                        p.os
                    )));
                }
                if !is_strict_superset(&software, &p.software) {
                    return Err(TemplateError::Unacceptable(
                        "a child's software must strictly contain its parent's".into(),
                    ));
                }
            }
            p
        }
        None => ensure_root(pool, storage).await?,
    };
    Ok((parent, software, os))
}

/// `child` ⊋ `parent` (both normalised).
pub fn is_strict_superset(child: &[String], parent: &[String]) -> bool {
    child.len() > parent.len() && parent.iter().all(|p| child.contains(p))
}

/// Imports an uploaded image as a new ready template.
///
/// Steps: stream to a private upload file (size-capped) → our own header
/// inspection → `qemu-img info` under limits as a second opinion → convert to
/// a qcow2 layer with explicit formats → row. Every failure removes every file.
pub async fn import<S, E>(
    pool: &Pool,
    storage: &Storage,
    limits: ImportLimits,
    params: ImportParams,
    created_by: Uuid,
    body: S,
) -> Result<Template, TemplateError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (parent, software, os) = match resolve_import(pool, storage, &params).await {
        Ok(r) => r,
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    let upload = storage.upload_path();
    let mut upload_guard = FileGuard::new(upload.clone());
    receive_upload(&upload, body, limits.max_upload_bytes).await?;
    crate::crashpoint::hit("template_import.upload_received");
    let layer = import_file(
        pool,
        storage,
        limits,
        &params,
        &parent,
        software,
        os,
        Some(created_by),
        &upload,
    )
    .await;
    upload_guard.disarm();
    let _ = storage::remove_file_if_exists(&upload);
    layer
}

/// Reads (and drops) a bounded rest of a refused upload, so the client gets
/// the error response instead of a broken pipe; a huge upload is cut off anyway.
async fn drain<S, E>(mut body: S)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut drained: u64 = 0;
    while let Some(Ok(rest)) = body.next().await {
        drained += rest.len() as u64;
        if drained > UPLOAD_DRAIN_LIMIT {
            break;
        }
    }
}

async fn receive_upload<S, E>(path: &Path, mut body: S, max: u64) -> Result<(), TemplateError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut file = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await
    {
        Ok(f) => f,
        Err(e) => {
            drain(body).await;
            return Err(e.into());
        }
    };
    let mut written: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| TemplateError::UploadInterrupted(e.to_string()))?;
        written += chunk.len() as u64;
        if written > max {
            drain(body).await;
            return Err(TemplateError::UploadTooLarge(max));
        }
        if let Err(e) = file.write_all(&chunk).await {
            // A full disk: the client still gets the answer, not a reset.
            drop(file);
            drain(body).await;
            return Err(e.into());
        }
    }
    if written == 0 {
        return Err(TemplateError::Invalid(
            "the request body (the image) is empty".into(),
        ));
    }
    file.flush().await?;
    Ok(())
}

/// Inspects and converts a local image file into a new template (used by the
/// HTTP import and by `pvce templates build`). The source file is left alone.
#[allow(clippy::too_many_arguments)]
async fn import_file(
    pool: &Pool,
    storage: &Storage,
    limits: ImportLimits,
    params: &ImportParams,
    parent: &Template,
    software: Vec<String>,
    os: String,
    created_by: Option<Uuid>,
    source: &Path,
) -> Result<Template, TemplateError> {
    let inspect_limits = InspectLimits {
        max_virtual_size: limits.max_virtual_size,
    };
    let id = Uuid::new_v4();
    let dst = storage.template_path(id);
    let mut layer_guard = FileGuard::new(dst.clone());
    // Our inspection passed, so qemu-img failing means the upload is damaged,
    // not that the server is broken — unless it failed for lack of space.
    let damaged = |e: ImageError| match e {
        ImageError::QemuImg { .. } | ImageError::Timeout { .. }
            if crate::space::full_storage(&e).is_none() =>
        {
            tracing::warn!(error = %e, "qemu-img rejected an upload");
            TemplateError::Unreadable
        }
        other => other.into(),
    };
    let virtual_size = if is_child_layer(params, parent, source, &inspect_limits).await {
        import_child_layer(storage, parent, source, &dst, &inspect_limits)
            .await
            .map_err(damaged)?
    } else {
        // Our own header inspection, qemu-img's second opinion, conversion with
        // explicit formats and a check of the result (see `images`).
        images::import_image(source, params.format, &dst, &inspect_limits)
            .await
            .map_err(damaged)?
            .virtual_size
    };
    seal_file(&dst)?;
    crate::crashpoint::hit("template_import.layer_written");
    let t = Template {
        id,
        name: params.name.clone(),
        parent_id: Some(parent.id),
        os,
        software,
        state: TemplateState::Ready,
        size_bytes: std::fs::metadata(&dst)?.len(),
        virtual_size_bytes: virtual_size,
        depth: parent.depth + 1,
        created_by,
        created_at: db::now(),
    };
    insert(pool, &t).await?;
    crate::crashpoint::hit("template_import.row_inserted");
    layer_guard.disarm();
    Ok(t)
}

/// True when an upload should become a thin child layer of `parent`: a qcow2
/// that names a backing file, imported with a `parent_id` that is not the
/// blank root. Only a peek at the header by our own parser (the backing name
/// is not looked at, let alone opened); anything else goes the standalone way,
/// whose inspection refuses backing files.
async fn is_child_layer(
    params: &ImportParams,
    parent: &Template,
    source: &Path,
    limits: &InspectLimits,
) -> bool {
    if params.format != ImageFormat::Qcow2 || parent.parent_id.is_none() {
        return false;
    }
    let (path, limits) = (source.to_path_buf(), limits.clone());
    matches!(
        tokio::task::spawn_blocking(move || inspect_layer(&path, &limits)).await,
        Ok(Ok(r)) if r.backing_file.is_some()
    )
}

/// Imports an uploaded copy-on-write layer as a thin child of `parent` at
/// `dst`: a private copy of the upload is adopted onto the parent's layer
/// ([`images::adopt_layer`]: inspected, same virtual size, its own backing
/// name replaced by ours), then qemu-img writes the layer's own clusters into
/// a fresh overlay on the parent, which is checked. `source` is left alone.
/// Returns the virtual size.
async fn import_child_layer(
    storage: &Storage,
    parent: &Template,
    source: &Path,
    dst: &Path,
    limits: &InspectLimits,
) -> Result<u64, ImageError> {
    let work = storage.upload_path();
    let _work_guard = FileGuard::new(work.clone());
    tokio::fs::copy(source, &work).await?;
    let parent_layer = storage.template_path(parent.id);
    images::adopt_layer(&work, &parent_layer, parent.virtual_size_bytes, limits).await?;
    qemu_img::convert_to_overlay(&work, &parent_layer, dst).await?;
    let verify = async {
        let info = qemu_img::info(dst, ImageFormat::Qcow2).await?;
        let ours = std::path::absolute(&parent_layer)?;
        if info.backing_filename.as_deref() != Some(ours.to_string_lossy().as_ref())
            || info.backing_format.as_deref() != Some("qcow2")
            || info.data_file.is_some()
            || info.virtual_size != parent.virtual_size_bytes
        {
            return Err(ImageError::QemuImg {
                op: "info",
                detail: "the converted child layer does not back onto its parent".into(),
            });
        }
        let check = qemu_img::check(dst).await?;
        if !check.is_clean() {
            return Err(ImageError::QemuImg {
                op: "check",
                detail: format!("converted child layer is not clean: {check:?}"),
            });
        }
        Ok(())
    };
    if let Err(e) = verify.await {
        let _ = storage::remove_file_if_exists(dst);
        return Err(e);
    }
    Ok(parent.virtual_size_bytes)
}

/// Imports a file already on this machine (the built-in library builder).
pub async fn import_local_file(
    pool: &Pool,
    storage: &Storage,
    limits: ImportLimits,
    params: ImportParams,
    created_by: Option<Uuid>,
    source: &Path,
) -> Result<Template, TemplateError> {
    let (parent, software, os) = resolve_import(pool, storage, &params).await?;
    import_file(
        pool, storage, limits, &params, &parent, software, os, created_by, source,
    )
    .await
}

/// Flattens a template into a new standalone layer with the same OS and
/// software (admins do this when a chain grows deep). The copy sits beside the
/// original in the tree (same parent) but needs no backing file: guests read
/// it without walking the chain, at the price of storing the whole disk again.
pub async fn flatten(
    pool: &Pool,
    storage: &Storage,
    id: Uuid,
    name: &str,
    created_by: Uuid,
) -> Result<Template, TemplateError> {
    validate_name(name)?;
    let src = get(pool, id).await?;
    if src.state != TemplateState::Ready || src.parent_id.is_none() {
        return Err(TemplateError::NotReady);
    }
    if find_by_name(pool, name).await?.is_some() {
        return Err(TemplateError::NameTaken(name.to_owned()));
    }
    let new_id = Uuid::new_v4();
    let dst = storage.template_path(new_id);
    let mut guard = FileGuard::new(dst.clone());
    // `convert` reads through the whole backing chain and writes one standalone layer.
    images::qemu_img::convert_to_qcow2(&storage.template_path(src.id), ImageFormat::Qcow2, &dst)
        .await?;
    seal_file(&dst)?;
    let t = Template {
        id: new_id,
        name: name.to_owned(),
        parent_id: src.parent_id,
        os: src.os.clone(),
        software: src.software.clone(),
        state: TemplateState::Ready,
        size_bytes: std::fs::metadata(&dst)?.len(),
        virtual_size_bytes: src.virtual_size_bytes,
        depth: src.depth,
        created_by: Some(created_by),
        created_at: db::now(),
    };
    insert(pool, &t).await?;
    guard.disarm();
    Ok(t)
}

/// What the library costs on disk: its layers as stored vs. what flat copies
/// of every template would take.
#[derive(Debug, Clone, Serialize)]
pub struct LibraryUsage {
    pub templates: usize,
    pub stored_bytes: u64,
    pub flat_copies_bytes: u64,
}

pub async fn usage(pool: &Pool) -> Result<LibraryUsage, TemplateError> {
    let all = list(pool).await?;
    let by_id: std::collections::HashMap<Uuid, &Template> = all.iter().map(|t| (t.id, t)).collect();
    let stored_bytes = all.iter().map(|t| t.size_bytes).sum();
    // A flat copy of a template holds its own layer plus every ancestor's.
    let flat_copies_bytes = all
        .iter()
        .map(|t| {
            let mut total = 0;
            let mut cur = Some(t);
            while let Some(c) = cur {
                total += c.size_bytes;
                cur = c.parent_id.and_then(|p| by_id.get(&p).copied());
            }
            total
        })
        .sum();
    Ok(LibraryUsage {
        templates: all.len(),
        stored_bytes,
        flat_copies_bytes,
    })
}

/// Deletes a template that nothing uses; its layer goes with it.
pub async fn delete(pool: &Pool, storage: &Storage, id: Uuid) -> Result<(), TemplateError> {
    let t = get(pool, id).await?;
    let id_s = id.to_string();
    let children: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM templates WHERE parent_id = $1")
        .bind(&id_s)
        .fetch_one(pool)
        .await?;
    if children > 0 {
        return Err(TemplateError::InUse(format!(
            "{children} child template(s)"
        )));
    }
    let specs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vm_specs WHERE template_id = $1")
        .bind(&id_s)
        .fetch_one(pool)
        .await?;
    if specs > 0 {
        return Err(TemplateError::InUse(format!(
            "used by {specs} course VM spec(s)"
        )));
    }
    let res = sqlx::query("DELETE FROM templates WHERE id = $1")
        .bind(&id_s)
        .execute(pool)
        .await;
    match res {
        Ok(_) => {}
        Err(e) if db::is_foreign_key_violation(&e) => {
            return Err(TemplateError::InUse("still referenced".into()));
        }
        Err(e) => return Err(e.into()),
    }
    storage::remove_file_if_exists(&storage.template_path(t.id))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_up_sweep_quarantines_unrecorded_layers_and_removes_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let templates = dir.path().join("templates");
        std::fs::create_dir_all(&templates).expect("mkdir");
        let known = templates.join(format!("{}.qcow2", Uuid::new_v4()));
        let orphan = templates.join(format!("{}.qcow2", Uuid::new_v4()));
        let temp = storage::temp_beside(&templates.join(format!("{}.qcow2", Uuid::new_v4())));
        for (p, data) in [(&known, b"k"), (&orphan, b"o"), (&temp, b"t")] {
            std::fs::write(p, data).expect("write");
        }
        let quarantine = dir.path().join("quarantine").join("t").join("templates");
        let set = std::collections::HashSet::from([known.clone()]);
        let r = sweep_templates_dir(&templates, &set, &quarantine).expect("sweep");
        assert_eq!(r.temp_removed, 1);
        assert!(known.exists(), "a recorded layer stays");
        assert!(!temp.exists() && !orphan.exists());
        let moved = quarantine.join(orphan.file_name().expect("name"));
        assert_eq!(r.quarantined, vec![moved.clone()]);
        assert_eq!(std::fs::read(&moved).expect("kept"), b"o");
        // A second sweep finds nothing; a missing dir is no error.
        let again = sweep_templates_dir(&templates, &set, &quarantine).expect("sweep");
        assert_eq!(again, TemplateSweep::default());
        let none = sweep_templates_dir(&dir.path().join("nope"), &set, &quarantine);
        assert_eq!(none.expect("sweep"), TemplateSweep::default());
    }

    #[test]
    fn software_is_normalised() {
        let s = normalise_software(&["GCC".into(), " make ".into(), "gcc".into()]).expect("ok");
        assert_eq!(s, vec!["gcc".to_string(), "make".to_string()]);
        assert!(normalise_software(&["rm -rf /".into()]).is_err());
        assert!(normalise_software(&["".into()]).is_err());
    }

    #[test]
    fn strict_superset() {
        let p = vec!["gcc".to_string()];
        assert!(is_strict_superset(&["gcc".into(), "make".into()], &p));
        assert!(!is_strict_superset(&["gcc".into()], &p));
        assert!(!is_strict_superset(&["make".into(), "vim".into()], &p));
    }

    #[test]
    fn names() {
        assert!(validate_name("Tiny Linux 1.0").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name(&"x".repeat(101)).is_err());
        assert!(validate_name("a\nb").is_err());
    }
}
