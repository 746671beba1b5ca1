//! Test-only helpers shared by several modules' unit tests: running the
//! external tools they check against (qemu-img, tar, e2fsprogs), and the
//! images the image tests make.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `cmd` to its end; a failure fails the test with what the tool printed.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is the tool installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `qemu-img` with `args`.
pub fn qemu_img(args: &[&str]) {
    run_ok(Command::new("qemu-img").args(args));
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
