//! Test-only helpers shared by the image modules' unit tests: running
//! `qemu-img`, and the hostile image several of them refuse or report.

use std::path::Path;
use std::process::Command;

/// Runs `qemu-img` with `args`; a failure fails the test with its stderr.
pub fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img is installed (apt install qemu-utils)");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates at `path` a 1 MiB qcow2 whose backing file names `/etc/passwd`
/// (as raw), written unsafe (`-u`) so that qemu-img never opens it: what a
/// hostile upload would hold.
pub fn hostile_backing_qcow2(path: &Path) {
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-u",
        "-b",
        "/etc/passwd",
        "-F",
        "raw",
        path.to_str().expect("utf-8 temp path"),
        "1M",
    ]);
}
