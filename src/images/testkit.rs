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

/// `qemu-img create -q -f <format> <options…> <path> <size>`.
pub fn create_image(path: &Path, format: &str, options: &[&str], size: &str) {
    let path = path.to_str().expect("utf-8 temp path");
    let mut args = vec!["create", "-q", "-f", format];
    args.extend_from_slice(options);
    args.extend_from_slice(&[path, size]);
    qemu_img(&args);
}

/// Creates at `path` a 1 MiB qcow2 whose backing file names `/etc/passwd`
/// (as raw), written unsafe (`-u`) so that qemu-img never opens it: what a
/// hostile upload would hold.
pub fn hostile_backing_qcow2(path: &Path) {
    create_image(
        path,
        "qcow2",
        &["-u", "-b", "/etc/passwd", "-F", "raw"],
        "1M",
    );
}
