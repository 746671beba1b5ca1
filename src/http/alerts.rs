//! `/api/alerts` and `/api/inspections`: alerts at levels (staff and admins
//! read and acknowledge, admins edit the rules) and the daily inspection
//! (staff and admins read its history and run one now). The time is the
//! wall clock's, read here; the services take it as an argument.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, CurrentUser};
use super::respond::Created;
use crate::alerts::rules::RuleSet;
use crate::alerts::service::{Alert, ListQuery};
use crate::auth::Role;
use crate::inspection::{Inspection, Summary, Trigger};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/alerts", get(list))
        .route("/api/alerts/rules", get(rules).put(set_rules))
        .route("/api/alerts/{id}/ack", post(ack))
        .route("/api/inspections", get(inspections).post(inspect))
        .route("/api/inspections/{id}", get(inspection))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

const DESK: &[Role] = &[Role::Admin, Role::Staff];

async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Alert>>, ApiError> {
    me.require(DESK)?;
    Ok(Json(state.alerts.list(&q, now()).await?))
}

async fn ack(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Alert>, ApiError> {
    me.require(DESK)?;
    Ok(Json(
        state
            .alerts
            .acknowledge(id, &me.user.username, now())
            .await?,
    ))
}

async fn rules(State(state): State<AppState>, me: CurrentUser) -> Result<Json<RuleSet>, ApiError> {
    me.require(DESK)?;
    Ok(Json(state.alerts.rules().await?))
}

async fn set_rules(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(rules): ApiJson<RuleSet>,
) -> Result<Json<RuleSet>, ApiError> {
    me.require(&[Role::Admin])?;
    Ok(Json(
        state
            .alerts
            .set_rules(rules, &me.user.username, now())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InspectionsQuery {
    /// At most this many (1..=200; 30 when omitted).
    limit: Option<u32>,
}

async fn inspections(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<InspectionsQuery>,
) -> Result<Json<Vec<Summary>>, ApiError> {
    me.require(DESK)?;
    Ok(Json(state.inspections.list(q.limit.unwrap_or(30)).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunInspection {
    /// Check every template copy, not only the day's sample (default true:
    /// someone asking now wants the whole answer).
    #[serde(default)]
    full: Option<bool>,
}

async fn inspect(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<RunInspection>,
) -> Result<Created<Inspection>, ApiError> {
    me.require(DESK)?;
    let full = body.full.unwrap_or(true);
    let done = state
        .inspections
        .run(now(), Trigger::Manual, Some(&me.user.username), full)
        .await?;
    Ok(Created(done))
}

async fn inspection(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Inspection>, ApiError> {
    me.require(DESK)?;
    Ok(Json(state.inspections.get(id).await?))
}
