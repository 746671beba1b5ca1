//! Carry-over: a student moving on to a follow-up course takes the disk of
//! their VM in the old course along into their VM of the new one — allowed
//! when the new VM's template descends from (or is) the old VM's template,
//! refused with the reason otherwise.
//!
//! The copy is a safe rebase: a compact copy of the old layer (`qemu-img
//! convert -B <old template>`, internal snapshots left behind), then
//! `qemu-img rebase -b <new template>` (safe mode) writes the clusters where
//! the two templates differ, so the layer on the new template shows the old
//! disk *as the guest saw it* (old template + the student's work).
//! The student finds their disk exactly as they left it; nothing of the old
//! chain is needed afterwards. Descent keeps that difference small (the new
//! template is the old one plus what the new course installed).
//!
//! Invariants: both VMs are the same student's and stopped (held under both
//! VMs' locks, taken in id order); the new VM's layer must still be unused
//! (pristine) — carry-over never overwrites work; the old layer is only
//! read, so an archived old course can be carried from; the new layer is
//! staged beside and renamed over, so a failure leaves it as it was.

use uuid::Uuid;

use super::TermError;
use crate::db::Pool;
use crate::templates;
use crate::users::User;
use crate::vms::{Vm, VmError, VmManager, VmState, snapshots};

/// Longest template chain walked (the tree is far shallower).
const MAX_DEPTH: usize = 256;

/// Whether `template` is `ancestor` or descends from it.
pub async fn descends(pool: &Pool, template: Uuid, ancestor: Uuid) -> Result<bool, TermError> {
    let mut current = Some(template);
    for _ in 0..MAX_DEPTH {
        let Some(id) = current else {
            return Ok(false);
        };
        if id == ancestor {
            return Ok(true);
        }
        current = match templates::get(pool, id).await {
            Ok(t) => t.parent_id,
            Err(templates::TemplateError::NotFound) => None,
            Err(templates::TemplateError::Db(e)) => return Err(e.into()),
            Err(e) => return Err(TermError::Invalid(e.to_string())),
        };
    }
    Ok(false)
}

fn stopped(vm: &Vm) -> Result<(), TermError> {
    if matches!(vm.state, VmState::Stopped | VmState::Error) {
        Ok(())
    } else {
        Err(TermError::Vm(VmError::Running(format!(
            "VM {} must be stopped to carry a disk over",
            vm.name
        ))))
    }
}

/// Carries the disk of `from` into `target` (see the module doc).
pub async fn carry_over(
    pool: &Pool,
    vms: &VmManager,
    user: &User,
    target_id: Uuid,
    from: Uuid,
) -> Result<Vm, TermError> {
    let target = vms.get_for_layer_write(user, target_id).await?;
    let source = vms.get_for_layer(user, from).await.map_err(|e| match e {
        VmError::NotFound => TermError::Unacceptable("from_vm_id: no such VM of yours".into()),
        other => other.into(),
    })?;
    if source.id == target.id
        || source.owner_id != target.owner_id
        || source.course_id.is_none()
        || target.course_id.is_none()
    {
        return Err(TermError::Unacceptable(
            "from_vm_id must be another course VM of the same student".into(),
        ));
    }
    if !descends(pool, target.template_id, source.template_id).await? {
        return Err(TermError::NotDescendant(format!(
            "the template of VM {} ({}) does not descend from the template of VM {} ({}): \
             the disk cannot be carried over",
            target.name,
            target.template_name.as_deref().unwrap_or("?"),
            source.name,
            source.template_name.as_deref().unwrap_or("?"),
        )));
    }
    let (first, second) = if source.id < target.id {
        (source.id, target.id)
    } else {
        (target.id, source.id)
    };
    let (l1, l2) = (vms.lock_for(first), vms.lock_for(second));
    let _g1 = l1.lock().await;
    let _g2 = l2.lock().await;
    let source = snapshots::reload(vms, source.id).await?;
    let target = snapshots::reload(vms, target.id).await?;
    stopped(&source)?;
    stopped(&target)?;
    snapshots::settle(&source.overlay_path).await?;
    let src = vms.checkout_layer(&source).await?;
    let mut dst = vms.checkout_layer(&target).await?;
    let dst_path = dst.path().to_path_buf();
    let check = dst_path.clone();
    let pristine = tokio::task::spawn_blocking(move || crate::images::overlay::is_pristine(&check))
        .await
        .map_err(|e| TermError::Vm(VmError::Io(std::io::Error::other(e.to_string()))))?
        .map_err(|e| TermError::Vm(VmError::Io(e)))?;
    if !pristine {
        return Err(TermError::LayerInUse(format!(
            "VM {} already holds work (or snapshots): reset it first to carry the disk of VM {} over",
            target.name, source.name
        )));
    }
    // A compact copy on the old template (its internal snapshots left
    // behind), then moved onto the new template keeping what the guest sees.
    let old_backing = vms.storage().template_path(source.template_id);
    let backing = vms.storage().template_path(target.template_id);
    let staged = crate::storage::temp_beside(&dst_path);
    let mut guard = crate::storage::FileGuard::new(staged.clone());
    crate::images::qemu_img::convert_to_overlay(src.path(), &old_backing, &staged)
        .await
        .map_err(VmError::from)?;
    crate::images::qemu_img::rebase_safe(&staged, &backing)
        .await
        .map_err(VmError::from)?;
    tokio::fs::rename(&staged, &dst_path)
        .await
        .map_err(|e| TermError::Vm(VmError::Io(e)))?;
    guard.disarm();
    dst.commit().await.map_err(VmError::from)?;
    tracing::info!(from = %source.id, to = %target.id, "carried a disk over to a follow-up course");
    Ok(snapshots::reload(vms, target.id).await?)
}
