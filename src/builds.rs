//! Derive online (pVCE paper §2.1): a teacher boots the best base template,
//! installs what the course still needs through the browser console, and
//! seals the result as a new child template.
//!
//! Invariants:
//! - A draft template's layer is a qcow2 overlay on its parent's layer; its
//!   one build VM (owned by the teacher, `vms.build_template_id`) boots
//!   straight from that layer, so what the teacher installs lands in it.
//! - Nobody derives from or enrols into a draft (both require `ready`).
//! - Seal shuts the build VM down cleanly (ACPI, forced after the timeout),
//!   checks the layer, makes it read-only and only then marks it `ready`;
//!   abandoning a draft removes the VM, the layer and the row.
//! - The parent layer is never written: only the draft overlay is opened
//!   read-write.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::auth::Role;
use crate::db::{self, Pool};
use crate::images;
use crate::storage::{self, Storage};
use crate::templates::{self, Template, TemplateError, TemplateState};
use crate::users::User;
use crate::vms::{self, Vm, VmError, VmManager, VmState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeriveRequest {
    pub name: String,
    /// Software the teacher will add (the child's set is the parent's plus these).
    pub software: Vec<String>,
    pub vcpus: Option<u32>,
    pub memory_mib: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("only the template's creator or an admin may do this")]
    NotOwner,
    #[error("the build VM did not stop in time; try again or force it off")]
    StillRunning,
    #[error("only a draft template can be {0}")]
    NotDraft(&'static str),
}

/// Templates as their makers work on them: deriving and sealing drafts,
/// and removing a template (a draft is abandoned with its build VM; a ready
/// one is deleted by its creator or an admin). The service the handlers call.
#[derive(Debug)]
pub struct Builds {
    pool: Pool,
    storage: Storage,
    vms: Arc<VmManager>,
    shutdown_timeout: Duration,
}

impl Builds {
    pub fn new(
        pool: Pool,
        storage: Storage,
        vms: Arc<VmManager>,
        shutdown_timeout: Duration,
    ) -> Self {
        Self {
            pool,
            storage,
            vms,
            shutdown_timeout,
        }
    }

    pub async fn derive(
        &self,
        teacher: &User,
        parent_id: Uuid,
        req: DeriveRequest,
    ) -> Result<(Template, Vm), BuildError> {
        derive(
            &self.pool,
            &self.storage,
            &self.vms,
            parent_id,
            teacher,
            req,
        )
        .await
    }

    pub async fn seal(&self, user: &User, template_id: Uuid) -> Result<Template, BuildError> {
        let t = seal(
            &self.pool,
            &self.storage,
            &self.vms,
            template_id,
            user,
            self.shutdown_timeout,
        )
        .await?;
        record(&self.pool, user, &t, crate::audit::Action::TemplateSeal).await;
        Ok(t)
    }

    /// Removes a template: a draft (or failed build) is abandoned; a ready
    /// template is deleted if `user` made it or is an admin.
    pub async fn remove(&self, user: &User, template_id: Uuid) -> Result<(), BuildError> {
        let t = templates::get(&self.pool, template_id).await?;
        if t.state != TemplateState::Ready {
            abandon(&self.pool, &self.storage, &self.vms, template_id, user).await?;
        } else {
            check_owner(&t, user)?;
            templates::delete(&self.pool, &self.storage, template_id).await?;
        }
        record(&self.pool, user, &t, crate::audit::Action::TemplateDelete).await;
        Ok(())
    }
}

/// Records a seal or delete of `t` by `user` (the state it was in).
async fn record(pool: &Pool, user: &User, t: &Template, action: crate::audit::Action) {
    use crate::audit::{Actor, Entry, Target, TargetKind};
    let entry = Entry::new(
        Actor::user(user.id, &user.username),
        action,
        Target::new(TargetKind::Template, t.id, &t.name),
    )
    .detail(serde_json::json!({ "state": t.state }));
    crate::audit::record(pool, entry).await;
}

/// Creates a draft child of `parent_id` and boots its build VM.
pub async fn derive(
    pool: &Pool,
    storage: &Storage,
    vms: &Arc<VmManager>,
    parent_id: Uuid,
    teacher: &User,
    req: DeriveRequest,
) -> Result<(Template, Vm), BuildError> {
    templates::validate_name(&req.name)?;
    let vcpus = req.vcpus.unwrap_or(1);
    let memory = req.memory_mib.unwrap_or(512);
    if !(1..=32).contains(&vcpus) || !(64..=262_144).contains(&memory) {
        return Err(
            TemplateError::Invalid("vcpus must be 1-32 and memory_mib 64-262144".into()).into(),
        );
    }
    let parent = templates::get(pool, parent_id).await?;
    if parent.state != TemplateState::Ready {
        return Err(TemplateError::NotReady.into());
    }
    if parent.parent_id.is_none() {
        return Err(TemplateError::Unacceptable(
            "derive from a bootable template, not the blank root".into(),
        )
        .into());
    }
    let added = templates::normalise_software(&req.software)?;
    let mut software = parent.software.clone();
    software.extend(added);
    let software = templates::normalise_software(&software)?;
    if !templates::is_strict_superset(&software, &parent.software) {
        return Err(TemplateError::Unacceptable(
            "name at least one piece of software the parent lacks".into(),
        )
        .into());
    }
    if templates::find_by_name(pool, &req.name).await?.is_some() {
        return Err(TemplateError::NameTaken(req.name).into());
    }

    let id = Uuid::new_v4();
    let layer = storage.template_path(id);
    let parent_layer = storage.template_path(parent.id);
    {
        let (layer, parent_layer, size) = (
            layer.clone(),
            parent_layer.clone(),
            parent.virtual_size_bytes,
        );
        tokio::task::spawn_blocking(move || images::create_overlay(&layer, &parent_layer, size))
            .await
            .map_err(|e| TemplateError::Io(std::io::Error::other(e.to_string())))?
            .map_err(TemplateError::from)?;
    }
    crate::crashpoint::hit("derive.layer_created");
    let template = Template {
        id,
        name: req.name.clone(),
        parent_id: Some(parent.id),
        os: parent.os.clone(),
        software,
        state: TemplateState::Draft,
        size_bytes: 0,
        virtual_size_bytes: parent.virtual_size_bytes,
        depth: parent.depth + 1,
        created_by: Some(teacher.id),
        created_at: db::now(),
    };
    if let Err(e) = templates::insert(pool, &template).await {
        let _ = storage::remove_file_if_exists(&layer);
        return Err(e.into());
    }
    crate::crashpoint::hit("derive.draft_inserted");
    let inserted = vms
        .insert_build_vm(&vms::NewBuildVm {
            draft_id: id,
            parent_id: parent.id,
            owner_id: teacher.id,
            vcpus,
            memory_mib: memory,
            layer: layer.clone(),
        })
        .await;
    let vm_id = match inserted {
        Ok(vm_id) => vm_id,
        Err(e) => {
            let _ = remove_draft(pool, storage, id).await;
            return Err(e.into());
        }
    };
    crate::crashpoint::hit("derive.build_vm_inserted");
    let vm = vms.get_for(teacher, vm_id).await?;
    match vms.start(&vm, &teacher.username, "template build").await {
        Ok(vm) => Ok((templates::get(pool, id).await?, vm)),
        Err(e) => {
            // Nothing half-made stays behind: no VM row, no draft, no layer.
            let _ = vms.delete_build_vm(vm_id).await;
            let _ = remove_draft(pool, storage, id).await;
            Err(e.into())
        }
    }
}

fn check_owner(t: &Template, user: &User) -> Result<(), BuildError> {
    if user.role == Role::Admin || t.created_by == Some(user.id) {
        Ok(())
    } else {
        Err(BuildError::NotOwner)
    }
}

/// Seals a draft: stops its build VM cleanly, checks and freezes the layer.
pub async fn seal(
    pool: &Pool,
    storage: &Storage,
    vms: &Arc<VmManager>,
    template_id: Uuid,
    user: &User,
    shutdown_timeout: Duration,
) -> Result<Template, BuildError> {
    let t = templates::get(pool, template_id).await?;
    check_owner(&t, user)?;
    if t.state != TemplateState::Draft {
        return Err(BuildError::NotDraft("sealed"));
    }
    if let Some(vm_id) = vms.build_vm_of(template_id).await? {
        let vm = vms.get_for(user, vm_id).await?;
        // Subscribed before the shutdown, so its Stopped event cannot be missed.
        let mut events = vms.subscribe();
        let vm = vms.shutdown(&vm).await?;
        if vm.state != VmState::Stopped {
            // The manager forces the VM off after its shutdown timeout and
            // announces the stop; wait for that (with a margin), re-reading
            // the VM after every event.
            let stopped = async {
                loop {
                    match events.recv().await {
                        Ok(ev) if ev.vm_id != vm_id => continue,
                        Ok(_) | Err(RecvError::Lagged(_)) => {
                            if vms.refresh(vm_id).await?.state == VmState::Stopped {
                                return Ok(());
                            }
                        }
                        Err(RecvError::Closed) => return Err(BuildError::StillRunning),
                    }
                }
            };
            tokio::time::timeout(shutdown_timeout + Duration::from_secs(15), stopped)
                .await
                .map_err(|_| BuildError::StillRunning)??;
        }
        if !vms.delete_stopped_build_vm(vm_id).await? {
            return Err(BuildError::StillRunning);
        }
        crate::crashpoint::hit("seal.build_vm_deleted");
    }
    let layer = storage.template_path(template_id);
    let report = images::qemu_img::check(&layer)
        .await
        .map_err(TemplateError::from)?;
    if !report.is_clean() {
        let _ = sqlx::query("UPDATE templates SET state = 'failed' WHERE id = $1")
            .bind(template_id.to_string())
            .execute(pool)
            .await;
        return Err(
            TemplateError::Invalid("the draft layer failed its consistency check".into()).into(),
        );
    }
    templates::seal_file(&layer).map_err(TemplateError::from)?;
    crate::crashpoint::hit("seal.layer_sealed");
    let size = std::fs::metadata(&layer)
        .map_err(TemplateError::from)?
        .len();
    sqlx::query("UPDATE templates SET state = 'ready', size_bytes = $1 WHERE id = $2")
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(template_id.to_string())
        .execute(pool)
        .await
        .map_err(TemplateError::Db)?;
    crate::crashpoint::hit("seal.state_ready");
    // Service requests that led to this template are resolved now; the
    // desk's pass catches up if this fails (the seal itself stands).
    if let Err(e) =
        crate::desk::requests::resolve_sealed(pool, time::OffsetDateTime::now_utc()).await
    {
        tracing::warn!(template = %template_id, error = %e, "requests for the sealed template not resolved yet");
    }
    Ok(templates::get(pool, template_id).await?)
}

/// Abandons a draft: forces its build VM off and removes VM, layer and row.
pub async fn abandon(
    pool: &Pool,
    storage: &Storage,
    vms: &Arc<VmManager>,
    template_id: Uuid,
    user: &User,
) -> Result<(), BuildError> {
    let t = templates::get(pool, template_id).await?;
    check_owner(&t, user)?;
    if t.state != TemplateState::Draft && t.state != TemplateState::Failed {
        return Err(BuildError::NotDraft("abandoned"));
    }
    if let Some(vm_id) = vms.build_vm_of(template_id).await? {
        let vm = vms::load(pool, vm_id).await?;
        vms.poweroff(&vm).await?;
        vms.delete_build_vm(vm_id).await?;
    }
    remove_draft(pool, storage, template_id).await?;
    Ok(())
}

async fn remove_draft(
    pool: &Pool,
    storage: &Storage,
    template_id: Uuid,
) -> Result<(), TemplateError> {
    sqlx::query("DELETE FROM templates WHERE id = $1")
        .bind(template_id.to_string())
        .execute(pool)
        .await?;
    storage::remove_file_if_exists(&storage.template_path(template_id))?;
    Ok(())
}
