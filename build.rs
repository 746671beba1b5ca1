//! Build script: installs the web UI's third-party front-end code (noVNC, xterm.js, and
//! Playwright for the browser tests) from npm into `web/node_modules` with
//! `npm ci`, exactly as pinned by the committed `web/package-lock.json`, so
//! that `src/web.rs` can embed it. Nothing third-party is committed.
//!
//! It runs `npm ci` only when `web/node_modules` is missing or older than the
//! lock file; otherwise it does nothing (a few `stat` calls). Set
//! `PVCE_SKIP_NPM=1` to skip it when `web/node_modules` is provided some other
//! way (the build then fails if noVNC is not there).

use std::fs::{self, File};
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

const WEB: &str = "web";
const NOVNC_ENTRY: &str = "web/node_modules/@novnc/novnc/core/rfb.js";
const LOCK: &str = "web/package-lock.json";
const INSTALLED_LOCK: &str = "web/node_modules/.package-lock.json";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // sqlx::migrate! embeds migrations/: a new migration alone must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=web/package.json");
    println!("cargo:rerun-if-changed={LOCK}");
    println!("cargo:rerun-if-changed={INSTALLED_LOCK}");
    println!("cargo:rerun-if-changed={NOVNC_ENTRY}");
    println!("cargo:rerun-if-env-changed=PVCE_SKIP_NPM");
    // The app's own files, embedded by rust-embed (src/web.rs).
    println!("cargo:rerun-if-changed=web/app");

    if std::env::var_os("PVCE_SKIP_NPM").is_some_and(|v| v == "1") {
        if !Path::new(NOVNC_ENTRY).exists() {
            fail(
                "PVCE_SKIP_NPM=1 but web/node_modules/@novnc/novnc is missing: run `npm ci` in web/",
            );
        }
        return;
    }
    if !needs_install() {
        return;
    }

    // Two builds at once (e.g. clippy and test with different target dirs)
    // must not run `npm ci` in the same directory concurrently.
    let lock_path = std::env::temp_dir().join("pvce-web-npm-ci.lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", lock_path.display())));
    if let Err(e) = lock.lock() {
        fail(&format!("cannot lock {}: {e}", lock_path.display()));
    }
    if needs_install() {
        npm_ci();
    }
    let _ = lock.unlock();
}

fn mtime(path: &str) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// noVNC missing, or the lock file changed since the last install.
fn needs_install() -> bool {
    if !Path::new(NOVNC_ENTRY).exists() {
        return true;
    }
    match (mtime(LOCK), mtime(INSTALLED_LOCK)) {
        (Some(lock), Some(installed)) => lock > installed,
        _ => true,
    }
}

fn npm_ci() {
    println!("cargo:warning=installing the web UI's npm dependencies (npm ci in web/)");
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(WEB)
        .output();
    match out {
        Ok(out) if out.status.success() => {
            if !Path::new(NOVNC_ENTRY).exists() {
                fail("npm ci succeeded but web/node_modules/@novnc/novnc/core/rfb.js is missing");
            }
        }
        Ok(out) => fail(&format!(
            "`npm ci` in web/ failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fail(
            "npm was not found. The web UI's dependencies (noVNC) come from npm at build time: \
             install Node.js and npm (`bash scripts/setup.sh` does), then build again",
        ),
        Err(e) => fail(&format!("cannot run npm: {e}")),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    panic!("pvce build: {msg}");
}
