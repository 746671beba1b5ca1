//! `GET /api/audit` and `GET /api/audit.csv` (admin), and the middleware
//! that gives every request's handling its client address for the entries
//! it records ([`crate::audit::context`]).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiQuery, CurrentUser, client_ip};
use crate::audit::{Filter, Record};
use crate::auth::Role;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/audit", get(list))
        .route("/api/audit.csv", get(csv))
}

/// Runs the request with its client address (the peer's, or behind a
/// trusted proxy the one it reports) known to the audit log.
pub async fn scope(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    match peer {
        Some(peer) => {
            let ip = client_ip(&state.config, req.headers(), peer);
            crate::audit::context::scope(ip, next.run(req)).await
        }
        None => next.run(req).await,
    }
}

/// `?user_id&user&action&target_kind&target_id&from&to&limit&offset`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    user_id: Option<Uuid>,
    user: Option<String>,
    action: Option<String>,
    target_kind: Option<String>,
    target_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

impl From<AuditQuery> for Filter {
    fn from(q: AuditQuery) -> Self {
        Filter {
            user_id: q.user_id,
            user: q.user,
            action: q.action,
            target_kind: q.target_kind,
            target_id: q.target_id,
            from: q.from,
            to: q.to,
            limit: q.limit,
            offset: q.offset,
        }
    }
}

async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<Record>>, ApiError> {
    me.require(&[Role::Admin])?;
    Ok(Json(state.audit.list(&q.into()).await?))
}

async fn csv(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    me.require(&[Role::Admin])?;
    let bytes = state.audit.csv(&q.into()).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"pvce-audit.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response())
}
