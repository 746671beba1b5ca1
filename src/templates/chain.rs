//! The template chain: the qcow2 layers under a personal layer on a
//! template — the template's own layer, then its parent's, while a layer has
//! a backing file — each with its SHA-256, and the chain's checksum. A VM
//! start (template stores on nodes), an export and an import all read it.

use std::io;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Template, TemplateError, TemplateState};
use crate::db::Pool;
use crate::images::inspect::{InspectLimits, inspect_layer};
use crate::storage::{self, Storage};

/// Deepest template chain followed.
const MAX_CHAIN: usize = 64;

/// One qcow2 layer of a template chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLayer {
    pub id: Uuid,
    pub name: String,
    /// SHA-256 of the layer file, lowercase hex.
    pub sha256: String,
    pub size_bytes: u64,
}

/// SHA-256 of a template's layer, cached in `templates.checksum` (lowercase
/// hex of the layer file) once the template is ready, i.e. immutable.
async fn template_sha256(
    pool: &Pool,
    storage: &Storage,
    t: &Template,
) -> Result<String, TemplateError> {
    let cached: Option<String> = sqlx::query_scalar("SELECT checksum FROM templates WHERE id = $1")
        .bind(t.id.to_string())
        .fetch_optional(pool)
        .await?
        .flatten();
    if let Some(c) = cached.filter(|c| storage::is_sha256_hex(c)) {
        return Ok(c);
    }
    let sum = storage::sha256_file(&storage.template_path(t.id)).await?;
    if t.state == TemplateState::Ready {
        sqlx::query("UPDATE templates SET checksum = $1 WHERE id = $2 AND checksum IS NULL")
            .bind(&sum)
            .bind(t.id.to_string())
            .execute(pool)
            .await?;
    }
    Ok(sum)
}

/// The chain under a personal layer on `template_id`: the template's layer,
/// then its parent's while a layer has a backing file (read from our own
/// file's header), and the chain checksum.
pub async fn template_chain(
    pool: &Pool,
    storage: &Storage,
    template_id: Uuid,
) -> Result<(Template, Vec<ChainLayer>, String), TemplateError> {
    let top = super::get(pool, template_id).await?;
    let mut chain = Vec::new();
    let mut current = top.clone();
    loop {
        let path = storage.template_path(current.id);
        let sha256 = template_sha256(pool, storage, &current).await?;
        let size_bytes = tokio::fs::metadata(&path).await?.len();
        chain.push(ChainLayer {
            id: current.id,
            name: current.name.clone(),
            sha256,
            size_bytes,
        });
        let header = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || inspect_layer(&path, &InspectLimits::default()))
                .await
                .map_err(|e| io::Error::other(e.to_string()))??
        };
        if header.backing_file.is_none() {
            break;
        }
        let parent = current.parent_id.ok_or_else(|| {
            TemplateError::Io(io::Error::other(format!(
                "template {} has a backing file but no parent",
                current.id
            )))
        })?;
        if chain.len() >= MAX_CHAIN {
            return Err(TemplateError::Io(io::Error::other(
                "template chain too deep",
            )));
        }
        current = super::get(pool, parent).await?;
    }
    let mut h = Sha256::new();
    for l in &chain {
        h.update(l.sha256.as_bytes());
        h.update(b"\n");
    }
    Ok((top, chain, storage::sha256_hex(h.finalize())))
}
