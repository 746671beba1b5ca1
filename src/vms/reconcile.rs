//! Reconcile: bringing the database's intent and libvirt's facts together —
//! on reads of one VM, in the periodic pass over every node, and when an
//! admin fences a node that is gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::VmManager;
use super::model::{COLUMNS, Vm, VmError, VmState, from_row, load};
use crate::events::{self, EventKind, NewEvent};
use crate::libvirt::{self, DomainState, LibvirtError};

/// Longest a read of one VM's domain may take (a frozen node must not hold up
/// API reads of its VMs for the whole libvirt call timeout).
pub(super) const SYNC_DEADLINE: Duration = Duration::from_secs(5);
/// Longest one node's part of a reconcile pass may take.
pub(super) const RECONCILE_NODE_DEADLINE: Duration = Duration::from_secs(10);

impl VmManager {
    /// Brings one VM's row in line with libvirt and returns it.
    pub async fn refresh(&self, id: Uuid) -> Result<Vm, VmError> {
        let lock = self.lock_for(id);
        // A start/stop in flight owns the VM; its result will be written by it.
        let Ok(_guard) = lock.try_lock() else {
            return load(&self.pool, id).await;
        };
        let vm = load(&self.pool, id).await?;
        self.sync_with_node(vm).await
    }

    /// Re-reads the VM's domain on its node and updates the row to match.
    pub(crate) async fn sync_with_node(&self, vm: Vm) -> Result<Vm, VmError> {
        let Some(node_id) = vm.node_id else {
            return Ok(vm);
        };
        let Ok(conn) = self.nodes.conn(node_id).await else {
            // Node unreachable: the VM may still run there, so it is not
            // `running` (nobody can reach it) nor `stopped` (its layer may be
            // open): `node_down` until the node is back or fenced.
            if vm.state.is_active() && vm.state != VmState::NodeDown {
                self.set_state(vm.id, VmState::NodeDown, Some(node_id), None)
                    .await?;
                return load(&self.pool, vm.id).await;
            }
            return Ok(vm);
        };
        let name = self.domain_name(vm.id);
        let found = tokio::time::timeout(SYNC_DEADLINE, conn.domain(&name))
            .await
            .unwrap_or(Err(LibvirtError::Timeout));
        // The node answered: for a `node_down` VM this is the fence — a
        // missing domain means nothing holds the layer any more.
        match found {
            Ok(Some(d)) if matches!(d.state, DomainState::Running | DomainState::Paused) => {
                if vm.state != VmState::Running && vm.state != VmState::Stopping {
                    self.set_state(vm.id, VmState::Running, Some(node_id), None)
                        .await?;
                }
            }
            // Still shutting down (or otherwise alive): QEMU holds the layer,
            // so the VM is not stopped yet.
            Ok(Some(d)) if d.state != DomainState::Shutoff => {
                if vm.state != VmState::Stopping {
                    self.set_state(vm.id, VmState::Stopping, Some(node_id), None)
                        .await?;
                }
            }
            Ok(_) => {
                self.set_state(vm.id, VmState::Stopped, None, None).await?;
            }
            Err(e) => tracing::warn!(vm = %vm.id, error = %e, "could not read domain state"),
        }
        load(&self.pool, vm.id).await
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
        let nodes = self.nodes.list().await?;
        let passes = nodes.iter().map(|node| async move {
            if node.state == "down" {
                return self.mark_node_down(node.id).await;
            }
            match tokio::time::timeout(RECONCILE_NODE_DEADLINE, self.reconcile_node(node)).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(node = %node.name, "reconcile timed out");
                    Ok(())
                }
            }
        });
        for r in futures::future::join_all(passes).await {
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
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM vms WHERE node_id = ? AND state IN ('starting', 'running', 'stopping') AND node_down = 0"
        ))
        .bind(node_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let vm = from_row(row)?;
            let lock = self.lock_for(vm.id);
            let Ok(_guard) = lock.try_lock() else {
                continue;
            };
            tracing::warn!(vm = %vm.id, node = %node_id, "node down: VM state unknown until fenced");
            self.set_state(vm.id, VmState::NodeDown, Some(node_id), None)
                .await?;
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
            let lock = self.lock_for(vm_id);
            let Ok(_guard) = lock.try_lock() else {
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
        let running: HashMap<Uuid, DomainState> = domains
            .iter()
            .filter_map(|d| {
                let id = Uuid::parse_str(&d.metadata.as_ref()?.id).ok()?;
                Some((id, d.state))
            })
            .collect();
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM vms WHERE node_id = ? OR id IN (SELECT value FROM json_each(?))"
        ))
        .bind(node.id.to_string())
        .bind(
            serde_json::to_string(&running.keys().map(Uuid::to_string).collect::<Vec<_>>())
                .unwrap_or_else(|_| "[]".into()),
        )
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let vm = from_row(row)?;
            let lock = self.lock_for(vm.id);
            let Ok(_guard) = lock.try_lock() else {
                continue;
            };
            let seen = running.get(&vm.id).copied();
            if reconcile_action(vm.state, vm.node_id, node.id, seen) == ReconcileAction::None {
                continue;
            }
            // The listing and the rows were read before the lock was taken: an
            // operation may have finished in between. Decide again on fresh
            // facts (only for the few VMs that need acting on).
            let vm = load(&self.pool, vm.id).await?;
            let seen = match conn.domain(&self.domain_name(vm.id)).await {
                Ok(d) => d.map(|d| d.state),
                Err(_) => continue,
            };
            match reconcile_action(vm.state, vm.node_id, node.id, seen) {
                ReconcileAction::None => {}
                ReconcileAction::DestroyStaleCopy => {
                    tracing::warn!(vm = %vm.id, node = %node.name, "destroying a stale copy on a fenced node");
                    conn.destroy(&self.domain_name(vm.id)).await?;
                }
                ReconcileAction::Adopt => {
                    tracing::info!(vm = %vm.id, node = %node.name, state = vm.state.as_str(), "adopting running domain");
                    self.set_state(vm.id, VmState::Running, Some(node.id), None)
                        .await?;
                }
                ReconcileAction::MarkStopped { interrupted_start } => {
                    let reason = interrupted_start.then(|| {
                        "the start was interrupted (the server stopped while the VM was starting); start it again".to_owned()
                    });
                    self.set_state(vm.id, VmState::Stopped, None, reason)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// An admin's confirmation that a `down` node is powered off (or its
    /// QEMUs are otherwise gone): its VMs are fenced and become `stopped`, so
    /// they can start on another node. Refused (409 `node_up`) while the node
    /// answers — then the node itself tells what still runs. Returns how many
    /// VMs were released.
    pub async fn fence_node(&self, node_id: Uuid, actor: Option<&str>) -> Result<u64, VmError> {
        let node = self.nodes.get(node_id).await?;
        if node.state != "down" || self.nodes.probe(node_id).await.is_ok() {
            return Err(VmError::Conflict(
                "node_up",
                "the node answers; its VMs are stopped through it, not fenced".into(),
            ));
        }
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM vms WHERE node_id = ? AND state IN ('starting', 'running', 'stopping')"
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

    pub fn spawn_reconciler(
        self: Arc<Self>,
        health: &Arc<crate::health::Health>,
    ) -> tokio::task::JoinHandle<()> {
        crate::health::spawn_periodic(health, "reconciler", Duration::from_secs(2), move || {
            let this = self.clone();
            async move { this.reconcile_once().await }
        })
    }
}

/// What the reconciler does about one VM on the node it is looking at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReconcileAction {
    None,
    /// The VM runs elsewhere (after this node was fenced): this copy must not
    /// keep writing the layer.
    DestroyStaleCopy,
    /// The domain runs here but the database says otherwise — including a
    /// `starting`/`stopping` whose operation died with a previous server
    /// process (no operation holds the VM's lock when this is asked).
    Adopt,
    /// No domain here for a VM the database thinks is active.
    MarkStopped {
        interrupted_start: bool,
    },
}

/// The reconcile rule, as a pure function of the VM's recorded state and
/// node, the node being reconciled, and the domain's state there (`None`:
/// no such domain). Only called for VMs whose lifecycle lock is free.
fn reconcile_action(
    state: VmState,
    vm_node: Option<Uuid>,
    node: Uuid,
    domain: Option<DomainState>,
) -> ReconcileAction {
    let alive = matches!(domain, Some(DomainState::Running | DomainState::Paused));
    // A domain still shutting down holds the layer: not stopped yet.
    let present = domain.is_some_and(|s| s != DomainState::Shutoff);
    let here = vm_node == Some(node);
    if alive && !here && vm_node.is_some() && state.is_active() {
        ReconcileAction::DestroyStaleCopy
    } else if alive && (!here || state != VmState::Running) {
        ReconcileAction::Adopt
    } else if !present && here && state.is_active() {
        ReconcileAction::MarkStopped {
            interrupted_start: state == VmState::Starting,
        }
    } else {
        ReconcileAction::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_settles_every_transitional_state() {
        use DomainState::{Paused, Running, Shutoff};
        let here = Uuid::new_v4();
        let other = Uuid::new_v4();
        let act = |s, n, d| reconcile_action(s, n, here, d);
        // A start or stop that died with the server: the domain decides.
        assert_eq!(
            act(VmState::Starting, Some(here), Some(Running)),
            ReconcileAction::Adopt
        );
        assert_eq!(
            act(VmState::Stopping, Some(here), Some(Running)),
            ReconcileAction::Adopt
        );
        assert_eq!(
            act(VmState::Starting, Some(here), None),
            ReconcileAction::MarkStopped {
                interrupted_start: true
            }
        );
        assert_eq!(
            act(VmState::Stopping, Some(here), None),
            ReconcileAction::MarkStopped {
                interrupted_start: false
            }
        );
        assert_eq!(
            act(VmState::Running, Some(here), Some(Shutoff)),
            ReconcileAction::MarkStopped {
                interrupted_start: false
            }
        );
        // Steady states are left alone.
        assert_eq!(
            act(VmState::Running, Some(here), Some(Running)),
            ReconcileAction::None
        );
        assert_eq!(
            act(VmState::Running, Some(here), Some(Paused)),
            ReconcileAction::None
        );
        assert_eq!(act(VmState::Stopped, None, None), ReconcileAction::None);
        // A stopped VM found running here is adopted; a copy of a VM active
        // elsewhere is destroyed.
        assert_eq!(
            act(VmState::Stopped, None, Some(Running)),
            ReconcileAction::Adopt
        );
        assert_eq!(
            act(VmState::Running, Some(other), Some(Running)),
            ReconcileAction::DestroyStaleCopy
        );
        // Another node's VM with no domain here is not this pass's business.
        assert_eq!(
            act(VmState::Running, Some(other), None),
            ReconcileAction::None
        );
    }
}
