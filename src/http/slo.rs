//! `/api/slo` (admins and staff read; teachers their courses' figures;
//! admins set targets) and
//! `/api/status` (every signed-in user).

use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, CurrentUser};
use crate::auth::Role;
use crate::slo::{Report, SloQuery, Status, Targets, TargetsUpdate};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/slo", get(report))
        .route("/api/slo/targets", put(set_targets))
        .route("/api/status", get(status))
}

async fn report(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<SloQuery>,
) -> Result<Json<Report>, ApiError> {
    me.require(&[Role::Admin, Role::Staff, Role::Teacher])?;
    Ok(Json(
        state
            .slo
            .report(&me.user, &q, time::OffsetDateTime::now_utc())
            .await?,
    ))
}

async fn set_targets(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<TargetsUpdate>,
) -> Result<Json<Targets>, ApiError> {
    me.require(&[Role::Admin])?;
    Ok(Json(state.slo.set_targets(&me.user.username, &body).await?))
}

async fn status(State(state): State<AppState>, _me: CurrentUser) -> Result<Json<Status>, ApiError> {
    Ok(Json(
        state.slo.status(time::OffsetDateTime::now_utc()).await?,
    ))
}
