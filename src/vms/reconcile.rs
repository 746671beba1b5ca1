//! Reconcile: bringing the database's intent and libvirt's facts together —
//! on reads of one VM, in the periodic pass over every node, and when an
//! admin fences a node that is gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::VmManager;
use super::model::{COLUMNS, Vm, VmError, VmState, from_row, load};
use super::rule::{self, Action, Recorded, Seen};
use crate::events::{self, EventKind, NewEvent};
use crate::libvirt::{self, DomainState, LibvirtError};

/// Longest a read of one VM's domain may take (a frozen node must not hold up
/// API reads of its VMs for the whole libvirt call timeout).
pub(super) const SYNC_DEADLINE: Duration = Duration::from_secs(5);
/// A reconcile pass's query for an up node (`$1` the node, `$2` a JSON
/// array of the VM ids its domain listing names): the VMs recorded there or
/// listed. Two index lookups, not `… OR id IN (…)`, which PostgreSQL answers
/// with a scan of every VM (7.7 ms vs 0.6 ms at 30,000 VMs, per node and
/// pass: benches/cluster_scale.rs, which runs this text).
pub fn node_rows_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM vms WHERE node_id = $1
         UNION SELECT {COLUMNS} FROM vms WHERE id IN (SELECT value FROM json_each($2))"
    )
}

/// A reconcile pass's query for a down node (`$1`): its active VMs not yet
/// marked `node_down`.
pub fn down_rows_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM vms WHERE node_id = $1 AND state IN ('starting', 'running', 'stopping') AND node_down = 0"
    )
}

/// Nodes reconciled at the same time in one pass.
pub const RECONCILE_PARALLEL_NODES: usize = 16;
/// Longest one node's part of a reconcile pass may take.
pub(super) const RECONCILE_NODE_DEADLINE: Duration = Duration::from_secs(10);

impl VmManager {
    /// Brings one VM's row in line with libvirt and returns it.
    pub async fn refresh(&self, id: Uuid) -> Result<Vm, VmError> {
        let lock = self.lock_for(id);
        // A start/stop in flight owns the VM; its result will be written by it.
        let Ok(_guard) = lock.try_lock().await else {
            return load(&self.pool, id).await;
        };
        let vm = load(&self.pool, id).await?;
        self.sync_with_node(vm).await
    }

    /// Re-reads the VM's domain on its node and updates the row to match
    /// (the rule is [`rule::decide`]).
    pub(crate) async fn sync_with_node(&self, vm: Vm) -> Result<Vm, VmError> {
        let Some(node_id) = vm.node_id else {
            return Ok(vm);
        };
        let conn = self.nodes.conn(node_id).await.ok();
        let seen = match &conn {
            None => Seen::Unreachable,
            Some(conn) => {
                let found =
                    tokio::time::timeout(SYNC_DEADLINE, conn.domain(&self.domain_name(vm.id)))
                        .await
                        .unwrap_or(Err(LibvirtError::Timeout));
                match found {
                    Ok(d) => Seen::Domain(d.map(|d| d.state)),
                    Err(e) => {
                        tracing::warn!(vm = %vm.id, error = %e, "could not read domain state");
                        return Ok(vm);
                    }
                }
            }
        };
        match rule::decide(self.recorded(&vm), node_id, seen) {
            Action::None => Ok(vm),
            action => {
                self.act(&vm, node_id, conn.as_ref(), action).await?;
                load(&self.pool, vm.id).await
            }
        }
    }

    /// What the database says about a VM, as the rule takes it.
    fn recorded(&self, vm: &Vm) -> Recorded {
        Recorded {
            state: vm.state,
            node: vm.node_id,
            stop: rule::stop_of(
                vm.state,
                vm.stop_deadline.as_deref(),
                self.stop_in_flight(vm.id),
                time::OffsetDateTime::now_utc(),
            ),
        }
    }

    /// Carries out the rule's decision about `vm` seen on node `node_id`
    /// (`conn`: that node's connection, if it answered).
    async fn act(
        &self,
        vm: &Vm,
        node_id: Uuid,
        conn: Option<&libvirt::Node>,
        action: Action,
    ) -> Result<(), VmError> {
        match action {
            Action::None => Ok(()),
            Action::MarkNodeDown => {
                tracing::warn!(vm = %vm.id, node = %node_id, "node down: VM state unknown until fenced");
                self.set_state(vm.id, VmState::NodeDown, Some(node_id), None)
                    .await
            }
            Action::DestroyStaleCopy => {
                tracing::warn!(vm = %vm.id, node = %node_id, "destroying a stale copy on a fenced node");
                if let Some(conn) = conn {
                    conn.destroy(&self.domain_name(vm.id), &self.installation)
                        .await?;
                }
                Ok(())
            }
            Action::Adopt => {
                tracing::info!(vm = %vm.id, node = %node_id, state = vm.state.as_str(), "adopting running domain");
                self.set_state(vm.id, VmState::Running, Some(node_id), None)
                    .await
            }
            Action::MarkStopping => {
                self.set_state(vm.id, VmState::Stopping, Some(node_id), None)
                    .await
            }
            Action::ForceOff => {
                tracing::warn!(vm = %vm.id, node = %node_id, "a shutdown's deadline passed with no server waiting for it (the one asked died): forcing off");
                let Some(conn) = conn else {
                    return Ok(());
                };
                conn.destroy(&self.domain_name(vm.id), &self.installation)
                    .await?;
                self.record_stopped(vm).await
            }
            Action::MarkStopped { interrupted_start } => {
                let reason = interrupted_start.then(|| {
                    "the start was interrupted (the server stopped while the VM was starting); start it again".to_owned()
                });
                self.set_state(vm.id, VmState::Stopped, None, reason).await
            }
        }
    }

    /// One pass of reconciliation between the database and every node, all
    /// nodes at once, each bounded by [`RECONCILE_NODE_DEADLINE`] so a frozen
    /// node holds up nobody:
    /// - on a `down` node, active VMs become `node_down` (never silently
    ///   `running`);
    /// - on a reachable node, active rows whose domain is gone become
    ///   `stopped` (for `node_down` rows this is the fence: the node answers
    ///   and runs nothing for them), and domains carrying our metadata for a
    ///   known VM are adopted — unless the VM is active on another node, in
    ///   which case the domain is a stale copy on a node that was fenced and
    ///   is destroyed;
    /// - domains without pvce's metadata, or for VMs this database does not
    ///   know, are never touched.
    ///
    /// VMs whose lifecycle lock is held (a start, stop or migration in
    /// flight) are skipped; their operation writes the outcome.
    pub async fn reconcile_once(&self) -> Result<(), VmError> {
        use futures::StreamExt;
        let nodes = self.nodes.list().await?;
        // Boxed: a stream of unboxed borrowing futures trips the compiler's
        // higher-ranked lifetime check inside the spawned loop.
        type Pass<'a> =
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), VmError>> + Send + 'a>>;
        let passes: Vec<Pass<'_>> = nodes
            .iter()
            .map(|node| -> Pass<'_> {
                Box::pin(async move {
                    if !node.state.is_up() {
                        return self.mark_node_down(node.id).await;
                    }
                    match tokio::time::timeout(RECONCILE_NODE_DEADLINE, self.reconcile_node(node))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => {
                            tracing::warn!(node = %node.name, "reconcile timed out");
                            Ok(())
                        }
                    }
                })
            })
            .collect();
        // A bounded number of nodes at once: a thousand nodes' queries at
        // the same moment outwait the pool's acquire timeout (half of them
        // failed on PostgreSQL, benches/cluster_scale.rs), and libvirt
        // listings gain nothing from more parallelism than that.
        let results: Vec<Result<(), VmError>> = futures::stream::iter(passes)
            .buffer_unordered(RECONCILE_PARALLEL_NODES)
            .collect()
            .await;
        for r in results {
            r?;
        }
        // Lab networks whose VMs are all gone (guest shutdowns, crashes,
        // failed cleanups, restarts).
        if let Err(e) = self.labnets.sweep().await {
            tracing::warn!(error = %e, "lab network sweep failed");
        }
        Ok(())
    }

    /// Marks the active VMs of a node that stopped answering `node_down`.
    pub(super) async fn mark_node_down(&self, node_id: Uuid) -> Result<(), VmError> {
        let rows = sqlx::query(&down_rows_sql())
            .bind(node_id.to_string())
            .fetch_all(&self.pool)
            .await?;
        for row in &rows {
            let vm = from_row(row)?;
            let Some(_guard) = self.try_locked(vm.id).await else {
                continue;
            };
            let action = rule::decide(self.recorded(&vm), node_id, Seen::Unreachable);
            self.act(&vm, node_id, None, action).await?;
        }
        Ok(())
    }

    /// Removes node-local layer volumes no VM names (see
    /// [`Layers::unreferenced`]); failures are logged and retried next pass.
    pub(super) async fn sweep_layers(&self, node: &crate::nodes::Node, conn: &libvirt::Node) {
        let orphans = match self.layers.unreferenced(node.id, conn).await {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(node = %node.name, error = %e, "layer sweep skipped");
                return;
            }
        };
        for (vm_id, volume) in orphans {
            let Some(_guard) = self.try_locked(vm_id).await else {
                continue;
            };
            match self
                .layers
                .remove_unreferenced(node.id, conn, &volume)
                .await
            {
                Ok(true) => {
                    tracing::warn!(node = %node.name, %volume, "removed a layer volume no VM uses (left by an interrupted operation)");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(node = %node.name, %volume, error = %e, "could not remove an unused layer volume")
                }
            }
        }
    }

    pub(super) async fn reconcile_node(&self, node: &crate::nodes::Node) -> Result<(), VmError> {
        let Ok(conn) = self.nodes.conn(node.id).await else {
            return Ok(());
        };
        self.sweep_layers(node, &conn).await;
        let Ok(domains) = conn.list_pvce_domains().await else {
            return Ok(());
        };
        // Another installation's domains are not ours to judge, even for a
        // VM id we know (a copied database): skipped (src/installation).
        let mut running: HashMap<Uuid, DomainState> = HashMap::new();
        for d in &domains {
            let Some(m) = &d.metadata else { continue };
            let Ok(id) = Uuid::parse_str(&m.id) else {
                continue;
            };
            match m.installation.as_deref() {
                Some(mark) if mark != self.installation => continue,
                Some(_) => {}
                // An older pvce's domain, under its old name: looked up by
                // that name while it runs (adopted; only VMs this database
                // knows are ever acted on, below).
                None if d.state != DomainState::Shutoff
                    && d.name != format!("{}{id}", self.domain_prefix) =>
                {
                    self.legacy_names_mut().insert(id, d.name.clone());
                }
                None => {}
            }
            running.insert(id, d.state);
        }
        let rows = sqlx::query(&node_rows_sql())
            .bind(node.id.to_string())
            .bind(
                serde_json::to_string(&running.keys().map(Uuid::to_string).collect::<Vec<_>>())
                    .unwrap_or_else(|_| "[]".into()),
            )
            .fetch_all(&self.pool)
            .await?;
        for row in &rows {
            let vm = from_row(row)?;
            let Some(_guard) = self.try_locked(vm.id).await else {
                continue;
            };
            let seen = Seen::Domain(running.get(&vm.id).copied());
            if rule::decide(self.recorded(&vm), node.id, seen) == Action::None {
                continue;
            }
            // The listing and the rows were read before the lock was taken: an
            // operation may have finished in between. Decide again on fresh
            // facts (only for the few VMs that need acting on).
            let vm = load(&self.pool, vm.id).await?;
            let seen = match conn.domain(&self.domain_name(vm.id)).await {
                Ok(d) => Seen::Domain(d.map(|d| d.state)),
                Err(_) => continue,
            };
            let mut action = rule::decide(self.recorded(&vm), node.id, seen);
            if action == Action::DestroyStaleCopy
                && let Some(home) = vm.node_id
            {
                action = rule::resolve_copy(self.seen_on(home, vm.id).await);
            }
            self.act(&vm, node.id, Some(&conn), action).await?;
        }
        Ok(())
    }

    /// What a VM's home node says about its domain now (unreachable when it
    /// is marked down or does not answer in time).
    async fn seen_on(&self, node_id: Uuid, vm_id: Uuid) -> Seen {
        let look = async {
            let node = self.nodes.get(node_id).await.ok()?;
            if !node.state.is_up() {
                return None;
            }
            let conn = self.nodes.conn(node_id).await.ok()?;
            let d = conn.domain(&self.domain_name(vm_id)).await.ok()?;
            Some(Seen::Domain(d.map(|d| d.state)))
        };
        tokio::time::timeout(SYNC_DEADLINE, look)
            .await
            .ok()
            .flatten()
            .unwrap_or(Seen::Unreachable)
    }

    /// An admin's confirmation that a `down` node is powered off (or its
    /// QEMUs are otherwise gone): its VMs are fenced and become `stopped`, so
    /// they can start on another node. Refused (409 `node_up`) while the node
    /// answers — then the node itself tells what still runs. Returns how many
    /// VMs were released.
    pub async fn fence_node(&self, node_id: Uuid, actor: Option<&str>) -> Result<u64, VmError> {
        let node = self.nodes.get(node_id).await?;
        if node.state.is_up() || self.nodes.probe(node_id).await.is_ok() {
            return Err(VmError::NodeUp(
                "the node answers; its VMs are stopped through it, not fenced".into(),
            ));
        }
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM vms WHERE node_id = $1 AND state IN ('starting', 'running', 'stopping')"
        ))
        .bind(node_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut released = 0;
        for row in &rows {
            let vm = from_row(row)?;
            let lock = self.lock_for(vm.id);
            let _guard = lock.lock().await;
            tracing::warn!(vm = %vm.id, node = %node.name, "fenced by admin: node confirmed powered off");
            self.set_state(
                vm.id,
                VmState::Stopped,
                None,
                Some(format!(
                    "node {} was fenced (confirmed powered off)",
                    node.name
                )),
            )
            .await?;
            released += 1;
        }
        events::record(
            &self.pool,
            NewEvent::node(
                EventKind::NodeFenced,
                node_id,
                &node.name,
                format!("confirmed powered off; {released} VM(s) released to start elsewhere"),
            )
            .by(actor),
        )
        .await;
        Ok(released)
    }

    /// Reconciles every 2 s while this server holds the `reconciler` lease
    /// (one server of a cluster reconciles).
    pub fn spawn_reconciler(
        self: Arc<Self>,
        health: &Arc<crate::health::Health>,
        leases: &Arc<crate::lease::Leases>,
    ) -> tokio::task::JoinHandle<()> {
        crate::lease::spawn_leased(
            health,
            leases,
            "reconciler",
            Duration::from_secs(2),
            move || {
                let this = self.clone();
                async move { this.reconcile_once().await }
            },
        )
    }
}
