//! `pvce fsck`: the invariant check of an installation — what the database
//! says against what is on disk and on the nodes — and the repairs that are
//! safe to make without a person deciding.
//!
//! Invariants checked (issue 17, "Faults, with nothing lost"):
//! - no orphan domain: every domain marked with *this* installation's id
//!   (src/installation) belongs to a VM record (another installation's
//!   domains, and unmarked ones, are never judged);
//! - no VM record without its personal layer (the shared layer file, or the
//!   node-local volume on its home node);
//! - no layer or upload file without its record: files under `overlays/` no
//!   VM names, files under `templates/` no template names, anything under
//!   `uploads/` (scratch of requests; none outlives its request);
//! - no half-written file visible: temporary files (`.<name>.<id>.tmp`, the
//!   atomic-install scratch of storage.rs and images/) and staged enrolment
//!   layers (`.staging`);
//! - no template whose layer, or a backing file its layer names, is missing.
//!
//! `--repair` fixes only what is safe:
//! - an orphan domain of this installation that is *not running* is
//!   undefined (a running one is reported: it may be someone's work);
//! - stale temporary files and uploads are removed (the real file beside a
//!   temporary one is intact: installs are atomic renames);
//! - a staged layer whose VM record exists but whose layer does not is
//!   published (renamed into place), as the start-up sweep does;
//! - records are marked: a VM without its layer goes to `error` with the
//!   reason ([`VM_MARK`]), a template without its layer or backing file to
//!   `failed`; marked records are known and not reported again;
//! - a layer or template file without its record is **moved** to
//!   `quarantine/<time>/…` in the data dir and reported — never deleted: it
//!   may be a student's only copy of their work.
//!
//! Files younger than [`GRACE`] are not judged (an operation may be writing
//! them right now); "now" is the caller's (the clock the tests control).
//! Best run with the server stopped; the report alone is safe at any time.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use uuid::Uuid;

use crate::db::{self, Pool};
use crate::libvirt::{DomainState, LibvirtError};
use crate::nodes::Nodes;
use crate::storage::Storage;

/// The reason fsck writes on a VM whose layer is missing; a VM so marked
/// is known (its owner sees why) and not reported again.
pub const VM_MARK: &str =
    "pvce fsck: the personal layer is missing; reset the VM or restore a backup";

/// How old a temporary or unnamed file must be before fsck judges it.
pub const GRACE: Duration = Duration::from_secs(10 * 60);

/// The suffix of staged enrolment layers (vms::provision).
const STAGING_SUFFIX: &str = crate::vms::STAGING_SUFFIX;

#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("reading the data dir: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Nodes(#[from] crate::nodes::NodeError),
}

/// What kind of broken state a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A domain of this installation with no VM record.
    OrphanDomain,
    /// A VM record whose personal layer is missing.
    VmWithoutLayer,
    /// A staged layer of a VM record, never moved into place.
    UnpublishedLayer,
    /// A file under `overlays/` no VM names.
    OrphanLayer,
    /// A file under `templates/` no template names.
    OrphanTemplateFile,
    /// A half-written temporary file.
    TempFile,
    /// Something left under `uploads/`.
    StaleUpload,
    /// A template whose layer file is missing.
    TemplateWithoutLayer,
    /// A template whose layer names a backing file that is missing.
    MissingBackingFile,
    /// A node that could not be asked (its domains and volumes unchecked).
    NodeUnchecked,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrphanDomain => "orphan_domain",
            Self::VmWithoutLayer => "vm_without_layer",
            Self::UnpublishedLayer => "unpublished_layer",
            Self::OrphanLayer => "orphan_layer",
            Self::OrphanTemplateFile => "orphan_template_file",
            Self::TempFile => "temp_file",
            Self::StaleUpload => "stale_upload",
            Self::TemplateWithoutLayer => "template_without_layer",
            Self::MissingBackingFile => "missing_backing_file",
            Self::NodeUnchecked => "node_unchecked",
        }
    }
}

/// One broken thing, and what `--repair` did about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    /// What it is about: a path, a domain name, a record id.
    pub subject: String,
    pub detail: String,
    /// What the repair did (`None`: not repaired, or no repair asked).
    pub repaired: Option<String>,
}

impl Finding {
    /// A finding not (yet) repaired.
    fn new(kind: Kind, subject: String, detail: String) -> Finding {
        Finding {
            kind,
            subject,
            detail,
            repaired: None,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub installation_id: String,
    pub repair: bool,
    pub findings: Vec<Finding>,
    /// Where orphan files were moved to, when any were.
    pub quarantine: Option<PathBuf>,
}

impl Report {
    /// No finding at all.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Findings the repair did not fix.
    pub fn unrepaired(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.repaired.is_none())
            .count()
    }

    /// The report as text, one finding a line, then a summary.
    pub fn to_text(&self) -> String {
        let mut out = format!("pvce fsck: installation {}\n", self.installation_id);
        for f in &self.findings {
            out.push_str(&format!(
                "{:<22} {}: {}",
                f.kind.as_str(),
                f.subject,
                f.detail
            ));
            if let Some(r) = &f.repaired {
                out.push_str(&format!(" [repaired: {r}]"));
            }
            out.push('\n');
        }
        if self.is_clean() {
            out.push_str("clean: every invariant holds\n");
        } else {
            out.push_str(&format!(
                "{} finding(s), {} repaired, {} left\n",
                self.findings.len(),
                self.findings.len() - self.unrepaired(),
                self.unrepaired()
            ));
        }
        if let Some(q) = &self.quarantine {
            out.push_str(&format!("orphan files moved to {}\n", q.display()));
        }
        out
    }
}

/// What a file under `overlays/` or `templates/` is (pure; see [`classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileClass {
    /// Named by a record: fine.
    Known,
    /// A temporary file of an atomic install.
    Temp,
    /// A staged layer whose record exists and whose layer is missing.
    Unpublished,
    /// Named by nothing.
    Orphan,
}

/// Classifies file `name` (its file name) at `path`: `known` whether a record
/// names the path, `staged_for` whether the path without [`STAGING_SUFFIX`]
/// is a record's layer that does not exist.
pub fn classify(name: &str, known: bool, staged_for_missing: bool) -> FileClass {
    if known {
        FileClass::Known
    } else if crate::storage::is_temp_name(name) {
        FileClass::Temp
    } else if name.ends_with(STAGING_SUFFIX) && staged_for_missing {
        FileClass::Unpublished
    } else {
        FileClass::Orphan
    }
}

/// Whether a file last written at `mtime` is old enough at `now` to judge:
/// older than `grace` ([`GRACE`] for a running server; `Duration::ZERO`
/// judges every file, right for a stopped or idle server, e.g. after a crash).
pub fn is_settled(mtime: SystemTime, now: SystemTime, grace: Duration) -> bool {
    now.duration_since(mtime).is_ok_and(|age| age >= grace)
}

/// The fsck service.
#[derive(Debug)]
pub struct Fsck {
    pool: Pool,
    storage: Storage,
    nodes: Arc<Nodes>,
    installation: String,
    layer_pool: String,
}

#[derive(sqlx::FromRow)]
struct VmRow {
    id: String,
    state: String,
    last_error: Option<String>,
    overlay_path: String,
    layer_storage: String,
    layer_node_id: Option<String>,
    layer_volume: Option<String>,
}

impl Fsck {
    pub fn new(
        pool: Pool,
        storage: Storage,
        nodes: Arc<Nodes>,
        installation: String,
        layer_pool: String,
    ) -> Self {
        Self {
            pool,
            storage,
            nodes,
            installation,
            layer_pool,
        }
    }

    /// Checks every invariant at `now`; with `repair`, makes the safe repairs.
    pub async fn run(&self, now: SystemTime, repair: bool) -> Result<Report, FsckError> {
        self.run_with_grace(now, GRACE, repair).await
    }

    /// [`Fsck::run`] judging files older than `grace` (`pvce fsck
    /// --grace-secs`: the chaos suite checks right after a crash, with
    /// nothing in flight, and judges every file).
    pub async fn run_with_grace(
        &self,
        now: SystemTime,
        grace: Duration,
        repair: bool,
    ) -> Result<Report, FsckError> {
        let mut report = Report {
            installation_id: self.installation.clone(),
            repair,
            findings: Vec::new(),
            quarantine: None,
        };
        let quarantine = self
            .storage
            .root()
            .join("quarantine")
            .join(format!("fsck-{}", db::now().replace(':', "")));
        self.check_vm_layers(&mut report, repair).await?;
        self.check_templates(&mut report, repair).await?;
        self.check_files(&mut report, now, grace, repair, &quarantine)
            .await?;
        self.check_domains(&mut report, repair).await?;
        if quarantine.exists() {
            report.quarantine = Some(quarantine);
        }
        Ok(report)
    }

    async fn vm_rows(&self) -> Result<Vec<VmRow>, FsckError> {
        Ok(sqlx::query_as::<_, VmRow>(
            "SELECT id, state, last_error, overlay_path, layer_storage, layer_node_id, layer_volume FROM vms",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every VM record has its layer.
    async fn check_vm_layers(&self, report: &mut Report, repair: bool) -> Result<(), FsckError> {
        for vm in self.vm_rows().await? {
            if vm.state == "error" && vm.last_error.as_deref() == Some(VM_MARK) {
                continue; // marked by an earlier repair: known
            }
            let missing = if vm.layer_storage == "node-local" {
                let (Some(node), Some(volume)) = (&vm.layer_node_id, &vm.layer_volume) else {
                    // Created at the VM's first start: nothing to have yet.
                    continue;
                };
                let node_id = db::parse_uuid(node)?;
                let found = match self.nodes.conn(node_id).await {
                    Ok(conn) => conn.volume_size(&self.layer_pool, volume).await,
                    Err(e) => Err(LibvirtError::Unreachable(e.to_string())),
                };
                match found {
                    Ok(size) => size
                        .is_none()
                        .then(|| format!("volume {volume} on its node")),
                    Err(e) => {
                        report.findings.push(Finding::new(
                            Kind::NodeUnchecked,
                            format!("vm {}", vm.id),
                            format!("the node-local layer could not be checked: {e}"),
                        ));
                        continue;
                    }
                }
            } else {
                let path = Path::new(&vm.overlay_path);
                let staged = staged_path(path);
                if path.exists() || staged.exists() {
                    // A staged one is reported (and published) by the file walk.
                    None
                } else {
                    Some(format!("layer file {}", path.display()))
                }
            };
            let Some(what) = missing else { continue };
            let mut finding = Finding::new(
                Kind::VmWithoutLayer,
                format!("vm {}", vm.id),
                format!("{what} is missing"),
            );
            let active = matches!(vm.state.as_str(), "starting" | "running" | "stopping");
            if repair && !active {
                crate::vms::offline::mark_layer_missing(&self.pool, &vm.id, VM_MARK).await?;
                finding.repaired = Some("VM marked error".into());
            }
            report.findings.push(finding);
        }
        Ok(())
    }

    /// Every template has its layer, and the backing file its layer names.
    async fn check_templates(&self, report: &mut Report, repair: bool) -> Result<(), FsckError> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, name, state FROM templates")
                .fetch_all(&self.pool)
                .await?;
        for (id, name, state) in rows {
            if state == "failed" {
                continue; // unusable and known as such (a repair may have marked it)
            }
            let path = self.storage.template_path(db::parse_uuid(&id)?);
            let broken = if !path.exists() {
                Some((
                    Kind::TemplateWithoutLayer,
                    format!("layer file {} is missing", path.display()),
                ))
            } else {
                let p = path.clone();
                let header = tokio::task::spawn_blocking(move || {
                    crate::images::inspect::inspect_layer(
                        &p,
                        &crate::images::inspect::InspectLimits::default(),
                    )
                })
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
                match header {
                    // Only checked for existence here, never opened.
                    Ok(h) => h.backing_file.filter(|b| !Path::new(b).exists()).map(|b| {
                        (
                            Kind::MissingBackingFile,
                            format!("its backing file {b} is missing"),
                        )
                    }),
                    // Not a layer pvce can read: reported as missing its layer.
                    Err(e) => Some((Kind::TemplateWithoutLayer, format!("layer unreadable: {e}"))),
                }
            };
            let Some((kind, detail)) = broken else {
                continue;
            };
            let mut finding = Finding::new(kind, format!("template {name} ({id})"), detail);
            if repair {
                sqlx::query("UPDATE templates SET state = 'failed' WHERE id = $1")
                    .bind(&id)
                    .execute(&self.pool)
                    .await?;
                finding.repaired = Some("template marked failed".into());
            }
            report.findings.push(finding);
        }
        Ok(())
    }

    /// Files under `overlays/`, `templates/` and `uploads/`.
    async fn check_files(
        &self,
        report: &mut Report,
        now: SystemTime,
        grace: Duration,
        repair: bool,
        quarantine: &Path,
    ) -> Result<(), FsckError> {
        let mut layers: HashSet<PathBuf> = self
            .vm_rows()
            .await?
            .into_iter()
            .filter(|v| v.layer_storage != "node-local" || v.layer_volume.is_none())
            .map(|v| PathBuf::from(v.overlay_path))
            .collect();
        // Backup snapshots live beside their VM's layer.
        layers.extend(crate::vms::snapshots::backup_files(&self.pool).await?);
        let templates: Vec<String> = sqlx::query_scalar("SELECT id FROM templates")
            .fetch_all(&self.pool)
            .await?;
        let templates: HashSet<PathBuf> = templates
            .iter()
            .filter_map(|t| Uuid::parse_str(t).ok())
            .map(|t| self.storage.template_path(t))
            .collect();
        let root = self.storage.root().to_path_buf();
        let quarantine = quarantine.to_path_buf();
        let findings = tokio::task::spawn_blocking(move || {
            walk_files(
                &root,
                &layers,
                &templates,
                (now, grace),
                repair,
                &quarantine,
            )
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        report.findings.extend(findings);
        Ok(())
    }

    /// Domains of this installation on every reachable node.
    async fn check_domains(&self, report: &mut Report, repair: bool) -> Result<(), FsckError> {
        let known: Vec<String> = sqlx::query_scalar("SELECT id FROM vms")
            .fetch_all(&self.pool)
            .await?;
        let known: HashSet<String> = known.into_iter().collect();
        for node in self.nodes.list().await? {
            let listed = match self.nodes.conn(node.id).await {
                Ok(conn) => conn.list_domains().await.map(|d| (conn, d)),
                Err(e) => Err(LibvirtError::Unreachable(e.to_string())),
            };
            let (conn, domains) = match listed {
                Ok(x) => x,
                Err(e) => {
                    report.findings.push(Finding::new(
                        Kind::NodeUnchecked,
                        format!("node {}", node.name),
                        format!("its domains could not be listed: {e}"),
                    ));
                    continue;
                }
            };
            for d in domains {
                let Some(m) = &d.metadata else { continue };
                // Only this installation's own marks are judged.
                if m.installation.as_deref() != Some(self.installation.as_str())
                    || known.contains(&m.id)
                {
                    continue;
                }
                let running = d.state != DomainState::Shutoff;
                let mut finding = Finding {
                    kind: Kind::OrphanDomain,
                    subject: format!("domain {} on node {}", d.name, node.name),
                    detail: format!(
                        "no VM record {}{}",
                        m.id,
                        if running {
                            " (running: not touched; stop it once its owner is known)"
                        } else {
                            ""
                        }
                    ),
                    repaired: None,
                };
                if repair && !running {
                    match conn.undefine_inactive(&d.name, &self.installation).await {
                        Ok(true) => finding.repaired = Some("undefined".into()),
                        Ok(false) => {}
                        Err(e) => finding.detail.push_str(&format!("; undefine failed: {e}")),
                    }
                }
                report.findings.push(finding);
            }
        }
        Ok(())
    }
}

fn staged_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(STAGING_SUFFIX);
    PathBuf::from(s)
}

fn modified(path: &Path) -> std::io::Result<SystemTime> {
    std::fs::symlink_metadata(path)?.modified()
}

/// Files below `dir` (not following links), depth first.
fn files_below(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn walk_files(
    root: &Path,
    layers: &HashSet<PathBuf>,
    templates: &HashSet<PathBuf>,
    (now, grace): (SystemTime, Duration),
    repair: bool,
    quarantine: &Path,
) -> std::io::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for (dir, known, orphan_kind) in [
        ("overlays", layers, Kind::OrphanLayer),
        ("templates", templates, Kind::OrphanTemplateFile),
    ] {
        for path in files_below(&root.join(dir))? {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let target = path
                .to_str()
                .and_then(|p| p.strip_suffix(STAGING_SUFFIX))
                .map(PathBuf::from);
            let staged_for_missing = target
                .as_ref()
                .is_some_and(|t| known.contains(t) && !t.exists());
            let class = classify(&name, known.contains(&path), staged_for_missing);
            if class == FileClass::Known || !is_settled(modified(&path)?, now, grace) {
                continue;
            }
            let subject = path.display().to_string();
            let finding = match class {
                FileClass::Known => continue,
                FileClass::Temp => {
                    let repaired = if repair {
                        crate::storage::remove_file_if_exists(&path)?;
                        Some("removed".to_owned())
                    } else {
                        None
                    };
                    Finding {
                        kind: Kind::TempFile,
                        subject,
                        detail: "a half-written temporary file".into(),
                        repaired,
                    }
                }
                FileClass::Unpublished => {
                    let repaired = match (&target, repair) {
                        (Some(t), true) => {
                            std::fs::rename(&path, t)?;
                            Some(format!("published as {}", t.display()))
                        }
                        _ => None,
                    };
                    Finding {
                        kind: Kind::UnpublishedLayer,
                        subject,
                        detail: "a staged layer its VM record waits for".into(),
                        repaired,
                    }
                }
                FileClass::Orphan => {
                    let repaired = if repair {
                        let to = crate::storage::quarantine_file(root, &path, quarantine)?;
                        Some(format!("moved to {}", to.display()))
                    } else {
                        None
                    };
                    Finding {
                        kind: orphan_kind,
                        subject,
                        detail: "no record names this file (kept: moved to quarantine on repair, never deleted)".into(),
                        repaired,
                    }
                }
            };
            findings.push(finding);
        }
    }
    // Uploads are request scratch: whatever is left there is stale.
    let uploads = root.join("uploads");
    let entries = match std::fs::read_dir(&uploads) {
        Ok(e) => e.collect::<Result<Vec<_>, _>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry.path();
        if !is_settled(modified(&path)?, now, grace) {
            continue;
        }
        let repaired = if repair {
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                crate::storage::remove_file_if_exists(&path)?;
            }
            Some("removed".to_owned())
        } else {
            None
        };
        findings.push(Finding {
            kind: Kind::StaleUpload,
            subject: path.display().to_string(),
            detail: "left by an interrupted request".into(),
            repaired,
        });
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_classified_by_record_and_name() {
        assert_eq!(classify("v.qcow2", true, false), FileClass::Known);
        assert_eq!(classify(".v.qcow2.0a1b.tmp", false, false), FileClass::Temp);
        assert_eq!(
            classify("v.qcow2.staging", false, true),
            FileClass::Unpublished
        );
        // A staged file for no record (or whose layer exists) is an orphan:
        // kept, never deleted.
        assert_eq!(classify("v.qcow2.staging", false, false), FileClass::Orphan);
        assert_eq!(classify("v.qcow2", false, false), FileClass::Orphan);
        // A known name wins over any pattern.
        assert_eq!(classify(".x.tmp", true, false), FileClass::Known);
        assert_eq!(classify("x.tmp", false, false), FileClass::Orphan);
    }

    #[test]
    fn young_files_are_not_judged() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!is_settled(t0, t0, GRACE));
        assert!(!is_settled(t0, t0 + GRACE - Duration::from_secs(1), GRACE));
        assert!(is_settled(t0, t0 + GRACE, GRACE));
        // A file from the future (clock skew) is not judged either.
        assert!(!is_settled(t0 + Duration::from_secs(5), t0, GRACE));
    }

    proptest::proptest! {
        #[test]
        fn settled_is_monotonic_in_now(m in 0u64..10_000_000, a in 0u64..10_000_000, b in 0u64..10_000_000) {
            let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(m);
            let (lo, hi) = (a.min(b), a.max(b));
            let (lo, hi) = (SystemTime::UNIX_EPOCH + Duration::from_secs(lo), SystemTime::UNIX_EPOCH + Duration::from_secs(hi));
            // Once settled, a file stays settled as time goes on.
            proptest::prop_assert!(!is_settled(mtime, lo, GRACE) || is_settled(mtime, hi, GRACE));
        }
    }

    #[test]
    fn the_text_report_names_every_finding() {
        let r = Report {
            installation_id: "i".into(),
            repair: true,
            findings: vec![Finding {
                kind: Kind::TempFile,
                subject: "/d/x.tmp".into(),
                detail: "half".into(),
                repaired: Some("removed".into()),
            }],
            quarantine: None,
        };
        let t = r.to_text();
        assert!(t.contains("temp_file"), "{t}");
        assert!(t.contains("[repaired: removed]"), "{t}");
        assert!(t.contains("1 finding(s), 1 repaired, 0 left"), "{t}");
        assert_eq!(r.unrepaired(), 0);
    }
}
