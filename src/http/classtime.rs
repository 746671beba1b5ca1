//! `/api/courses/{id}/sessions`: a course's timetable. The course's teacher
//! and admins add (one session as JSON, or an iCalendar file as
//! `text/calendar`), edit and delete sessions; whoever sees the course reads
//! them. `/api/vms/{id}/class`: a VM's session, the warning due before its
//! end and its place in the start queue (the desktop page polls it);
//! `.../class/extend`: 15 more minutes at the end of the session, where the
//! course's rule (`/api/courses/{id}/extension`, its teacher's) allows.

use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::routing::{get, post, put};
use axum::{Json, Router};

use super::error::ApiError;
use super::extract::{ApiJson, ApiText, CurrentUser, IdPath, IdPath2};
use super::respond::Created;
use crate::auth::Role;
use crate::classtime::class::VmClassStatus;
use crate::classtime::{Added, ExtensionRule, NewSession, Session, SessionInput};
use crate::state::AppState;

const MANAGERS: &[Role] = &[Role::Teacher, Role::Admin];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/courses/{id}/sessions", get(list).post(add))
        .route(
            "/api/courses/{id}/sessions/{sid}",
            put(update).delete(remove),
        )
        .route("/api/vms/{id}/class", get(vm_status))
        .route("/api/vms/{id}/class/extend", post(extend))
        .route(
            "/api/courses/{id}/extension",
            get(extension_rule).put(set_extension_rule),
        )
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Vec<Session>>, ApiError> {
    Ok(Json(state.sessions.list(&me.user, id, now()).await?))
}

/// The body of a POST: JSON, or a calendar file by its media type.
#[derive(Debug)]
struct Input(SessionInput);

impl<S: Send + Sync> FromRequest<S> for Input {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let calendar = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/calendar"));
        if calendar {
            let ApiText(text) = ApiText::from_request(req, state).await?;
            Ok(Input(SessionInput::Calendar(text)))
        } else {
            let ApiJson(one) = ApiJson::<NewSession>::from_request(req, state).await?;
            Ok(Input(SessionInput::One(one)))
        }
    }
}

async fn add(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    Input(input): Input,
) -> Result<Created<Added>, ApiError> {
    me.require(MANAGERS)?;
    Ok(Created(
        state.sessions.add(&me.user, id, input, now()).await?,
    ))
}

async fn update(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath2(id, sid): IdPath2,
    ApiJson(body): ApiJson<NewSession>,
) -> Result<Json<Session>, ApiError> {
    me.require(MANAGERS)?;
    Ok(Json(
        state
            .sessions
            .update(&me.user, id, sid, body, now())
            .await?,
    ))
}

async fn remove(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath2(id, sid): IdPath2,
) -> Result<StatusCode, ApiError> {
    me.require(MANAGERS)?;
    state.sessions.delete(&me.user, id, sid).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn vm_status(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<VmClassStatus>, ApiError> {
    Ok(Json(state.class.status(&me.user, id, now()).await?))
}

async fn extend(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<VmClassStatus>, ApiError> {
    Ok(Json(state.class.extend(&me.user, id, now()).await?))
}

async fn extension_rule(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<ExtensionRule>, ApiError> {
    me.require(MANAGERS)?;
    Ok(Json(state.sessions.extension_rule(&me.user, id).await?))
}

async fn set_extension_rule(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<ExtensionRule>,
) -> Result<Json<ExtensionRule>, ApiError> {
    me.require(MANAGERS)?;
    Ok(Json(
        state
            .sessions
            .set_extension_rule(&me.user, id, body)
            .await?,
    ))
}
