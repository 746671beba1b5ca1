//! Free space of an ext2/3/4 file system, read from its superblock and group
//! descriptors (offline, no mount, no e2fsprogs needed at run time).
//!
//! The caller reads the bytes through [`crate::images::qemu_img::read_guest`]
//! (qemu-io, read-only) from a stopped VM's layer, so this module only parses.
//! Numbers come from the group descriptors when they are contiguous (no
//! `meta_bg`) and small enough to read, else from the superblock. If the guest
//! did not unmount cleanly (journal needs recovery), they may lag the last few
//! seconds of writes: [`FsUsage::clean`] says so.

/// Where the superblock starts, relative to the file system.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
pub const SUPERBLOCK_LEN: usize = 1024;
const MAGIC: u16 = 0xEF53;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;
const RO_COMPAT_BIGALLOC: u32 = 0x200;

fn le16(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}
fn le32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// True if `sb` (1024 bytes at [`SUPERBLOCK_OFFSET`]) carries the ext magic.
pub fn has_magic(sb: &[u8]) -> bool {
    le16(sb, 0x38) == MAGIC
}

/// The superblock fields that matter for free space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub block_size: u64,
    /// Allocation unit of the free counts (block size, or the cluster size with bigalloc).
    pub cluster_size: u64,
    pub blocks: u64,
    pub reserved_blocks: u64,
    pub free_clusters: u64,
    pub first_data_block: u64,
    pub blocks_per_group: u64,
    pub desc_size: u64,
    pub meta_bg: bool,
    pub wide_counts: bool,
    pub needs_recovery: bool,
}

impl Superblock {
    pub fn parse(sb: &[u8]) -> Result<Superblock, String> {
        if sb.len() < SUPERBLOCK_LEN {
            return Err("short superblock".into());
        }
        if !has_magic(sb) {
            return Err("no ext2/3/4 superblock".into());
        }
        let log_block = le32(sb, 0x18);
        if log_block > 6 {
            return Err(format!("block size 1024<<{log_block} out of range"));
        }
        let block_size = 1024u64 << log_block;
        let incompat = le32(sb, 0x60);
        let ro_compat = le32(sb, 0x64);
        let bit64 = incompat & INCOMPAT_64BIT != 0;
        let hi = |off: usize| {
            if bit64 {
                u64::from(le32(sb, off)) << 32
            } else {
                0
            }
        };
        let cluster_size = if ro_compat & RO_COMPAT_BIGALLOC != 0 {
            let log_cluster = le32(sb, 0x1C);
            if !(log_block..=log_block + 16).contains(&log_cluster) {
                return Err("cluster size out of range".into());
            }
            1024u64 << log_cluster
        } else {
            block_size
        };
        let desc_size = if bit64 { u64::from(le16(sb, 0xFE)) } else { 32 };
        if !(32..=1024).contains(&desc_size) || !desc_size.is_power_of_two() {
            return Err(format!("group descriptor size {desc_size} is invalid"));
        }
        let s = Superblock {
            block_size,
            cluster_size,
            blocks: u64::from(le32(sb, 0x04)) | hi(0x150),
            reserved_blocks: u64::from(le32(sb, 0x08)) | hi(0x154),
            free_clusters: u64::from(le32(sb, 0x0C)) | hi(0x158),
            first_data_block: u64::from(le32(sb, 0x14)),
            blocks_per_group: u64::from(le32(sb, 0x20)),
            desc_size,
            meta_bg: incompat & INCOMPAT_META_BG != 0,
            wide_counts: bit64 && desc_size >= 64,
            needs_recovery: incompat & INCOMPAT_RECOVER != 0,
        };
        if s.blocks == 0 || s.blocks_per_group == 0 || s.first_data_block >= s.blocks {
            return Err("superblock counts are inconsistent".into());
        }
        Ok(s)
    }

    pub fn groups(&self) -> u64 {
        (self.blocks - self.first_data_block).div_ceil(self.blocks_per_group)
    }

    /// Byte range of the group descriptor table, relative to the file
    /// system, if it is one contiguous table (no `meta_bg`).
    pub fn gdt_range(&self) -> Option<(u64, u64)> {
        if self.meta_bg {
            return None;
        }
        let start = (self.first_data_block + 1).checked_mul(self.block_size)?;
        let len = self.groups().checked_mul(self.desc_size)?;
        Some((start, len))
    }

    /// Sum of the free counts of all group descriptors in `gdt`.
    pub fn gdt_free_clusters(&self, gdt: &[u8]) -> Option<u64> {
        let n = usize::try_from(self.groups()).ok()?;
        let d = usize::try_from(self.desc_size).ok()?;
        if gdt.len() < n.checked_mul(d)? {
            return None;
        }
        Some(
            gdt.chunks_exact(d)
                .take(n)
                .map(|g| {
                    let lo = u64::from(le16(g, 0x0C));
                    let hi = if self.wide_counts {
                        u64::from(le16(g, 0x2C)) << 16
                    } else {
                        0
                    };
                    lo | hi
                })
                .sum(),
        )
    }

    /// Usage from the superblock, or from the group descriptors when given.
    pub fn usage(&self, gdt: Option<&[u8]>) -> FsUsage {
        let free_clusters = gdt
            .and_then(|g| self.gdt_free_clusters(g))
            .unwrap_or(self.free_clusters);
        let size = self.blocks.saturating_mul(self.block_size);
        let free = free_clusters.saturating_mul(self.cluster_size).min(size);
        let reserved = self.reserved_blocks.saturating_mul(self.block_size);
        FsUsage {
            size_bytes: size,
            free_bytes: free,
            available_bytes: free.saturating_sub(reserved),
            clean: !self.needs_recovery,
        }
    }
}

/// Space of one file system, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    /// All blocks of the file system (what `df` shows plus its metadata overhead).
    pub size_bytes: u64,
    /// Free, including the blocks reserved for root.
    pub free_bytes: u64,
    /// Free for ordinary users (`df`'s "Avail").
    pub available_bytes: u64,
    /// False when the journal still needs recovery (the guest was powered off
    /// without unmounting): the counts may miss the last seconds of writes.
    pub clean: bool,
}

impl FsUsage {
    /// Nearly full: less than 10 % of the file system available to users.
    pub fn nearly_full(&self) -> bool {
        self.available_bytes.saturating_mul(10) < self.size_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn mkfs(path: &std::path::Path, size: &str, dir: &std::path::Path, extra: &[&str]) {
        let ok = Command::new("truncate")
            .args(["-s", size])
            .arg(path)
            .status()
            .expect("truncate")
            .success();
        assert!(ok);
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .args(extra)
            .arg("-d")
            .arg(dir)
            .arg(path)
            .output()
            .expect("e2fsprogs installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn dumpe2fs_field(path: &std::path::Path, field: &str) -> u64 {
        let out = Command::new("dumpe2fs")
            .arg("-h")
            .arg(path)
            .output()
            .expect("dumpe2fs");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in {text}"))
    }

    #[test]
    fn matches_dumpe2fs_for_small_and_large_block_sizes() {
        let d = tempfile::tempdir().expect("tempdir");
        let files = d.path().join("files");
        std::fs::create_dir(&files).expect("mkdir");
        std::fs::write(files.join("data"), vec![0x5a; 6 << 20]).expect("write");
        for (size, extra) in [
            ("64M", vec![]),
            ("300M", vec!["-b", "4096"]),
            ("48M", vec!["-O", "^64bit"]),
        ] {
            let img = d.path().join(format!("fs-{size}.raw"));
            mkfs(&img, size, &files, &extra);
            let bytes = std::fs::read(&img).expect("read");
            let sb = Superblock::parse(&bytes[1024..2048]).expect("superblock");
            assert_eq!(sb.blocks, dumpe2fs_field(&img, "Block count"));
            assert_eq!(sb.free_clusters, dumpe2fs_field(&img, "Free blocks"));
            assert_eq!(sb.block_size, dumpe2fs_field(&img, "Block size"));
            let (off, len) = sb.gdt_range().expect("contiguous gdt");
            let gdt = &bytes[off as usize..(off + len) as usize];
            // A freshly made file system: descriptors and superblock agree.
            assert_eq!(sb.gdt_free_clusters(gdt), Some(sb.free_clusters), "{size}");
            let u = sb.usage(Some(gdt));
            assert_eq!(u.size_bytes, sb.blocks * sb.block_size);
            assert_eq!(u.free_bytes, sb.free_clusters * sb.block_size);
            assert_eq!(
                u.available_bytes,
                u.free_bytes - dumpe2fs_field(&img, "Reserved block count") * sb.block_size
            );
            assert!(u.clean);
            assert!(!u.nearly_full());
            assert!(u.size_bytes - u.free_bytes >= 6 << 20);
        }
    }

    #[test]
    fn nearly_full_and_garbage() {
        let d = tempfile::tempdir().expect("tempdir");
        let files = d.path().join("files");
        std::fs::create_dir(&files).expect("mkdir");
        std::fs::write(files.join("data"), vec![1u8; 24 << 20]).expect("write");
        let img = d.path().join("full.raw");
        mkfs(&img, "32M", &files, &[]);
        let bytes = std::fs::read(&img).expect("read");
        let sb = Superblock::parse(&bytes[1024..2048]).expect("superblock");
        assert!(sb.usage(None).nearly_full());

        assert!(Superblock::parse(&[0u8; 1024]).is_err());
        assert!(Superblock::parse(&bytes[1024..1500]).is_err());
        let mut bad = bytes[1024..2048].to_vec();
        bad[0x20..0x24].copy_from_slice(&0u32.to_le_bytes());
        assert!(Superblock::parse(&bad).is_err());
        let mut bad = bytes[1024..2048].to_vec();
        bad[0x18..0x1C].copy_from_slice(&40u32.to_le_bytes());
        assert!(Superblock::parse(&bad).is_err());
        // A short descriptor table falls back to the superblock.
        assert_eq!(sb.gdt_free_clusters(&[0u8; 8]), None);
        assert_eq!(sb.usage(Some(&[0u8; 8])), sb.usage(None));
    }
}
