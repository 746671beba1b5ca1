//! `/api/vms`: personal VMs (owner, the course's teacher, admins).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, CurrentUser, IdPath};
use crate::app::AppState;
use crate::auth::Role;
use crate::vms::{self, Vm};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/vms", get(list))
        .route("/api/vms/{id}", get(show))
        .route("/api/vms/{id}/start", post(start))
        .route("/api/vms/{id}/shutdown", post(shutdown))
        .route("/api/vms/{id}/poweroff", post(poweroff))
        .route("/api/vms/{id}/reboot", post(reboot))
        .route("/api/vms/{id}/reset", post(reset))
        .route("/api/vms/{id}/migrate", post(migrate))
        .route("/api/vms/{id}/move", post(move_layer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    course_id: Option<Uuid>,
}

async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Vm>>, ApiError> {
    Ok(Json(state.vms.list(&me.user, q.course_id).await?))
}

async fn show(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Vm>, ApiError> {
    state.vms.get_for(&me.user, id).await?;
    Ok(Json(state.vms.refresh(id).await?))
}

async fn start(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Vm>, ApiError> {
    let vm = state.vms.get_for(&me.user, id).await?;
    let (owner, course) = vms::labels(&state.pool, &vm).await?;
    Ok(Json(state.vms.start(&vm, &owner, &course).await?))
}

async fn shutdown(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Vm>, ApiError> {
    let vm = state.vms.get_for(&me.user, id).await?;
    Ok(Json(state.vms.shutdown(&vm).await?))
}

async fn poweroff(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Vm>, ApiError> {
    let vm = state.vms.get_for(&me.user, id).await?;
    Ok(Json(state.vms.poweroff(&vm).await?))
}

async fn reboot(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Vm>, ApiError> {
    let vm = state.vms.get_for(&me.user, id).await?;
    Ok(Json(state.vms.reboot(&vm).await?))
}

async fn reset(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Vm>, ApiError> {
    let vm = state.vms.get_for(&me.user, id).await?;
    Ok(Json(state.vms.reset(&vm).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrateBody {
    node_id: Uuid,
}

async fn migrate(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<MigrateBody>,
) -> Result<Json<Vm>, ApiError> {
    me.require(&[Role::Admin])?;
    let vm = state.vms.get_for(&me.user, id).await?;
    Ok(Json(state.vms.migrate(&vm, body.node_id).await?))
}

/// Moves a stopped VM's node-local layer to another node (admin).
async fn move_layer(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<MigrateBody>,
) -> Result<Json<Vm>, ApiError> {
    me.require(&[Role::Admin])?;
    let vm = state.vms.get_for(&me.user, id).await?;
    Ok(Json(state.vms.move_layer(&vm, body.node_id).await?))
}
