//! The database behind a test's data dir: by default the SQLite file
//! `pvce.db` inside it, as in production; when `PVCE_TEST_DATABASE_URL`
//! holds the base URL of a PostgreSQL cluster (`postgres://user@host:port`,
//! as `scripts/postgres.sh` prints it), a fresh database
//! `test_pvce_<random>` on that cluster instead.
//!
//! Invariants:
//! - everything that reaches a data dir's database — the in-process server
//!   ([`super::TestEnv`]), `pvce` child processes (`process::base_args`,
//!   `process::add_user`) and the helpers that read it directly
//!   (`process::open_db`) — asks [`url_for`] with that data dir, so they all
//!   reach the same database, created on the first ask;
//! - a database lives as long as its data dir would keep the SQLite file:
//!   a [`super::TestEnv`] drops its own when dropped ([`drop_for`]); the
//!   data dirs of child-process tests belong to the test's own tempdir, so
//!   their databases are dropped (`DROP DATABASE … WITH (FORCE)`) once that
//!   directory is gone, when the next database is created.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};

/// The base URL of the PostgreSQL cluster the tests run against.
pub const ENV: &str = "PVCE_TEST_DATABASE_URL";

/// The PostgreSQL databases this test process made, by data dir.
static MADE: LazyLock<Mutex<HashMap<PathBuf, String>>> = LazyLock::new(Default::default);

fn made() -> MutexGuard<'static, HashMap<PathBuf, String>> {
    // A test that panicked while holding it left the map itself intact.
    MADE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The cluster's base URL, when the tests run on PostgreSQL.
fn base() -> Option<String> {
    std::env::var(ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .map(|u| u.trim().trim_end_matches('/').to_owned())
}

/// The `--database-url` of `data_dir`'s server: `None` on SQLite (the
/// server's default file in the data dir); on PostgreSQL the data dir's own
/// database, created now if this is the first ask.
pub fn url_for(data_dir: &Path) -> Option<String> {
    let base = base()?;
    // Held while creating: two asks for one data dir make one database.
    let mut made = made();
    if let Some(name) = made.get(data_dir) {
        return Some(format!("{base}/{name}"));
    }
    // A data dir counts as in use while it or its parent (the test's tempdir;
    // the server creates the data dir itself) exists.
    let over: Vec<PathBuf> = made
        .keys()
        .filter(|d| !d.exists() && !d.parent().is_some_and(Path::exists))
        .cloned()
        .collect();
    for d in over {
        if let Some(name) = made.remove(&d) {
            drop_database(&base, &name);
        }
    }
    let name = format!("test_pvce_{}", uuid::Uuid::new_v4().simple());
    if let Err(e) = admin(&base, format!("CREATE DATABASE \"{name}\"")) {
        panic!("{ENV}={base}: cannot create the test database {name}: {e}");
    }
    made.insert(data_dir.to_path_buf(), name.clone());
    Some(format!("{base}/{name}"))
}

/// Drops `data_dir`'s PostgreSQL database, if it has one (its test is over).
pub fn drop_for(data_dir: &Path) {
    let (Some(base), Some(name)) = (base(), made().remove(data_dir)) else {
        return;
    };
    drop_database(&base, &name);
}

/// Never panics: it runs from `Drop`, maybe while a failed test unwinds.
fn drop_database(base: &str, name: &str) {
    // FORCE: a server aborted a moment ago may still hold connections.
    if let Err(e) = admin(
        base,
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
    ) {
        eprintln!("{ENV}={base}: could not drop the test database {name}: {e}");
    }
}

/// Runs `sql` on the cluster's `postgres` database over a connection of its
/// own. On a thread with a runtime of its own: callers are plain functions
/// (`base_args`, `Drop`), often inside a test's runtime, which cannot be
/// blocked on from within.
fn admin(base: &str, sql: String) -> Result<(), sqlx::Error> {
    let url = format!("{base}/postgres");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(sqlx::Error::Io)?;
        rt.block_on(async {
            use sqlx::{Connection, Executor};
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            conn.execute(sql.as_str()).await?;
            conn.close().await
        })
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Whether the cluster holds the database of `url`.
async fn exists(url: &str) -> bool {
    use sqlx::Connection;
    let (base, name) = url.rsplit_once('/').unwrap();
    let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .unwrap();
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// One database per data dir, the same at every ask; dropped with its
/// TestEnv even while connected, or once its test's tempdir is gone.
/// Without PostgreSQL: no URL at all, the server keeps its SQLite file.
#[tokio::test]
async fn a_data_dir_has_one_database_until_its_test_is_over() {
    let one = tempfile::tempdir().unwrap();
    let data = one.path().join("data");
    let Some(url) = url_for(&data) else {
        assert!(base().is_none(), "{ENV} is set, but no database was made");
        return;
    };
    assert_eq!(url_for(&data).as_deref(), Some(url.as_str()));
    assert!(exists(&url).await, "{url}");

    let two = tempfile::tempdir().unwrap();
    let two_url = url_for(&two.path().join("data")).unwrap();
    assert_ne!(two_url, url);

    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE t (x BIGINT)")
        .execute(&mut conn)
        .await
        .unwrap();
    drop_for(&data);
    assert!(!exists(&url).await, "dropped although connected: {url}");

    drop(two);
    let three = tempfile::tempdir().unwrap();
    let three_data = three.path().join("data");
    let three_url = url_for(&three_data).unwrap();
    assert!(
        !exists(&two_url).await,
        "a removed tempdir's database is dropped at the next creation: {two_url}"
    );
    drop_for(&three_data);
    assert!(!exists(&three_url).await, "{three_url}");
}
