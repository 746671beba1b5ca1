//! A consistent copy of a *running* domain's disk through libvirt's backup
//! API (`virDomainBackupBegin`, push mode), for the nightly backup of
//! personal layers (src/backup).
//!
//! Push mode: QEMU copies the disk as it was at the instant the job began to
//! a target file libvirt creates, while the guest keeps running; a guest
//! write to a cluster not copied yet first copies the old cluster out
//! (copy-before-write), so the target is one point in time — crash
//! consistent, like pulling the plug at that instant. The target is a
//! standalone qcow2 of the whole guest-visible disk (its template chain
//! included); src/backup turns it into a layer.
//!
//! **Checkpoints.** Every job also creates a checkpoint — a persistent QEMU
//! dirty bitmap in the disk image, named like the checkpoint — at the
//! instant of its copy; a later job of the same domain given that
//! checkpoint (`<incremental>`) copies only the clusters written since
//! (src/backup/live.rs keeps the base they are folded into). pvce's
//! domains are transient, so libvirt forgets their checkpoints when they
//! stop, but QEMU leaves the bitmap in the image: [`Node::drop_checkpoint`]
//! redefines such a leftover (validated against the image) and deletes it
//! while the domain runs again; a live migration drops all of a domain's
//! checkpoints first ([`drop_all_checkpoints`]).
//!
//! The `virt` crate (0.5) wraps neither `virDomainBackupBegin` nor
//! `virDomainAbortJob`; their C declarations come with `virt::sys` (the
//! bindings of the libvirt this crate links), so this file calls them
//! directly — the module's second piece of `unsafe` after [`super::stats`]
//! (no `extern` block of our own is needed: `virt::sys` declares them).
//! The job is then watched with `virDomainGetJobStats`, also called directly
//! (see [`job_record`] for why not through `virt`).
//!
//! `PRESERVE_SHUTDOWN_DOMAIN` (where libvirt has it): a guest that powers
//! itself off during the copy is paused instead until the job is over, then
//! shut down by libvirt, so a student's shutdown never breaks the backup. A job that fails or outlives its deadline is aborted
//! (`virDomainAbortJob`); the caller removes the target.
//!
//! The backup XML is built from typed structs and serialised (never
//! formatted), like the domain XML in [`super::xml`].

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::LibvirtError;
use super::conn::{Node, lookup};

/// The guest disk pvce gives every QEMU domain (see [`super::xml`]).
pub const GUEST_DISK: &str = "vda";

/// How often a running job's state is asked for.
const POLL: Duration = Duration::from_millis(250);

#[derive(Serialize)]
#[serde(rename = "domainbackup")]
struct XBackup<'a> {
    #[serde(rename = "@mode")]
    mode: &'static str,
    /// Only what changed since this checkpoint (its bitmap) is copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    incremental: Option<&'a str>,
    disks: XBackupDisks<'a>,
}

#[derive(Serialize)]
struct XBackupDisks<'a> {
    disk: Vec<XBackupDisk<'a>>,
}

#[derive(Serialize)]
struct XBackupDisk<'a> {
    #[serde(rename = "@name")]
    name: &'a str,
    #[serde(rename = "@backup")]
    backup: &'static str,
    #[serde(rename = "@type")]
    kind: &'static str,
    target: XBackupTarget<'a>,
    driver: XBackupDriver,
}

#[derive(Serialize)]
struct XBackupTarget<'a> {
    #[serde(rename = "@file")]
    file: &'a str,
}

#[derive(Serialize)]
struct XBackupDriver {
    #[serde(rename = "@type")]
    format: &'static str,
}

/// `<domainbackup mode='push'>` copying the disk `disk` (and no other) to
/// the new qcow2 file `target`: all of it, or with `since` only the clusters
/// written since that checkpoint.
pub fn backup_xml(disk: &str, target: &Path, since: Option<&str>) -> Result<String, LibvirtError> {
    let target = target
        .to_str()
        .filter(|t| target.is_absolute() && !t.is_empty())
        .ok_or_else(|| LibvirtError::InvalidSpec(format!("backup target {target:?}")))?;
    if let Some(c) = since {
        check_checkpoint_name(c)?;
    }
    let x = XBackup {
        mode: "push",
        incremental: since,
        disks: XBackupDisks {
            disk: vec![XBackupDisk {
                name: disk,
                backup: "yes",
                kind: "file",
                target: XBackupTarget { file: target },
                driver: XBackupDriver { format: "qcow2" },
            }],
        },
    };
    quick_xml::se::to_string(&x).map_err(|e| LibvirtError::Xml(e.to_string()))
}

#[derive(Serialize)]
#[serde(rename = "domaincheckpoint")]
struct XCheckpoint<'a> {
    name: &'a str,
    #[serde(rename = "creationTime", skip_serializing_if = "Option::is_none")]
    creation_time: Option<i64>,
    disks: XCheckpointDisks<'a>,
}

#[derive(Serialize)]
struct XCheckpointDisks<'a> {
    disk: Vec<XCheckpointDisk<'a>>,
}

#[derive(Serialize)]
struct XCheckpointDisk<'a> {
    #[serde(rename = "@name")]
    name: &'a str,
    #[serde(rename = "@checkpoint")]
    checkpoint: &'static str,
    #[serde(rename = "@bitmap", skip_serializing_if = "Option::is_none")]
    bitmap: Option<&'a str>,
}

/// A checkpoint pvce made: its name (also its bitmap's name in the disk
/// image) and its creation instant (Unix seconds), which redefining it
/// needs (see [`Node::drop_checkpoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub name: String,
    pub created_at: i64,
}

/// Checkpoint names pvce puts in XML and QEMU uses as bitmap names: its own
/// (`pvce-backup-<hex>`), but checked anyway, as tags are for qemu-img.
fn check_checkpoint_name(name: &str) -> Result<(), LibvirtError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(LibvirtError::InvalidSpec(format!(
            "checkpoint name {name:?}"
        )))
    }
}

/// `<domaincheckpoint>` of disk `disk` (a bitmap in its image, named like
/// the checkpoint). With `redefine`, the form that re-creates the metadata
/// of a checkpoint whose bitmap is already in the image: the creation time
/// and the bitmap's name are required there.
pub fn checkpoint_xml(
    disk: &str,
    checkpoint: &Checkpoint,
    redefine: bool,
) -> Result<String, LibvirtError> {
    check_checkpoint_name(&checkpoint.name)?;
    let x = XCheckpoint {
        name: &checkpoint.name,
        creation_time: redefine.then_some(checkpoint.created_at),
        disks: XCheckpointDisks {
            disk: vec![XCheckpointDisk {
                name: disk,
                checkpoint: "bitmap",
                bitmap: redefine.then_some(checkpoint.name.as_str()),
            }],
        },
    };
    quick_xml::se::to_string(&x).map_err(|e| LibvirtError::Xml(e.to_string()))
}

/// What one copy of a running disk reads, and the checkpoint it starts.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    /// Copy only what was written since this checkpoint of the same domain
    /// (it must exist there); `None`: the whole disk.
    pub since: Option<String>,
    /// Created by the job at the instant the copy is of: the next copy's
    /// `since`.
    pub checkpoint: Checkpoint,
}

/// What a finished copy read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskCopy {
    /// Bytes of the disk the job processed.
    pub bytes: u64,
    pub elapsed: Duration,
}

/// The state of the domain's job, as [`job_state`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum JobState {
    Active,
    Completed { bytes: u64 },
    Failed(String),
}

/// What the job statistics say, as a pure decision: an active job is
/// running; with none active, the last completed job's statistics tell
/// success (only a backup's count: another job's record is no answer).
fn job_state(
    active_type: i32,
    completed: Option<(i32, Option<i32>, Option<String>, u64)>,
) -> JobState {
    use virt::sys;
    if active_type == sys::VIR_DOMAIN_JOB_BOUNDED as i32
        || active_type == sys::VIR_DOMAIN_JOB_UNBOUNDED as i32
    {
        return JobState::Active;
    }
    match completed {
        Some((t, op, _, bytes))
            if t == sys::VIR_DOMAIN_JOB_COMPLETED as i32
                && op.is_none_or(|o| o == sys::VIR_DOMAIN_JOB_OPERATION_BACKUP as i32) =>
        {
            JobState::Completed { bytes }
        }
        Some((_, _, msg, _)) => JobState::Failed(
            msg.unwrap_or_else(|| "the backup job ended without completing".into()),
        ),
        None => JobState::Failed("the backup job ended without a record".into()),
    }
}

impl Node {
    /// Copies the disk [`GUEST_DISK`] of the running domain `name`, as it is
    /// now, to the new file `target` (absolute; it must not exist, and the
    /// hypervisor must be able to create it there) while the domain keeps
    /// running: the whole disk, or with `plan.since` only the clusters
    /// written since that checkpoint (the rest of `target` stays
    /// unallocated; its header names the live disk as backing, which the
    /// caller replaces). The job creates `plan.checkpoint` at the instant
    /// of the copy. `Ok(None)`: no such running domain. Waits for the job;
    /// on a failure or after `deadline` the job is aborted (its checkpoint
    /// may exist then: the caller remembers the name to drop it). Never
    /// removes `target` (the caller's scratch area does).
    pub async fn copy_running_disk(
        &self,
        name: &str,
        target: &Path,
        deadline: Duration,
        plan: &CopyPlan,
    ) -> Result<Option<DiskCopy>, LibvirtError> {
        let xml = backup_xml(GUEST_DISK, target, plan.since.as_deref())?;
        let checkpoint = checkpoint_xml(GUEST_DISK, &plan.checkpoint, false)?;
        let started = Instant::now();
        let n = name.to_owned();
        let begun = self
            .call(move |c| {
                let Some(dom) = lookup(c, &n)? else {
                    return Ok(false);
                };
                if !dom.is_active()? {
                    return Ok(false);
                }
                backup_begin(&dom, &xml, &checkpoint)?;
                Ok(true)
            })
            .await?;
        if !begun {
            return Ok(None);
        }
        loop {
            let state = match self.backup_job(name).await {
                Ok(s) => s,
                Err(e) => {
                    self.abort_job(name).await;
                    return Err(e);
                }
            };
            match state {
                JobState::Active if started.elapsed() > deadline => {
                    self.abort_job(name).await;
                    return Err(LibvirtError::JobFailed(format!(
                        "the disk copy took longer than {} s and was aborted",
                        deadline.as_secs()
                    )));
                }
                JobState::Active => tokio::time::sleep(POLL).await,
                JobState::Completed { bytes } => {
                    return Ok(Some(DiskCopy {
                        bytes,
                        elapsed: started.elapsed(),
                    }));
                }
                JobState::Failed(m) => return Err(LibvirtError::JobFailed(m)),
            }
        }
    }

    /// Whether the running domain `name` has checkpoint `checkpoint` — made
    /// by this very run of the domain: a transient domain's checkpoints go
    /// with it when it stops, so one that exists has tracked every write
    /// since it was made. No domain, no checkpoint: `false`.
    pub async fn has_checkpoint(&self, name: &str, checkpoint: &str) -> Result<bool, LibvirtError> {
        check_checkpoint_name(checkpoint)?;
        let (n, ck) = (name.to_owned(), checkpoint.to_owned());
        self.call(move |c| {
            let Some(dom) = lookup(c, &n)? else {
                return Ok(false);
            };
            Ok(CheckpointRef::lookup(&dom, &ck)?.is_some())
        })
        .await
    }

    /// Removes checkpoint `checkpoint` and its bitmap from the running
    /// domain `name`: one this run of the domain made (it is deleted), or
    /// one an earlier run made whose bitmap QEMU kept in the disk image
    /// when that run stopped (its metadata is redefined, checked against
    /// the image, then deleted — so the bitmap stops tracking writes and a
    /// stopped layer's offline work never meets it). `Ok(false)`: neither
    /// is there (nothing to do); `Ok(true)`: removed. The domain must run:
    /// only a running QEMU can drop a bitmap through libvirt.
    pub async fn drop_checkpoint(
        &self,
        name: &str,
        checkpoint: &Checkpoint,
    ) -> Result<bool, LibvirtError> {
        let redefine = checkpoint_xml(GUEST_DISK, checkpoint, true)?;
        let (n, ck) = (name.to_owned(), checkpoint.name.clone());
        self.call(move |c| {
            let Some(dom) = lookup(c, &n)? else {
                return Ok(false);
            };
            if !dom.is_active()? {
                return Ok(false);
            }
            let found = match CheckpointRef::lookup(&dom, &ck)? {
                Some(r) => r,
                None => match CheckpointRef::redefine(&dom, &redefine) {
                    Ok(r) => r,
                    // The image has no such bitmap (validation failed):
                    // nothing was left behind.
                    Err(e) if e.is_checkpoint_inconsistent() => return Ok(false),
                    Err(e) => return Err(e),
                },
            };
            found.delete()?;
            Ok(true)
        })
        .await
    }

    /// The state of `name`'s job (the domain gone counts as a failure: its
    /// copy can no longer complete).
    async fn backup_job(&self, name: &str) -> Result<JobState, LibvirtError> {
        let n = name.to_owned();
        self.call(move |c| {
            let Some(dom) = lookup(c, &n)? else {
                return Ok(JobState::Failed(
                    "the domain stopped during the backup".into(),
                ));
            };
            let active = match job_record(&dom, 0) {
                Ok(r) => r.kind,
                Err(LibvirtError::NotFound) => {
                    return Ok(JobState::Failed(
                        "the domain stopped during the backup".into(),
                    ));
                }
                Err(e) => return Err(e),
            };
            let completed = if active == virt::sys::VIR_DOMAIN_JOB_BOUNDED as i32
                || active == virt::sys::VIR_DOMAIN_JOB_UNBOUNDED as i32
            {
                None
            } else {
                job_record(&dom, virt::sys::VIR_DOMAIN_JOB_STATS_COMPLETED)
                    .ok()
                    .map(|r| (r.kind, r.operation, r.error, r.bytes))
            };
            Ok(job_state(active, completed))
        })
        .await
    }

    /// Aborts `name`'s job, best effort (it may have ended meanwhile).
    async fn abort_job(&self, name: &str) {
        let n = name.to_owned();
        let r = self
            .call(move |c| {
                if let Some(dom) = lookup(c, &n)? {
                    abort(&dom)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(domain = name, error = %e, "could not abort the backup job");
        }
    }
}

/// One job's record as `virDomainGetJobStats` gives it.
struct JobRecord {
    kind: i32,
    operation: Option<i32>,
    error: Option<String>,
    bytes: u64,
}

/// `virDomainGetJobStats(dom, flags)`. Not `virt`'s `job_stats`: that one
/// turns libvirt's parameter array into a `Vec` (a null pointer when there
/// are none, and never freed with `virTypedParamsFree`); here the array is
/// read with libvirt's own getters and freed by libvirt.
#[allow(unsafe_code)]
fn job_record(
    dom: &virt::domain::Domain,
    flags: virt::sys::virDomainGetJobStatsFlags,
) -> Result<JobRecord, LibvirtError> {
    use std::os::raw::{c_char, c_int, c_ulonglong};
    use virt::sys;
    let mut kind: c_int = 0;
    let mut params: sys::virTypedParameterPtr = std::ptr::null_mut();
    let mut n: c_int = 0;
    // SAFETY: a live domain handle while we hold `dom`; libvirt allocates
    // `params` (n entries, or null) and we free it below with its own free.
    let rc = unsafe {
        sys::virDomainGetJobStats(
            dom.as_ptr(),
            &raw mut kind,
            &raw mut params,
            &raw mut n,
            flags,
        )
    };
    if rc < 0 {
        return Err(virt::error::Error::last_error().into());
    }
    let mut op: c_int = 0;
    let mut msg: *const c_char = std::ptr::null();
    let (mut disk, mut data): (c_ulonglong, c_ulonglong) = (0, 0);
    // SAFETY: `params`/`n` are what libvirt returned (the getters accept a
    // null array with n = 0 and find nothing); the names are NUL-terminated
    // constants; a string found points into `params`, copied before the
    // free; `params` is freed exactly once.
    let record = unsafe {
        let has_op = sys::virTypedParamsGetInt(
            params,
            n,
            sys::VIR_DOMAIN_JOB_OPERATION.as_ptr(),
            &raw mut op,
        ) == 1;
        let has_msg = sys::virTypedParamsGetString(
            params,
            n,
            sys::VIR_DOMAIN_JOB_ERRMSG.as_ptr(),
            &raw mut msg,
        ) == 1;
        let error = (has_msg && !msg.is_null())
            .then(|| std::ffi::CStr::from_ptr(msg).to_string_lossy().into_owned());
        let has_disk = sys::virTypedParamsGetULLong(
            params,
            n,
            sys::VIR_DOMAIN_JOB_DISK_PROCESSED.as_ptr(),
            &raw mut disk,
        ) == 1;
        if !has_disk {
            sys::virTypedParamsGetULLong(
                params,
                n,
                sys::VIR_DOMAIN_JOB_DATA_PROCESSED.as_ptr(),
                &raw mut data,
            );
        }
        sys::virTypedParamsFree(params, n);
        JobRecord {
            kind,
            operation: has_op.then_some(op),
            error,
            bytes: if has_disk { disk } else { data },
        }
    };
    Ok(record)
}

/// A checkpoint handle (`virDomainCheckpointPtr`), freed on drop. `virt`
/// 0.5 has no checkpoint type; the calls are declared in `virt::sys`.
struct CheckpointRef(virt::sys::virDomainCheckpointPtr);

#[allow(unsafe_code)]
impl CheckpointRef {
    /// `virDomainCheckpointLookupByName`; `None` when the domain has no
    /// checkpoint of that name.
    fn lookup(dom: &virt::domain::Domain, name: &str) -> Result<Option<Self>, LibvirtError> {
        let name = std::ffi::CString::new(name).map_err(|e| LibvirtError::Xml(e.to_string()))?;
        // SAFETY: a live domain handle while we hold `dom`; `name` is
        // NUL-terminated and outlives the call; a non-null result is ours to free.
        let p =
            unsafe { virt::sys::virDomainCheckpointLookupByName(dom.as_ptr(), name.as_ptr(), 0) };
        if p.is_null() {
            let e = virt::error::Error::last_error();
            if matches!(
                e.code(),
                virt::enumutil::Enum::Known(virt::error::ErrorNumber::NoDomainCheckpoint)
            ) {
                return Ok(None);
            }
            return Err(e.into());
        }
        Ok(Some(Self(p)))
    }

    /// `virDomainCheckpointCreateXML(dom, xml, REDEFINE | REDEFINE_VALIDATE)`:
    /// the metadata of a checkpoint whose bitmap must already be in the image.
    fn redefine(dom: &virt::domain::Domain, xml: &str) -> Result<Self, LibvirtError> {
        let xml = std::ffi::CString::new(xml).map_err(|e| LibvirtError::Xml(e.to_string()))?;
        let flags = virt::sys::VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE
            | virt::sys::VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE;
        // SAFETY: as in `lookup`; libvirt only reads `xml`.
        let p =
            unsafe { virt::sys::virDomainCheckpointCreateXML(dom.as_ptr(), xml.as_ptr(), flags) };
        if p.is_null() {
            return Err(virt::error::Error::last_error().into());
        }
        Ok(Self(p))
    }

    /// `virDomainCheckpointDelete(ck, 0)`: the metadata and the bitmap (a
    /// child's bitmap absorbs what it needs, libvirt's rule).
    fn delete(self) -> Result<(), LibvirtError> {
        // SAFETY: a checkpoint handle we own; freed once by `Drop`.
        let rc = unsafe { virt::sys::virDomainCheckpointDelete(self.0, 0) };
        if rc < 0 {
            return Err(virt::error::Error::last_error().into());
        }
        Ok(())
    }

    /// Every checkpoint of `dom` (`virDomainListAllCheckpoints`).
    fn list(dom: &virt::domain::Domain) -> Result<Vec<Self>, LibvirtError> {
        let mut arr: *mut virt::sys::virDomainCheckpointPtr = std::ptr::null_mut();
        // SAFETY: a live domain handle; libvirt allocates `arr` with `n`
        // handles, each ours to free, and the array ours to free with free(3).
        let n = unsafe { virt::sys::virDomainListAllCheckpoints(dom.as_ptr(), &raw mut arr, 0) };
        if n < 0 {
            return Err(virt::error::Error::last_error().into());
        }
        let mut out = Vec::with_capacity(n as usize);
        if !arr.is_null() {
            for i in 0..n as usize {
                // SAFETY: `i < n` entries of the array libvirt returned.
                out.push(Self(unsafe { *arr.add(i) }));
            }
            // SAFETY: the array itself, allocated by libvirt's allocator (malloc).
            unsafe { libc::free(arr.cast()) };
        }
        Ok(out)
    }
}

impl Drop for CheckpointRef {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: a handle we own, freed exactly once here.
        unsafe {
            virt::sys::virDomainCheckpointFree(self.0);
        }
    }
}

/// Deletes every checkpoint of `dom` with its bitmap, best effort (logged):
/// before a live migration, because a transient domain's checkpoints do not
/// move with it — the destination knows none of them — while their bitmaps
/// would (QEMU stores them in the shared layer and the destination loads
/// them), tracking writes for nothing until the next copy removed them.
pub(super) fn drop_all_checkpoints(dom: &virt::domain::Domain) {
    let list = match CheckpointRef::list(dom) {
        Ok(l) => l,
        Err(e) => {
            if !e.is_unsupported() {
                tracing::warn!(error = %e, "could not list a domain's checkpoints");
            }
            return;
        }
    };
    for ck in list {
        if let Err(e) = ck.delete() {
            tracing::warn!(error = %e, "could not delete a checkpoint before a migration");
        }
    }
}

/// `virDomainBackupBegin(dom, xml, checkpoint, PRESERVE_SHUTDOWN_DOMAIN)`, or
/// without the flag where libvirt does not know it yet (it came with
/// libvirt 10.x; Debian 12 ships 9.0, which refuses it as an unsupported
/// flag): there a guest that powers off mid-copy fails the job, and the
/// layer is backed up by the next run, from the stopped VM's file.
fn backup_begin(
    dom: &virt::domain::Domain,
    xml: &str,
    checkpoint: &str,
) -> Result<(), LibvirtError> {
    let xml = std::ffi::CString::new(xml).map_err(|e| LibvirtError::Xml(e.to_string()))?;
    let checkpoint =
        std::ffi::CString::new(checkpoint).map_err(|e| LibvirtError::Xml(e.to_string()))?;
    let preserve = virt::sys::VIR_DOMAIN_BACKUP_BEGIN_PRESERVE_SHUTDOWN_DOMAIN;
    match backup_begin_with(dom, &xml, &checkpoint, preserve) {
        Err(e)
            if matches!(
                e.code(),
                virt::enumutil::Enum::Known(virt::error::ErrorNumber::InvalidArg)
            ) =>
        {
            backup_begin_with(dom, &xml, &checkpoint, 0).map_err(Into::into)
        }
        other => other.map_err(Into::into),
    }
}

#[allow(unsafe_code)]
fn backup_begin_with(
    dom: &virt::domain::Domain,
    xml: &std::ffi::CStr,
    checkpoint: &std::ffi::CStr,
    flags: std::os::raw::c_uint,
) -> Result<(), virt::error::Error> {
    // SAFETY: `dom.as_ptr()` is a live domain handle while we hold `dom`;
    // both XML strings are NUL-terminated, outlive the call, and libvirt
    // only reads them.
    let rc = unsafe {
        virt::sys::virDomainBackupBegin(dom.as_ptr(), xml.as_ptr(), checkpoint.as_ptr(), flags)
    };
    if rc < 0 {
        return Err(virt::error::Error::last_error());
    }
    Ok(())
}

/// `virDomainAbortJob(dom)`.
#[allow(unsafe_code)]
fn abort(dom: &virt::domain::Domain) -> Result<(), LibvirtError> {
    // SAFETY: `dom.as_ptr()` is a live domain handle while we hold `dom`.
    let rc = unsafe { virt::sys::virDomainAbortJob(dom.as_ptr()) };
    if rc < 0 {
        return Err(virt::error::Error::last_error().into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use virt::sys;

    #[test]
    fn the_backup_xml_copies_one_disk_to_the_target() {
        let xml =
            backup_xml("vda", Path::new("/data/backup/scratch/x/full.qcow2"), None).expect("xml");
        assert_eq!(
            xml,
            "<domainbackup mode=\"push\"><disks><disk name=\"vda\" backup=\"yes\" type=\"file\">\
             <target file=\"/data/backup/scratch/x/full.qcow2\"/><driver type=\"qcow2\"/>\
             </disk></disks></domainbackup>"
        );
        let xml =
            backup_xml("vda", Path::new("/d/inc.qcow2"), Some("pvce-backup-1a")).expect("xml");
        assert!(
            xml.starts_with(
                "<domainbackup mode=\"push\"><incremental>pvce-backup-1a</incremental><disks>"
            ),
            "{xml}"
        );
        // A checkpoint name is never anything but a plain token.
        assert!(matches!(
            backup_xml("vda", Path::new("/d/inc.qcow2"), Some("a b")),
            Err(LibvirtError::InvalidSpec(_))
        ));
    }

    #[test]
    fn checkpoint_xml_creates_or_redefines_one_bitmap() {
        let c = Checkpoint {
            name: "pvce-backup-ab12".into(),
            created_at: 1_796_482_279,
        };
        assert_eq!(
            checkpoint_xml("vda", &c, false).expect("xml"),
            "<domaincheckpoint><name>pvce-backup-ab12</name><disks>\
             <disk name=\"vda\" checkpoint=\"bitmap\"/></disks></domaincheckpoint>"
        );
        // Redefining needs the creation time and the bitmap's name.
        assert_eq!(
            checkpoint_xml("vda", &c, true).expect("xml"),
            "<domaincheckpoint><name>pvce-backup-ab12</name>\
             <creationTime>1796482279</creationTime><disks>\
             <disk name=\"vda\" checkpoint=\"bitmap\" bitmap=\"pvce-backup-ab12\"/>\
             </disks></domaincheckpoint>"
        );
        for bad in ["", "-x", "a/b", "a<b", &"x".repeat(65)] {
            let c = Checkpoint {
                name: bad.into(),
                created_at: 0,
            };
            assert!(checkpoint_xml("vda", &c, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_target_is_escaped_and_must_be_absolute() {
        let xml = backup_xml("vda", Path::new("/d/a'b\"<c>&.qcow2"), None).expect("xml");
        assert!(
            // `'` may stay as it is inside a double-quoted attribute.
            xml.contains("file=\"/d/a'b&quot;&lt;c&gt;&amp;.qcow2\"")
                || xml.contains("file=\"/d/a&apos;b&quot;&lt;c&gt;&amp;.qcow2\""),
            "{xml}"
        );
        assert!(matches!(
            backup_xml("vda", Path::new("rel.qcow2"), None),
            Err(LibvirtError::InvalidSpec(_))
        ));
    }

    #[test]
    fn a_job_is_done_only_when_a_backup_completed() {
        let bounded = sys::VIR_DOMAIN_JOB_BOUNDED as i32;
        let none = sys::VIR_DOMAIN_JOB_NONE as i32;
        let done = sys::VIR_DOMAIN_JOB_COMPLETED as i32;
        let failed = sys::VIR_DOMAIN_JOB_FAILED as i32;
        let backup = Some(sys::VIR_DOMAIN_JOB_OPERATION_BACKUP as i32);
        assert_eq!(job_state(bounded, None), JobState::Active);
        assert_eq!(
            job_state(none, Some((done, backup, None, 7))),
            JobState::Completed { bytes: 7 }
        );
        assert!(matches!(
            job_state(none, Some((failed, backup, Some("No space left on device".into()), 0))),
            JobState::Failed(m) if m.contains("No space")
        ));
        // A migration's record after the copy vanished is no success.
        let migration = Some(sys::VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT as i32);
        assert!(matches!(
            job_state(none, Some((done, migration, None, 1))),
            JobState::Failed(_)
        ));
        assert!(matches!(job_state(none, None), JobState::Failed(_)));
    }
}
