//! `/api/courses/{id}/usage`: a course's usage per student (in and out of
//! sessions, per VM and lab date) for its teacher and admins, as JSON or
//! `?format=csv`; `/api/me/usage`: the caller's own hours per course, with
//! the budget and what is left (the student's course card).
//! `/api/courses/{id}/quota`: a course's hour budget outside sessions and
//! its VMs running at once, with each student's hours (teacher, admin);
//! `.../quota/students/{uid}`: extra hours for one student;
//! `/api/quota/limits`: the lab's limits per user (read: anyone signed in;
//! change: admins).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, CurrentUser, IdPath, IdPath2};
use crate::auth::Role;
use crate::state::AppState;
use crate::usage::quota::{CourseQuota, CourseQuotaInput, ExtraInput, UserLimits};
use crate::usage::{self, MyUsage};

const MANAGERS: &[Role] = &[Role::Teacher, Role::Admin];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/courses/{id}/usage", get(course))
        .route("/api/me/usage", get(mine))
        .route("/api/courses/{id}/quota", get(quota).put(set_quota))
        .route("/api/courses/{id}/quota/students/{uid}", put(set_extra))
        .route("/api/quota/limits", get(limits).put(set_limits))
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<Format>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Format {
    Json,
    Csv,
}

async fn course(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Response, ApiError> {
    me.require(MANAGERS)?;
    let from = q
        .from
        .as_deref()
        .map(|s| usage::parse_date("from", s))
        .transpose()?;
    let to =
        q.to.as_deref()
            .map(|s| usage::parse_date("to", s))
            .transpose()?;
    let report = state.usage.course(&me.user, id, from, to, now()).await?;
    if q.format == Some(Format::Csv) {
        let name = format!(
            "attachment; filename=\"pvce-usage-{}-{}.csv\"",
            report.from, report.to
        );
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, name),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
            usage::to_csv(&report),
        )
            .into_response());
    }
    Ok(Json(report).into_response())
}

async fn mine(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<Vec<MyUsage>>, ApiError> {
    Ok(Json(state.usage.mine(&me.user, now()).await?))
}

async fn quota(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<CourseQuota>, ApiError> {
    me.require(MANAGERS)?;
    Ok(Json(state.quotas.course(&me.user, id, now()).await?))
}

async fn set_quota(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<CourseQuotaInput>,
) -> Result<Json<CourseQuota>, ApiError> {
    me.require(MANAGERS)?;
    Ok(Json(
        state.quotas.set_course(&me.user, id, body, now()).await?,
    ))
}

async fn set_extra(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath2(id, uid): IdPath2,
    ApiJson(body): ApiJson<ExtraInput>,
) -> Result<Json<CourseQuota>, ApiError> {
    me.require(MANAGERS)?;
    Ok(Json(
        state
            .quotas
            .set_extra(&me.user, id, uid, body, now())
            .await?,
    ))
}

async fn limits(
    State(state): State<AppState>,
    _me: CurrentUser,
) -> Result<Json<UserLimits>, ApiError> {
    Ok(Json(state.quotas.limits().await?))
}

async fn set_limits(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<UserLimits>,
) -> Result<Json<UserLimits>, ApiError> {
    me.require(&[Role::Admin])?;
    Ok(Json(state.quotas.set_limits(body).await?))
}
