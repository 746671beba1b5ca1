//! Disk images: checking what teachers upload, converting it into a template
//! layer, and creating the students' copy-on-write overlays.
//!
//! Role and invariants:
//! - An uploaded file is inspected by [`inspect::inspect`] — our own bounded
//!   header parser — *before* any `qemu-img` opens it. `qemu-img` happily follows
//!   qcow2 backing files, qcow2 external data files and VMDK extent/parent paths,
//!   so letting it look first is exactly the OpenStack OSSA-2015-014 /
//!   OSSA-2024-001 hole (an "image" that reads `/etc/passwd` off the host).
//! - The declared format must equal the format the bytes actually have. A file
//!   declared `raw` that is really qcow2/vmdk/vhd/… is refused, because anything
//!   that later probes it would interpret its headers.
//! - Every `qemu-img` call passes an explicit `-f`, runs under `prlimit`
//!   (address space, CPU time) and a wall-clock timeout, and is killed when dropped.
//! - Template layers are always self-contained qcow2 (no backing file, no data
//!   file); overlays always name their backing file by absolute path *and* record
//!   the backing format (`qcow2`), so nothing ever probes a format.
//! - Files appear atomically: written under a temporary name in the destination
//!   directory, flushed, then linked/renamed into place. A crash leaves at most a
//!   stray `.*.tmp` file, never a half-written image under the real name.
//!
//! Pipeline for an upload (see [`import_image`]): inspect → `qemu-img info`
//! cross-check → `qemu-img convert -O qcow2` → `qemu-img check` + `info` of the
//! result.
//!
//! Everything here is synchronous file I/O or `tokio::process`; callers on the
//! async runtime should run [`inspect::inspect`] and the overlay functions in
//! `spawn_blocking`.

pub mod fields;
pub mod inspect;
pub mod overlay;
pub mod partition;
pub mod qemu_img;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use inspect::{DetectedFormat, InspectLimits, InspectReport, inspect};
pub use overlay::{OverlayJob, create_overlay, create_overlays_parallel, replace_overlay};
pub use qemu_img::{CheckReport, QemuImgInfo};

/// Image formats a teacher may upload. Everything is converted to qcow2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Raw,
    Qcow2,
    Vmdk,
}

impl ImageFormat {
    /// The driver name `qemu-img -f` expects.
    pub fn as_qemu_str(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Vmdk => "vmdk",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_qemu_str())
    }
}

impl FromStr for ImageFormat {
    type Err = ImageError;

    /// Accepts the names the import API documents; `img` is the usual file
    /// extension of raw disk dumps, so it is an alias of `raw`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "raw" | "img" => Ok(ImageFormat::Raw),
            "qcow2" => Ok(ImageFormat::Qcow2),
            "vmdk" => Ok(ImageFormat::Vmdk),
            _ => Err(ImageError::UnknownFormat(s.chars().take(32).collect())),
        }
    }
}

/// Everything that can go wrong in this module.
///
/// HTTP mapping the API layer should use: `Unsafe`, `FormatMismatch`, `Invalid`
/// → 422 `unsafe_image`; `TooLarge` → 413; `UnknownFormat` → 400;
/// `OverlayExists` → 409; `QemuImg`/`Timeout` while importing an upload → 422
/// (the upload is what qemu-img choked on), otherwise 500; `BadOverlay`, `Io` →
/// 500. Messages of the first three are written for the end user and quote no
/// host path other than a backing/extent name taken from the upload itself; the
/// others may contain server paths and must not be sent to clients.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image would make QEMU open something other than itself (backing file,
    /// external data file, VMDK extent or parent), or uses a feature we refuse.
    #[error("unsafe image: {0}")]
    Unsafe(String),
    /// The bytes are not in the declared format.
    #[error("the file was declared as {declared} but it is a {detected} image")]
    FormatMismatch {
        declared: ImageFormat,
        detected: DetectedFormat,
    },
    /// The header is truncated or nonsensical.
    #[error("invalid {format} image: {reason}")]
    Invalid { format: ImageFormat, reason: String },
    /// The virtual disk is larger than allowed.
    #[error("virtual size {virtual_size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { virtual_size: u64, limit: u64 },
    /// A format name we do not accept.
    #[error("unknown image format {0:?} (expected raw, img, qcow2 or vmdk)")]
    UnknownFormat(String),
    /// `create_overlay` never clobbers: the target already exists.
    #[error("overlay {} already exists", .0.display())]
    OverlayExists(PathBuf),
    /// Overlay parameters we cannot encode (relative backing path, size, …).
    #[error("cannot create overlay: {0}")]
    BadOverlay(String),
    /// `qemu-img` ran but failed, or printed something we could not parse.
    /// An uploaded copy-on-write layer is well-formed but does not fit the
    /// base it is meant for (no backing reference, other disk size, internal
    /// snapshots, a header qemu-img reads differently, corrupt clusters).
    /// The message is for the end user.
    #[error("{0}")]
    BadLayer(String),
    #[error("qemu-img {op} failed: {detail}")]
    QemuImg { op: &'static str, detail: String },
    /// `qemu-img` exceeded its wall-clock budget and was killed.
    #[error("qemu-img {op} timed out after {secs} s")]
    Timeout { op: &'static str, secs: u64 },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl ImageError {
    /// True when the uploaded image itself is unacceptable (→ 422 for the user),
    /// as opposed to a server-side failure.
    pub fn is_bad_image(&self) -> bool {
        matches!(
            self,
            ImageError::Unsafe(_)
                | ImageError::FormatMismatch { .. }
                | ImageError::Invalid { .. }
                | ImageError::BadLayer(_)
        )
    }
}

/// Turns an uploaded file into a self-contained qcow2 template layer at `dst`.
///
/// `src` must be a file the server wrote itself (the upload spool). Steps, each
/// of which must pass before the next one touches the file:
/// 1. our own header inspection (no qemu involved),
/// 2. `qemu-img info` as a second opinion (still no backing file, data file or
///    foreign VMDK extent; same virtual size),
/// 3. `qemu-img convert -O qcow2` to a temporary name, fsync, rename to `dst`,
/// 4. `qemu-img check` and `info` of the result (clean, self-contained).
///
/// On failure `dst` does not exist afterwards.
pub async fn import_image(
    src: &Path,
    declared: ImageFormat,
    dst: &Path,
    limits: &InspectLimits,
) -> Result<InspectReport, ImageError> {
    let report = {
        let src = src.to_path_buf();
        let limits = limits.clone();
        tokio::task::spawn_blocking(move || inspect(&src, declared, &limits))
            .await
            .map_err(|e| ImageError::Io(std::io::Error::other(e)))??
    };

    let info = qemu_img::info(src, declared).await?;
    info.ensure_self_contained(src)?;
    // qemu rounds a raw file up to whole sectors.
    let expected = match declared {
        ImageFormat::Raw => report.virtual_size.div_ceil(512) * 512,
        _ => report.virtual_size,
    };
    if info.virtual_size != expected {
        // Our parser and qemu read the header differently: something is off.
        return Err(ImageError::Unsafe(format!(
            "the image header is ambiguous (virtual size {} vs {})",
            report.virtual_size, info.virtual_size
        )));
    }

    qemu_img::convert_to_qcow2(src, declared, dst).await?;
    let verify = async {
        let check = qemu_img::check(dst).await?;
        if !check.is_clean() {
            return Err(ImageError::QemuImg {
                op: "check",
                detail: format!("converted image is not clean: {check:?}"),
            });
        }
        let out = qemu_img::info(dst, ImageFormat::Qcow2).await?;
        out.ensure_self_contained(dst)?;
        Ok(())
    };
    if let Err(e) = verify.await {
        // Never leave a layer behind that failed verification.
        let _ = tokio::fs::remove_file(dst).await;
        return Err(e);
    }
    Ok(report)
}

/// Makes an uploaded qcow2 copy-on-write layer a layer on `backing` — a file
/// pvce chose (a VM's template, or the parent of a child template) — in place.
/// Shared by personal-layer imports ([`crate::portable`]) and child-template
/// imports ([`crate::templates`]).
///
/// The backing name recorded in the upload is untrusted text: it is reported
/// by our own parser, never opened, and replaced. Steps, each before the next
/// touches the file:
/// 1. [`inspect::inspect_layer`]: qcow2, *with* a backing reference, and every
///    other rule of an upload (no external data file, no encryption, not
///    corrupt, no unknown features, size limit);
/// 2. the virtual size equals `virtual_size` (the base's) and the layer has no
///    internal snapshots;
/// 3. `qemu-img rebase -u` onto `backing` (opens neither the old nor the new
///    backing file);
/// 4. `qemu-img info` agrees: our backing path and format, no data file, same
///    size; `qemu-img check` is clean.
///
/// Errors: the upload's faults are [`ImageError::BadLayer`] or
/// [`ImageError::Unsafe`]/[`ImageError::Invalid`]/[`ImageError::FormatMismatch`];
/// qemu-img failing on a file our parser accepted comes back as
/// [`ImageError::QemuImg`] for the caller to call it damaged. The caller
/// removes `upload` on error.
pub async fn adopt_layer(
    upload: &Path,
    backing: &Path,
    virtual_size: u64,
    limits: &InspectLimits,
) -> Result<inspect::LayerReport, ImageError> {
    let report = {
        let (path, limits) = (upload.to_path_buf(), limits.clone());
        tokio::task::spawn_blocking(move || inspect::inspect_layer(&path, &limits))
            .await
            .map_err(|e| ImageError::Io(std::io::Error::other(e)))??
    };
    if report.backing_file.is_none() {
        return Err(ImageError::BadLayer(
            "the layer has no backing file: a standalone image is not a copy-on-write layer".into(),
        ));
    }
    if report.virtual_size != virtual_size {
        return Err(ImageError::BadLayer(format!(
            "the layer's disk is {} bytes but its base's is {virtual_size}; it was not made on this base",
            report.virtual_size
        )));
    }
    if report.snapshots != 0 {
        return Err(ImageError::BadLayer(
            "the layer contains internal snapshots; remove them (or export it again from pvce)"
                .into(),
        ));
    }
    // Never the name in the file: our base, by our path, format fixed.
    qemu_img::rebase_unsafe(upload, backing).await?;
    let info = qemu_img::info(upload, ImageFormat::Qcow2).await?;
    let ours = std::path::absolute(backing)?;
    if info.backing_filename.as_deref() != Some(ours.to_string_lossy().as_ref())
        || info.backing_format.as_deref() != Some("qcow2")
        || info.data_file.is_some()
        || info.encrypted
        || info.corrupt
        || info.virtual_size != virtual_size
    {
        return Err(ImageError::BadLayer(
            "the layer's header is ambiguous (qemu-img reads it differently)".into(),
        ));
    }
    let check = qemu_img::check(upload).await?;
    if check.corruptions != 0 || check.check_errors != 0 {
        return Err(ImageError::BadLayer(
            "the layer is corrupt (qemu-img check)".into(),
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{create_image, hostile_backing_qcow2};

    #[test]
    fn format_names_round_trip() {
        for (s, f) in [
            ("raw", ImageFormat::Raw),
            ("img", ImageFormat::Raw),
            ("QCOW2", ImageFormat::Qcow2),
            ("vmdk", ImageFormat::Vmdk),
        ] {
            assert_eq!(s.parse::<ImageFormat>().ok(), Some(f));
        }
        assert!(matches!(
            "vhd".parse::<ImageFormat>(),
            Err(ImageError::UnknownFormat(_))
        ));
        assert_eq!(ImageFormat::Qcow2.to_string(), "qcow2");
        assert_eq!(
            serde_json::to_string(&ImageFormat::Vmdk).ok().as_deref(),
            Some("\"vmdk\"")
        );
    }

    #[tokio::test]
    async fn import_accepts_raw_and_vmdk() {
        let d = tempfile::tempdir().expect("tempdir");
        let raw = d.path().join("upload.img");
        std::fs::write(&raw, vec![7u8; 1000]).expect("write");
        let dst = d.path().join("t1.qcow2");
        let r = import_image(&raw, ImageFormat::Raw, &dst, &InspectLimits::default())
            .await
            .expect("raw import");
        // Whole sectors, as qemu-img converts it (below).
        assert_eq!(r.virtual_size, 1024);
        assert_eq!(
            qemu_img::info(&dst, ImageFormat::Qcow2)
                .await
                .expect("info")
                .virtual_size,
            1024
        );

        let vmdk = d.path().join("upload.vmdk");
        create_image(&vmdk, "vmdk", &[], "32M");
        let dst = d.path().join("t2.qcow2");
        let r = import_image(&vmdk, ImageFormat::Vmdk, &dst, &InspectLimits::default())
            .await
            .expect("vmdk import");
        assert_eq!(r.virtual_size, 32 << 20);
        assert!(dst.exists());
    }

    #[tokio::test]
    async fn import_refuses_unsafe_without_leaving_files() {
        let d = tempfile::tempdir().expect("tempdir");
        let evil = d.path().join("upload.qcow2");
        hostile_backing_qcow2(&evil);
        let dst = d.path().join("t.qcow2");
        let err = import_image(&evil, ImageFormat::Qcow2, &dst, &InspectLimits::default()).await;
        assert!(matches!(&err, Err(e) if e.is_bad_image()), "{err:?}");
        // Declared raw: the mismatch is caught before the backing file matters.
        let err = import_image(&evil, ImageFormat::Raw, &dst, &InspectLimits::default()).await;
        assert!(
            matches!(err, Err(ImageError::FormatMismatch { .. })),
            "{err:?}"
        );
        assert_eq!(std::fs::read_dir(d.path()).expect("read_dir").count(), 1);
    }
}
