//! Rolling upgrades: a server steps aside once a newer pvce has migrated the
//! database past what it knows.
//!
//! Several servers share one PostgreSQL database. An operator upgrades them
//! one by one: the first new server runs the new migrations at start (sqlx
//! takes PostgreSQL's advisory lock, so two new servers never migrate at
//! once). From that moment the old servers' code may no longer match the
//! schema — a column it does not know, a table whose meaning changed — so
//! an old server must not run any more work:
//!
//! - **at start**, a server whose database holds a migration it does not
//!   know refuses to run (sqlx reports the unknown version; [`crate::db`]
//!   says which and why);
//! - **while running**, every server reads the database's schema version
//!   every [`CHECK_EVERY`] ([`Upgrade::check`]). Once it is newer than its
//!   own ([`decide`]), the server is *outdated*: it takes and renews no
//!   lease (its cluster-wide loops go to the new servers within one lease
//!   term), answers every API and console request with 503
//!   `server_outdated`, and `/healthz` answers 503 `outdated`, so the load
//!   balancer's health check takes it out of rotation within a check or
//!   two. Requests already running finish; an operation already holding a
//!   VM's lock completes. Then the operator stops it.
//!
//! A migration therefore only has to keep the old servers' *running*
//! requests working for the second or two until they step aside — not a
//! whole release — and nothing needs a maintenance window.
//!
//! On SQLite (one server) the same check runs: a server whose database was
//! migrated by a newer binary started beside it steps aside too.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::db::Pool;
use crate::health::Health;
use crate::lease::Leases;

/// How often a server compares the database's schema with its own.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The health check's name and the reason `/healthz` gives.
pub const CHECK: &str = "schema";

/// Where this server stands against the database's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The database's schema is the one this server was built for (or
    /// older, which start-up migrates, so only briefly while starting).
    Current,
    /// A newer server migrated the database to `applied`: step aside.
    Outdated { applied: i64 },
}

/// The rule, pure: outdated once the database has a migration newer than
/// the last one this server knows.
pub fn decide(known: i64, applied: i64) -> Standing {
    if applied > known {
        Standing::Outdated { applied }
    } else {
        Standing::Current
    }
}

/// The highest migration applied to the database.
pub async fn applied_version(pool: &Pool) -> Result<i64, sqlx::Error> {
    let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(pool)
        .await?;
    Ok(v.unwrap_or(0))
}

/// This server's standing, as last checked.
#[derive(Debug)]
pub struct Upgrade {
    pool: Pool,
    known: i64,
    /// The newer version seen, or 0 while current.
    outdated_by: AtomicI64,
}

impl Upgrade {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            known: crate::db::schema_version(),
            outdated_by: AtomicI64::new(0),
        }
    }

    /// The database's newer schema version, if this server is outdated.
    pub fn outdated(&self) -> Option<i64> {
        Some(self.outdated_by.load(Ordering::Relaxed)).filter(|v| *v > 0)
    }

    /// Reads the database's schema version and acts on a change: stops
    /// (or resumes) taking leases and says so in the health report.
    pub async fn check(&self, health: &Health, leases: &Leases) -> Result<(), sqlx::Error> {
        let applied = applied_version(&self.pool).await?;
        let standing = decide(self.known, applied);
        let was = self.outdated();
        match standing {
            Standing::Outdated { applied } => {
                self.outdated_by.store(applied, Ordering::Relaxed);
                leases.retire(true);
                health.set_problem(
                    CHECK,
                    Some(format!(
                        "the database is at schema version {applied}, newer than this server's {}: a newer pvce runs; this one takes no more work",
                        self.known
                    )),
                );
                if was.is_none() {
                    tracing::warn!(
                        applied,
                        known = self.known,
                        "a newer pvce migrated the database: this server steps aside (no leases, API answers 503); stop it"
                    );
                }
            }
            Standing::Current => {
                self.outdated_by.store(0, Ordering::Relaxed);
                leases.retire(false);
                health.set_problem(CHECK, None);
                if was.is_some() {
                    tracing::info!("the database's schema is this server's again: work resumes");
                }
            }
        }
        Ok(())
    }
}

/// The periodic check (every server runs it for itself; not leased).
pub fn spawn_check(
    upgrade: Arc<Upgrade>,
    health: &Arc<Health>,
    leases: Arc<Leases>,
) -> tokio::task::JoinHandle<()> {
    let h = health.clone();
    crate::health::spawn_periodic(health, CHECK, CHECK_EVERY, move || {
        let (upgrade, health, leases) = (upgrade.clone(), h.clone(), leases.clone());
        async move { upgrade.check(&health, &leases).await }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_a_newer_schema_makes_a_server_outdated() {
        assert_eq!(decide(43, 43), Standing::Current);
        assert_eq!(decide(43, 41), Standing::Current);
        assert_eq!(decide(43, 0), Standing::Current);
        assert_eq!(decide(43, 44), Standing::Outdated { applied: 44 });
    }

    #[tokio::test]
    async fn a_newer_migration_retires_the_server_and_its_removal_resumes_it() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        let (health, leases) = (
            Health::new(),
            Leases::new(pool.clone(), "a".into(), Duration::from_secs(8)),
        );
        let up = Upgrade::new(pool.clone());
        up.check(&health, &leases).await.unwrap();
        assert_eq!(up.outdated(), None);
        assert!(!leases.retired());
        let newer = crate::db::schema_version() + 1;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES ($1, 'from a newer pvce', TRUE, $2, 0)",
        )
        .bind(newer)
        .bind(vec![0u8; 48])
        .execute(&pool)
        .await
        .unwrap();
        up.check(&health, &leases).await.unwrap();
        assert_eq!(up.outdated(), Some(newer));
        assert!(leases.retired());
        assert!(
            health
                .report()
                .reasons
                .iter()
                .any(|r| r.starts_with("schema: "))
        );
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
            .bind(newer)
            .execute(&pool)
            .await
            .unwrap();
        up.check(&health, &leases).await.unwrap();
        assert_eq!(up.outdated(), None);
        assert!(!leases.retired());
    }
}
