//! `/api/courses/{id}/idle`: a course's idle auto-stop rule (its teacher and
//! admins); `/api/vms/{id}/idle`: whether the VM is about to be stopped for
//! idleness (the desktop page polls it to warn whoever is connected).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::error::ApiError;
use super::extract::{ApiJson, CurrentUser, IdPath};
use crate::auth::Role;
use crate::idle::{IdleSettings, IdleWarning};
use crate::state::AppState;

const MANAGERS: &[Role] = &[Role::Teacher, Role::Admin];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/courses/{id}/idle", get(settings).put(set_settings))
        .route("/api/vms/{id}/idle", get(warning))
}

async fn settings(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<IdleSettings>, ApiError> {
    me.require(MANAGERS)?;
    Ok(Json(state.idle.settings(&me.user, id).await?))
}

async fn set_settings(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<IdleSettings>,
) -> Result<Json<IdleSettings>, ApiError> {
    me.require(MANAGERS)?;
    Ok(Json(state.idle.set_settings(&me.user, id, body).await?))
}

async fn warning(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<IdleWarning>, ApiError> {
    Ok(Json(state.idle.warning(&me.user, id).await?))
}
