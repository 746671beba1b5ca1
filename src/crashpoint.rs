//! Crash points: named moments, at the step boundaries of the operations that
//! change durable state, where the chaos suite (tests/it/chaos.rs,
//! scripts/chaos.sh) makes the server die by SIGKILL — as a power cut or the
//! OOM killer would — to prove that what a restart finds is consistent
//! (`pvce fsck`) and that the operation is done or cleanly retryable.
//!
//! Invariants:
//! - every point sits right *after* a durable effect (a file written, a row
//!   committed, a domain created, a rename done), so the suite kills between
//!   two effects, never inside a library call;
//! - every name passed to [`hit`] is in [`POINTS`] and every name in
//!   [`POINTS`] is hit somewhere (a unit test greps the source), so the suite
//!   can iterate over the list and miss nothing;
//! - without `PVCE_CRASH_AT` (every production run) a point costs one
//!   comparison: the variable is read once per process.

use std::sync::OnceLock;

/// The environment variable naming the one point at which to die.
pub const ENV: &str = "PVCE_CRASH_AT";

/// Every crash point, `<operation>.<step just done>`, in the order an
/// operation passes them. The chaos suite selects an operation's points by
/// the prefix before the dot.
pub const POINTS: &[&str] = &[
    // Enrolment (courses.rs, vms/provision.rs): layers staged, rows
    // committed, layers published one by one.
    "enrol.layers_staged",
    "enrol.rows_committed",
    "enrol.first_layer_published",
    "enrol.layers_published",
    // Template import (templates.rs): upload received, layer converted and
    // sealed, row inserted.
    "template_import.upload_received",
    "template_import.layer_written",
    "template_import.row_inserted",
    // Derive (builds.rs): draft layer created, draft row, build VM row (its
    // start then passes the vm_start points).
    "derive.layer_created",
    "derive.draft_inserted",
    "derive.build_vm_inserted",
    // Seal (builds.rs): build VM gone, layer checked and read-only, ready.
    "seal.build_vm_deleted",
    "seal.layer_sealed",
    "seal.state_ready",
    // VM start (vms/lifecycle.rs): `starting` recorded, domain created,
    // `running` recorded.
    "vm_start.state_starting",
    "vm_start.domain_created",
    "vm_start.running_recorded",
    // Layer export (portable.rs): the private copy written, then unlinked
    // (held open for the download).
    "layer_export.copy_written",
    "layer_export.copy_unlinked",
    // Layer import (portable.rs): archive received, layer staged beside the
    // VM's, backup hard link made, new layer installed, backup recorded.
    "layer_import.upload_received",
    "layer_import.staged",
    "layer_import.backup_linked",
    "layer_import.layer_installed",
    "layer_import.backup_recorded",
    // Snapshot revert (vms/snapshots.rs): to a backup snapshot (copy
    // written beside the layer, installed over it), or to an internal one
    // (applied in place).
    "snapshot_revert.copy_written",
    "snapshot_revert.layer_installed",
    "snapshot_revert.internal_applied",
    // Live migration (vms/migrate.rs): the domain runs on the target, the
    // database still names the source.
    "migrate.domain_moved",
];

static AT: OnceLock<Option<String>> = OnceLock::new();

/// Marks that the step before `name` is durably done: dies here when
/// [`ENV`] names this point.
pub fn hit(name: &'static str) {
    debug_assert!(POINTS.contains(&name), "crash point {name} not in POINTS");
    let at = AT.get_or_init(|| std::env::var(ENV).ok());
    if at.as_deref() == Some(name) {
        die(name);
    }
}

/// SIGKILL to ourselves. The crate has no safe binding of kill(2) (no `nix`,
/// and `libc::kill` is `unsafe`), so `/usr/bin/kill` sends it: a real
/// SIGKILL, no destructor or exit handler runs, exactly what the suite
/// wants to prove survivable. `abort` (SIGABRT, equally abrupt) is the
/// fallback should `kill` be missing.
fn die(name: &str) -> ! {
    crate::logging::say(&format!("crash point {name}: SIGKILL"));
    let _ = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(std::process::id().to_string())
        .status();
    // The signal is delivered before `kill` exits; only a missing `kill`
    // gets here.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `crashpoint::hit("…")` in src/ (but this file), with the file
    /// it is in.
    fn hits_in_source() -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("src/ is readable").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("crashpoint.rs")
                {
                    let text = std::fs::read_to_string(&p).expect("a source file");
                    let needle = "crashpoint::hit(\"";
                    for (i, _) in text.match_indices(needle) {
                        let rest = &text[i + needle.len()..];
                        let name = &rest[..rest.find('"').expect("a closing quote")];
                        out.push((name.to_owned(), p.display().to_string()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_listed_point_is_hit_once_and_every_hit_is_listed() {
        let hits = hits_in_source();
        for (name, file) in &hits {
            assert!(
                POINTS.contains(&name.as_str()),
                "{file}: crash point {name} is not in POINTS"
            );
        }
        for p in POINTS {
            let n = hits.iter().filter(|(h, _)| h == p).count();
            assert_eq!(
                n, 1,
                "crash point {p} is hit {n} times in src/ (once expected)"
            );
        }
    }

    #[test]
    fn names_are_operation_dot_step_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for p in POINTS {
            let (op, step) = p.split_once('.').expect("operation.step");
            assert!(
                !op.is_empty() && !step.is_empty() && !step.contains('.'),
                "{p}"
            );
            assert!(seen.insert(p), "{p} twice");
        }
    }

    #[test]
    fn a_point_not_named_does_not_kill() {
        // The test process has no PVCE_CRASH_AT (the suite sets it only on
        // the server it starts): reaching here alive is the test.
        assert!(std::env::var(ENV).is_err());
        for p in POINTS {
            hit(p);
        }
    }
}
