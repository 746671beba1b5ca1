//! `/api/courses`: teachers manage their courses, students read theirs.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiJson, CurrentUser, IdPath, IdPath2};
use super::respond::Created;
use crate::auth::Role;
use crate::courses::{ClipboardSwitches, Course, DirectoryLink, EnrolReport, NewCourse};
use crate::state::AppState;

const STAFF: &[Role] = &[Role::Teacher, Role::Admin];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/courses", get(list).post(create))
        .route(
            "/api/courses/{id}",
            get(show).delete(remove).patch(super::term::set),
        )
        .route("/api/courses/{id}/students", get(students).post(enrol))
        .route("/api/courses/{id}/students/{user_id}", delete(unenrol))
        .route("/api/courses/{id}/clipboard", put(set_clipboard))
        .route("/api/courses/{id}/directory-link", put(set_link))
}

async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<Vec<Course>>, ApiError> {
    Ok(Json(state.courses.list(&me.user).await?))
}

async fn create(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<NewCourse>,
) -> Result<Created<Course>, ApiError> {
    me.require(STAFF)?;
    Ok(Created(state.courses.create(&me.user, body).await?))
}

async fn show(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Course>, ApiError> {
    Ok(Json(state.courses.get(&me.user, id).await?))
}

async fn set_clipboard(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<ClipboardSwitches>,
) -> Result<Json<Course>, ApiError> {
    me.require(STAFF)?;
    Ok(Json(state.courses.set_clipboard(&me.user, id, body).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    /// `null` unlinks the course.
    link: Option<DirectoryLink>,
}

async fn set_link(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<LinkBody>,
) -> Result<Json<Course>, ApiError> {
    me.require(STAFF)?;
    Ok(Json(state.courses.set_link(&me.user, id, body.link).await?))
}

async fn remove(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    me.require(STAFF)?;
    state.courses.delete(&me.user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn students(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Vec<crate::users::User>>, ApiError> {
    me.require(STAFF)?;
    Ok(Json(state.courses.students(&me.user, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolBody {
    usernames: Vec<String>,
}

async fn enrol(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<EnrolBody>,
) -> Result<Json<EnrolReport>, ApiError> {
    me.require(STAFF)?;
    Ok(Json(
        state.courses.enrol(&me.user, id, &body.usernames).await?,
    ))
}

async fn unenrol(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath2(id, user_id): IdPath2,
) -> Result<StatusCode, ApiError> {
    me.require(STAFF)?;
    state.courses.unenrol(&me.user, id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
