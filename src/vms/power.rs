//! Power actions as a user asks for them (`POST /api/vms/{id}/start` …): the
//! access rule first, then the lifecycle operation, then its audit entry.

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
            Power::Reset => self.get_for_layer_write(user, id).await?,
            _ => self.get_for(user, id).await?,
        };
        // The domain's title names the owner and course (virsh list,
        // virt-manager), and so does the audit entry.
        let (owner, course) = labels(&self.pool, &vm).await?;
        let result = match action {
            Power::Start => self.start(&vm, &owner, &course).await,
            Power::Shutdown => self.shutdown(&vm).await,
            Power::Poweroff => self.poweroff(&vm).await,
            Power::Reboot => self.reboot(&vm).await,
            Power::Reset => self.reset(&vm).await,
        };
        // Only actions the user was allowed to try are recorded (a refused
        // one is a 403/404 with nothing done); failures with their reason.
        let target = super::model::vm_target(&vm, &owner, &course);
        let detail =
            serde_json::json!({ "owner_id": vm.owner_id, "owner": &owner, "course": &course });
        let actor = crate::audit::Actor::user(user.id, &user.username);
        let entry = crate::audit::Entry::new(actor, action.audit_action(), target);
        crate::audit::record(&self.pool, entry.result(&result, detail)).await;
        result
    }
}

impl Power {
    fn audit_action(self) -> crate::audit::Action {
        use crate::audit::Action;
        match self {
            Power::Start => Action::VmStart,
            Power::Shutdown => Action::VmShutdown,
            Power::Poweroff => Action::VmPoweroff,
            Power::Reboot => Action::VmReboot,
            Power::Reset => Action::VmReset,
        }
    }
}
