//! Read overhead of the template chain depth: guest sequential read throughput
//! (`dd` of a region of `/dev/vda` inside the tiny guest) when the student's
//! layer sits on
//! - a depth-1 template (one standalone layer),
//! - a depth-4 template (the same data three thin layers further down), and
//! - that depth-4 template flattened into one standalone layer.
//!
//! The read region (PVCE_BENCH_READ_MIB, default 128 MiB, near the end of the
//! disk, unused by the guest's file system) holds data written into the
//! depth-1 layer, so at depth 4 every read is resolved through three empty
//! layers first — the worst case of a thin chain. Disks use pvce's default
//! cache mode (writeback); one warm-up read, then PVCE_BENCH_RUNS (default 3)
//! timed reads, each after dropping the guest's page cache. The guest runs
//! under plain QEMU (the same block layer libvirt drives), accelerator from
//! PVCE_BENCH_ACCEL (default tcg).
//!
//! Run: `cargo bench --bench chain_read` (needs the tiny guest image; it is
//! built with scripts/build-tiny-guest.sh if the tests' cache has none).
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[path = "../tests/it/common/tool.rs"]
mod tool;
use tool::run_tool;

fn overlay(dst: &Path, backing: &Path) {
    run_tool(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(backing)
            .arg(dst),
    );
}

fn tiny_image(repo: &Path) -> PathBuf {
    let cache = repo.join("target/pvce-test-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let image = cache.join("tiny-linux.qcow2");
    if !image.exists() {
        let tmp = cache.join("tiny-linux.qcow2.bench-tmp");
        run_tool(Command::new(repo.join("scripts/build-tiny-guest.sh")).arg(&tmp));
        std::fs::rename(&tmp, &image).unwrap();
    }
    image
}

/// A booted guest with its serial console on our pipes.
struct Guest {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Guest {
    fn boot(disk: &Path, accel: &str) -> Guest {
        let mut child = Command::new("qemu-system-x86_64")
            .args([
                "-accel", accel, "-machine", "pc", "-cpu", "max", "-m", "256",
            ])
            .args([
                "-smp",
                "1",
                "-nodefaults",
                "-display",
                "none",
                "-serial",
                "stdio",
            ])
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=qcow2,cache=writeback",
                disk.display()
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let g = Guest { child, out };
        g.wait_for("BOOT-OK", 0, Duration::from_secs(180));
        // Let the shell start before typing.
        std::thread::sleep(Duration::from_secs(1));
        g
    }

    fn len(&self) -> usize {
        self.out.lock().unwrap().len()
    }

    /// Waits for `needle` after byte `from` of the console output; returns the text.
    fn wait_for(&self, needle: &str, from: usize, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            {
                let out = self.out.lock().unwrap();
                let tail = out.get(from..).unwrap_or("");
                if tail.contains(needle) {
                    return tail.to_owned();
                }
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {needle:?}: {}",
                self.out.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a command line; returns (host seconds until `DONE-<tag>`, output).
    fn run(&mut self, line: &str, tag: u32) -> (f64, String) {
        let from = self.len();
        let stdin = self.child.stdin.as_mut().unwrap();
        let t = Instant::now();
        stdin
            .write_all(format!("{line}; echo DONE-$(({tag}+1))\n").as_bytes())
            .unwrap();
        stdin.flush().unwrap();
        let text = self.wait_for(&format!("DONE-{}", tag + 1), from, Duration::from_secs(300));
        (t.elapsed().as_secs_f64(), text)
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// busybox dd's "…, 1.234 seconds, …" (guest clock), if printed.
fn dd_seconds(text: &str) -> Option<f64> {
    let i = text.find(" seconds")?;
    let head = &text[..i];
    let start = head.rfind(' ')? + 1;
    head[start..].parse().ok()
}

fn main() {
    let read_mib = env_num("PVCE_BENCH_READ_MIB", 128);
    let runs = env_num("PVCE_BENCH_RUNS", 3).max(1) as usize;
    let accel = std::env::var("PVCE_BENCH_ACCEL").unwrap_or_else(|_| "tcg".into());
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let image = tiny_image(&repo);
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-bench-")
        .tempdir_in(repo.join("target"))
        .unwrap();
    let d = dir.path();

    // Depth 1: a standalone copy of the tiny guest with data in the read region.
    let vsize: u64 = {
        let v: serde_json::Value = serde_json::from_str(&run_tool(
            Command::new("qemu-img")
                .args(["info", "--output=json", "-f", "qcow2"])
                .arg(&image),
        ))
        .unwrap();
        v["virtual-size"].as_u64().unwrap()
    };
    let region_mib = vsize / (1024 * 1024) - read_mib - 32;
    let base = d.join("depth1.qcow2");
    run_tool(
        Command::new("qemu-img")
            .args(["convert", "-q", "-f", "qcow2", "-O", "qcow2"])
            .arg(&image)
            .arg(&base),
    );
    run_tool(
        Command::new("qemu-io")
            .args(["-f", "qcow2", "-c"])
            .arg(format!("write -P 0x5a {region_mib}M {read_mib}M"))
            .arg(&base),
    );
    // Depth 4: three thin layers on top (as children holding only small changes).
    let mut top = base.clone();
    for i in 2..=4 {
        let l = d.join(format!("depth{i}.qcow2"));
        overlay(&l, &top);
        top = l;
    }
    let flat = d.join("flat.qcow2");
    run_tool(
        Command::new("qemu-img")
            .args(["convert", "-q", "-f", "qcow2", "-O", "qcow2"])
            .arg(&top)
            .arg(&flat),
    );

    println!(
        "chain_read: dd of {read_mib} MiB of /dev/vda at {region_mib} MiB, accel {accel}, {runs} runs after a warm-up"
    );
    let mut tag = 100;
    for (what, template) in [("depth 1", &base), ("depth 4", &top), ("flattened", &flat)] {
        // The student's personal layer on the template, as pvce provisions it.
        let student = d.join(format!("student-{}.qcow2", what.replace(' ', "")));
        overlay(&student, template);
        let boot = Instant::now();
        let mut g = Guest::boot(&student, &accel);
        let booted = boot.elapsed().as_secs_f64();
        let line = format!(
            "sync; echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda of=/dev/null bs=1M skip={region_mib} count={read_mib} 2>&1"
        );
        let mut host = Vec::new();
        let mut guest = Vec::new();
        for i in 0..=runs {
            tag += 10;
            let (secs, text) = g.run(&line, tag);
            assert!(
                text.contains(&format!("{read_mib}+0 records in")),
                "dd failed: {text}"
            );
            if i > 0 {
                host.push(secs);
                if let Some(s) = dd_seconds(&text) {
                    guest.push(s);
                }
            }
        }
        host.sort_by(f64::total_cmp);
        guest.sort_by(f64::total_cmp);
        let med = |v: &[f64]| v.get(v.len() / 2).copied();
        let mbps = |s: f64| read_mib as f64 / s;
        let h = med(&host).unwrap();
        print!(
            "  {what:<10} boot {booted:5.1} s   host-timed median {:7.1} MiB/s ({h:.2} s)",
            mbps(h)
        );
        if let Some(gs) = med(&guest) {
            print!("   guest dd median {:7.1} MiB/s", mbps(gs));
        }
        println!();
    }
}
