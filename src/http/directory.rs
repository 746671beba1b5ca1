//! `/api/directory/*`: the admin's directory sync.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiQuery, CurrentUser};
use crate::auth::Role;
use crate::directory::SyncReport;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/directory/sync", post(sync))
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
    Ok(Json(state.directory.sync(q.dry_run).await?))
}
