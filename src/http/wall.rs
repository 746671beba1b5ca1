//! The teacher's video wall and assist: `GET /api/courses/{id}/wall` (a
//! course's VMs with thumbnail URLs, hands, watchers), `GET
//! /api/vms/{id}/thumbnail` (PNG of the screen, ~1 s fresh), `GET
//! /api/vms/{id}/screen` (the same at full size: a live picture watched
//! view-only), the student's
//! hand (`POST`/`DELETE /api/vms/{id}/hand`), `GET /api/vms/{id}/assist`
//! (hand and watchers: the desktop's banner), and the teacher's
//! presentation to the class (`/api/courses/{id}/presentation`, its
//! view-only console token `POST .../presentation/console`).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::time::Instant;

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, CurrentUser, IdPath};
use crate::auth::Role;
use crate::state::AppState;
use crate::wall::{Assist, Filter, Presentation, WallView};

/// Who watches walls; who presents (course teachers and admins).
const WATCHERS: &[Role] = &[Role::Teacher, Role::Staff, Role::Admin];
const PRESENTERS: &[Role] = &[Role::Teacher, Role::Admin];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/courses/{id}/wall", get(wall))
        .route(
            "/api/courses/{id}/presentation",
            get(presentation).put(present).delete(stop_presenting),
        )
        .route(
            "/api/courses/{id}/presentation/console",
            post(presentation_console),
        )
        .route("/api/courses/{id}/teacher-vm", post(teacher_vm))
        .route("/api/vms/{id}/thumbnail", get(thumbnail))
        .route("/api/vms/{id}/screen", get(screen))
        .route("/api/vms/{id}/hand", post(raise).delete(lower))
        .route("/api/vms/{id}/assist", get(assist))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WallQuery {
    #[serde(default)]
    running: bool,
    #[serde(default)]
    hands: bool,
}

async fn wall(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<WallQuery>,
) -> Result<Json<WallView>, ApiError> {
    me.require(WATCHERS)?;
    let filter = Filter {
        running: q.running,
        hands: q.hands,
    };
    Ok(Json(
        state
            .wall
            .wall(&me.user, id, filter, Instant::now())
            .await?,
    ))
}

/// A picture of a screen: a new one every second, so never from a cache.
fn png(bytes: bytes::Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response()
}

async fn thumbnail(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let shot = state.wall.thumbnail(&me.user, id, Instant::now()).await?;
    Ok(png(shot.png))
}

async fn screen(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    Ok(png(state.wall.screen(&me.user, id, Instant::now()).await?))
}

async fn raise(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Assist>, ApiError> {
    Ok(Json(
        state.wall.raise_hand(&me.user, id, Instant::now()).await?,
    ))
}

async fn lower(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    state.wall.lower_hand(&me.user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn assist(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Assist>, ApiError> {
    Ok(Json(state.wall.assist(&me.user, id, Instant::now()).await?))
}

async fn presentation(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Option<Presentation>>, ApiError> {
    Ok(Json(state.wall.presentation(&me.user, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresentBody {
    vm_id: uuid::Uuid,
}

async fn present(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<PresentBody>,
) -> Result<Json<Presentation>, ApiError> {
    me.require(PRESENTERS)?;
    Ok(Json(state.wall.present(&me.user, id, body.vm_id).await?))
}

async fn stop_presenting(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    me.require(PRESENTERS)?;
    state.wall.stop_presenting(&me.user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn teacher_vm(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<(StatusCode, Json<crate::vms::Vm>), ApiError> {
    me.require(PRESENTERS)?;
    let (vm, created) = state.wall.teacher_vm(&me.user, id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(vm)))
}

async fn presentation_console(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<serde_json::Value>, ApiError> {
    let grant = state.wall.presentation_console(&me.user, id).await?;
    Ok(Json(super::console::grant_json(grant, true)))
}
