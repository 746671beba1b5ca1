//! `/api/users` (admin only).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};

use super::error::ApiError;
use super::extract::{ApiJson, ApiText, CurrentUser, IdPath};
use crate::auth::Role;
use crate::state::AppState;
use crate::users::{self, ImportReport, NewUser, User, UserPatch};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/users", get(list).post(create))
        .route("/api/users/import", post(import))
        .route("/api/users/{id}", patch(update))
}

async fn list(State(state): State<AppState>, me: CurrentUser) -> Result<Json<Vec<User>>, ApiError> {
    me.require(&[Role::Admin])?;
    Ok(Json(users::list(&state.pool).await?))
}

async fn create(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    me.require(&[Role::Admin])?;
    Ok((
        StatusCode::CREATED,
        Json(users::create(&state.pool, body).await?),
    ))
}

async fn import(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiText(body): ApiText,
) -> Result<Json<ImportReport>, ApiError> {
    me.require(&[Role::Admin])?;
    Ok(Json(users::import_csv(&state.pool, &body).await?))
}

async fn update(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<UserPatch>,
) -> Result<Json<User>, ApiError> {
    me.require(&[Role::Admin])?;
    Ok(Json(
        users::update(&state.pool, me.user.id, id, body).await?,
    ))
}
