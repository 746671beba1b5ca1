//! `/api/users` (admin only).

use axum::extract::State;
use axum::routing::{get, patch, post};
use axum::{Json, Router};

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, ApiText, CurrentUser, IdPath};
use super::respond::Created;
use crate::auth::Role;
use crate::state::AppState;
use crate::users::{self, ImportReport, NewUser, User, UserPatch};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/users", get(list).post(create))
        .route("/api/users/import", post(import))
        .route("/api/users/{id}", patch(update))
}

/// `?q=&limit=&offset=`: a page of a search; without any, every user.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    q: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<User>>, ApiError> {
    me.require(&[Role::Admin])?;
    if q.q.is_none() && q.limit.is_none() && q.offset.is_none() {
        return Ok(Json(users::list(&state.pool).await?));
    }
    Ok(Json(
        users::search(
            &state.pool,
            q.q.as_deref().unwrap_or(""),
            q.limit.unwrap_or(users::MAX_PAGE),
            q.offset.unwrap_or(0),
        )
        .await?,
    ))
}

async fn create(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<Created<User>, ApiError> {
    me.require(&[Role::Admin])?;
    Ok(Created(users::create(&state.pool, body).await?))
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
    Ok(Json(users::update(&state.pool, &me.user, id, body).await?))
}
