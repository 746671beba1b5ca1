//! Partition tables of disk images: where the Linux file system of an MBR
//! disk starts (the built-in library writes files into it; portable layers
//! and file collection read it).

/// Byte offset of the first Linux (0x83) partition in an MBR disk image.
pub fn linux_partition_offset(mbr: &[u8]) -> Option<u64> {
    if mbr.len() < 512 || mbr[510] != 0x55 || mbr[511] != 0xAA {
        return None;
    }
    (0..4).find_map(|i| {
        let e = &mbr[446 + i * 16..446 + (i + 1) * 16];
        let lba = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
        (e[4] == 0x83 && lba > 0).then_some(u64::from(lba) * 512)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_linux_partition() {
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        // entry 0: FAT (0x0c) at 2048; entry 1: Linux at 133120
        mbr[446 + 4] = 0x0c;
        mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        mbr[462 + 4] = 0x83;
        mbr[462 + 8..462 + 12].copy_from_slice(&133_120u32.to_le_bytes());
        assert_eq!(linux_partition_offset(&mbr), Some(133_120 * 512));
        mbr[511] = 0;
        assert_eq!(linux_partition_offset(&mbr), None);
    }
}
