//! Running the external tools tests and benches check against (qemu-img,
//! tar, openssl…): a failure fails the caller with what the tool printed.
//!
//! Standalone (std only) so the benches can include it by path as well.

use std::process::Command;

/// Runs `cmd` to its end and returns what it printed; a tool that fails
/// fails the test (or bench) with its stderr.
pub fn run_tool(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
