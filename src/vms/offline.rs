//! Writes to the `vms` table by the tools that run without a server — `pvce
//! fsck --repair` and `pvce restore` — kept here so that this module stays
//! the table's one writer. Nothing here takes a VM's lock or talks to a
//! node: with no server running, nobody else holds either.

use std::path::Path;

use uuid::Uuid;

use crate::db::Pool;

/// Marks a VM whose layer is gone `error` with `why`, so that nobody starts
/// it (fsck's repair; the VM is not running).
pub async fn mark_layer_missing(pool: &Pool, id: &str, why: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE vms SET state = 'error', last_error = $1 WHERE id = $2")
        .bind(why)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Points a VM at its layer's path in a restored data dir. The layer is
/// that file from now on: a node-local layer's volume was on the old
/// installation's nodes, so its backup comes back as a shared layer.
pub async fn set_layer_path(pool: &Pool, id: Uuid, layer: &Path) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE vms SET overlay_path = $1, layer_storage = $2, layer_node_id = NULL, layer_volume = NULL
         WHERE id = $3",
    )
        .bind(layer.to_string_lossy().into_owned())
        .bind(crate::vms::layers::LayerStorage::Shared.as_str())
        .bind(id.to_string())
        .execute(pool)
        .await?;
    Ok(())
}

/// After a restore onto a new machine: what the old installation was
/// running is not running here.
pub async fn all_stopped(pool: &Pool) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE vms SET state = 'stopped', node_id = NULL, node_down = 0")
        .execute(pool)
        .await?;
    Ok(())
}
