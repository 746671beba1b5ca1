//! Header inspection of uploaded images, done by us before any `qemu-img` sees
//! the file.
//!
//! Threat model (OpenStack OSSA-2015-014, OSSA-2024-001): a disk image format can
//! name *other* files that QEMU then opens with the server's privileges — a qcow2
//! backing file or external data file, VMDK extents or a VMDK parent. Pointing
//! those at `/etc/passwd` or a host block device and converting the "image" leaks
//! the host file into a template every student can read. Likewise a file declared
//! `raw` whose bytes are qcow2/VMDK is harmless only until something probes it.
//!
//! Invariants:
//! - Reads are bounded: at most one qcow2 cluster (≤ 2 MiB) of header, 1 MiB of
//!   VMDK descriptor, and fixed-size probes otherwise. No allocation is sized
//!   by an untrusted field without a cap. Bytes past end-of-file read as zero,
//!   which is what QEMU's block layer does too.
//! - The declared format must be the detected format, exactly.
//! - qcow2: version 2 or 3; no backing file, no backing-format extension, no
//!   external data file (feature bit or extension), no encryption, not marked
//!   corrupt, no incompatible feature bits we do not know, zlib/zstd compression only.
//! - VMDK: only a single-file sparse extent (monolithicSparse / streamOptimized)
//!   without a parent. Descriptor-only VMDKs always name other files and are refused.
//! - Every rejection message is for the uploader; the only string from the file
//!   that is quoted is the offending file name, escaped and truncated.
//! - [`inspect_layer`] is the one variant for uploaded personal layers
//!   (overlays): it applies the same qcow2 rules but *reports* the backing file
//!   name and format instead of refusing them. The name is never opened; the
//!   caller rewrites it to a backing file of its own choosing.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::fields::{be32, be64, le32, le64};
use super::{ImageError, ImageFormat};

/// Limits applied while inspecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectLimits {
    /// Largest virtual disk size (bytes) accepted.
    pub max_virtual_size: u64,
}

impl Default for InspectLimits {
    /// 256 GiB: far above any lab image, far below what would fill a node.
    fn default() -> Self {
        InspectLimits {
            max_virtual_size: 256 << 30,
        }
    }
}

/// What an accepted image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InspectReport {
    pub format: ImageFormat,
    /// Guest-visible disk size in bytes.
    pub virtual_size: u64,
}

/// Formats we can recognise from the bytes. A superset of [`ImageFormat`]: it
/// includes everything QEMU would probe, so a "raw" upload that is really one
/// of them can be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DetectedFormat {
    Raw,
    Qcow2,
    Vmdk,
    /// qcow version 1.
    Qcow,
    Qed,
    Vdi,
    /// Microsoft VHD (QEMU's `vpc`).
    Vhd,
    Vhdx,
    Luks,
    Bochs,
    Cloop,
    Parallels,
}

impl DetectedFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DetectedFormat::Raw => "raw",
            DetectedFormat::Qcow2 => "qcow2",
            DetectedFormat::Vmdk => "vmdk",
            DetectedFormat::Qcow => "qcow (version 1)",
            DetectedFormat::Qed => "qed",
            DetectedFormat::Vdi => "vdi",
            DetectedFormat::Vhd => "vhd",
            DetectedFormat::Vhdx => "vhdx",
            DetectedFormat::Luks => "luks",
            DetectedFormat::Bochs => "bochs",
            DetectedFormat::Cloop => "cloop",
            DetectedFormat::Parallels => "parallels",
        }
    }

    fn matches(self, declared: ImageFormat) -> bool {
        matches!(
            (self, declared),
            (DetectedFormat::Raw, ImageFormat::Raw)
                | (DetectedFormat::Qcow2, ImageFormat::Qcow2)
                | (DetectedFormat::Vmdk, ImageFormat::Vmdk)
        )
    }
}

impl fmt::Display for DetectedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Inspects `path`, which the caller claims is in format `declared`.
///
/// Returns the real virtual size if the image is acceptable. Synchronous and
/// bounded (a few small reads); call it from `spawn_blocking` on the runtime.
pub fn inspect(
    path: &Path,
    declared: ImageFormat,
    limits: &InspectLimits,
) -> Result<InspectReport, ImageError> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        // A device or FIFO would make the "file length" meaningless.
        return Err(invalid(declared, "not a regular file"));
    }
    let src = FileSource {
        file,
        len: meta.len(),
    };
    inspect_source(&src, declared, limits)
}

/// What an acceptable copy-on-write layer (a qcow2 overlay) is, see [`inspect_layer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerReport {
    /// Guest-visible disk size in bytes.
    pub virtual_size: u64,
    /// The backing file name recorded in the header, as lossy UTF-8. Reported
    /// for information only: it comes from the file, so it must never be opened
    /// or trusted — the caller replaces it with a backing file it chose.
    pub backing_file: Option<String>,
    /// The backing format extension, if present (same caveat).
    pub backing_format: Option<String>,
    /// Number of internal snapshots in the layer.
    pub snapshots: u32,
}

/// Inspects an uploaded personal layer: a qcow2 image that *may* have a backing
/// file, which is reported instead of refused. Every other rule of [`inspect`]
/// for qcow2 applies unchanged (no external data file, no encryption, not
/// marked corrupt, no unknown incompatible features, size limit). Synchronous
/// and bounded like [`inspect`].
///
/// The caller must never let anything open the file with its own backing name:
/// rewrite it first (`qemu-img rebase -u`, which opens no backing file).
pub fn inspect_layer(path: &Path, limits: &InspectLimits) -> Result<LayerReport, ImageError> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(invalid(ImageFormat::Qcow2, "not a regular file"));
    }
    let src = FileSource {
        file,
        len: meta.len(),
    };
    inspect_layer_source(&src, limits)
}

/// [`inspect`] of bytes in memory (a header read elsewhere; the fuzz
/// targets): the same rules, the slice standing for the whole file.
pub fn inspect_bytes(
    bytes: &[u8],
    declared: ImageFormat,
    limits: &InspectLimits,
) -> Result<InspectReport, ImageError> {
    inspect_source(&bytes, declared, limits)
}

/// [`inspect_layer`] of bytes in memory, like [`inspect_bytes`].
pub fn inspect_layer_bytes(
    bytes: &[u8],
    limits: &InspectLimits,
) -> Result<LayerReport, ImageError> {
    inspect_layer_source(&bytes, limits)
}

fn inspect_layer_source(
    src: &dyn Source,
    limits: &InspectLimits,
) -> Result<LayerReport, ImageError> {
    if src.len() == 0 {
        return Err(invalid(ImageFormat::Qcow2, "the file is empty"));
    }
    let head = read_region(src, 0, PROBE_LEN)?;
    let detected = detect(&head);
    if detected != DetectedFormat::Qcow2 {
        return Err(ImageError::FormatMismatch {
            declared: ImageFormat::Qcow2,
            detected,
        });
    }
    let report = inspect_qcow2_header(src, true)?;
    if report.virtual_size > limits.max_virtual_size {
        return Err(ImageError::TooLarge {
            virtual_size: report.virtual_size,
            limit: limits.max_virtual_size,
        });
    }
    Ok(report)
}

/// Random-access bytes: a file, or a slice in tests.
trait Source {
    fn len(&self) -> u64;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

struct FileSource {
    file: File,
    len: u64,
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
}

impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Some(rest) = usize::try_from(offset).ok().and_then(|o| self.get(o..)) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// Reads up to `len` bytes at `offset`, fewer if the file ends first.
fn read_region(src: &dyn Source, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let avail = src.len().saturating_sub(offset);
    let want = usize::try_from(avail).map_or(len, |a| a.min(len));
    let mut buf = vec![0u8; want];
    let mut done = 0;
    while done < want {
        match src.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break, // file shrank under us; the rest reads as zero
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

fn invalid(format: ImageFormat, reason: impl Into<String>) -> ImageError {
    ImageError::Invalid {
        format,
        reason: reason.into(),
    }
}

/// A file name taken from the upload, made safe to show: lossy UTF-8, escaped by
/// `{:?}`, at most 200 characters.
fn quote_name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut cut: String = s.chars().take(200).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// How many leading bytes detection looks at. QEMU probes with 2 KiB
/// (`BLOCK_PROBE_BUF_SIZE`); VDI's signature is at 64; 4 KiB covers all.
const PROBE_LEN: usize = 4096;
const QEMU_PROBE_LEN: usize = 2048;

fn inspect_source(
    src: &dyn Source,
    declared: ImageFormat,
    limits: &InspectLimits,
) -> Result<InspectReport, ImageError> {
    if src.len() == 0 {
        return Err(invalid(declared, "the file is empty"));
    }
    let head = read_region(src, 0, PROBE_LEN)?;
    let detected = detect(&head);
    if !detected.matches(declared) {
        return Err(ImageError::FormatMismatch { declared, detected });
    }
    let virtual_size = match declared {
        // QEMU reads a raw file as whole 512-byte sectors, the last one
        // padded: that is the disk the conversion produces.
        ImageFormat::Raw => src.len().div_ceil(512) * 512,
        ImageFormat::Qcow2 => inspect_qcow2(src)?,
        ImageFormat::Vmdk => inspect_vmdk(src, &head)?,
    };
    if virtual_size > limits.max_virtual_size {
        return Err(ImageError::TooLarge {
            virtual_size,
            limit: limits.max_virtual_size,
        });
    }
    // A disk is whole 512-byte sectors: a header claiming anything else
    // could never be given an overlay or booted.
    if virtual_size == 0 || virtual_size % 512 != 0 {
        return Err(invalid(
            declared,
            format!(
                "the virtual size ({virtual_size} bytes) is not a whole number of 512-byte sectors"
            ),
        ));
    }
    Ok(InspectReport {
        format: declared,
        virtual_size,
    })
}

/// Recognises the leading bytes. Conservative: anything QEMU's probes would
/// claim is reported as that format, never as raw.
fn detect(head: &[u8]) -> DetectedFormat {
    const CLOOP: &[u8] = b"#!/bin/sh\n#V2.0 Format\n";
    if head.starts_with(b"QFI\xfb") {
        // Same magic for qcow and qcow2; QEMU tells them apart by version.
        return if be32(head, 4) == 1 {
            DetectedFormat::Qcow
        } else {
            DetectedFormat::Qcow2
        };
    }
    if head.starts_with(b"KDMV") || head.starts_with(b"COWD") {
        return DetectedFormat::Vmdk;
    }
    let magics: [(&[u8], DetectedFormat); 8] = [
        (b"QED\0", DetectedFormat::Qed),
        (b"vhdxfile", DetectedFormat::Vhdx),
        (b"conectix", DetectedFormat::Vhd),
        (b"LUKS\xba\xbe", DetectedFormat::Luks),
        (b"Bochs Virtual HD Image", DetectedFormat::Bochs),
        (CLOOP, DetectedFormat::Cloop),
        (b"WithoutFreeSpace", DetectedFormat::Parallels),
        (b"WithouFreSpacExt", DetectedFormat::Parallels),
    ];
    if let Some((_, f)) = magics.iter().find(|(m, _)| head.starts_with(m)) {
        return *f;
    }
    if le32(head, 64) == 0xbeda_107f {
        return DetectedFormat::Vdi;
    }
    if looks_like_vmdk_descriptor(&head[..head.len().min(QEMU_PROBE_LEN)]) {
        return DetectedFormat::Vmdk;
    }
    DetectedFormat::Raw
}

/// QEMU's `vmdk_probe` for text descriptors (blank and `#` lines, then
/// `version=1|2|3`), widened with the strings every descriptor carries, so we
/// err towards "this is a VMDK".
fn looks_like_vmdk_descriptor(buf: &[u8]) -> bool {
    let contains = |needle: &[u8]| buf.windows(needle.len()).any(|w| w == needle);
    if contains(b"# Disk DescriptorFile") || contains(b"createType=") {
        return true;
    }
    for line in buf.split(|&b| b == b'\n') {
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() || trimmed.starts_with(b"#") {
            continue;
        }
        return matches!(trimmed, b"version=1" | b"version=2" | b"version=3");
    }
    false
}

// ---------------------------------------------------------------- qcow2

const QCOW2_INCOMPAT_DIRTY: u64 = 1 << 0;
const QCOW2_INCOMPAT_CORRUPT: u64 = 1 << 1;
const QCOW2_INCOMPAT_DATA_FILE: u64 = 1 << 2;
const QCOW2_INCOMPAT_COMPRESSION: u64 = 1 << 3;
const QCOW2_INCOMPAT_EXTL2: u64 = 1 << 4;
const QCOW2_INCOMPAT_KNOWN: u64 = QCOW2_INCOMPAT_DIRTY
    | QCOW2_INCOMPAT_CORRUPT
    | QCOW2_INCOMPAT_DATA_FILE
    | QCOW2_INCOMPAT_COMPRESSION
    | QCOW2_INCOMPAT_EXTL2;

const QCOW2_EXT_END: u32 = 0;
const QCOW2_EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const QCOW2_EXT_CRYPTO_HEADER: u32 = 0x0537_be77;
const QCOW2_EXT_DATA_FILE: u32 = 0x4441_5441;

/// QEMU refuses longer backing names; we only use the cap to bound the quote.
const QCOW2_MAX_BACKING_NAME: usize = 1023;

const SELF_CONTAINED_HINT: &str =
    "only self-contained images are accepted (flatten it with `qemu-img convert -O qcow2`)";

/// Returns the virtual size of an acceptable qcow2 image.
fn inspect_qcow2(src: &dyn Source) -> Result<u64, ImageError> {
    inspect_qcow2_header(src, false).map(|h| h.virtual_size)
}

/// The qcow2 checks shared by [`inspect`] (`allow_backing = false`: any backing
/// file is refused) and [`inspect_layer`] (`allow_backing = true`: the backing
/// file name and format are reported, not followed; everything else is checked
/// the same way).
fn inspect_qcow2_header(src: &dyn Source, allow_backing: bool) -> Result<LayerReport, ImageError> {
    let bad = |reason: &str| invalid(ImageFormat::Qcow2, reason);
    if src.len() < 72 {
        return Err(bad("truncated qcow2 header"));
    }
    let fixed = read_region(src, 0, 112)?;
    let version = be32(&fixed, 4);
    if version != 2 && version != 3 {
        return Err(bad(&format!("unsupported qcow2 version {version}")));
    }
    let backing_offset = be64(&fixed, 8);
    let backing_size = be32(&fixed, 16);
    let cluster_bits = be32(&fixed, 20);
    let size = be64(&fixed, 24);
    let crypt_method = be32(&fixed, 32);
    // Same bounds as QEMU (512 B .. 2 MiB); also caps our header read below.
    if !(9..=21).contains(&cluster_bits) {
        return Err(bad(&format!("cluster_bits {cluster_bits} out of range")));
    }
    let cluster_size = 1usize << cluster_bits;

    let (header_length, incompat, compression_type) = if version == 3 {
        if src.len() < 104 {
            return Err(bad("truncated qcow2 version 3 header"));
        }
        let header_length = be32(&fixed, 100) as usize;
        if header_length < 104 || header_length > cluster_size {
            return Err(bad(&format!("header length {header_length} is invalid")));
        }
        if be32(&fixed, 96) > 6 {
            return Err(bad("refcount order above 6"));
        }
        let compression_type = if header_length > 104 {
            fixed.get(104).copied().unwrap_or(0)
        } else {
            0
        };
        (header_length, be64(&fixed, 72), compression_type)
    } else {
        (72, 0, 0)
    };

    let header = read_region(src, 0, cluster_size)?;

    let nb_snapshots = be32(&fixed, 60);
    let mut backing_file = None;
    if allow_backing && (backing_offset != 0 || backing_size != 0) {
        // QEMU's own bounds: the name lies in the first cluster, at most 1023 bytes.
        let name = usize::try_from(backing_offset)
            .ok()
            .filter(|_| (backing_size as usize) <= QCOW2_MAX_BACKING_NAME)
            .and_then(|off| header.get(off..off.checked_add(backing_size as usize)?))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("the backing file name lies outside the header cluster"))?;
        backing_file = Some(String::from_utf8_lossy(name).into_owned());
    }
    // The backing file is the classic hole: report it first, by name.
    if !allow_backing && (backing_offset != 0 || backing_size != 0) {
        let name = usize::try_from(backing_offset).ok().and_then(|off| {
            let len = (backing_size as usize).min(QCOW2_MAX_BACKING_NAME);
            header.get(off..off.checked_add(len)?)
        });
        return Err(ImageError::Unsafe(match name {
            Some(name) if !name.is_empty() => format!(
                "the qcow2 image has a backing file {}; {SELF_CONTAINED_HINT}",
                quote_name(name)
            ),
            _ => format!("the qcow2 image declares a backing file; {SELF_CONTAINED_HINT}"),
        }));
    }
    if incompat & QCOW2_INCOMPAT_DATA_FILE != 0 {
        return Err(ImageError::Unsafe(format!(
            "the qcow2 image keeps its data in an external data file; {SELF_CONTAINED_HINT}"
        )));
    }
    if incompat & QCOW2_INCOMPAT_CORRUPT != 0 {
        return Err(ImageError::Unsafe(
            "the qcow2 image is marked corrupt; repair it (`qemu-img check -r all`) before uploading"
                .into(),
        ));
    }
    let unknown = incompat & !QCOW2_INCOMPAT_KNOWN;
    if unknown != 0 {
        return Err(ImageError::Unsafe(format!(
            "the qcow2 image uses unknown incompatible features (mask {unknown:#x})"
        )));
    }
    if incompat & QCOW2_INCOMPAT_COMPRESSION != 0 {
        if header_length < 105 {
            return Err(bad(
                "compression type flag set but header has no compression type",
            ));
        }
        // 0 = zlib, 1 = zstd.
        if compression_type > 1 {
            return Err(bad(&format!("unknown compression type {compression_type}")));
        }
    } else if compression_type != 0 {
        return Err(bad("compression type set without its feature flag"));
    }

    let backing_format =
        check_qcow2_extensions(&header, header_length, cluster_size, allow_backing)?;

    if crypt_method != 0 {
        return Err(ImageError::Unsafe(
            "the qcow2 image is encrypted; upload an unencrypted image".into(),
        ));
    }
    Ok(LayerReport {
        virtual_size: size,
        backing_format: backing_file.as_ref().and(backing_format),
        backing_file,
        snapshots: nb_snapshots,
    })
}

/// Walks the header extensions the way QEMU does (from the end of the header to
/// the end of the first cluster, 8-byte aligned records, type 0 ends the list)
/// and refuses the ones that point outside the file.
///
/// With `allow_backing`, the backing-format extension is returned instead of
/// refused (as lossy UTF-8, for information only).
fn check_qcow2_extensions(
    header: &[u8],
    header_length: usize,
    cluster_size: usize,
    allow_backing: bool,
) -> Result<Option<String>, ImageError> {
    let mut backing_format = None;
    let mut off = header_length;
    // Each record is at least 8 bytes, so this loop runs ≤ cluster_size/8 times.
    while off + 8 <= cluster_size {
        let ty = be32(header, off);
        let len = be32(header, off + 4) as usize;
        off += 8;
        if ty == QCOW2_EXT_END {
            break;
        }
        if len > cluster_size - off {
            return Err(invalid(
                ImageFormat::Qcow2,
                "header extension runs past the header cluster",
            ));
        }
        match ty {
            QCOW2_EXT_DATA_FILE => {
                let name = header.get(off..off + len).unwrap_or_default();
                return Err(ImageError::Unsafe(format!(
                    "the qcow2 image names an external data file {}; {SELF_CONTAINED_HINT}",
                    quote_name(name)
                )));
            }
            QCOW2_EXT_BACKING_FORMAT if allow_backing => {
                let name = header.get(off..off + len).unwrap_or_default();
                let name = &name[..name.len().min(QCOW2_MAX_BACKING_NAME)];
                backing_format = Some(String::from_utf8_lossy(name).into_owned());
            }
            QCOW2_EXT_BACKING_FORMAT => {
                // Meaningless without a backing file; refuse rather than guess why.
                return Err(ImageError::Unsafe(format!(
                    "the qcow2 image declares a backing file format; {SELF_CONTAINED_HINT}"
                )));
            }
            QCOW2_EXT_CRYPTO_HEADER => {
                return Err(ImageError::Unsafe(
                    "the qcow2 image is encrypted; upload an unencrypted image".into(),
                ));
            }
            // Feature name table, bitmaps, unknown ones: QEMU only reads or
            // ignores them, none names another file.
            _ => {}
        }
        off += len.div_ceil(8) * 8;
    }
    Ok(backing_format)
}

// ----------------------------------------------------------------- VMDK

/// QEMU reads a descriptor of at most 1 MiB (`vmdk_read_desc`).
const VMDK_MAX_DESC: usize = 1 << 20;
/// QEMU looks for `parentFileNameHint` in this many bytes at offset 512
/// (`vmdk_parent_open`, `DESC_SIZE`), regardless of the header's descriptor offset.
const VMDK_PARENT_SCAN: usize = 20 * 512;
const VMDK_GD_AT_END: u64 = u64::MAX;
const VMDK_MARKER_FOOTER: u32 = 3;

const SINGLE_FILE_HINT: &str = "only single-file VMDKs (monolithicSparse or streamOptimized) are accepted — \
     export the disk as one file or convert it with `qemu-img convert -O qcow2`";

/// Returns the virtual size of an acceptable VMDK.
fn inspect_vmdk(src: &dyn Source, head: &[u8]) -> Result<u64, ImageError> {
    let bad = |reason: &str| invalid(ImageFormat::Vmdk, reason);
    if head.starts_with(b"COWD") {
        return Err(bad("legacy VMDK3 (COWD) images are not supported"));
    }
    if !head.starts_with(b"KDMV") {
        // A text descriptor holds no data: every extent it lists is another file.
        let desc = read_region(src, 0, VMDK_MAX_DESC)?;
        let desc = Descriptor::parse(&desc);
        desc.refuse_parent()?;
        if let Some(file) = desc.extents.iter().find_map(|e| e.file.as_deref()) {
            return Err(ImageError::Unsafe(format!(
                "the VMDK descriptor refers to a separate extent file {}; {SINGLE_FILE_HINT}",
                quote_name(file)
            )));
        }
        return Err(bad("descriptor-only VMDK without any data extent"));
    }

    if src.len() < 512 {
        return Err(bad("truncated VMDK sparse header"));
    }
    let version = le32(head, 4);
    let capacity = le64(head, 12);
    let desc_offset = le64(head, 28);
    let desc_sectors = le64(head, 36);
    let gd_offset = le64(head, 56);
    if !(1..=3).contains(&version) {
        return Err(bad(&format!("unsupported VMDK version {version}")));
    }

    // QEMU `strstr`s for `parentFileNameHint` from offset 512 and makes it a
    // backing file. Search the whole area, even past a NUL, to be stricter.
    let parent_area = read_region(src, 512, VMDK_PARENT_SCAN)?;
    if let Some(pos) = find(&parent_area, PARENT_HINT) {
        return Err(parent_error(value_after_eq(&parent_area[pos..])));
    }

    if desc_offset != 0 {
        let start = desc_offset
            .checked_mul(512)
            .filter(|&s| s < src.len())
            .ok_or_else(|| bad("embedded descriptor lies beyond the end of the file"))?;
        let len = usize::try_from(desc_sectors.saturating_mul(512))
            .map_or(VMDK_MAX_DESC, |l| l.min(VMDK_MAX_DESC));
        let desc = Descriptor::parse(&read_region(src, start, len)?);
        desc.refuse_parent()?;
        if capacity == 0 {
            // QEMU then opens the embedded descriptor like a descriptor file,
            // i.e. follows its extents to other files (CVE-2024-32498 family).
            return Err(ImageError::Unsafe(
                match desc.extents.iter().find_map(|e| e.file.as_deref()) {
                    Some(file) => format!(
                        "the VMDK delegates to extent file {}; {SINGLE_FILE_HINT}",
                        quote_name(file)
                    ),
                    None => {
                        format!("the VMDK delegates to an embedded descriptor; {SINGLE_FILE_HINT}")
                    }
                },
            ));
        }
        desc.check_single_sparse_extent()?;
    }

    let capacity = if gd_offset == VMDK_GD_AT_END {
        stream_footer_capacity(src)?
    } else {
        capacity
    };
    if capacity == 0 {
        return Err(bad("VMDK capacity is zero"));
    }
    // Saturating: an overflowing capacity is then over any size limit.
    Ok(capacity.saturating_mul(512))
}

/// streamOptimized files written by VMware put the real header (with the
/// capacity QEMU uses) in a footer 1536 bytes before the end.
fn stream_footer_capacity(src: &dyn Source) -> Result<u64, ImageError> {
    let bad = || {
        invalid(
            ImageFormat::Vmdk,
            "streamOptimized VMDK without a valid footer",
        )
    };
    let len = src.len();
    if len < 512 + 1536 {
        return Err(bad());
    }
    let f = read_region(src, len - 1536, 1536)?;
    let footer_ok = le32(&f, 8) == 0
        && le32(&f, 12) == VMDK_MARKER_FOOTER
        && f.get(512..516) == Some(b"KDMV".as_slice())
        && le64(&f, 1024) == 0
        && le32(&f, 1032) == 0
        && le32(&f, 1036) == 0;
    if !footer_ok {
        return Err(bad());
    }
    Ok(le64(&f, 512 + 12))
}

#[derive(Debug)]
struct Extent {
    kind: String,
    file: Option<Vec<u8>>,
}

/// The parts of a VMDK text descriptor that matter here.
#[derive(Debug, Default)]
struct Descriptor {
    create_type: Option<String>,
    parent_hint: Option<Vec<u8>>,
    extents: Vec<Extent>,
}

impl Descriptor {
    /// Lenient line parser; stops at the first NUL like QEMU's C strings. It
    /// treats any line starting with an access mode as an extent (QEMU only
    /// honours `RW`), so it sees at least every extent QEMU would.
    fn parse(buf: &[u8]) -> Descriptor {
        let text = buf.split(|&b| b == 0).next().unwrap_or_default();
        let mut d = Descriptor::default();
        for line in text.split(|&b| b == b'\n') {
            let line = line.trim_ascii();
            // Before skipping comments: QEMU finds the hint anywhere, even in one.
            if let Some(pos) = find(line, PARENT_HINT) {
                let value = value_after_eq(&line[pos..]);
                d.parent_hint = Some(value.to_vec());
                continue;
            }
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            if line.starts_with(b"createType") {
                d.create_type = Some(String::from_utf8_lossy(value_after_eq(line)).into_owned());
                continue;
            }
            let mut tokens = line
                .split(|b| b.is_ascii_whitespace())
                .filter(|t| !t.is_empty());
            let access = tokens.next().unwrap_or_default().to_ascii_uppercase();
            if !matches!(access.as_slice(), b"RW" | b"RDONLY" | b"NOACCESS") {
                continue;
            }
            let _sectors = tokens.next();
            let kind =
                String::from_utf8_lossy(tokens.next().unwrap_or_default()).to_ascii_uppercase();
            let file = match find(line, b"\"") {
                Some(q) => {
                    let rest = &line[q + 1..];
                    Some(rest[..find(rest, b"\"").unwrap_or(rest.len())].to_vec())
                }
                // Unquoted: QEMU would not parse it, but treat it as a name anyway.
                None => tokens.next().map(<[u8]>::to_vec),
            };
            d.extents.push(Extent { kind, file });
        }
        d
    }

    fn refuse_parent(&self) -> Result<(), ImageError> {
        match &self.parent_hint {
            Some(p) => Err(parent_error(p)),
            None => Ok(()),
        }
    }

    /// The embedded descriptor of an accepted sparse file: one SPARSE extent that
    /// can only be the file itself. Its name is whatever the file was called when
    /// it was made (uploads are renamed), so "itself" means a bare file name
    /// without any directory part. QEMU ignores this list for a sparse file with
    /// a capacity, so this is policy on top, not the load-bearing check.
    fn check_single_sparse_extent(&self) -> Result<(), ImageError> {
        if let Some(t) = &self.create_type {
            let lower = t.to_ascii_lowercase();
            if lower != "monolithicsparse" && lower != "streamoptimized" {
                return Err(ImageError::Unsafe(format!(
                    "VMDK type {:?} is not accepted; {SINGLE_FILE_HINT}",
                    t.chars().take(40).collect::<String>()
                )));
            }
        }
        let [extent] = self.extents.as_slice() else {
            return Err(ImageError::Unsafe(format!(
                "the VMDK descriptor lists {} extents; {SINGLE_FILE_HINT}",
                self.extents.len()
            )));
        };
        let file = extent.file.as_deref().unwrap_or_default();
        let bare = !file.is_empty()
            && !file.contains(&b'/')
            && !file.contains(&b'\\')
            && file != b"."
            && file != b"..";
        if !bare {
            return Err(ImageError::Unsafe(format!(
                "the VMDK descriptor refers to extent file {}; {SINGLE_FILE_HINT}",
                quote_name(file)
            )));
        }
        if extent.kind != "SPARSE" {
            return Err(ImageError::Unsafe(format!(
                "the VMDK extent type {:?} is not accepted; {SINGLE_FILE_HINT}",
                extent.kind.chars().take(20).collect::<String>()
            )));
        }
        Ok(())
    }
}

const PARENT_HINT: &[u8] = b"parentFileNameHint";

fn parent_error(name: &[u8]) -> ImageError {
    ImageError::Unsafe(format!(
        "the VMDK refers to a parent disk {}; {SINGLE_FILE_HINT}",
        quote_name(name)
    ))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `key = "value"` → `value` (quotes and blanks trimmed).
fn value_after_eq(line: &[u8]) -> &[u8] {
    let v = match find(line, b"=") {
        Some(p) => &line[p + 1..],
        None => line,
    };
    let v = v.trim_ascii();
    let v = v.strip_prefix(b"\"").unwrap_or(v);
    match find(v, b"\"") {
        Some(end) => &v[..end],
        None => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{create_image, hostile_backing_qcow2, qemu_img};
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    fn limits() -> InspectLimits {
        InspectLimits {
            max_virtual_size: 4 << 30,
        }
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn path_str(p: &Path) -> &str {
        p.to_str().expect("utf-8 temp path")
    }

    fn check_bytes(bytes: &[u8], declared: ImageFormat) -> Result<InspectReport, ImageError> {
        inspect_bytes(bytes, declared, &limits())
    }

    fn unsafe_msg(r: Result<InspectReport, ImageError>) -> String {
        match r {
            Err(ImageError::Unsafe(m)) => m,
            other => panic!("expected Unsafe, got {other:?}"),
        }
    }

    /// A minimal valid qcow2 header cluster (plus refcount table/block and L1
    /// clusters left zero, which inspection does not read).
    fn craft_qcow2(version: u32, size: u64) -> Vec<u8> {
        let mut b = vec![0u8; 4 * 512];
        b[0..4].copy_from_slice(b"QFI\xfb");
        b[4..8].copy_from_slice(&version.to_be_bytes());
        b[20..24].copy_from_slice(&9u32.to_be_bytes()); // 512-byte clusters
        b[24..32].copy_from_slice(&size.to_be_bytes());
        b[36..40].copy_from_slice(&1u32.to_be_bytes()); // l1_size
        b[40..48].copy_from_slice(&(3 * 512u64).to_be_bytes());
        b[48..56].copy_from_slice(&512u64.to_be_bytes());
        b[56..60].copy_from_slice(&1u32.to_be_bytes());
        if version == 3 {
            b[96..100].copy_from_slice(&4u32.to_be_bytes());
            b[100..104].copy_from_slice(&112u32.to_be_bytes());
        }
        b
    }

    fn set_incompat(b: &mut [u8], bits: u64) {
        b[72..80].copy_from_slice(&bits.to_be_bytes());
    }

    fn put_ext(b: &mut [u8], at: usize, ty: u32, data: &[u8]) -> usize {
        b[at..at + 4].copy_from_slice(&ty.to_be_bytes());
        b[at + 4..at + 8].copy_from_slice(&(data.len() as u32).to_be_bytes());
        b[at + 8..at + 8 + data.len()].copy_from_slice(data);
        at + 8 + data.len().div_ceil(8) * 8
    }

    /// A VMDK sparse header (512 bytes) followed by an embedded descriptor.
    fn craft_vmdk(capacity: u64, descriptor: &str) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0..4].copy_from_slice(b"KDMV");
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[12..20].copy_from_slice(&capacity.to_le_bytes());
        b[20..28].copy_from_slice(&128u64.to_le_bytes());
        b[28..36].copy_from_slice(&1u64.to_le_bytes());
        b[36..44].copy_from_slice(&20u64.to_le_bytes());
        b[44..48].copy_from_slice(&512u32.to_le_bytes());
        b.extend_from_slice(descriptor.as_bytes());
        b.resize(512 * 21, 0);
        b
    }

    fn sparse_desc(extent: &str) -> String {
        format!(
            "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
             createType=\"monolithicSparse\"\n\n# Extent description\n{extent}\n"
        )
    }

    // ------------------------------------------------------------ qcow2

    #[test]
    fn qcow2_made_by_qemu_img_is_accepted() {
        let d = tmp();
        for compat in ["1.1", "0.10"] {
            let p = d.path().join(format!("ok-{compat}.qcow2"));
            create_image(&p, "qcow2", &["-o", &format!("compat={compat}")], "1G");
            let r = inspect(&p, ImageFormat::Qcow2, &limits()).expect("accepted");
            assert_eq!(
                r,
                InspectReport {
                    format: ImageFormat::Qcow2,
                    virtual_size: 1 << 30
                }
            );
        }
        // zstd compression and extended L2 are fine.
        let p = d.path().join("zstd.qcow2");
        create_image(
            &p,
            "qcow2",
            &["-o", "compression_type=zstd,extended_l2=on"],
            "64M",
        );
        assert_eq!(
            inspect(&p, ImageFormat::Qcow2, &limits())
                .ok()
                .map(|r| r.virtual_size),
            Some(64 * MIB)
        );
    }

    #[test]
    fn handcrafted_qcow2_is_accepted() {
        for version in [2, 3] {
            let b = craft_qcow2(version, 10 * MIB);
            let r = check_bytes(&b, ImageFormat::Qcow2).expect("accepted");
            assert_eq!(r.virtual_size, 10 * MIB);
        }
        // The dirty bit (lazy refcounts) is harmless.
        let mut b = craft_qcow2(3, MIB);
        set_incompat(&mut b, QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_EXTL2);
        assert!(check_bytes(&b, ImageFormat::Qcow2).is_ok());
        // Feature-name table and an unknown extension are ignored.
        let mut b = craft_qcow2(3, MIB);
        let at = put_ext(&mut b, 112, 0x6803_f857, &[0u8; 48]);
        put_ext(&mut b, at, 0x1234_5678, b"whatever");
        assert!(check_bytes(&b, ImageFormat::Qcow2).is_ok());
    }

    #[test]
    fn qcow2_with_backing_file_is_unsafe() {
        let d = tmp();
        let p = d.path().join("evil.qcow2");
        hostile_backing_qcow2(&p);
        let msg = unsafe_msg(inspect(&p, ImageFormat::Qcow2, &limits()));
        assert!(msg.contains("backing file \"/etc/passwd\""), "{msg}");

        // Backing size without an offset (or vice versa) is refused too.
        let mut b = craft_qcow2(3, MIB);
        b[16..20].copy_from_slice(&11u32.to_be_bytes());
        assert!(unsafe_msg(check_bytes(&b, ImageFormat::Qcow2)).contains("backing file"));
        // A bare backing-format extension is refused.
        let mut b = craft_qcow2(3, MIB);
        put_ext(&mut b, 112, QCOW2_EXT_BACKING_FORMAT, b"raw");
        assert!(unsafe_msg(check_bytes(&b, ImageFormat::Qcow2)).contains("backing file format"));
    }

    #[test]
    fn qcow2_with_external_data_file_is_unsafe() {
        let d = tmp();
        let p = d.path().join("df.qcow2");
        let data = d.path().join("df.raw");
        create_image(
            &p,
            "qcow2",
            &["-o", &format!("data_file={}", path_str(&data))],
            "1M",
        );
        let msg = unsafe_msg(inspect(&p, ImageFormat::Qcow2, &limits()));
        assert!(msg.contains("external data file"), "{msg}");

        // Only the feature bit …
        let mut b = craft_qcow2(3, MIB);
        set_incompat(&mut b, QCOW2_INCOMPAT_DATA_FILE);
        assert!(unsafe_msg(check_bytes(&b, ImageFormat::Qcow2)).contains("external data file"));
        // … or only the extension naming the host file.
        let mut b = craft_qcow2(3, MIB);
        put_ext(&mut b, 112, QCOW2_EXT_DATA_FILE, b"/dev/sda");
        let msg = unsafe_msg(check_bytes(&b, ImageFormat::Qcow2));
        assert!(msg.contains("\"/dev/sda\""), "{msg}");
    }

    #[test]
    fn qcow2_unknown_incompatible_bit_and_corrupt_are_unsafe() {
        let mut b = craft_qcow2(3, MIB);
        set_incompat(&mut b, 1 << 5);
        assert!(unsafe_msg(check_bytes(&b, ImageFormat::Qcow2)).contains("unknown incompatible"));
        let mut b = craft_qcow2(3, MIB);
        set_incompat(&mut b, QCOW2_INCOMPAT_CORRUPT);
        assert!(unsafe_msg(check_bytes(&b, ImageFormat::Qcow2)).contains("corrupt"));
    }

    #[test]
    fn qcow2_compression_type_is_checked() {
        let mut b = craft_qcow2(3, MIB);
        set_incompat(&mut b, QCOW2_INCOMPAT_COMPRESSION);
        b[104] = 1; // zstd
        assert!(check_bytes(&b, ImageFormat::Qcow2).is_ok());
        b[104] = 7;
        assert!(matches!(
            check_bytes(&b, ImageFormat::Qcow2),
            Err(ImageError::Invalid { .. })
        ));
        set_incompat(&mut b, 0);
        assert!(matches!(
            check_bytes(&b, ImageFormat::Qcow2),
            Err(ImageError::Invalid { .. })
        ));
    }

    #[test]
    fn encrypted_qcow2_is_unsafe() {
        let d = tmp();
        let p = d.path().join("enc.qcow2");
        create_image(
            &p,
            "qcow2",
            &[
                "--object",
                "secret,id=s0,data=pw",
                "-o",
                "encrypt.format=luks,encrypt.key-secret=s0",
            ],
            "1M",
        );
        assert!(unsafe_msg(inspect(&p, ImageFormat::Qcow2, &limits())).contains("encrypted"));
        // Legacy AES: only crypt_method.
        let mut b = craft_qcow2(2, MIB);
        b[32..36].copy_from_slice(&1u32.to_be_bytes());
        assert!(unsafe_msg(check_bytes(&b, ImageFormat::Qcow2)).contains("encrypted"));
    }

    #[test]
    fn too_big_is_refused() {
        let b = craft_qcow2(3, 5 << 30);
        assert!(matches!(
            check_bytes(&b, ImageFormat::Qcow2),
            Err(ImageError::TooLarge { virtual_size, limit }) if virtual_size == 5 << 30 && limit == 4 << 30
        ));
        let d = tmp();
        let p = d.path().join("big.qcow2");
        create_image(&p, "qcow2", &[], "8G");
        assert!(matches!(
            inspect(&p, ImageFormat::Qcow2, &limits()),
            Err(ImageError::TooLarge { .. })
        ));
        // Raw: the file length counts.
        let small = InspectLimits {
            max_virtual_size: 1000,
        };
        assert!(matches!(
            inspect_source(&&[0u8; 1001][..], ImageFormat::Raw, &small),
            Err(ImageError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_disk_is_whole_sectors() {
        // A raw file's last sector is padded, as QEMU reads it.
        let r = check_bytes(&[0u8; 67], ImageFormat::Raw).expect("raw");
        assert_eq!(r.virtual_size, 512);
        assert_eq!(
            check_bytes(&[0u8; 1024], ImageFormat::Raw)
                .expect("raw")
                .virtual_size,
            1024
        );
        // A header naming a size that is not whole sectors is refused.
        let b = craft_qcow2(3, MIB + 67);
        assert!(matches!(
            check_bytes(&b, ImageFormat::Qcow2),
            Err(ImageError::Invalid { .. })
        ));
    }

    #[test]
    fn truncated_or_nonsense_qcow2_is_invalid() {
        let b = craft_qcow2(3, MIB);
        for cut in [4, 50, 71, 90] {
            assert!(
                matches!(
                    check_bytes(&b[..cut], ImageFormat::Qcow2),
                    Err(ImageError::Invalid { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut b = craft_qcow2(3, MIB);
        b[20..24].copy_from_slice(&30u32.to_be_bytes());
        assert!(matches!(
            check_bytes(&b, ImageFormat::Qcow2),
            Err(ImageError::Invalid { .. })
        ));
        let mut b = craft_qcow2(3, MIB);
        b[4..8].copy_from_slice(&4u32.to_be_bytes());
        assert!(matches!(
            check_bytes(&b, ImageFormat::Qcow2),
            Err(ImageError::Invalid { .. })
        ));
        // An extension whose length runs past the cluster.
        let mut b = craft_qcow2(3, MIB);
        b[112..116].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[116..120].copy_from_slice(&4096u32.to_be_bytes());
        assert!(matches!(
            check_bytes(&b, ImageFormat::Qcow2),
            Err(ImageError::Invalid { .. })
        ));
    }

    // ------------------------------------------------- format mismatches

    #[test]
    fn declared_raw_but_qcow2_or_vmdk_is_a_mismatch() {
        let b = craft_qcow2(3, MIB);
        assert!(matches!(
            check_bytes(&b, ImageFormat::Raw),
            Err(ImageError::FormatMismatch {
                declared: ImageFormat::Raw,
                detected: DetectedFormat::Qcow2
            })
        ));
        let d = tmp();
        let p = d.path().join("s.vmdk");
        create_image(&p, "vmdk", &[], "1M");
        assert!(matches!(
            inspect(&p, ImageFormat::Raw, &limits()),
            Err(ImageError::FormatMismatch {
                detected: DetectedFormat::Vmdk,
                ..
            })
        ));
        let desc = "# Disk DescriptorFile\nversion=1\nRW 2048 FLAT \"/etc/passwd\" 0\n";
        assert!(matches!(
            check_bytes(desc.as_bytes(), ImageFormat::Raw),
            Err(ImageError::FormatMismatch {
                detected: DetectedFormat::Vmdk,
                ..
            })
        ));
        // Exactly QEMU's probe: no marker comment, just blank lines and version=.
        assert!(matches!(
            check_bytes(b"\n  \nversion=2\n", ImageFormat::Raw),
            Err(ImageError::FormatMismatch {
                detected: DetectedFormat::Vmdk,
                ..
            })
        ));
    }

    #[test]
    fn declared_qcow2_or_vmdk_but_raw_is_a_mismatch() {
        let b = vec![0x55u8; 4096];
        for declared in [ImageFormat::Qcow2, ImageFormat::Vmdk] {
            assert!(matches!(
                check_bytes(&b, declared),
                Err(ImageError::FormatMismatch {
                    detected: DetectedFormat::Raw,
                    ..
                })
            ));
        }
        assert_eq!(
            check_bytes(&b, ImageFormat::Raw)
                .ok()
                .map(|r| r.virtual_size),
            Some(4096)
        );
    }

    #[test]
    fn other_probed_formats_are_never_raw() {
        let d = tmp();
        let cases = [
            ("vpc", DetectedFormat::Vhd),
            ("vhdx", DetectedFormat::Vhdx),
            ("vdi", DetectedFormat::Vdi),
            ("qed", DetectedFormat::Qed),
            ("qcow", DetectedFormat::Qcow),
            ("parallels", DetectedFormat::Parallels),
        ];
        for (fmt, want) in cases {
            let p = d.path().join(format!("x.{fmt}"));
            create_image(&p, fmt, &[], "4M");
            for declared in [ImageFormat::Raw, ImageFormat::Qcow2] {
                match inspect(&p, declared, &limits()) {
                    Err(ImageError::FormatMismatch { detected, .. }) => {
                        assert_eq!(detected, want, "{fmt}")
                    }
                    other => panic!("{fmt} declared {declared}: {other:?}"),
                }
            }
        }
        let p = d.path().join("x.luks");
        create_image(
            &p,
            "luks",
            &["--object", "secret,id=s0,data=pw", "-o", "key-secret=s0"],
            "4M",
        );
        assert!(matches!(
            inspect(&p, ImageFormat::Raw, &limits()),
            Err(ImageError::FormatMismatch {
                detected: DetectedFormat::Luks,
                ..
            })
        ));
        assert_eq!(detect(b"Bochs Virtual HD Image\0"), DetectedFormat::Bochs);
        assert_eq!(
            detect(b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop"),
            DetectedFormat::Cloop
        );
    }

    // ------------------------------------------------------------- VMDK

    #[test]
    fn vmdk_made_by_qemu_img_is_accepted() {
        let d = tmp();
        for sub in ["monolithicSparse", "streamOptimized"] {
            let p = d.path().join(format!("{sub}.vmdk"));
            create_image(&p, "vmdk", &["-o", &format!("subformat={sub}")], "1G");
            let r = inspect(&p, ImageFormat::Vmdk, &limits()).expect(sub);
            assert_eq!(
                r,
                InspectReport {
                    format: ImageFormat::Vmdk,
                    virtual_size: 1 << 30
                }
            );
        }
    }

    #[test]
    fn vmdk_descriptor_to_host_file_is_unsafe() {
        let d = tmp();
        let p = d.path().join("evil.vmdk");
        std::fs::write(&p, sparse_desc("RW 2048 FLAT \"/etc/passwd\" 0")).expect("write");
        let msg = unsafe_msg(inspect(&p, ImageFormat::Vmdk, &limits()));
        assert!(msg.contains("\"/etc/passwd\""), "{msg}");

        // What qemu-img itself writes for split formats is refused the same way.
        let p = d.path().join("flat.vmdk");
        create_image(&p, "vmdk", &["-o", "subformat=monolithicFlat"], "1M");
        assert!(unsafe_msg(inspect(&p, ImageFormat::Vmdk, &limits())).contains("flat-flat.vmdk"));
        // A descriptor with only ZERO extents names no file but holds no data.
        let b = sparse_desc("RW 2048 ZERO");
        assert!(matches!(
            check_bytes(b.as_bytes(), ImageFormat::Vmdk),
            Err(ImageError::Invalid { .. })
        ));
    }

    #[test]
    fn sparse_vmdk_descriptor_rules() {
        let ok = craft_vmdk(2048, &sparse_desc("RW 2048 SPARSE \"disk.vmdk\""));
        assert_eq!(
            check_bytes(&ok, ImageFormat::Vmdk)
                .ok()
                .map(|r| r.virtual_size),
            Some(MIB)
        );

        for (extent, needle) in [
            ("RW 2048 SPARSE \"/etc/passwd\"", "/etc/passwd"),
            ("RW 2048 SPARSE \"../other.vmdk\"", "../other.vmdk"),
            ("RW 2048 FLAT \"disk-flat.vmdk\" 0", "FLAT"),
            (
                "RW 1024 SPARSE \"a.vmdk\"\nRW 1024 SPARSE \"b.vmdk\"",
                "2 extents",
            ),
        ] {
            let b = craft_vmdk(2048, &sparse_desc(extent));
            let msg = unsafe_msg(check_bytes(&b, ImageFormat::Vmdk));
            assert!(msg.contains(needle), "{extent}: {msg}");
        }
        let b = craft_vmdk(
            2048,
            &sparse_desc("RW 2048 SPARSE \"d.vmdk\"")
                .replace("monolithicSparse", "twoGbMaxExtentSparse"),
        );
        assert!(unsafe_msg(check_bytes(&b, ImageFormat::Vmdk)).contains("twoGbMaxExtentSparse"));
    }

    #[test]
    fn sparse_vmdk_with_zero_capacity_delegating_to_descriptor_is_unsafe() {
        let b = craft_vmdk(0, &sparse_desc("RW 2048 FLAT \"/etc/shadow\" 0"));
        let msg = unsafe_msg(check_bytes(&b, ImageFormat::Vmdk));
        assert!(msg.contains("\"/etc/shadow\""), "{msg}");
    }

    #[test]
    fn sparse_vmdk_with_parent_is_unsafe() {
        let desc = format!(
            "{}parentFileNameHint=\"/etc/passwd\"\n",
            sparse_desc("RW 2048 SPARSE \"d.vmdk\"")
        );
        let b = craft_vmdk(2048, &desc);
        assert!(
            unsafe_msg(check_bytes(&b, ImageFormat::Vmdk)).contains("parent disk \"/etc/passwd\"")
        );
        // QEMU reads the hint at offset 512 even when the header says the
        // descriptor is elsewhere.
        let mut b = craft_vmdk(2048, "parentFileNameHint=\"/root/x\"\n");
        b[28..36].copy_from_slice(&0u64.to_le_bytes());
        assert!(unsafe_msg(check_bytes(&b, ImageFormat::Vmdk)).contains("/root/x"));
    }

    #[test]
    fn stream_optimized_footer_capacity_is_used() {
        let mut b = craft_vmdk(0xdead, &sparse_desc("RW 4096 SPARSE \"s.vmdk\""));
        b[56..64].copy_from_slice(&VMDK_GD_AT_END.to_le_bytes());
        let mut footer = vec![0u8; 1536];
        footer[12..16].copy_from_slice(&VMDK_MARKER_FOOTER.to_le_bytes());
        footer[512..516].copy_from_slice(b"KDMV");
        footer[516..520].copy_from_slice(&3u32.to_le_bytes());
        footer[524..532].copy_from_slice(&4096u64.to_le_bytes());
        b.extend_from_slice(&footer);
        assert_eq!(
            check_bytes(&b, ImageFormat::Vmdk)
                .ok()
                .map(|r| r.virtual_size),
            Some(2 * MIB)
        );
        // Without a valid footer it is invalid.
        let n = b.len();
        b[n - 1024] = 1;
        assert!(matches!(
            check_bytes(&b, ImageFormat::Vmdk),
            Err(ImageError::Invalid { .. })
        ));
    }

    #[test]
    fn truncated_vmdk_is_invalid() {
        let b = craft_vmdk(2048, &sparse_desc("RW 2048 SPARSE \"d.vmdk\""));
        assert!(matches!(
            check_bytes(&b[..100], ImageFormat::Vmdk),
            Err(ImageError::Invalid { .. })
        ));
        assert!(matches!(
            check_bytes(b"COWD\x01\0\0\0", ImageFormat::Vmdk),
            Err(ImageError::Invalid { .. })
        ));
    }

    #[test]
    fn empty_and_special_files_are_invalid() {
        assert!(matches!(
            check_bytes(&[], ImageFormat::Raw),
            Err(ImageError::Invalid { .. })
        ));
        assert!(matches!(
            inspect(Path::new("/dev/null"), ImageFormat::Raw, &limits()),
            Err(ImageError::Invalid { .. })
        ));
    }

    // ---------------------------------------------------- never panics

    fn mutate(mut base: Vec<u8>, edits: Vec<(usize, u8)>, cut: usize) -> Vec<u8> {
        for (i, v) in edits {
            let n = base.len();
            base[i % n] = v;
        }
        base.truncate(cut.max(1));
        base
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            for f in [ImageFormat::Raw, ImageFormat::Qcow2, ImageFormat::Vmdk] {
                let _ = check_bytes(&bytes, f);
            }
        }

        #[test]
        fn mutated_qcow2_headers_never_panic(
            version in 2u32..4,
            edits in proptest::collection::vec((0usize..512, any::<u8>()), 0..24),
            cut in 0usize..4096,
        ) {
            let mut base = craft_qcow2(version, MIB);
            put_ext(&mut base, 112, 0x6803_f857, &[1u8; 40]);
            let b = mutate(base, edits, cut);
            let _ = check_bytes(&b, ImageFormat::Qcow2);
            let _ = check_bytes(&b, ImageFormat::Raw);
        }

        #[test]
        fn mutated_vmdk_headers_never_panic(
            edits in proptest::collection::vec((0usize..1024, any::<u8>()), 0..24),
            cut in 0usize..12000,
            gd_at_end in any::<bool>(),
        ) {
            let mut base = craft_vmdk(2048, &sparse_desc("RW 2048 SPARSE \"d.vmdk\""));
            if gd_at_end {
                base[56..64].copy_from_slice(&VMDK_GD_AT_END.to_le_bytes());
            }
            let b = mutate(base, edits, cut);
            let _ = check_bytes(&b, ImageFormat::Vmdk);
        }

        #[test]
        fn descriptor_parser_never_panics(text in "[ -~\n\"=#]{0,400}") {
            let d = Descriptor::parse(text.as_bytes());
            let _ = d.check_single_sparse_extent();
            let _ = check_bytes(text.as_bytes(), ImageFormat::Vmdk);
        }
    }

    // ------------------------------------------------- layers (overlays)

    #[test]
    fn layer_with_backing_is_reported_not_refused() {
        let d = tmp();
        let base = d.path().join("base.qcow2");
        create_image(&base, "qcow2", &[], "64M");
        let ov = d.path().join("ov.qcow2");
        create_image(&ov, "qcow2", &["-b", path_str(&base), "-F", "qcow2"], "64M");
        let r = inspect_layer(&ov, &limits()).expect("layer accepted");
        assert_eq!(r.virtual_size, 64 * MIB);
        assert_eq!(r.backing_file.as_deref(), Some(path_str(&base)));
        assert_eq!(r.backing_format.as_deref(), Some("qcow2"));
        assert_eq!(r.snapshots, 0);
        // The same file is still refused by the template inspection.
        assert!(unsafe_msg(inspect(&ov, ImageFormat::Qcow2, &limits())).contains("backing file"));

        qemu_img(&["snapshot", "-f", "qcow2", "-c", "s1", path_str(&ov)]);
        assert_eq!(inspect_layer(&ov, &limits()).expect("ok").snapshots, 1);

        // A hostile backing name is only reported, never opened.
        let evil = d.path().join("evil.qcow2");
        hostile_backing_qcow2(&evil);
        let r = inspect_layer(&evil, &limits()).expect("reported");
        assert_eq!(r.backing_file.as_deref(), Some("/etc/passwd"));
        assert_eq!(r.backing_format.as_deref(), Some("raw"));

        // Self-contained qcow2 is a layer without backing.
        let r = inspect_layer(&base, &limits()).expect("ok");
        assert_eq!((r.backing_file, r.backing_format), (None, None));
    }

    #[test]
    fn layer_inspection_keeps_every_other_rule() {
        let d = tmp();
        let df = d.path().join("df.qcow2");
        let data = format!("data_file={}", d.path().join("df.raw").display());
        create_image(&df, "qcow2", &["-o", &data], "1M");
        assert!(unsafe_msg_layer(inspect_layer(&df, &limits())).contains("data file"));

        let mut b = craft_qcow2(3, MIB);
        set_incompat(&mut b, QCOW2_INCOMPAT_CORRUPT);
        assert!(unsafe_msg_layer(inspect_layer_source(&&b[..], &limits())).contains("corrupt"));
        let mut b = craft_qcow2(3, MIB);
        set_incompat(&mut b, 1 << 40);
        assert!(unsafe_msg_layer(inspect_layer_source(&&b[..], &limits())).contains("unknown"));
        let mut b = craft_qcow2(2, MIB);
        b[32..36].copy_from_slice(&1u32.to_be_bytes());
        assert!(unsafe_msg_layer(inspect_layer_source(&&b[..], &limits())).contains("encrypted"));
        let b = craft_qcow2(3, 5 << 30);
        assert!(matches!(
            inspect_layer_source(&&b[..], &limits()),
            Err(ImageError::TooLarge { .. })
        ));
        // Not qcow2 at all.
        assert!(matches!(
            inspect_layer_source(&&[0x55u8; 4096][..], &limits()),
            Err(ImageError::FormatMismatch {
                detected: DetectedFormat::Raw,
                ..
            })
        ));
        // A backing name that does not fit in the header cluster.
        let mut b = craft_qcow2(3, MIB);
        b[8..16].copy_from_slice(&500u64.to_be_bytes());
        b[16..20].copy_from_slice(&100u32.to_be_bytes());
        assert!(matches!(
            inspect_layer_source(&&b[..], &limits()),
            Err(ImageError::Invalid { .. })
        ));
        b[16..20].copy_from_slice(&5u32.to_be_bytes());
        b[500..505].copy_from_slice(b"/a/b\0");
        let r = inspect_layer_source(&&b[..], &limits()).expect("fits");
        assert_eq!(r.backing_file.as_deref(), Some("/a/b\0"));
    }

    fn unsafe_msg_layer(r: Result<LayerReport, ImageError>) -> String {
        match r {
            Err(ImageError::Unsafe(m)) => m,
            other => panic!("expected Unsafe, got {other:?}"),
        }
    }

    proptest! {
        #[test]
        fn mutated_layer_headers_never_panic(
            edits in proptest::collection::vec((0usize..512, any::<u8>()), 0..24),
            cut in 0usize..4096,
        ) {
            let mut base = craft_qcow2(3, MIB);
            base[8..16].copy_from_slice(&400u64.to_be_bytes());
            base[16..20].copy_from_slice(&8u32.to_be_bytes());
            put_ext(&mut base, 112, QCOW2_EXT_BACKING_FORMAT, b"qcow2");
            let b = mutate(base, edits, cut);
            let _ = inspect_layer_source(&&b[..], &limits());
        }
    }
}
