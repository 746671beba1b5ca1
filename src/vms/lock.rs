//! VM operation locks: one operation at a time per VM — start, stop,
//! migration, snapshot, export, restore, layer work — across the whole
//! cluster.
//!
//! Two levels:
//! - **in this process**, a tokio mutex per VM: operations queue on it, and
//!   background passes ([`VmLock::try_lock`]) skip a VM an operation holds;
//! - **across servers** (several servers on one PostgreSQL database), a
//!   lease `vm:<id>` in the `leases` table ([`crate::lease`]) taken after the
//!   mutex and held — renewed every third of a term by a task of the guard —
//!   until the guard drops, when it is handed back. A server asked to start
//!   a VM another server is starting waits for that lease, then finds the
//!   VM running: one domain, not two. A holder that dies leaves its lease to
//!   expire after one term; its operation's half-done state is the
//!   reconciler's, as after any crash.
//!
//! On SQLite only one server uses the database, so the mutex alone is the
//! cluster's lock and no lease row is written.
//!
//! Background passes must not write a lease per VM per pass (30,000 VMs), so
//! [`VmLock::try_lock`] only *looks*: the VM is busy if the mutex is held or
//! another server holds its lease, read from one query of all `vm:` leases
//! held elsewhere, kept for [`PEEK_FRESH`]. A pass may therefore act on a VM
//! whose operation began on another server within that window; passes
//! decide again on fresh facts before acting (src/vms/reconcile.rs), and
//! what they write is what the node shows.
//!
//! Lock order: a VM's lock before its lab network's ([`crate::labnets`]);
//! two VMs' locks in a fixed order (src/term/carry.rs).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use uuid::Uuid;

use crate::lease::{Claim, Leases};

/// How long one read of the other servers' VM leases serves background passes.
pub const PEEK_FRESH: Duration = Duration::from_millis(250);
/// The shortest wait between two attempts at a VM lease another server holds.
const MIN_WAIT: Duration = Duration::from_millis(50);

/// The lease name of a VM's operation lock.
pub fn lease_name(vm_id: Uuid) -> String {
    format!("vm:{vm_id}")
}

/// Every VM's lock in this process, and the cluster's leases when there are
/// other servers to share them with.
#[derive(Debug, Default)]
pub struct VmLocks {
    local: Mutex<LocalLocks>,
    cluster: Option<Arc<Leases>>,
    peek: Mutex<Option<(Instant, HashSet<Uuid>)>>,
}

impl VmLocks {
    /// Locks shared with other servers through `leases` (PostgreSQL).
    pub fn clustered(leases: Arc<Leases>) -> Self {
        Self {
            cluster: Some(leases),
            ..Self::default()
        }
    }

    /// The lock of one VM.
    pub fn of(self: &Arc<Self>, vm_id: Uuid) -> VmLock {
        let local = self
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(vm_id);
        VmLock {
            vm_id,
            local,
            locks: self.clone(),
        }
    }

    /// The VMs whose lease another server holds now (cached for [`PEEK_FRESH`]).
    async fn busy_elsewhere(&self, leases: &Leases) -> HashSet<Uuid> {
        {
            let peek = self.peek.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, set)) = peek.as_ref()
                && at.elapsed() < PEEK_FRESH
            {
                return set.clone();
            }
        }
        let set: HashSet<Uuid> = match leases
            .held_elsewhere("vm:", crate::vms::starts::now_ms())
            .await
        {
            Ok(names) => names
                .iter()
                .filter_map(|n| n.strip_prefix("vm:")?.parse().ok())
                .collect(),
            Err(e) => {
                // Unknown: the pass skips nothing it would otherwise do; the
                // database being away fails its writes anyway.
                tracing::debug!(error = %e, "VM leases of other servers not read");
                HashSet::new()
            }
        };
        *self.peek.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), set.clone()));
        set
    }
}

/// The smallest size of the local map at which unused locks are dropped.
const PRUNE_FLOOR: usize = 1024;

/// This process's mutex per VM. A mutex nobody holds or waits for (the map
/// holds the only reference: every lock and guard keeps a clone, and clones
/// are only made under the map's lock) is dropped once the map has doubled
/// since the last pruning, so a server that has touched 30,000 VMs does not
/// keep 30,000 mutexes; the VM's next operation makes a fresh one.
#[derive(Debug)]
struct LocalLocks {
    map: HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>,
    prune_at: usize,
}

impl Default for LocalLocks {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            prune_at: PRUNE_FLOOR,
        }
    }
}

impl LocalLocks {
    fn get(&mut self, vm_id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let lock = self.map.entry(vm_id).or_default().clone();
        if self.map.len() >= self.prune_at {
            self.map.retain(|_, m| Arc::strong_count(m) > 1);
            self.prune_at = (self.map.len() * 2).max(PRUNE_FLOOR);
        }
        lock
    }
}

/// One VM's lock (cheap to make; take it with [`VmLock::lock`]).
#[derive(Debug)]
pub struct VmLock {
    vm_id: Uuid,
    local: Arc<tokio::sync::Mutex<()>>,
    locks: Arc<VmLocks>,
}

/// A held VM lock: released (in this process and in the cluster) on drop.
#[derive(Debug)]
pub struct VmGuard {
    _local: OwnedMutexGuard<()>,
    _cluster: Option<ClusterHold>,
}

/// The VM is busy: an operation holds its lock here or on another server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl VmLock {
    /// Waits until this process and then the cluster let this operation
    /// have the VM.
    pub async fn lock(&self) -> VmGuard {
        let local = self.local.clone().lock_owned().await;
        let cluster = match &self.locks.cluster {
            Some(leases) => Some(ClusterHold::take(leases.clone(), self.vm_id).await),
            None => None,
        };
        VmGuard {
            _local: local,
            _cluster: cluster,
        }
    }

    /// The lock if no operation holds it, here or (as last seen, see the
    /// module docs) on another server.
    pub async fn try_lock(&self) -> Result<VmGuard, Busy> {
        let local = self.local.clone().try_lock_owned().map_err(|_| Busy)?;
        if let Some(leases) = &self.locks.cluster
            && self
                .locks
                .busy_elsewhere(leases)
                .await
                .contains(&self.vm_id)
        {
            return Err(Busy);
        }
        Ok(VmGuard {
            _local: local,
            _cluster: None,
        })
    }
}

/// A VM lease held by this server, renewed by a task until dropped.
#[derive(Debug)]
struct ClusterHold {
    leases: Arc<Leases>,
    name: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl ClusterHold {
    /// Takes the VM's lease, waiting out another server's (retrying just
    /// after its expiry or every third of a term, like the loops' leases).
    /// A database that does not answer is retried too: no operation runs
    /// on a VM whose lease could not be taken.
    async fn take(leases: Arc<Leases>, vm_id: Uuid) -> Self {
        let name = lease_name(vm_id);
        let timing = leases.timing();
        loop {
            let now = crate::vms::starts::now_ms();
            let claim = leases.claim(&name, now).await;
            match &claim {
                Ok(Claim::Held { .. }) => break,
                Ok(Claim::HeldBy { holder, .. }) => {
                    tracing::debug!(vm = %vm_id, %holder, "waiting for another server's operation on the VM");
                }
                Err(e) => tracing::warn!(vm = %vm_id, error = %e, "VM lease not taken; retrying"),
            }
            let plan = crate::lease::plan(claim.as_ref().ok(), now, timing);
            tokio::time::sleep(plan.retry_in.clamp(MIN_WAIT, timing.renew_every())).await;
        }
        let renewer = tokio::spawn({
            let (leases, name) = (leases.clone(), name.clone());
            async move {
                loop {
                    tokio::time::sleep(timing.renew_every()).await;
                    match leases.claim(&name, crate::vms::starts::now_ms()).await {
                        Ok(Claim::Held { .. }) => {}
                        // The operation cannot be stopped halfway; say so loudly.
                        other => tracing::error!(
                            lease = %name, result = ?other,
                            "a VM operation's lease was not renewed; another server may act on the VM"
                        ),
                    }
                }
            }
        });
        Self {
            leases,
            name,
            renewer,
        }
    }
}

impl Drop for ClusterHold {
    fn drop(&mut self) {
        self.renewer.abort();
        let (leases, name) = (self.leases.clone(), std::mem::take(&mut self.name));
        // Handed back at once so a waiting server goes on; if this fails the
        // lease expires after its term.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = leases.release(&name).await {
                    tracing::debug!(lease = %name, error = %e, "VM lease not handed back; it expires");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn pool() -> (tempfile::TempDir, crate::db::Pool) {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        (dir, pool)
    }

    async fn lease_holders(pool: &crate::db::Pool) -> Vec<(String, String)> {
        sqlx::query_as("SELECT name, holder FROM leases ORDER BY name")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn unused_local_locks_are_dropped_and_held_ones_still_exclude() {
        let locks = Arc::new(VmLocks::default());
        let held_vm = Uuid::new_v4();
        let held = locks.of(held_vm).lock().await;
        let waiting = locks.of(held_vm);
        for _ in 0..10 * PRUNE_FLOOR {
            let _ = locks.of(Uuid::new_v4()).try_lock().await.unwrap();
        }
        let size = locks.local.lock().unwrap().map.len();
        assert!(size < 2 * PRUNE_FLOOR, "{size} mutexes kept");
        // The held one survived every pruning: still one lock for its VM.
        assert_eq!(locks.of(held_vm).try_lock().await.unwrap_err(), Busy);
        let next = tokio::spawn(async move { waiting.lock().await });
        drop(held);
        drop(next.await.unwrap());
        assert!(locks.of(held_vm).try_lock().await.is_ok());
    }

    #[tokio::test]
    async fn local_locks_exclude_and_write_no_lease() {
        let (_dir, pool) = pool().await;
        let locks = Arc::new(VmLocks::default());
        let vm = Uuid::new_v4();
        let g = locks.of(vm).lock().await;
        assert_eq!(locks.of(vm).try_lock().await.unwrap_err(), Busy);
        assert!(locks.of(Uuid::new_v4()).try_lock().await.is_ok());
        drop(g);
        assert!(locks.of(vm).try_lock().await.is_ok());
        assert!(lease_holders(&pool).await.is_empty());
    }

    /// Two servers sharing one database (as two PostgreSQL servers do; the
    /// lease statements are the same on both databases): an operation on
    /// one server holds the VM's lease, the other's operation waits for it
    /// and its background passes see the VM busy; the lease is handed back
    /// when the operation ends.
    #[tokio::test]
    async fn a_vm_lease_serialises_operations_across_servers() {
        let (_dir, pool) = pool().await;
        let term = Duration::from_secs(3);
        let a = Arc::new(VmLocks::clustered(Arc::new(Leases::new(
            pool.clone(),
            "a".into(),
            term,
        ))));
        let b = Arc::new(VmLocks::clustered(Arc::new(Leases::new(
            pool.clone(),
            "b".into(),
            term,
        ))));
        let vm = Uuid::new_v4();
        let held = a.of(vm).lock().await;
        assert_eq!(
            lease_holders(&pool).await,
            [(lease_name(vm), "a".to_string())]
        );
        assert_eq!(
            b.of(vm).try_lock().await.unwrap_err(),
            Busy,
            "busy on the other server"
        );

        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let waiter = tokio::spawn({
            let b = b.clone();
            async move {
                let g = b.of(vm).lock().await;
                let _ = tx.send(());
                g
            }
        });
        // b waits while a holds the lease: let it try a few times.
        tokio::time::sleep(MIN_WAIT * 4).await;
        assert!(rx.try_recv().is_err(), "b must wait for a's operation");
        drop(held);
        let g = tokio::time::timeout(term, waiter).await.unwrap().unwrap();
        assert_eq!(
            lease_holders(&pool).await,
            [(lease_name(vm), "b".to_string())]
        );
        drop(g);
        // Handed back by a spawned task: wait for the row to go.
        tokio::time::timeout(term, async {
            while !lease_holders(&pool).await.is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
    }

    /// A holder that dies (its lease never renewed nor handed back): the
    /// other server gets the VM once the lease expires.
    #[tokio::test]
    async fn a_dead_servers_vm_lease_expires() {
        let (_dir, pool) = pool().await;
        let term = Duration::from_millis(600);
        let dead = Leases::new(pool.clone(), "dead".into(), term);
        let vm = Uuid::new_v4();
        assert!(matches!(
            dead.claim(&lease_name(vm), crate::vms::starts::now_ms())
                .await
                .unwrap(),
            Claim::Held { .. }
        ));
        let b = Arc::new(VmLocks::clustered(Arc::new(Leases::new(
            pool.clone(),
            "b".into(),
            term,
        ))));
        let started = Instant::now();
        let _g = tokio::time::timeout(term * 4, b.of(vm).lock())
            .await
            .unwrap();
        assert!(started.elapsed() >= term / 2, "{:?}", started.elapsed());
        assert_eq!(
            lease_holders(&pool).await,
            [(lease_name(vm), "b".to_string())]
        );
    }
}
