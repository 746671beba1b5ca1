//! Fixed-width integer fields read out of on-disk structures (image headers,
//! ext4 superblocks and journals), at a byte offset, in either byte order.
//!
//! Invariant: bytes past the end of the slice read as zero, like QEMU reading
//! past EOF, so a parser never panics on a short or hostile buffer; callers
//! check lengths explicitly where truncation must be an error.

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = off.checked_add(N).and_then(|end| b.get(off..end)) {
        a.copy_from_slice(s);
    }
    a
}

pub fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(arr(b, off))
}
pub fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(arr(b, off))
}
pub fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(arr(b, off))
}
pub fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes(arr(b, off))
}
pub fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(arr(b, off))
}
pub fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(arr(b, off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_in_both_orders_and_zero_past_the_end() {
        let b = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
        assert_eq!(le16(&b, 0), 0x0201);
        assert_eq!(be16(&b, 0), 0x0102);
        assert_eq!(le32(&b, 4), 0x0807_0605);
        assert_eq!(be32(&b, 4), 0x0506_0708);
        assert_eq!(le64(&b, 0), 0x0807_0605_0403_0201);
        assert_eq!(be64(&b, 0), 0x0102_0304_0506_0708);
        // A field that does not fit reads as zero, even at an absurd offset.
        assert_eq!(le32(&b, 6), 0);
        assert_eq!(be64(&b, usize::MAX), 0);
    }
}
