//! Where a running VM's console is, and its viewer passwords (the `.vv`
//! password and the renewal of an expired one).

use std::time::Duration;

use uuid::Uuid;

use super::VmManager;
use super::model::{Vm, VmError, VmState, labels, load};
use crate::console::{self, ConsoleTarget};
use crate::libvirt::{self, GraphicsKind};

/// What a native viewer needs to reach a running VM's console (`.vv`).
/// `Debug` leaves the password out.
pub struct ViewerPassword {
    pub vm: Vm,
    pub kind: GraphicsKind,
    pub host: String,
    pub port: u16,
    pub password: String,
    pub valid_to: time::OffsetDateTime,
    /// Window title: owner / course / VM.
    pub title: String,
}

impl std::fmt::Debug for ViewerPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerPassword")
            .field("vm", &self.vm.id)
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("valid_to", &self.valid_to)
            .finish_non_exhaustive()
    }
}

impl VmManager {
    /// The running VM, its node and that node's connection; `vm_not_running`
    /// otherwise.
    pub(super) async fn running_on_node(
        &self,
        id: Uuid,
    ) -> Result<(Vm, crate::nodes::Node, libvirt::Node), VmError> {
        let vm = self.sync_with_node(load(&self.pool, id).await?).await?;
        let (VmState::Running, Some(node_id)) = (vm.state, vm.node_id) else {
            return Err(VmError::NotRunning("the VM is not running".into()));
        };
        let node = self.nodes.get(node_id).await?;
        let conn = self.nodes.conn(node_id).await?;
        Ok((vm, node, conn))
    }

    pub(super) fn no_console() -> VmError {
        VmError::NotRunning("the VM has no console yet".into())
    }

    /// Where a running VM's console listens: (vm, host, port, protocol).
    pub async fn console_endpoint(
        &self,
        id: Uuid,
    ) -> Result<(Vm, String, u16, GraphicsKind), VmError> {
        let (vm, node, conn) = self.running_on_node(id).await?;
        let graphics = conn
            .domain(&self.domain_name(vm.id))
            .await?
            .and_then(|d| d.graphics)
            .ok_or_else(Self::no_console)?;
        Ok((vm, node.console_address, graphics.port, graphics.kind))
    }

    /// What the console proxy connects to: the running VM's console and the
    /// password it requires *now*, read from libvirt at every connect. If
    /// that password has expired (a viewer password's `passwdValidTo` passed),
    /// a fresh per-boot password without expiry replaces it first, so the
    /// proxy always gets in (rule in `console`'s module docs).
    pub async fn console_target(&self, id: Uuid) -> Result<(Vm, ConsoleTarget), VmError> {
        let (vm, node, conn) = self.running_on_node(id).await?;
        let name = self.domain_name(vm.id);
        let (graphics, mut auth) = conn.console(&name).await?.ok_or_else(Self::no_console)?;
        if console::password_expired(&auth) {
            let _guard = self.console_passwords.lock().await;
            // Another connect may have renewed it while we waited.
            let (_, current) = conn.console(&name).await?.ok_or_else(Self::no_console)?;
            auth = current;
            if console::password_expired(&auth) {
                let fresh = console::new_console_password(graphics.kind);
                conn.set_console_password(&name, &fresh, None)
                    .await?
                    .ok_or_else(Self::no_console)?;
                auth.password = Some(fresh);
                auth.valid_to = None;
            }
        }
        let target = ConsoleTarget {
            host: node.console_address,
            port: graphics.port,
            protocol: graphics.kind,
            password: auth.password,
        };
        Ok((vm, target))
    }

    /// A one-time console password for a native viewer (`.vv` file): a fresh
    /// random password set on the live console with `passwdValidTo` = now +
    /// `ttl`, replacing the per-boot one (sessions already open stay open).
    /// Returns where the console listens and the password. Never log the result.
    pub async fn viewer_password(
        &self,
        id: Uuid,
        ttl: Duration,
    ) -> Result<ViewerPassword, VmError> {
        let (vm, node, conn) = self.running_on_node(id).await?;
        let name = self.domain_name(vm.id);
        let _guard = self.console_passwords.lock().await;
        let kind = conn
            .console(&name)
            .await?
            .ok_or_else(Self::no_console)?
            .0
            .kind;
        let password = console::new_console_password(kind);
        let ttl = time::Duration::seconds(i64::try_from(ttl.as_secs()).unwrap_or(3600));
        // Whole seconds: that is what libvirt stores.
        let valid_to = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
            + ttl;
        let live = conn
            .set_console_password(&name, &password, Some(valid_to))
            .await?
            .ok_or_else(Self::no_console)?;
        let (owner, context) = labels(&self.pool, &vm).await?;
        Ok(ViewerPassword {
            title: format!("{owner} / {context} / {}", vm.name),
            vm,
            kind: live.kind,
            host: node.console_address,
            port: live.port,
            password,
            valid_to,
        })
    }
}
