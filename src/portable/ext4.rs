//! Free space of an ext2/3/4 file system, read from its superblock and group
//! descriptors (offline, no mount, no e2fsprogs needed at run time).
//!
//! The caller reads the bytes through [`crate::images::qemu_img::read_guest`]
//! (read-only) from a stopped VM's layer, so this module only parses.
//! Numbers come from the group descriptors when they are contiguous (no
//! `meta_bg`) and small enough to read, else from the superblock.
//!
//! A guest that was powered off without unmounting (the usual case) leaves its
//! latest group descriptors in the jbd2 journal, not yet written in place.
//! [`replay_gdt`] reads the committed transactions of the journal — read-only,
//! nothing is written back — and applies the newest logged copy of each
//! descriptor block (honouring revoke records), as the kernel's recovery
//! would. Only an internal journal inode with an extent tree of depth 0 is
//! followed (what mkfs.ext4 makes); otherwise the in-place numbers are used and
//! [`FsUsage::clean`] says they may lag.

use crate::images::fields::{be16, be32, le16, le32};

/// Where the superblock starts, relative to the file system.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
pub const SUPERBLOCK_LEN: usize = 1024;
const MAGIC: u16 = 0xEF53;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;
const RO_COMPAT_BIGALLOC: u32 = 0x200;
const COMPAT_HAS_JOURNAL: u32 = 0x4;

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
    pub has_journal: bool,
    pub journal_inum: u32,
    pub inode_size: u64,
    pub inodes_per_group: u64,
}

/// Why a superblock or the journal could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    #[error("short superblock")]
    ShortSuperblock,
    #[error("no ext2/3/4 superblock")]
    NoMagic,
    #[error("block size 1024<<{0} out of range")]
    BlockSize(u32),
    #[error("cluster size out of range")]
    ClusterSize,
    #[error("group descriptor size {0} is invalid")]
    DescriptorSize(u64),
    #[error("superblock counts are inconsistent")]
    InconsistentCounts,
    #[error("journal block outside its extents")]
    OutsideJournal,
    #[error("short journal read")]
    ShortJournalRead,
    #[error("journal inode's group not in the table")]
    JournalGroupMissing,
    /// The caller's read failed (its error, as text: the reader is generic).
    #[error("read failed: {0}")]
    Read(String),
}

impl Superblock {
    pub fn parse(sb: &[u8]) -> Result<Superblock, Ext4Error> {
        if sb.len() < SUPERBLOCK_LEN {
            return Err(Ext4Error::ShortSuperblock);
        }
        if !has_magic(sb) {
            return Err(Ext4Error::NoMagic);
        }
        let log_block = le32(sb, 0x18);
        if log_block > 6 {
            return Err(Ext4Error::BlockSize(log_block));
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
                return Err(Ext4Error::ClusterSize);
            }
            1024u64 << log_cluster
        } else {
            block_size
        };
        let desc_size = if bit64 { u64::from(le16(sb, 0xFE)) } else { 32 };
        if !(32..=1024).contains(&desc_size) || !desc_size.is_power_of_two() {
            return Err(Ext4Error::DescriptorSize(desc_size));
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
            has_journal: le32(sb, 0x5C) & COMPAT_HAS_JOURNAL != 0,
            journal_inum: le32(sb, 0xE0),
            inode_size: match le16(sb, 0x58) {
                0 => 128,
                n => u64::from(n),
            },
            inodes_per_group: u64::from(le32(sb, 0x28)),
        };
        if s.blocks == 0 || s.blocks_per_group == 0 || s.first_data_block >= s.blocks {
            return Err(Ext4Error::InconsistentCounts);
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
    /// `replayed`: the descriptors include the journal's committed changes.
    pub fn usage_replayed(&self, gdt: Option<&[u8]>, replayed: bool) -> FsUsage {
        let mut u = self.usage(gdt);
        u.clean = u.clean || (replayed && gdt.is_some());
        u
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

// ---------------------------------------------------------------- journal

const JBD2_MAGIC: u32 = 0xC03B_3998;
const JBD2_DESCRIPTOR: u32 = 1;
const JBD2_COMMIT: u32 = 2;
const JBD2_SUPERBLOCK_V1: u32 = 3;
const JBD2_SUPERBLOCK_V2: u32 = 4;
const JBD2_REVOKE: u32 = 5;
const JBD2_INCOMPAT_64BIT: u32 = 0x2;
const JBD2_INCOMPAT_CSUM_V2: u32 = 0x8;
const JBD2_INCOMPAT_CSUM_V3: u32 = 0x10;
const JBD2_INCOMPAT_FAST_COMMIT: u32 = 0x20;
const JBD2_FLAG_ESCAPE: u32 = 1;
const JBD2_FLAG_SAME_UUID: u32 = 2;
const JBD2_FLAG_LAST_TAG: u32 = 8;
const EXT4_EXTENTS_FL: u32 = 0x80000;
/// Journal blocks read per request while scanning the log.
const JOURNAL_CHUNK_BLOCKS: u64 = 256;

/// The journal inode's extents: (first logical block, length, first physical block).
fn journal_extents(inode: &[u8]) -> Option<Vec<(u64, u64, u64)>> {
    if le32(inode, 0x20) & EXT4_EXTENTS_FL == 0 {
        return None;
    }
    let eh = inode.get(0x28..0x28 + 60)?;
    // Header: magic, entries, max, depth; depth 0 = the extents are right here.
    if le16(eh, 0) != 0xF30A || le16(eh, 6) != 0 {
        return None;
    }
    let n = usize::from(le16(eh, 2)).min(4);
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let e = &eh[12 + 12 * i..24 + 12 * i];
        let len = u64::from(le16(e, 4));
        let len = if len > 32768 { len - 32768 } else { len };
        let start = (u64::from(le16(e, 6)) << 32) | u64::from(le32(e, 8));
        v.push((u64::from(le32(e, 0)), len, start));
    }
    Some(v)
}

fn map_block(extents: &[(u64, u64, u64)], lblk: u64) -> Option<u64> {
    extents
        .iter()
        .find(|(l, n, _)| (*l..l + n).contains(&lblk))
        .map(|(l, _, p)| p + (lblk - l))
}

/// Reads journal blocks through the inode's extents, a chunk at a time.
struct JournalReader<'a, R> {
    read: R,
    extents: &'a [(u64, u64, u64)],
    block_size: u64,
    chunk_start: u64,
    chunk: Vec<u8>,
}

impl<R, Fut, E> JournalReader<'_, R>
where
    R: FnMut(u64, usize) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, E>>,
    E: std::fmt::Display,
{
    async fn block(&mut self, lblk: u64, limit: u64) -> Result<Vec<u8>, Ext4Error> {
        let bs = self.block_size as usize;
        let have = self.chunk.len() as u64 / self.block_size;
        if !(self.chunk_start..self.chunk_start + have).contains(&lblk) {
            let p = map_block(self.extents, lblk).ok_or(Ext4Error::OutsideJournal)?;
            // Physically contiguous run from lblk, within the extent and the log.
            let (l, n, _) = self
                .extents
                .iter()
                .find(|(l, n, _)| (*l..l + n).contains(&lblk))
                .copied()
                .ok_or(Ext4Error::OutsideJournal)?;
            let count = (l + n - lblk)
                .min(limit.saturating_sub(lblk))
                .clamp(1, JOURNAL_CHUNK_BLOCKS);
            self.chunk = (self.read)(p * self.block_size, (count * self.block_size) as usize)
                .await
                .map_err(|e| Ext4Error::Read(e.to_string()))?;
            self.chunk_start = lblk;
        }
        let off = ((lblk - self.chunk_start) * self.block_size) as usize;
        self.chunk
            .get(off..off + bs)
            .map(<[u8]>::to_vec)
            .ok_or(Ext4Error::ShortJournalRead)
    }
}

/// Applies the journal's committed copies of group-descriptor blocks to
/// `gdt` (the table as read in place, starting at fs block
/// `first_data_block + 1`). `read(offset, len)` reads the file system's bytes.
/// Returns whether the journal was read (true also when it had nothing to
/// replay); false means the in-place table had to be used as it is.
pub async fn replay_gdt<R, Fut, E>(
    sb: &Superblock,
    gdt: &mut [u8],
    mut read: R,
) -> Result<bool, Ext4Error>
where
    R: FnMut(u64, usize) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, E>>,
    E: std::fmt::Display,
{
    if !sb.needs_recovery {
        return Ok(true);
    }
    if !sb.has_journal || sb.journal_inum == 0 || sb.inodes_per_group == 0 {
        return Ok(false);
    }
    let bs = sb.block_size;
    // The journal inode, via its group's inode table.
    let idx = u64::from(sb.journal_inum) - 1;
    let group = idx / sb.inodes_per_group;
    let d = (group * sb.desc_size) as usize;
    let desc = gdt
        .get(d..d + sb.desc_size as usize)
        .ok_or(Ext4Error::JournalGroupMissing)?;
    let table = u64::from(le32(desc, 0x08))
        | if sb.wide_counts {
            u64::from(le32(desc, 0x28)) << 32
        } else {
            0
        };
    let inode = read(
        table * bs + (idx % sb.inodes_per_group) * sb.inode_size,
        160,
    )
    .await
    .map_err(|e| Ext4Error::Read(e.to_string()))?;
    let Some(extents) = journal_extents(&inode) else {
        return Ok(false);
    };
    let mut j = JournalReader {
        read,
        extents: &extents,
        block_size: bs,
        chunk_start: 0,
        chunk: Vec::new(),
    };
    let jsb = j.block(0, 1).await?;
    let jtype = be32(&jsb, 4);
    if be32(&jsb, 0) != JBD2_MAGIC || !matches!(jtype, JBD2_SUPERBLOCK_V1 | JBD2_SUPERBLOCK_V2) {
        return Ok(false);
    }
    if u64::from(be32(&jsb, 0x0C)) != bs {
        return Ok(false);
    }
    let incompat = if jtype == JBD2_SUPERBLOCK_V2 {
        be32(&jsb, 0x28)
    } else {
        0
    };
    let maxlen = u64::from(be32(&jsb, 0x10));
    let first = u64::from(be32(&jsb, 0x14));
    let mut seq = be32(&jsb, 0x18);
    let start = u64::from(be32(&jsb, 0x1C));
    if start == 0 {
        return Ok(true); // empty log: everything is in place
    }
    let log_end = if incompat & JBD2_INCOMPAT_FAST_COMMIT != 0 {
        let fc = match be32(&jsb, 0x54) {
            0 => 256,
            n => u64::from(n),
        };
        maxlen.saturating_sub(fc)
    } else {
        maxlen
    };
    if first == 0 || first >= log_end || !(first..log_end).contains(&start) {
        return Ok(false);
    }
    let bit64 = incompat & JBD2_INCOMPAT_64BIT != 0;
    let csum3 = incompat & JBD2_INCOMPAT_CSUM_V3 != 0;
    let csum2 = incompat & JBD2_INCOMPAT_CSUM_V2 != 0;
    let tag_bytes: usize = if csum3 {
        16
    } else {
        12 + if csum2 { 2 } else { 0 } - if bit64 { 0 } else { 4 }
    };
    let tail: usize = if csum2 || csum3 { 4 } else { 0 };
    let next = |p: u64| if p + 1 >= log_end { first } else { p + 1 };

    let gdt_first = sb.first_data_block + 1;
    let gdt_blocks = (gdt.len() as u64).div_ceil(bs);
    let is_gdt = |b: u64| (gdt_first..gdt_first + gdt_blocks).contains(&b);
    // fs block -> (transaction, content); blocks revoked -> newest revoking transaction.
    let mut latest: std::collections::HashMap<u64, (u32, Vec<u8>)> = Default::default();
    let mut revoked: std::collections::HashMap<u64, u32> = Default::default();
    let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut pending_revokes: Vec<u64> = Vec::new();
    let mut pos = start;
    let mut steps = 0u64;
    loop {
        steps += 1;
        if steps > log_end {
            break; // went all the way round
        }
        let b = j.block(pos, log_end).await?;
        if be32(&b, 0) != JBD2_MAGIC || be32(&b, 8) != seq {
            break; // end of the log
        }
        match be32(&b, 4) {
            JBD2_DESCRIPTOR => {
                let mut off = 12;
                let end = (bs as usize).saturating_sub(tail);
                loop {
                    if off + tag_bytes > end {
                        break;
                    }
                    let blocknr = u64::from(be32(&b, off))
                        | if bit64 {
                            u64::from(be32(&b, off + 8)) << 32
                        } else {
                            0
                        };
                    let flags = if csum3 {
                        be32(&b, off + 4)
                    } else {
                        u32::from(be16(&b, off + 6))
                    };
                    pos = next(pos);
                    steps += 1;
                    if is_gdt(blocknr) {
                        let mut data = j.block(pos, log_end).await?;
                        if flags & JBD2_FLAG_ESCAPE != 0 {
                            data[..4].copy_from_slice(&JBD2_MAGIC.to_be_bytes());
                        }
                        pending.push((blocknr, data));
                    }
                    off += tag_bytes;
                    if flags & JBD2_FLAG_SAME_UUID == 0 {
                        off += 16;
                    }
                    if flags & JBD2_FLAG_LAST_TAG != 0 {
                        break;
                    }
                }
            }
            JBD2_REVOKE => {
                let count = (be32(&b, 12) as usize).min(bs as usize);
                let rec = if bit64 { 8 } else { 4 };
                let mut off = 16;
                while off + rec <= count {
                    let blk = if bit64 {
                        (u64::from(be32(&b, off)) << 32) | u64::from(be32(&b, off + 4))
                    } else {
                        u64::from(be32(&b, off))
                    };
                    pending_revokes.push(blk);
                    off += rec;
                }
            }
            JBD2_COMMIT => {
                for (blk, data) in pending.drain(..) {
                    latest.insert(blk, (seq, data));
                }
                for blk in pending_revokes.drain(..) {
                    revoked.insert(blk, seq);
                }
                seq = seq.wrapping_add(1);
            }
            _ => break,
        }
        pos = next(pos);
    }
    // Replay: the newest committed copy unless a later (or the same)
    // transaction revoked it.
    for (blk, (tseq, data)) in latest {
        if revoked
            .get(&blk)
            .is_some_and(|r| r.wrapping_sub(tseq) as i32 >= 0)
        {
            continue;
        }
        let off = ((blk - gdt_first) * bs) as usize;
        let n = data.len().min(gdt.len().saturating_sub(off));
        gdt[off..off + n].copy_from_slice(&data[..n]);
    }
    Ok(true)
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
    /// without unmounting) and was not read: the counts may miss the last writes.
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
    use crate::testkit::run_ok;
    use std::process::Command;

    fn mkfs(path: &std::path::Path, size: &str, dir: &std::path::Path, extra: &[&str]) {
        run_ok(Command::new("truncate").args(["-s", size]).arg(path));
        run_ok(
            Command::new("mkfs.ext4")
                .args(["-q", "-F"])
                .args(extra)
                .arg("-d")
                .arg(dir)
                .arg(path),
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

    /// Writes journal transactions with debugfs (`jo`/`jw`/`jc`): the file
    /// system then needs recovery, like a guest powered off mid-flight.
    fn journal(img: &std::path::Path, open: &str, writes: &[&str]) {
        let mut script = format!("jo {open}\n");
        for w in writes {
            script.push_str(&format!("jw {w}\n"));
        }
        script.push_str("jc\n");
        let cmds = img.with_extension("cmds");
        std::fs::write(&cmds, script).expect("write");
        run_ok(
            Command::new("debugfs")
                .arg("-w")
                .arg("-f")
                .arg(&cmds)
                .arg(img),
        );
    }

    async fn replayed_free(img: &std::path::Path) -> (u64, bool) {
        let bytes = std::fs::read(img).expect("read");
        let sb = Superblock::parse(&bytes[1024..2048]).expect("superblock");
        let (off, len) = sb.gdt_range().expect("gdt");
        let mut gdt = bytes[off as usize..(off + len) as usize].to_vec();
        let read = |o: u64, n: usize| {
            let v = bytes.get(o as usize..o as usize + n).map(<[u8]>::to_vec);
            async move { v.ok_or("out of range") }
        };
        let replayed = replay_gdt(&sb, &mut gdt, read).await.expect("replay");
        let u = sb.usage_replayed(Some(&gdt), replayed);
        (sb.gdt_free_clusters(&gdt).expect("sum"), u.clean)
    }

    #[tokio::test]
    async fn committed_journal_transactions_are_replayed_read_only() {
        let d = tempfile::tempdir().expect("tempdir");
        let files = d.path().join("files");
        std::fs::create_dir(&files).expect("mkdir");
        std::fs::write(files.join("x"), b"x").expect("write");
        for (i, open) in ["", "-c -v 2", "-c -v 3"].into_iter().enumerate() {
            let img = d.path().join(format!("fs{i}.raw"));
            mkfs(&img, "64M", &files, &["-b", "4096"]);
            let bytes = std::fs::read(&img).expect("read");
            let sb = Superblock::parse(&bytes[1024..2048]).expect("superblock");
            let before = sb.free_clusters;
            // Group descriptor block 1 with group 0 short of 1000 and 2000 blocks.
            let gdt_block = &bytes[4096..8192];
            let with = |less: u16| {
                let mut b = gdt_block.to_vec();
                let v = u16::from_le_bytes([b[0x0C], b[0x0D]]) - less;
                b[0x0C..0x0E].copy_from_slice(&v.to_le_bytes());
                let p = d.path().join(format!("gdt-{i}-{less}"));
                std::fs::write(&p, b).expect("write");
                p.display().to_string()
            };
            let (a, b) = (with(1000), with(2000));
            // Committed A, then an uncommitted B: A wins.
            journal(&img, open, &[&format!("-b 1 {a}"), &format!("-b 1 -c {b}")]);
            let after = std::fs::read(&img).expect("read");
            let sb2 = Superblock::parse(&after[1024..2048]).expect("superblock");
            assert!(sb2.needs_recovery, "{open}");
            // In place nothing changed; through the journal, A applies.
            assert_eq!(
                sb2.usage(Some(&after[4096..4096 + 64])).free_bytes,
                before * 4096
            );
            assert_eq!(replayed_free(&img).await, (before - 1000, true), "{open}");
            // A later transaction revoking block 1: the copy is not replayed.
            journal(&img, open, &["-r 1 /dev/null"]);
            assert_eq!(replayed_free(&img).await, (before, true), "{open}");
            // Image untouched by all this reading.
            assert_eq!(std::fs::read(&img).expect("read").len(), bytes.len());
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
