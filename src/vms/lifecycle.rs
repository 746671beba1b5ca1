//! Lifecycle: start (placement, template chain, layer, domain), shutdown,
//! power-off, reboot and reset — each under the VM's lock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::gate::{StartBy, StartPermit};
use super::model::{Vm, VmError, VmState, clipboard_agent_of, graphics_of, load};
use super::{LastError, VmManager, rule};
use crate::images::{self};
use crate::libvirt::{self, DomainState, GraphicsKind};
use crate::placement::{Candidate, Constraint};
use crate::templates;
use crate::templates::chain::ChainLayer;
use crate::vms::layers::{LayerLocation, LayerStorage};

impl VmManager {
    /// The nodes placement may consider for a VM of `chain` with `graphics`.
    pub(super) async fn candidates(
        &self,
        chain: &[ChainLayer],
        graphics: GraphicsKind,
    ) -> Result<Vec<Candidate>, VmError> {
        let (holders, chain_bytes) = self.stores.holders(chain).await?;
        let nodes = self.nodes.list().await?;
        let committed = self.committed_mib().await?;
        Ok(nodes
            .into_iter()
            .map(|n| {
                let unsupported = n
                    .capabilities
                    .as_ref()
                    .and_then(|c| c.lacks(graphics, self.nodes.accel()));
                let promised = committed.get(&n.id).copied().unwrap_or(0);
                n.candidate(&holders, chain_bytes, promised, unsupported)
            })
            .collect())
    }

    /// Memory promised to the VMs placed on each node. A guest touches its
    /// memory lazily, so a node's own figures lag far behind what its VMs may
    /// claim; counting the promise on top keeps placement (and migration
    /// targets) from piling VMs onto a node whose stats have not caught up
    /// (conservative: what a guest already touched counts twice).
    pub(super) async fn committed_mib(&self) -> Result<HashMap<Uuid, u64>, VmError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT node_id, CAST(SUM(memory_mib) AS BIGINT) FROM vms WHERE node_id IS NOT NULL
             AND state IN ('starting', 'running', 'stopping') GROUP BY node_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(node, mib)| {
                Some((
                    Uuid::parse_str(&node).ok()?,
                    u64::try_from(mib).unwrap_or(0),
                ))
            })
            .collect())
    }

    /// Starts a VM (idempotent: a running VM is returned as it is). Every
    /// start of a VM that was not running is recorded for the service
    /// levels ([`crate::slo`]), with its outcome and the node it got.
    pub async fn start(&self, vm: &Vm, owner_name: &str, course_code: &str) -> Result<Vm, VmError> {
        self.start_preferring(vm, owner_name, course_code, None, StartBy::User)
            .await
    }

    /// [`Self::start`] on the node `prefer` if the VM may go anywhere (the
    /// class-time admission queue spreads a class over the nodes with free
    /// start slots, see [`crate::classtime`]); a VM bound to a node by its
    /// layer or lab network still goes to that node. `by`: who asked (the
    /// quotas of [`super::gate`] treat a timetable's pre-start apart).
    pub async fn start_preferring(
        &self,
        vm: &Vm,
        owner_name: &str,
        course_code: &str,
        prefer: Option<Uuid>,
        by: StartBy,
    ) -> Result<Vm, VmError> {
        let attempt = super::starts::StartAttempt::begin(vm.id, vm.owner_id, vm.course_id);
        let (_guard, vm) = self.locked(vm.id).await?;
        if matches!(vm.state, VmState::Running | VmState::Starting) {
            return Ok(vm);
        }
        // The quotas, before anything happens (a refusal is not a failed
        // start); the permit counts this VM until its start is over.
        let _permit = match (vm.state, self.gate.get()) {
            (VmState::Stopped | VmState::Error, Some(gate)) => gate.admit(&vm, by).await?,
            _ => StartPermit::none(),
        };
        let mut placed = None;
        let result = self
            .start_locked(vm, owner_name, course_code, prefer, &mut placed)
            .await;
        super::starts::record_start(
            &self.pool,
            &attempt,
            placed,
            result.as_ref().map(|_| ()).map_err(VmError::failure_kind),
        )
        .await;
        result
    }

    /// [`Self::start`] under the VM's lock, for a VM not running; sets
    /// `placed` to the node chosen.
    async fn start_locked(
        &self,
        vm: Vm,
        owner_name: &str,
        course_code: &str,
        prefer: Option<Uuid>,
        placed: &mut Option<Uuid>,
    ) -> Result<Vm, VmError> {
        match vm.state {
            VmState::Running | VmState::Starting => return Ok(vm),
            VmState::Stopping => {
                return Err(VmError::Stopping(
                    "the VM is shutting down; try again when it has stopped".into(),
                ));
            }
            VmState::NodeDown => {
                *placed = vm.node_id;
                return Err(node_down_conflict());
            }
            VmState::Stopped | VmState::Error => {}
        }
        super::require_open_course(&self.pool, &vm, "its VMs no longer start").await?;
        // A lab-network VM: hold its student's network lock for the whole start,
        // so the student's concurrent starts agree on a node and one network.
        let lab_held = self.labnets.lock_vm(vm.course_id, vm.owner_id).await?;
        let lab = lab_held.as_ref().map(|(pair, _)| *pair);
        let (constraint, overlay) = match lab {
            Some(pair) => {
                let p = self.labnets.placement(pair, vm.id).await?;
                (p.constraint, p.overlay)
            }
            None => (Constraint::Anywhere, false),
        };
        // A node-local layer pins the VM to its home node.
        let constraint = match (self.layers.pinned_node(&vm.layer()).await?, constraint) {
            (None, c) => c,
            (Some(home), Constraint::Anywhere) => Constraint::OnNode(home),
            (Some(home), Constraint::OnNode(n)) if n == home => constraint,
            (Some(_), Constraint::OnNode(_)) => {
                return Err(VmError::LabNetwork("this VM's disk is on another node than the one running the student's other VMs on the same lab network; stop those VMs first".into(),
                ));
            }
        };
        let constraint = match (constraint, prefer) {
            (Constraint::Anywhere, Some(node)) => Constraint::OnNode(node),
            (c, _) => c,
        };
        let chain = self.stores.chain(vm.template_id).await?;
        let graphics = graphics_of(&self.pool, vm.id).await?;
        let clipboard_agent = clipboard_agent_of(&self.pool, vm.id).await?;
        let candidates = self.candidates(&chain, graphics).await?;
        let reservation = self.reservations.place(
            &candidates,
            u64::from(vm.memory_mib),
            self.host_reserve_mib,
            self.policy,
            constraint,
        )?;
        let node_id = reservation.node_id();
        *placed = Some(node_id);
        let node = self.nodes.get(node_id).await?;
        let conn = self.nodes.conn(node_id).await?;
        // The template's layers must be in the node's store before QEMU opens
        // the chain (a no-op once they are).
        self.stores.ensure_chain(node_id, &chain).await?;
        // A node-local layer not created yet is created on the chosen node,
        // which becomes its home (undone below if the start fails).
        let mut layer = vm.layer();
        let created_layer = layer.storage == LayerStorage::NodeLocal && layer.volume.is_none();
        if created_layer {
            let t = templates::get(&self.pool, vm.template_id).await?;
            layer = self
                .layers
                .create(
                    node_id,
                    vm.id,
                    &self.storage.template_path(t.id),
                    t.virtual_size_bytes,
                )
                .await?;
        }
        self.set_state(vm.id, VmState::Starting, Some(node_id), None)
            .await?;
        crate::crashpoint::hit("vm_start.state_starting");
        let network = match lab {
            Some(pair) => match self.labnets.ensure(node_id, &conn, pair, overlay).await {
                Ok(net) => Some(net),
                Err(e) => {
                    tracing::warn!(vm = %vm.id, error = %e, "lab network unavailable");
                    if created_layer {
                        self.discard_new_layer(vm.id, &layer).await;
                    }
                    if let Err(e2) = self.labnets.release_locked(pair).await {
                        tracing::warn!(vm = %vm.id, error = %e2, "lab network cleanup failed");
                    }
                    self.set_state(vm.id, VmState::Stopped, None, Some(e.to_string()))
                        .await?;
                    return Err(e.into());
                }
            },
            None => None,
        };
        // A new domain always gets this installation's name (an adopted
        // older one is gone: the VM was not running).
        self.legacy_names_mut().remove(&vm.id);
        let spec = libvirt::DomainSpec {
            name: self.domain_name(vm.id),
            uuid: vm.id,
            title: format!("{owner_name} / {course_code} / {}", vm.name),
            vcpus: vm.vcpus,
            memory_mib: u64::from(vm.memory_mib),
            hypervisor: conn.hypervisor_for(self.nodes.accel()).await?,
            disk_path: self.layers.disk_path(&vm.overlay_path, &layer),
            graphics,
            graphics_listen: node.console_address.clone(),
            // Per boot, never stored: the console proxy reads it back from libvirt.
            graphics_password: Some(crate::libvirt::new_console_password(graphics)),
            serial_log: Some(self.storage.console_log_path(vm.id)),
            smbios_serial: format!("vm-{}", &vm.id.simple().to_string()[..12]),
            disk_cache: self.disk_cache,
            metadata: libvirt::PvceMetadata {
                id: vm.id.to_string(),
                owner: vm.owner_id.to_string(),
                course: vm.course_id.map(|c| c.to_string()),
                template: vm.build_template_id.map(|t| t.to_string()),
                installation: Some(self.installation.clone()),
            },
            network_mtu: network.as_ref().and_then(|n| n.mtu),
            network: network.map(|n| n.name),
            clipboard_agent,
        };
        match conn.create_domain(&spec).await {
            Ok(_) => {
                crate::crashpoint::hit("vm_start.domain_created");
                self.write_state(
                    vm.id,
                    VmState::Running,
                    Some(node_id),
                    LastError::Clear,
                    true,
                    None,
                )
                .await?;
                crate::crashpoint::hit("vm_start.running_recorded");
                drop(reservation);
                load(&self.pool, vm.id).await
            }
            Err(e) => {
                // Never leave a half-started domain (or an unused network) behind.
                let destroyed = conn.destroy(&spec.name, &self.installation).await;
                if created_layer && destroyed.is_ok() {
                    self.discard_new_layer(vm.id, &layer).await;
                }
                if let Some(pair) = lab
                    && let Err(e2) = self.labnets.release_locked(pair).await
                {
                    tracing::warn!(vm = %vm.id, error = %e2, "lab network cleanup failed");
                }
                tracing::warn!(vm = %vm.id, error = %e, "start failed");
                // Before the state change below, so whoever hears of that
                // (the service desk) finds the failure in the log.
                crate::events::record(
                    &self.pool,
                    crate::events::NewEvent::node(
                        crate::events::EventKind::VmStartFailed,
                        node_id,
                        &node.name,
                        e.to_string(),
                    )
                    .vm(vm.id),
                )
                .await;
                if e.is_unavailable() && destroyed.is_err() {
                    // The node stopped answering mid-start: the domain may run
                    // there after all, so the VM is fenced like any other.
                    self.set_state(vm.id, VmState::NodeDown, Some(node_id), Some(e.to_string()))
                        .await?;
                } else {
                    self.set_state(vm.id, VmState::Stopped, None, Some(e.to_string()))
                        .await?;
                }
                Err(e.into())
            }
        }
    }

    /// The stopped VM's layer as a file on the server at its `overlay_path`
    /// (a download for a node-local layer, see [`crate::vms::layers`]); commit
    /// the checkout after changing the file. Call under the VM's lock.
    pub(crate) async fn checkout_layer(
        &self,
        vm: &Vm,
    ) -> Result<crate::vms::layers::Checkout<'_>, VmError> {
        let (backing, size) = match vm.layer_storage {
            LayerStorage::Shared => (PathBuf::new(), 0),
            LayerStorage::NodeLocal => {
                let t = templates::get(&self.pool, vm.template_id).await?;
                (self.storage.template_path(t.id), t.virtual_size_bytes)
            }
        };
        Ok(self
            .layers
            .checkout(vm.id, &vm.overlay_path, &vm.layer(), &backing, size)
            .await?)
    }

    /// Removes a node-local layer created by a start that then failed, so
    /// the next start is placed afresh (logged if the node does not answer;
    /// the layer then stays the VM's, empty).
    pub(super) async fn discard_new_layer(&self, vm_id: Uuid, layer: &LayerLocation) {
        if let Err(e) = self.layers.discard(vm_id, layer).await {
            tracing::warn!(vm = %vm_id, error = %e, "could not remove the layer of a failed start");
        }
    }

    /// After a stop: a node-local layer's size, as the UI shows it.
    pub(super) async fn refresh_layer_bytes(&self, vm_id: Uuid) {
        if let Ok(vm) = load(&self.pool, vm_id).await
            && vm.layer_storage == LayerStorage::NodeLocal
            && let Err(e) = self.layers.refresh_bytes(vm_id, &vm.layer()).await
        {
            tracing::debug!(vm = %vm_id, error = %e, "could not read the layer size");
        }
    }

    /// [`Self::require_running`], with a VM that is not running as `None`
    /// (for work that simply has nothing to do then).
    async fn running_conn(&self, vm: &Vm) -> Result<Option<(Vm, libvirt::Node)>, VmError> {
        match self.require_running(vm).await {
            Ok(r) => Ok(Some(r)),
            Err(VmError::NotRunning(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn require_running(&self, vm: &Vm) -> Result<(Vm, libvirt::Node), VmError> {
        let vm = self.sync_with_node(load(&self.pool, vm.id).await?).await?;
        let node_id = match (vm.state, vm.node_id) {
            (VmState::Running | VmState::Stopping, Some(n)) => n,
            (VmState::NodeDown, _) => return Err(node_down_conflict()),
            _ => {
                return Err(VmError::NotRunning("the VM is not running".into()));
            }
        };
        let conn = self.nodes.conn(node_id).await?;
        Ok((vm, conn))
    }

    /// ACPI shutdown; forced off if the guest has not stopped after the timeout.
    pub async fn shutdown(self: &Arc<Self>, vm: &Vm) -> Result<Vm, VmError> {
        let (_guard, current) = self.locked(vm.id).await?;
        if current.state == VmState::Stopped {
            return Ok(current);
        }
        let (vm, conn) = self.require_running(&current).await?;
        conn.shutdown(&self.domain_name(vm.id)).await?;
        // One deadline, on the monotonic clock for the wait and on the wall
        // clock for the UI ("forced off at 10:42").
        let deadline = Instant::now() + self.shutdown_timeout;
        let forced_at =
            crate::db::format_time(time::OffsetDateTime::now_utc() + self.shutdown_timeout);
        self.write_state(
            vm.id,
            VmState::Stopping,
            vm.node_id,
            LastError::Keep,
            false,
            Some(forced_at.clone()),
        )
        .await?;
        self.stops_in_flight_mut().insert(vm.id, forced_at.clone());
        let this = Arc::clone(self);
        let vm_id = vm.id;
        tokio::spawn(async move { this.finish_shutdown(vm_id, conn, deadline, forced_at).await });
        load(&self.pool, vm.id).await
    }

    /// Waits for the guest of the shutdown recorded with `forced_at` to
    /// power off, forcing it off at `deadline`, and marks the VM stopped —
    /// as long as that shutdown is still the VM's operation
    /// ([`rule::own_stop`]): the VM's lock is not held while the guest takes
    /// its time, so a power-off, a refresh that found the guest gone, and a
    /// new start may all come first, and the new run is not this task's to
    /// end or to record as stopped.
    pub(super) async fn finish_shutdown(
        &self,
        vm_id: Uuid,
        conn: libvirt::Node,
        deadline: Instant,
        forced_at: String,
    ) {
        let name = self.domain_name(vm_id);
        let owns = |vm: &Vm| rule::own_stop(vm.state, vm.stop_deadline.as_deref(), &forced_at);
        let force = loop {
            match conn.domain(&name).await {
                Ok(None) => break false,
                Ok(Some(d)) if d.state == DomainState::Shutoff => break false,
                _ => {}
            }
            if Instant::now() >= deadline {
                break true;
            }
            // Taken over meanwhile: the domain polled now may be a new run.
            if !load(&self.pool, vm_id).await.is_ok_and(|vm| owns(&vm)) {
                self.forget_stop(vm_id, &forced_at);
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let lock = self.lock_for(vm_id);
        let _guard = lock.lock().await;
        // Under the lock the last word: another operation may have finished
        // while this task waited for it.
        if let Ok(vm) = load(&self.pool, vm_id).await
            && owns(&vm)
        {
            if force {
                tracing::info!(vm = %vm_id, "ACPI shutdown timed out; forcing off");
                let _ = conn.destroy(&name, &self.installation).await;
            }
            let _ = self.record_stopped(&vm).await;
        }
        self.forget_stop(vm_id, &forced_at);
    }

    /// Records that `vm`'s domain is gone (powered off, forced off or shut
    /// down), under the VM's lock: `stopped`, then its lab network and the
    /// size of a node-local layer follow.
    pub(super) async fn record_stopped(&self, vm: &Vm) -> Result<(), VmError> {
        self.set_state(vm.id, VmState::Stopped, None, None).await?;
        self.release_lab_network(vm).await;
        self.refresh_layer_bytes(vm.id).await;
        Ok(())
    }

    /// After a stop: removes the VM's lab network if no VM of its student in
    /// its course runs on the node any more. Failures are logged; the
    /// reconcile loop retries.
    pub(super) async fn release_lab_network(&self, vm: &Vm) {
        let Some(course) = vm.course_id else {
            return;
        };
        if let Err(e) = self.labnets.release((course, vm.owner_id)).await {
            tracing::warn!(vm = %vm.id, error = %e, "lab network cleanup failed; reconcile retries");
        }
    }

    /// Forced power-off.
    pub async fn poweroff(&self, vm: &Vm) -> Result<Vm, VmError> {
        let (_guard, current) = self.locked(vm.id).await?;
        if current.state == VmState::Stopped {
            return Ok(current);
        }
        let (vm, conn) = self.require_running(&current).await?;
        conn.destroy(&self.domain_name(vm.id), &self.installation)
            .await?;
        self.record_stopped(&vm).await?;
        load(&self.pool, vm.id).await
    }

    pub async fn reboot(&self, vm: &Vm) -> Result<Vm, VmError> {
        let lock = self.lock_for(vm.id);
        let _guard = lock.lock().await;
        let (vm, conn) = self.require_running(vm).await?;
        conn.reboot(&self.domain_name(vm.id)).await?;
        Ok(vm)
    }

    /// Copies the running VM's disk, as it is now, to the new file `target`
    /// while it keeps running (libvirt's backup API, see
    /// [`libvirt::backup`]); for the nightly backup of its layer, which holds
    /// the VM's lock meanwhile. `Ok(None)`: the VM is not running (any
    /// more). The caller removes `target`.
    ///
    /// A shared layer's copy is written by the node straight to `target`
    /// (in the data dir every node sees at the same path); a node-local
    /// one's on the node, then downloaded to `target` (see
    /// [`super::layers::Layers::copy_running_disk`]).
    pub async fn copy_running_disk(
        &self,
        vm: &Vm,
        target: &std::path::Path,
        deadline: Duration,
        plan: &libvirt::backup::CopyPlan,
    ) -> Result<Option<libvirt::backup::DiskCopy>, VmError> {
        let Some((vm, conn)) = self.running_conn(vm).await? else {
            return Ok(None);
        };
        let domain = self.domain_name(vm.id);
        Ok(match vm.layer_storage {
            LayerStorage::Shared => {
                conn.copy_running_disk(&domain, target, deadline, plan)
                    .await?
            }
            LayerStorage::NodeLocal => {
                self.layers
                    .copy_running_disk(&conn, &domain, target, deadline, plan)
                    .await?
            }
        })
    }

    /// Whether the running VM's domain has backup checkpoint `name` (made
    /// during this run of it; see [`libvirt::backup`]). Not running: `false`.
    pub async fn has_checkpoint(&self, vm: &Vm, name: &str) -> Result<bool, VmError> {
        let Some((vm, conn)) = self.running_conn(vm).await? else {
            return Ok(false);
        };
        Ok(conn.has_checkpoint(&self.domain_name(vm.id), name).await?)
    }

    /// Removes backup checkpoint `checkpoint` and its bitmap from the running
    /// VM, whether this run of it made it or an earlier one left its bitmap
    /// in the layer (see [`libvirt::Node::drop_checkpoint`]). `Ok(false)`:
    /// not there, or the VM is not running (only a running QEMU can drop one).
    pub async fn drop_checkpoint(
        &self,
        vm: &Vm,
        checkpoint: &libvirt::backup::Checkpoint,
    ) -> Result<bool, VmError> {
        let Some((vm, conn)) = self.running_conn(vm).await? else {
            return Ok(false);
        };
        Ok(conn
            .drop_checkpoint(&self.domain_name(vm.id), checkpoint)
            .await?)
    }

    /// Deletes what disk copies of node-local layers a killed server left
    /// on the nodes (see [`super::layers::Layers::sweep_disk_copies`]).
    pub async fn sweep_disk_copies(&self) {
        self.layers.sweep_disk_copies().await;
    }

    /// Discards the personal layer: a fresh overlay on the template replaces it.
    pub async fn reset(&self, vm: &Vm) -> Result<Vm, VmError> {
        let (_guard, vm) = self.locked(vm.id).await?;
        if vm.state.is_active() {
            return Err(VmError::Running("stop the VM before resetting it".into()));
        }
        match vm.layer_storage {
            LayerStorage::Shared => {
                let t = templates::get(&self.pool, vm.template_id).await?;
                let path = vm.overlay_path.clone();
                let backing = self.storage.template_path(t.id);
                let size = t.virtual_size_bytes;
                tokio::task::spawn_blocking(move || images::replace_overlay(&path, &backing, size))
                    .await
                    .map_err(|e| VmError::Io(std::io::Error::other(e.to_string())))??;
            }
            // The next start creates a fresh layer wherever placement says.
            LayerStorage::NodeLocal => self.layers.discard(vm.id, &vm.layer()).await?,
        }
        // The old layer's snapshots went with it.
        super::snapshots::forget_all(&self.pool, &vm).await?;
        self.write_state(vm.id, VmState::Stopped, None, LastError::Clear, false, None)
            .await?;
        load(&self.pool, vm.id).await
    }
}

pub(super) fn node_down_conflict() -> VmError {
    VmError::NodeDown("the VM's node is down; the VM can be started again once the node answers or an admin confirms it is powered off".into(),
    )
}
