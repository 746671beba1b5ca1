//! `/api/me/notifications` and `/api/me/notification-settings`: each
//! signed-in user's notifications (the bell) and their choices
//! ([`crate::desk::notices`]). Everything here is the caller's own.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, CurrentUser};
use crate::desk::notices::{ListQuery, Page, SettingsBody, SettingsView};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/me/notifications", get(list))
        .route("/api/me/notifications/read-all", post(read_all))
        .route("/api/me/notifications/{id}/read", post(read))
        .route(
            "/api/me/notification-settings",
            get(settings).put(put_settings),
        )
}

async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page>, ApiError> {
    Ok(Json(state.notices.list(&me.user, &q).await?))
}

async fn read(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
    state.notices.mark_read(&me.user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn read_all(State(state): State<AppState>, me: CurrentUser) -> Result<Json<Value>, ApiError> {
    let n = state.notices.mark_all_read(&me.user).await?;
    Ok(Json(json!({ "marked": n })))
}

async fn settings(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<SettingsView>, ApiError> {
    Ok(Json(state.notices.settings(&me.user).await?))
}

async fn put_settings(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<SettingsBody>,
) -> Result<Json<SettingsView>, ApiError> {
    Ok(Json(state.notices.put_settings(&me.user, body).await?))
}
