//! `/api/directory/*`: the admin's directory sync.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiQuery, CurrentUser};
use crate::auth::Role;
use crate::directory::{SyncHistory, SyncReport, Trigger};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/directory/sync", post(sync))
        .route("/api/directory/syncs", get(history))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncQuery {
    #[serde(default)]
    dry_run: bool,
}

/// "Sync now" (or, with `dry_run`, what a sync would change).
async fn sync(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<SyncQuery>,
) -> Result<Json<SyncReport>, ApiError> {
    me.require(&[Role::Admin])?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(Json(
        state
            .directory
            .requested(q.dry_run, Trigger::Admin, now)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    10
}

/// The schedule and the recent syncs (the Users page's card).
async fn history(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<SyncHistory>, ApiError> {
    me.require(&[Role::Admin])?;
    Ok(Json(state.directory.history(q.limit).await?))
}
