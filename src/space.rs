//! Running out of disk: recognising it in an error, and the `storage` health
//! check.
//!
//! A full disk is not a server bug and not a damaged upload: whatever failed
//! because the data dir or the database could not grow answers 507
//! `insufficient_storage` naming that storage (the one mapping is in
//! `http::error`, which asks [`full_storage`]), and `/healthz` says
//! `degraded` with the reason until there is room again.
//!
//! Recognised: `ENOSPC`/`EDQUOT` I/O errors anywhere in an error's source
//! chain, qemu-img's "No space left on device" / "Disk quota exceeded" on
//! its stderr (which reaches us as text), and SQLite's `SQLITE_FULL`
//! ("database or disk is full").
//!
//! The health check ([`SpaceCheck`]) is cheap — one `statvfs` per storage —
//! and runs periodically, on every `/healthz`, and whenever a request fails
//! for lack of space. Its decision is the pure [`assess`]: a storage with
//! less than the configured minimum free is a problem; so is one where a
//! write failed for lack of space recently, until its free space has grown
//! by that minimum (a large upload can fail on a disk that still has some
//! room), or [`FAILURE_MEMORY`] has passed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::health::Health;

/// Which storage ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The data dir: templates, personal layers, uploads, console logs.
    DataDir,
    /// The SQLite database (in the data dir unless `--database-url` says otherwise).
    Database,
}

impl Store {
    pub fn as_str(self) -> &'static str {
        match self {
            Store::DataDir => "data dir",
            Store::Database => "database",
        }
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Marks a response that failed for lack of space (a response extension, set
/// by `http::error`), so the router can record it in the health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageFull(pub Store);

/// Linux errno values (stable ABI): no space left, disk quota exceeded.
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

/// True for an I/O error that means "the file system is full".
pub fn is_full_io(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// Texts by which tools (qemu-img's stderr, SQLite's messages) say it.
const DISK_FULL_TEXTS: [&str; 2] = ["No space left on device", "Disk quota exceeded"];
const DATABASE_FULL_TEXT: &str = "database or disk is full";

/// Which storage, if any, an error says is full. Walks the whole source
/// chain; the database wins when both are named, since SQLite's own errors
/// carry the underlying I/O error too.
pub fn full_storage(err: &(dyn std::error::Error + 'static)) -> Option<Store> {
    let mut found = None;
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        let database = text.contains(DATABASE_FULL_TEXT)
            || matches!(e.downcast_ref::<sqlx::Error>(), Some(sqlx::Error::Io(io)) if is_full_io(io))
            // sqlx's Display for its own I/O errors (seen through `#[error(transparent)]`).
            || (text.starts_with("error communicating with database")
                && DISK_FULL_TEXTS.iter().any(|t| text.contains(t)));
        if database {
            return Some(Store::Database);
        }
        let disk = e.downcast_ref::<std::io::Error>().is_some_and(is_full_io)
            || DISK_FULL_TEXTS.iter().any(|t| text.contains(t));
        if disk {
            found = Some(Store::DataDir);
        }
        next = e.source();
    }
    found
}

/// Default of `--min-free-mib`: room for a few student layers and uploads in flight.
pub const DEFAULT_MIN_FREE_MIB: u64 = 256;

/// Seconds between two periodic checks (each `/healthz` checks too).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(15);

/// How long a failed write keeps the check degraded without more free space.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(300);

/// A write that failed for lack of space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub store: Store,
    pub at: Instant,
    /// Free bytes of that storage when it failed (if they could be read).
    pub free_then: Option<u64>,
}

/// The storage problem to report, if any. `free`: each storage's free bytes
/// now (`None` if unreadable). Pure, so the policy is tested without a disk.
pub fn assess(
    now: Instant,
    free: &[(Store, Option<u64>)],
    min_free: u64,
    failure: Option<&Failure>,
) -> Option<String> {
    let mib = |b: u64| b / (1 << 20);
    let mut problems = Vec::new();
    for &(store, bytes) in free {
        if let Some(b) = bytes.filter(|&b| b < min_free) {
            problems.push(format!(
                "the {store} has {} MiB free (below {} MiB)",
                mib(b),
                mib(min_free)
            ));
        }
    }
    if let Some(f) = failure
        && now.saturating_duration_since(f.at) < FAILURE_MEMORY
        && !problems.iter().any(|p| p.contains(f.store.as_str()))
    {
        let now_free = free
            .iter()
            .find(|(s, _)| *s == f.store)
            .and_then(|(_, b)| *b);
        let grown = matches!((f.free_then, now_free), (Some(then), Some(now)) if now >= then.saturating_add(min_free));
        if !grown {
            problems.push(format!("a write to the {} failed: no space left", f.store));
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// Free bytes an unprivileged writer can use on the file system of `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The storage check behind `/healthz`'s `storage` problem.
#[derive(Debug)]
pub struct SpaceCheck {
    data_dir: PathBuf,
    /// The database file's directory when it is not in the data dir.
    database_dir: Option<PathBuf>,
    min_free: u64,
    last_failure: Mutex<Option<Failure>>,
}

/// The health problem's name.
pub const CHECK: &str = "storage";

impl SpaceCheck {
    /// `database_url`: the SQLite URL (`sqlite://path`, as configured).
    pub fn new(data_dir: &Path, database_url: &str, min_free_mib: u64) -> Self {
        let database_dir = database_url
            .strip_prefix("sqlite://")
            .or_else(|| database_url.strip_prefix("sqlite:"))
            .map(|p| p.split('?').next().unwrap_or(p))
            .filter(|p| !p.is_empty() && !p.starts_with(":memory:"))
            .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
            .map(|d| {
                if d.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    d
                }
            })
            .filter(|d| {
                // The same directory as the data dir is checked once.
                std::path::absolute(d).ok() != std::path::absolute(data_dir).ok()
            });
        Self {
            data_dir: data_dir.to_path_buf(),
            database_dir,
            min_free: min_free_mib.saturating_mul(1 << 20),
            last_failure: Mutex::new(None),
        }
    }

    fn stores(&self) -> Vec<(Store, &Path)> {
        let mut v = vec![(Store::DataDir, self.data_dir.as_path())];
        if let Some(d) = &self.database_dir {
            v.push((Store::Database, d.as_path()));
        }
        v
    }

    fn free_now(&self) -> Vec<(Store, Option<u64>)> {
        self.stores()
            .into_iter()
            .map(|(s, p)| (s, free_bytes(p).ok()))
            .collect()
    }

    /// Remembers that a write to `store` failed for lack of space and updates
    /// `health` at once.
    pub fn record_failure(&self, store: Store, health: &Health) {
        // With the database in the data dir, its free space is the data dir's.
        let path_store = if self.database_dir.is_none() {
            Store::DataDir
        } else {
            store
        };
        let free_then = self
            .free_now()
            .into_iter()
            .find(|(s, _)| *s == path_store)
            .and_then(|(_, b)| b);
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(Failure {
            store,
            at: Instant::now(),
            free_then,
        });
        self.refresh(health);
    }

    /// Reads the free space and sets or clears the `storage` problem.
    pub fn refresh(&self, health: &Health) {
        let now = Instant::now();
        let mut free = self.free_now();
        let mut last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|f| now.saturating_duration_since(f.at) >= FAILURE_MEMORY) {
            *last = None;
        }
        // A database in the data dir shares its free space.
        if self.database_dir.is_none() && last.is_some_and(|f| f.store == Store::Database) {
            let data = free.first().and_then(|(_, b)| *b);
            free.push((Store::Database, data));
        }
        let problem = assess(now, &free, self.min_free, last.as_ref());
        if problem.is_none() {
            *last = None;
        }
        drop(last);
        if let Some(p) = &problem {
            tracing::warn!(problem = %p, "storage is (nearly) full");
        }
        health.set_problem(CHECK, problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("storage error: {0}")]
        Io(#[from] io::Error),
        #[error(transparent)]
        Db(#[from] sqlx::Error),
        #[error("qemu-img {op} failed: {detail}")]
        Tool { op: &'static str, detail: String },
    }

    #[test]
    fn full_disks_are_recognised_through_the_chain() {
        let enospc = || io::Error::from_raw_os_error(ENOSPC);
        assert_eq!(full_storage(&Outer::Io(enospc())), Some(Store::DataDir));
        assert_eq!(
            full_storage(&Outer::Io(io::Error::from_raw_os_error(EDQUOT))),
            Some(Store::DataDir)
        );
        assert_eq!(
            full_storage(&Outer::Db(sqlx::Error::Io(enospc()))),
            Some(Store::Database)
        );
        assert_eq!(
            full_storage(&Outer::Tool {
                op: "convert",
                detail: "qemu-img: error while writing at byte 0: No space left on device".into()
            }),
            Some(Store::DataDir)
        );
        assert_eq!(
            full_storage(&Outer::Tool {
                op: "x",
                detail: "(code: 13) database or disk is full".into()
            }),
            Some(Store::Database)
        );
        assert_eq!(full_storage(&Outer::Io(io::Error::other("boom"))), None);
        assert_eq!(full_storage(&Outer::Db(sqlx::Error::RowNotFound)), None);
        assert_eq!(
            full_storage(&Outer::Io(io::Error::from_raw_os_error(13))),
            None
        );
    }

    #[test]
    fn the_check_degrades_below_the_minimum_or_after_a_failed_write() {
        let t0 = Instant::now();
        let mib = |n: u64| n << 20;
        let min = mib(64);
        let ok = [(Store::DataDir, Some(mib(500)))];
        assert_eq!(assess(t0, &ok, min, None), None);
        let low = assess(t0, &[(Store::DataDir, Some(mib(10)))], min, None).expect("low");
        assert!(
            low.contains("data dir has 10 MiB free (below 64 MiB)"),
            "{low}"
        );
        // Unreadable free space is not a problem by itself.
        assert_eq!(assess(t0, &[(Store::DataDir, None)], min, None), None);

        // A big write failed with 500 MiB free: degraded until 64 MiB more are free
        // or the memory of it fades.
        let failed = Failure {
            store: Store::DataDir,
            at: t0,
            free_then: Some(mib(500)),
        };
        let p = assess(t0, &ok, min, Some(&failed)).expect("failed");
        assert!(p.contains("a write to the data dir failed"), "{p}");
        let later = t0 + Duration::from_secs(60);
        assert!(
            assess(
                later,
                &[(Store::DataDir, Some(mib(540)))],
                min,
                Some(&failed)
            )
            .is_some()
        );
        assert_eq!(
            assess(
                later,
                &[(Store::DataDir, Some(mib(564)))],
                min,
                Some(&failed)
            ),
            None
        );
        assert_eq!(assess(t0 + FAILURE_MEMORY, &ok, min, Some(&failed)), None);

        // The database separately.
        let db = assess(
            t0,
            &[(Store::DataDir, Some(mib(500))), (Store::Database, Some(0))],
            min,
            None,
        )
        .expect("db");
        assert!(db.starts_with("the database has 0 MiB free"), "{db}");
    }

    #[test]
    fn the_database_directory_is_checked_only_when_elsewhere() {
        let d = tempfile::tempdir().expect("tempdir");
        let same = SpaceCheck::new(
            d.path(),
            &format!("sqlite://{}", d.path().join("pvce.db").display()),
            64,
        );
        assert_eq!(same.stores().len(), 1);
        let other = SpaceCheck::new(d.path(), "sqlite:///var/lib/other/pvce.db?mode=rwc", 64);
        assert_eq!(
            other.stores()[1],
            (Store::Database, Path::new("/var/lib/other"))
        );
        assert!(free_bytes(d.path()).expect("statvfs") > 0);
        let health = Health::new();
        // A minimum no disk has: degraded, naming the data dir.
        let huge = SpaceCheck::new(d.path(), "sqlite::memory:", u64::MAX >> 21);
        huge.refresh(&health);
        let r = health.report();
        assert_eq!(r.status, "degraded");
        assert!(
            r.reasons[0].starts_with("storage: the data dir has"),
            "{r:?}"
        );
        same.refresh(&health);
        assert_eq!(health.report().status, "ok");
        same.record_failure(Store::Database, &health);
        let r = health.report();
        assert!(
            r.reasons[0].contains("a write to the database failed"),
            "{r:?}"
        );
    }
}
