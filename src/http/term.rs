//! The end of a term ([`crate::term`]):
//! - `PATCH /api/courses/{id}` — a course's `ends_at`/`retention_days` (its teacher, admins);
//! - `POST /api/courses/{id}/archive` — archive now (its teacher, admins);
//! - `GET /api/me/term` — the caller's courses that end, and until when their work can be downloaded;
//! - `GET /api/erasures` — erase records (admins: all; everyone else: their own);
//! - `GET|POST /api/term-holds`, `DELETE /api/term-holds/{id}` — holds against erasure (admins);
//! - `POST /api/vms/{id}/carry-over` — take the disk of an earlier course's VM along (as the layer rule).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use super::error::ApiError;
use super::extract::{ApiJson, CurrentUser, IdPath};
use super::respond::Created;
use crate::auth::Role;
use crate::courses::Course;
use crate::state::AppState;
use crate::term::{Erasure, Hold, NewHold, TermNotice, TermPatch};

const MANAGERS: &[Role] = &[Role::Teacher, Role::Admin];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/courses/{id}/archive", post(archive))
        .route("/api/me/term", get(notices))
        .route("/api/erasures", get(erasures))
        .route("/api/term-holds", get(holds).post(add_hold))
        .route("/api/term-holds/{id}", delete(remove_hold))
        .route("/api/vms/{id}/carry-over", post(carry_over))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CarryBody {
    from_vm_id: uuid::Uuid,
}

/// `POST /api/vms/{id}/carry-over` `{from_vm_id}`: the disk of another VM of
/// the same student (an earlier course) into this one.
async fn carry_over(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<CarryBody>,
) -> Result<Json<crate::vms::Vm>, ApiError> {
    Ok(Json(
        state.term.carry_over(&me.user, id, body.from_vm_id).await?,
    ))
}

/// `PATCH /api/courses/{id}` (routed with the course in [`super::courses`]).
pub async fn set(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<TermPatch>,
) -> Result<Json<Course>, ApiError> {
    me.require(MANAGERS)?;
    Ok(Json(state.term.set(&me.user, id, body).await?))
}

async fn archive(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Course>, ApiError> {
    me.require(MANAGERS)?;
    Ok(Json(state.term.archive(&me.user, id).await?))
}

async fn notices(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<Vec<TermNotice>>, ApiError> {
    Ok(Json(
        state
            .term
            .notices(&me.user, time::OffsetDateTime::now_utc())
            .await?,
    ))
}

async fn erasures(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<Vec<Erasure>>, ApiError> {
    Ok(Json(state.term.erasures(&me.user).await?))
}

async fn holds(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<Vec<Hold>>, ApiError> {
    me.require(&[Role::Admin])?;
    Ok(Json(state.term.holds().await?))
}

async fn add_hold(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<NewHold>,
) -> Result<Created<Hold>, ApiError> {
    me.require(&[Role::Admin])?;
    Ok(Created(state.term.add_hold(&me.user, body).await?))
}

async fn remove_hold(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    me.require(&[Role::Admin])?;
    state.term.remove_hold(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
