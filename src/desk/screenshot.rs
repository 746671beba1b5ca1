//! Screenshots of a VM's screen for a fault report.
//!
//! libvirt hands over what the hypervisor made (QEMU: a binary PPM, `P6`);
//! it is converted to PNG here ([`to_png`], pure) and stored once per content
//! under `<data>/desk/screenshots/<sha256>.png` ([`ShotStore`]): the name is
//! the SHA-256 of the bytes, never anything a user typed, and identical
//! pictures share one file.
//!
//! Limits: the hypervisor's picture may be at most [`MAX_RAW_BYTES`] and the
//! PNG at most [`MAX_PNG_BYTES`]; dimensions are checked before any pixel
//! buffer is allocated.
//!
//! Nothing stays forever unattached: the desk's pass drops screenshots
//! never sent with a report after a bound, and removes files no row names
//! (the server killed between writing a file and its row, or while a
//! temporary file was half written) once they are older than the same
//! bound ([`stray_files`], pure), so a capture in flight is never touched.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Largest picture accepted from the hypervisor (a 4K screen as PPM is ~25 MB).
pub const MAX_RAW_BYTES: usize = 32 * 1024 * 1024;
/// Largest PNG kept.
pub const MAX_PNG_BYTES: usize = 8 * 1024 * 1024;
/// Largest width or height accepted.
const MAX_SIDE: u32 = 8192;

#[derive(Debug, thiserror::Error)]
pub enum ShotError {
    #[error("the screen picture is not a PPM or PNG image this server can read: {0}")]
    Format(&'static str),
    #[error("the screenshot is larger than {} MiB", MAX_PNG_BYTES / (1024 * 1024))]
    TooLarge,
    #[error("encoding the screenshot failed: {0}")]
    Encode(String),
}

/// The hypervisor's picture as PNG bytes. PNG passes through (checked by
/// its signature); binary PPM (`P6`, 8 bits per sample) is converted.
pub fn to_png(mime: &str, raw: &[u8]) -> Result<Vec<u8>, ShotError> {
    const PNG_SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if raw.starts_with(PNG_SIG) {
        return if raw.len() > MAX_PNG_BYTES {
            Err(ShotError::TooLarge)
        } else {
            Ok(raw.to_vec())
        };
    }
    let _ = mime; // the bytes decide; libvirt's MIME type is only a hint
    let (width, height, pixels) = parse_ppm(raw)?;
    let out = encode_rgb_png(width, height, pixels)?;
    if out.len() > MAX_PNG_BYTES {
        return Err(ShotError::TooLarge);
    }
    Ok(out)
}

/// 8-bit RGB `pixels` of a `width` × `height` picture as PNG (fast
/// compression: screens are taken often and stored once).
pub fn encode_rgb_png(width: u32, height: u32, pixels: &[u8]) -> Result<Vec<u8>, ShotError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut writer = enc
            .write_header()
            .map_err(|e| ShotError::Encode(e.to_string()))?;
        writer
            .write_image_data(pixels)
            .map_err(|e| ShotError::Encode(e.to_string()))?;
        writer
            .finish()
            .map_err(|e| ShotError::Encode(e.to_string()))?;
    }
    Ok(out)
}

/// The next whitespace-separated header field of a PPM at `*pos`,
/// skipping whitespace and `#` comments before it.
fn next_field<'a>(raw: &'a [u8], pos: &mut usize) -> Result<&'a [u8], ShotError> {
    loop {
        match raw.get(*pos) {
            Some(b) if b.is_ascii_whitespace() => *pos += 1,
            Some(b'#') => {
                while raw.get(*pos).is_some_and(|&b| b != b'\n') {
                    *pos += 1;
                }
            }
            Some(_) => break,
            None => return Err(ShotError::Format("truncated header")),
        }
    }
    let start = *pos;
    while raw.get(*pos).is_some_and(|b| !b.is_ascii_whitespace()) {
        *pos += 1;
    }
    Ok(&raw[start..*pos])
}

fn next_number(raw: &[u8], pos: &mut usize) -> Result<u32, ShotError> {
    std::str::from_utf8(next_field(raw, pos)?)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ShotError::Format("bad header number"))
}

/// A binary PPM's width, height and RGB bytes (borrowed from `raw`);
/// the wall's thumbnails read the same pictures.
pub fn parse_ppm(raw: &[u8]) -> Result<(u32, u32, &[u8]), ShotError> {
    let mut pos = 0;
    if next_field(raw, &mut pos)? != b"P6" {
        return Err(ShotError::Format("not a binary PPM (P6)"));
    }
    let width = next_number(raw, &mut pos)?;
    let height = next_number(raw, &mut pos)?;
    let maxval = next_number(raw, &mut pos)?;
    if maxval != 255 {
        return Err(ShotError::Format("only 8-bit samples are supported"));
    }
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(ShotError::Format("unreasonable dimensions"));
    }
    // Exactly one whitespace byte separates the header from the pixels.
    pos += 1;
    let len = width as usize * height as usize * 3;
    let pixels = raw
        .get(pos..pos + len)
        .ok_or(ShotError::Format("fewer pixels than the header says"))?;
    Ok((width, height, pixels))
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Where screenshots are kept: `<data>/desk/screenshots/`.
#[derive(Debug, Clone)]
pub struct ShotStore {
    dir: PathBuf,
}

impl ShotStore {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("desk").join("screenshots"),
        }
    }

    /// The file of a screenshot, by its SHA-256 (only ever one we computed).
    pub fn path(&self, sha256: &str) -> Option<PathBuf> {
        let ok = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| self.dir.join(format!("{sha256}.png")))
    }

    /// Stores `png` (blocking I/O: call off the async threads); returns its SHA-256.
    /// Written to a temporary name and renamed, so a reader never sees half a file.
    pub fn put(&self, png: &[u8]) -> io::Result<String> {
        let sha = sha256_hex(png);
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("{sha}.png"));
        if !path.exists() {
            let tmp = self
                .dir
                .join(format!(".{sha}.{}.tmp", uuid::Uuid::new_v4().simple()));
            std::fs::write(&tmp, png)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(sha)
    }

    /// Every file in the store with its modification time (blocking I/O).
    pub fn files(&self) -> io::Result<Vec<(String, std::time::SystemTime)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            if let Some(name) = entry.file_name().to_str() {
                out.push((name.to_owned(), meta.modified()?));
            }
        }
        Ok(out)
    }

    /// Removes a file of the store by the name [`ShotStore::files`] gave.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        // Only a plain name inside the store, never a path.
        if name.contains('/') || name.contains("..") {
            return Ok(());
        }
        crate::storage::remove_file_if_exists(&self.dir.join(name))
    }

    /// Removes a stored screenshot (absent is fine).
    pub fn remove(&self, sha256: &str) -> io::Result<()> {
        match self.path(sha256) {
            Some(p) => crate::storage::remove_file_if_exists(&p),
            None => Ok(()),
        }
    }
}

/// The files of the store to remove: screenshots (`<sha256>.png`) no row
/// names and temporary files, modified before `cutoff`. Newer files are
/// kept: a capture writes its file before its row.
pub fn stray_files(
    files: &[(String, std::time::SystemTime)],
    known: &std::collections::HashSet<String>,
    cutoff: std::time::SystemTime,
) -> Vec<String> {
    files
        .iter()
        .filter(|(_, modified)| *modified < cutoff)
        .filter(|(name, _)| match name.strip_suffix(".png") {
            Some(sha) if !name.starts_with('.') => !known.contains(sha),
            _ => name.starts_with('.') && name.ends_with(".tmp"),
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stray_files_are_old_unnamed_pictures_and_old_temporaries() {
        use std::time::{Duration, SystemTime};
        let cutoff = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let old = cutoff - Duration::from_secs(1);
        let new = cutoff + Duration::from_secs(1);
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let files = vec![
            (format!("{a}.png"), old),                // named by a row: kept
            (format!("{b}.png"), old),                // no row, old: removed
            (format!("{}.png", "c".repeat(64)), new), // no row, new: kept
            (format!(".{b}.x.tmp"), old),             // a half-written file: removed
            (format!(".{b}.y.tmp"), new),             // being written: kept
            ("notes.txt".to_owned(), old),            // not the store's: kept
        ];
        let known = std::collections::HashSet::from([a.clone()]);
        assert_eq!(
            stray_files(&files, &known, cutoff),
            vec![format!("{b}.png"), format!(".{b}.x.tmp")]
        );
    }

    fn ppm(w: u32, h: u32) -> Vec<u8> {
        let mut v = format!("P6\n# made by a test\n{w} {h}\n255\n").into_bytes();
        for i in 0..(w * h) {
            v.extend_from_slice(&[(i % 256) as u8, 0x80, 0xff]);
        }
        v
    }

    #[test]
    fn ppm_becomes_a_png_of_the_same_size() {
        let png = to_png("image/x-portable-pixmap", &ppm(64, 48)).expect("png");
        assert!(png.starts_with(b"\x89PNG"));
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let reader = decoder.read_info().expect("read");
        assert_eq!((reader.info().width, reader.info().height), (64, 48));
    }

    #[test]
    fn bad_pictures_are_refused() {
        assert!(to_png("", b"P3\n1 1\n255\n0 0 0").is_err());
        assert!(to_png("", b"P6\n10 10\n255\n\0\0\0").is_err());
        assert!(to_png("", b"P6\n0 10\n255\n").is_err());
        assert!(to_png("", b"P6\n99999 1\n255\n").is_err());
        assert!(to_png("", b"P6\n1 1\n65535\n\0\0\0\0\0\0").is_err());
        assert!(to_png("", b"").is_err());
    }

    #[test]
    fn store_names_files_by_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ShotStore::new(dir.path());
        let sha = store.put(b"\x89PNG\r\n\x1a\nabc").expect("put");
        assert_eq!(sha, sha256_hex(b"\x89PNG\r\n\x1a\nabc"));
        let path = store.path(&sha).expect("path");
        assert!(path.exists());
        assert!(store.path("../../etc/passwd").is_none());
        store.remove(&sha).expect("remove");
        assert!(!path.exists());
    }
}
