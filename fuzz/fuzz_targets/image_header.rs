//! The upload inspector (`images::inspect`): any bytes, declared as any
//! format, as an image and as a personal layer, must give a verdict —
//! never a panic, a hang or an allocation the header asks for.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pvce::images::ImageFormat;
use pvce::images::inspect::{InspectLimits, inspect_bytes, inspect_layer_bytes};

fuzz_target!(|data: &[u8]| {
    let limits = InspectLimits::default();
    for format in [ImageFormat::Raw, ImageFormat::Qcow2, ImageFormat::Vmdk] {
        let _ = inspect_bytes(data, format, &limits);
    }
    let _ = inspect_layer_bytes(data, &limits);
});
