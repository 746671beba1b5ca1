//! Power actions as a user asks for them (`POST /api/vms/{id}/start` …): the
//! access rule first, then the lifecycle operation.

use std::sync::Arc;

use uuid::Uuid;

use super::VmManager;
use super::model::{Vm, VmError, labels};
use crate::users::User;

/// What a user can do to a VM's power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Start,
    /// ACPI shutdown, forced off after the timeout.
    Shutdown,
    Poweroff,
    Reboot,
    /// Discards the personal layer: needs the layer access rule
    /// ([`VmManager::get_for_layer`]), not only the VM's.
    Reset,
}

impl VmManager {
    /// Runs a power action on a VM the user may act on.
    pub async fn power(
        self: &Arc<Self>,
        user: &User,
        id: Uuid,
        action: Power,
    ) -> Result<Vm, VmError> {
        let vm = match action {
            Power::Reset => self.get_for_layer(user, id).await?,
            _ => self.get_for(user, id).await?,
        };
        match action {
            Power::Start => {
                // The domain's title names the owner and course (virsh list, virt-manager).
                let (owner, course) = labels(&self.pool, &vm).await?;
                self.start(&vm, &owner, &course).await
            }
            Power::Shutdown => self.shutdown(&vm).await,
            Power::Poweroff => self.poweroff(&vm).await,
            Power::Reboot => self.reboot(&vm).await,
            Power::Reset => self.reset(&vm).await,
        }
    }
}
