//! Portable personal environment: export a personal layer, import it again,
//! and see how full it is.
//!
//! **Export** (`GET /api/vms/{id}/export`, stopped VM only) is a tar archive of
//! two entries, in this order:
//! - `manifest.json` — a [`Manifest`]: the VM, the template it needs (id,
//!   name, OS, software), the template *chain* (every qcow2 layer the personal
//!   layer stands on, top first, each with its SHA-256) and `chain_sha256` (the
//!   SHA-256 of those digests, one hex line each), and the layer's own size and
//!   SHA-256;
//! - `layer.qcow2` — a compact copy of the personal layer
//!   (`qemu-img convert -B <template>`: only the student's clusters, no internal
//!   snapshots), whose backing file is the template by absolute path. To run
//!   it elsewhere, put a copy of the template beside it and
//!   [`Manifest::reattach_command`] (`qemu-img rebase -u`), or export standalone.
//!
//! With `?standalone=true` the download is instead one flattened, self-contained
//! qcow2 (`qemu-img convert` of the whole chain) that runs anywhere with
//! [`standalone_command`] (also sent as the `X-Pvce-Run-Command` header and in
//! the export info at `GET /api/vms/{id}/export/manifest`) or virt-manager.
//!
//! Why a copy, not the live file: the copy is made while holding the VM's
//! lifecycle lock (so the VM cannot start mid-copy and the bytes are
//! consistent), then the lock is released and the copy is streamed from an
//! unlinked temporary file (`ReaderStream`, never in memory). A slow or
//! stalled download therefore never keeps a student from starting their VM,
//! and a dropped connection leaves nothing behind. The cost is disk space for
//! one copy during the download; the copy of a personal layer is small, and a
//! standalone image has to be written somewhere anyway.
//!
//! **Import** (`POST /api/vms/{id}/import`, stopped VM) takes such an archive
//! (re-packed by GNU tar/bsdtar/busybox is fine, as long as `manifest.json`
//! comes first) and replaces the layer. Nothing in the upload is trusted:
//! 0. the archive holds `manifest.json`, then `layer.qcow2` beside it, and at
//!    most the folder they are in — any other member (a file, a link, a
//!    device, a FIFO, an absolute or `..` name, anything after the layer)
//!    refuses it with 422 `unsafe_archive` naming the member;
//! 1. the manifest's `chain_sha256` must equal the chain of *this VM's*
//!    template (same bytes, so an export from another pvce with the same
//!    template is accepted too) — else 422 `template_mismatch`, decided before
//!    the layer is read;
//! 2. the layer streams to a private upload file, its size and SHA-256 must
//!    match the manifest (422 `corrupt_export`);
//! 3. [`crate::images::inspect::inspect_layer`] — our own header parser —
//!    checks it is qcow2 with *some* backing file, no data file, no encryption,
//!    no unknown features, no internal snapshots, and the template's virtual size
//!    (422 `unsafe_image` / `invalid_layer`); its backing name is never opened;
//! 4. `qemu-img rebase -u -f qcow2 -b <our template path> -F qcow2` replaces
//!    the backing reference by our own without opening either file; this is
//!    correct because step 1 proved the layer was made on this very template;
//! 5. `qemu-img info` (backing = our template, qcow2) and `qemu-img check`;
//! 6. under the VM lock, still stopped: the old layer is hard-linked as a
//!    backup snapshot (see [`crate::vms::snapshots`]), the new one renamed into place.
//!
//! **Disk usage** (`GET /api/vms/{id}/disk`): the layer's bytes on disk always;
//! for a stopped VM also the guest file system's size and free space, read
//! offline from the ext2/3/4 superblock and group descriptors — with the
//! committed transactions of the guest's journal applied in memory, since a
//! powered-off guest leaves its newest counts there — through read-only
//! `qemu-img convert` windows of the disk (no mount, no nbd, no FUSE; MBR disks
//! with a Linux partition or a bare file system). A running VM's layer is never
//! opened: `fs_*` are null.

pub mod ext4;
pub mod tar;

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::audit::Action;
use crate::db::{self, Pool};
use crate::images::inspect::InspectLimits;
use crate::images::{self, ImageError, ImageFormat, qemu_img};
use crate::storage::{self, FileGuard, Storage};
use crate::templates::chain::{self, ChainLayer};
use crate::templates::{self, ImportLimits, Template, TemplateError};
use crate::users::User;
use crate::vms::layers::LayerStorage;
use crate::vms::snapshots::{self, Snapshot, SnapshotKind};
use crate::vms::{self, Vm, VmError, VmManager, VmState};

pub const MANIFEST_NAME: &str = "manifest.json";
pub const LAYER_NAME: &str = "layer.qcow2";
pub const MANIFEST_FORMAT: &str = "pvce-layer";
pub const MANIFEST_VERSION: u32 = 1;
/// Largest manifest accepted.
const MAX_MANIFEST: u64 = 1 << 20;
/// Bytes of pax/GNU metadata headers tolerated in one archive.
const MAX_METADATA: u64 = 1 << 20;
/// Directory entries tolerated before the manifest (a re-packed folder has one or two).
const MAX_DIRS: usize = 16;
/// How much of a refused upload is read and dropped so the client sees the answer.
const DRAIN_LIMIT: u64 = 64 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestTemplate {
    pub id: Uuid,
    pub name: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub software: Vec<String>,
    pub virtual_size_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestVm {
    pub id: Uuid,
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestLayer {
    /// Name of the layer's entry in the archive (`layer.qcow2`).
    pub file: String,
    pub format: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub virtual_size_bytes: u64,
}

/// `manifest.json` of an export archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Always [`MANIFEST_VERSION`] for now.
    pub version: u32,
    pub exported_at: String,
    pub vm: ManifestVm,
    pub template: ManifestTemplate,
    /// The layers under the personal layer, the template's own first.
    pub chain: Vec<ChainLayer>,
    /// SHA-256 over the chain's digests (`<hex>\n` each, top first).
    pub chain_sha256: String,
    pub layer: ManifestLayer,
    /// How to re-attach `layer.qcow2` to a local copy of the template.
    pub reattach_command: String,
}

/// What the download page shows before the download (`GET .../export/manifest`).
#[derive(Debug, Clone, Serialize)]
pub struct ExportInfo {
    pub vm: ManifestVm,
    pub vm_state: VmState,
    pub template: ManifestTemplate,
    pub chain: Vec<ChainLayer>,
    pub chain_sha256: String,
    /// The archive (`manifest.json` + `layer.qcow2`), re-importable.
    pub download_url: String,
    pub archive_file: String,
    pub archive_entries: [&'static str; 2],
    /// A flattened, self-contained qcow2 that runs with plain QEMU.
    pub standalone_url: String,
    pub standalone_file: String,
    pub standalone_command: String,
    pub reattach_command: String,
    pub import_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PortableError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Snapshot(#[from] snapshots::SnapshotError),
    /// The upload is not a readable export archive (→ 400 `bad_archive`).
    #[error("{0}")]
    BadArchive(String),
    /// A member that is not part of an export, or a path that escapes (→ 422
    /// `unsafe_archive`).
    #[error("{0}")]
    UnsafeArchive(String),
    /// The layer does not match the manifest's checksum (→ 422 `corrupt_export`).
    #[error("{0}")]
    CorruptExport(String),
    /// An export format version this server does not read (→ 422 `unsupported_export`).
    #[error("{0}")]
    UnsupportedExport(String),
    /// The export was made on another template chain (→ 422 `template_mismatch`).
    #[error("{0}")]
    TemplateMismatch(String),
    /// qemu-img refuses the layer (→ 422 `invalid_layer`).
    #[error("{0}")]
    InvalidLayer(String),
    #[error("the layer is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("upload interrupted: {0}")]
    Interrupted(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("storage error: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

// ------------------------------------------------------------ checksums

// --------------------------------------------------------------- export

/// A file-name-safe short label of a VM: `pvce-<name>-<id prefix>`.
fn file_stem(vm: &Vm) -> String {
    let name: String = vm
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let name = name.trim_matches('-');
    let id = vm.id.simple().to_string();
    if name.is_empty() {
        format!("pvce-vm-{}", &id[..8])
    } else {
        format!("pvce-{name}-{}", &id[..8])
    }
}

pub fn archive_file_name(vm: &Vm) -> String {
    format!("{}.tar", file_stem(vm))
}

pub fn standalone_file_name(vm: &Vm) -> String {
    format!("{}-standalone.qcow2", file_stem(vm))
}

/// The command that boots a standalone export with plain QEMU (KVM if the
/// machine has it, TCG otherwise; virtio disk and NIC as in pvce).
pub fn standalone_command(file: &str, vcpus: u32, memory_mib: u32) -> String {
    format!(
        "qemu-system-x86_64 -accel kvm -accel tcg -m {memory_mib} -smp {vcpus} \
         -drive file={file},format=qcow2,if=virtio -nic user,model=virtio-net-pci"
    )
}

fn reattach_command(template_name: &str) -> String {
    let file: String = template_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("qemu-img rebase -u -f qcow2 -b /absolute/path/to/{file}.qcow2 -F qcow2 {LAYER_NAME}")
}

fn manifest_vm(vm: &Vm) -> ManifestVm {
    ManifestVm {
        id: vm.id,
        name: vm.name.clone(),
        vcpus: vm.vcpus,
        memory_mib: vm.memory_mib,
    }
}

fn manifest_template(t: &Template) -> ManifestTemplate {
    ManifestTemplate {
        id: t.id,
        name: t.name.clone(),
        os: t.os.clone(),
        software: t.software.clone(),
        virtual_size_bytes: t.virtual_size_bytes,
    }
}

/// What the download page needs (works whatever the VM's state).
pub async fn export_info(
    pool: &Pool,
    storage: &Storage,
    vm: &Vm,
) -> Result<ExportInfo, PortableError> {
    let (t, chain, chain_sha256) = chain::template_chain(pool, storage, vm.template_id).await?;
    let standalone_file = standalone_file_name(vm);
    Ok(ExportInfo {
        vm: manifest_vm(vm),
        vm_state: vm.state,
        template: manifest_template(&t),
        chain,
        chain_sha256,
        download_url: format!("/api/vms/{}/export", vm.id),
        archive_file: archive_file_name(vm),
        archive_entries: [MANIFEST_NAME, LAYER_NAME],
        standalone_url: format!("/api/vms/{}/export?standalone=true", vm.id),
        standalone_command: standalone_command(&standalone_file, vm.vcpus, vm.memory_mib),
        standalone_file,
        reattach_command: reattach_command(&t.name),
        import_url: format!("/api/vms/{}/import", vm.id),
    })
}

/// A prepared download: an open, already unlinked file and how to present it.
#[derive(Debug)]
pub struct Export {
    pub file: tokio::fs::File,
    pub size: u64,
    pub file_name: String,
    /// For the layer archive: the manifest (streamed before the layer).
    pub manifest: Option<Manifest>,
    /// For a standalone image: the command that boots it.
    pub run_command: Option<String>,
}

/// Export and import as a user reaches them: the VM's access rule
/// ([`VmManager::get_for_layer`]) first, the upload limits of the settings.
#[derive(Debug)]
pub struct Portable {
    pool: Pool,
    storage: Storage,
    vms: Arc<VmManager>,
    limits: ImportLimits,
}

impl Portable {
    pub fn new(pool: Pool, storage: Storage, vms: Arc<VmManager>, limits: ImportLimits) -> Self {
        Self {
            pool,
            storage,
            vms,
            limits,
        }
    }

    /// The VM's layer as an archive (or a standalone image), ready to stream.
    pub async fn export(
        &self,
        user: &User,
        vm_id: Uuid,
        standalone: bool,
    ) -> Result<Export, PortableError> {
        let vm = self.vms.get_for_layer(user, vm_id).await?;
        let result = export(&self.pool, &self.vms, &self.storage, vm.id, standalone).await;
        let detail = serde_json::json!({ "standalone": standalone });
        self.record(user, &vm, Action::LayerExport, &result, detail)
            .await;
        result
    }

    /// Records an export or import of `vm`'s layer by `user`.
    async fn record(
        &self,
        user: &User,
        vm: &Vm,
        action: Action,
        result: &Result<impl Sized, PortableError>,
        mut detail: serde_json::Value,
    ) {
        let (target, _, _) = vms::audit_target(&self.pool, vm).await;
        detail["owner_id"] = serde_json::json!(vm.owner_id);
        let actor = crate::audit::Actor::user(user.id, &user.username);
        let entry = crate::audit::Entry::new(actor, action, target).result(result, detail);
        crate::audit::record(&self.pool, entry).await;
    }

    /// What an export of the VM would contain, without making it.
    pub async fn manifest(&self, user: &User, vm_id: Uuid) -> Result<ExportInfo, PortableError> {
        self.vms.get_for_layer(user, vm_id).await?;
        let vm = self.vms.refresh(vm_id).await?;
        export_info(&self.pool, &self.storage, &vm).await
    }

    /// Admits an upload before its body is read: the user may reach the VM,
    /// and a declared length is within the limit (the archive adds a few
    /// blocks to the layer, hence the 1 MiB of slack).
    pub async fn admit_import(
        &self,
        user: &User,
        vm_id: Uuid,
        declared_len: Option<u64>,
    ) -> Result<Uuid, PortableError> {
        let vm = self.vms.get_for_layer_write(user, vm_id).await?;
        let max = self.limits.max_upload_bytes;
        if declared_len.is_some_and(|n| n > max.saturating_add(1 << 20)) {
            return Err(PortableError::TooLarge(max));
        }
        Ok(vm.id)
    }

    /// Imports an archive into an admitted VM ([`Portable::admit_import`]).
    pub async fn import<S, E>(
        &self,
        user: &User,
        vm_id: Uuid,
        body: S,
    ) -> Result<ImportOutcome, PortableError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let body = body.map(|r| r.map_err(|e| io::Error::other(e.to_string())));
        let mut reader = ArchiveReader {
            inner: tokio_util::io::StreamReader::new(body),
        };
        let result = import_inner(
            &self.pool,
            &self.vms,
            &self.storage,
            self.limits,
            vm_id,
            &mut reader,
        )
        .await;
        // Let the client read the answer instead of a reset connection.
        reader.drain().await;
        if let Ok(vm) = self.vms.get_for(user, vm_id).await {
            let detail = match &result {
                Ok(o) => serde_json::json!({ "backup_snapshot": o.backup.id }),
                Err(_) => serde_json::json!({}),
            };
            self.record(user, &vm, Action::LayerImport, &result, detail)
                .await;
        }
        result
    }

    /// The layer's size and, for a stopped VM, its file-system usage.
    pub async fn disk_usage(&self, user: &User, vm_id: Uuid) -> Result<DiskUsage, PortableError> {
        let vm = self.vms.get_for_layer(user, vm_id).await?;
        disk_usage(&self.pool, &self.vms, vm.id).await
    }
}

/// Copies a stopped VM's layer (compact, or flattened if `standalone`) into
/// a private temporary file under the VM's lock, and opens it for streaming.
async fn export(
    pool: &Pool,
    vms: &VmManager,
    storage: &Storage,
    vm_id: Uuid,
    standalone: bool,
) -> Result<Export, PortableError> {
    let vm = vms::load(pool, vm_id).await?;
    // Checksums first (slow only the first time), outside the lock.
    let (t, chain, chain_sha256) = chain::template_chain(pool, storage, vm.template_id).await?;
    let tmp = storage.upload_path().with_extension("export.qcow2");
    let mut guard = FileGuard::new(tmp.clone());
    let vm = {
        let lock = vms.lock_for(vm_id);
        let _held = lock.lock().await;
        let vm = snapshots::reload(vms, vm_id).await?;
        snapshots::ensure_stopped(&vm, "exporting")?;
        let _work = vms.checkout_layer(&vm).await?;
        snapshots::settle(&vm.overlay_path).await?;
        if standalone {
            qemu_img::convert_to_qcow2(&vm.overlay_path, ImageFormat::Qcow2, &tmp).await?;
        } else {
            qemu_img::convert_to_overlay(&vm.overlay_path, &storage.template_path(t.id), &tmp)
                .await?;
        }
        vm
    };
    let sha256 = if standalone {
        None
    } else {
        Some(storage::sha256_file(&tmp).await?)
    };
    crate::crashpoint::hit("layer_export.copy_written");
    let file = tokio::fs::File::open(&tmp).await?;
    let size = file.metadata().await?.len();
    // The open handle keeps the data; the name goes now, so nothing is left
    // behind however the download ends.
    storage::remove_file_if_exists(&tmp)?;
    guard.disarm();
    crate::crashpoint::hit("layer_export.copy_unlinked");
    if standalone {
        let file_name = standalone_file_name(&vm);
        return Ok(Export {
            file,
            size,
            run_command: Some(standalone_command(&file_name, vm.vcpus, vm.memory_mib)),
            file_name,
            manifest: None,
        });
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        version: MANIFEST_VERSION,
        exported_at: db::now(),
        vm: manifest_vm(&vm),
        template: manifest_template(&t),
        chain,
        chain_sha256,
        layer: ManifestLayer {
            file: LAYER_NAME.into(),
            format: "qcow2".into(),
            size_bytes: size,
            sha256: sha256.unwrap_or_default(),
            virtual_size_bytes: t.virtual_size_bytes,
        },
        reattach_command: reattach_command(&t.name),
    };
    Ok(Export {
        file,
        size,
        file_name: archive_file_name(&vm),
        manifest: Some(manifest),
        run_command: None,
    })
}

/// The byte stream of a download and its exact length.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

impl Export {
    /// The body to send: the tar archive (manifest, layer, end marker) or the
    /// standalone image, streamed from the file.
    pub fn into_stream(self) -> Result<(u64, ByteStream), PortableError> {
        let file = tokio_util::io::ReaderStream::with_capacity(self.file, 256 << 10);
        let Some(manifest) = self.manifest else {
            return Ok((self.size, Box::pin(file)));
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
        let mtime = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let mut head = Vec::with_capacity(3 * tar::BLOCK + json.len());
        head.extend_from_slice(&tar::header(MANIFEST_NAME, json.len() as u64, mtime));
        head.extend_from_slice(&json);
        head.resize(head.len() + tar::padding(json.len() as u64), 0);
        head.extend_from_slice(&tar::header(LAYER_NAME, self.size, mtime));
        let mut tail = vec![0u8; tar::padding(self.size)];
        tail.extend_from_slice(&tar::END);
        let total =
            tar::entry_len(json.len() as u64) + tar::entry_len(self.size) + tar::END.len() as u64;
        let stream = futures::stream::once(async move { Ok(Bytes::from(head)) })
            .chain(file)
            .chain(futures::stream::once(async move { Ok(Bytes::from(tail)) }));
        Ok((total, Box::pin(stream)))
    }
}

// --------------------------------------------------------------- import

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportOutcome {
    pub vm: Vm,
    /// The former layer, kept as a backup snapshot (revert to undo the import).
    pub backup: Snapshot,
}

/// Reads an archive from the request body with errors mapped for the API.
struct ArchiveReader<R> {
    inner: R,
}

impl<R: AsyncRead + Unpin> ArchiveReader<R> {
    fn map_err(e: io::Error) -> PortableError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            PortableError::BadArchive("the archive is truncated".into())
        } else {
            PortableError::Interrupted(e.to_string())
        }
    }

    async fn exact(&mut self, buf: &mut [u8]) -> Result<(), PortableError> {
        self.inner
            .read_exact(buf)
            .await
            .map(|_| ())
            .map_err(Self::map_err)
    }

    /// The next header block; `None` if the stream ends right here and
    /// `may_end` (an archive whose end marker was cut off after the layer).
    async fn block_or_end(
        &mut self,
        may_end: bool,
    ) -> Result<Option<[u8; tar::BLOCK]>, PortableError> {
        let mut b = [0u8; tar::BLOCK];
        let mut got = 0;
        while got < b.len() {
            let n = self
                .inner
                .read(&mut b[got..])
                .await
                .map_err(Self::map_err)?;
            if n == 0 {
                if got == 0 && may_end {
                    return Ok(None);
                }
                return Err(PortableError::BadArchive("the archive is truncated".into()));
            }
            got += n;
        }
        Ok(Some(b))
    }

    async fn data(&mut self, size: u64, limit: u64, what: &str) -> Result<Vec<u8>, PortableError> {
        if size > limit {
            return Err(PortableError::BadArchive(format!("{what} is too large")));
        }
        let mut v = vec![0u8; size as usize];
        self.exact(&mut v).await?;
        self.skip(tar::padding(size) as u64).await?;
        Ok(v)
    }

    async fn skip(&mut self, n: u64) -> Result<(), PortableError> {
        let copied = tokio::io::copy(&mut (&mut self.inner).take(n), &mut tokio::io::sink())
            .await
            .map_err(Self::map_err)?;
        if copied < n {
            return Err(PortableError::BadArchive("the archive is truncated".into()));
        }
        Ok(())
    }

    /// Reads and drops what is left, up to a bound.
    async fn drain(&mut self) {
        let _ = tokio::io::copy(
            &mut (&mut self.inner).take(DRAIN_LIMIT),
            &mut tokio::io::sink(),
        )
        .await;
    }

    /// Copies `size` bytes of layer into `path` (created, private), returning
    /// its SHA-256.
    async fn receive(&mut self, path: &Path, size: u64) -> Result<String, PortableError> {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .await?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = self
                .inner
                .read(&mut buf[..want])
                .await
                .map_err(Self::map_err)?;
            if n == 0 {
                return Err(PortableError::BadArchive("the archive is truncated".into()));
            }
            hash.update(&buf[..n]);
            file.write_all(&buf[..n]).await?;
            left -= n as u64;
        }
        file.flush().await?;
        Ok(storage::sha256_hex(hash.finalize()))
    }
}

/// What the archive held, once the layer is in `upload`.
#[derive(Debug)]
struct Received {
    manifest: Manifest,
    sha256: String,
}

/// Refuses an archive member that is not part of an export: 422
/// `unsafe_archive`, naming the member (escaped and cut short: it is
/// untrusted text).
fn foreign_member(name: &str, why: &str) -> PortableError {
    let shown: String = name.chars().take(200).collect();
    PortableError::UnsafeArchive(format!(
        "the archive member {shown:?} {why}; a pvce export holds only {MANIFEST_NAME} and \
             {LAYER_NAME} (tar cf export.tar {MANIFEST_NAME} {LAYER_NAME})"
    ))
}

/// Walks the whole archive: `manifest.json` (checked by `accept`), then
/// `layer.qcow2` beside it into `upload`, then the end of the archive.
/// pax/GNU metadata entries are honoured, and directories that hold the two
/// files (an archive re-packed in a folder) are tolerated; any other member
/// — another file, a link, a device, a FIFO, an absolute or `..` name,
/// anything after the layer — refuses the whole archive, so what pvce
/// accepts is exactly what the manifest describes.
async fn read_archive<R, F>(
    reader: &mut ArchiveReader<R>,
    upload: &Path,
    max_layer: u64,
    mut accept: F,
) -> Result<Received, PortableError>
where
    R: AsyncRead + Unpin,
    F: FnMut(&Manifest) -> Result<(), PortableError>,
{
    // The manifest and the directory it sits in (the layer must be beside it).
    let mut manifest: Option<(Manifest, Vec<String>)> = None;
    let mut received: Option<Received> = None;
    // Directory entries seen before the manifest (checked once it is found).
    let mut dirs: Vec<(String, Vec<String>)> = Vec::new();
    let (mut next_name, mut next_size): (Option<String>, Option<u64>) = (None, None);
    let mut metadata = 0u64;
    loop {
        // After the layer, the archive may end without its end marker.
        let Some(h) = reader.block_or_end(received.is_some()).await? else {
            break;
        };
        let entry = tar::parse_header(&h)
            .map_err(|e| PortableError::BadArchive(format!("not a pvce export archive: {e}")))?;
        let Some(entry) = entry else {
            if received.is_some() {
                break;
            }
            return Err(PortableError::BadArchive(format!(
                "the archive has no {}",
                if manifest.is_some() {
                    LAYER_NAME
                } else {
                    MANIFEST_NAME
                }
            )));
        };
        match entry.kind {
            tar::Kind::PaxNext => {
                let data = reader.data(entry.size, 64 << 10, "a pax header").await?;
                let (p, s) =
                    tar::parse_pax(&data).map_err(|e| PortableError::BadArchive(e.to_string()))?;
                next_name = p.or(next_name);
                next_size = s.or(next_size);
                metadata += entry.size;
            }
            tar::Kind::LongName => {
                let data = reader.data(entry.size, 4096, "a long name").await?;
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                next_name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
                metadata += entry.size;
            }
            tar::Kind::PaxGlobal => {
                reader.data(entry.size, 64 << 10, "a pax header").await?;
                metadata += entry.size;
            }
            _ => {}
        }
        if metadata > MAX_METADATA {
            return Err(PortableError::BadArchive(
                "the archive holds too many headers".into(),
            ));
        }
        if matches!(
            entry.kind,
            tar::Kind::PaxNext | tar::Kind::LongName | tar::Kind::PaxGlobal
        ) {
            continue;
        }
        let name = next_name.take().unwrap_or(entry.name);
        let size = next_size.take().unwrap_or(entry.size);
        let path: Vec<String> = tar::member_path(&name)
            .map_err(|why| foreign_member(&name, &why.to_string()))?
            .into_iter()
            .map(str::to_owned)
            .collect();
        if received.is_some() {
            return Err(foreign_member(&name, &format!("comes after {LAYER_NAME}")));
        }
        match entry.kind {
            tar::Kind::File => {}
            tar::Kind::Directory => {
                if size > 0 {
                    return Err(foreign_member(&name, "is a directory with contents"));
                }
                match &manifest {
                    Some((_, top)) if top.starts_with(&path) => {}
                    Some(_) => {
                        return Err(foreign_member(
                            &name,
                            &format!("is a directory that does not hold {MANIFEST_NAME}"),
                        ));
                    }
                    None if dirs.len() >= MAX_DIRS => {
                        return Err(foreign_member(&name, "is one directory too many"));
                    }
                    None => dirs.push((name, path)),
                }
                continue;
            }
            other => return Err(foreign_member(&name, &format!("is {}", other.describe()))),
        }
        let Some((base, dir)) = path.split_last() else {
            return Err(foreign_member(&name, "has no file name"));
        };
        if base == MANIFEST_NAME && manifest.is_none() {
            if let Some((other, _)) = dirs.iter().find(|(_, d)| !dir.starts_with(d)) {
                return Err(foreign_member(
                    other,
                    &format!("is a directory that does not hold {MANIFEST_NAME}"),
                ));
            }
            let data = reader.data(size, MAX_MANIFEST, "manifest.json").await?;
            let m: Manifest = serde_json::from_slice(&data).map_err(|e| {
                PortableError::BadArchive(format!("manifest.json is not a pvce manifest: {e}"))
            })?;
            if m.format != MANIFEST_FORMAT || m.version != MANIFEST_VERSION {
                return Err(PortableError::UnsupportedExport(format!(
                    "this archive is {:?} version {}; pvce reads {MANIFEST_FORMAT:?} version {MANIFEST_VERSION}",
                    m.format.chars().take(40).collect::<String>(),
                    m.version
                )));
            }
            accept(&m)?;
            manifest = Some((m, dir.to_vec()));
            continue;
        }
        if base == LAYER_NAME {
            let Some((m, top)) = manifest.take() else {
                return Err(PortableError::BadArchive(format!(
                    "{MANIFEST_NAME} must come before {LAYER_NAME} in the archive \
                     (tar cf export.tar {MANIFEST_NAME} {LAYER_NAME})"
                )));
            };
            if dir != top.as_slice() {
                return Err(foreign_member(
                    &name,
                    &format!("is not in the directory of {MANIFEST_NAME}"),
                ));
            }
            if size > max_layer {
                return Err(PortableError::TooLarge(max_layer));
            }
            if size != m.layer.size_bytes {
                return Err(PortableError::CorruptExport(format!(
                    "{LAYER_NAME} has {size} bytes but the manifest says {}",
                    m.layer.size_bytes
                )));
            }
            let sha256 = reader.receive(upload, size).await?;
            reader.skip(tar::padding(size) as u64).await?;
            received = Some(Received {
                manifest: m,
                sha256,
            });
            continue;
        }
        return Err(foreign_member(&name, "is not part of a pvce export"));
    }
    // Only reached once the layer is in (every other way out returns early).
    received.ok_or_else(|| PortableError::BadArchive(format!("the archive has no {LAYER_NAME}")))
}

/// Moves a file into another directory: rename, or copy + remove across
/// file systems (uploads and layers may live on different mounts).
async fn move_file(from: &Path, to: &Path) -> io::Result<()> {
    match tokio::fs::rename(from, to).await {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(18) => {
            // EXDEV
            if let Err(e) = tokio::fs::copy(from, to).await {
                let _ = storage::remove_file_if_exists(to);
                return Err(e);
            }
            storage::remove_file_if_exists(from)
        }
        Err(e) => Err(e),
    }
}

/// A qemu-img failure on an upload our inspection accepted means the upload
/// is damaged, not that the server is broken (nor full: that stays a 507).
fn upload_image_error(e: ImageError) -> PortableError {
    match e {
        ImageError::QemuImg { .. } | ImageError::Timeout { .. }
            if crate::space::full_storage(&e).is_none() =>
        {
            tracing::warn!(error = %e, "qemu-img rejected an imported layer");
            PortableError::InvalidLayer(
                "qemu-img could not read the layer; it may be damaged".into(),
            )
        }
        other => other.into(),
    }
}

/// Imports an export archive as the new layer of a stopped VM (see the
/// module docs for every check). The caller has checked access.
async fn import_inner<R: AsyncRead + Unpin>(
    pool: &Pool,
    vms: &VmManager,
    storage: &Storage,
    limits: ImportLimits,
    vm_id: Uuid,
    reader: &mut ArchiveReader<R>,
) -> Result<ImportOutcome, PortableError> {
    // Early answer before the upload is read (state refreshed from the node
    // unless a start/stop is in flight); re-checked under the lock before
    // anything changes.
    let vm = vms.refresh(vm_id).await?;
    snapshots::ensure_stopped(&vm, "importing a layer")?;
    let (t, _chain, chain_sha256) = chain::template_chain(pool, storage, vm.template_id).await?;
    let template_path = storage.template_path(t.id);

    let upload = storage.upload_path();
    let mut upload_guard = FileGuard::new(upload.clone());
    let received = read_archive(reader, &upload, limits.max_upload_bytes, |m| {
        if m.chain_sha256 != chain_sha256 {
            return Err(PortableError::TemplateMismatch(format!(
                "this layer was made on template {:?} ({}), which is not this VM's template {:?} \
                     (or not the same bytes); it can only be imported into a VM on that template",
                m.template.name.chars().take(100).collect::<String>(),
                m.template.id,
                t.name
            )));
        }
        Ok(())
    })
    .await?;
    crate::crashpoint::hit("layer_import.upload_received");
    if received.sha256 != received.manifest.layer.sha256 {
        return Err(PortableError::CorruptExport(format!(
            "{LAYER_NAME} does not match the SHA-256 in the manifest; the copy is damaged"
        )));
    }

    // Our own header inspection before any qemu tool opens the file, then
    // the upload's backing name replaced by the VM's template (shared with
    // child-template imports, see `images::adopt_layer`).
    let inspect_limits = InspectLimits {
        max_virtual_size: limits.max_virtual_size,
    };
    images::adopt_layer(
        &upload,
        &template_path,
        t.virtual_size_bytes,
        &inspect_limits,
    )
    .await
    .map_err(|e| match e {
        ImageError::BadLayer(m) => PortableError::InvalidLayer(m),
        other => upload_image_error(other),
    })?;

    // Stage beside the layer (same file system), then swap under the lock.
    let staged = storage::temp_beside(&vm.overlay_path);
    move_file(&upload, &staged).await?;
    upload_guard.disarm();
    crate::crashpoint::hit("layer_import.staged");
    let mut staged_guard = FileGuard::new(staged.clone());
    let lock = vms.lock_for(vm_id);
    let _held = lock.lock().await;
    let vm = snapshots::reload(vms, vm_id).await?;
    snapshots::ensure_stopped(&vm, "importing a layer")?;
    let mut work = vms.checkout_layer(&vm).await?;
    snapshots::settle(&vm.overlay_path).await?;
    let backup = Snapshot {
        id: Uuid::new_v4(),
        vm_id: vm.id,
        name: format!("before import {}", db::now()),
        kind: SnapshotKind::Backup,
        size_bytes: Some(tokio::fs::metadata(&vm.overlay_path).await?.len()),
        created_at: db::now(),
    };
    let backup_file = snapshots::backup_path(&vm, backup.id);
    // A hard link: the layer's name exists at every moment.
    tokio::fs::hard_link(&vm.overlay_path, &backup_file).await?;
    crate::crashpoint::hit("layer_import.backup_linked");
    if let Err(e) = storage::install_file(&staged, &vm.overlay_path).await {
        let _ = storage::remove_file_if_exists(&backup_file);
        return Err(e.into());
    }
    staged_guard.disarm();
    crate::crashpoint::hit("layer_import.layer_installed");
    // A node-local layer: the new one goes to the node before anything
    // records the import.
    if let Err(e) = work.commit().await {
        let _ = storage::remove_file_if_exists(&backup_file);
        return Err(VmError::from(e).into());
    }
    let old = match snapshots::record_import_backup(pool, &backup).await {
        Ok(old) => old,
        Err(e) => {
            // The new layer is in place; only the backup record is missing.
            tracing::error!(vm = %vm.id, error = %e, "import: could not record the backup");
            let _ = storage::remove_file_if_exists(&backup_file);
            return Err(e.into());
        }
    };
    crate::crashpoint::hit("layer_import.backup_recorded");
    for id in old {
        if let Err(e) = storage::remove_file_if_exists(&snapshots::backup_path(&vm, id)) {
            tracing::warn!(vm = %vm.id, error = %e, "could not remove an older backup layer");
        }
    }
    tracing::info!(vm = %vm.id, template = %t.id, "imported a personal layer");
    Ok(ImportOutcome {
        vm: vms::load(pool, vm.id).await?,
        backup,
    })
}

// ----------------------------------------------------------- disk usage

/// How full a personal layer is (`GET /api/vms/{id}/disk`).
#[derive(Debug, Clone, Serialize)]
pub struct DiskUsage {
    pub vm_id: Uuid,
    pub state: VmState,
    /// Bytes the personal layer occupies on the host (sparse-aware).
    pub overlay_bytes: u64,
    /// Bytes of backup snapshots kept beside it.
    pub backup_bytes: u64,
    /// The guest disk's size.
    pub virtual_size_bytes: u64,
    /// The guest root file system's size (all blocks), if read.
    pub fs_size_bytes: Option<u64>,
    /// What an ordinary user can still write (`df`'s "Avail"), if read.
    pub fs_free_bytes: Option<u64>,
    /// Percentage of the file system in use, if read.
    pub fs_used_percent: Option<u8>,
    /// False if the guest was powered off without unmounting and its journal
    /// could not be read: the numbers may miss its last writes.
    pub fs_clean: Option<bool>,
    /// Less than 10 % of the file system is free.
    pub warning: bool,
    /// Why the `fs_*` fields are null, when they are.
    pub note: Option<String>,
}

fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// Reads the guest's root file system usage from a stopped VM's layer.
async fn read_fs(layer: &Path) -> Result<Option<ext4::FsUsage>, ImageError> {
    let mbr = qemu_img::read_guest(layer, 0, 512).await?;
    let offset = match crate::images::partition::linux_partition_offset(&mbr) {
        Some(o) => o,
        None => {
            // A disk that is one bare file system.
            let sb =
                qemu_img::read_guest(layer, ext4::SUPERBLOCK_OFFSET, ext4::SUPERBLOCK_LEN).await?;
            if !ext4::has_magic(&sb) {
                return Ok(None);
            }
            0
        }
    };
    let raw = qemu_img::read_guest(
        layer,
        offset + ext4::SUPERBLOCK_OFFSET,
        ext4::SUPERBLOCK_LEN,
    )
    .await?;
    let Ok(sb) = ext4::Superblock::parse(&raw) else {
        return Ok(None);
    };
    let mut gdt = match sb.gdt_range() {
        Some((start, len)) if len > 0 && len <= qemu_img::MAX_GUEST_READ as u64 => {
            Some(qemu_img::read_guest(layer, offset + start, len as usize).await?)
        }
        _ => None,
    };
    // A guest powered off without unmounting keeps its newest descriptors in
    // the journal: apply the committed ones (read-only).
    let mut replayed = false;
    if let Some(table) = gdt.as_mut() {
        let read = |o: u64, n: usize| qemu_img::read_guest(layer, offset + o, n);
        match ext4::replay_gdt(&sb, table, read).await {
            Ok(r) => replayed = r,
            Err(e) => tracing::warn!(error = %e, "could not read the guest's journal"),
        }
    }
    Ok(Some(sb.usage_replayed(gdt.as_deref(), replayed)))
}

/// Layer size always; file-system usage only for a stopped VM (read under its
/// lock so it cannot start meanwhile).
async fn disk_usage(pool: &Pool, vms: &VmManager, vm_id: Uuid) -> Result<DiskUsage, PortableError> {
    let lock = vms.lock_for(vm_id);
    let _held = lock.lock().await;
    let vm = snapshots::reload(vms, vm_id).await?;
    let t = templates::get(pool, vm.template_id).await?;
    let backup_bytes = snapshots::list(pool, vm.id)
        .await?
        .iter()
        .filter(|s| s.kind == SnapshotKind::Backup)
        .map(|s| allocated_bytes(&snapshots::backup_path(&vm, s.id)))
        .sum();
    let mut usage = DiskUsage {
        vm_id: vm.id,
        state: vm.state,
        overlay_bytes: match vm.layer_storage {
            LayerStorage::Shared => allocated_bytes(&vm.overlay_path),
            LayerStorage::NodeLocal => vm.overlay_bytes,
        },
        backup_bytes,
        virtual_size_bytes: t.virtual_size_bytes,
        fs_size_bytes: None,
        fs_free_bytes: None,
        fs_used_percent: None,
        fs_clean: None,
        warning: false,
        note: None,
    };
    if !matches!(vm.state, VmState::Stopped | VmState::Error) {
        usage.note =
            Some("the VM is running: its file system is read only while it is stopped".into());
        return Ok(usage);
    }
    let _work = match vms.checkout_layer(&vm).await {
        Ok(w) => w,
        Err(e) => {
            usage.note = Some(e.to_string());
            return Ok(usage);
        }
    };
    if let Err(e) = snapshots::settle(&vm.overlay_path).await {
        usage.note = Some(e.to_string());
        return Ok(usage);
    }
    match read_fs(&vm.overlay_path).await {
        Ok(Some(fs)) => {
            let used = fs.size_bytes.saturating_sub(fs.free_bytes);
            usage.fs_size_bytes = Some(fs.size_bytes);
            usage.fs_free_bytes = Some(fs.available_bytes);
            usage.fs_used_percent = Some(if fs.size_bytes == 0 {
                0
            } else {
                u8::try_from(used.saturating_mul(100).div_ceil(fs.size_bytes)).unwrap_or(100)
            });
            usage.fs_clean = Some(fs.clean);
            usage.warning = fs.nearly_full();
        }
        Ok(None) => {
            usage.note = Some("no ext2/3/4 root file system found on the disk".into());
        }
        Err(e) => {
            tracing::warn!(vm = %vm.id, error = %e, "could not read the guest file system");
            usage.note = Some("the guest file system could not be read".into());
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_names() {
        let c = standalone_command("x.qcow2", 2, 512);
        assert!(c.starts_with("qemu-system-x86_64 "), "{c}");
        assert!(
            c.contains("-m 512 -smp 2 -drive file=x.qcow2,format=qcow2,if=virtio"),
            "{c}"
        );
        assert_eq!(
            reattach_command("tiny linux/1"),
            "qemu-img rebase -u -f qcow2 -b /absolute/path/to/tiny-linux-1.qcow2 -F qcow2 layer.qcow2"
        );
    }

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        for (name, data) in entries {
            let typeflag = if name.ends_with('/') { b'5' } else { b'0' };
            v.extend_from_slice(&tar::typed_header(name, data.len() as u64, 0, typeflag));
            v.extend_from_slice(data);
            v.resize(v.len() + tar::padding(data.len() as u64), 0);
        }
        v.extend_from_slice(&tar::END);
        v
    }

    fn manifest(layer: &[u8]) -> Manifest {
        let id = Uuid::new_v4();
        Manifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            exported_at: db::now(),
            vm: ManifestVm {
                id,
                name: "linux".into(),
                vcpus: 1,
                memory_mib: 256,
            },
            template: ManifestTemplate {
                id,
                name: "t".into(),
                os: String::new(),
                software: vec![],
                virtual_size_bytes: 1 << 30,
            },
            chain: vec![],
            chain_sha256: "c".repeat(64),
            layer: ManifestLayer {
                file: LAYER_NAME.into(),
                format: "qcow2".into(),
                size_bytes: layer.len() as u64,
                sha256: storage::sha256_hex(Sha256::digest(layer)),
                virtual_size_bytes: 1 << 30,
            },
            reattach_command: String::new(),
        }
    }

    async fn read(bytes: Vec<u8>, dir: &Path) -> Result<Received, PortableError> {
        let mut r = ArchiveReader {
            inner: std::io::Cursor::new(bytes),
        };
        read_archive(&mut r, &dir.join("up"), 1 << 20, |m| {
            if m.chain_sha256 == "c".repeat(64) {
                Ok(())
            } else {
                Err(PortableError::TemplateMismatch("no".into()))
            }
        })
        .await
    }

    /// Reads an export as `export` writes it: the manifest, then the layer.
    async fn read_export(
        manifest: &[u8],
        layer: &[u8],
        dir: &Path,
    ) -> Result<Received, PortableError> {
        read(
            archive(&[(MANIFEST_NAME, manifest), (LAYER_NAME, layer)]),
            dir,
        )
        .await
    }

    #[tokio::test]
    async fn archive_reader_accepts_exports_and_refuses_the_rest() {
        let d = tempfile::tempdir().expect("tempdir");
        let layer = vec![9u8; 3000];
        let m = serde_json::to_vec(&manifest(&layer)).expect("json");
        // What export writes.
        let r = read_export(&m, &layer, d.path()).await.expect("accepted");
        assert_eq!(r.sha256, r.manifest.layer.sha256);
        assert_eq!(std::fs::read(d.path().join("up")).expect("read"), layer);
        std::fs::remove_file(d.path().join("up")).expect("rm");
        // Re-packed in a folder (with its directory entries), without the end marker.
        let mut folder = archive(&[
            ("./", b""),
            ("./x/", b""),
            ("./x/manifest.json", &m),
            ("./x/layer.qcow2", &layer),
        ]);
        folder.truncate(folder.len() - tar::END.len());
        let r = read(folder, d.path()).await.expect("accepted");
        assert_eq!(r.manifest.layer.size_bytes, 3000);
        std::fs::remove_file(d.path().join("up")).expect("rm");

        // Anything besides the manifest, the layer and their folder refuses
        // the archive, before or after the layer.
        let hostile: [&[(&str, &[u8])]; 7] = [
            &[
                ("x/._manifest.json", b"junk"),
                ("x/manifest.json", &m),
                ("x/layer.qcow2", &layer),
            ],
            &[(MANIFEST_NAME, &m), (LAYER_NAME, &layer), ("../evil", b"x")],
            &[
                (MANIFEST_NAME, &m),
                (LAYER_NAME, &layer),
                ("notes.txt", b"x"),
            ],
            &[(MANIFEST_NAME, &m), ("../layer.qcow2", &layer)],
            &[("/etc/manifest.json", &m), (LAYER_NAME, &layer)],
            &[
                ("y/", b""),
                ("x/manifest.json", &m),
                ("x/layer.qcow2", &layer),
            ],
            &[("a/manifest.json", &m), ("b/layer.qcow2", &layer)],
        ];
        for entries in hostile {
            let got = read(archive(entries), d.path()).await;
            let named = entries
                .iter()
                .any(|(n, _)| matches!(&got, Err(PortableError::UnsafeArchive(msg)) if msg.contains(&format!("{n:?}"))));
            assert!(named, "{entries:?}: {got:?}");
            // (The caller's guard removes a layer already received.)
            let _ = std::fs::remove_file(d.path().join("up"));
        }
        // Links, devices and FIFOs, whatever their name.
        for typeflag in [b'1', b'2', b'3', b'4', b'6', b'K', b'S'] {
            let mut a = archive(&[(MANIFEST_NAME, &m)]);
            a.truncate(a.len() - tar::END.len());
            let h = tar::typed_header(LAYER_NAME, 0, 0, typeflag);
            a.extend_from_slice(&h);
            a.extend_from_slice(&tar::END);
            let got = read(a, d.path()).await;
            assert!(
                matches!(&got, Err(PortableError::UnsafeArchive(msg)) if msg.contains("\"layer.qcow2\"")),
                "type {}: {got:?}",
                typeflag as char
            );
        }

        // Wrong order, missing pieces, wrong template, garbage, truncation.
        let wrong_order = read(
            archive(&[(LAYER_NAME, &layer), (MANIFEST_NAME, &m)]),
            d.path(),
        )
        .await;
        assert!(
            matches!(wrong_order, Err(PortableError::BadArchive(ref s)) if s.contains("must come before")),
            "{wrong_order:?}"
        );
        assert!(matches!(
            read(archive(&[(MANIFEST_NAME, &m)]), d.path()).await,
            Err(PortableError::BadArchive(_))
        ));
        let mut other = manifest(&layer);
        other.chain_sha256 = "d".repeat(64);
        let other = serde_json::to_vec(&other).expect("json");
        assert!(matches!(
            read_export(&other, &layer, d.path()).await,
            Err(PortableError::TemplateMismatch(_))
        ));
        assert!(matches!(
            read_export(b"{not json", &layer, d.path()).await,
            Err(PortableError::BadArchive(_))
        ));
        assert!(matches!(
            read(vec![0x42; 4096], d.path()).await,
            Err(PortableError::BadArchive(_))
        ));
        let mut cut = archive(&[(MANIFEST_NAME, &m), (LAYER_NAME, &layer)]);
        cut.truncate(2048 + 1000);
        assert!(
            matches!(read(cut, d.path()).await, Err(PortableError::BadArchive(ref s)) if s.contains("truncated"))
        );
        let _ = std::fs::remove_file(d.path().join("up"));
        let short = vec![9u8; 10];
        assert!(matches!(
            read_export(&m, &short, d.path()).await,
            Err(PortableError::CorruptExport(_))
        ));
        let mut v2 = manifest(&layer);
        v2.version = 2;
        let v2 = serde_json::to_vec(&v2).expect("json");
        assert!(matches!(
            read_export(&v2, &layer, d.path()).await,
            Err(PortableError::UnsupportedExport(_))
        ));
    }
}
