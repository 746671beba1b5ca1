//! `/api/events` (admins and staff): the cluster's event log, newest first.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiQuery, CurrentUser};
use crate::auth::Role;
use crate::events::{self, Event};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/events", get(list))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Only this node's events.
    node_id: Option<Uuid>,
    /// At most this many (1..=500; 100 when omitted).
    limit: Option<u32>,
}

async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<Event>>, ApiError> {
    me.require(&[Role::Admin, Role::Staff])?;
    let limit = q.limit.unwrap_or(100);
    Ok(Json(events::list(&state.pool, q.node_id, limit).await?))
}
