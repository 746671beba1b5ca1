//! The proxy's RFB client handshake with a VM's VNC server
//! (`console::rfb::authenticate_node`): whatever a hostile or broken server
//! sends, the handshake ends with Ok or an error — no panic, no hang, no
//! allocation the server's lengths ask for.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pvce::console::rfb::authenticate_node;
use pvce_fuzz::{Peer, block_on};

fuzz_target!(|data: &[u8]| {
    // The first byte picks whether the console has a password.
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let password = (first & 1 == 1).then_some("secret12");
    let mut server = Peer { input, written: 0 };
    let _ = block_on(authenticate_node(&mut server, password));
});
