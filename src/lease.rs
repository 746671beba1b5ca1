//! Leases: background work that must run once per cluster, not once per
//! server, runs only on the server that holds its lease.
//!
//! A lease is a row of `leases` (name, holder, expires_ms): the task `name`
//! is run by the server process `holder` until `expires_ms` (Unix
//! milliseconds of the holder's clock). Each server process has its own
//! holder id ([`holder_id`]: host name and a random UUID, logged at
//! start-up). A server takes or renews a lease with one conditional upsert
//! ([`Leases::claim`]): it writes itself as holder for one more term only
//! when the row is missing, already its own, or expired. One statement,
//! atomic on both databases, so no transaction and no lock is needed and
//! two servers racing for an expired lease cannot both win. [`decide`] is
//! the same rule as a pure function.
//!
//! Invariants:
//! - at most one holder per name at any instant, as long as the servers'
//!   clocks agree within the term's margin ([`Timing::margin`], a quarter of
//!   the term): a holder counts its lease valid only until `term - margin`
//!   after the attempt that renewed it started, on its own monotonic clock,
//!   so it has stopped before another server's clock can see the row expire;
//! - a holder that cannot renew (the row was taken, the database does not
//!   answer or fails) stops working at once: [`spawn_leased`] runs a pass
//!   only while the lease is held and drops a pass in progress the moment a
//!   renewal fails (a renewal is bounded by the lease's remaining validity);
//! - after the holder dies its lease is taken over once it expires: a
//!   waiting server retries just after the expiry it read (and at least
//!   every third of a term), so takeover comes about one term after the
//!   holder's last renewal (8 s by default, `--lease-term-secs`: inside
//!   the 10 s issue 17 asks for, with a margin).
//!
//! The loops renew at every tick and at least every third of a term. The
//! clock comes from the caller ([`Leases::claim`] takes `now_ms`); the loops
//! pass the wall clock. On SQLite (one server) the same code runs: the only
//! server takes every lease at once and keeps it (a restarted one too: the
//! leases its predecessor left are dropped at start-up, [`Leases::settle_at_start`]).
//! A server stopped cleanly (`pvce serve` on Ctrl-C/SIGINT,
//! [`crate::app::Server::stop`]) hands its leases back once its loops have
//! ended, so the others take over at their next try.
//!
//! Two more kinds of lease rows share the table: each server's
//! **presence** (`server:<holder id>`, renewed while the process lives,
//! [`Leases::spawn_presence`]) and the **start-up** lease (`startup`). A
//! starting server joins ([`Leases::join`]) under `startup`: it is *alone*
//! when no other server's presence is renewed, and only then runs the
//! start-up sweeps of the shared data dir (what looks like debris may be a
//! live server's work in progress). Servers started at the same moment are
//! serialised by `startup`, so exactly the first is alone. VM operation
//! locks (`vm:<id>`) are leases too (src/vms/lock.rs).
//!
//! Which background work is cluster-wide (leased, lease name = loop name in
//! `/healthz`): the node monitor (`node_monitor`), the load sampler
//! (`sampler`), the reconciler (`reconciler`), the desk's pass (`desk`),
//! notifications (`notices`), alerts (`alerts`), backups (`backup`), the
//! directory sync (`directory_sync`), the inspection (`inspection`), the
//! audit prune (`audit_prune`), the end of term (`term`), class time
//! (`class_time`) and idle auto-stop (`idle_stop`). On every server: the
//! console closer (`console_closer`: consoles are relayed by the server
//! they reached), the storage check (`storage`: this server's data dir) and
//! the desk watch (`desk_watch`: it turns this server's own events — node
//! changes the node monitor saw here, VM starts that failed here — into
//! system incidents) and the node capabilities' reader
//! (`node_capabilities`: each server's placement needs them in its memory;
//! the node monitor reads them only where it runs).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use sqlx::Row;
use tokio::time::Instant;

use crate::db::Pool;
use crate::health::{Health, LeaseStatus};

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the database did not answer before the lease ran out")]
    Timeout,
    /// A newer pvce migrated the database: this server runs no cluster-wide
    /// work any more (src/upgrade.rs).
    #[error("this server is older than the database's schema and takes no leases")]
    Retired,
}

/// A `leases` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub holder: String,
    pub expires_ms: i64,
}

/// What a server may do with a lease, given its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it (no row, or the holder's term ran out): take it until `until_ms`.
    Acquire { until_ms: i64 },
    /// It is ours: extend it to `until_ms`.
    Renew { until_ms: i64 },
    /// `holder` has it until `until_ms`.
    Wait { holder: String, until_ms: i64 },
}

/// The lease rule ([`Leases::claim`]'s statement does the same in SQL): a
/// missing or expired lease is taken, one's own is renewed, another's live
/// one is waited out. A lease is live up to and including `expires_ms`.
pub fn decide(row: Option<&LeaseRow>, me: &str, now_ms: i64, term_ms: i64) -> Decision {
    let until_ms = now_ms.saturating_add(term_ms);
    match row {
        None => Decision::Acquire { until_ms },
        Some(r) if r.holder == me => Decision::Renew { until_ms },
        Some(r) if r.expires_ms < now_ms => Decision::Acquire { until_ms },
        Some(r) => Decision::Wait {
            holder: r.holder.clone(),
            until_ms: r.expires_ms,
        },
    }
}

/// What [`Leases::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This server holds the lease until `until_ms`.
    Held { until_ms: i64 },
    /// Another server holds it until `until_ms`.
    HeldBy { holder: String, until_ms: i64 },
}

/// A term and what follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub term: Duration,
}

impl Timing {
    /// How far clocks may disagree, and how early a holder stops before its
    /// row expires: a quarter of the term.
    pub fn margin(&self) -> Duration {
        self.term / 4
    }

    /// How long a lease counts as held after the attempt that took or
    /// renewed it started.
    pub fn validity(&self) -> Duration {
        self.term - self.margin()
    }

    /// Renewals (and a waiting server's retries) at least this often: two
    /// attempts fit into [`Self::validity`], so one failed renewal alone does
    /// not lose the lease.
    pub fn renew_every(&self) -> Duration {
        self.term / 3
    }
}

/// What a [`Keeper`] does after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// How long the lease counts as held, from the attempt's start (`None`: not held).
    pub valid_for: Option<Duration>,
    /// When to try again, from the attempt's start.
    pub retry_in: Duration,
}

/// The shortest wait before another attempt (a waiting server whose clock
/// disagrees with the holder's must not spin on the database).
const MIN_RETRY: Duration = Duration::from_millis(50);

/// The schedule after an attempt at `now_ms` that answered `claim` (`None`:
/// the attempt failed). Pure: the loop's clock is the caller's.
pub fn plan(claim: Option<&Claim>, now_ms: i64, timing: Timing) -> Plan {
    match claim {
        Some(Claim::Held { .. }) => Plan {
            valid_for: Some(timing.validity()),
            retry_in: timing.renew_every(),
        },
        // Just after the holder's term ends (the row is expired when
        // `expires_ms < now`), unless a regular retry comes first.
        Some(Claim::HeldBy { until_ms, .. }) => {
            let to_expiry =
                u64::try_from(until_ms.saturating_sub(now_ms).saturating_add(1)).unwrap_or(0);
            Plan {
                valid_for: None,
                retry_in: Duration::from_millis(to_expiry)
                    .clamp(MIN_RETRY, timing.renew_every().max(MIN_RETRY)),
            }
        }
        None => Plan {
            valid_for: None,
            retry_in: timing.renew_every(),
        },
    }
}

/// Lease names of the servers' presence ([`Leases::join`]).
pub const PRESENCE_PREFIX: &str = "server:";
/// The lease serialising servers' start-ups ([`Leases::join`]).
const STARTUP: &str = "startup";
/// How often a starting server looks whether the others renew their presence.
const PRESENCE_POLL: Duration = Duration::from_millis(200);

/// The first string after every string that starts with `prefix` (the
/// prefix with its last character incremented), so a prefix search is a
/// range over the primary key on both databases (`LIKE` would need escaping
/// and is case-insensitive on neither the same way).
fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(u32::from(last) + 1) {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    // Only for an empty prefix (or one of char::MAX): everything matches.
    char::MAX.to_string()
}

/// This server process's holder id: the host name (for the operator) and a
/// random UUID (two processes on one host, or a restarted one, are distinct
/// holders; the installation id is the same for all of them).
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host}/{}", uuid::Uuid::new_v4())
}

/// The leases of one server process.
#[derive(Debug)]
pub struct Leases {
    pool: Pool,
    holder: String,
    timing: Timing,
    /// Set while this server is outdated (src/upgrade.rs): its loops take
    /// and renew no lease.
    retired: std::sync::atomic::AtomicBool,
}

impl Leases {
    pub fn new(pool: Pool, holder: String, term: Duration) -> Self {
        Self {
            pool,
            holder,
            timing: Timing { term },
            retired: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Stops (or resumes) taking and renewing the loops' leases: a server
    /// a newer pvce has superseded lets them expire to the others.
    pub fn retire(&self, retired: bool) {
        self.retired
            .store(retired, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This server's holder id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// At start-up, before any loop: on SQLite, where one server uses the
    /// database, every lease in it is a dead process's (this server's
    /// predecessor, e.g. killed a moment ago) and is dropped, so the loops
    /// start at once instead of a term later. On PostgreSQL other live
    /// servers may hold them: they are left to expire. Returns how many
    /// were dropped.
    pub async fn settle_at_start(&self) -> Result<u64, LeaseError> {
        if crate::db::backend(&self.pool) != crate::db::Backend::Sqlite {
            return Ok(0);
        }
        Ok(sqlx::query("DELETE FROM leases")
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Hands back every lease this server holds (a clean stop, after its
    /// loops ended): another server takes the work over at its next try
    /// instead of a term later. Returns how many were held.
    pub async fn release_mine(&self) -> Result<u64, LeaseError> {
        Ok(sqlx::query("DELETE FROM leases WHERE holder = $1")
            .bind(&self.holder)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Hands back one lease if this server holds it (e.g. a VM's operation
    /// lock when the operation ends).
    pub async fn release(&self, name: &str) -> Result<(), LeaseError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(&self.holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The names starting with `prefix` that another server holds at
    /// `now_ms` (live rows only).
    pub async fn held_elsewhere(
        &self,
        prefix: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, LeaseError> {
        Ok(self
            .live_elsewhere(prefix, now_ms)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Live rows named with `prefix` that another server holds at `now_ms`:
    /// (name, expiry).
    async fn live_elsewhere(
        &self,
        prefix: &str,
        now_ms: i64,
    ) -> Result<Vec<(String, i64)>, LeaseError> {
        Ok(sqlx::query_as(
            "SELECT name, expires_ms FROM leases WHERE name >= $1 AND name < $2 AND holder <> $3 AND expires_ms >= $4",
        )
        .bind(prefix)
        .bind(prefix_end(prefix))
        .bind(&self.holder)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    /// This server's presence lease: `server:<holder id>`, held while the
    /// process lives ([`Leases::spawn_presence`]).
    pub fn presence_name(&self) -> String {
        format!("{PRESENCE_PREFIX}{}", self.holder)
    }

    /// Joins the cluster at start-up and tells whether this server is
    /// **alone** — no other server's presence is live — so that the
    /// start-up sweeps (debris a crashed server left in the shared data
    /// dir) may run: with another server alive, what looks like debris may
    /// be its operation in progress. Serialised by the `startup` lease, so
    /// of servers started at the same moment exactly the first is alone
    /// (each later one sees the earlier ones' presence). While alone, the
    /// caller holds `startup` until [`Leases::finish_start`]; otherwise it
    /// is already handed back.
    pub async fn join(&self) -> Result<bool, LeaseError> {
        loop {
            let now = crate::db::unix_ms(time::OffsetDateTime::now_utc());
            let claim = self.claim(STARTUP, now).await?;
            if matches!(claim, Claim::Held { .. }) {
                break;
            }
            let wait = plan(Some(&claim), now, self.timing).retry_in;
            tokio::time::sleep(wait).await;
        }
        let now = crate::db::unix_ms(time::OffsetDateTime::now_utc());
        let seen = self.presences_elsewhere(now).await?;
        self.claim(&self.presence_name(), now).await?;
        // A server killed a moment ago (this one's predecessor, say) still
        // looks present until its row expires: watch the rows for one
        // renewal period — a live server renews (its expiry moves), a dead
        // one does not — keeping `startup` meanwhile.
        let mut others: Vec<String> = seen.keys().cloned().collect();
        if !seen.is_empty() {
            let until =
                tokio::time::Instant::now() + self.timing.renew_every() + self.timing.margin();
            loop {
                tokio::time::sleep(PRESENCE_POLL).await;
                let now = crate::db::unix_ms(time::OffsetDateTime::now_utc());
                let current = self.presences_elsewhere(now).await?;
                let renewed: Vec<String> = current
                    .iter()
                    .filter(|(name, exp)| seen.get(*name).is_none_or(|old| *exp > old))
                    .map(|(name, _)| name.clone())
                    .collect();
                if !renewed.is_empty() || tokio::time::Instant::now() >= until {
                    others = renewed;
                    break;
                }
                self.claim(STARTUP, now).await?;
                self.claim(&self.presence_name(), now).await?;
            }
        }
        let alone = others.is_empty();
        if !alone {
            tracing::info!(
                servers = others.len(),
                "other servers are running: start-up sweeps left to them and to `pvce fsck`"
            );
            self.finish_start().await?;
        }
        Ok(alone)
    }

    /// Other servers' live presence rows: name → expiry.
    async fn presences_elsewhere(
        &self,
        now_ms: i64,
    ) -> Result<std::collections::HashMap<String, i64>, LeaseError> {
        Ok(self
            .live_elsewhere(PRESENCE_PREFIX, now_ms)
            .await?
            .into_iter()
            .collect())
    }

    /// Hands the `startup` lease back (see [`Leases::join`]).
    pub async fn finish_start(&self) -> Result<(), LeaseError> {
        self.release(STARTUP).await
    }

    /// Renews this server's presence every third of a term until aborted
    /// (the process's life: a dead server's presence expires one term
    /// after its last renewal).
    pub fn spawn_presence(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let name = me.presence_name();
            loop {
                tokio::time::sleep(me.timing.renew_every()).await;
                let now = crate::db::unix_ms(time::OffsetDateTime::now_utc());
                if let Err(e) = me.claim(&name, now).await {
                    tracing::debug!(error = %e, "presence not renewed");
                }
            }
        })
    }

    /// Takes or renews lease `name` at `now_ms`: one conditional upsert, so
    /// two servers racing for it cannot both succeed, on either database.
    pub async fn claim(&self, name: &str, now_ms: i64) -> Result<Claim, LeaseError> {
        let term_ms = i64::try_from(self.timing.term.as_millis()).unwrap_or(i64::MAX);
        let until_ms = now_ms.saturating_add(term_ms);
        let took = sqlx::query(
            "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_ms < $4",
        )
        .bind(name)
        .bind(&self.holder)
        .bind(until_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if took == 1 {
            return Ok(Claim::Held { until_ms });
        }
        let row = sqlx::query("SELECT holder, expires_ms FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| -> Result<LeaseRow, sqlx::Error> {
                Ok(LeaseRow {
                    holder: r.try_get("holder")?,
                    expires_ms: r.try_get("expires_ms")?,
                })
            })
            .transpose()?;
        Ok(match decide(row.as_ref(), &self.holder, now_ms, term_ms) {
            Decision::Wait { holder, until_ms } => Claim::HeldBy { holder, until_ms },
            // The row changed between the two statements (it expired or
            // was removed): not ours, try again soon.
            Decision::Acquire { .. } | Decision::Renew { .. } => Claim::HeldBy {
                holder: row.map(|r| r.holder).unwrap_or_default(),
                until_ms: now_ms,
            },
        })
    }
}

/// One task's lease as its loop keeps it: the local view of whether it is
/// held (on tokio's monotonic clock) and when to try next.
#[derive(Debug)]
pub struct Keeper {
    leases: Arc<Leases>,
    name: &'static str,
    valid_until: Option<Instant>,
    next_try: Instant,
}

impl Keeper {
    pub fn new(leases: Arc<Leases>, name: &'static str) -> Self {
        Self {
            leases,
            name,
            valid_until: None,
            next_try: Instant::now(),
        }
    }

    /// Whether the lease is held now.
    pub fn held(&self) -> bool {
        self.valid_until.is_some_and(|v| Instant::now() < v)
    }

    /// When the next renewal (or, not holding it, the next try) is due.
    pub fn next_try(&self) -> Instant {
        self.next_try
    }

    /// Takes or renews the lease on the wall clock, records the result in
    /// `health`, and answers whether it is held. Never waits past the
    /// lease's validity: a database that does not answer in time loses it.
    pub async fn refresh(&mut self, health: &Health) -> bool {
        let timing = self.leases.timing();
        let started = Instant::now();
        let now_ms = crate::db::unix_ms(time::OffsetDateTime::now_utc());
        let deadline = self
            .valid_until
            .filter(|v| *v > started)
            .unwrap_or(started + timing.validity());
        let answer = if self.leases.retired() {
            Err(LeaseError::Retired)
        } else {
            tokio::time::timeout_at(deadline, self.leases.claim(self.name, now_ms))
                .await
                .unwrap_or(Err(LeaseError::Timeout))
        };
        let was_held = self.held();
        let p = plan(answer.as_ref().ok(), now_ms, timing);
        self.valid_until = p.valid_for.map(|d| started + d);
        self.next_try = started + p.retry_in;
        let held = self.held();
        match &answer {
            Ok(Claim::Held { .. }) => health.set_lease(
                self.name,
                LeaseStatus {
                    held,
                    holder: Some(self.leases.holder().to_owned()),
                },
            ),
            Ok(Claim::HeldBy { holder, .. }) => {
                health.set_lease(
                    self.name,
                    LeaseStatus {
                        held,
                        holder: Some(holder.clone()).filter(|h| !h.is_empty()),
                    },
                );
                // Another server's work now: an earlier failure here is
                // no longer this server's problem.
                health.loop_idle(self.name);
            }
            Err(LeaseError::Retired) => {
                // Said once in the health report's `schema` reason.
                health.set_lease(self.name, LeaseStatus { held, holder: None });
                health.loop_idle(self.name);
            }
            Err(e) => {
                health.set_lease(self.name, LeaseStatus { held, holder: None });
                health.loop_failed(self.name, &format_args!("lease not renewed: {e}"));
            }
        }
        if held != was_held {
            if held {
                tracing::info!(lease = self.name, "lease taken: this server runs it");
            } else {
                tracing::warn!(
                    lease = self.name,
                    "lease lost: another server runs it, or the database did not answer"
                );
            }
        }
        held
    }
}

/// Like [`crate::health::spawn_periodic`], for cluster-wide work: `pass`
/// runs every `every` only while this server holds lease `name` (the loop's
/// name too). The lease is renewed at every tick and at least every third
/// of a term; between ticks a server that does not hold it keeps trying, so
/// it takes over soon after the holder's term ends. A pass in progress
/// waits while its lease is renewed, and is dropped (cancelled where it
/// awaits) if the renewal fails: work never runs past the lease.
pub fn spawn_leased<F, Fut, E>(
    health: &Arc<Health>,
    leases: &Arc<Leases>,
    name: &'static str,
    every: Duration,
    mut pass: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display + Send,
{
    health.register_loop(name);
    health.set_lease(name, LeaseStatus::default());
    let health = health.clone();
    let mut keeper = Keeper::new(leases.clone(), name);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut panics = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::time::sleep_until(keeper.next_try()) => {
                    keeper.refresh(&health).await;
                    continue;
                }
            }
            if !keeper.refresh(&health).await {
                continue;
            }
            let mut run = std::pin::pin!(AssertUnwindSafe(pass()).catch_unwind());
            let outcome = loop {
                tokio::select! {
                    ended = &mut run => break Some(ended),
                    _ = tokio::time::sleep_until(keeper.next_try()) => {
                        if !keeper.refresh(&health).await {
                            break None;
                        }
                    }
                }
            };
            match outcome {
                Some(ended) => {
                    let outcome = crate::health::record_pass(&health, name, ended);
                    crate::health::after_pass(outcome, &mut panics).await;
                }
                None => {
                    tracing::warn!(
                        loop_name = name,
                        "lease lost during a pass: the pass was stopped"
                    );
                    health.loop_failed(name, &"lease lost during a pass; the pass was stopped");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(holder: &str, expires_ms: i64) -> LeaseRow {
        LeaseRow {
            holder: holder.into(),
            expires_ms,
        }
    }

    #[test]
    fn a_prefix_range_holds_exactly_the_names_with_the_prefix() {
        let end = prefix_end("vm:");
        assert_eq!(end, "vm;");
        for name in ["vm:", "vm:0", "vm:ffff-ffff", "vm:\u{10ffff}"] {
            assert!(name >= "vm:" && name < end.as_str(), "{name}");
        }
        for name in ["vm", "vm;", "vn:", "node_monitor", "VM:1"] {
            assert!(!(name >= "vm:" && name < end.as_str()), "{name}");
        }
    }

    #[tokio::test]
    async fn released_and_foreign_leases() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        let term = Duration::from_secs(8);
        let a = Leases::new(pool.clone(), "a".into(), term);
        let b = Leases::new(pool, "b".into(), term);
        assert!(matches!(
            a.claim("vm:1", 1_000).await.unwrap(),
            Claim::Held { .. }
        ));
        assert!(matches!(
            a.claim("sampler", 1_000).await.unwrap(),
            Claim::Held { .. }
        ));
        assert!(matches!(
            b.claim("vm:1", 1_001).await.unwrap(),
            Claim::HeldBy { .. }
        ));
        assert_eq!(b.held_elsewhere("vm:", 1_001).await.unwrap(), ["vm:1"]);
        assert!(a.held_elsewhere("vm:", 1_001).await.unwrap().is_empty());
        // Expired rows are nobody's.
        assert!(b.held_elsewhere("vm:", 10_000).await.unwrap().is_empty());
        b.release("vm:1").await.unwrap();
        assert_eq!(
            b.held_elsewhere("vm:", 1_001).await.unwrap(),
            ["vm:1"],
            "not b's to release"
        );
        a.release("vm:1").await.unwrap();
        assert!(matches!(
            b.claim("vm:1", 1_002).await.unwrap(),
            Claim::Held { .. }
        ));
    }

    /// Start-up: the first server is alone (and holds `startup` until it
    /// is done); one starting beside a live server is not; one starting
    /// after a server died (its presence no longer renewed) is alone again.
    #[tokio::test]
    async fn a_server_starts_alone_only_when_no_other_server_lives() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        let term = Duration::from_millis(600);
        let a = Arc::new(Leases::new(pool.clone(), "a".into(), term));
        let b = Arc::new(Leases::new(pool.clone(), "b".into(), term));
        assert!(a.join().await.unwrap(), "the first server is alone");
        let presence = a.spawn_presence();
        // b waits for a's start-up to finish.
        let joining = tokio::spawn({
            let b = b.clone();
            async move { b.join().await.unwrap() }
        });
        tokio::time::sleep(term / 2).await;
        assert!(!joining.is_finished(), "b must wait while a sweeps");
        a.finish_start().await.unwrap();
        assert!(!joining.await.unwrap(), "a lives: b is not alone");
        b.finish_start().await.unwrap();
        // a dies: its presence is no longer renewed.
        presence.abort();
        let c = Leases::new(pool, "c".into(), term);
        let started = Instant::now();
        assert!(c.join().await.unwrap(), "a died: c is alone");
        assert!(started.elapsed() < term * 3, "{:?}", started.elapsed());
    }

    #[test]
    fn decide_takes_free_and_expired_leases_renews_its_own_and_waits_for_others() {
        let term = 10_000;
        let cases: Vec<(Option<LeaseRow>, i64, Decision)> = vec![
            // No row: take it.
            (None, 1_000, Decision::Acquire { until_ms: 11_000 }),
            // Our own, live or expired: renew.
            (
                Some(row("me", 5_000)),
                1_000,
                Decision::Renew { until_ms: 11_000 },
            ),
            (
                Some(row("me", 500)),
                1_000,
                Decision::Renew { until_ms: 11_000 },
            ),
            // Another's, live: wait until it ends (live up to and including expires_ms).
            (
                Some(row("other", 5_000)),
                1_000,
                Decision::Wait {
                    holder: "other".into(),
                    until_ms: 5_000,
                },
            ),
            (
                Some(row("other", 1_000)),
                1_000,
                Decision::Wait {
                    holder: "other".into(),
                    until_ms: 1_000,
                },
            ),
            // Another's, expired by a millisecond: take it over.
            (
                Some(row("other", 999)),
                1_000,
                Decision::Acquire { until_ms: 11_000 },
            ),
        ];
        for (r, now, want) in cases {
            assert_eq!(decide(r.as_ref(), "me", now, term), want, "{r:?} at {now}");
        }
    }

    #[test]
    fn a_holder_stops_a_margin_before_its_row_expires_and_renews_twice_within() {
        let t = Timing {
            term: Duration::from_secs(10),
        };
        assert_eq!(t.margin(), Duration::from_millis(2_500));
        assert_eq!(t.validity(), Duration::from_millis(7_500));
        assert!(t.renew_every() * 2 < t.validity());
        let held = plan(Some(&Claim::Held { until_ms: 11_000 }), 1_000, t);
        assert_eq!(held.valid_for, Some(Duration::from_millis(7_500)));
        assert_eq!(held.retry_in, t.renew_every());
        // A failed attempt loses the lease and retries at the renewal pace.
        let failed = plan(None, 1_000, t);
        assert_eq!(failed.valid_for, None);
        assert_eq!(failed.retry_in, t.renew_every());
    }

    #[test]
    fn a_waiting_server_retries_just_after_the_holders_term() {
        let t = Timing {
            term: Duration::from_secs(9),
        };
        let by = |until_ms| Claim::HeldBy {
            holder: "other".into(),
            until_ms,
        };
        // Expiry in 2 s: retry 1 ms after it.
        assert_eq!(
            plan(Some(&by(3_000)), 1_000, t),
            Plan {
                valid_for: None,
                retry_in: Duration::from_millis(2_001)
            }
        );
        // Far away: a regular retry (the holder may drop it earlier... or the row change).
        assert_eq!(plan(Some(&by(60_000)), 1_000, t).retry_in, t.renew_every());
        // Already past by our clock (the row changed in between): soon, but not in a spin.
        assert_eq!(plan(Some(&by(500)), 1_000, t).retry_in, MIN_RETRY);
    }

    async fn pool(dir: &std::path::Path) -> Pool {
        crate::db::connect(&format!("sqlite://{}", dir.join("t.db").display()))
            .await
            .unwrap()
    }

    /// The statement does what [`decide`] says, on a real database: two
    /// servers, times chosen by the test.
    #[tokio::test]
    async fn claim_follows_the_rule_on_a_real_database() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(dir.path()).await;
        let term = Duration::from_secs(10);
        let a = Leases::new(pool.clone(), "a".into(), term);
        let b = Leases::new(pool.clone(), "b".into(), term);
        assert_eq!(
            a.claim("x", 1_000).await.unwrap(),
            Claim::Held { until_ms: 11_000 }
        );
        let taken_by_a = Claim::HeldBy {
            holder: "a".into(),
            until_ms: 11_000,
        };
        assert_eq!(b.claim("x", 2_000).await.unwrap(), taken_by_a);
        // Up to and including the expiry it is a's.
        assert_eq!(b.claim("x", 11_000).await.unwrap(), taken_by_a);
        // a renews: b waits longer.
        assert_eq!(
            a.claim("x", 5_000).await.unwrap(),
            Claim::Held { until_ms: 15_000 }
        );
        assert_eq!(
            b.claim("x", 15_000).await.unwrap(),
            Claim::HeldBy {
                holder: "a".into(),
                until_ms: 15_000
            }
        );
        // a stopped renewing: b takes over; a, back, finds it b's.
        assert_eq!(
            b.claim("x", 15_001).await.unwrap(),
            Claim::Held { until_ms: 25_001 }
        );
        assert_eq!(
            a.claim("x", 16_000).await.unwrap(),
            Claim::HeldBy {
                holder: "b".into(),
                until_ms: 25_001
            }
        );
        // Leases are independent.
        assert_eq!(
            a.claim("y", 16_000).await.unwrap(),
            Claim::Held { until_ms: 26_000 }
        );
    }

    /// A restarted server on SQLite does not wait out its predecessor's
    /// leases.
    #[tokio::test]
    async fn on_sqlite_a_new_server_drops_the_leases_a_dead_one_left() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(dir.path()).await;
        let term = Duration::from_secs(10);
        let dead = Leases::new(pool.clone(), "dead".into(), term);
        dead.claim("x", 1_000).await.unwrap();
        let next = Leases::new(pool.clone(), "next".into(), term);
        assert!(matches!(
            next.claim("x", 2_000).await.unwrap(),
            Claim::HeldBy { .. }
        ));
        assert_eq!(next.settle_at_start().await.unwrap(), 1);
        assert_eq!(
            next.claim("x", 2_000).await.unwrap(),
            Claim::Held { until_ms: 12_000 }
        );
    }

    /// A server stopping cleanly hands back its own leases, no other's.
    #[tokio::test]
    async fn a_stopping_server_releases_only_its_own_leases() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(dir.path()).await;
        let term = Duration::from_secs(10);
        let a = Leases::new(pool.clone(), "a".into(), term);
        let b = Leases::new(pool.clone(), "b".into(), term);
        a.claim("x", 1_000).await.unwrap();
        a.claim("y", 1_000).await.unwrap();
        b.claim("z", 1_000).await.unwrap();
        assert_eq!(a.release_mine().await.unwrap(), 2);
        assert_eq!(
            b.claim("x", 2_000).await.unwrap(),
            Claim::Held { until_ms: 12_000 }
        );
        assert_eq!(
            a.claim("z", 2_000).await.unwrap(),
            Claim::HeldBy {
                holder: "b".into(),
                until_ms: 11_000
            }
        );
    }

    /// The loop runs its pass only while it holds the lease: the holder
    /// runs, a second server does not, and takes over once the first stops.
    #[tokio::test]
    async fn only_the_holder_runs_the_pass_and_another_takes_over() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(dir.path()).await;
        let term = Duration::from_millis(800);
        let start = |holder: &str, runs: Arc<AtomicU32>| {
            let health = Arc::new(Health::new());
            let leases = Arc::new(Leases::new(pool.clone(), holder.into(), term));
            let task = spawn_leased(
                &health,
                &leases,
                "job",
                Duration::from_millis(50),
                move || {
                    let runs = runs.clone();
                    async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Ok::<(), std::convert::Infallible>(())
                    }
                },
            );
            (health, task)
        };
        let (a_runs, b_runs) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let (a_health, a) = start("a", a_runs.clone());
        // a holds it (and runs) before b starts.
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while a_runs.load(Ordering::SeqCst) < 2 {
            assert!(std::time::Instant::now() < until, "a never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(a_health.leases()["job"].held);
        let (b_health, b) = start("b", b_runs.clone());
        // b has tried (it knows the holder) but not run.
        while b_health.leases()["job"].holder.as_deref() != Some("a") {
            assert!(std::time::Instant::now() < until, "b never asked");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let a_before = a_runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            b_runs.load(Ordering::SeqCst),
            0,
            "b ran while a held the lease"
        );
        assert!(
            a_runs.load(Ordering::SeqCst) > a_before,
            "a stopped running"
        );
        assert!(!b_health.leases()["job"].held);
        // a dies: b takes over within the term (plus scheduling slack).
        a.abort();
        let died = std::time::Instant::now();
        while b_runs.load(Ordering::SeqCst) == 0 {
            assert!(
                died.elapsed() < term + Duration::from_secs(2),
                "b did not take over"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(died.elapsed() <= term + Duration::from_secs(1));
        assert!(b_health.leases()["job"].held);
        b.abort();
    }
}
