//! Portable personal environment and layer usage (same access as the VM:
//! owner, the course's teacher, admins; others get 404):
//! - `GET /api/vms/{id}/export[?standalone=true]` — download (tar of
//!   `manifest.json` + `layer.qcow2`, or one flattened qcow2), streamed;
//! - `GET /api/vms/{id}/export/manifest` — what the download page shows;
//! - `POST /api/vms/{id}/import` — upload an export archive (streamed);
//! - `GET /api/vms/{id}/disk` — layer size and guest file-system free space.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiQuery, CurrentUser, IdPath};
use crate::portable::{DiskUsage, ExportInfo, ImportOutcome};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/vms/{id}/export", get(export))
        .route("/api/vms/{id}/export/manifest", get(manifest))
        .route("/api/vms/{id}/import", post(import))
        .route("/api/vms/{id}/disk", get(disk))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    #[serde(default)]
    standalone: bool,
}

async fn export(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let ex = state.portable.export(&me.user, id, q.standalone).await?;
    let (content_type, file_name, run) = (
        if q.standalone {
            "application/octet-stream"
        } else {
            "application/x-tar"
        },
        ex.file_name.clone(),
        ex.run_command.clone(),
    );
    let (len, stream) = ex.into_stream()?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    // The file name is built from ASCII only ([A-Za-z0-9_-] and the id).
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(v) = run.and_then(|r| HeaderValue::from_str(&r).ok()) {
        headers.insert("x-pvce-run-command", v);
    }
    Ok((headers, Body::from_stream(stream)).into_response())
}

async fn manifest(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<ExportInfo>, ApiError> {
    Ok(Json(state.portable.manifest(&me.user, id).await?))
}

/// Reads (and drops) a bounded part of a refused upload so the client sees the error.
async fn drain(body: Body) {
    let mut s = body.into_data_stream();
    let mut n: u64 = 0;
    while let Some(Ok(chunk)) = s.next().await {
        n += chunk.len() as u64;
        if n > 64 << 20 {
            break;
        }
    }
}

async fn import(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportOutcome>, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let vm_id = match state.portable.admit_import(&me.user, id, declared).await {
        Ok(vm_id) => vm_id,
        Err(e) => {
            // Read (a bounded part of) the refused upload so the client sees the error.
            drain(body).await;
            return Err(e.into());
        }
    };
    let outcome = state
        .portable
        .import(&me.user, vm_id, body.into_data_stream())
        .await?;
    Ok(Json(outcome))
}

/// The disk answer plus the snapshot quota, so the page that shows a VM's
/// storage can say "2 of 5 snapshots" without a setting of its own.
#[derive(Debug, serde::Serialize)]
struct DiskView {
    #[serde(flatten)]
    usage: DiskUsage,
    snapshot_quota: usize,
}

async fn disk(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<DiskView>, ApiError> {
    Ok(Json(DiskView {
        usage: state.portable.disk_usage(&me.user, id).await?,
        snapshot_quota: state.snapshots.quota(),
    }))
}
