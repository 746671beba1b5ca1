//! `/api/vms/{id}/snapshots`: snapshots of a personal VM (owner, the course's
//! teacher, admins — the same access as the VM itself; others get 404).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiJson, CurrentUser, IdPath, IdPath2};
use super::respond::Created;
use crate::state::AppState;
use crate::vms::Vm;
use crate::vms::snapshots::Snapshot;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/vms/{id}/snapshots", get(list).post(create))
        .route("/api/vms/{id}/snapshots/{sid}", get(show).delete(remove))
        .route("/api/vms/{id}/snapshots/{sid}/revert", post(revert))
}

async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Vec<Snapshot>>, ApiError> {
    Ok(Json(state.snapshots.list(&me.user, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
}

async fn create(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Created<Snapshot>, ApiError> {
    let s = state.snapshots.create(&me.user, id, &body.name).await?;
    Ok(Created(s))
}

async fn show(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath2(id, sid): IdPath2,
) -> Result<Json<Snapshot>, ApiError> {
    Ok(Json(state.snapshots.get(&me.user, id, sid).await?))
}

async fn revert(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath2(id, sid): IdPath2,
) -> Result<Json<Vm>, ApiError> {
    Ok(Json(state.snapshots.revert(&me.user, id, sid).await?))
}

async fn remove(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath2(id, sid): IdPath2,
) -> Result<StatusCode, ApiError> {
    state.snapshots.delete(&me.user, id, sid).await?;
    Ok(StatusCode::NO_CONTENT)
}
