//! The export archive reader's pieces (`portable::tar`): every 512-byte
//! block as a header, the bytes as a pax record set, names as member paths.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pvce::portable::tar::{BLOCK, base_name, member_path, parse_header, parse_pax};

fuzz_target!(|data: &[u8]| {
    for block in data.chunks_exact(BLOCK) {
        let block: &[u8; BLOCK] = block.try_into().expect("exact chunk");
        if let Ok(Some(entry)) = parse_header(block) {
            let _ = member_path(&entry.name);
            let _ = base_name(&entry.name);
        }
    }
    if let Ok((name, _size)) = parse_pax(data) {
        if let Some(name) = name {
            let _ = member_path(&name);
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = member_path(s);
    }
});
