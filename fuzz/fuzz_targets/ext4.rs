//! The ext4 reader (`portable::ext4`) on a whole file-system image: the
//! superblock, the group descriptors, the journal replay of the descriptor
//! blocks and the usage figures. Reads past the end fail like a short read.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pvce::portable::ext4::{SUPERBLOCK_LEN, SUPERBLOCK_OFFSET, Superblock, replay_gdt};
use pvce_fuzz::block_on;

/// The most of the descriptor table taken (a real one is a few blocks).
const MAX_GDT: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    let start = SUPERBLOCK_OFFSET as usize;
    let Some(sb_bytes) = data.get(start..start + SUPERBLOCK_LEN) else {
        return;
    };
    let Ok(sb) = Superblock::parse(sb_bytes) else {
        return;
    };
    let table = (start + SUPERBLOCK_LEN).min(data.len());
    let mut gdt = data[table..(table + MAX_GDT).min(data.len())].to_vec();
    let _ = sb.usage(Some(&gdt));
    let replayed = block_on(replay_gdt(&sb, &mut gdt, |offset, len| {
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|o| data.get(o..o.checked_add(len)?))
            .map(<[u8]>::to_vec)
            .ok_or("read past the end");
        async move { bytes }
    }));
    if let Ok(replayed) = replayed {
        let _ = sb.usage_replayed(Some(&gdt), replayed);
    }
});
