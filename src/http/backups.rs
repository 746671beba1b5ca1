//! `/api/backups` (admins: status, run now) and `/api/vms/{id}/backups`
//! (the backup points of a VM's personal layer, for whoever may see the VM)
//! and `/api/vms/{id}/restore` (one of them back, the current layer kept).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, CurrentUser, IdPath};
use crate::auth::Role;
use crate::backup::{Point, Restored, Status};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/backups", get(status).post(run_now))
        .route("/api/vms/{id}/backups", get(points))
        .route("/api/vms/{id}/restore", post(restore))
}

async fn status(State(state): State<AppState>, me: CurrentUser) -> Result<Json<Status>, ApiError> {
    me.require(&[Role::Admin])?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(Json(state.backups.status(now).await?))
}

async fn run_now(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    me.require(&[Role::Admin])?;
    state.backups.start_now(&me.user.username).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"started": true}))))
}

async fn points(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Vec<Point>>, ApiError> {
    Ok(Json(state.backups.points(&me.user, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    backup_id: Uuid,
}

async fn restore(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<RestoreBody>,
) -> Result<Json<Restored>, ApiError> {
    Ok(Json(
        state.backups.restore(&me.user, id, body.backup_id).await?,
    ))
}
