//! Moving VMs between nodes: live migration, moving a node-local layer, and
//! draining a node for maintenance.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::VmManager;
use super::model::{COLUMNS, Vm, VmError, VmState, from_row, graphics_of, load};
use crate::events::{self, EventKind, NewEvent};
use crate::nodes::NodeError;
use crate::placement::{Candidate, Constraint};
use crate::templates;
use crate::users::User;
use crate::vms::layers::{LayerError, LayerStorage};

/// Longest a live migration may take before pvce stops waiting (libvirt goes
/// on; the reconcile loop then finds the domain wherever it ended up).
pub(super) const MIGRATE_DEADLINE: Duration = Duration::from_secs(300);

impl VmManager {
    /// Live-migrates a running VM to `target` (shared storage: only memory
    /// moves). The VM stays `running` throughout and ends on `target` with
    /// its console listening on the target's console address; console tokens
    /// issued for the old node are void (they are bound to the node).
    /// `actor`: the admin who asked (for the event log).
    pub async fn migrate(&self, vm: &Vm, target: Uuid, actor: Option<&str>) -> Result<Vm, VmError> {
        let lock = self.lock_for(vm.id);
        let _guard = lock.lock().await;
        let (vm, src) = self.require_running(vm).await?;
        let (VmState::Running, Some(source)) = (vm.state, vm.node_id) else {
            return Err(VmError::NotRunning(
                "only a running VM can be migrated".into(),
            ));
        };
        if vm.layer_storage == LayerStorage::NodeLocal {
            return Err(VmError::LayerNodeLocal("this VM's disk is local to its node, so it cannot live-migrate; stop it, then move it (POST /api/vms/{id}/move)".into(),
            ));
        }
        // A lab-network VM moves only where its network can follow it: a
        // network with a VXLAN segment (src/labnets.rs), made on the target
        // before the move and removed from the source after it if no VM of
        // the student is left there. The student's network lock is held
        // throughout (after the VM's lock: the lock order of a start).
        let lab_held = self.labnets.lock_vm(vm.course_id, vm.owner_id).await?;
        let lab = lab_held.as_ref().map(|(pair, _)| *pair);
        if let Some(pair) = lab
            && !self.labnets.placement(pair, vm.id).await?.overlay
        {
            return Err(VmError::LabNetwork(
                "VMs on a lab network move to another node only when every node has the lab-network overlay (VXLAN) and the network was made with it".into(),
            ));
        }
        if source == target {
            return Err(VmError::SameNode("the VM already runs on this node".into()));
        }
        let node = self.target_node(target).await?;
        let committed = self.committed_mib().await?;
        let candidate = Candidate {
            node_id: node.id,
            name: node.name.clone(),
            up: true,
            maintenance: false,
            has_template: true,
            mem_total_mib: node.mem_total_mib,
            mem_used_mib: node
                .mem_used_mib
                .saturating_add(committed.get(&node.id).copied().unwrap_or(0)),
            cpu_percent: node.cpu_percent,
            vms_running: node.vms_running,
            // An explicit target: the admin chose it, libvirt has the last word.
            unsupported: None,
        };
        let _reservation = self
            .reservations
            .place(
                std::slice::from_ref(&candidate),
                u64::from(vm.memory_mib),
                self.host_reserve_mib,
                self.policy,
                Constraint::Anywhere,
            )
            .map_err(|_| {
                VmError::InsufficientMemory(format!(
                    "node {} lacks {} MiB of free memory for this VM",
                    node.name, vm.memory_mib
                ))
            })?;
        // Shared storage carries the layer, not the template: the target's
        // store must hold the chain before QEMU there opens it.
        let chain = self.stores.chain(vm.template_id).await?;
        self.stores.ensure_chain(target, &chain).await?;
        let listen: std::net::IpAddr = node.console_address.parse().map_err(|_| {
            VmError::BadConsoleAddress("the target node's console address is not an IP".into())
        })?;
        let dst = self.nodes.conn(target).await?;
        tracing::info!(vm = %vm.id, from = %source, to = %node.name, "live migration");
        let source_name = self
            .nodes
            .get(source)
            .await
            .map(|n| n.name)
            .unwrap_or_default();
        if let Some(pair) = lab
            && let Err(e) = self.labnets.ensure(target, &dst, pair, true).await
        {
            if let Err(e2) = self.labnets.release_locked(pair).await {
                tracing::warn!(vm = %vm.id, error = %e2, "lab network cleanup failed");
            }
            return Err(e.into());
        }
        let result = src
            .migrate_to(&self.domain_name(vm.id), &dst, listen, MIGRATE_DEADLINE)
            .await;
        if result.is_ok() {
            crate::crashpoint::hit("migrate.domain_moved");
        }
        // Moved: the source's network goes if nothing else of the student's
        // runs there. Failed: the target's, likewise.
        if let Some(pair) = lab
            && let Err(e) = self.labnets.release_locked(pair).await
        {
            tracing::warn!(vm = %vm.id, error = %e, "lab network cleanup after a migration failed");
        }
        let event = match &result {
            Ok(_) => NewEvent::node(
                EventKind::VmMigrated,
                source,
                &source_name,
                format!("live-migrated to {}", node.name),
            ),
            Err(e) => NewEvent::node(
                EventKind::VmMigrationFailed,
                source,
                &source_name,
                format!("live migration to {} failed: {e}", node.name),
            ),
        };
        events::record(&self.pool, event.vm(vm.id).by(actor)).await;
        result?;
        self.set_state(vm.id, VmState::Running, Some(target), None)
            .await?;
        load(&self.pool, vm.id).await
    }

    /// A node a VM may be moved to (migration, layer move): known (else 422
    /// `unknown_node`), up and not in maintenance (else 409).
    pub(super) async fn target_node(&self, target: Uuid) -> Result<crate::nodes::Node, VmError> {
        let node = match self.nodes.get(target).await {
            Err(NodeError::NotFound) => {
                return Err(VmError::UnknownNode("no such target node".into()));
            }
            other => other?,
        };
        if node.maintenance {
            return Err(VmError::NodeMaintenance(format!(
                "node {} is in maintenance",
                node.name
            )));
        }
        if !node.state.is_up() {
            return Err(VmError::NodeDown(format!("node {} is down", node.name)));
        }
        Ok(node)
    }

    /// Moves a stopped VM's node-local layer to node `target` (admin): the
    /// target's template store gets the chain, the layer is copied through
    /// the server and verified, then the VM's home is the target. 409
    /// `layer_shared` for a shared layer (it needs no move).
    pub async fn move_layer(&self, user: &User, id: Uuid, target: Uuid) -> Result<Vm, VmError> {
        let vm = self.get_for(user, id).await?;
        let actor = Some(user.username.as_str());
        let (_guard, vm) = self.locked(vm.id).await?;
        if vm.state.is_active() {
            return Err(VmError::Running(
                "stop the VM before moving its disk".into(),
            ));
        }
        if vm.layer_storage == LayerStorage::Shared {
            return Err(LayerError::Shared.into());
        }
        let node = self.target_node(target).await?;
        let chain = self.stores.chain(vm.template_id).await?;
        self.stores.ensure_chain(target, &chain).await?;
        let t = templates::get(&self.pool, vm.template_id).await?;
        tracing::info!(vm = %vm.id, to = %node.name, "moving a node-local layer");
        let home = vm.layer().node_id;
        self.layers
            .move_to(
                vm.id,
                &vm.overlay_path,
                &vm.layer(),
                target,
                &self.storage.template_path(t.id),
                t.virtual_size_bytes,
            )
            .await?;
        let from = match home {
            Some(h) => self.nodes.get(h).await.map(|n| n.name).unwrap_or_default(),
            None => String::new(),
        };
        events::record(
            &self.pool,
            NewEvent::node(
                EventKind::VmMoved,
                target,
                &node.name,
                format!("disk moved here from {from}"),
            )
            .vm(vm.id)
            .by(actor),
        )
        .await;
        load(&self.pool, vm.id).await
    }

    /// Live-migrates every running VM off a node (after maintenance was
    /// switched on), one at a time, each to the node placement picks among
    /// the others. VMs that cannot move (no room, a failed migration) stay
    /// where they are and are logged; the admin sees them on the node.
    pub fn spawn_drain(self: &Arc<Self>, node_id: Uuid, actor: Option<String>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = this.drain(node_id, actor.as_deref()).await {
                tracing::warn!(node = %node_id, error = %e, "drain failed");
            }
        });
    }

    pub(super) async fn drain(&self, node_id: Uuid, actor: Option<&str>) -> Result<(), VmError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM vms WHERE node_id = $1 AND state = 'running' ORDER BY id"
        ))
        .bind(node_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let name = self.nodes.get(node_id).await?.name;
        events::record(
            &self.pool,
            NewEvent::node(
                EventKind::DrainStarted,
                node_id,
                &name,
                format!("moving {} running VM(s) to other nodes", rows.len()),
            )
            .by(actor),
        )
        .await;
        for row in &rows {
            let vm = from_row(row)?;
            if vm.layer_storage == LayerStorage::NodeLocal {
                let why = "the VM's disk is local to this node; stop it, then move it";
                self.left_behind((node_id, &name), vm.id, actor, why.into())
                    .await;
                continue;
            }
            let chain = self.stores.chain(vm.template_id).await?;
            let graphics = graphics_of(&self.pool, vm.id).await?;
            let candidates = self.candidates(&chain, graphics).await?;
            let target = crate::placement::choose(
                &candidates,
                u64::from(vm.memory_mib),
                self.host_reserve_mib,
                &HashMap::new(),
                self.policy,
                Constraint::Anywhere,
            );
            match target {
                Ok(target) => match self.migrate(&vm, target, actor).await {
                    Ok(_) => tracing::info!(vm = %vm.id, "drained"),
                    Err(e) => tracing::warn!(vm = %vm.id, error = %e, "drain: migration failed"),
                },
                Err(e) => {
                    let why = format!("no node can take the VM: {e}");
                    self.left_behind((node_id, &name), vm.id, actor, why).await;
                }
            }
        }
        Ok(())
    }

    /// A VM a drain cannot move stays on its node; the log and the event
    /// log say why.
    pub(super) async fn left_behind(
        &self,
        node: (Uuid, &str),
        vm: Uuid,
        actor: Option<&str>,
        why: String,
    ) {
        tracing::warn!(vm = %vm, why, "drain: the VM stays");
        let event = NewEvent::node(
            EventKind::VmMigrationFailed,
            node.0,
            node.1,
            format!("drain: {why}"),
        );
        events::record(&self.pool, event.vm(vm).by(actor)).await;
    }
}

impl VmManager {
    /// Removes a node from the cluster. Refused (409) while any VM runs there
    /// or ran there when the node went down (`node_down`: its domain may
    /// still be alive, so forgetting the node would let the VM start a second
    /// copy elsewhere — fence it first), and while VMs keep their node-local
    /// layers there (the students' disks would be lost: move them first).
    /// Checks and removal are one transaction, so a start placed on the node
    /// meanwhile cannot slip in between.
    pub async fn remove_node(&self, id: Uuid, actor: Option<&str>) -> Result<(), NodeError> {
        let mut removal = self.nodes.begin_removal(id).await?;
        let tx = removal.conn();
        // `node_down` VMs keep their active state underneath (migration 0005).
        let active: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM vms WHERE node_id = $1
             AND state IN ('starting', 'running', 'stopping')",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if active > 0 {
            return Err(NodeError::Busy(u64::try_from(active).unwrap_or(0)));
        }
        let disks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vms WHERE layer_node_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if disks > 0 {
            return Err(NodeError::HoldsLayers(u64::try_from(disks).unwrap_or(0)));
        }
        // Stopped VMs only remember where they last ran.
        sqlx::query("UPDATE vms SET node_id = NULL WHERE node_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        removal.finish(actor).await
    }
}
